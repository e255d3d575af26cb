/* SPDX-License-Identifier: MIT */
/* x86_64 port: board constants, struct pt_regs (Linux layout), inline CPU helpers. */
#ifndef ARCH_H
#define ARCH_H

#include "types.h"

#define ARCH_NAME "x86_64"
#define ARCH_EXTRA_TARGET "pushf_first"

#define RAM_START 0x0UL
#define RAM_END 0x8000000UL

#define COM1 0x3f8	/* NS16550: THR +0, LSR +5 (bit 5: THR empty) */
#define EXIT_PORT 0xf4	/* out v: the run ends with exit status v */

/* PIT channel 0 reload value (the simulator: executed instructions); at most 65535. */
#ifndef TIMER_INTERVAL
#define TIMER_INTERVAL 4000
#endif

#define X86_EFLAGS_TF (1UL << 8)
#define X86_EFLAGS_IF (1UL << 9)

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define USER_DS (0x18 | 3)
#define USER_CS (0x20 | 3)
#define TSS_SEL 0x28

#define VEC_TIMER 32
#define VEC_SYSCALL 0x80

/* Trap frame built by the CPU and trap_common: exactly Linux's x86_64 struct pt_regs (168 bytes). */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di;
	unsigned long orig_ax; /* the error code (0 when the vector has none) */
	unsigned long ip, cs, flags, sp, ss;
};
_Static_assert(sizeof(struct pt_regs) == 168, "x86_64 pt_regs");

#define PT_REGS_PC(r) ((r)->ip)
#define PT_REGS_SYSNR(r) ((long)(r)->ax)
#define PT_REGS_ARG0(r) ((long)(r)->di)
#define PT_REGS_ARG1(r) ((long)(r)->si)
#define PT_REGS_ARG2(r) ((long)(r)->dx)
#define PT_REGS_RET(r) ((r)->ax)
#define PT_REGS_SYSCALL_ADVANCE(r) ((void)(r)) /* int $0x80 already points past itself */

static inline void outb(u16 port, u8 v)
{
	__asm__ __volatile__("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline u8 inb(u16 port)
{
	u8 v;

	__asm__ __volatile__("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

static inline unsigned long arch_read_flags(void)
{
	unsigned long flags;

	__asm__ __volatile__("pushfq\n\tpopq %0" : "=r"(flags) : : "memory");
	return flags;
}

static inline unsigned long arch_irq_save(void)
{
	unsigned long flags = arch_read_flags();

	__asm__ __volatile__("cli" : : : "memory");
	return flags & X86_EFLAGS_IF;
}

static inline void arch_irq_restore(unsigned long flags)
{
	if (flags & X86_EFLAGS_IF)
		__asm__ __volatile__("sti" : : : "memory");
}

static inline void arch_irq_enable(void)
{
	__asm__ __volatile__("sti" : : : "memory");
}

/* User-mode system call: int $0x80 with rax = nr, rdi, rsi, rdx = arguments, result in rax. */
static inline long arch_syscall3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ __volatile__("int $0x80"
			     : "=a"(ret)
			     : "a"(nr), "D"(a), "S"(b), "d"(c)
			     : "memory");
	return ret;
}

/* branch_first's first instruction (je) tests the flags its caller leaves: branch_first_call
 * sets them from x (test %rdi, %rdi) and calls it. */
long branch_first_call(long x);
#define ARCH_BRANCH_FIRST(x) branch_first_call(x)

#endif
