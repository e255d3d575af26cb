// SPDX-License-Identifier: MIT
/*
 * ksnoop: trace a function's arguments and return value, in the manner of bpftool's ksnoop.
 * Which arguments are recorded is configured through the `config` map before the run (through
 * the API: obj.maps["config"].update(key, value)), the function at run time:
 *
 *   obj = machine.load_bpf("ksnoop.o", attach={"entry": "do_work", "ret": "do_work"})
 *   obj.maps["config"].update(b"\0\0\0\0", struct.pack("<II", 2, 0b11))  # 2 args: a, b
 *
 * Each call gives an "entry" record (pid, argument mask, the chosen arguments) and a "return"
 * record (pid, return value) in the ring buffer `events`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"	/* <bpf/bpf_tracing.h> + LoongArch for Debian's libbpf 1.1 */

#define MAX_ARGS 5

struct config {
	u32 nargs;	/* how many of the function's arguments exist */
	u32 mask;	/* bit i: record argument i + 1 */
};

struct event {
	u32 pid;
	u32 kind;	/* 0: entry, 1: return */
	u32 mask;	/* arguments recorded */
	u32 pad;
	u64 args[MAX_ARGS];
	s64 ret;
};
struct event *const event_type __attribute__((unused)) = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

static __always_inline u64 arg(struct pt_regs *ctx, int i)
{
	switch (i) {
	case 0: return PT_REGS_PARM1(ctx);
	case 1: return PT_REGS_PARM2(ctx);
	case 2: return PT_REGS_PARM3(ctx);
	case 3: return PT_REGS_PARM4(ctx);
	default: return PT_REGS_PARM5(ctx);
	}
}

SEC("kprobe")
int entry(struct pt_regs *ctx)
{
	u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct event *e;

	if (!cfg || !cfg->nargs)
		return 0;	/* not configured: trace nothing */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->pid = bpf_get_current_pid_tgid();
	for (int i = 0; i < MAX_ARGS; i++) {
		if (i < cfg->nargs && (cfg->mask & (1u << i))) {
			e->args[i] = arg(ctx, i);
			e->mask |= 1u << i;
		}
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("kretprobe")
int ret(struct pt_regs *ctx)
{
	u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct event *e;

	if (!cfg || !cfg->nargs)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->pid = bpf_get_current_pid_tgid();
	e->kind = 1;
	e->ret = PT_REGS_RC(ctx);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
