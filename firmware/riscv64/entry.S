/* SPDX-License-Identifier: MIT */
/* riscv64 boot code, trap entry/exit and context switch (M-mode kernel, U-mode user). */

#define PT_SIZE 288 /* struct pt_regs: epc, x1..x31, status, badaddr, cause, orig_a0 */
#define PT_STATUS 256
#define PT_BADADDR 264
#define PT_CAUSE 272
#define PT_ORIG_A0 280
#define SW_SIZE 112 /* struct switch_frame: ra, s0..s11, pad */

	.option nopic

/* NOKPROBE sym: record sym in the kprobe blacklist (same format as the C macro). */
	.macro NOKPROBE sym
	.pushsection kprobe_blacklist, "a"
	.balign 8
	.dword \sym
	.popsection
	.endm

	.section .text.entry, "ax"
	.globl _start
	.type _start, @function
_start:
	csrr t0, mhartid
	bnez t0, 3f			/* only hart 0 runs the kernel */
	la sp, boot_stack_top
	li s0, 0			/* terminate the frame-pointer chain */
	la t0, __bss_start
	la t1, __bss_end
1:	bgeu t0, t1, 2f
	sd zero, 0(t0)
	addi t0, t0, 8
	j 1b
2:	call kmain
3:	wfi
	j 3b
	.size _start, . - _start
	NOKPROBE _start

	.text
/*
 * trap_entry: mtvec (direct mode).  mscratch holds the kernel stack top while U-mode runs and 0
 * while M-mode runs: swap it with sp; non-zero means we came from U-mode.
 */
	.balign 4
	.globl trap_entry
	.type trap_entry, @function
trap_entry:
	csrrw sp, mscratch, sp
	bnez sp, 1f
	csrr sp, mscratch		/* from M-mode: keep using the interrupted stack */
1:	addi sp, sp, -PT_SIZE
	sd x1, 8(sp)
	sd x3, 24(sp)
	sd x4, 32(sp)
	sd x5, 40(sp)
	sd x6, 48(sp)
	sd x7, 56(sp)
	sd x8, 64(sp)
	sd x9, 72(sp)
	sd x10, 80(sp)
	sd x11, 88(sp)
	sd x12, 96(sp)
	sd x13, 104(sp)
	sd x14, 112(sp)
	sd x15, 120(sp)
	sd x16, 128(sp)
	sd x17, 136(sp)
	sd x18, 144(sp)
	sd x19, 152(sp)
	sd x20, 160(sp)
	sd x21, 168(sp)
	sd x22, 176(sp)
	sd x23, 184(sp)
	sd x24, 192(sp)
	sd x25, 200(sp)
	sd x26, 208(sp)
	sd x27, 216(sp)
	sd x28, 224(sp)
	sd x29, 232(sp)
	sd x30, 240(sp)
	sd x31, 248(sp)
	csrr t0, mscratch		/* the interrupted sp */
	sd t0, 16(sp)
	csrw mscratch, zero
	csrr t0, mepc
	sd t0, 0(sp)
	csrr t0, mstatus
	sd t0, PT_STATUS(sp)
	csrr t0, mtval
	sd t0, PT_BADADDR(sp)
	csrr a1, mcause
	sd a1, PT_CAUSE(sp)
	sd a0, PT_ORIG_A0(sp)
	mv a0, sp
	call trap_handler		/* trap_handler(regs, mcause) */
	j ret_from_trap
	.size trap_entry, . - trap_entry
	NOKPROBE trap_entry

/* ret_from_trap: sp points at a struct pt_regs; restore it and mret. */
	.globl ret_from_trap
	.type ret_from_trap, @function
ret_from_trap:
	ld t0, PT_STATUS(sp)
	csrw mstatus, t0		/* MIE stays 0 until mret; MPP/MPIE come from the frame */
	li t1, 0x1800
	and t1, t0, t1
	bnez t1, 1f
	addi t1, sp, PT_SIZE		/* back to U-mode: the next trap starts at the stack top */
	csrw mscratch, t1
1:	ld t0, 0(sp)
	csrw mepc, t0
	ld x1, 8(sp)
	ld x3, 24(sp)
	ld x4, 32(sp)
	ld x5, 40(sp)
	ld x6, 48(sp)
	ld x7, 56(sp)
	ld x8, 64(sp)
	ld x9, 72(sp)
	ld x10, 80(sp)
	ld x11, 88(sp)
	ld x12, 96(sp)
	ld x13, 104(sp)
	ld x14, 112(sp)
	ld x15, 120(sp)
	ld x16, 128(sp)
	ld x17, 136(sp)
	ld x18, 144(sp)
	ld x19, 152(sp)
	ld x20, 160(sp)
	ld x21, 168(sp)
	ld x22, 176(sp)
	ld x23, 184(sp)
	ld x24, 192(sp)
	ld x25, 200(sp)
	ld x26, 208(sp)
	ld x27, 216(sp)
	ld x28, 224(sp)
	ld x29, 232(sp)
	ld x30, 240(sp)
	ld x31, 248(sp)
	ld sp, 16(sp)
	mret
	.size ret_from_trap, . - ret_from_trap
	NOKPROBE ret_from_trap

/*
 * void switch_to(unsigned long *prev_ksp, unsigned long next_ksp): save the callee-saved
 * registers on the current stack, store sp in *prev_ksp, continue on next_ksp.
 */
	.globl switch_to
	.type switch_to, @function
switch_to:
	addi sp, sp, -SW_SIZE
	sd ra, 0(sp)
	sd s0, 8(sp)
	sd s1, 16(sp)
	sd s2, 24(sp)
	sd s3, 32(sp)
	sd s4, 40(sp)
	sd s5, 48(sp)
	sd s6, 56(sp)
	sd s7, 64(sp)
	sd s8, 72(sp)
	sd s9, 80(sp)
	sd s10, 88(sp)
	sd s11, 96(sp)
	sd sp, 0(a0)
	mv sp, a1
	ld ra, 0(sp)
	ld s0, 8(sp)
	ld s1, 16(sp)
	ld s2, 24(sp)
	ld s3, 32(sp)
	ld s4, 40(sp)
	ld s5, 48(sp)
	ld s6, 56(sp)
	ld s7, 64(sp)
	ld s8, 72(sp)
	ld s9, 80(sp)
	ld s10, 88(sp)
	ld s11, 96(sp)
	addi sp, sp, SW_SIZE
	ret
	.size switch_to, . - switch_to
	NOKPROBE switch_to

/* A new kthread's first switch_to returns here: s1 = fn, s2 = arg (arch_task_init_kthread). */
	.globl kthread_trampoline
	.type kthread_trampoline, @function
kthread_trampoline:
	mv a0, s1
	mv a1, s2
	call kthread_entry
1:	j 1b
	.size kthread_trampoline, . - kthread_trampoline
	NOKPROBE kthread_trampoline

	.section .bss.stack, "aw", @nobits
	.balign 16
	.globl boot_stack
	.type boot_stack, @object
boot_stack:
	.space 4096
	.size boot_stack, . - boot_stack
	.globl boot_stack_top
boot_stack_top:
