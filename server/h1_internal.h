/*
 * What the files of the HTTP/1.1 front end (h1.c, h1_response.c) share: the
 * connection and request structs and the calls one file makes in the other.
 * Private to them: nothing outside server/h1*.c includes this. h1.c holds the
 * connection, its input and parser loop and the requests' life; h1_response.c
 * the answers (head and body into the output queue, refusals, the exchange).
 */
#ifndef CEL_H1_INTERNAL_H
#define CEL_H1_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "exchange.h"
#include "genref.h"
#include "h1.h"
#include "h1_parse.h"
#include "router.h"

#define INLINE_ARENA 1024
#define IBUF_MIN 4096
/* Input kept while an answer is in progress: past this, reading pauses. */
#define IBUF_SOFT_CAP (64 * 1024)
#define STREAM_HIGH (64 * 1024)
#define STREAM_LOW (16 * 1024)
#define HEAD_BUF 2048
#define REF_MIN 1024

enum { S_HEAD, S_BODY, S_BUSY, S_CLOSED, S_UPGRADED };

typedef struct req {
    cel_h1 *h;
    cel_exchange x;
    cel_genref *gen;
    cel_arena arena;
    cel_request req;
    cel_route_match match;
    char *body; /* pool memory */
    size_t body_len, body_cap;
    uint64_t body_left; /* Content-Length bytes still due */
    int chunked;
    cel_h1_chunked ch;
    size_t body_limit; /* the route's max_request_body, else the limits' */
    int route_rc;      /* 1 + cel_dispatch_route_body's result; 0: not routed yet */
    /* A streamed body (x.body_streamed): the handler runs while it comes. */
    size_t pend;        /* body bytes at the front of the input, not taken yet */
    uint64_t body_seen; /* body bytes decoded so far */
    int body_done;      /* the body's last bytes are decoded (in pend, or taken) */
    int body_taken;     /* ... and the handler took them */
    int held;           /* the handler took less than offered: until body_resume */
    int resume_due;     /* body_resume was called: offer again from the loop */
    int minor, keep_alive, head;
    uint64_t start_us; /* env->now_us when the head was in */
    int status;
    uint64_t bytes_sent;
    int responded, streaming, ended;
    int chunks;  /* the streamed body goes out in chunked coding */
    int pending; /* answered while its handler still runs: 1 whole, 2 cut */
    char inline_arena[INLINE_ARENA];
} req;

struct cel_h1 {
    cel_env *env;
    cel_outq *out;
    void (*want_flush)(void *ctx);
    void *flush_ctx;
    const cel_conn_view *conn;
    const char *peer;
    cel_h1_upgrade_fn upgrade;
    void *uctx;
    cel_limits limits;
    cel_h1_limits plim;
    char *ibuf; /* pool memory */
    size_t ilen, icap, scanned;
    int state;
    int served;
    int goaway; /* finish the request in progress, then close */
    req *cur;
    req *dispatching; /* whose handler is running right now */
    int in_process;
    int out_full; /* pipelined input waits: the output queue held max_output_buffer */
    uint64_t progress;
    uint64_t idle_writable; /* progress + 1 when on_writable last ran and wrote nothing */
    uint64_t head_us;       /* env->now_us when the head being read began to arrive */
};

static inline void flush_soon(cel_h1 *h)
{
    if (h->want_flush)
        h->want_flush(h->flush_ctx);
}

/* The answer to R is complete (OK) or cut. Whoever answered may still hold R
 * (a handler that has not returned, a module's completion callback), so it is
 * finished later: by dispatch once the handler returns, or by the next send. */
static inline void done(cel_h1 *h, req *r, int ok)
{
    r->pending = ok ? 1 : 2;
    if (h->dispatching != r)
        flush_soon(h);
}

/* Answers R with RES (OWNER released once it is copied): head and body into
 * the output queue, then done(). CEL_EIO when the answer could not be written
 * (the connection then closes). */
int cel_h1_respond(cel_h1 *h, req *r, const cel_response *res, const cel_body_owner *owner);

/* The server's own answer to a request it cannot take; the connection ends.
 * Logged and counted as rejected: R is the request when its head was taken,
 * else (NULL) the input's first line says what it was. */
void cel_h1_refuse_request(cel_h1 *h, int status, req *r);

static inline void refuse(cel_h1 *h, int status)
{
    cel_h1_refuse_request(h, status, NULL);
}

/* The exchange's operations for a request (cel_exchange.ops). */
extern const cel_exchange_ops cel_h1_exchange_ops;

#endif
