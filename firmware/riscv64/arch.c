// SPDX-License-Identifier: MIT
/* riscv64 port: M-mode kernel, U-mode user task, CLINT timer, NS16550 console, sifive_test exit. */
#include "kernel.h"

extern char trap_entry[];
extern char ret_from_trap[];
extern char kthread_trampoline[];
long c_addi16sp_first(long x);

/* What switch_to saves on the kernel stack of a task that is switched out. */
struct switch_frame {
	unsigned long ra;
	unsigned long s[12]; /* s0..s11 */
	unsigned long pad;
};
_Static_assert(sizeof(struct switch_frame) == 112, "riscv switch frame");

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

static inline u64 mmio_read64(unsigned long addr)
{
	return *(volatile u64 *)addr;
}

static inline void mmio_write64(unsigned long addr, u64 v)
{
	*(volatile u64 *)addr = v;
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
	/* direct-mode trap vector; mscratch == 0 means "trapped from M-mode" */
	__asm__ __volatile__("csrw mtvec, %0" : : "r"(trap_entry));
	__asm__ __volatile__("csrw mscratch, zero");
	__asm__ __volatile__("csrw mie, zero");
	/* PMP entry 0: NAPOT over the whole address space, RWX, so U-mode may run */
	__asm__ __volatile__("csrw pmpaddr0, %0" : : "r"(~0UL));
	__asm__ __volatile__("csrw pmpcfg0, %0" : : "r"(0x1fUL));
}

static void timer_program(void)
{
	mmio_write64(CLINT_MTIMECMP, mmio_read64(CLINT_MTIME) + TIMER_INTERVAL);
}

void arch_timer_init(void)
{
	timer_program();
	__asm__ __volatile__("csrs mie, %0" : : "r"(MIE_MTIE));
}

void arch_timer_rearm(void)
{
	timer_program();
}

int arch_trap_kind(struct pt_regs *regs, unsigned long cause)
{
	(void)regs;
	if (cause == ((1UL << 63) | 7))
		return TRAP_TIMER;
	if (cause == 8) /* ecall from U-mode */
		return TRAP_SYSCALL;
	return TRAP_OTHER;
}

int arch_from_user(const struct pt_regs *regs)
{
	return (regs->status & MSTATUS_MPP) == 0;
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
	unsigned long status;

	__asm__ __volatile__("csrr %0, mstatus" : "=r"(status));
	memset(regs, 0, sizeof(*regs));
	regs->epc = (unsigned long)entry;
	regs->sp = usp;
	regs->status = (status & ~(MSTATUS_MPP | MSTATUS_MIE)) | MSTATUS_MPIE; /* mret to U, MIE on */
	memset(f, 0, sizeof(*f));
	f->ra = (unsigned long)ret_from_trap;
	t->ksp = (unsigned long)f;
}

void arch_switch_prepare(struct task *next)
{
	(void)next; /* the kernel stack for traps from U-mode comes from mscratch (ret_from_trap) */
}

long arch_extra_target(long x)
{
	return c_addi16sp_first(x);
}
