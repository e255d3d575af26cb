// SPDX-License-Identifier: GPL-2.0
/* kretprobe writing fib()'s return value and the current task into a ring buffer. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

struct event {
	u32 pid;
	u32 cpu;
	u64 ret;
	u64 ip;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096 * 4);
} events SEC(".maps");

SEC("kretprobe/fib")
int BPF_KRETPROBE(fib_exit, long ret)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->cpu = bpf_get_smp_processor_id();
	e->ret = ret;
	e->ip = PT_REGS_IP(ctx);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (ret < 0)
		bpf_ringbuf_discard(e, 0);
	else
		bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("kprobe/fib")
int fib_enter(struct pt_regs *ctx)
{
	long n = PT_REGS_PARM1(ctx);

	return bpf_ringbuf_output(&events, &n, sizeof(n), BPF_RB_NO_WAKEUP);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
