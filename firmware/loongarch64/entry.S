/* SPDX-License-Identifier: MIT */
/* loongarch64 boot code, trap entry/exit and context switch (PLV0 kernel, PLV3 user). */

#define PT_SIZE 320 /* struct pt_regs: regs[32], orig_a0, era, badvaddr, crmd, prmd, euen, ecfg, estat */
#define PT_R3 24
#define PT_ORIG_A0 256
#define PT_ERA 264
#define PT_BADV 272
#define PT_CRMD 280
#define PT_PRMD 288
#define PT_EUEN 296
#define PT_ECFG 304
#define PT_ESTAT 312
#define SW_SIZE 96 /* struct switch_frame: ra, fp, s0..s8, pad */

#define CSR_CRMD 0x0
#define CSR_PRMD 0x1
#define CSR_EUEN 0x2
#define CSR_ECFG 0x4
#define CSR_ESTAT 0x5
#define CSR_ERA 0x6
#define CSR_BADV 0x7
#define CSR_CPUID 0x20
#define CSR_SAVE0 0x30

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
	csrrd $t0, CSR_CPUID
	bnez $t0, 3f			/* only core 0 runs the kernel */
	la.pcrel $sp, boot_stack_top
	move $fp, $zero			/* terminate the frame-pointer chain */
	la.pcrel $t0, __bss_start
	la.pcrel $t1, __bss_end
1:	bgeu $t0, $t1, 2f
	st.d $zero, $t0, 0
	addi.d $t0, $t0, 8
	b 1b
2:	bl kmain
3:	b 3b
	.size _start, . - _start
	NOKPROBE _start

	.text
/*
 * trap_entry: EENTRY (ECFG.VS = 0: every exception and interrupt).  SAVE0 holds the kernel stack
 * top while PLV3 runs and 0 while PLV0 runs: swap it with sp; non-zero means we came from PLV3.
 */
	.balign 4096
	.globl trap_entry
	.type trap_entry, @function
trap_entry:
	csrwr $sp, CSR_SAVE0
	bnez $sp, 1f
	csrrd $sp, CSR_SAVE0		/* from PLV0: keep using the interrupted stack */
1:	addi.d $sp, $sp, -PT_SIZE
	st.d $r1, $sp, 8
	st.d $r2, $sp, 16
	st.d $r4, $sp, 32
	st.d $r5, $sp, 40
	st.d $r6, $sp, 48
	st.d $r7, $sp, 56
	st.d $r8, $sp, 64
	st.d $r9, $sp, 72
	st.d $r10, $sp, 80
	st.d $r11, $sp, 88
	st.d $r12, $sp, 96
	st.d $r13, $sp, 104
	st.d $r14, $sp, 112
	st.d $r15, $sp, 120
	st.d $r16, $sp, 128
	st.d $r17, $sp, 136
	st.d $r18, $sp, 144
	st.d $r19, $sp, 152
	st.d $r20, $sp, 160
	st.d $r21, $sp, 168
	st.d $r22, $sp, 176
	st.d $r23, $sp, 184
	st.d $r24, $sp, 192
	st.d $r25, $sp, 200
	st.d $r26, $sp, 208
	st.d $r27, $sp, 216
	st.d $r28, $sp, 224
	st.d $r29, $sp, 232
	st.d $r30, $sp, 240
	st.d $r31, $sp, 248
	csrrd $t0, CSR_SAVE0		/* the interrupted sp */
	st.d $t0, $sp, PT_R3
	csrwr $zero, CSR_SAVE0
	csrrd $t0, CSR_ERA
	st.d $t0, $sp, PT_ERA
	csrrd $t0, CSR_BADV
	st.d $t0, $sp, PT_BADV
	csrrd $t0, CSR_CRMD
	st.d $t0, $sp, PT_CRMD
	csrrd $t0, CSR_PRMD
	st.d $t0, $sp, PT_PRMD
	csrrd $t0, CSR_EUEN
	st.d $t0, $sp, PT_EUEN
	csrrd $t0, CSR_ECFG
	st.d $t0, $sp, PT_ECFG
	csrrd $a1, CSR_ESTAT
	st.d $a1, $sp, PT_ESTAT
	st.d $a0, $sp, PT_ORIG_A0
	move $a0, $sp
	bl trap_handler			/* trap_handler(regs, estat) */
	b ret_from_trap
	.size trap_entry, . - trap_entry
	NOKPROBE trap_entry

