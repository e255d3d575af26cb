/* eBPF on the initramfs /init's digits(): a uprobe keeps each call's argument per thread, the
 * uretprobe pairs it with the return value, as bcc's funclatency pairs entries and returns.
 * `results` maps the argument to {return value, the caller's pid/tgid}. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct result {
    __s64 ret;
    __u64 pid_tgid;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u64);   /* pid_tgid */
    __type(value, __u64); /* the argument */
} args SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u64);   /* the argument */
    __type(value, struct result);
} results SEC(".maps");

SEC("uprobe//init:digits")
int BPF_KPROBE(on_digits, unsigned long n)
{
    __u64 id = bpf_get_current_pid_tgid(), arg = n;
    bpf_map_update_elem(&args, &id, &arg, BPF_ANY);
    return 0;
}

SEC("uretprobe//init:digits")
int BPF_KRETPROBE(on_digits_return, int d)
{
    __u64 id = bpf_get_current_pid_tgid(), *arg = bpf_map_lookup_elem(&args, &id);
    struct result r = {d, id};
    if (!arg)
        return 0;
    bpf_map_update_elem(&results, arg, &r, BPF_ANY);
    bpf_map_delete_elem(&args, &id);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
