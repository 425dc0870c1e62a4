#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "outq.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

#define POOL_CAP ((size_t)64 << 20)

/* Sink actions: a positive value accepts up to that many bytes. */
enum {
    ACT_ALL = -1,
    ACT_EAGAIN = 0,
    ACT_EINTR = -2,
    ACT_EPIPE = -3,
    ACT_NONE = -4, /* returns 0: wrote nothing, no error */
    ACT_RANDOM = -5,
};

#define LOG_MAX 64

struct sink {
    const int *script;
    size_t nscript, pos;
    int dflt; /* once the script runs out */
    unsigned char *out;
    size_t len, cap;
    int calls;
    int iovcnt[LOG_MAX];
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void sink_init(struct sink *s, const int *script, size_t n, int dflt)
{
    memset(s, 0, sizeof(*s));
    s->script = script;
    s->nscript = n;
    s->dflt = dflt;
}

static void sink_record(struct sink *s, const void *p, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->out = realloc(s->out, s->cap);
        assert_non_null(s->out);
    }
    memcpy(s->out + s->len, p, n);
    s->len += n;
}

static int random_action(void)
{
    unsigned r = (unsigned)(rnd() % 100);
    if (r < 5)
        return 1;
    if (r < 10)
        return 7;
    if (r < 20)
        return ACT_EAGAIN;
    if (r < 30)
        return ACT_EINTR;
    if (r < 35)
        return ACT_NONE;
    if (r < 55)
        return ACT_ALL;
    return 1 + (int)(rnd() % 70000);
}

static ssize_t sink_writev(void *ctx, const struct iovec *iov, int iovcnt)
{
    struct sink *s = ctx;
    int act = s->pos < s->nscript ? s->script[s->pos++] : s->dflt;
    if (act == ACT_RANDOM)
        act = random_action();
    if (s->calls < LOG_MAX)
        s->iovcnt[s->calls] = iovcnt;
    s->calls++;
    assert_true(iovcnt > 0 && iovcnt <= IOV_MAX);
    switch (act) {
    case ACT_EAGAIN:
        errno = EAGAIN;
        return -1;
    case ACT_EINTR:
        errno = EINTR;
        return -1;
    case ACT_EPIPE:
        errno = EPIPE;
        return -1;
    case ACT_NONE:
        return 0;
    }
    size_t lim = act == ACT_ALL ? SIZE_MAX : (size_t)act, w = 0;
    for (int i = 0; i < iovcnt && w < lim; i++) {
        assert_true(iov[i].iov_len > 0);
        size_t take = iov[i].iov_len < lim - w ? iov[i].iov_len : lim - w;
        sink_record(s, iov[i].iov_base, take);
        w += take;
    }
    return (ssize_t)w;
}

/* Release bookkeeping: each ref knows where it ends in the output stream. */
struct ref_rec {
    size_t end;
    int released;
    unsigned idx;
};

static struct sink *g_sink;
static int g_deiniting;
static unsigned g_last_released;

static void on_release(void *arg)
{
    struct ref_rec *r = arg;
    assert_int_equal(r->released, 0);
    r->released++;
    if (!g_deiniting)
        assert_true(g_sink->len >= r->end);
    /* The queue is FIFO, so releases come in queue order. */
    assert_true(r->idx + 1 > g_last_released);
    g_last_released = r->idx + 1;
}

static void release_count(void *arg)
{
    (*(int *)arg)++;
}

static cel_pool_stats pool_stats(const cel_pool *p)
{
    cel_pool_stats st;
    cel_pool_get_stats(p, &st);
    return st;
}

/* Per-test fixture: a pool, a queue on it and a sink that takes everything
 * unless the test gives it a script. */
struct fx {
    cel_pool *pool;
    cel_outq q;
    struct sink s;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->pool = cel_pool_new(POOL_CAP);
    cel_outq_init(&f->q, f->pool);
    sink_init(&f->s, NULL, 0, ACT_ALL);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    cel_outq_deinit(&f->q);
    free(f->s.out);
    cel_pool_free(f->pool);
    free(f);
    return 0;
}

