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

#include <sys/types.h>
#include <sys/uio.h>

#include "common.h"
#include "pool.h"

typedef void (*cel_outq_release_fn)(void *arg);

/* writev-shaped sink, so tests (and later TLS) can stand in for a socket. Returns
 * bytes written, or -1 with errno set (EAGAIN/EWOULDBLOCK when full, EINTR). */
typedef ssize_t (*cel_outq_writev_fn)(void *ctx, const struct iovec *iov, int iovcnt);

#define CEL_OUTQ_CHUNK 16384 /* arena chunk size */

struct cel_outq_seg;   /* private */
struct cel_outq_chunk; /* private */

typedef struct cel_outq {
    cel_pool *pool;
    struct cel_outq_seg *segs; /* ring of segments, private */
    unsigned seg_cap, seg_head, seg_count;
    struct cel_outq_chunk *chunk_head, *chunk_tail; /* arena chunks, private */
    size_t pending; /* bytes queued and not yet written */
} cel_outq;

void cel_outq_init(cel_outq *q, cel_pool *pool);
/* Drops everything still queued (calling the release callbacks) and frees the
 * arena. The queue may be initialised again. */
void cel_outq_deinit(cel_outq *q);

/* Copies N bytes into the queue. 0 or CEL_ENOMEM. Adjacent copies coalesce into
 * one iovec. */
int cel_outq_copy(cel_outq *q, const void *p, size_t n);

/* Queues N bytes at P by reference. RELEASE(ARG) (if RELEASE is not NULL) runs once
 * the last byte of the range has been written, or at deinit. 0 or CEL_ENOMEM (then
 * RELEASE is not called). */
int cel_outq_ref(cel_outq *q, const void *p, size_t n, cel_outq_release_fn release, void *arg);

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
