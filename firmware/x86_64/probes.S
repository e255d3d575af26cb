/* SPDX-License-Identifier: MIT */
/* x86_64 assembly probe targets.  Each one's FIRST instruction is the kind its name says. */
	.text

/* long pcrel_load(void): pcrel_value, loaded RIP-relatively.  First insn: mov X(%rip), %rax. */
	.globl pcrel_load
	.type pcrel_load, @function
pcrel_load:
	movq pcrel_value(%rip), %rax
	ret
	.size pcrel_load, . - pcrel_load

/* void *pcrel_addr(void): &pcrel_value, computed RIP-relatively.  First insn: lea X(%rip), %rax. */
	.globl pcrel_addr
	.type pcrel_addr, @function
pcrel_addr:
	leaq pcrel_value(%rip), %rax
	ret
	.size pcrel_addr, . - pcrel_addr

/* long call_first(long x): 3 * x + 1.  First insn: call rel32. */
	.globl call_first
	.type call_first, @function
call_first:
	call call_first_helper
	addq $1, %rax
	ret
	.size call_first, . - call_first

	.type call_first_helper, @function
call_first_helper:
	leaq (%rdi, %rdi, 2), %rax
	ret
	.size call_first_helper, . - call_first_helper

/* long branch_first_call(long x): sets ZF from x, then calls branch_first. */
	.globl branch_first_call
	.type branch_first_call, @function
branch_first_call:
	pushq %rbp
	movq %rsp, %rbp
	testq %rdi, %rdi
	call branch_first
	popq %rbp
	ret
	.size branch_first_call, . - branch_first_call

/* long branch_first(long x): ZF ? 100 : 2 * x (ZF set from x by the caller).  First insn: je. */
	.globl branch_first
	.type branch_first, @function
branch_first:
	je 1f
	leaq (%rdi, %rdi), %rax
	ret
1:	movl $100, %eax
	ret
	.size branch_first, . - branch_first

/* long jump_first(long x): x + 5.  First insn: jmp rel32 (encoded by hand so the assembler
 * cannot shorten it); falling through returns -1. */
	.globl jump_first
	.type jump_first, @function
jump_first:
	.byte 0xe9
	.long 1f - 2f
2:	movq $-1, %rax
	ret
1:	leaq 5(%rdi), %rax
	ret
	.size jump_first, . - jump_first

/* long indirect_first(fn, x): tail call fn(fn, x).  First insn: jmp *%rdi. */
	.globl indirect_first
	.type indirect_first, @function
indirect_first:
	jmp *%rdi
	.size indirect_first, . - indirect_first

/* long pushf_first(void): RFLAGS & (TF | IF | bit 1) as pushed by pushf.  First insn: pushfq. */
	.globl pushf_first
	.type pushf_first, @function
pushf_first:
	pushfq
	popq %rax
	andq $0x302, %rax
	ret
	.size pushf_first, . - pushf_first
