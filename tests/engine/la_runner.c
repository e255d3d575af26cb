/* Differential-test runner for qemu-loongarch64 (user mode, freestanding, no libc).
 *
 * stdin: records {u32 code_len; u32 epi_len; u64 regs[32]; u8 mem[MEM_SIZE]; u8 code[code_len];
 * u8 epi[epi_len]}. For each record: the code goes to CODE, the epilogue to EPI, mem to SCRATCH,
 * regs to ctx->in; the code is called
 * as void code(u64 *ctx) (it saves the callee-saved registers, loads all registers from ctx->in,
 * runs, stores all registers to ctx->out and returns). stdout: ctx->out (32 x u64), then the
 * scratch memory, per record.
 */
typedef unsigned long u64;
typedef unsigned int u32;

#define CODE 0x10000000UL
#define CODE_SIZE 0x10000UL
#define SCRATCH 0x10100000UL
#define MEM_SIZE 0x1000UL
#define CTX 0x10200000UL
#define EPI (CODE + 0x8000UL)

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long a0 __asm__("$a0") = a;
    register long a1 __asm__("$a1") = b;
    register long a2 __asm__("$a2") = c;
    register long a3 __asm__("$a3") = d;
    register long a4 __asm__("$a4") = e;
    register long a5 __asm__("$a5") = f;
    register long a7 __asm__("$a7") = n;
    __asm__ volatile("syscall 0"
                     : "+r"(a0)
                     : "r"(a1), "r"(a2), "r"(a3), "r"(a4), "r"(a5), "r"(a7)
                     : "memory");
    return a0;
}

static void die(long code) {
    sys6(93, code, 0, 0, 0, 0, 0);
    for (;;) {
    }
}

static int read_all(void *buf, long n) {
    char *p = buf;
    while (n > 0) {
        long r = sys6(63, 0, (long)p, n, 0, 0, 0);
        if (r <= 0) return 0;
        p += r;
        n -= r;
    }
    return 1;
}

static void write_all(const void *buf, long n) {
    const char *p = buf;
    while (n > 0) {
        long r = sys6(64, 1, (long)p, n, 0, 0, 0);
        if (r <= 0) die(3);
        p += r;
        n -= r;
    }
}

static void map(u64 addr, u64 size, long prot) {
    long r = sys6(222, (long)addr, (long)size, prot, 0x32 /* PRIVATE|ANON|FIXED */, -1, 0);
    if (r != (long)addr) die(2);
}

void _start(void) {
    map(CODE, CODE_SIZE, 7);
    map(SCRATCH, MEM_SIZE, 3);
    map(CTX, 0x1000, 3);
    u64 *ctx = (u64 *)CTX;
    for (;;) {
        u32 hdr[2];
        if (!read_all(hdr, 8)) die(0);
        if (hdr[0] > 0x8000 || hdr[1] > 0x1000) die(4);
        if (!read_all(ctx, 256)) die(5);
        if (!read_all((void *)SCRATCH, MEM_SIZE)) die(5);
        if (!read_all((void *)CODE, hdr[0])) die(5);
        if (!read_all((void *)EPI, hdr[1])) die(5);
        __asm__ volatile("ibar 0" ::: "memory");
        ((void (*)(u64 *))CODE)(ctx);
        write_all(ctx + 32, 256);
        write_all((void *)SCRATCH, MEM_SIZE);
    }
}