#define FLUSH(f) cel_outq_flush(&(f)->q, sink_writev, &(f)->s)

static void test_empty(void **state)
{
    struct fx *f = *state;
    assert_int_equal(FLUSH(f), 0);
    assert_int_equal(cel_outq_copy(&f->q, "x", 0), 0);
    assert_int_equal(cel_outq_ref(&f->q, "x", 0, NULL, NULL), 0);
    assert_int_equal(cel_outq_pending(&f->q), 0);
    assert_int_equal(FLUSH(f), 0);
    assert_int_equal(f->s.calls, 0);
    cel_outq_deinit(&f->q);
}

static void test_coalesce(void **state)
{
    struct fx *f = *state;
    char expect[900];
    for (int i = 0; i < 100; i++) {
        char hdr[9];
        memset(hdr, 'a' + i % 26, sizeof(hdr));
        memcpy(expect + i * 9, hdr, 9);
        assert_int_equal(cel_outq_copy(&f->q, hdr, sizeof(hdr)), 0);
    }
    assert_int_equal(cel_outq_pending(&f->q), 900);
    assert_int_equal(FLUSH(f), 0);
    assert_int_equal(f->s.calls, 1);
    assert_int_equal(f->s.iovcnt[0], 1);
    assert_int_equal(f->s.len, 900);
    assert_memory_equal(f->s.out, expect, 900);

    /* A ref between copies breaks the run: copy, ref, copy is three iovecs. */
    int rel = 0;
    assert_int_equal(cel_outq_copy(&f->q, "ab", 2), 0);
    assert_int_equal(cel_outq_copy(&f->q, "cd", 2), 0);
    assert_int_equal(cel_outq_ref(&f->q, "EFG", 3, release_count, &rel), 0);
    assert_int_equal(cel_outq_copy(&f->q, "hi", 2), 0);
    assert_int_equal(cel_outq_copy(&f->q, "jk", 2), 0);
    assert_int_equal(FLUSH(f), 0);
    assert_int_equal(f->s.calls, 2);
    assert_int_equal(f->s.iovcnt[1], 3);
    assert_memory_equal(f->s.out + 900, "abcdEFGhijk", 11);
    assert_int_equal(rel, 1);
}

/* cel_outq_copy2 (a frame header and its payload in one go): the bytes come
 * out in order whether they fit behind the last copy, cross into a new chunk,
 * or follow a ref; an empty second part adds nothing. */
static void test_copy2(void **state)
{
    struct fx *f = *state;
    static char expect[3 * CEL_OUTQ_CHUNK_ROOM];
    size_t total = 0;
    int rel = 0;
    char hdr[9], body[200];
    for (int i = 0; total + sizeof(hdr) + sizeof(body) < sizeof(expect); i++) {
        memset(hdr, 'A' + i % 26, sizeof(hdr));
        size_t nb = (size_t)(i * 37) % sizeof(body);
        memset(body, 'a' + i % 26, nb);
        assert_int_equal(cel_outq_copy2(&f->q, hdr, sizeof(hdr), body, nb), 0);
        memcpy(expect + total, hdr, sizeof(hdr));
        memcpy(expect + total + sizeof(hdr), body, nb);
        total += sizeof(hdr) + nb;
        if (i == 5) { /* a ref in between: the next copy2 starts a new segment */
            assert_int_equal(cel_outq_ref(&f->q, "REF", 3, release_count, &rel), 0);
            memcpy(expect + total, "REF", 3);
            total += 3;
        }
    }
    assert_int_equal(cel_outq_pending(&f->q), total);
    while (cel_outq_pending(&f->q))
        assert_int_equal(FLUSH(f), 0);
    assert_int_equal(f->s.len, total);
    assert_memory_equal(f->s.out, expect, total);
    assert_int_equal(rel, 1);
}

