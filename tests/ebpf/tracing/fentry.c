/* fentry/fexit programs on the bundled firmware: arguments from the functions' BTF prototypes
 * through BPF_PROG, return values at fexit, struct fields read directly through BTF-typed
 * pointers (an argument and bpf_get_current_task_btf()). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct event {
	u64 kind; /* 1 do_work entry, 2 do_work exit, 3 wake_up entry, 4 fib exit */
	u64 a, b, ret;
	u32 pid, cur_pid;
	char comm[16];
};
struct event *const event_type __attribute__((unused)) = 0;
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 20); } events SEC(".maps");

static __always_inline int emit(u64 kind, u64 a, u64 b, u64 ret)
{
	struct task *cur = (void *)bpf_get_current_task_btf();
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return 0;
	e->kind = kind;
	e->a = a;
	e->b = b;
	e->ret = ret;
	e->pid = 0;
	e->cur_pid = cur->pid; /* a plain load through a BTF-typed pointer */
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("fentry/do_work")
int BPF_PROG(work_enter, long a, long b)
{
	return emit(1, a, b, 0);
}

SEC("fexit/do_work")
int BPF_PROG(work_exit, long a, long b, long ret)
{
	return emit(2, a, b, ret);
}

SEC("fentry/wake_up")
int BPF_PROG(wake, struct task *t)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return 0;
	e->kind = 3;
	e->a = (u64)t;
	e->b = e->ret = 0;
	e->pid = t->pid;
	e->cur_pid = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		e->comm[i] = t->comm[i];
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("fexit/fib")
int BPF_PROG(fib_exit, long n, long ret)
{
	return emit(4, n, 0, ret);
}
