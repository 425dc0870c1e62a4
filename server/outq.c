/*
 * Output queue. Segments live in a power-of-two ring; copied bytes live in
 * CEL_OUTQ_CHUNK-sized arena chunks taken from the pool. Because both segments
 * and chunk bytes are consumed strictly in order, a chunk is finished exactly
 * when the bytes written out of it (done) catch up with the bytes copied into it
 * (used), and it is then always the oldest chunk.
 *
 * A drained chunk goes back to the pool straight away, even the newest one, and
 * so does the ring once a flush empties the queue: an idle HTTP/2 connection
 * then holds no output memory at all, and the pool's free lists make taking
 * it again cheap.
 */
#include "outq.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

/* Bounds the stack iovec array; longer queues just take another writev. */
#if defined(IOV_MAX) && IOV_MAX < 256
#define IOV_BATCH IOV_MAX
#else
#define IOV_BATCH 256
#endif

#define RING_MIN 16u

#define CHUNK_ROOM CEL_OUTQ_CHUNK_ROOM

static inline struct cel_outq_seg *seg_at(const cel_outq *q, unsigned i)
{
    return &q->segs[(q->seg_head + i) & (q->seg_cap - 1)];
}

static inline struct cel_outq_seg pop(cel_outq *q)
{
    struct cel_outq_seg s = q->segs[q->seg_head];
    q->seg_head = (q->seg_head + 1) & (q->seg_cap - 1);
    q->seg_count--;
    return s;
}

/* The last segment is no longer copied bytes that a copy may extend. */
static inline void no_tail(cel_outq *q)
{
    q->tail = NULL;
    q->tail_room = 0;
    q->tail_seg = NULL;
}

void cel_outq_init(cel_outq *q, cel_pool *pool)
{
    q->sock = -1;
    q->pool = pool;
    q->segs = NULL;
    q->seg_cap = q->seg_head = q->seg_count = 0;
    q->chunk_head = q->chunk_tail = NULL;
    q->pending = 0;
    no_tail(q);
}

void cel_outq_deinit(cel_outq *q)
{
    while (q->seg_count) {
        struct cel_outq_seg s = pop(q);
        if (!s.chunk && s.release)
            s.release(s.arg);
    }
    struct cel_outq_chunk *c = q->chunk_head;
    while (c) {
        struct cel_outq_chunk *next = c->next;
        cel_pool_release(q->pool, c);
        c = next;
    }
    cel_pool_release(q->pool, q->segs);
    int sock = q->sock;
    cel_outq_init(q, q->pool);
    q->sock = sock;
}

/* Makes room for EXTRA more segments, so that appending cannot fail halfway. */
static int reserve(cel_outq *q, size_t extra)
{
    size_t need = (size_t)q->seg_count + extra;
    if (CEL_LIKELY(need <= q->seg_cap))
        return 0;
    size_t cap = q->seg_cap ? q->seg_cap : RING_MIN;
    while (cap < need) {
        if (cap > UINT_MAX / 2 || cap > SIZE_MAX / 2 / sizeof(struct cel_outq_seg))
            return CEL_ENOMEM;
        cap *= 2;
    }
    struct cel_outq_seg *s = cel_pool_alloc(q->pool, cap * sizeof(*s));
    if (!s)
        return CEL_ENOMEM;
    for (unsigned i = 0; i < q->seg_count; i++)
        s[i] = *seg_at(q, i);
    cel_pool_release(q->pool, q->segs);
    q->segs = s;
    q->seg_cap = (unsigned)cap;
    q->seg_head = 0;
    if (q->tail_seg)
        q->tail_seg = &s[q->seg_count - 1];
    return 0;
}

/* Commits N bytes at the end of C's used bytes, copying them from SRC first
 * unless SRC is NULL (they were read there already). */
static void append(cel_outq *q, struct cel_outq_chunk *c, const char *src, size_t n)
{
    char *dst = c->data + c->used;
    if (src)
        memcpy(dst, src, n);
    c->used += n;
    q->pending += n;
    struct cel_outq_seg *last = q->seg_count ? seg_at(q, q->seg_count - 1) : NULL;
    if (last && last->chunk == c && last->p + last->n == dst)
        last->n += n;
    else
        *(last = seg_at(q, q->seg_count++)) = (struct cel_outq_seg){.p = dst, .n = n, .chunk = c};
    if (c == q->chunk_tail) {
        q->tail = c->data + c->used;
        q->tail_room = CHUNK_ROOM - c->used;
        q->tail_seg = last;
    } else {
        no_tail(q);
    }
}

static void give_back(cel_outq *q, struct cel_outq_chunk *first)
{
    while (first) {
        struct cel_outq_chunk *next = first->next;
        cel_pool_release(q->pool, first);
        first = next;
    }
}

/* Takes every chunk that N more bytes need behind the tail, and the ring
 * room for their segments, before anything is written: a failure must leave
 * the queue as it was, or the peer would see a torn frame. The new chunks
 * are returned unlinked (*FIRST, NULL when the tail chunk has room enough);
 * link() then adds them. */
