/*
 * An exchange: one request in flight and the way to answer it, as each
 * protocol front end (HTTP/2, HTTP/1.1) offers it to handlers that answer
 * later than handle() returns, or in pieces.
 *
 * The simple handlers never touch this: they fill a cel_response in handle().
 * A handler that returns CEL_HANDLER_ASYNC has taken the exchange over and
 * answers through ops, on the worker thread, until the response ends or the
 * front end calls on_close.
 */
#ifndef CEL_EXCHANGE_H
#define CEL_EXCHANGE_H

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "arena.h"
#include "request.h"

struct cel_env;
struct cel_genref;
struct cel_response;
struct cel_mw_chain;
struct cel_body_filter;

typedef struct cel_exchange cel_exchange;

typedef struct cel_body_owner {
    /* Runs on the worker once the front end no longer needs the body. */
    void (*release)(void *arg);
    void *arg;
} cel_body_owner;

/* Lets OWNER (when not NULL) go, for a call that does not take it; RC. */
static inline int cel_body_owner_done(const cel_body_owner *owner, int rc)
{
    if (owner)
        owner->release(owner->arg);
    return rc;
}

/* The release of an owner cel_body_owner_for_fd made: closes its duplicate. */
static inline void cel_body_owner_close_fd(void *arg)
{
    close((int)(intptr_t)arg);
}

/* For write_file: what the front end keeps while it sends from *FD. OWNER when
 * the caller lends its reference (it keeps the descriptor open: no dup, no
 * close); without one, a duplicate of *FD, closed on release, which *FD then
 * names. 0, or -1 when the descriptor cannot be duplicated. */
static inline int cel_body_owner_for_fd(const cel_body_owner *owner, int *fd, cel_body_owner *own)
{
    if (owner) {
        *own = *owner;
        return 0;
    }
    int mine = fcntl(*fd, F_DUPFD_CLOEXEC, 0);
    if (mine < 0)
        return -1;
    *own = (cel_body_owner){cel_body_owner_close_fd, (void *)(intptr_t)mine};
    *fd = mine;
    return 0;
}

typedef struct cel_exchange_ops {
    /* The whole response. When OWNER is not NULL the body is referenced, not
     * copied, and OWNER->release runs when it is no longer needed (also when
     * the call fails). */
    int (*respond)(cel_exchange *x, const struct cel_response *res, const cel_body_owner *owner);
    /* Status and headers; the body follows through write and end. */
    int (*start)(cel_exchange *x, const struct cel_response *head);
    /* Copies a body chunk. 0, or CEL_EAGAIN when it was taken but more than the
     * high-water mark is now waiting: then wait for on_writable. */
    int (*write)(cel_exchange *x, const void *p, size_t n);
    /* Optional (NULL where never possible): after a sized start, queues N
     * bytes of file FD from OFF as body, without the handler reading them:
     * HTTP/1.1 sends them by sendfile (cleartext or kTLS), HTTP/2 reads each
     * DATA frame's payload straight into the output queue (any transport).
     * Without OWNER the front end keeps a descriptor of its own (a dup) and
     * FD stays the caller's. With OWNER it sends from FD itself, which must
     * stay open until the front end calls OWNER->release (on the worker,
     * once, whatever the call answers: right away when it fails): the
     * caller holds a reference for it, and no descriptor call is made. 0,
     * CEL_EAGAIN as for write, or CEL_EINVAL when this exchange cannot
     * (HTTP/1.1 over TLS without kTLS or chunked, a filter; HTTP/2: a range
     * still being queued): then write the bytes instead. HTTP/2 answers
     * CEL_EAGAIN and calls on_writable once the range is all queued; no
     * write may come before. A file that turns out shorter ends the
     * connection (HTTP/1.1) or the stream (HTTP/2). */
    int (*write_file)(cel_exchange *x, int fd, uint64_t off, uint64_t n,
                      const cel_body_owner *owner);
    /* Where write_file cannot: N bytes of file FD from OFF read straight into
     * the output queue (one copy, where reading into a buffer and writing it
     * makes two). 0 or CEL_EAGAIN as for write; CEL_EIO when the file gave
     * fewer than N bytes (nothing is queued then); CEL_EINVAL when this
     * exchange cannot (chunked, a filter): write the bytes instead. NULL
     * where the front end has a way of its own (HTTP/2). Optional. */
    int (*read_file)(cel_exchange *x, int fd, uint64_t off, size_t n);
    int (*end)(cel_exchange *x);
    size_t (*buffered)(const cel_exchange *x);
    /* Ends the stream with an error: a 500 when nothing was sent, else a reset. */
    void (*fail)(cel_exchange *x);
    /* Keeps what the request runs on (its configuration generation: the
     * handler, its module's code) loaded past on_close, until the handler
     * calls HOLD->release(HOLD->arg), once, on the worker. Handlers hold
     * through this and never name the generation. */
    void (*hold)(cel_exchange *x, cel_body_owner *hold);
    /* A streamed request body (body_streamed): on_body took less than it was
     * offered and may take more now (or was just set); the front end offers
     * what it holds again soon, from the loop, never inside this call. */
    void (*body_resume)(cel_exchange *x);
    /* How far the answer is: CEL_X_WAITING (nothing answered yet),
     * CEL_X_STREAMING (a streamed answer under way) or CEL_X_ANSWERED. */
    int (*state)(const cel_exchange *x);
} cel_exchange_ops;
#define CEL_X_WAITING 0
#define CEL_X_STREAMING 1
#define CEL_X_ANSWERED 2

