/* SPDX-License-Identifier: MIT */
/* loongarch64 port: board constants, struct pt_regs (Linux layout), inline CPU helpers. */
#ifndef ARCH_H
#define ARCH_H

#include "types.h"

#define ARCH_NAME "loongarch64"
#define ARCH_EXTRA_TARGET "pcaddu18i_first"

#define RAM_START 0x0UL
#define RAM_END 0x10000000UL

#define UART_BASE 0x1fe001e0UL /* NS16550 byte registers: THR +0, LSR +5 (bit 5: THR empty) */
#define EXIT_BASE 0x100d0000UL /* board-defined, sifive_test semantics */

/* Timer period in constant-timer ticks (the simulator: executed instructions; QEMU: 100 MHz). */
#ifndef TIMER_INTERVAL
#define TIMER_INTERVAL 4000
#endif

/* CSR numbers */
#define CSR_CRMD 0x0
#define CSR_PRMD 0x1
#define CSR_EUEN 0x2
#define CSR_ECFG 0x4
#define CSR_ESTAT 0x5
#define CSR_ERA 0x6
#define CSR_BADV 0x7
#define CSR_EENTRY 0xc
#define CSR_CPUID 0x20
#define CSR_SAVE0 0x30
#define CSR_TCFG 0x41
#define CSR_TVAL 0x42
#define CSR_TICLR 0x44

#define CRMD_IE (1UL << 2)
#define PRMD_PPLV 3UL
#define PRMD_PIE (1UL << 2)
#define ECFG_LIE_TI (1UL << 11)
#define ESTAT_IS_TI (1UL << 11)
#define ECODE_SYS 0xb

#define __stringify_1(x) #x
#define __stringify(x) __stringify_1(x)

#define csr_read(csr)                                                                          \
	({                                                                                     \
		unsigned long __v;                                                             \
		__asm__ __volatile__("csrrd %0, " __stringify(csr) : "=r"(__v) : : "memory"); \
		__v;                                                                           \
	})

#define csr_write(csr, val)                                                                    \
	do {                                                                                   \
		unsigned long __v = (val);                                                     \
		__asm__ __volatile__("csrwr %0, " __stringify(csr) : "+r"(__v) : : "memory"); \
	} while (0)

/*
 * CSR[csr] = (CSR[csr] & ~mask) | (val & mask), returns the old value.  csrxchg reads rj = 0 as
 * csrrd and rj = 1 as csrwr, so the mask is pinned to $t0.
 */
#define csr_xchg(csr, val, mask)                                                               \
	({                                                                                     \
		unsigned long __v = (val);                                                     \
		register unsigned long __m __asm__("$t0") = (mask);                            \
		__asm__ __volatile__("csrxchg %0, %1, " __stringify(csr)                       \
				     : "+r"(__v)                                               \
				     : "r"(__m)                                                \
				     : "memory");                                              \
		__v;                                                                           \
	})

/* Trap frame saved by trap_entry: exactly Linux's loongarch struct pt_regs (320 bytes). */
struct pt_regs {
	unsigned long regs[32];
	unsigned long orig_a0;
	unsigned long csr_era;
	unsigned long csr_badvaddr;
	unsigned long csr_crmd;
	unsigned long csr_prmd;
	unsigned long csr_euen;
	unsigned long csr_ecfg;
	unsigned long csr_estat;
};
_Static_assert(sizeof(struct pt_regs) == 320, "loongarch pt_regs");

#define PT_REGS_PC(r) ((r)->csr_era)
#define PT_REGS_SYSNR(r) ((long)(r)->regs[11])
#define PT_REGS_ARG0(r) ((long)(r)->regs[4])
#define PT_REGS_ARG1(r) ((long)(r)->regs[5])
#define PT_REGS_ARG2(r) ((long)(r)->regs[6])
#define PT_REGS_RET(r) ((r)->regs[4])
#define PT_REGS_SYSCALL_ADVANCE(r) ((r)->csr_era += 4) /* past the syscall */

static inline unsigned long arch_irq_save(void)
{
	return csr_xchg(CSR_CRMD, 0, CRMD_IE) & CRMD_IE;
}

static inline void arch_irq_restore(unsigned long flags)
{
	csr_xchg(CSR_CRMD, flags, CRMD_IE);
}

static inline void arch_irq_enable(void)
{
	csr_xchg(CSR_CRMD, CRMD_IE, CRMD_IE);
}

/* User-mode system call: a7 = nr, a0..a2 = arguments, result in a0. */
static inline long arch_syscall3(long nr, long a, long b, long c)
{
	register long a7 __asm__("$a7") = nr;
	register long a0 __asm__("$a0") = a;
	register long a1 __asm__("$a1") = b;
	register long a2 __asm__("$a2") = c;

	__asm__ __volatile__("syscall 0" : "+r"(a0) : "r"(a7), "r"(a1), "r"(a2) : "memory");
	return a0;
}

/* How C calls call_first: through call_first_call, which passes the return address in $t8. */
long call_first_call(long x);
#define ARCH_CALL_FIRST(x) call_first_call(x)

#endif
