// SPDX-License-Identifier: MIT
/* bpf_tail_call through a prog array whose slots the object declares (libbpf fills them). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

u64 entry_runs, second_runs, chain_runs, after_fail, arg1_sum, user_slot_runs;

SEC("kprobe")
int second(struct pt_regs *ctx);
SEC("kprobe")
int chain(struct pt_regs *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(u32));
	__array(values, int (void *));
} jmp SEC(".maps") = {
	.values = {
		[1] = (void *)&second,
		[2] = (void *)&chain,
	},
};

SEC("kprobe/do_work")
int entry(struct pt_regs *ctx)
{
	entry_runs++;
	bpf_tail_call(ctx, &jmp, 3);	/* empty slot: returns, the program goes on */
	bpf_tail_call(ctx, &jmp, 10);	/* past the array: the same */
	bpf_tail_call(ctx, &jmp, 0);	/* filled by user space, or empty */
	bpf_tail_call(ctx, &jmp, 1);
	after_fail++;	/* not reached while slot 1 is filled */
	return 0;
}

SEC("kprobe")
int second(struct pt_regs *ctx)
{
	second_runs++;
	arg1_sum += PT_REGS_PARM1(ctx);	/* the context is the same pt_regs */
	bpf_tail_call(ctx, &jmp, 2);
	return 0;
}

SEC("kprobe")
int chain(struct pt_regs *ctx)
{
	chain_runs++;
	bpf_tail_call(ctx, &jmp, 2);	/* itself, until the 33-call limit */
	after_fail += 1000;
	return 0;
}

SEC("kprobe")
int user_slot(struct pt_regs *ctx)
{
	user_slot_runs++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
