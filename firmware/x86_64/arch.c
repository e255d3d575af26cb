// SPDX-License-Identifier: MIT
/* x86_64 port: ring-0 kernel in flat long mode, ring-3 user task, own GDT/TSS/IDT, PIT timer,
 * COM1 console, exit port. */
#include "kernel.h"

extern const unsigned long trap_stub_table[]; /* entry stubs of vectors 0..32, then 0x80 */
extern char ret_from_trap[];
extern char kthread_trampoline[];
long pushf_first(void);

/* What switch_to saves on the kernel stack of a task that is switched out. */
struct switch_frame {
	unsigned long r15, r14, r13, r12, bx, bp;
	unsigned long ret; /* switch_to's return address */
	unsigned long pad;
};

struct tss {
	u32 reserved0;
	u64 rsp0, rsp1, rsp2;
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
} __attribute__((packed));
_Static_assert(sizeof(struct tss) == 104, "x86_64 tss");

struct idt_gate {
	u16 offset_lo;
	u16 selector;
	u8 ist;
	u8 type_attr;
	u16 offset_mid;
	u32 offset_hi;
	u32 reserved;
};
_Static_assert(sizeof(struct idt_gate) == 16, "x86_64 idt gate");

struct desc_ptr {
	u16 limit;
	u64 base;
} __attribute__((packed));

static struct tss tss __aligned(16);
static struct idt_gate idt[256] __aligned(16);
static u64 gdt[7] __aligned(16) = {
	0,
	0x00af9a000000ffffUL, /* 0x08 kernel code, 64-bit, DPL 0 */
	0x00cf92000000ffffUL, /* 0x10 kernel data, DPL 0 */
	0x00cff2000000ffffUL, /* 0x18 user data, DPL 3 */
	0x00affa000000ffffUL, /* 0x20 user code, 64-bit, DPL 3 */
	0,		      /* 0x28 TSS (two slots), filled in by arch_init */
	0,
};

void arch_putc(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (u8)c);
}

__noreturn void arch_exit(int code)
{
	outb(EXIT_PORT, (u8)code);
	for (;;)
		__asm__ __volatile__("cli; hlt");
}

static void set_gate(int vec, unsigned long handler, u8 type_attr)
{
	struct idt_gate *g = &idt[vec];

	g->offset_lo = (u16)handler;
	g->selector = KERNEL_CS;
	g->ist = 0;
	g->type_attr = type_attr;
	g->offset_mid = (u16)(handler >> 16);
	g->offset_hi = (u32)(handler >> 32);
	g->reserved = 0;
}

static void pic_init(void)
{
	outb(0x20, 0x11); /* ICW1: edge, cascade, ICW4 */
	outb(0xa0, 0x11);
	outb(0x21, 0x20); /* ICW2: IRQ0-7 -> vectors 32-39 */
	outb(0xa1, 0x28); /*       IRQ8-15 -> vectors 40-47 */
	outb(0x21, 0x04); /* ICW3 */
	outb(0xa1, 0x02);
	outb(0x21, 0x01); /* ICW4: 8086 mode */
	outb(0xa1, 0x01);
	outb(0x21, 0xfe); /* only IRQ0 (the PIT) */
	outb(0xa1, 0xff);
}

void arch_init(void)
{
	unsigned long base = (unsigned long)&tss;
	struct desc_ptr gdtr = { sizeof(gdt) - 1, (u64)gdt };
	struct desc_ptr idtr = { sizeof(idt) - 1, (u64)idt };

	tss.rsp0 = (u64)boot_stack_top;
	tss.iomap_base = sizeof(tss); /* no I/O bitmap: ring 3 has no port access */
	/* 64-bit available TSS descriptor: limit 103, type 9, present */
	gdt[5] = (sizeof(tss) - 1) | ((base & 0xffffffUL) << 16) | (0x89UL << 40) |
		 (((base >> 24) & 0xffUL) << 56);
	gdt[6] = base >> 32;

	__asm__ __volatile__("lgdt %0" : : "m"(gdtr) : "memory");
	/* reload CS with a far return, then the data segments */
	__asm__ __volatile__("pushq %[cs]\n\t"
			     "leaq 1f(%%rip), %%rax\n\t"
			     "pushq %%rax\n\t"
			     "lretq\n"
			     "1:\n\t"
			     "movl %[ds], %%eax\n\t"
			     "movl %%eax, %%ds\n\t"
			     "movl %%eax, %%es\n\t"
			     "movl %%eax, %%ss\n\t"
			     "movl %%eax, %%fs\n\t"
			     "movl %%eax, %%gs"
			     :
			     : [cs] "i"(KERNEL_CS), [ds] "i"(KERNEL_DS)
			     : "rax", "memory");
	__asm__ __volatile__("ltr %w0" : : "r"(TSS_SEL) : "memory");

	for (int v = 0; v <= VEC_TIMER; v++)
		set_gate(v, trap_stub_table[v], 0x8e); /* interrupt gate, DPL 0 */
	set_gate(VEC_SYSCALL, trap_stub_table[VEC_TIMER + 1], 0xee); /* DPL 3: int $0x80 */
	__asm__ __volatile__("lidt %0" : : "m"(idtr) : "memory");
	pic_init();
}

void arch_timer_init(void)
{
	outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2 (rate generator) */
	outb(0x40, TIMER_INTERVAL & 0xff);
	outb(0x40, (TIMER_INTERVAL >> 8) & 0xff);
}

void arch_timer_rearm(void)
{
	outb(0x20, 0x20); /* EOI; the PIT reloads by itself */
}

int arch_trap_kind(struct pt_regs *regs, unsigned long cause)
{
	(void)regs;
	if (cause == VEC_TIMER)
		return TRAP_TIMER;
	if (cause == VEC_SYSCALL)
		return TRAP_SYSCALL;
	return TRAP_OTHER;
}

int arch_from_user(const struct pt_regs *regs)
{
	return (regs->cs & 3) == 3;
}

void arch_task_init_kthread(struct task *t, void (*fn)(long), long arg)
{
	struct switch_frame *f = (struct switch_frame *)(t->kstack_top - sizeof(*f));

	memset(f, 0, sizeof(*f));
	f->ret = (unsigned long)kthread_trampoline;
	f->r12 = (unsigned long)fn;
	f->r13 = (unsigned long)arg;
	t->ksp = (unsigned long)f;
}

void arch_task_init_user(struct task *t, void (*entry)(void), unsigned long usp)
{
	struct pt_regs *regs = (struct pt_regs *)(t->kstack_top - sizeof(*regs));
	struct switch_frame *f = (struct switch_frame *)((unsigned long)regs - sizeof(*f) + 8);

	memset(regs, 0, sizeof(*regs));
	regs->ip = (unsigned long)entry;
	regs->cs = USER_CS;
	regs->flags = X86_EFLAGS_IF | 0x2;
	regs->sp = usp;
	regs->ss = USER_DS;
	memset(f, 0, sizeof(*f) - 8);
	f->ret = (unsigned long)ret_from_trap; /* its pad slot overlaps regs->r15 */
	t->ksp = (unsigned long)f;
}

void arch_switch_prepare(struct task *next)
{
	tss.rsp0 = next->kstack_top; /* the stack a ring-3 -> ring-0 trap switches to */
}

long arch_extra_target(long x)
{
	/* pushf_first returns RFLAGS & (TF | IF | bit 1): TF clear, IF as the caller has it */
	unsigned long expect = (arch_read_flags() & X86_EFLAGS_IF) | 0x2;

	return x + 42 + (pushf_first() == (long)expect ? 0 : 1000);
}