static int take(cel_outq *q, size_t n, struct cel_outq_chunk **first)
{
    struct cel_outq_chunk *c = q->chunk_tail;
    size_t room = c ? CHUNK_ROOM - c->used : 0;
    size_t fresh = 0;
    if (n > room) {
        size_t rest = n - room;
        fresh = rest / CHUNK_ROOM + (rest % CHUNK_ROOM != 0);
    }
    *first = NULL;
    if (reserve(q, fresh + 1) != 0)
        return CEL_ENOMEM;
    struct cel_outq_chunk *last = NULL;
    for (size_t i = 0; i < fresh; i++) {
        struct cel_outq_chunk *nc = cel_pool_alloc(q->pool, CEL_OUTQ_CHUNK);
        if (!nc) {
            give_back(q, *first);
            *first = NULL;
            return CEL_ENOMEM;
        }
        nc->next = NULL;
        nc->used = nc->done = 0;
        if (last)
            last->next = nc;
        else
            *first = nc;
        last = nc;
    }
    return 0;
}

/* Links the chunks take() gave; returns the chunk the bytes start in. */
static struct cel_outq_chunk *link(cel_outq *q, struct cel_outq_chunk *first)
{
    struct cel_outq_chunk *c = q->chunk_tail;
    if (first) {
        if (c)
            c->next = first;
        else
            q->chunk_head = first;
        struct cel_outq_chunk *last = first;
        while (last->next)
            last = last->next;
        q->chunk_tail = last;
    }
    return c && c->used < CHUNK_ROOM ? c : first;
}

/* Commits N bytes from chunk C on (copied from SRC, or already in place when
 * SRC is NULL). */
static void commit(cel_outq *q, struct cel_outq_chunk *c, const char *src, size_t n)
{
    while (n) {
        size_t take_n = CHUNK_ROOM - c->used;
        if (take_n > n)
            take_n = n;
        append(q, c, src, take_n);
        if (src)
            src += take_n;
        n -= take_n;
        c = c->next;
    }
}

int cel_outq_copy_slow(cel_outq *q, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    struct cel_outq_chunk *first;
    if (take(q, n, &first) != 0)
        return CEL_ENOMEM;
    commit(q, link(q, first), p, n);
    return 0;
}

int cel_outq_copy_read(cel_outq *q, const void *head, size_t nh, int fd, off_t off, size_t n)
{
    struct cel_outq_chunk *first;
    if (nh + n == 0)
        return 0;
    if (nh + n < nh || take(q, nh + n, &first) != 0)
        return CEL_ENOMEM;
    struct cel_outq_chunk *tail = q->chunk_tail;
    struct cel_outq_chunk *c = tail && tail->used < CHUNK_ROOM ? tail : first;
    if (tail && c == tail)
        tail->next = first; /* walked below; undone on failure */
    /* The head bytes, then iovecs over the room behind them for the read. */
    size_t at = c->used, h = 0;
    struct cel_outq_chunk *rc = c;
    while (h < nh) {
        size_t k = CHUNK_ROOM - at < nh - h ? CHUNK_ROOM - at : nh - h;
        memcpy(rc->data + at, (const char *)head + h, k);
        h += k;
        at += k;
        if (at == CHUNK_ROOM) {
            rc = rc->next;
            at = 0;
        }
    }
    size_t got = 0;
    while (got < n) {
        struct iovec iov[IOV_BATCH];
        int cnt = 0;
        size_t want = 0;
        struct cel_outq_chunk *ic = rc;
        size_t iat = at;
        while (ic && cnt < IOV_BATCH && got + want < n) {
            size_t k = CHUNK_ROOM - iat;
            if (k > n - got - want)
                k = n - got - want;
            iov[cnt].iov_base = ic->data + iat;
            iov[cnt].iov_len = k;
            cnt++;
            want += k;
            iat += k;
            if (iat == CHUNK_ROOM) {
                ic = ic->next;
                iat = 0;
            }
        }
        ssize_t r = preadv(fd, iov, cnt, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO; /* the file ended before OFF + N */
            if (tail)
                tail->next = NULL;
            give_back(q, first);
            return CEL_EIO;
        }
        got += (size_t)r;
        while ((size_t)r) {
            size_t k = CHUNK_ROOM - at < (size_t)r ? CHUNK_ROOM - at : (size_t)r;
            at += k;
            r -= (ssize_t)k;
            if (at == CHUNK_ROOM) {
                rc = rc->next;
                at = 0;
            }
        }
    }
    if (tail)
        tail->next = NULL;
    commit(q, link(q, first), NULL, nh + n);
    return 0;
}

