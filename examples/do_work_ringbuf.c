// SPDX-License-Identifier: MIT
/* The arguments of every do_work() call, sent through a ring buffer as a struct record. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

struct record {
	u32 pid;
	char comm[16];
	s64 a;
	s64 b;
};

/*
 * BTF describes only the types the object's functions, globals and maps use.  This unused
 * constant (in .rodata, which is not printed at exit) puts struct record in it, so kprobesim
 * decodes each record as the struct whose size is the record's length.
 */
struct record *const record_type __attribute__((unused)) = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} records SEC(".maps");

SEC("kprobe/do_work")
int BPF_KPROBE(do_work_args, long a, long b)
{
	struct record *r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);

	if (!r)
		return 0;
	r->pid = bpf_get_current_pid_tgid();
	bpf_get_current_comm(r->comm, sizeof(r->comm));
	r->a = a;
	r->b = b;
	bpf_ringbuf_submit(r, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
