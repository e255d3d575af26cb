// SPDX-License-Identifier: GPL-2.0
/* kprobe counting calls of do_work per first argument in a BTF-defined hash map. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u64);
	__type(value, u64);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u64));
} totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct task);
	__type(value, u32);
} recent SEC(".maps");

SEC("kprobe/do_work")
int BPF_KPROBE(count_do_work, u64 arg)
{
	u64 one = 1, *v;
	u32 zero = 0;

	v = bpf_map_lookup_elem(&calls, &arg);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&calls, &arg, &one, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&totals, &zero);
	if (v)
		*v += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
