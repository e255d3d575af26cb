/* The firmware's struct task read through a local layout that differs from the kernel's:
 * members reordered, one added, one the kernel does not have, a ___flavor suffix, and an enum
 * whose values differ from the kernel's. CO-RE must read the kernel's fields. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task___v2 {
	long exit_code;
	u64 added_field;
	u32 flags;
	char comm[16];
	u32 state;
	u32 pid;
	u32 not_in_kernel;
} __attribute__((preserve_access_index));

enum task_state___v2 { TASK_DEAD___v2 = 100, TASK_BLOCKED___v2 = 200, TASK_RUNNABLE___v2 = 300,
		       TASK_ZOMBIE___v2 = 400 };

struct rec {
	u64 pid, flags, state, exit_code, exists_missing, exists_flags, blocked, runnable,
	    zombie_exists, size, flags_size, matches;
	char comm[16];
};
struct rec *const rec_type __attribute__((unused)) = 0;
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 64 * 1024); } recs SEC(".maps");

SEC("kprobe/do_work")
int on_work(void *ctx)
{
	struct task___v2 *t = (void *)bpf_get_current_task();
	struct rec *r = bpf_ringbuf_reserve(&recs, sizeof(*r), 0);

	if (!r)
		return 0;
	r->pid = BPF_CORE_READ(t, pid);
	r->flags = BPF_CORE_READ(t, flags);
	r->state = BPF_CORE_READ(t, state);
	r->exit_code = BPF_CORE_READ(t, exit_code);
	r->exists_missing = bpf_core_field_exists(t->not_in_kernel);
	r->exists_flags = bpf_core_field_exists(t->flags);
	r->blocked = bpf_core_enum_value(enum task_state___v2, TASK_BLOCKED___v2);
	r->runnable = bpf_core_enum_value(enum task_state___v2, TASK_RUNNABLE___v2);
	r->zombie_exists = bpf_core_enum_value_exists(enum task_state___v2, TASK_ZOMBIE___v2);
	r->size = bpf_core_type_size(struct task___v2);
	r->flags_size = bpf_core_field_size(t->flags);
	r->matches = bpf_core_type_matches(struct task___v2);
	bpf_core_read_str(r->comm, sizeof(r->comm), &t->comm);
	if (bpf_core_field_exists(t->not_in_kernel))
		r->exit_code = BPF_CORE_READ(t, not_in_kernel);  /* guarded: never runs */
	bpf_ringbuf_submit(r, 0);
	return 0;
}

#ifdef UNGUARDED
SEC("kprobe/do_work")
int bad_read(void *ctx)
{
	struct task___v2 *t = (void *)bpf_get_current_task();

	return BPF_CORE_READ(t, not_in_kernel);
}
#endif

char LICENSE[] SEC("license") = "GPL";