static void test_partial_and_eagain(void **state)
{
    struct fx *f = *state;
    static const int script[] = {5, ACT_EAGAIN, ACT_NONE, 1, 7, ACT_ALL};
    sink_init(&f->s, script, 6, ACT_ALL);
    char data[100];
    for (int i = 0; i < 100; i++)
        data[i] = (char)i;
    int rel = 0;
    assert_int_equal(cel_outq_copy(&f->q, data, 40), 0);
    assert_int_equal(cel_outq_ref(&f->q, data + 40, 60, release_count, &rel), 0);

    /* Short write: stop at once rather than spin on a full socket. */
    static const size_t left[] = {95, 95, 95, 94, 87};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(FLUSH(f), CEL_EAGAIN);
        assert_int_equal(f->s.calls, i + 1);
        assert_int_equal(cel_outq_pending(&f->q), left[i]);
    }
    assert_int_equal(rel, 0);
    assert_int_equal(FLUSH(f), 0);
    assert_int_equal(cel_outq_pending(&f->q), 0);
    assert_int_equal(rel, 1);
    assert_int_equal(f->s.len, 100);
    assert_memory_equal(f->s.out, data, 100);
    cel_outq_deinit(&f->q);
    assert_int_equal(rel, 1);
}

static void test_release_after_last_byte(void **state)
{
    struct fx *f = *state;
    static const int script[] = {99, 1};
    sink_init(&f->s, script, 2, ACT_ALL);
    char data[100] = {0};
    int rel = 0, rel_empty = 0;
    assert_int_equal(cel_outq_ref(&f->q, data, 100, release_count, &rel), 0);
    assert_int_equal(cel_outq_ref(&f->q, data, 0, release_count, &rel_empty), 0);
    assert_int_equal(FLUSH(f), CEL_EAGAIN);
    assert_int_equal(rel + rel_empty, 0);
    assert_int_equal(FLUSH(f), 0);
    assert_int_equal(rel, 1);
    assert_int_equal(rel_empty, 1);
    assert_int_equal(f->s.calls, 2);

    /* An empty ref alone in the queue is released by a flush with no write. */
    assert_int_equal(cel_outq_ref(&f->q, data, 0, release_count, &rel_empty), 0);
    assert_int_equal(FLUSH(f), 0);
    assert_int_equal(rel_empty, 2);
    assert_int_equal(f->s.calls, 2);
}

static void test_eintr_and_eio(void **state)
{
    struct fx *f = *state;
    static const int script[] = {ACT_EINTR, ACT_EINTR, 3, ACT_EPIPE};
    sink_init(&f->s, script, 4, ACT_ALL);
    assert_int_equal(cel_outq_copy(&f->q, "hello", 5), 0);
    assert_int_equal(FLUSH(f), CEL_EAGAIN);
    assert_int_equal(f->s.calls, 3);
    assert_int_equal(cel_outq_pending(&f->q), 2);
    errno = 0;
    assert_int_equal(FLUSH(f), CEL_EIO);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(cel_outq_pending(&f->q), 2);
    assert_int_equal(FLUSH(f), 0);
    assert_int_equal(f->s.len, 5);
    assert_memory_equal(f->s.out, "hello", 5);
}

static void test_deinit_releases(void **state)
{
    struct fx *f = *state;
    static const int script[] = {15};
    sink_init(&f->s, script, 1, ACT_EAGAIN);
    int rel[4] = {0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(cel_outq_ref(&f->q, "0123456789", 10, release_count, &rel[i]), 0);
        assert_int_equal(cel_outq_copy(&f->q, "xy", 2), 0);
    }
    assert_int_equal(FLUSH(f), CEL_EAGAIN);
    assert_int_equal(rel[0], 1);
    assert_int_equal(rel[1], 0);
    cel_outq_deinit(&f->q);
    for (int i = 0; i < 4; i++)
        assert_int_equal(rel[i], 1);
    assert_int_equal(cel_outq_pending(&f->q), 0);

    /* Reusable after deinit. */
    cel_outq_init(&f->q, f->pool);
    assert_int_equal(cel_outq_copy(&f->q, "again", 5), 0);
    f->s.dflt = ACT_ALL;
    assert_int_equal(FLUSH(f), 0);
    assert_memory_equal(f->s.out + 15, "again", 5);
}

