// SPDX-License-Identifier: MIT
/*
 * funclatency: log2 histogram of a function's latency in virtual nanoseconds, in the manner of
 * bcc's libbpf-tools/funclatency. The function is chosen at run time (the sections have no
 * target) and the process filter is a `const volatile` set before load:
 *
 *   kprobesim firmware/riscv64/kernel.elf --bpf funclatency.riscv64.o \
 *       --attach func_entry=do_work --attach func_exit=do_work --set targ_tgid=2
 *
 * Start times are keyed by thread (like the original, so recursive functions are not measured).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"	/* <bpf/bpf_tracing.h> + LoongArch for Debian's libbpf 1.1 */

#define MAX_SLOTS 32

const volatile pid_t targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u64);
} starts SEC(".maps");

/* "hist" in the name: printed at exit as a log2 histogram */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, u32);
	__type(value, u64);
} latency_hist SEC(".maps");

static __always_inline u32 log2l(u64 v)
{
	u32 r = 0;

	while (v > 1 && r < MAX_SLOTS - 2) {
		v >>= 1;
		r++;
	}
	return r;
}

SEC("kprobe")
int BPF_KPROBE(func_entry)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32, pid = id;
	u64 now;

	if (targ_tgid && targ_tgid != tgid)
		return 0;
	now = bpf_ktime_get_ns();
	bpf_map_update_elem(&starts, &pid, &now, BPF_ANY);
	return 0;
}

SEC("kretprobe")
int BPF_KRETPROBE(func_exit)
{
	u32 pid = bpf_get_current_pid_tgid();
	u64 *start, *count;
	u32 slot;

	start = bpf_map_lookup_elem(&starts, &pid);
	if (!start)
		return 0;
	slot = log2l(bpf_ktime_get_ns() - *start) + 1;
	bpf_map_delete_elem(&starts, &pid);
	count = bpf_map_lookup_elem(&latency_hist, &slot);
	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
