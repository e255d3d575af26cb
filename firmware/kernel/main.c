// SPDX-License-Identifier: MIT
/*
 * kmain: boot self-tests of the probe targets, then the scheduler phase (three kthreads computing
 * while the timer preempts them), then the user phase (the init task's system calls), then the
 * summary.  Every phase prints only when nothing else runs, so the transcript does not depend on
 * when the timer fires.
 */
#include "kernel.h"

u64 kernel_checksum;
long pcrel_value = 0x1234567890abcdefL;

volatile int kernel_exiting;
static int first_failed;
static int checks_run;

#define FNV_OFFSET 0xcbf29ce484222325UL
#define FNV_PRIME 0x100000001b3UL

__noreturn void kernel_exit(int code)
{
	arch_irq_save();
	kernel_exiting = 1;
	arch_exit(code);
}

void checksum_add(u64 v)
{
	for (int i = 0; i < 8; i++) {
		kernel_checksum ^= (v >> (8 * i)) & 0xff;
		kernel_checksum *= FNV_PRIME;
	}
}

static void check(int id, int ok, const char *what)
{
	checks_run++;
	if (!ok) {
		printk("FAIL: check %d (%s)\n", id, what);
		if (!first_failed)
			first_failed = id;
	}
}

/* ---- the kthreads: each computes into its own result slot; nothing shared, nothing printed ---- */

struct kwork_result {
	long a;
	long b;
	long c;
	long extra;
};

static struct kwork_result results[NR_KTHREADS];
static long kwork_src[256];
static long kwork_dst[256];
static char kwork_name[64];

/* kworker/0: do_work over a range, plus the PC-relative targets. */
static void kworker0(long arg)
{
	struct kwork_result *r = &results[arg];
	long acc = 0;

	for (long i = 0; i < 300; i++)
		acc += do_work(i, 7 * i + 3);
	r->a = acc;
	r->b = 0;
	for (long i = 0; i < 50; i++)
		r->b += pcrel_load() == pcrel_value && pcrel_addr() == (void *)&pcrel_value;
	r->c = fib(12);
	r->extra = arch_extra_target(arg);
}

/* kworker/1: recursion. */
static void kworker1(long arg)
{
	struct kwork_result *r = &results[arg];

	r->a = fib(16);
	r->b = fib(10) + fib(11);
	r->c = 0;
	for (long i = 0; i < 40; i++)
		r->c += ARCH_CALL_FIRST(i) + jump_first(i) + indirect_first(indirect_target, i);
	r->extra = arch_extra_target(arg);
}

/* kworker/2: memory: memcpy, sum_array, strlen; yields now and then on its own. */
static void kworker2(long arg)
{
	struct kwork_result *r = &results[arg];
	static const char *const words[] = { "probe", "kretprobe", "ebpf", "riscv64",
					     "loongarch64", "x86_64", "schedule" };

	for (long i = 0; i < 256; i++)
		kwork_src[i] = do_work(i, arg) & 0xffff;
	r->a = 0;
	for (long round = 0; round < 8; round++) {
		memcpy(kwork_dst, kwork_src, sizeof(kwork_src));
		kwork_dst[round] += round;
		r->a += sum_array(kwork_dst, 256);
		if (round % 3 == 2)
			schedule();
	}
	r->b = 0;
	for (unsigned long i = 0; i < ARRAY_SIZE(words); i++) {
		size_t n = strlen(words[i]);

		memcpy(kwork_name, words[i], n + 1);
		r->b = r->b * 16 + (long)strlen(kwork_name);
	}
	r->c = 0;
	for (long i = -20; i < 20; i++)
		r->c += ARCH_BRANCH_FIRST(i & 3 ? i : 0);
	r->extra = arch_extra_target(arg);
}

/* ---- boot self-tests: each probe target once, with known answers ---- */

