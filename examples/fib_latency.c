// SPDX-License-Identifier: MIT
/*
 * Histogram of fib() latency in virtual nanoseconds (one per guest instruction).
 *
 * fib() is recursive, so the start time is keyed by task and stack pointer: each activation
 * has its own stack pointer at entry.  At the return the stack pointer is back to its value at
 * entry, except on x86_64 where `ret` has also popped the return address (8 bytes).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

#if defined(__TARGET_ARCH_x86)
#define RET_SP_ADJUST 8
#else
#define RET_SP_ADJUST 0
#endif

#define MAX_SLOTS 64

struct key {
	u32 pid;
	u32 pad;
	u64 sp;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct key);
	__type(value, u64);
} start SEC(".maps");

/* "hist" in the name: printed at exit as a log2 histogram */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, u32);
	__type(value, u64);
} fib_hist SEC(".maps");

static __always_inline u32 log2l(u64 v)
{
	u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

static __always_inline void make_key(struct key *k, u64 sp)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->pid = bpf_get_current_pid_tgid();
	k->sp = sp;
}

SEC("kprobe/fib")
int BPF_KPROBE(fib_entry, long n)
{
	struct key k;
	u64 ts = bpf_ktime_get_ns();

	make_key(&k, PT_REGS_SP(ctx));
	bpf_map_update_elem(&start, &k, &ts, BPF_ANY);
	return 0;
}

SEC("kretprobe/fib")
int BPF_KRETPROBE(fib_exit, long ret)
{
	struct key k;
	u64 *ts, delta, *count;
	u32 slot;

	make_key(&k, PT_REGS_SP(ctx) - RET_SP_ADJUST);
	ts = bpf_map_lookup_elem(&start, &k);
	if (!ts)
		return 0;
	delta = bpf_ktime_get_ns() - *ts;
	bpf_map_delete_elem(&start, &k);
	slot = delta ? log2l(delta) + 1 : 0;
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	count = bpf_map_lookup_elem(&fib_hist, &slot);
	if (count)
		__sync_fetch_and_add(count, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
