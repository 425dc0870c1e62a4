/*
 * The per-connection serialized output queue: a FIFO of byte ranges flushed
 * with writev. Small frame bytes are copied into arena chunks owned by the
 * queue; large payloads that already sit in memory are referenced in place and
 * a release callback says when the queue no longer needs them.
 *
 * One owner (the connection's worker thread) appends and flushes, so bytes leave
 * in exactly the order they were queued. Not thread-safe by design.
 */
#ifndef CEL_OUTQ_H
#define CEL_OUTQ_H

#include <stddef.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common.h"
#include "pool.h"

typedef void (*cel_outq_release_fn)(void *arg);

/* writev-shaped sink, so tests and TLS can stand in for a socket. Returns
 * bytes written, or -1 with errno set (EAGAIN/EWOULDBLOCK when full, EINTR). */
typedef ssize_t (*cel_outq_writev_fn)(void *ctx, const struct iovec *iov, int iovcnt);

#define CEL_OUTQ_CHUNK 16384 /* arena chunk size */

/* Private to outq.c but for the inline fast path of cel_outq_copy. */
struct cel_outq_chunk {
    struct cel_outq_chunk *next;
    size_t used; /* bytes copied in */
    size_t done; /* bytes written out */
    char data[];
};

/* The chunk header shares the CEL_OUTQ_CHUNK block so chunks fill a pool class
 * exactly instead of spilling into the next one. */
#define CEL_OUTQ_CHUNK_ROOM (CEL_OUTQ_CHUNK - offsetof(struct cel_outq_chunk, data))

struct cel_outq_seg {
    const char *p;
    size_t n;
    struct cel_outq_chunk *chunk; /* set for copied bytes, NULL for refs */
    cel_outq_release_fn release;
    void *arg;
    int file; /* a file range (cel_outq_file): N bytes of FD from OFF; P unused */
    int fd;
    off_t off;
};

typedef struct cel_outq {
    cel_pool *pool;
    struct cel_outq_seg *segs; /* ring of segments, private */
    unsigned seg_cap, seg_head, seg_count;
    struct cel_outq_chunk *chunk_head, *chunk_tail; /* arena chunks, private */
    size_t pending;                                 /* bytes queued and not yet written */
    /* When the last segment is copied bytes in chunk_tail: where the next
     * copy would extend it, the room there, and that segment (private;
     * tail_room is 0 otherwise). */
    char *tail;
    size_t tail_room;
    struct cel_outq_seg *tail_seg;
    int sock; /* where file ranges go with sendfile; -1: the sink takes none */
} cel_outq;

void cel_outq_init(cel_outq *q, cel_pool *pool);
/* Drops everything still queued (calling the release callbacks) and frees the
 * arena. The queue may be initialised again. */
void cel_outq_deinit(cel_outq *q);

/* Copies N bytes into the queue. 0 or CEL_ENOMEM. Adjacent copies coalesce into
 * one iovec. */
int cel_outq_copy_slow(cel_outq *q, const void *p, size_t n);

/* The common case of a copy: N (non-zero) bytes fit behind the last copied
 * bytes, in the same chunk, and extend that segment. Where they go, or NULL. */
static inline char *cel_outq_tail_room(cel_outq *q, size_t n)
{
    /* tail_room never exceeds the chunk's room; saying so again bounds N for
     * GCC's array-bounds checks of the inlined copies */
    if (CEL_LIKELY(n && n <= q->tail_room && n <= CEL_OUTQ_CHUNK_ROOM)) {
        char *dst = q->tail;
        q->tail = dst + n;
        q->tail_room -= n;
        q->tail_seg->n += n;
        q->chunk_tail->used += n;
        q->pending += n;
        return dst;
    }
    return NULL;
}

static inline int cel_outq_copy(cel_outq *q, const void *p, size_t n)
{
    char *dst = cel_outq_tail_room(q, n);
    if (CEL_LIKELY(dst != NULL)) {
        cel_copy_small(dst, p, n);
        return 0;
    }
    return cel_outq_copy_slow(q, p, n);
}

/* cel_outq_copy of A[0..NA) then B[0..NB): a frame header and a short payload
 * in one go. */
static inline int cel_outq_copy2(cel_outq *q, const void *a, size_t na, const void *b, size_t nb)
{
    char *dst = na ? cel_outq_tail_room(q, na + nb) : NULL;
    if (CEL_LIKELY(dst != NULL)) {
        cel_copy_small(dst, a, na);
        cel_copy_small(dst + na, b, nb);
        return 0;
    }
    int rc = cel_outq_copy(q, a, na);
    return rc || !nb ? rc : cel_outq_copy(q, b, nb);
}

/* Queues N bytes at P by reference. RELEASE(ARG) (if RELEASE is not NULL) runs once
 * the last byte of the range has been written, or at deinit. 0 or CEL_ENOMEM (then
 * RELEASE is not called). */
int cel_outq_ref(cel_outq *q, const void *p, size_t n, cel_outq_release_fn release, void *arg);

/* File ranges may be queued, to go out with sendfile(2) to SOCK (the sink's
 * own socket: a cleartext connection), or not (-1: TLS in user space, tests).
 * The bytes just before a file range are written to SOCK too (sendmsg with
 * MSG_MORE, so they share the file's first packet), not through the sink.
 * Kept across cel_outq_deinit. */
static inline void cel_outq_set_sendfile(cel_outq *q, int sock)
{
    q->sock = sock;
}

static inline int cel_outq_can_sendfile(const cel_outq *q)
{
    return q->sock >= 0;
}

/* Queues N bytes of file FD from OFF, sent by sendfile in their turn, never
 * read into user space. FD stays open until RELEASE(ARG) runs (after the last
 * byte, or at deinit), which usually closes it. 0, CEL_EINVAL when the queue
 * takes no file ranges, or CEL_ENOMEM (RELEASE is not called then). A file
 * that ends before OFF + N makes the flush fail with CEL_EIO: the bytes
 * promised cannot be sent, so the connection must end. */
int cel_outq_file(cel_outq *q, int fd, off_t off, size_t n, cel_outq_release_fn release, void *arg);

/* Copies the NH bytes at HEAD (a frame header), then reads N bytes of file FD
 * from OFF behind them (preadv straight into the queue's chunks), for a sink
 * that takes no file ranges or where one copy costs less than two syscalls a
 * frame. All or nothing: 0, CEL_ENOMEM, or CEL_EIO when the file gave fewer
 * than N bytes (it ended early, or the read failed: errno kept); on failure
 * the queue is as it was. */
int cel_outq_copy_read(cel_outq *q, const void *head, size_t nh, int fd, off_t off, size_t n);

/*
 * Writes as much as the sink takes, in writev calls of at most IOV_MAX entries,
 * until the queue is empty or the sink would block. Returns 0 when the queue is
 * empty, CEL_EAGAIN when bytes remain (arm a write event), CEL_EIO on a write
 * error (errno kept).
 */
int cel_outq_flush(cel_outq *q, cel_outq_writev_fn wv, void *ctx);

static inline size_t cel_outq_pending(const cel_outq *q)
{
    return q->pending;
}

#endif
