/* SPDX-License-Identifier: MIT */
/* Prototypes shared by the kernel C files and the per-arch interface every port implements. */
#ifndef KERNEL_KERNEL_H
#define KERNEL_KERNEL_H

#include "types.h"
#include "task.h"
#include "arch.h" /* firmware/<arch>/arch.h: struct pt_regs, inline CPU helpers, constants */

/* ---- syscalls (same numbers on every arch) ---- */
#define SYS_write 64
#define SYS_exit 93
#define SYS_sched_yield 124
#define SYS_getpid 172

#define EBADF 9
#define EFAULT 14
#define ENOSYS 38

/* ---- trap classification (arch_trap_kind) ---- */
enum trap_kind {
	TRAP_OTHER = 0,
	TRAP_TIMER = 1,
	TRAP_SYSCALL = 2,
};

/* ---- lib.c ---- */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
void console_write(const char *s, size_t n);
void printk(const char *fmt, ...);

/* ---- work.c: C probe targets ---- */
long do_work(long a, long b);
long fib(long n);
long sum_array(const long *a, long n);
long indirect_target(void *self, long x);

/* ---- sched.c ---- */
extern volatile int need_resched;
extern volatile u64 jiffies;
void schedule(void);
void sched_init(void);
void kthread_create(int idx, const char *name, void (*fn)(long), long arg);
void task_setup_user(int idx, const char *name, void (*entry)(void), unsigned long usp);
void wake_up(struct task *t);
__noreturn void task_exit(long code);
void kthread_entry(void (*fn)(long), long arg);

/* ---- trap.c ---- */
extern u64 syscall_count;
extern u64 user_mode_syscalls;
void trap_handler(struct pt_regs *regs, unsigned long cause);
void timer_interrupt(void);
long handle_syscall(long nr, long a0, long a1, long a2);

/* ---- main.c ---- */
extern u64 kernel_checksum;
extern volatile int kernel_exiting;
__noreturn void kernel_exit(int code); /* sets kernel_exiting, then arch_exit(code) */
void checksum_add(u64 v);
void kmain(void);

/* ---- user.c ---- */
void user_main(void);
extern u8 user_stack[];
#define USER_STACK_SIZE 4096

/* ---- assembly probe targets (firmware/<arch>/probes.S) ---- */
extern long pcrel_value;
long pcrel_load(void);
void *pcrel_addr(void);
long call_first(long x);         /* 3 * x + 1 */
long branch_first(long x);       /* x == 0 ? 100 : 2 * x */
long jump_first(long x);         /* x + 5 */
long indirect_first(long (*fn)(void *self, long x), long x); /* tail call: fn(fn, x) */

/* ---- per-arch interface (firmware/<arch>/arch.c and entry.S) ---- */
void arch_init(void);
void arch_timer_init(void);
void arch_timer_rearm(void);
void arch_putc(char c);
__noreturn void arch_exit(int code);
int arch_trap_kind(struct pt_regs *regs, unsigned long cause);
int arch_from_user(const struct pt_regs *regs);
void arch_task_init_kthread(struct task *t, void (*fn)(long), long arg);
void arch_task_init_user(struct task *t, void (*entry)(void), unsigned long usp);
void arch_switch_prepare(struct task *next);
long arch_extra_target(long x); /* the arch-specific probe target, normalised to x + 42 */
void switch_to(unsigned long *prev_ksp, unsigned long next_ksp);

/* How C calls the assembly targets: an arch whose target needs help from its caller (x86
 * branch_first branches on flags the caller sets; loongarch call_first returns through $t8
 * because its first instruction, bl, overwrites ra) defines these to an assembly stub. */
#ifndef ARCH_CALL_FIRST
#define ARCH_CALL_FIRST(x) call_first(x)
#endif
#ifndef ARCH_BRANCH_FIRST
#define ARCH_BRANCH_FIRST(x) branch_first(x)
#endif

extern char boot_stack_top[];
extern const unsigned long __start_kprobe_blacklist[];
extern const unsigned long __stop_kprobe_blacklist[];

#endif
