/* A small S-mode kernel that exercises an SBI firmware (built at test time with zig's clang,
 * linked at 0x80200000). It prints only what the SBI v2.0 specification decides, so its
 * transcript is the same under OpenSBI (QEMU) and under kprobesim's builtin SBI, then powers
 * the machine off through SRST. */
#define EXT_BASE 0x10
#define EXT_TIME 0x54494D45
#define EXT_IPI 0x735049
#define EXT_RFENCE 0x52464E43
#define EXT_HSM 0x48534D
#define EXT_SRST 0x53525354
#define EXT_DBCN 0x4442434E

struct sbiret { long error, value; };

static struct sbiret sbi(long ext, long fid, long a0, long a1, long a2, long a3) {
    register long r0 asm("a0") = a0, r1 asm("a1") = a1, r2 asm("a2") = a2, r3 asm("a3") = a3;
    register long r6 asm("a6") = fid, r7 asm("a7") = ext;
    asm volatile("ecall" : "+r"(r0), "+r"(r1) : "r"(r2), "r"(r3), "r"(r6), "r"(r7) : "memory");
    return (struct sbiret){r0, r1};
}

static void legacy_putchar(char c) { sbi(0x01, 0, c, 0, 0, 0); }

static unsigned long strlen_(const char *s) {
    unsigned long n = 0;
    while (s[n]) n++;
    return n;
}

static void puts_(const char *s) { sbi(EXT_DBCN, 0, strlen_(s), (long)s, 0, 0); }

static void putnum(long v) {
    char buf[24];
    int i = sizeof buf - 1;
    int neg = v < 0;
    unsigned long u = neg ? -(unsigned long)v : (unsigned long)v;
    buf[i] = 0;
    do { buf[--i] = '0' + u % 10; u /= 10; } while (u);
    if (neg) buf[--i] = '-';
    puts_(buf + i);
}

static void show(const char *what, struct sbiret r) {
    puts_(what);
    puts_(": error=");
    putnum(r.error);
    puts_(" value=");
    putnum(r.value);
    puts_("\n");
}

static unsigned long rdtime(void) {
    unsigned long t;
    asm volatile("rdtime %0" : "=r"(t));
    return t;
}

static volatile long timer_hits, ipi_hits;
static volatile unsigned long timer_deadline, timer_seen;

__attribute__((interrupt("supervisor"), aligned(4))) static void trap(void) {
    unsigned long cause;
    asm volatile("csrr %0, scause" : "=r"(cause));
    if (cause == (1UL << 63 | 5)) {
        timer_seen = rdtime();
        timer_hits++;
        sbi(EXT_TIME, 0, -1, 0, 0, 0); /* no further deadline: STIP goes down */
    } else if (cause == (1UL << 63 | 1)) {
        ipi_hits++;
        asm volatile("csrc sip, %0" ::"r"(2));
    } else {
        puts_("unexpected trap\n");
        sbi(EXT_SRST, 0, 0, 1, 0, 0);
    }
}

void main(void) {
    const char *hello = "sbi-check begin\n";
    for (const char *p = hello; *p; p++) legacy_putchar(*p);

    struct sbiret v = sbi(EXT_BASE, 0, 0, 0, 0, 0);
    puts_(v.error == 0 && (v.value >> 24) >= 2 ? "spec version 2 or later\n" : "spec version too old\n");
    static const long exts[] = {EXT_TIME, EXT_IPI, EXT_RFENCE, EXT_HSM, EXT_SRST, EXT_DBCN, 0x01, 0x02};
    static const char *names[] = {"TIME", "IPI", "RFENCE", "HSM", "SRST", "DBCN", "legacy putchar", "legacy getchar"};
    for (int i = 0; i < 8; i++) {
        struct sbiret r = sbi(EXT_BASE, 3, exts[i], 0, 0, 0);
        puts_("probe ");
        puts_(names[i]);
        puts_(r.error == 0 && r.value != 0 ? ": available\n" : ": missing\n");
    }
    show("probe 0x0a000000", sbi(EXT_BASE, 3, 0x0a000000, 0, 0, 0));
    show("unknown extension", sbi(0x0a000000, 0, 0, 0, 0, 0));
    show("base function 99", sbi(EXT_BASE, 99, 0, 0, 0, 0));

    show("hart_get_status(0)", sbi(EXT_HSM, 2, 0, 0, 0, 0));
    show("hart_get_status(7)", sbi(EXT_HSM, 2, 7, 0, 0, 0));
    show("hart_start(0)", sbi(EXT_HSM, 0, 0, 0x80200000, 0, 0));

    show("remote_fence_i(hart 0)", sbi(EXT_RFENCE, 0, 1, 0, 0, 0));
    show("remote_sfence_vma(all)", sbi(EXT_RFENCE, 1, 0, -1, 0, -1));

    show("console_write_byte", sbi(EXT_DBCN, 2, '*', 0, 0, 0));
    const char *line = "written by console_write\n";
    show("console_write", sbi(EXT_DBCN, 0, strlen_(line), (long)line, 0, 0));

    asm volatile("csrw stvec, %0" ::"r"(trap));
    asm volatile("csrs sie, %0" ::"r"((1 << 5) | (1 << 1)));
    asm volatile("csrs sstatus, %0" ::"r"(2));

    timer_deadline = rdtime() + 100000;
    show("set_timer", sbi(EXT_TIME, 0, timer_deadline, 0, 0, 0));
    while (!timer_hits) asm volatile("wfi");
    puts_(timer_seen >= timer_deadline ? "timer interrupt at or after its deadline\n" : "timer interrupt early\n");
    show("send_ipi(hart 0)", sbi(EXT_IPI, 0, 1, 0, 0, 0));
    while (!ipi_hits) asm volatile("wfi");
    puts_("software interrupt taken\n");
    puts_("timer interrupts ");
    putnum(timer_hits);
    puts_(", software interrupts ");
    putnum(ipi_hits);
    puts_("\nsbi-check end\n");
    show("system_reset(7)", sbi(EXT_SRST, 0, 7, 0, 0, 0));
    sbi(EXT_SRST, 0, 0, 0, 0, 0); /* shutdown, no reason */
    puts_("still running after shutdown\n");
    for (;;) asm volatile("wfi");
}

asm(".section .text.entry\n"
    ".globl _start\n"
    "_start:\n"
    "  la sp, stack_top\n"
    "  call main\n"
    "1: j 1b\n"
    ".bss\n"
    ".balign 16\n"
    "  .space 8192\n"
    "stack_top:\n");