struct cel_exchange {
    const cel_exchange_ops *ops;
    cel_request *req;
    cel_arena *arena; /* lives until on_close */
    struct cel_env *env;
    struct cel_genref *gen;            /* the generation the request runs on: the front end's */
    const struct cel_conn_view *conn;  /* the connection it came on (conn_view.h); NULL: none */
    const struct cel_real_ip *real_ip; /* the generation's real_ip (NULL: off) */
    int http2;                         /* carried by an HTTP/2 stream (also an upgraded request) */
    /* 1: X->req->id is not made on first use (cel_exchange_id): the request
     * was answered before dispatch or by its request phase. */
    uint8_t id_as_is;
    /* The response phases (phase.h): the middleware the request runs (NULL:
     * none; set by dispatch, or by the front end for an answer given before
     * dispatch), and the body filter a middleware installed (NULL: none). */
    const struct cel_mw_chain *mw;
    const struct cel_body_filter *filter;
    void *filter_data; /* the filter's, per request */
    /* The `timeout` middleware's entry for this request (mw_timeout.c):
     * the front end calls cel_mw_timeout_cancel when it is done with X. */
    struct cel_timer_entry *timer;
    /* A request a middleware holds in its request phase (CEL_MW_HELD,
     * middleware.h): where dispatch goes on once it is let go. */
    struct cel_mw_resume *resume;
    /* Set by the handler that takes the exchange over: */
    void *hdata;
    /* The front end is done with the exchange: FINISHED says whether the whole
     * response went out (0: the client reset the stream or went away). No ops
     * may be called from then on. */
    void (*on_close)(cel_exchange *x, int finished);
    /* When set, runs (once, then cleared) when buffered data falls below the
     * low-water mark. */
    void (*on_writable)(cel_exchange *x);
    /*
     * Streamed request bodies. The front end sets body_streamed when it
     * handles the request at its headers for a handler with body_stream; the
     * body then comes only through on_body, set by the handler: N bytes at P
     * (END 1: the body ends with them; N may be 0). It sets *TOOK to how many
     * it took from the front and returns 1 when it took all of them (and the
     * end, with END), 0 when it holds back: the front end then keeps the
     * rest, lets the client send no more than that (HTTP/2: the stream's
     * window stays shut; HTTP/1.1: the socket is not read) and offers it
     * again after ops->body_resume. Unset: nothing is taken. END -1 (P NULL):
     * the body failed (it passed the route's max_request_body, or it is
     * malformed): nothing more comes, and the front end answers itself (413,
     * 400) when no answer has begun, else cuts the stream.
     */
    int body_streamed;
    int (*on_body)(cel_exchange *x, const char *p, size_t n, int end, size_t *took);
};

/* What makes a request's id on its first use: the request_id middleware
 * (mw_request_id.c). The chain X->mw begins with a pointer to its source,
 * NULL when no request_id runs (cel_mw_chain.id_src), so handlers reach it
 * knowing nothing else of middleware. */
typedef struct cel_id_source {
    /* Sets X->req->id (out of memory: leaves it empty). */
    void (*make)(const struct cel_id_source *s, cel_exchange *x);
} cel_id_source;

/* The request's id (X->req->id), made first when the request phase left it
 * to its first use. Empty when no request_id runs for the request, or none
 * has yet (X->id_as_is: an answer given before it). On the worker. */
static inline cel_str cel_exchange_id(cel_exchange *x)
{
    const cel_id_source *s = x->mw ? *(const cel_id_source *const *)(const void *)x->mw : NULL;
    if (!x->req->id.n && !x->id_as_is && s)
        s->make(s, x);
    return x->req->id;
}

#endif
