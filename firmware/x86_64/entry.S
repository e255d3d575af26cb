/* SPDX-License-Identifier: MIT */
/* x86_64 boot code, trap entry/exit and context switch (ring-0 kernel, ring-3 user). */

#define PT_SIZE 168 /* struct pt_regs: r15 .. di, orig_ax, ip, cs, flags, sp, ss */

/* NOKPROBE sym: record sym in the kprobe blacklist (same format as the C macro). */
	.macro NOKPROBE sym
	.pushsection kprobe_blacklist, "a"
	.balign 8
	.quad \sym
	.popsection
	.endm

/* Entered in 64-bit mode at CPL 0 with paging off, IF = 0 and no valid stack. */
	.section .text.entry, "ax"
	.globl _start
	.type _start, @function
_start:
	leaq boot_stack_top(%rip), %rsp
	xorl %ebp, %ebp			/* terminate the frame-pointer chain */
	cld
	leaq __bss_start(%rip), %rdi
	leaq __bss_end(%rip), %rcx
	subq %rdi, %rcx
	shrq $3, %rcx
	xorl %eax, %eax
	rep stosq
	call kmain
1:	cli
	hlt
	jmp 1b
	.size _start, . - _start
	NOKPROBE _start

/*
 * Interrupt/exception entry stubs, one per vector: push a 0 error code when the CPU pushes none
 * (so every frame has the pt_regs shape), save rdi, pass the vector in edi.
 */
	.macro STUB vec, has_error
	.balign 16
.Lstub_\vec:
	.if \has_error == 0
	pushq $0
	.endif
	pushq %rdi
	movl $\vec, %edi
	jmp trap_common
	.endm

	.text
	.balign 16
	.globl trap_stubs
	.type trap_stubs, @function
trap_stubs:
	STUB 0, 0
	STUB 1, 0
	STUB 2, 0
	STUB 3, 0
	STUB 4, 0
	STUB 5, 0
	STUB 6, 0
	STUB 7, 0
	STUB 8, 1
	STUB 9, 0
	STUB 10, 1
	STUB 11, 1
	STUB 12, 1
	STUB 13, 1
	STUB 14, 1
	STUB 15, 0
	STUB 16, 0
	STUB 17, 1
	STUB 18, 0
	STUB 19, 0
	STUB 20, 0
	STUB 21, 1
	STUB 22, 0
	STUB 23, 0
	STUB 24, 0
	STUB 25, 0
	STUB 26, 0
	STUB 27, 0
	STUB 28, 0
	STUB 29, 1
	STUB 30, 1
	STUB 31, 0
	STUB 32, 0
	STUB 128, 0
	.size trap_stubs, . - trap_stubs
	NOKPROBE trap_stubs

/* trap_common: finish the pt_regs frame, call trap_handler(regs, vector). */
	.globl trap_common
	.type trap_common, @function
trap_common:
	pushq %rsi
	pushq %rdx
	pushq %rcx
	pushq %rax
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	cld
	movl %edi, %esi			/* vector */
	movq %rsp, %rdi			/* regs */
	movq %rsp, %rbx
	andq $-16, %rsp
	call trap_handler
	movq %rbx, %rsp
	jmp ret_from_trap
	.size trap_common, . - trap_common
	NOKPROBE trap_common

/* ret_from_trap: rsp points at a struct pt_regs; restore it and iretq. */
	.globl ret_from_trap
	.type ret_from_trap, @function
ret_from_trap:
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rax
	popq %rcx
	popq %rdx
	popq %rsi
	popq %rdi
	addq $8, %rsp			/* orig_ax / error code */
	iretq
	.size ret_from_trap, . - ret_from_trap
	NOKPROBE ret_from_trap

/*
 * void switch_to(unsigned long *prev_ksp, unsigned long next_ksp): save the callee-saved
 * registers on the current stack, store rsp in *prev_ksp, continue on next_ksp.
 */
	.globl switch_to
	.type switch_to, @function
switch_to:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.size switch_to, . - switch_to
	NOKPROBE switch_to

/* A new kthread's first switch_to returns here: r12 = fn, r13 = arg (arch_task_init_kthread). */
	.globl kthread_trampoline
	.type kthread_trampoline, @function
kthread_trampoline:
	movq %r12, %rdi
	movq %r13, %rsi
	andq $-16, %rsp
	call kthread_entry
	ud2
	.size kthread_trampoline, . - kthread_trampoline
	NOKPROBE kthread_trampoline

/* Addresses of the stubs of vectors 0..32, then of vector 0x80, for arch_init's IDT. */
	.section .rodata
	.balign 8
	.globl trap_stub_table
	.type trap_stub_table, @object
trap_stub_table:
	.irp v, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 128
	.quad .Lstub_\v
	.endr
	.size trap_stub_table, . - trap_stub_table

	.section .bss.stack, "aw", @nobits
	.balign 16
	.globl boot_stack
	.type boot_stack, @object
boot_stack:
	.space 4096
	.size boot_stack, . - boot_stack
	.globl boot_stack_top
boot_stack_top:
