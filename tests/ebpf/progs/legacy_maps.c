// SPDX-License-Identifier: GPL-2.0
/* Maps declared the old way, in a "maps" section of struct bpf_map_def (no BTF map types). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") counters = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(u32),
	.value_size = sizeof(u64),
	.max_entries = 8,
};

struct bpf_map_def SEC("maps") stacks = {
	.type = BPF_MAP_TYPE_STACK_TRACE,
	.key_size = sizeof(u32),
	.value_size = 32 * sizeof(u64),
	.max_entries = 128,
};

struct bpf_map_def SEC("maps") perf_out = {
	.type = BPF_MAP_TYPE_PERF_EVENT_ARRAY,
	.key_size = sizeof(u32),
	.value_size = sizeof(u32),
	.max_entries = 2,
};

struct bpf_map_def SEC("maps") by_pid = {
	.type = BPF_MAP_TYPE_PERCPU_HASH,
	.key_size = sizeof(u32),
	.value_size = sizeof(u64),
	.max_entries = 64,
	.map_flags = BPF_F_NO_PREALLOC,
};

SEC("kprobe/schedule")
int on_schedule(struct pt_regs *ctx)
{
	u32 key = 1;
	u64 *v = bpf_map_lookup_elem(&counters, &key);
	long id;

	if (v)
		*v += 1;
	id = bpf_get_stackid(ctx, &stacks, BPF_F_REUSE_STACKID);
	bpf_perf_event_output(ctx, &perf_out, BPF_F_CURRENT_CPU, &id, sizeof(id));
	key = bpf_get_current_pid_tgid();
	v = bpf_map_lookup_elem(&by_pid, &key);
	if (v)
		*v += 1;
	return 0;
}

char _license[] SEC("license") = "GPL";
u32 _version SEC("version") = 0x060100;
