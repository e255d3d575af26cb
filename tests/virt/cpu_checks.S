/* Small M/S/U-mode checks for the riscv64 virt board (built at test time with zig's clang).
 * Each scenario ends through the SiFive test device with (value << 16) | 0x3333, so the run's
 * exit status carries what the trap handler saw. */
#define TEST 0x100000
#define PTE_RAM ((0x80000000 >> 12) << 10 | 0xcf)  /* gigapage at RAM: V R W X A D */

/* With the root table's address in t0: map the devices (the test device) identity at VPN[2] = 0
   and turn Sv39 on with that root. Clobbers t0, t1. */
.macro sv39_on
        li      t1, 0xc7
        sd      t1, 0(t0)               /* VPN[2] = 0: devices (the test device), identity */
        srli    t0, t0, 12
        li      t1, 8 << 60
        or      t0, t0, t1
        csrw    satp, t0
        sfence.vma
.endm
        .section .text
        .globl _start
_start:
        la      t0, mtrap
        csrw    mtvec, t0
#if SCENARIO == 9                       /* FINISHER_FAIL with code 0 */
        li      t0, TEST
        li      t1, 0x3333
        sw      t1, 0(t0)
1:      j       1b
#endif
#if SCENARIO == 20 || SCENARIO == 21    /* Linux's panic lines on the UART, then spin forever */
        li      t0, 0x10000000
        la      t1, panic_text
1:      lbu     t2, 0(t1)
        beqz    t2, 2f
        sb      t2, 0(t0)
        addi    t1, t1, 1
        j       1b
2:      j       2b
panic_text:
        .ascii  "booting\r\n[    0.250000] Kernel panic - not syncing: checked reason\r\n"
        .ascii  "[    0.250010] CPU: 0 UID: 0 PID: 1 Comm: init\r\n"
#if SCENARIO == 20                      /* panic=0: the end line (21: panic=N, waiting N seconds) */
        .ascii  "[    0.250100] ---[ end Kernel panic - not syncing: checked reason ]---\r\n"
#endif
        .byte   0
        .align  2
#endif
#if SCENARIO == 7                       /* M-mode CLINT timer: mtime counts 30 instructions a tick */
        li      t0, 0x200bff8           /* mtime */
        ld      t1, 0(t0)
1:      ld      t2, 0(t0)               /* wait for a tick edge */
        beq     t2, t1, 1b
        addi    t2, t2, 3
        li      t0, 0x2004000           /* mtimecmp: 3 ticks (90 instructions) after the edge */
        sd      t2, 0(t0)
        li      t0, (1 << 7)
        csrw    mie, t0                 /* MTIE */
        li      a1, 0
        csrsi   mstatus, 8              /* MIE: 8 instructions after the edge's load */
2:      addi    a1, a1, 1               /* 81 or 82 loop instructions until the deadline */
        j       2b
#endif
#if SCENARIO == 8                       /* a device raises MEIP mid-block, interrupts enabled */
        li      t0, 0xc000000 + 4 * 10  /* PLIC: UART source 10, priority 1, enabled for M */
        li      t1, 1
        sw      t1, 0(t0)
        li      t0, 0xc002000
        li      t1, 1 << 10
        sw      t1, 0(t0)
        li      t0, (1 << 11)
        csrw    mie, t0                 /* MEIE */
        csrsi   mstatus, 8              /* MIE */
        li      a1, 0
        li      t0, 0x10000001
        li      t1, 2
        sb      t1, 0(t0)               /* UART IER: THR-empty interrupt, raised by this store */
raised: addi    a1, a1, 1               /* none of these runs: the interrupt comes first */
        addi    a1, a1, 1
        addi    a1, a1, 1
        addi    a1, a1, 1
        addi    a1, a1, 1
        addi    a1, a1, 1
        addi    a1, a1, 1
        addi    a1, a1, 1
1:      j       1b
#endif
        la      t0, strap
        csrw    stvec, t0
        li      t0, (1 << 8)            /* delegate ecall from U-mode to S-mode */
        csrw    medeleg, t0
#if SCENARIO == 5
        li      t0, (1 << 12) | (1 << 13) | (1 << 15)   /* and page faults */
        csrs    medeleg, t0
#endif
#if SCENARIO >= 5
        li      t0, -1                  /* PMP: S-mode may reach all memory (QEMU checks it) */
        csrw    pmpaddr0, t0
        li      t0, 0x1f                /* NAPOT, R W X */
        csrw    pmpcfg0, t0
#endif
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
        .rept   59
        nop
        .endr
        rdtime  a1
        sub     a0, a1, a0              /* 60 instructions apart: 2 ticks of 30 */
        slli    a0, a0, 16
        li      t0, 0x3333
        or      a0, a0, t0
        li      t0, TEST
        sw      a0, 0(t0)
1:      j       1b
#elif SCENARIO == 4                     /* load from an unmapped physical address: tval = address */
        li      t0, 0x4321000
        ld      t1, 0(t0)
