/* The HTTP/1.1 front end: the connection as a protocol, its input buffer and
 * parser loop, requests and their bodies. Answers are in h1_response.c. */
#include "h1.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "h1_internal.h"
#include "h1_parse.h"
#include "h2.h"
#include "log.h"
#include "mw_timeout.h"
#include "stats.h"

static void process(cel_h1 *h);
static void process_input(cel_h1 *h);

/* Base64url (RFC 4648 section 5) without padding, as HTTP2-Settings uses
 * (RFC 7540 section 3.2.1). A SETTINGS payload is whole 6-octet settings, and
 * those encode to whole groups of four characters: padding never belongs to
 * a payload that could be taken, and neither does a length of 4k + 1. */
static int b64url_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '-'             ? 62
                : c == '_'             ? 63
                                       : -1;
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (k == cap)
                return -1;
            out[k++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits == 6)
        return -1;
    *outlen = k;
    return 0;
}

/* ---- input buffer ---- */

static int ibuf_append(cel_h1 *h, const uint8_t *p, size_t n)
{
    if (h->ilen + n > h->icap) {
        size_t cap = h->icap ? h->icap : IBUF_MIN;
        while (cap < h->ilen + n)
            cap *= 2;
        char *b = cel_pool_realloc(h->env->pool, h->ibuf, cap);
        if (!b)
            return CEL_ENOMEM;
        h->ibuf = b;
        h->icap = cap;
    }
    memcpy(h->ibuf + h->ilen, p, n);
    h->ilen += n;
    return 0;
}

static void ibuf_consume(cel_h1 *h, size_t n)
{
    if (n == 0)
        return;
    memmove(h->ibuf, h->ibuf + n, h->ilen - n);
    h->ilen -= n;
}

/* ---- requests ---- */

static void req_free(cel_h1 *h, req *r, int finished)
{
    if (r->x.on_close)
        r->x.on_close(&r->x, finished);
    if (CEL_UNLIKELY(r->x.filter != NULL) && r->x.filter->close)
        r->x.filter->close(&r->x);
    if (CEL_UNLIKELY(r->x.timer != NULL))
        cel_mw_timeout_cancel(&r->x);
    cel_pool_release(h->env->pool, r->body);
    cel_arena_deinit(&r->arena);
    cel_genref_drop(r->gen);
    cel_pool_release(h->env->pool, r);
    if (h->env->stats)
        cel_uncount(&h->env->stats->streams_open[CEL_PROTO_H1], 1);
}

/* The answer to the current request is complete (or abandoned). */
static void finish(cel_h1 *h, req *r, int finished)
{
    if (r->responded)
        cel_dispatch_done(h->env, r->gen->cfg, &r->match, &r->req,
                          r->minor ? "HTTP/1.1" : "HTTP/1.0", h->peer, r->status, r->bytes_sent,
                          r->start_us);
    h->served = 1;
    h->cur = NULL;
    if (h->state != S_CLOSED)
        h->state = r->keep_alive && !h->goaway ? S_HEAD : S_CLOSED;
    req_free(h, r, finished);
}

