// SPDX-License-Identifier: MIT
/*
 * The user-mode task ("init", pid 1).  It runs in U-mode / PLV3 / ring 3 and reaches the kernel
 * only through system calls (arch_syscall3 in arch.h: riscv ecall, loongarch syscall 0,
 * x86 int $0x80).  It formats its own output and calls no kernel function.  Its exit code is 0
 * when its own checks pass, otherwise the number of the first failed one.
 *
 * Its code is the user program the simulator's uprobes name "init": every function here is in
 * the section .user.text, which the linker scripts place on pages of their own between
 * __user_text_start and __user_text_end (no kernel code shares them).  The helpers are kept out
 * of line (__user) so each one is a symbol a uprobe can name; u_rsum recurses 40 deep.
 */
#include "kernel.h"

u8 user_stack[USER_STACK_SIZE] __aligned(16) __section(".bss.stack");

/* A function of the user program: in .user.text, never inlined, kept in the symbol table. */
#define __user __attribute__((noinline, used, section(".user.text")))

/* Successful u_write calls; read and written PC-relatively (x86: RIP-relative). */
static long u_writes;

static __user long u_write(const char *s, long n)
{
	long r = arch_syscall3(SYS_write, 1, (long)s, n);

	if (r == n)
		u_writes++;
	return r;
}

static __user long u_strlen(const char *s)
{
	long n = 0;

	while (s[n])
		n++;
	return n;
}

static __user void u_puts(const char *s)
{
	u_write(s, u_strlen(s));
}

/* Append the decimal form of v to buf at *pos. */
static __user void u_append_num(char *buf, long *pos, long v)
{
	char tmp[24];
	int n = 0;
	unsigned long mag = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;

	do {
		tmp[n++] = (char)('0' + mag % 10);
		mag /= 10;
	} while (mag);
	if (v < 0)
		buf[(*pos)++] = '-';
	while (n)
		buf[(*pos)++] = tmp[--n];
}

static __user void u_append_str(char *buf, long *pos, const char *s)
{
	while (*s)
		buf[(*pos)++] = *s++;
}

/* 1 + 2 + ... + n, recursively (n deep: the uretprobe depth test). */
static __user long u_rsum(long n)
{
	long r;

	if (n <= 0)
		return 0;
	r = u_rsum(n - 1);
	__asm__ __volatile__("" : "+r"(r)); /* keep the recursion: no accumulator loop */
	return n + r;
}

/* Print "init: <label> = <v>\n" with one write. */
static __user void u_report(const char *label, long v)
{
	char line[96];
	long pos = 0;

	u_append_str(line, &pos, "init: ");
	u_append_str(line, &pos, label);
	u_append_str(line, &pos, " = ");
	u_append_num(line, &pos, v);
	line[pos++] = '\n';
	u_write(line, pos);
}

__user void user_main(void)
{
	long failed = 0;
	long v;

	u_puts("init: hello from user mode\n");

	v = arch_syscall3(SYS_getpid, 0, 0, 0);
	u_report("getpid()", v);
	if (v != 1 && !failed)
		failed = 1;

	v = arch_syscall3(SYS_sched_yield, 0, 0, 0);
	u_report("sched_yield()", v);
	if (v != 0 && !failed)
		failed = 2;

	v = arch_syscall3(SYS_write, 7, (long)"x", 1);
	u_report("write(7, ...)", v);
	if (v != -EBADF && !failed)
		failed = 3;

	v = arch_syscall3(999, 0, 0, 0);
	u_report("syscall(999)", v);
	if (v != -ENOSYS && !failed)
		failed = 4;

	v = 0;
	for (long i = 1; i <= 100; i++)
		v += i;
	u_report("sum(1..100)", v);
	if (v != 5050 && !failed)
		failed = 5;
	if (u_rsum(40) != 820 && !failed)
		failed = 6;
	if (u_writes != 6 && !failed)
		failed = 7;

	arch_syscall3(SYS_exit, failed, 0, 0);
	for (;;)
		;
}
