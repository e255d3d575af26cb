/* An opensnoop-style eBPF program for the Linux-guest tests, built against a vmlinux.h that
 * bpftool generates from the guest kernel's own BTF; every struct read is a CO-RE relocation.
 *
 * on_openat (do_sys_openat2): the user's file name (bpf_probe_read_user_str on the second
 *   argument), counted per name in `opens`, with the opener's pid/tgid and comm from the
 *   helpers, and the same from `current` read through CO-RE (task_struct pid, tgid, comm),
 *   and open_how's flags through CO-RE.
 * on_filp (do_filp_open): the kernel's copy of the name, read from `struct filename`'s `name`
 *   through CO-RE, counted per name in `filps` (execve opens its program here too). */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define NAME_LEN 64

struct name_key {
    char name[NAME_LEN];
};

struct open_seen {
    __u64 count;
    __u64 pid_tgid;      /* bpf_get_current_pid_tgid() */
    __u32 core_pid;      /* current->pid through CO-RE */
    __u32 core_tgid;     /* current->tgid through CO-RE */
    __u64 flags;         /* how->flags through CO-RE */
    char comm[16];       /* bpf_get_current_comm() */
    char core_comm[16];  /* current->comm through CO-RE */
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 32);
    __type(key, struct name_key);
    __type(value, struct open_seen);
} opens SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 32);
    __type(key, struct name_key);
    __type(value, __u64);
} filps SEC(".maps");

SEC("kprobe/do_sys_openat2")
int BPF_KPROBE(on_openat, int dfd, const char *filename, struct open_how *how)
{
    struct name_key key = {};
    struct open_seen fresh = {}, *seen;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();

    if (bpf_probe_read_user_str(key.name, sizeof key.name, filename) <= 0)
        return 0;
    seen = bpf_map_lookup_elem(&opens, &key);
    if (!seen) {
        bpf_map_update_elem(&opens, &key, &fresh, BPF_NOEXIST);
        seen = bpf_map_lookup_elem(&opens, &key);
        if (!seen)
            return 0;
    }
    __sync_fetch_and_add(&seen->count, 1);
    seen->pid_tgid = bpf_get_current_pid_tgid();
    seen->core_pid = BPF_CORE_READ(task, pid);
    seen->core_tgid = BPF_CORE_READ(task, tgid);
    seen->flags = BPF_CORE_READ(how, flags);
    bpf_get_current_comm(seen->comm, sizeof seen->comm);
    BPF_CORE_READ_STR_INTO(&seen->core_comm, task, comm);
    return 0;
}

SEC("kprobe/do_filp_open")
int BPF_KPROBE(on_filp, int dfd, struct filename *pathname)
{
    struct name_key key = {};
    __u64 one = 1, *count;
    const char *name = BPF_CORE_READ(pathname, name);

    if (bpf_probe_read_kernel_str(key.name, sizeof key.name, name) <= 0)
        return 0;
    count = bpf_map_lookup_elem(&filps, &key);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        bpf_map_update_elem(&filps, &key, &one, BPF_NOEXIST);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