#elif SCENARIO == 5                     /* Sv39 page faults are retried at the faulting instruction */
        la      t0, root
        li      t1, PTE_RAM
        sd      t1, 16(t0)              /* VPN[2] = 2: RAM, identity */
        sv39_on
        li      s1, 0                   /* bit 0: 4-byte store, 1: 2-byte store, 2: fetch */
        li      s2, 0                   /* page faults taken (strap counts them) */
        li      t1, 0x1234
        la      t2, scratch
        li      t0, 0x40000000          /* VPN[2] = 3 aliases RAM, not mapped yet */
        add     t0, t2, t0
        sd      t1, 0(t0)               /* store page fault (4 bytes) */
        ld      t3, 0(t2)               /* through the identity mapping */
        bne     t3, t1, 2f
        ori     s1, s1, 1
2:      li      a2, 0x80000000          /* VPN[2] = 4 */
        add     a2, t2, a2
        li      a3, 0x5678
        c.sd    a3, 8(a2)               /* store page fault (2 bytes) */
        c.nop
        ld      t3, 8(t2)
        bne     t3, a3, 3f
        ori     s1, s1, 2
3:      la      t0, far
        li      t1, 0xc0000000          /* VPN[2] = 5 */
        add     t0, t0, t1
        li      t3, 0
        jalr    t0                      /* instruction page fault at the alias */
        slli    t3, t3, 2
        or      s1, s1, t3
        slli    s2, s2, 4
        or      a0, s1, s2              /* expected: 0x37 */
        slli    a0, a0, 16
        li      t0, 0x3333
        or      a0, a0, t0
        li      t0, TEST
        sw      a0, 0(t0)
1:      j       1b
far:    li      t3, 1
        ret
#elif SCENARIO == 10 || SCENARIO == 11  /* code rewritten through a read/write-only alias (11: by
                                           the host, at host_patch) is seen */
        la      t0, root
        li      t1, PTE_RAM
        sd      t1, 16(t0)              /* VPN[2] = 2: RAM, identity, executable */
        li      t1, PTE_RAM & ~8
        sd      t1, 24(t0)              /* VPN[2] = 3: RAM again, read/write only */
        sv39_on
        call    patched                 /* translated now: a0 = 1 */
        mv      s1, a0
#if SCENARIO == 10
        li      t2, 0x40000000          /* RAM's alias */
        la      t0, code_page
        add     t0, t0, t2
        sw      zero, 0(t0)             /* first an unrelated store into patched's page */
        la      t0, patched             /* (Unicorn 2.1.4 then stopped checking that entry's stores) */
        add     t0, t0, t2
        li      t1, 0x00200513          /* addi a0, zero, 2 */
        sw      t1, 0(t0)
#endif
host_patch:
        fence.i
        call    patched                 /* a0 = 2: the new instruction */
        slli    s1, s1, 4
        or      a0, s1, a0              /* expected: 0x12 */
        slli    a0, a0, 16
        li      t0, 0x3333
        or      a0, a0, t0
        li      t0, TEST
        sw      a0, 0(t0)
1:      j       1b
#elif SCENARIO == 6                     /* a 2-byte illegal instruction: mepc is its address */
        c.nop
illegal: .2byte 0                       /* c.unimp */
#endif
1:      j       1b

umain:
        ecall
1:      j       1b

        .align 4
mtrap:
        csrr    a0, mcause
#if SCENARIO == 6                       /* 0x40 + (mepc - the instruction's address) */
        csrr    a0, mepc
        la      t0, illegal
        sub     a0, a0, t0
        addi    a0, a0, 0x40
#endif
#if SCENARIO == 4
        csrr    a0, mtval
        srli    a0, a0, 12
#endif
#if SCENARIO == 8                       /* mcause's code << 8 | instructions run after the store */
        slli    a0, a0, 8
        or      a0, a0, a1
#endif
#if SCENARIO == 7                       /* (mtime - mtimecmp) << 8 | loop count */
        li      t0, 0x200bff8
        ld      a0, 0(t0)
        li      t0, 0x2004000
        ld      t1, 0(t0)
        sub     a0, a0, t1
        slli    a0, a0, 8
        or      a0, a0, a1
#endif
        slli    a0, a0, 16
        li      t0, 0x3333
        or      a0, a0, t0
        li      t0, TEST
        sw      a0, 0(t0)
1:      j       1b

        .align 4
strap:
#if SCENARIO == 5                       /* map the faulting gigapage onto RAM and retry */
        csrr    t4, stval
        srli    t4, t4, 30
        andi    t4, t4, 0x1ff
        slli    t4, t4, 3
        la      t5, root
        add     t5, t5, t4
        li      t6, PTE_RAM
        sd      t6, 0(t5)
        sfence.vma
        addi    s2, s2, 1
        sret
#endif
        csrr    a0, scause
        slli    a0, a0, 16
        li      t0, 0x3333
        or      a0, a0, t0
        li      t0, TEST
        sw      a0, 0(t0)
1:      j       1b

#if SCENARIO == 10 || SCENARIO == 11
        .align 12
code_page: .word 0
        .align 4
patched: .word  0x00100513              /* addi a0, zero, 1 */
        ret
#endif

#if SCENARIO == 5 || SCENARIO == 10 || SCENARIO == 11
        .data
        .align 12
root:   .zero 4096
scratch: .zero 16
#endif
