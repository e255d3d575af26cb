/* SPDX-License-Identifier: MIT */
/*
 * loongarch64 assembly probe targets.  Each one's FIRST instruction is the kind its name says
 * (this file is assembled with -mno-relax, so the linker leaves every instruction alone).
 */
	.text

/* long pcrel_load(void): pcrel_value, loaded PC-relatively.  First insn: pcalau12i. */
	.globl pcrel_load
	.type pcrel_load, @function
pcrel_load:
	pcalau12i $a0, %pc_hi20(pcrel_value)
	ld.d $a0, $a0, %pc_lo12(pcrel_value)
	jr $ra
	.size pcrel_load, . - pcrel_load

/* void *pcrel_addr(void): &pcrel_value, computed PC-relatively.  First insn: pcaddu12i. */
	.globl pcrel_addr
	.type pcrel_addr, @function
pcrel_addr:
.Lpcrel_addr_hi:
	pcaddu12i $a0, %pcadd_hi20(pcrel_value)
	addi.d $a0, $a0, %pcadd_lo12(.Lpcrel_addr_hi)
	jr $ra
	.size pcrel_addr, . - pcrel_addr

/*
 * long call_first(long x): 3 * x + 1.  First insn: bl.  bl links through ra, which destroys
 * call_first's own return address, so call_first returns through $t8: its caller (below) sets
 * $t8 = ra = the return address.  (A kretprobe on call_first therefore never fires.)
 */
	.globl call_first_call
	.type call_first_call, @function
call_first_call:
	addi.d $sp, $sp, -16
	st.d $ra, $sp, 8
	st.d $fp, $sp, 0
	addi.d $fp, $sp, 16
	pcaddi $t8, 2			/* t8 = the instruction after the bl */
	bl call_first
	ld.d $fp, $sp, 0
	ld.d $ra, $sp, 8
	addi.d $sp, $sp, 16
	jr $ra
	.size call_first_call, . - call_first_call

	.globl call_first
	.type call_first, @function
call_first:
	bl call_first_helper
	addi.d $a0, $a0, 1
	jr $t8
	.size call_first, . - call_first

	.type call_first_helper, @function
call_first_helper:
	slli.d $t1, $a0, 1
	add.d $a0, $a0, $t1
	jr $ra
	.size call_first_helper, . - call_first_helper

/* long branch_first(long x): x == 0 ? 100 : 2 * x.  First insn: beq. */
	.globl branch_first
	.type branch_first, @function
branch_first:
	beq $a0, $zero, 1f
	slli.d $a0, $a0, 1
	jr $ra
1:	addi.d $a0, $zero, 100
	jr $ra
	.size branch_first, . - branch_first

/* long jump_first(long x): x + 5.  First insn: b; falling through returns -1. */
	.globl jump_first
	.type jump_first, @function
jump_first:
	b 1f
	addi.d $a0, $zero, -1
	jr $ra
1:	addi.d $a0, $a0, 5
	jr $ra
	.size jump_first, . - jump_first

/* long indirect_first(fn, x): tail call fn(fn, x).  First insn: jirl $zero, $a0, 0. */
	.globl indirect_first
	.type indirect_first, @function
indirect_first:
	jirl $zero, $a0, 0
	.size indirect_first, . - indirect_first

/* long pcaddu18i_first(long x): x + 42, via a pcaddu18i + jirl tail jump.  First insn: pcaddu18i. */
	.globl pcaddu18i_first
	.type pcaddu18i_first, @function
pcaddu18i_first:
	pcaddu18i $t0, %call36(pcaddu18i_body)
	jirl $zero, $t0, 0
	.size pcaddu18i_first, . - pcaddu18i_first

	.type pcaddu18i_body, @function
pcaddu18i_body:
	addi.d $a0, $a0, 42
	jr $ra
	.size pcaddu18i_body, . - pcaddu18i_body
