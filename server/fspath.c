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

/* Appends C to OUT; CEL_ETOOBIG when it and the NUL do not fit. */
static int put(char *out, size_t cap, size_t *o, char c)
{
    if (*o + 1 >= cap)
        return CEL_ETOOBIG;
    out[(*o)++] = c;
    return 0;
}

int cel_fspath_map(const char *raw, size_t n, char *out, size_t cap, size_t *len, int *slash)
{
    /* A segment's bytes go out once it cannot be "." any more (so that a
     * dropped "." never needs room), its separator with its first byte. */
    size_t o = 0, k = 0; /* k: bytes of the segment being read */
    int dot = 0;         /* the segment so far is ".", not yet written */
    if (slash)
        *slash = n > 0 && raw[n - 1] == '/';
    if (cap == 0)
        return CEL_ETOOBIG;
    for (size_t i = 0; i <= n; i++) {
        if (k > 0 && !dot) {
            /* inside a written segment: copy the run of bytes that need no care */
            size_t j = i;
            while (j < n && raw[j] != '%' && raw[j] != '/' && raw[j] != '\\' && raw[j] != 0)
                j++;
            if (j > i) {
                if (o + (j - i) >= cap)
                    return CEL_ETOOBIG;
                memcpy(out + o, raw + i, j - i);
                o += j - i;
                k += j - i;
                i = j;
            }
        }
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
        if (c == '/') {
            if (k == 2 && out[o - 1] == '.' && out[o - 2] == '.')
                return CEL_EINVAL;
            k = 0;
            dot = 0;
            continue;
        }
        if (k == 0 && c == '.') {
            dot = 1;
            k = 1;
            continue;
        }
        if (k == 0 || dot) {
            if ((o > 0 && put(out, cap, &o, '/')) || (dot && put(out, cap, &o, '.')))
                return CEL_ETOOBIG;
            dot = 0;
        }
        if (put(out, cap, &o, (char)c))
            return CEL_ETOOBIG;
        k++;
    }
    out[o] = 0;
    *len = o;
    return 0;
}

int cel_fspath_plain(const char *raw, size_t n)
{
    /* 1: a byte that is never plain; 2: '/', which the next byte must not
     * make an empty or dot segment */
    static const unsigned char cls[256] = {[0] = 1, ['%'] = 1, ['\\'] = 1, ['/'] = 2};
    if (n == 0 || raw[0] == '/' || raw[0] == '.' || raw[n - 1] == '/')
        return 0;
    if (n > 8) {
        /* a file in the root, the usual case: eight octets at a time, the
         * last word overlapping; any '/' goes to the loop below */
        uint64_t odd = 0, w;
        size_t i = 1;
        for (; i + 8 < n; i += 8) {
            memcpy(&w, raw + i, 8);
            odd |= cel_octets_eq(w, 0) | cel_octets_eq(w, '%') | cel_octets_eq(w, '\\') |
                   cel_octets_eq(w, '/');
        }
        memcpy(&w, raw + n - 8, 8);
        odd |= cel_octets_eq(w, 0) | cel_octets_eq(w, '%') | cel_octets_eq(w, '\\') |
               cel_octets_eq(w, '/');
        if (!odd)
            return cls[(unsigned char)raw[0]] == 0;
    }
    for (size_t i = 1; i < n; i++) {
        unsigned c = cls[(unsigned char)raw[i]];
        if (CEL_UNLIKELY(c) && (c == 1 || raw[i + 1] == '/' || raw[i + 1] == '.'))
            return 0;
    }
    return cls[(unsigned char)raw[0]] == 0;
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