/* ret_from_trap: sp points at a struct pt_regs; restore it and ertn. */
	.globl ret_from_trap
	.type ret_from_trap, @function
ret_from_trap:
	ld.d $t1, $sp, PT_PRMD
	andi $t2, $t1, 3
	csrwr $t1, CSR_PRMD		/* PPLV/PIE for ertn */
	beqz $t2, 1f
	addi.d $t1, $sp, PT_SIZE	/* back to PLV3: the next trap starts at the stack top */
	csrwr $t1, CSR_SAVE0
1:	ld.d $t1, $sp, PT_ERA
	csrwr $t1, CSR_ERA
	ld.d $r1, $sp, 8
	ld.d $r2, $sp, 16
	ld.d $r4, $sp, 32
	ld.d $r5, $sp, 40
	ld.d $r6, $sp, 48
	ld.d $r7, $sp, 56
	ld.d $r8, $sp, 64
	ld.d $r9, $sp, 72
	ld.d $r10, $sp, 80
	ld.d $r11, $sp, 88
	ld.d $r12, $sp, 96
	ld.d $r13, $sp, 104
	ld.d $r14, $sp, 112
	ld.d $r15, $sp, 120
	ld.d $r16, $sp, 128
	ld.d $r17, $sp, 136
	ld.d $r18, $sp, 144
	ld.d $r19, $sp, 152
	ld.d $r20, $sp, 160
	ld.d $r21, $sp, 168
	ld.d $r22, $sp, 176
	ld.d $r23, $sp, 184
	ld.d $r24, $sp, 192
	ld.d $r25, $sp, 200
	ld.d $r26, $sp, 208
	ld.d $r27, $sp, 216
	ld.d $r28, $sp, 224
	ld.d $r29, $sp, 232
	ld.d $r30, $sp, 240
	ld.d $r31, $sp, 248
	ld.d $sp, $sp, PT_R3
	ertn
	.size ret_from_trap, . - ret_from_trap
	NOKPROBE ret_from_trap

/*
 * void switch_to(unsigned long *prev_ksp, unsigned long next_ksp): save the callee-saved
 * registers on the current stack, store sp in *prev_ksp, continue on next_ksp.
 */
	.globl switch_to
	.type switch_to, @function
switch_to:
	addi.d $sp, $sp, -SW_SIZE
	st.d $ra, $sp, 0
	st.d $fp, $sp, 8
	st.d $s0, $sp, 16
	st.d $s1, $sp, 24
	st.d $s2, $sp, 32
	st.d $s3, $sp, 40
	st.d $s4, $sp, 48
	st.d $s5, $sp, 56
	st.d $s6, $sp, 64
	st.d $s7, $sp, 72
	st.d $s8, $sp, 80
	st.d $sp, $a0, 0
	move $sp, $a1
	ld.d $ra, $sp, 0
	ld.d $fp, $sp, 8
	ld.d $s0, $sp, 16
	ld.d $s1, $sp, 24
	ld.d $s2, $sp, 32
	ld.d $s3, $sp, 40
	ld.d $s4, $sp, 48
	ld.d $s5, $sp, 56
	ld.d $s6, $sp, 64
	ld.d $s7, $sp, 72
	ld.d $s8, $sp, 80
	addi.d $sp, $sp, SW_SIZE
	jr $ra
	.size switch_to, . - switch_to
	NOKPROBE switch_to

/* A new kthread's first switch_to returns here: s1 = fn, s2 = arg (arch_task_init_kthread). */
	.globl kthread_trampoline
	.type kthread_trampoline, @function
kthread_trampoline:
	move $a0, $s1
	move $a1, $s2
	bl kthread_entry
1:	b 1b
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
