/* Path mapping and confined opening for the dir handler. */
#include "fspath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int cel_fspath_map(const char *raw, size_t n, char *out, size_t cap, size_t *len, int *slash)
{
    size_t o = 0, seg = 0; /* seg: where the segment being written began */
    int in_seg = 0;
    if (slash)
        *slash = n > 0 && raw[n - 1] == '/';
    if (cap == 0)
        return CEL_ETOOBIG;
    for (size_t i = 0; i <= n; i++) {
        int c;
        if (i == n) {
            c = '/';
        } else if (raw[i] == '%') {
            if (i + 2 >= n)
                return CEL_EINVAL;
            int hi = hexval((unsigned char)raw[i + 1]), lo = hexval((unsigned char)raw[i + 2]);
            if (hi < 0 || lo < 0)
                return CEL_EINVAL;
            c = hi << 4 | lo;
            i += 2;
        } else {
            c = (unsigned char)raw[i];
        }
        if (c == 0 || c == '\\')
            return CEL_EINVAL;
        if (c != '/') {
            if (!in_seg) { /* the separator goes in once the segment has a byte */
                in_seg = 1;
                if (o > 0) {
                    if (o + 1 >= cap)
                        return CEL_ETOOBIG;
                    out[o++] = '/';
                }
                seg = o;
            }
            if (o + 1 >= cap)
                return CEL_ETOOBIG;
            out[o++] = (char)c;
            continue;
        }
        if (!in_seg)
            continue; /* an empty segment */
        in_seg = 0;
        size_t k = o - seg;
        if (k == 2 && out[seg] == '.' && out[seg + 1] == '.')
            return CEL_EINVAL;
        if (k == 1 && out[seg] == '.')
            o = seg > 0 ? seg - 1 : 0; /* "." and its separator */
    }
    out[o] = 0;
    *len = o;
    return 0;
}

int cel_fsroot_init(cel_fsroot *r, const char *path, int follow)
{
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char *real = realpath(path, NULL);
    if (!real) {
        int e = errno;
        close(fd);
        return -e;
    }
    r->fd = fd;
    r->real = real;
    r->real_len = strlen(real);
    r->follow = follow;
    return 0;
}

void cel_fsroot_deinit(cel_fsroot *r)
{
    if (r->fd >= 0)
        close(r->fd);
    free(r->real);
    r->fd = -1;
    r->real = NULL;
}

#define OPEN_FLAGS (O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)

#ifdef SYS_openat2
/* 1 until the kernel says it has no openat2 (or a sandbox forbids it). */
static int have_openat2 = 1; /* read and cleared with relaxed atomics: workers share it */
#endif

/* Where the kernel cannot confine the lookup: is the opened file's path
 * the root or below it? */
static int beneath(const cel_fsroot *r, int fd)
{
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t k = readlink(link, target, sizeof(target));
    if (k < 0 || (size_t)k >= sizeof(target))
        return 0;
    size_t n = r->real_len;
    if (n == 1) /* the root is "/" */
        return 1;
    return (size_t)k >= n && memcmp(target, r->real, n) == 0 &&
           ((size_t)k == n || target[n] == '/');
}

int cel_fspath_open(const cel_fsroot *r, const char *rel)
{
    const char *p = *rel ? rel : ".";
    if (r->follow) {
        int fd = openat(r->fd, p, OPEN_FLAGS);
        return fd < 0 ? -errno : fd;
    }
#ifdef SYS_openat2
    if (__atomic_load_n(&have_openat2, __ATOMIC_RELAXED)) {
        struct open_how how = {
            .flags = OPEN_FLAGS,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, r->fd, p, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS && errno != EPERM)
            return -errno;
        __atomic_store_n(&have_openat2, 0, __ATOMIC_RELAXED);
    }
#endif
    int fd = openat(r->fd, p, OPEN_FLAGS);
    if (fd < 0)
        return -errno;
    if (!beneath(r, fd)) {
        close(fd);
        return -EXDEV;
    }
    return fd;
}
