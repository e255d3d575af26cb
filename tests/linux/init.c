/* The initramfs's /init for the Linux-guest tests (built static with zig cc for
 * riscv64-linux-musl and x86_64-linux-musl). Its console lines all start with "kpsim-init: "
 * (the child's with "kpsim-child: ") and depend only on the initramfs, never on timing, pids
 * or the arch, so a transcript can be compared across machines and arches.
 *
 * What it does: reads the files of /data (printing each file's name, the count of every
 * read(2) call and the total), tries one file that does not exist, forks, execs /bin/child
 * and waits for it, and powers off with reboot(2). Along the way it prints what digits() (a
 * small function the uprobe tests probe) returned for a few numbers, in init and once in the
 * forked child before it execs. After the child: it reads its own file /init and checks its
 * text against a hash the build wrote into it (a probe's break must not show in the file),
 * and spawns a few short-lived children, forked inside spawn(), each exiting with
 * work()'s result. With "kallsyms" among its arguments (kernel
 * command line "... -- kallsyms") it also mounts /proc and prints a digest of /proc/kallsyms
 * before powering off: the oracle for the kallsyms reader. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char *fmt, ...)
{
    char line[512];
    int n = snprintf(line, sizeof line, "kpsim-init: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    write(1, line, n); /* one write per line, so kernel messages cannot split it */
}

static const char *errname(int e)
{
    switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    default: return "errno";
    }
}

/* Open and read one file in 256-byte reads; prints "read NAME: a b c 0 = TOTAL bytes". */
static void read_file(const char *path)
{
    char buf[256], counts[256];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        say("open %s: %s", path, errname(errno));
        return;
    }
    long total = 0;
    int used = 0;
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        used += snprintf(counts + used, sizeof counts - used, "%ld ", (long)got);
        if (got <= 0 || used >= (int)sizeof counts - 24)
            break;
        total += got;
    }
    close(fd);
    say("read %s: %s= %ld bytes", path, counts, total);
}

/* The number of decimal digits of n: the uprobe tests count its calls and read its returns. */
__attribute__((noinline)) int digits(unsigned long n)
{
    int d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

/* What a spawned child computes, its exit status: one call per child (the uprobe tests count them). */
__attribute__((noinline)) int work(unsigned long n)
{
    return (int)(n * 7 % 11);
}

/* Forks: returns the child's pid in the parent and 0 in the child, so the child returns from
 * here too, through the return address it inherited (a uretprobe on spawn() sees both). */
__attribute__((noinline)) int spawn(void)
{
    int pid = fork();
    __asm__ volatile("" ::: "memory"); /* not a tail call: spawn() returns itself */
    return pid;
}

/* FNV-1a 64 of the part of this program's executable segment in the first SELF_READ bytes of
 * the file, as the file holds it: written here after the link by the initramfs build
 * (linux/initramfs.py). */
__attribute__((used)) volatile unsigned long long kpsim_text_fnv = 0x6b7073696d2d7478ULL;
enum { SELF_READ = 32768 }; /* one read(2) of the same size on every arch (the files are larger) */

/* Read the start of /init (this program's file, whose text init runs) with one read(2) and
 * hash the text in it: equal to kpsim_text_fnv unless a probe's break shows in the file. */
__attribute__((noinline)) static void check_self(void)
{
    static unsigned char file[SELF_READ];
    int fd = open("/init", O_RDONLY);
    if (fd < 0) {
        say("open /init: %s", errname(errno));
        return;
    }
    ssize_t size = read(fd, file, sizeof file);
    close(fd);
    const Elf64_Ehdr *eh = (const void *)file;
    unsigned long long hash = 0xcbf29ce484222325ULL;
    int segments = 0;
    for (int i = 0; size == SELF_READ && i < eh->e_phnum; i++) {
        const Elf64_Phdr *ph = (const void *)(file + eh->e_phoff + (unsigned long)i * eh->e_phentsize);
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        for (unsigned long at = ph->p_offset; at < ph->p_offset + ph->p_filesz && at < SELF_READ; at++)
            hash = (hash ^ file[at]) * 0x100000001b3ULL;
        segments++;
    }
    if (segments == 1 && hash == kpsim_text_fnv)
        say("read /init: its text is the file's");
    else
        say("read /init: its text differs from the file's (%d segments, %ld bytes)", segments, (long)size);
}

/* Digest /proc/kallsyms: its line count, byte count and FNV-1a 64-bit hash over every byte,
 * plus every 1000th line as a sample (a full copy over the UART would take minutes). */
static void digest_kallsyms(void)
{
    static char buf[65536];
    char line[256];
    int used = 0;
    unsigned long long hash = 0xcbf29ce484222325ULL, bytes = 0, lines = 0;
    if (mount("proc", "/proc", "proc", 0, NULL) != 0) {
        say("mount /proc: %s", errname(errno));
        return;
    }
    int fd = open("/proc/kallsyms", O_RDONLY);
    if (fd < 0) {
        say("open /proc/kallsyms: %s", errname(errno));
        return;
    }
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < got; i++) {
            unsigned char c = buf[i];
            hash = (hash ^ c) * 0x100000001b3ULL;
            bytes++;
            if (c != '\n') {
                if (used < (int)sizeof line - 1)
                    line[used++] = c;
                continue;
            }
            line[used] = 0;
            if (lines % 1000 == 0)
                say("kallsyms line %llu: %s", lines, line);
            lines++;
            used = 0;
        }
    close(fd);
    say("kallsyms %llu lines %llu bytes fnv1a64 %016llx", lines, bytes, hash);
}

