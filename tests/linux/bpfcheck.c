/* /init of the verifier-oracle initramfs: asks the Linux kernel's own verifier for its verdict
 * on each program of /data/corpus.bin (written by tests/ebpf/verifier_corpus.py) and prints one
 * line per program: "kpsim-bpf: NAME ok" or "kpsim-bpf: NAME ERRNO: LAST LOG LINE", then
 * powers off. Built static with zig cc (musl); the bpf(2) structures are declared here.
 *
 * corpus.bin: "KPBF", u32 count, then per program (little-endian):
 *   u16 len + name, u16 len + license, u32 nmaps,
 *   per map: u32 type, key_size, value_size, max_entries, flags, map_extra, init_len, init bytes
 *            (element 0's value; a BPF_F_RDONLY_PROG map is then frozen),
 *   u32 ninsns, ninsns * 8 bytes (lddw src 1/2 carry a map index in imm, replaced by its fd),
 *   u32 btf_len, BTF blob, u32 nfuncs, nfuncs * (u32 insn_off, u32 type_id): the func_info.
 * /data/corpus2.bin ("KPB2", tests/ebpf/verifier_corpus_btf.py): the same records with three u32
 * after the license: prog_type, expected_attach_type and attach_btf_id (the target function's
 * id in the running kernel's vmlinux BTF; loading a tracing program does not attach it).
 * A program whose name starts with "log_" gets the whole verifier log (level 2), one
 * "kpsim-log: " line each, for investigating a verdict. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BPF_MAP_CREATE 0
#define BPF_MAP_UPDATE_ELEM 2
#define BPF_PROG_LOAD 5
#define BPF_MAP_FREEZE 22
#define BPF_BTF_LOAD 18
#define BPF_PROG_TYPE_KPROBE 2
#define BPF_F_RDONLY_PROG (1U << 7)

struct map_create_attr {
    uint32_t map_type, key_size, value_size, max_entries, map_flags, inner_map_fd, numa_node;
    char map_name[16];
    uint32_t map_ifindex, btf_fd, btf_key_type_id, btf_value_type_id, btf_vmlinux_value_type_id;
    uint64_t map_extra;
};

struct elem_attr {
    uint32_t map_fd, pad;
    uint64_t key, value, flags;
};

struct prog_load_attr {
    uint32_t prog_type, insn_cnt;
    uint64_t insns, license;
    uint32_t log_level, log_size;
    uint64_t log_buf;
    uint32_t kern_version, prog_flags;
    char prog_name[16];
    uint32_t prog_ifindex, expected_attach_type, prog_btf_fd, func_info_rec_size;
    uint64_t func_info;
    uint32_t func_info_cnt;
    uint32_t line_info_rec_size;
    uint64_t line_info;
    uint32_t line_info_cnt, attach_btf_id;
};

struct btf_load_attr {
    uint64_t btf, btf_log_buf;
    uint32_t btf_size, btf_log_size, btf_log_level;
};

static char logbuf[1 << 24];
static unsigned char data[1 << 22];
static size_t pos, len;

static void say(const char *fmt, const char *a, const char *b)
{
    char line[600];
    int n = snprintf(line, sizeof line - 1, fmt, a, b);
    if (n > (int)sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    write(1, line, n);
}

static uint32_t u32(void)
{
    uint32_t v = 0;
    if (pos + 4 <= len)
        memcpy(&v, data + pos, 4);
    pos += 4;
    return v;
}

static uint16_t u16(void)
{
    uint16_t v = 0;
    if (pos + 2 <= len)
        memcpy(&v, data + pos, 2);
    pos += 2;
    return v;
}

static long sys_bpf(int cmd, void *attr, unsigned size)
{
    return syscall(SYS_bpf, cmd, attr, size);
}

/* The verifier's message: the last log line before "processed N insns ..." / "verification time". */
static const char *last_line(void)
{
    static char out[400];
    char *lines[64];
    int n = 0;
    for (char *p = strtok(logbuf, "\n"); p; p = strtok(NULL, "\n")) {
        if (!strncmp(p, "processed ", 10) || !strncmp(p, "verification time", 17) ||
            !strncmp(p, "stack depth", 11) || !strncmp(p, "cur state", 9) ||
            !strncmp(p, "old state", 9) || !*p)
            continue;
        if (n == 64) {
            memmove(lines, lines + 1, 63 * sizeof *lines);
            n = 63;
        }
        lines[n++] = p;
    }
    snprintf(out, sizeof out, "%s", n ? lines[n - 1] : "(no log)");
    return out;
}

