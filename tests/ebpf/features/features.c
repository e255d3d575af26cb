// SPDX-License-Identifier: MIT
/* Item 4 helpers and maps, run on the first hit of do_work; results land in .bss / maps. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, u64);
} h SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, u32);
	__type(value, u64);
} arr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4);
	__type(value, u32);
} q SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 4);
	__type(value, u32);
} st SEC(".maps");

struct ipv4_key {
	u32 prefixlen;
	u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipv4_key);
	__type(value, u32);
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, struct ipv4_key);
} queries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, u32);
} answers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 100);
	__uint(map_extra, 3);
	__type(value, u64);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} cgroups SEC(".maps");

u64 done;
u64 loop_ret, loop_sum, loop_ret2, loop_err;
u64 hash_visits, hash_sum, arr_visits, arr_sum;
s64 qpop[6], spop[6], qpush_full, qpush_over, qpeek;
s64 bloom_hits, bloom_false, bloom_push;
char text[16];
s64 snp_ret, snp_small_ret, snp_bad;
char small[6];
s64 cmp[4];
s64 cgroup_ret[2];

struct loop_ctx {
	u64 sum;
	u64 stop_at;
};

static long add_index(u64 i, void *ctx)
{
	struct loop_ctx *c = ctx;

	c->sum += i;
	return i == c->stop_at;
}

static long visit_hash(void *map, u32 *key, u64 *val, void *ctx)
{
	hash_visits++;
	hash_sum += *key * 1000 + *val;
	*val += 1;	/* written through: the map sees it */
	return 0;
}

static long visit_arr(void *map, u32 *key, u64 *val, void *ctx)
{
	arr_visits++;
	arr_sum += *val;
	return *key == 4;	/* stop after index 4 */
}

SEC("kprobe/do_work")
int features(struct pt_regs *ctx)
{
	struct loop_ctx lc = { .sum = 0, .stop_at = 1000 };
	u32 k, v;
	u64 val;

	if (done)
		return 0;
	done = 1;

	/* bpf_loop: all 10 iterations, then a break at index 3 */
	loop_ret = bpf_loop(10, add_index, &lc, 0);
	loop_sum = lc.sum;
	lc.sum = 0;
	lc.stop_at = 3;
	loop_ret2 = bpf_loop(10, add_index, &lc, 0);
	loop_err = bpf_loop(10, add_index, &lc, 1);

	/* for_each over a hash (3 elements) and an array (stops at key 4) */
	for (k = 1; k <= 3; k++) {
		val = k * 10;
		bpf_map_update_elem(&h, &k, &val, BPF_ANY);
	}
	for (k = 0; k < 8; k++) {
		val = k + 1;
		bpf_map_update_elem(&arr, &k, &val, BPF_ANY);
	}
	bpf_for_each_map_elem(&h, visit_hash, NULL, 0);
	bpf_for_each_map_elem(&arr, visit_arr, NULL, 0);

	/* queue and stack: push 1..4, a fifth fails, BPF_EXIST drops the oldest */
	for (v = 1; v <= 4; v++) {
		bpf_map_push_elem(&q, &v, 0);
		bpf_map_push_elem(&st, &v, 0);
	}
	v = 5;
	qpush_full = bpf_map_push_elem(&q, &v, 0);
	qpush_over = bpf_map_push_elem(&q, &v, BPF_EXIST);
	bpf_map_push_elem(&st, &v, BPF_EXIST);
	qpeek = bpf_map_peek_elem(&q, &v) == 0 ? v : -1;
	for (int i = 0; i < 6; i++) {
		long r = bpf_map_pop_elem(&q, &v);
		qpop[i] = r ? r : v;
		r = bpf_map_pop_elem(&st, &v);
		spop[i] = r ? r : v;
	}

	/* LPM: the user filled `routes` and `queries`; answer each query */
	for (u32 i = 0; i < 16; i++) {
		struct ipv4_key *qk = bpf_map_lookup_elem(&queries, &i);
		u32 *hop, *ans = bpf_map_lookup_elem(&answers, &i);

		if (!qk || !ans)
			break;
		hop = bpf_map_lookup_elem(&routes, qk);
		*ans = hop ? *hop : 0xffffffff;
	}

	/* bloom filter: even numbers in, every inserted one found, odd ones mostly not */
	for (u64 i = 0; i < 100; i += 2)
		bloom_push += bpf_map_push_elem(&seen, &i, 0);
	for (u64 i = 0; i < 100; i++) {
		if (bpf_map_peek_elem(&seen, &i) == 0) {
			if (i & 1)
				bloom_false++;
			else
				bloom_hits++;
		}
	}

	/* bpf_snprintf and bpf_strncmp */
	{
		static const char fmt[] = "%d-%s!";
		char word[4] = "abc";	/* on the stack: its address is known at run time only */
		u64 args[2] = { -42, (u64)word };

		snp_ret = bpf_snprintf(text, sizeof(text), fmt, args, sizeof(args));
		snp_small_ret = bpf_snprintf(small, sizeof(small), fmt, args, sizeof(args));
		snp_bad = bpf_snprintf(text, sizeof(text), fmt, args, 12);
		cmp[0] = bpf_strncmp(text, sizeof(text), "-42-abc!");
		cmp[1] = bpf_strncmp(text, 3, "-43");
		cmp[2] = bpf_strncmp(text, 4, "-41x");
		cmp[3] = bpf_strncmp(text, 3, "-42zzz");
	}
	cgroup_ret[0] = bpf_current_task_under_cgroup(&cgroups, 1);
	cgroup_ret[1] = bpf_current_task_under_cgroup(&cgroups, 2);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