int main(int argc, char **argv)
{
    say("hello from init"); /* not the argument count: kernels differ in what they pass on */
    int kallsyms = 0;
    for (int i = 1; i < argc; i++)
        kallsyms |= strcmp(argv[i], "kallsyms") == 0;

    static const char *const files[] = {"/data/hello.txt", "/data/lines.txt", "/data/blob.bin",
                                        "/data/missing.txt"};
    for (unsigned i = 0; i < sizeof files / sizeof files[0]; i++)
        read_file(files[i]);

    static const unsigned long numbers[] = {7, 35, 636, 1024, 65536};
    for (unsigned i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        say("digits %lu: %d", numbers[i], digits(numbers[i]));

    say("fork and exec /bin/child");
    pid_t pid = fork();
    if (pid == 0) {
        say("forked child: digits %lu: %d", 1234567UL, digits(1234567UL));
        char *const child_argv[] = {"/bin/child", "from-init", "/data/hello.txt", NULL};
        char *const child_envp[] = {"KPSIM=1", NULL};
        execve("/bin/child", child_argv, child_envp);
        say("execve /bin/child: %s", errname(errno));
        _exit(127);
    }
    if (pid < 0) {
        say("fork: %s", errname(errno));
    } else {
        int status = 0;
        if (waitpid(pid, &status, 0) != pid)
            say("waitpid: %s", errname(errno));
        else if (WIFEXITED(status))
            say("child exited with status %d", WEXITSTATUS(status));
        else
            say("child ended by signal %d", WTERMSIG(status));
    }
    check_self();

    enum { SPAWNED = 6 };
    int sum = 0;
    for (unsigned long i = 1; i <= SPAWNED; i++) {
        int pid = spawn();
        if (pid == 0)
            _exit(work(i));
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid) {
            say("spawn %lu: %s", i, errname(errno));
            continue;
        }
        sum += WEXITSTATUS(status);
    }
    say("spawned %d children: exit statuses sum to %d", SPAWNED, sum);

    if (kallsyms)
        digest_kallsyms();
    say("power off");
    sync();
    reboot(RB_POWER_OFF);
    say("reboot: %s", errname(errno));
    return 1;
}