static void test_big_copy(void **state)
{
    struct fx *f = *state;
    size_t n = 5 * CEL_OUTQ_CHUNK + 123;
    unsigned char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 7 + 3);
    assert_int_equal(cel_outq_copy(&f->q, "abc", 3), 0);
    assert_int_equal(cel_outq_copy(&f->q, data, n), 0);
    memset(data, 0, 16);
    assert_int_equal(cel_outq_pending(&f->q), n + 3);
    assert_int_equal(FLUSH(f), 0);
    assert_int_equal(f->s.len, n + 3);
    assert_memory_equal(f->s.out, "abc", 3);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(f->s.out[3 + i], (unsigned char)(i * 7 + 3));
    /* One iovec per chunk the copy spans (chunk headers eat a little room). */
    int min_iov = (int)((n + 3 + CEL_OUTQ_CHUNK - 1) / CEL_OUTQ_CHUNK);
    assert_in_range(f->s.iovcnt[0], min_iov, min_iov + 1);

    assert_int_equal(cel_outq_copy(&f->q, data, SIZE_MAX / 2), CEL_ENOMEM);
    assert_int_equal(cel_outq_pending(&f->q), 0);
    free(data);
}

/* More segments than one writev may carry: the flush loops over batches. */
static void test_many_segments(void **state)
{
    struct fx *f = *state;
    enum { N = 3000 };
    static int rel[N];
    static const char digits[] = "0123456789";
    unsigned char expect[2 * N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(cel_outq_ref(&f->q, &digits[i % 10], 1, release_count, &rel[i]), 0);
        assert_int_equal(cel_outq_copy(&f->q, "-", 1), 0);
        expect[2 * i] = (unsigned char)digits[i % 10];
        expect[2 * i + 1] = '-';
    }
    assert_int_equal(FLUSH(f), 0);
    assert_true(f->s.calls >= 2 * N / IOV_MAX);
    for (int i = 0; i < f->s.calls && i < LOG_MAX; i++)
        assert_true(f->s.iovcnt[i] <= IOV_MAX);
    assert_int_equal(f->s.len, 2 * N);
    assert_memory_equal(f->s.out, expect, 2 * N);
    for (int i = 0; i < N; i++)
        assert_int_equal(rel[i], 1);
}

static size_t random_size(void)
{
    unsigned r = (unsigned)(rnd() % 100);
    if (r < 50)
        return rnd() % 65;
    if (r < 80)
        return rnd() % 2001;
    return rnd() % 40001;
}

#define SRC_LEN ((size_t)1 << 20)
#define MAX_REFS 512

/* Random interleavings of copies, refs and flushes against a random sink: the
 * bytes out must be exactly the bytes in, and every release runs once, in
 * order, after its last byte. */
