/* Small M/S/U-mode checks for the riscv64 virt board (built at test time with zig's clang).
 * Each scenario ends through the SiFive test device with (value << 16) | 0x3333, so the run's
 * exit status carries what the trap handler saw. */
#define TEST 0x100000
        .section .text
        .globl _start
_start:
        la      t0, mtrap
        csrw    mtvec, t0
        la      t0, strap
        csrw    stvec, t0
        li      t0, (1 << 8)            /* delegate ecall from U-mode to S-mode */
        csrw    medeleg, t0
        li      t0, 7
        csrw    mcounteren, t0
        csrw    scounteren, t0
        li      t0, (3 << 11)
        csrc    mstatus, t0
        li      t0, (1 << 11)           /* MPP = S */
        csrs    mstatus, t0
        la      t0, smain
        csrw    mepc, t0
        mret

smain:
#if SCENARIO == 1                       /* ecall from S-mode: M sees cause 9 */
        ecall
#elif SCENARIO == 2                     /* ecall from U-mode, delegated: S sees cause 8 */
        li      t0, (1 << 8)
        csrc    sstatus, t0             /* SPP = U */
        la      t0, umain
        csrw    sepc, t0
        sret
#elif SCENARIO == 3                     /* rdtime in S-mode: virtual time, no trap */
        rdtime  a0
        rdtime  a1
        sub     a0, a1, a0              /* one instruction apart */
        slli    a0, a0, 16
        li      t0, 0x3333
        or      a0, a0, t0
        li      t0, TEST
        sw      a0, 0(t0)
1:      j       1b
#elif SCENARIO == 4                     /* load from an unmapped physical address: tval = address */
        li      t0, 0x4321000
        ld      t1, 0(t0)
#endif
1:      j       1b

umain:
        ecall
1:      j       1b

        .align 4
mtrap:
        csrr    a0, mcause
#if SCENARIO == 4
        csrr    a0, mtval
        srli    a0, a0, 12
#endif
        slli    a0, a0, 16
        li      t0, 0x3333
        or      a0, a0, t0
        li      t0, TEST
        sw      a0, 0(t0)
1:      j       1b

        .align 4
strap:
        csrr    a0, scause
        slli    a0, a0, 16
        li      t0, 0x3333
        or      a0, a0, t0
        li      t0, TEST
        sw      a0, 0(t0)
1:      j       1b