static void check_one(int ext)
{
    char name[64] = {0}, license[64] = {0}, num[32];
    int fds[16];
    uint16_t nl = u16();
    memcpy(name, data + pos, nl < 63 ? nl : 63);
    pos += nl;
    uint16_t ll = u16();
    memcpy(license, data + pos, ll < 63 ? ll : 63);
    pos += ll;
    uint32_t prog_type = BPF_PROG_TYPE_KPROBE, attach_type = 0, attach_btf_id = 0;
    if (ext) {
        prog_type = u32();
        attach_type = u32();
        attach_btf_id = u32();
    }
    uint32_t nmaps = u32();
    for (uint32_t i = 0; i < nmaps && i < 16; i++) {
        struct map_create_attr m;
        memset(&m, 0, sizeof m);
        m.map_type = u32();
        m.key_size = u32();
        m.value_size = u32();
        m.max_entries = u32();
        m.map_flags = u32();
        m.map_extra = u32();
        uint32_t init = u32();
        fds[i] = (int)sys_bpf(BPF_MAP_CREATE, &m, sizeof m);
        if (fds[i] < 0) {
            snprintf(num, sizeof num, "%d", errno);
            say("kpsim-bpf: %s map-create-failed errno %s", name, num);
        } else if (init) {
            struct elem_attr e;
            uint32_t zero = 0;
            memset(&e, 0, sizeof e);
            e.map_fd = fds[i];
            e.key = (uintptr_t)&zero;
            e.value = (uintptr_t)(data + pos);
            if (sys_bpf(BPF_MAP_UPDATE_ELEM, &e, sizeof e) < 0)
                say("kpsim-bpf: %s map-init-failed %s", name, "");
            if (m.map_flags & BPF_F_RDONLY_PROG) {
                uint32_t fd = fds[i];
                uint32_t attr[4] = {fd, 0, 0, 0};
                if (sys_bpf(BPF_MAP_FREEZE, attr, sizeof attr) < 0)
                    say("kpsim-bpf: %s map-freeze-failed %s", name, "");
            }
        }
        pos += init;
    }
    uint32_t n = u32();
    uint64_t *insns = (uint64_t *)(data + pos);
    pos += 8 * (size_t)n;
    for (uint32_t i = 0; i < n; i++) {
        unsigned char *b = (unsigned char *)&insns[i];
        int src = b[1] >> 4;
        if (b[0] == 0x18 && (src == 1 || src == 2)) {
            int32_t idx;
            memcpy(&idx, b + 4, 4);
            int32_t fd = idx >= 0 && idx < (int)nmaps ? fds[idx] : -1;
            memcpy(b + 4, &fd, 4);
            i++;
        }
    }
    uint32_t btf_len = u32();
    struct btf_load_attr b;
    memset(&b, 0, sizeof b);
    b.btf = (uintptr_t)(data + pos);
    b.btf_size = btf_len;
    pos += btf_len;
    int btf_fd = btf_len ? (int)sys_bpf(BPF_BTF_LOAD, &b, sizeof b) : -1;
    if (btf_len && btf_fd < 0) {
        snprintf(num, sizeof num, "%d", errno);
        say("kpsim-bpf: %s btf-load-failed errno %s", name, num);
    }
    uint32_t nfuncs = u32();
    void *funcs = data + pos;
    pos += 8 * (size_t)nfuncs;
    struct prog_load_attr p;
    memset(&p, 0, sizeof p);
    if (btf_fd >= 0) {
        p.prog_btf_fd = btf_fd;
        p.func_info_rec_size = 8;
        p.func_info = (uintptr_t)funcs;
        p.func_info_cnt = nfuncs;
    }
    p.prog_type = prog_type;
    p.expected_attach_type = attach_type;
    p.attach_btf_id = attach_btf_id;
    p.insn_cnt = n;
    p.insns = (uintptr_t)insns;
    p.license = (uintptr_t)license;
    /* log_ cases print the whole log (level 2); the others ask for BPF_LOG_STATS alone: the
     * verifier's messages (and statistics) without level 1's trace of every processed
     * instruction, whose formatting under TCG cost ~100 s of CPU on counter_loop_no_bound's
     * 32k processed instructions (the whole corpus now takes ~8 s). */
    int full_log = !strncmp(name, "log_", 4);
    p.log_level = full_log ? 2 : 4;
    p.log_size = sizeof logbuf;
    p.log_buf = (uintptr_t)logbuf;
    logbuf[0] = 0;
    int fd = (int)sys_bpf(BPF_PROG_LOAD, &p, sizeof p);
    for (char *q = logbuf; full_log && *q;) {
        char *e = strchr(q, '\n');
        if (e)
            *e = 0;
        say("kpsim-log: %s%s", q, "");
        if (!e)
            break;
        *e = '\n';
        q = e + 1;
    }
    if (fd >= 0) {
        say("kpsim-bpf: %s ok%s", name, "");
        close(fd);
    } else {
        int e = errno;
        snprintf(num, sizeof num, "%d", e);
        char msg[500];
        snprintf(msg, sizeof msg, "%s: %s", num, last_line());
        say("kpsim-bpf: %s %s", name, msg);
    }
    for (uint32_t i = 0; i < nmaps && i < 16; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (btf_fd >= 0)
        close(btf_fd);
}

int main(void)
{
    /* the kernel runs callbacks only in JITed programs: turn the JIT on */
    if (mount("proc", "/proc", "proc", 0, NULL) == 0) {
        int jit = open("/proc/sys/net/core/bpf_jit_enable", O_WRONLY);
        if (jit < 0 || write(jit, "1", 1) != 1)
            say("kpsim-bpf: cannot enable the BPF JIT%s%s", "", "");
        if (jit >= 0)
            close(jit);
    }
    static const char *const files[] = {"/data/corpus.bin", "/data/corpus2.bin"};
    for (int f = 0; f < 2; f++) {
        int fd = open(files[f], O_RDONLY);
        if (fd < 0) {
            if (!f)
                say("kpsim-bpf: no corpus%s%s", "", "");
            continue;
        }
        ssize_t got;
        len = pos = 0;
        while ((got = read(fd, data + len, sizeof data - len)) > 0)
            len += (size_t)got;
        close(fd);
        int ext = len >= 8 && !memcmp(data, "KPB2", 4);
        if (len >= 8 && (ext || !memcmp(data, "KPBF", 4))) {
            pos = 4;
            uint32_t count = u32();
            for (uint32_t i = 0; i < count && pos < len; i++)
                check_one(ext);
        }
    }
    say("kpsim-bpf: done%s%s", "", "");
    sync();
    reboot(RB_POWER_OFF);
    return 1;
}
