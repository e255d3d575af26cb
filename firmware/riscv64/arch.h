/* SPDX-License-Identifier: MIT */
/* riscv64 port: board constants, struct pt_regs (Linux layout), inline CPU helpers. */
#ifndef ARCH_H
#define ARCH_H

#include "types.h"

#define ARCH_NAME "riscv64"
#define ARCH_EXTRA_TARGET "c_addi16sp_first"

#define RAM_START 0x80000000UL
#define RAM_END 0x88000000UL

#define UART_BASE 0x10000000UL /* NS16550: THR +0, LSR +5 (bit 5: THR empty) */
#define EXIT_BASE 0x100000UL   /* sifive_test: 0x5555 pass, code << 16 | 0x3333 fail */
#define CLINT_MTIMECMP 0x2004000UL
#define CLINT_MTIME 0x200bff8UL

/* Timer period in mtime ticks (the simulator: executed instructions; QEMU: 10 MHz). */
#ifndef TIMER_INTERVAL
#define TIMER_INTERVAL 4000
#endif

#define MSTATUS_MIE (1UL << 3)
#define MSTATUS_MPIE (1UL << 7)
#define MSTATUS_MPP (3UL << 11)
#define MIE_MTIE (1UL << 7)

/* Trap frame saved by trap_entry: exactly Linux's riscv struct pt_regs (288 bytes). */
struct pt_regs {
	unsigned long epc;
	unsigned long ra, sp, gp, tp, t0, t1, t2, s0, s1;
	unsigned long a0, a1, a2, a3, a4, a5, a6, a7;
	unsigned long s2, s3, s4, s5, s6, s7, s8, s9, s10, s11;
	unsigned long t3, t4, t5, t6;
	unsigned long status, badaddr, cause, orig_a0;
};
_Static_assert(sizeof(struct pt_regs) == 288, "riscv pt_regs");

#define PT_REGS_PC(r) ((r)->epc)
#define PT_REGS_SYSNR(r) ((long)(r)->a7)
#define PT_REGS_ARG0(r) ((long)(r)->a0)
#define PT_REGS_ARG1(r) ((long)(r)->a1)
#define PT_REGS_ARG2(r) ((long)(r)->a2)
#define PT_REGS_RET(r) ((r)->a0)
#define PT_REGS_SYSCALL_ADVANCE(r) ((r)->epc += 4) /* past the ecall */

static inline unsigned long arch_irq_save(void)
{
	unsigned long flags;

	__asm__ __volatile__("csrrci %0, mstatus, 8" : "=r"(flags) : : "memory");
	return flags & MSTATUS_MIE;
}

static inline void arch_irq_restore(unsigned long flags)
{
	if (flags & MSTATUS_MIE)
		__asm__ __volatile__("csrsi mstatus, 8" : : : "memory");
}

static inline void arch_irq_enable(void)
{
	__asm__ __volatile__("csrsi mstatus, 8" : : : "memory");
}

/* User-mode system call: a7 = nr, a0..a2 = arguments, result in a0. */
static inline long arch_syscall3(long nr, long a, long b, long c)
{
	register long a7 __asm__("a7") = nr;
	register long a0 __asm__("a0") = a;
	register long a1 __asm__("a1") = b;
	register long a2 __asm__("a2") = c;

	__asm__ __volatile__("ecall" : "+r"(a0) : "r"(a7), "r"(a1), "r"(a2) : "memory");
	return a0;
}

#endif