static req *req_new(cel_h1 *h, const cel_h1_head *hd)
{
    req *r = cel_pool_alloc(h->env->pool, sizeof(*r));
    if (!r)
        return NULL;
    memset(r, 0, offsetof(req, inline_arena));
    r->h = h;
    r->gen = cel_env_hold(h->env);
    cel_arena_init(&r->arena, h->env->pool, r->inline_arena, sizeof(r->inline_arena));
    r->x.ops = &cel_h1_exchange_ops;
    r->x.req = &r->req;
    r->x.arena = &r->arena;
    r->x.env = h->env;
    r->x.gen = r->gen;
    r->x.conn = h->conn;
    r->x.real_ip = r->gen->cfg->real_ip;
    r->start_us = h->env->now_us;
    if (h->env->stats)
        cel_count(&h->env->stats->streams_open[CEL_PROTO_H1], 1);
    r->minor = hd->minor;
    r->keep_alive = hd->keep_alive;
    r->head = hd->method_bit == CEL_M_HEAD;

    /* The head's slices point into the input buffer, which moves: copy them. */
    cel_request *q = &r->req;
    cel_arena *a = &r->arena;
    cel_header *hdrs = cel_arena_alloc(a, (hd->nheaders ? hd->nheaders : 1) * sizeof(*hdrs));
    char *m = cel_arena_dup(a, hd->method.p, hd->method.n);
    char *t = cel_arena_dup(a, hd->path.p, hd->path.n + (hd->query.n ? hd->query.n + 1 : 0));
    char *host = cel_arena_dup(a, hd->host.p, hd->host.n);
    if (!hdrs || !m || !t || !host) {
        req_free(h, r, 0);
        return NULL;
    }
    q->method = (cel_str){m, hd->method.n};
    q->method_bit = hd->method_bit;
    q->path = (cel_str){t, hd->path.n};
    q->query = hd->query.n ? (cel_str){t + hd->path.n + 1, hd->query.n} : (cel_str){t, 0};
    if (hd->query.n)
        memcpy(t + hd->path.n + 1, hd->query.p, hd->query.n);
    q->authority = (cel_str){host, hd->host.n};
    q->scheme = CEL_STR_LIT("http");
    size_t n = 0;
    for (size_t i = 0; i < hd->nheaders; i++) {
        const cel_header *src = &hd->headers[i];
        char *nm = cel_arena_alloc(a, src->name.n + 1);
        char *v = cel_arena_dup(a, src->value.p, src->value.n);
        if (!nm || !v) {
            req_free(h, r, 0);
            return NULL;
        }
        for (size_t j = 0; j < src->name.n; j++) {
            char ch = src->name.p[j];
            nm[j] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        hdrs[n++] = (cel_header){{nm, src->name.n}, {v, src->value.n}};
    }
    q->headers = hdrs;
    q->nheaders = n;
    return r;
}

static int body_add(cel_h1 *h, req *r, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (r->body_len + n > r->body_limit)
        return CEL_ETOOBIG;
    if (r->body_len + n > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n)
            cap *= 2;
        char *b = cel_pool_realloc(h->env->pool, r->body, cap);
        if (!b)
            return CEL_ENOMEM;
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    return 0;
}

static void dispatch(cel_h1 *h, req *r)
{
    r->req.body = r->body;
    r->req.body_len = r->body_len;
    h->state = S_BUSY;
    cel_response res;
    h->dispatching = r;
    int rc = r->route_rc ? cel_dispatch_routed(r->gen->cfg, &r->x, &r->match, r->route_rc - 1, &res)
                         : cel_dispatch(r->gen->cfg, &r->x, &r->match, &res);
    if (rc != CEL_HANDLER_ASYNC)
        cel_h1_respond(h, r, &res, NULL);
    h->dispatching = NULL;
    /* Answered (returned, or through respond before the handler returned):
     * finished now, and the loop goes on to the next pipelined request, whose
     * answer joins this one in the output queue. Whoever made the loop run
     * flushes once after it, in the same turn: on_read's pump after recv, the
     * pump that called p_send. */
    if (r->pending)
        finish(h, r, r->pending == 1);
}

/* A streamed body failed (STATUS 413: past the route's limit; 400: bad
 * chunking): the handler hears of it, and the client gets STATUS if no
 * answer has begun, else the cut. The connection ends either way. */
static void body_fail(cel_h1 *h, req *r, int status)
{
    size_t took;
    r->held = 0;
    r->body_done = r->body_taken = 1;
    if (r->x.on_body)
        r->x.on_body(&r->x, NULL, 0, -1, &took);
    r->keep_alive = 0;
    if (!r->responded) {
        cel_response res;
        cel_response_error(&res, status);
        cel_h1_respond(h, r, &res, NULL);
    } else if (!r->ended) {
        h->goaway = 1;
        h->state = S_CLOSED;
        r->ended = 1;
        done(h, r, 0);
    }
    h->state = S_CLOSED;
    flush_soon(h);
}

/* Offers the input's body bytes to the handler of a streamed body, as far as
 * it takes them. 1 once the whole body is taken; 0 when more input (or a
 * body_resume) is due; -1 when the body failed. */
static int body_stream(cel_h1 *h, req *r)
{
    for (;;) {
        if (r->pend == 0 && !r->body_done) {
            if (r->chunked) {
                size_t outlen = 0, used = 0;
                int rc = cel_h1_chunked_decode(&r->ch, h->ibuf, h->ilen, h->ibuf, &outlen, &used);
                if (rc < 0 && rc != CEL_EAGAIN) {
                    body_fail(h, r, 400);
                    return -1;
                }
                /* decoded in place: keep them at the front, the raw rest after */
                memmove(h->ibuf + outlen, h->ibuf + used, h->ilen - used);
                h->ilen -= used - outlen;
                r->pend = outlen;
                r->body_done = rc == 0;
            } else {
                r->pend = h->ilen < r->body_left ? h->ilen : (size_t)r->body_left;
                r->body_left -= r->pend;
                r->body_done = r->body_left == 0;
            }
            r->body_seen += r->pend;
            if (r->body_seen > r->body_limit) {
                body_fail(h, r, 413);
                return -1;
            }
            if (r->pend == 0 && !r->body_done)
                return 0;
        }
        if (r->held)
            return 0;
        size_t took = 0;
        r->resume_due = 0;
        int all = r->x.on_body && r->x.on_body(&r->x, h->ibuf, r->pend, r->body_done, &took);
        ibuf_consume(h, took);
        r->pend -= took;
        h->progress++;
        if (!all) {
            r->held = !r->resume_due;
            return 0;
        }
        if (r->body_done) {
            r->body_taken = 1;
            return 1;
        }
    }
}

/* RFC 7540 3.2: answer 101, then the same request on stream 1 of HTTP/2. */
static int upgrade(cel_h1 *h, const cel_h1_head *hd, size_t head_len)
{
    uint8_t settings[256];
    size_t slen = 0;
    if (b64url_decode(hd->http2_settings.p, hd->http2_settings.n, settings, sizeof(settings),
                      &slen) ||
        slen % 6)
        return -1; /* not an upgrade we can make: answer over HTTP/1.1 */
    req *r = req_new(h, hd);
    if (!r)
        return -1;
    /* The session first: one nghttp2 refuses (more settings than
     * max_settings_entries, say) is no upgrade, and the request is answered
     * over HTTP/1.1, not with 101 and a close. Nothing of HTTP/2 reaches the
     * output queue before cel_h2_send, so 101 still goes out first. */
    int dispatched = 0;
    void *h2 = cel_h2_new_upgraded(h->env, h->out, h->want_flush, h->flush_ctx, h->conn, settings,
                                   slen, &r->req, &dispatched);
    req_free(h, r, 0); /* HTTP/2 took its own copy */
    if (!h2 && dispatched) {
        /* The handler ran on stream 1 and the session failed after it: the
         * request is not made again over HTTP/1.1 (a handler with effects
         * would have them twice). It ends as a failed HTTP/2 session would. */
        h->state = S_CLOSED;
        return 0;
    }
    if (!h2)
        return -1;
    if (cel_outq_copy(h->out, CEL_H1_SWITCH_H2C, sizeof(CEL_H1_SWITCH_H2C) - 1)) {
        cel_h2_free(h2);
        h->state = S_CLOSED;
        return 0;
    }
    ibuf_consume(h, head_len);
    h->state = S_UPGRADED;
    h->upgrade(h->uctx, h2);
    return 0;
}

/* Reads as many requests from the input as the answers in progress allow. */
static void process(cel_h1 *h)
{
    if (h->in_process)
        return; /* the loop below goes on by itself */
    h->in_process = 1;
    process_input(h);
    h->in_process = 0;
}

static void process_input(cel_h1 *h)
{
    while (h->state == S_HEAD || h->state == S_BODY) {
        if (h->state == S_HEAD) {
            if (h->goaway) {
                h->state = S_CLOSED;
                return;
            }
            /* Answers waiting for a flush fill max_output_buffer: the next
             * request waits until one made room (p_want_write, p_send). */
            if (h->ilen && cel_outq_pending(h->out) >= h->limits.max_output_buffer) {
                h->out_full = 1;
                return;
            }
            cel_h1_head hd;
            int rc = cel_h1_parse_head_resume(h->ibuf, h->ilen, &hd, &h->plim, &h->scanned);
            if (rc == CEL_EAGAIN)
                return;
            if (rc < 0) {
                cel_log_debug("h1: %s", cel_h1_strerror(rc));
                refuse(h, cel_h1_error_status(rc));
                return;
            }
            size_t head_len = (size_t)rc;
            int has_body = hd.chunked || hd.content_length > 0;
            if (hd.upgrade_h2c && !has_body && upgrade(h, &hd, head_len) == 0)
                return;
            req *r = req_new(h, &hd);
            if (!r) {
                refuse(h, 500);
                return;
            }
            ibuf_consume(h, head_len);
            h->cur = r;
            if (!has_body) {
                dispatch(h, r);
                continue;
            }
            /* Routed now: the route says the body's limit and whether its
             * handler takes it as a stream. */
            int stream;
            r->route_rc =
                1 + cel_dispatch_route_body(r->gen->cfg, &r->x, &r->match,
                                            h->limits.max_request_body, &r->body_limit, &stream);
            if (hd.content_length > 0 && (uint64_t)hd.content_length > r->body_limit) {
                h->cur = NULL;
                cel_h1_refuse_request(h, 413, r);
                req_free(h, r, 0);
                return;
            }
            r->chunked = hd.chunked;
            r->body_left = hd.chunked ? 0 : (uint64_t)hd.content_length;
            if (r->chunked)
                cel_h1_chunked_init(&r->ch, 0);
            if (hd.expect_continue)
                cel_outq_copy(h->out, CEL_H1_CONTINUE, sizeof(CEL_H1_CONTINUE) - 1);
            if (stream) {
                r->x.body_streamed = 1;
                dispatch(h, r);
                if (h->cur != r || h->state == S_CLOSED)
                    continue; /* answered and finished already: the connection ends */
            }
            h->state = S_BODY;
        }
        req *r = h->cur;
        if (r->x.body_streamed) {
            int rc = body_stream(h, r);
            if (rc <= 0)
                return;
            h->state = S_BUSY;
            if (r->pending) {
                finish(h, r, r->pending == 1);
                continue;
            }
            return;
        }
        int rc, done;
        if (r->chunked) {
            size_t outlen = 0, used = 0;
            rc = cel_h1_chunked_decode(&r->ch, h->ibuf, h->ilen, h->ibuf, &outlen, &used);
            done = rc == 0;
            if (rc == CEL_EAGAIN || rc == 0)
                rc = body_add(h, r, h->ibuf, outlen);
            ibuf_consume(h, used);
        } else {
            size_t n = h->ilen < r->body_left ? h->ilen : (size_t)r->body_left;
            rc = body_add(h, r, h->ibuf, n);
            ibuf_consume(h, n);
            r->body_left -= n;
            done = r->body_left == 0;
        }
        if (rc < 0) {
            h->cur = NULL;
            cel_h1_refuse_request(h, cel_h1_error_status(rc == CEL_ENOMEM ? CEL_EIO : rc), r);
            req_free(h, r, 0);
            return;
        }
        if (!done)
            return;
        dispatch(h, r);
    }
}

/* ---- as a connection's protocol ---- */

static int p_recv(void *s, const uint8_t *p, size_t n)
{
    cel_h1 *h = s;
    if (h->state == S_CLOSED || h->state == S_UPGRADED)
        return 0; /* after our last answer: read and dropped while lingering */
    if (h->ilen == 0 && h->state == S_HEAD)
        h->head_us = h->env->now_us;
    if (ibuf_append(h, p, n))
        return CEL_EIO;
    h->progress++;
    process(h);
    return 0;
}

static int p_send(void *s)
{
    cel_h1 *h = s;
    req *r = h->cur;
    if (r && r->resume_due && h->state == S_BODY) {
        r->resume_due = 0;
        process(h);
        r = h->cur;
    }
    if (r && r->pending) {
        finish(h, r, r->pending == 1);
        process(h); /* the next pipelined request, if any */
        r = h->cur;
    }
    /* Pipelined requests left waiting for room in the output queue. */
    if (h->out_full && cel_outq_pending(h->out) < h->limits.max_output_buffer) {
        h->out_full = 0;
        process(h);
        r = h->cur;
    }
    /* A streamed answer waiting for room: the queue drained enough. */
    if (r && r->x.on_writable && cel_outq_pending(h->out) < STREAM_LOW) {
        void (*fn)(cel_exchange *) = r->x.on_writable;
        r->x.on_writable = NULL;
        uint64_t before = h->progress;
        fn(&r->x);
        h->idle_writable = h->progress == before ? before + 1 : 0;
    }
    return 0;
}

static int p_want_read(const void *s)
{
    const cel_h1 *h = s;
    return h->state != S_CLOSED && h->state != S_UPGRADED;
}

static int p_can_read(const void *s)
{
    const cel_h1 *h = s;
    /* Pipelined input piles up while an answer is in progress: pause at a cap;
     * a streamed body waits while its handler holds back. */
    if (h->state == S_BODY && h->cur && h->cur->x.body_streamed)
        return !h->cur->held && h->ilen < IBUF_SOFT_CAP;
    return (h->state != S_BUSY && !h->out_full) || h->ilen < IBUF_SOFT_CAP;
}

static int p_want_write(const void *s)
{
    const cel_h1 *h = s;
    /* Answers go straight into the output queue; only a streamed answer waiting
     * for room has more to give once a flush drained the queue below the
     * low-water mark, and the connection asks p_send for it then. */
    if (h->out_full)
        return cel_outq_pending(h->out) < h->limits.max_output_buffer;
    return h->cur && h->cur->x.on_writable && cel_outq_pending(h->out) < STREAM_LOW &&
           h->idle_writable != h->progress + 1; /* one that wrote nothing waits for an event */
}

static size_t p_streams(const void *s)
{
    const cel_h1 *h = s;
    return h->cur != NULL;
}

static int p_served(const void *s)
{
    return ((const cel_h1 *)s)->served;
}

static int p_in_headers(const void *s)
{
    const cel_h1 *h = s;
    return h->state == S_HEAD && h->ilen > 0;
}

static void p_goaway(void *s)
{
    cel_h1 *h = s;
    h->goaway = 1;
    if (!h->cur)
        h->state = S_CLOSED;
}

static uint64_t p_progress(const void *s)
{
    return ((const cel_h1 *)s)->progress;
}

static size_t p_held(const void *s)
{
    const cel_h1 *h = s;
    /* Dispatched (the request is whole, or its handler holds back its body)
     * and the answer is not complete. */
    return (h->state == S_BUSY || (h->state == S_BODY && h->cur && h->cur->held)) && h->cur &&
           !h->cur->ended;
}

static void p_expire(void *s)
{
    cel_h1 *h = s;
    /* A request head or body the client has not finished: 408. An answer
     * already begun can only be cut by the close. */
    if (h->state == S_BODY && h->cur) {
        req *r = h->cur;
        int answered = r->responded; /* to a streamed body: only the close can cut it */
        h->cur = NULL;
        req_free(h, r, 0);
        if (answered)
            h->state = S_CLOSED;
        else
            refuse(h, 408);
    } else if (h->state == S_HEAD && h->ilen > 0) {
        refuse(h, 408);
    }
    h->goaway = 1;
    if (!h->cur)
        h->state = S_CLOSED;
}

static void p_free(void *s)
{
    cel_h1 *h = s;
    if (h->cur)
        req_free(h, h->cur, 0);
    cel_pool_release(h->env->pool, h->ibuf);
    cel_pool_release(h->env->pool, h);
}

const cel_proto cel_h1_proto = {
    .name = "http/1.1",
    .recv = p_recv,
    .send = p_send,
    .want_read = p_want_read,
    .can_read = p_can_read,
    .want_write = p_want_write,
    .streams = p_streams,
    .served = p_served,
    .in_headers = p_in_headers,
    .goaway = p_goaway,
    .held = p_held,
    .expire = p_expire,
    .progress = p_progress,
    .free = p_free,
};

cel_h1 *cel_h1_new(cel_env *env, cel_outq *out, void (*want_flush)(void *ctx), void *ctx,
                   const cel_conn_view *conn, cel_h1_upgrade_fn upgrade_fn, void *uctx)
{
    cel_h1 *h = cel_pool_alloc(env->pool, sizeof(*h));
    if (!h)
        return NULL;
    memset(h, 0, sizeof(*h));
    h->env = env;
    h->out = out;
    h->want_flush = want_flush;
    h->flush_ctx = ctx;
    h->conn = conn;
    h->peer = conn && conn->peer ? conn->peer : "-";
    h->upgrade = upgrade_fn;
    h->uctx = uctx;
    h->limits = env->gen->cfg->limits;
    h->plim = (cel_h1_limits){
        .max_head = h->limits.max_header_list_size,
        .max_line = h->limits.max_header_line,
        .max_target = h->limits.max_request_line,
        .max_headers = h->limits.max_headers,
    };
    h->state = S_HEAD;
    return h;
}

const uint8_t *cel_h1_leftover(void *s, size_t *n)
{
    cel_h1 *h = s;
    *n = h->ilen;
    return (const uint8_t *)h->ibuf;
}
