// SPDX-License-Identifier: MIT
/* loongarch64 port: PLV0 kernel in direct-address mode, PLV3 user task, constant timer,
 * NS16550 console, board exit register. */
#include "kernel.h"

extern char trap_entry[];
extern char ret_from_trap[];
extern char kthread_trampoline[];
long pcaddu18i_first(long x);

/* What switch_to saves on the kernel stack of a task that is switched out. */
struct switch_frame {
	unsigned long ra;
	unsigned long fp;
	unsigned long s[9]; /* s0..s8 */
	unsigned long pad;
};
_Static_assert(sizeof(struct switch_frame) == 96, "loongarch switch frame");

static inline u8 mmio_read8(unsigned long addr)
{
	return *(volatile u8 *)addr;
}

static inline void mmio_write8(unsigned long addr, u8 v)
{
	*(volatile u8 *)addr = v;
}

static inline void mmio_write32(unsigned long addr, u32 v)
{
	*(volatile u32 *)addr = v;
}

void arch_putc(char c)
{
	while (!(mmio_read8(UART_BASE + 5) & 0x20))
		;
	mmio_write8(UART_BASE, (u8)c);
}

__noreturn void arch_exit(int code)
{
	u32 v = code ? ((u32)code << 16) | 0x3333 : 0x5555;

	mmio_write32(EXIT_BASE, v);
	for (;;)
		;
}

void arch_init(void)
{
	/* one entry for every exception and interrupt (ECFG.VS = 0); SAVE0 == 0: "from PLV0" */
	csr_write(CSR_EENTRY, (unsigned long)trap_entry);
	csr_write(CSR_ECFG, 0);
	csr_write(CSR_SAVE0, 0);
}

void arch_timer_init(void)
{
	/* periodic constant timer: TCFG = InitVal (a multiple of 4) | Periodic | En */
	csr_write(CSR_TICLR, 1);
	csr_write(CSR_TCFG, ((unsigned long)TIMER_INTERVAL & ~3UL) | 3);
	csr_xchg(CSR_ECFG, ECFG_LIE_TI, ECFG_LIE_TI);
}

void arch_timer_rearm(void)
{
	csr_write(CSR_TICLR, 1); /* periodic: acknowledging is all it takes */
}

int arch_trap_kind(struct pt_regs *regs, unsigned long cause)
{
	unsigned long ecode = (cause >> 16) & 0x3f;

	(void)regs;
	if (ecode == 0 && (cause & ESTAT_IS_TI))
		return TRAP_TIMER;
	if (ecode == ECODE_SYS)
		return TRAP_SYSCALL;
	return TRAP_OTHER;
}

int arch_from_user(const struct pt_regs *regs)
{
	return (regs->csr_prmd & PRMD_PPLV) == 3;
}

void arch_task_init_kthread(struct task *t, void (*fn)(long), long arg)
{
	struct switch_frame *f = (struct switch_frame *)(t->kstack_top - sizeof(*f));

	memset(f, 0, sizeof(*f));
	f->ra = (unsigned long)kthread_trampoline;
	f->s[1] = (unsigned long)fn;
	f->s[2] = (unsigned long)arg;
	t->ksp = (unsigned long)f;
}

void arch_task_init_user(struct task *t, void (*entry)(void), unsigned long usp)
{
	struct pt_regs *regs = (struct pt_regs *)(t->kstack_top - sizeof(*regs));
	struct switch_frame *f = (struct switch_frame *)((unsigned long)regs - sizeof(*f));

	memset(regs, 0, sizeof(*regs));
	regs->csr_era = (unsigned long)entry;
	regs->regs[3] = usp;
	regs->csr_prmd = PRMD_PPLV | PRMD_PIE; /* ertn to PLV3 with interrupts on */
	memset(f, 0, sizeof(*f));
	f->ra = (unsigned long)ret_from_trap;
	t->ksp = (unsigned long)f;
}

void arch_switch_prepare(struct task *next)
{
	(void)next; /* the kernel stack for traps from PLV3 comes from SAVE0 (ret_from_trap) */
}

long arch_extra_target(long x)
{
	return pcaddu18i_first(x);
}
