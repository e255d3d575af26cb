/* SPDX-License-Identifier: MIT */
/*
 * riscv64 assembly probe targets.  Each one's FIRST instruction is the kind its name says;
 * .option norvc/norelax keep the assembler and the linker from changing it.
 */
	.option nopic
	.text
	.option push
	.option norelax
	.option norvc

/* long pcrel_load(void): pcrel_value, loaded PC-relatively.  First insn: auipc. */
	.balign 4
	.globl pcrel_load
	.type pcrel_load, @function
pcrel_load:
.Lpcrel_load_hi:
	auipc a0, %pcrel_hi(pcrel_value)
	ld a0, %pcrel_lo(.Lpcrel_load_hi)(a0)
	ret
	.size pcrel_load, . - pcrel_load

/* void *pcrel_addr(void): &pcrel_value, computed PC-relatively.  First insn: auipc. */
	.globl pcrel_addr
	.type pcrel_addr, @function
pcrel_addr:
.Lpcrel_addr_hi:
	auipc a0, %pcrel_hi(pcrel_value)
	addi a0, a0, %pcrel_lo(.Lpcrel_addr_hi)
	ret
	.size pcrel_addr, . - pcrel_addr

/* long call_first(long x): 3 * x + 1.  First insn: jal t0 (a direct call linking t0, so ra
 * still holds call_first's return address). */
	.globl call_first
	.type call_first, @function
call_first:
	jal t0, call_first_helper
	addi a0, a0, 1
	ret
	.size call_first, . - call_first

	.type call_first_helper, @function
call_first_helper:
	slli t1, a0, 1
	add a0, a0, t1
	jr t0
	.size call_first_helper, . - call_first_helper

/* long branch_first(long x): x == 0 ? 100 : 2 * x.  First insn: beqz (beq a0, zero). */
	.globl branch_first
	.type branch_first, @function
branch_first:
	beqz a0, 1f
	slli a0, a0, 1
	ret
1:	li a0, 100
	ret
	.size branch_first, . - branch_first

/* long jump_first(long x): x + 5.  First insn: j (jal zero); falling through returns -1. */
	.globl jump_first
	.type jump_first, @function
jump_first:
	j 1f
	li a0, -1
	ret
1:	addi a0, a0, 5
	ret
	.size jump_first, . - jump_first

/* long indirect_first(fn, x): tail call fn(fn, x).  First insn: jr a0 (jalr zero, 0(a0)). */
	.globl indirect_first
	.type indirect_first, @function
indirect_first:
	jr a0
	.size indirect_first, . - indirect_first

/* long c_addi16sp_first(long x): x + 42 through a stack slot.  First insn: c.addi16sp. */
	.option rvc
	.globl c_addi16sp_first
	.type c_addi16sp_first, @function
c_addi16sp_first:
	c.addi16sp sp, -32
	sd ra, 24(sp)
	sd s0, 16(sp)
	addi s0, sp, 32
	sd a0, 8(sp)
	ld a1, 8(sp)
	addi a0, a1, 42
	ld ra, 24(sp)
	ld s0, 16(sp)
	addi sp, sp, 32
	ret
	.size c_addi16sp_first, . - c_addi16sp_first

	.option pop
