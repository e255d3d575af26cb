// SPDX-License-Identifier: MIT
/*
 * stackcount: count the distinct kernel stacks that reach a function, in the manner of bcc's
 * stackcount. The function is chosen at run time:
 *
 *   kprobesim firmware/x86_64/kernel.elf --bpf stackcount.x86_64.o --attach on_call=strlen
 *
 * At exit `stacks` lists each stack (symbolised frames) and `counts` how often it was seen.
 * The optional filter `targ_comm` (a string, set with --set targ_comm=init) keeps one task's.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"	/* <bpf/bpf_tracing.h> + LoongArch for Debian's libbpf 1.1 */

#define TASK_COMM_LEN 16

const volatile char targ_comm[TASK_COMM_LEN] = {};

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(u32));
	__uint(value_size, 32 * sizeof(u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, s32);
	__type(value, u64);
} counts SEC(".maps");

SEC("kprobe")
int on_call(struct pt_regs *ctx)
{
	char comm[TASK_COMM_LEN];
	u64 one = 1, *count;
	s32 id;

	if (targ_comm[0]) {
		bpf_get_current_comm(comm, sizeof(comm));
		for (int i = 0; i < TASK_COMM_LEN; i++) {
			if (comm[i] != targ_comm[i])
				return 0;
			if (!comm[i])
				break;
		}
	}
	id = bpf_get_stackid(ctx, &stacks, 0);
	if (id < 0)
		return 0;
	count = bpf_map_lookup_elem(&counts, &id);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&counts, &id, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