static void test_property(void **state)
{
    (void)state;
    unsigned char *src = malloc(SRC_LEN), *scratch = malloc(40001);
    rng_state = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < SRC_LEN; i++)
        src[i] = (unsigned char)rnd();
    static struct ref_rec recs[MAX_REFS];
    cel_pool *pool = cel_pool_new(POOL_CAP);

    for (int round = 0; round < 300; round++) {
        cel_outq q;
        cel_outq_init(&q, pool);
        struct sink s;
        sink_init(&s, NULL, 0, ACT_RANDOM);
        g_sink = &s;
        g_deiniting = 0;
        g_last_released = 0;
        unsigned char *exp = NULL;
        size_t elen = 0, ecap = 0, checked = 0;
        unsigned nrefs = 0;
        int ops = 1 + (int)(rnd() % 200);
        for (int op = 0; op < ops; op++) {
            unsigned r = (unsigned)(rnd() % 100);
            if (r < 70) {
                size_t n = random_size();
                const unsigned char *p = src + rnd() % (SRC_LEN - n);
                if (elen + n > ecap) {
                    ecap = (elen + n) * 2;
                    exp = realloc(exp, ecap);
                }
                if (n)
                    memcpy(exp + elen, p, n);
                elen += n;
                if (r < 40 || nrefs == MAX_REFS) {
                    /* Clobber the source afterwards: a copy must not alias it. */
                    memcpy(scratch, p, n);
                    assert_int_equal(cel_outq_copy(&q, scratch, n), 0);
                    memset(scratch, 0xee, n);
                } else {
                    struct ref_rec *rec = &recs[nrefs];
                    *rec = (struct ref_rec){elen, 0, nrefs};
                    nrefs++;
                    assert_int_equal(cel_outq_ref(&q, p, n, on_release, rec), 0);
                }
            } else {
                int rc = cel_outq_flush(&q, sink_writev, &s);
                assert_true(rc == 0 || rc == CEL_EAGAIN);
                if (rc == 0)
                    assert_int_equal(s.len, elen);
            }
            assert_int_equal(cel_outq_pending(&q), elen - s.len);
            assert_true(s.len <= elen);
            if (s.len > checked) {
                assert_memory_equal(s.out + checked, exp + checked, s.len - checked);
                checked = s.len;
            }
        }
        if (round % 4 == 3) {
            g_deiniting = 1;
            cel_outq_deinit(&q);
        } else {
            s.dflt = ACT_ALL;
            assert_int_equal(cel_outq_flush(&q, sink_writev, &s), 0);
            assert_int_equal(s.len, elen);
            if (elen)
                assert_memory_equal(s.out, exp, elen);
            cel_outq_deinit(&q);
        }
        for (unsigned i = 0; i < nrefs; i++)
            assert_int_equal(recs[i].released, 1);
        free(exp);
        free(s.out);
    }
    g_sink = NULL;
    /* LeakSanitizer reports any block the queue kept from the pool. */
    cel_pool_free(pool);
    free(src);
    free(scratch);
}

/* After warm-up a busy queue takes nothing from libc, and every drain hands all
 * arena chunks back to the pool. */
static void test_steady_pool(void **state)
{
    struct fx *f = *state;
    static unsigned char src[40001];
    rng_state = 77;
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (unsigned char)rnd();
    int rel = 0;

    /* Warm-up with the worst shape a loop iteration below can reach. */
    for (int i = 0; i < 16; i++) {
        assert_int_equal(cel_outq_copy(&f->q, src, 40000), 0);
        assert_int_equal(cel_outq_ref(&f->q, src, 1, release_count, &rel), 0);
    }
    assert_int_equal(FLUSH(f), 0);
    cel_pool_stats s0 = pool_stats(f->pool);

    f->s.dflt = ACT_RANDOM;
    for (int it = 0; it < 20000; it++) {
        int ops = 1 + (int)(rnd() % 16);
        for (int op = 0; op < ops; op++) {
            size_t n = random_size();
            if (rnd() % 3)
                assert_int_equal(cel_outq_copy(&f->q, src, n), 0);
            else
                assert_int_equal(cel_outq_ref(&f->q, src, n, release_count, &rel), 0);
        }
        while (FLUSH(f) != 0)
            ;
        f->s.len = 0;
        cel_pool_stats st = pool_stats(f->pool);
        assert_int_equal(st.sys_allocs, s0.sys_allocs);
        assert_int_equal(st.bytes_cached, s0.bytes_cached);
    }
    assert_int_equal(pool_stats(f->pool).sys_frees, s0.sys_frees);
}

/* cel_copy_small and cel_eq_small (common.h), which the output queue, the
 * arena and the router use for short copies and compares: every length up to
 * 70 at every alignment, against memcpy and memcmp, including a difference in
 * each single position. */
