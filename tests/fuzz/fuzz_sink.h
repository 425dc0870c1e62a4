/*
 * The fuzz targets' stand-in for a socket: an output queue flushes into it
 * (sink_writev as its writev), at most PER_ROUND bytes a flush round when set,
 * so that short writes are exercised. What it took is kept up to SINK_MAX for
 * the target's output checks; past that it only counts.
 */
#ifndef CEL_FUZZ_SINK_H
#define CEL_FUZZ_SINK_H

#include <errno.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "fuzz.h"

#define SINK_MAX (8u << 20)

typedef struct sink {
    uint8_t *buf;
    size_t len, cap;
    int overflow;     /* more than SINK_MAX: stop checking, keep counting */
    size_t per_round; /* 0 = unlimited */
    size_t left;      /* budget left in this round */
} sink;

static void sink_put(sink *k, const void *p, size_t n)
{
    if (k->overflow || k->len + n > SINK_MAX) {
        k->overflow = 1;
        return;
    }
    if (k->len + n > k->cap) {
        size_t cap = k->cap ? k->cap : 4096;
        while (cap < k->len + n)
            cap *= 2;
        uint8_t *b = realloc(k->buf, cap);
        if (!b)
            abort();
        k->buf = b;
        k->cap = cap;
    }
    memcpy(k->buf + k->len, p, n);
    k->len += n;
}

static ssize_t sink_writev(void *ctx, const struct iovec *iov, int iovcnt)
{
    sink *k = ctx;
    size_t total = 0;
    FUZZ_CHECK(iovcnt > 0, "writev with %d iovecs", iovcnt);
    for (int i = 0; i < iovcnt; i++) {
        size_t n = iov[i].iov_len;
        FUZZ_CHECK(n > 0 && iov[i].iov_base, "empty or NULL iovec");
        if (k->per_round) {
            if (k->left == 0)
                break;
            if (n > k->left)
                n = k->left;
            k->left -= n;
        }
        sink_put(k, iov[i].iov_base, n);
        total += n;
        if (n < iov[i].iov_len)
            break;
    }
    if (total == 0) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)total;
}

#endif