int cel_outq_ref(cel_outq *q, const void *p, size_t n, cel_outq_release_fn release, void *arg)
{
    /* An empty range with a callback still queues, so the callback keeps its
     * place in the byte order. */
    if (n == 0 && !release)
        return 0;
    if (reserve(q, 1) != 0)
        return CEL_ENOMEM;
    *seg_at(q, q->seg_count++) =
        (struct cel_outq_seg){.p = p, .n = n, .release = release, .arg = arg};
    q->pending += n;
    no_tail(q);
    return 0;
}

int cel_outq_file(cel_outq *q, int fd, off_t off, size_t n, cel_outq_release_fn release, void *arg)
{
    if (q->sock < 0)
        return CEL_EINVAL;
    if (reserve(q, 1) != 0)
        return CEL_ENOMEM;
    *seg_at(q, q->seg_count++) = (struct cel_outq_seg){
        .n = n, .release = release, .arg = arg, .file = 1, .fd = fd, .off = off};
    q->pending += n;
    no_tail(q);
    return 0;
}

static void drop_chunk(cel_outq *q, struct cel_outq_chunk *c)
{
    assert(c == q->chunk_head);
    q->chunk_head = c->next;
    if (!q->chunk_head)
        q->chunk_tail = NULL;
    cel_pool_release(q->pool, c);
}

/* Consumes W written bytes from the front. Empty segments at the new front are
 * consumed too, so a zero-length ref is released as soon as what precedes it
 * has gone out. */
static void advance(cel_outq *q, size_t w)
{
    assert(w <= q->pending);
    q->pending -= w;
    while (q->seg_count) {
        struct cel_outq_seg *s = seg_at(q, 0);
        if (s->n > w) {
            if (s->file)
                s->off += (off_t)w;
            else
                s->p += w;
            s->n -= w;
            if (s->chunk)
                s->chunk->done += w;
            return;
        }
        w -= s->n;
        /* Popped before the callback runs, so a callback that queues more
         * finds the ring consistent. */
        struct cel_outq_seg done = pop(q);
        if (!q->seg_count)
            no_tail(q); /* that was the last segment */
        if (done.chunk) {
            done.chunk->done += done.n;
            if (done.chunk->done == done.chunk->used)
                drop_chunk(q, done.chunk);
        } else if (done.release) {
            done.release(done.arg);
        }
    }
}

/* One sendfile of the file range S at the front: 1 when all of it went and
 * the flush goes on, else what the flush returns (CEL_EAGAIN: the socket is
 * full; CEL_EIO: an error, or the file ended early). */
static int send_file(cel_outq *q, struct cel_outq_seg *s)
{
    size_t want = s->n < (1u << 30) ? s->n : (1u << 30);
    off_t off = s->off;
    ssize_t w = sendfile(q->sock, s->fd, &off, want);
    if (w < 0)
        return errno == EINTR ? 1 : errno == EAGAIN || errno == EWOULDBLOCK ? CEL_EAGAIN : CEL_EIO;
    if (w == 0) {
        errno = EIO;
        return CEL_EIO; /* the file is shorter than what was promised */
    }
    advance(q, (size_t)w);
    return (size_t)w < want ? CEL_EAGAIN : 1;
}

/* Bytes just before a file range (an HTTP/2 frame header, an HTTP/1.1 head)
 * wait in the socket for the sendfile that follows, so that with TCP_NODELAY
 * they leave in its packet rather than in one of their own. */
static ssize_t send_more(cel_outq *q, const struct iovec *iov, int cnt)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
    return sendmsg(q->sock, &m, MSG_MORE | MSG_NOSIGNAL);
}

int cel_outq_flush(cel_outq *q, cel_outq_writev_fn wv, void *ctx)
{
    struct iovec iov[IOV_BATCH];
    for (;;) {
        advance(q, 0);
        if (!q->seg_count) {
            /* Drained: an idle connection keeps neither chunks nor ring. */
            cel_pool_release(q->pool, q->segs);
            q->segs = NULL;
            q->seg_cap = q->seg_head = 0;
            return 0;
        }
        struct cel_outq_seg *first = seg_at(q, 0);
        if (first->file) {
            int rc = send_file(q, first);
            if (rc <= 0)
                return rc;
            continue;
        }
        int cnt = 0, more = 0;
        size_t total = 0;
        for (unsigned i = 0; i < q->seg_count && cnt < IOV_BATCH; i++) {
            const struct cel_outq_seg *s = seg_at(q, i);
            if (s->file) {
                more = 1; /* it goes by sendfile, after these */
                break;
            }
            if (!s->n)
                continue;
            /* writev never writes through iov_base; the cast only drops const. */
            iov[cnt].iov_base = (void *)s->p;
            iov[cnt].iov_len = s->n;
            total += s->n;
            cnt++;
        }
        ssize_t w = more ? send_more(q, iov, cnt) : wv(ctx, iov, cnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return CEL_EAGAIN;
            return CEL_EIO;
        }
        assert((size_t)w <= total);
        advance(q, (size_t)w);
        /* A short write means the socket buffer is full; trying again now
         * would only burn a syscall on EAGAIN. */
        if ((size_t)w < total)
            return CEL_EAGAIN;
    }
}