static void test_copy_and_compare_small(void **state)
{
    (void)state;
    unsigned char src[96], dst[112], ref[112];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= 70; n++)
        for (size_t off = 0; off < 8; off++) {
            memset(dst, 0xaa, sizeof(dst));
            memset(ref, 0xaa, sizeof(ref));
            cel_copy_small(dst + off + 8, src + off, n);
            memcpy(ref + off + 8, src + off, n);
            assert_memory_equal(dst, ref, sizeof(dst)); /* nothing around it touched */
            assert_true(cel_eq_small(dst + off + 8, src + off, n));
            for (size_t k = 0; k < n; k++) {
                dst[off + 8 + k] ^= 0x20;
                if (cel_eq_small(dst + off + 8, src + off, n))
                    fail_msg("n=%zu off=%zu: a difference at %zu not seen", n, off, k);
                dst[off + 8 + k] ^= 0x20;
            }
        }
}

static ssize_t sock_writev(void *ctx, const struct iovec *iov, int iovcnt)
{
    return writev(*(int *)ctx, iov, iovcnt);
}

/* Reads what is in the socket now into BUF at *LEN. */
static void drain(int fd, unsigned char *buf, size_t cap, size_t *len)
{
    for (;;) {
        ssize_t k = recv(fd, buf + *len, cap - *len, MSG_DONTWAIT);
        if (k <= 0)
            return;
        *len += (size_t)k;
    }
}

/* File ranges go out by sendfile between copied bytes, in order, whatever
 * the socket takes per call; their release runs once; a file shorter than
 * its range fails the flush; a queue without a socket takes none. */
static void test_file_ranges(void **state)
{
    struct fx *f = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int one = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one));
    FILE *tf = tmpfile();
    assert_non_null(tf);
    enum { FILE_LEN = 300000 };
    unsigned char *content = malloc(FILE_LEN);
    for (size_t i = 0; i < FILE_LEN; i++)
        content[i] = (unsigned char)(i * 31 + 7);
    assert_int_equal(fwrite(content, 1, FILE_LEN, tf), FILE_LEN);
    fflush(tf);
    int fd = fileno(tf);

    assert_int_equal(cel_outq_file(&f->q, fd, 0, 10, NULL, NULL), CEL_EINVAL);
    cel_outq_set_sendfile(&f->q, sv[0]);
    int rel = 0;
    assert_int_equal(cel_outq_copy(&f->q, "HEAD", 4), 0);
    assert_int_equal(cel_outq_file(&f->q, fd, 1000, 250000, release_count, &rel), 0);
    assert_int_equal(cel_outq_copy(&f->q, "TAIL", 4), 0);
    assert_int_equal(cel_outq_pending(&f->q), 250008);
    size_t cap = 260000, len = 0;
    unsigned char *got = malloc(cap);
    int rc, rounds = 0;
    while ((rc = cel_outq_flush(&f->q, sock_writev, &sv[0])) == CEL_EAGAIN) {
        drain(sv[1], got, cap, &len);
        assert_true(++rounds < 100000);
    }
    assert_int_equal(rc, 0);
    drain(sv[1], got, cap, &len);
    assert_int_equal(len, 250008);
    assert_memory_equal(got, "HEAD", 4);
    assert_memory_equal(got + 4, content + 1000, 250000);
    assert_memory_equal(got + 250004, "TAIL", 4);
    assert_int_equal(rel, 1);
    assert_true(rounds > 1); /* the small socket buffer took it in several calls */

    /* a range past the file's end: the promised bytes cannot be sent */
    assert_int_equal(cel_outq_file(&f->q, fd, FILE_LEN - 10, 100, release_count, &rel), 0);
    len = 0;
    while ((rc = cel_outq_flush(&f->q, sock_writev, &sv[0])) == CEL_EAGAIN)
        drain(sv[1], got, cap, &len);
    assert_int_equal(rc, CEL_EIO);
    cel_outq_deinit(&f->q); /* releases the range that could not go */
    assert_int_equal(rel, 2);
    assert_true(cel_outq_can_sendfile(&f->q)); /* kept across deinit */
    cel_outq_set_sendfile(&f->q, -1);
    free(got);
    free(content);
    fclose(tf);
    close(sv[0]);
    close(sv[1]);
}

