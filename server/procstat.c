#include "procstat.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common.h"

static int read_text(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return len ? 0 : -1;
}

/* The boot time (btime of /proc/stat), in seconds since the epoch, or -1.
 * /proc/stat has a line per CPU and a long interrupt line: read by pieces. */
static long long boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return -1;
    char piece[4096];
    long long t = -1;
    int line_start = 1;
    while (fgets(piece, sizeof(piece), f)) {
        if (line_start && strncmp(piece, "btime ", 6) == 0) {
            t = strtoll(piece + 6, NULL, 10);
            break;
        }
        size_t n = strlen(piece);
        line_start = n && piece[n - 1] == '\n';
    }
    fclose(f);
    return t;
}

static uint64_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n ? n - 1 : 0; /* not the one opendir holds */
}

int cel_procstat_read(cel_procstat *p)
{
    memset(p, 0, sizeof(*p));
    char buf[1024];
    if (read_text("/proc/self/stat", buf, sizeof(buf)))
        return CEL_EIO;
    /* The command name is in parentheses and may hold both: fields count from
     * the last ')'. After it: state (3), ... utime (14), stime (15), ...
     * starttime (22), vsize (23), rss in pages (24). */
    char *q = strrchr(buf, ')');
    if (!q)
        return CEL_EIO;
    unsigned long long f[25] = {0};
    q++;
    for (int i = 3; i <= 24 && *q; i++) {
        while (*q == ' ')
            q++;
        char *end;
        f[i] = strtoull(q, &end, 10);
        if (end == q) /* the state letter */
            while (*end && *end != ' ')
                end++;
        q = end;
    }
    long tck = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (tck <= 0 || page <= 0)
        return CEL_EIO;
    p->cpu_seconds = (double)(f[14] + f[15]) / (double)tck;
    p->virtual_bytes = f[23];
    p->resident_bytes = f[24] * (uint64_t)page;
    long long boot = boot_time();
    if (boot > 0)
        p->start_time = (double)boot + (double)f[22] / (double)tck;
    p->open_fds = count_fds();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        p->max_fds = rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
    return 0;
}
