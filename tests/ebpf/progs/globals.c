// SPDX-License-Identifier: GPL-2.0
/* Global data (.rodata/.data/.bss) and bpf-to-bpf calls shared by two programs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

const volatile u64 scale = 3;
const volatile u32 limits[4] = {10, 20, 30, 40};
u64 offset = 0x1122334455667788ULL;
u32 seen_pid = 7;
u64 hits;
u64 last_arg;
char last_comm[16];

static __attribute__((noinline)) u64 scaled(u64 x)
{
	return x * scale + offset;
}

static __attribute__((noinline)) u64 clamp(u64 x, u32 which)
{
	u64 lim = limits[which & 3];

	x = scaled(x);
	return x > lim ? lim : x;
}

__attribute__((noinline)) int record(u64 arg)
{
	hits++;
	last_arg = clamp(arg, 2);
	return 0;
}

SEC("kprobe/do_work")
int on_work(struct pt_regs *ctx)
{
	record(PT_REGS_PARM1(ctx));
	bpf_get_current_comm(last_comm, sizeof(last_comm));
	return 0;
}

SEC("kprobe/do_other")
int on_other(struct pt_regs *ctx)
{
	seen_pid = bpf_get_current_pid_tgid();
	return scaled(PT_REGS_PARM2(ctx)) & 1;
}

static int sum_cb(u32 index, void *data)
{
	*(u64 *)data += limits[index & 3];
	return 0;
}

SEC("kprobe/do_loop")
int on_loop(struct pt_regs *ctx)
{
	u64 total = 0;

	bpf_loop(4, sum_cb, &total, 0);
	hits = total;
	return 0;
}

SEC("tracepoint/sched/sched_switch")
int on_switch(void *ctx)
{
	bpf_printk("switch %d", seen_pid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