/* A header and a file range read into the chunks behind it: in order, over
 * chunk boundaries (from an empty queue, a partly filled chunk and an exactly
 * full one), beside copies; a file shorter than the range leaves the queue as
 * it was (no torn frame) with CEL_EIO. */
static void test_copy_read(void **state)
{
    struct fx *f = *state;
    FILE *tf = tmpfile();
    assert_non_null(tf);
    enum { FILE_LEN = 100000 };
    unsigned char *content = malloc(FILE_LEN);
    for (size_t i = 0; i < FILE_LEN; i++)
        content[i] = (unsigned char)(i * 13 + 5);
    assert_int_equal(fwrite(content, 1, FILE_LEN, tf), FILE_LEN);
    fflush(tf);
    int fd = fileno(tf);
    size_t room = CEL_OUTQ_CHUNK_ROOM;
    /* (bytes copied first, file offset, length): a frame from nothing, one
     * behind a partly filled chunk, one whose header ends the chunk exactly,
     * one after an exactly full chunk, an empty range */
    const size_t cases[][3] = {
        {0, 0, 16384}, {100, 7, 16384}, {room - 9, 500, 40000}, {room, 3, 20}, {5, 9, 0}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t pre = cases[k][0], off = cases[k][1], n = cases[k][2];
        unsigned char *lead = malloc(pre + 1);
        memset(lead, 'p', pre);
        sink_init(&f->s, NULL, 0, ACT_ALL);
        if (pre)
            assert_int_equal(cel_outq_copy(&f->q, lead, pre), 0);
        assert_int_equal(cel_outq_copy_read(&f->q, "123456789", 9, fd, (off_t)off, n), 0);
        assert_int_equal(cel_outq_copy(&f->q, "T", 1), 0);
        assert_int_equal(cel_outq_pending(&f->q), pre + 9 + n + 1);
        /* nothing read lies outside the range: a failed read right after
         * must not disturb what is queued */
        assert_int_equal(cel_outq_copy_read(&f->q, "XXXXXXXXX", 9, fd, FILE_LEN - 10, 100),
                         CEL_EIO);
        assert_int_equal(cel_outq_pending(&f->q), pre + 9 + n + 1);
        assert_int_equal(FLUSH(f), 0);
        assert_int_equal(f->s.len, pre + 9 + n + 1);
        assert_memory_equal(f->s.out, lead, pre);
        assert_memory_equal(f->s.out + pre, "123456789", 9);
        assert_memory_equal(f->s.out + pre + 9, content + off, n);
        assert_memory_equal(f->s.out + pre + 9 + n, "T", 1);
        free(f->s.out);
        f->s.out = NULL;
        free(lead);
    }
    /* failure on an empty queue leaves it empty, and a bad descriptor fails too */
    assert_int_equal(cel_outq_copy_read(&f->q, "h", 1, fd, FILE_LEN - 1, 2), CEL_EIO);
    assert_int_equal(cel_outq_copy_read(&f->q, "h", 1, -1, 0, 2), CEL_EIO);
    assert_int_equal(cel_outq_pending(&f->q), 0);
    sink_init(&f->s, NULL, 0, ACT_ALL);
    assert_int_equal(FLUSH(f), 0);
    assert_int_equal(f->s.len, 0);
    free(content);
    fclose(tf);
}

int main(void)
{
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_coalesce, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_copy2, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_partial_and_eagain, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_release_after_last_byte, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_eintr_and_eio, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_deinit_releases, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_big_copy, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_segments, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_file_ranges, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_copy_read, fx_setup, fx_teardown),
        cmocka_unit_test(test_property),
        cmocka_unit_test(test_copy_and_compare_small),
        cmocka_unit_test_setup_teardown(test_steady_pool, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
