// SPDX-License-Identifier: MIT
/* Count calls of do_work() per task name (a hash map keyed by comm). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[16]);
	__type(value, u64);
} calls SEC(".maps");

SEC("kprobe/do_work")
int BPF_KPROBE(count_do_work, long a, long b)
{
	char comm[16];
	u64 one = 1, *count;

	bpf_get_current_comm(comm, sizeof(comm));
	count = bpf_map_lookup_elem(&calls, comm);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&calls, comm, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