static void boot_tests(void)
{
	static const long arr[] = { 3, 1, 4, 1, 5, 9, 2, 6, 5, 3 };
	char buf[32];
	long v;

	v = fib(12);
	printk("fib(12) = %ld\n", v);
	check(1, v == 144, "fib");
	checksum_add((u64)v);

	v = do_work(1, 2);
	printk("do_work(1, 2) = %ld\n", v);
	check(2, v == 13445, "do_work");
	checksum_add((u64)v);

	v = sum_array(arr, (long)ARRAY_SIZE(arr));
	printk("sum_array(10) = %ld\n", v);
	check(3, v == 39, "sum_array");
	checksum_add((u64)v);

	memset(buf, 0, sizeof(buf));
	memcpy(buf, "hello, kprobes", 15);
	v = (long)strlen(buf);
	printk("strlen(\"%s\") = %ld\n", buf, v);
	check(4, v == 14, "memcpy/strlen");
	checksum_add((u64)v);

	v = pcrel_load();
	printk("pcrel_load() = %lx\n", v);
	check(5, v == pcrel_value, "pcrel_load");
	checksum_add((u64)v);

	v = pcrel_addr() == (void *)&pcrel_value;
	printk("pcrel_addr() == &pcrel_value: %s\n", v ? "yes" : "no");
	check(6, v, "pcrel_addr");
	checksum_add((u64)v);

	v = ARCH_CALL_FIRST(5);
	printk("call_first(5) = %ld\n", v);
	check(7, v == 16, "call_first");
	checksum_add((u64)v);

	v = ARCH_BRANCH_FIRST(0) * 1000 + ARCH_BRANCH_FIRST(21);
	printk("branch_first(0), branch_first(21) = %ld, %ld\n", v / 1000, v % 1000);
	check(8, v == 100042, "branch_first");
	checksum_add((u64)v);

	v = jump_first(37);
	printk("jump_first(37) = %ld\n", v);
	check(9, v == 42, "jump_first");
	checksum_add((u64)v);

	v = indirect_first(indirect_target, 6);
	printk("indirect_first(indirect_target, 6) = %ld\n", v);
	check(10, v == 43, "indirect_first");
	checksum_add((u64)v);

	v = arch_extra_target(100);
	printk("arch: %s(100) -> %ld\n", ARCH_EXTRA_TARGET, v);
	check(11, v == 142, "arch extra target");
	checksum_add((u64)v);

	v = __stop_kprobe_blacklist - __start_kprobe_blacklist;
	check(12, v >= 4, "kprobe_blacklist");
}

static void print_results(void)
{
	for (int i = 0; i < NR_KTHREADS; i++) {
		struct task *t = &tasks[2 + i];
		struct kwork_result *r = &results[i];

		printk("%s: a=%ld b=%ld c=%ld extra=%ld\n", t->comm, r->a, r->b, r->c, r->extra);
		checksum_add((u64)r->a);
		checksum_add((u64)r->b);
		checksum_add((u64)r->c);
		checksum_add((u64)r->extra);
		check(20 + i, t->state == TASK_DEAD && t->exit_code == 0, "kthread exited");
		check(23 + i, r->extra == 42 + i, "kthread extra target");
	}
	check(26, results[0].b == 50 && results[0].c == 144, "kworker/0 pcrel");
	check(27, results[1].a == 987 && results[1].b == 144, "kworker/1 fib");
}

static int kthreads_dead(void)
{
	int dead = 0;

	for (int i = 0; i < NR_KTHREADS; i++)
		dead += READ_ONCE(tasks[2 + i].state) == TASK_DEAD;
	return dead;
}

void kmain(void)
{
	static const char *const names[NR_KTHREADS] = { "kworker/0", "kworker/1", "kworker/2" };
	static void (*const fns[NR_KTHREADS])(long) = { kworker0, kworker1, kworker2 };

	kernel_checksum = FNV_OFFSET;
	sched_init();
	arch_init();
	printk("kprobesim firmware: booting\n");
	printk("arch: %s\n", ARCH_NAME);

	boot_tests();
	printk("boot tests done\n");

	for (int i = 0; i < NR_KTHREADS; i++)
		kthread_create(2 + i, names[i], fns[i], i);
	task_setup_user(1, "init", user_main, (unsigned long)&user_stack[USER_STACK_SIZE]);
	arch_timer_init();
	arch_irq_enable();

	/* Phase 1: the kthreads run (preempted by the timer); the idle task waits for them. */
	while (kthreads_dead() < NR_KTHREADS)
		schedule();
	printk("kthreads done\n");
	print_results();

	/* Phase 2: the user task runs alone and prints through write(); idle waits for its exit. */
	wake_up(&tasks[1]);
	while (READ_ONCE(tasks[1].state) != TASK_DEAD)
		schedule();
	printk("init exited with code %ld\n", tasks[1].exit_code);
	check(30, tasks[1].exit_code == 0, "user task self-checks");
	check(31, syscall_count == 11, "syscall count");
	check(32, user_mode_syscalls == syscall_count, "syscalls came from user mode");
	printk("syscalls: %lu\n", syscall_count);
	checksum_add(syscall_count);
	checksum_add((u64)tasks[1].exit_code);

	/* Phase 3: summary and exit. */
	printk("checks: %d run, %s\n", checks_run, first_failed ? "FAILED" : "all passed");
	printk("checksum: %016lx\n", kernel_checksum);
	kernel_exit(first_failed);
}
