/* /bin/child of the test initramfs: exec'd by /init; prints its arguments and environment,
 * reads the file named by its second argument, and exits with status 7. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv, char **envp)
{
    char line[512];
    int n = snprintf(line, sizeof line, "kpsim-child: argv");
    for (int i = 0; i < argc; i++)
        n += snprintf(line + n, sizeof line - n, " %s", argv[i]);
    n += snprintf(line + n, sizeof line - n, " env %s\n", envp[0] ? envp[0] : "(none)");
    write(1, line, n);
    if (argc > 2) {
        char buf[64];
        long total = 0;
        int fd = open(argv[2], O_RDONLY);
        ssize_t got;
        while (fd >= 0 && (got = read(fd, buf, sizeof buf)) > 0)
            total += got;
        n = snprintf(line, sizeof line, "kpsim-child: read %s: %ld bytes\n", argv[2], fd < 0 ? -1L : total);
        write(1, line, n);
    }
    return 7;
}
