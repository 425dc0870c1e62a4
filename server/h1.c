#include "h1.h"

#include <event2/event.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch.h"
#include "h1_parse.h"
#include "h2.h"
#include "log.h"
#include "mw_timeout.h"
#include "phase.h"
#include "stats.h"

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
    uint64_t progress;
    uint64_t idle_writable; /* progress + 1 when on_writable last ran and wrote nothing */
    uint64_t head_us;       /* env->now_us when the head being read began to arrive */
};

static void process(cel_h1 *h);
static void process_input(cel_h1 *h);

/* Base64url (RFC 4648 section 5, padding optional), as HTTP2-Settings uses. */
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
                : c == '='             ? -2
                                       : -1;
        if (v == -2)
            break;
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
    *outlen = k;
    return 0;
}

static void flush_soon(cel_h1 *h)
{
    if (h->want_flush)
        h->want_flush(h->flush_ctx);
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

/* ---- answering ---- */

static int response_connection(const cel_h1 *h, const req *r)
{
    if (!r->keep_alive || h->goaway || (r->x.body_streamed && !r->body_taken))
        return CEL_H1_CONN_CLOSE;
    return r->minor == 0 ? CEL_H1_CONN_KEEP_ALIVE : CEL_H1_CONN_DEFAULT;
}

/* The response head into the output queue: the head phase's fields for X,
 * then the framing: BODY (CEL_H1_BODY_*) and CONNECTION. */
static int write_head(cel_h1 *h, cel_exchange *x, cel_arena *arena, const cel_response *res,
                      int body, uint64_t length, int connection)
{
    cel_field f[CEL_PHASE_MAX_FIELDS];
    cel_header hs[CEL_PHASE_MAX_FIELDS];
    size_t n = cel_phase_head(x, res, f, CEL_PHASE_MAX_FIELDS);
    for (size_t i = 0; i < n; i++)
        hs[i] = (cel_header){{f[i].name, f[i].name_len}, {f[i].value, f[i].value_len}};
    cel_h1_resp hr = {
        .status = res->status,
        .headers = hs,
        .nheaders = n,
        .body = body,
        .content_length = length,
        .connection = connection,
    };
    char small[HEAD_BUF];
    int len = cel_h1_write_head(small, sizeof(small), &hr);
    if (len == CEL_ETOOBIG) {
        char *big = cel_arena_alloc(arena, 65536);
        if (!big)
            return CEL_ENOMEM;
        len = cel_h1_write_head(big, 65536, &hr);
        return len < 0 ? len : cel_outq_copy(h->out, big, (size_t)len);
    }
    return len < 0 ? len : cel_outq_copy(h->out, small, (size_t)len);
}

static void release_gen(void *arg)
{
    cel_genref_drop(arg);
}

static void finish(cel_h1 *h, req *r, int finished);

/* The answer to R is complete (OK) or cut. Whoever answered may still hold R
 * (a handler that has not returned, a module's completion callback), so it is
 * finished later: by dispatch once the handler returns, or by the next send. */
static void done(cel_h1 *h, req *r, int ok)
{
    r->pending = ok ? 1 : 2;
    if (h->dispatching != r)
        flush_soon(h);
}

static int respond(cel_h1 *h, req *r, const cel_response *res, const cel_body_owner *owner)
{
    cel_response filtered;
    res = cel_phase_body(&r->x, res, &filtered, 1);
    int no_body = res->status == 204 || res->status == 304;
    r->responded = 1;
    r->status = res->status;
    int conn = response_connection(h, r);
    if (conn == CEL_H1_CONN_CLOSE)
        r->keep_alive = 0; /* also when a streamed body is cut short by the answer */
    int rc = write_head(h, &r->x, &r->arena, res, no_body ? CEL_H1_BODY_NONE : CEL_H1_BODY_LENGTH,
                        res->body_len, conn);
    if (rc == 0 && !no_body && !r->head && res->body_len) {
        if (res->body_in_gen && res->body_len >= REF_MIN) {
            if ((rc = cel_outq_ref(h->out, res->body, res->body_len, release_gen,
                                   cel_genref_take(r->gen))))
                cel_genref_drop(r->gen);
        } else {
            rc = cel_outq_copy(h->out, res->body, res->body_len);
        }
        r->bytes_sent = res->body_len;
    }
    if (owner)
        owner->release(owner->arg); /* copied: the module's memory is free again */
    if (rc) {
        h->goaway = 1; /* a half-written answer cannot be repaired: end there */
        h->state = S_CLOSED;
    }
    r->ended = 1;
    done(h, r, rc == 0);
    return rc ? CEL_EIO : 0;
}

/* What the first line of the input says of a request whose head was refused,
 * for the access log: method, target and version as far as they go. */
static const char *sketch(const cel_h1 *h, cel_request *q)
{
    const char *p = h->ibuf, *end = h->ibuf + h->ilen;
    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    const char *eol = p;
    while (eol < end && *eol != '\r' && *eol != '\n')
        eol++;
    cel_str tok[3] = {{p, 0}, {p, 0}, {p, 0}};
    for (int i = 0; i < 3 && p < eol; i++) {
        const char *sp = memchr(p, ' ', (size_t)(eol - p));
        tok[i] = (cel_str){p, (size_t)((sp ? sp : eol) - p)};
        p = sp ? sp + 1 : eol;
    }
    memset(q, 0, sizeof(*q));
    q->method = tok[0];
    q->method_bit = cel_method_bit(tok[0].p, tok[0].n);
    const char *qm = memchr(tok[1].p, '?', tok[1].n);
    q->path = (cel_str){tok[1].p, qm ? (size_t)(qm - tok[1].p) : tok[1].n};
    if (qm)
        q->query = (cel_str){qm + 1, tok[1].n - q->path.n - 1};
    return tok[2].n == 8 && memcmp(tok[2].p, "HTTP/1.0", 8) == 0 ? "HTTP/1.0" : "HTTP/1.1";
}

/* The server's own answer to a request it cannot take; the connection ends.
 * Logged and counted as rejected: R is the request when its head was taken,
 * else the input's first line says what it was. */
static void refuse_request(cel_h1 *h, int status, req *r)
{
    cel_response res;
    cel_response_error(&res, status);
    const cel_config *cfg = h->env->gen->cfg;
    cel_request q;
    const char *protocol = r ? (r->minor ? "HTTP/1.1" : "HTTP/1.0") : sketch(h, &q);
    /* Before dispatch: the global middleware, on the request as far as it was read. */
    char scratch[256];
    cel_arena a;
    cel_exchange tx = {.req = &q, .arena = &a, .env = h->env, .conn = h->conn};
    cel_exchange *x = r ? &r->x : &tx;
    if (!r)
        cel_arena_init(&a, h->env->pool, scratch, sizeof(scratch));
    x->mw = (r ? r->gen->cfg : cfg)->mw;
    x->filter = NULL;
    cel_response with_errors;
    const cel_response *out = cel_phase_body(x, &res, &with_errors, 1);
    int rc = write_head(h, x, x->arena, out, CEL_H1_BODY_LENGTH, out->body_len, CEL_H1_CONN_CLOSE);
    if (rc == 0)
        cel_outq_copy(h->out, out->body, out->body_len);
    if (!r)
        cel_arena_deinit(&a);
    h->state = S_CLOSED;
    uint64_t start = h->ilen ? h->head_us : h->env->now_us;
    cel_dispatch_rejected(h->env, cfg, r ? &r->req : &q, protocol, h->peer, status,
                          rc == 0 ? out->body_len : 0, r ? r->start_us : start);
}

static void refuse(cel_h1 *h, int status)
{
    refuse_request(h, status, NULL);
}

/* ---- the exchange, for handlers that answer later or in pieces ---- */

#define REQ_OF(x) ((req *)((char *)(x)-offsetof(req, x)))

static int x_respond(cel_exchange *x, const cel_response *res, const cel_body_owner *owner)
{
    req *r = REQ_OF(x);
    cel_h1 *h = r->h;
    if (r->responded) {
        if (owner)
            owner->release(owner->arg);
        return CEL_EINVAL;
    }
    return respond(h, r, res, owner);
}

static int x_start(cel_exchange *x, const cel_response *head)
{
    req *r = REQ_OF(x);
    cel_h1 *h = r->h;
    if (r->responded)
        return CEL_EINVAL;
    cel_response filtered;
    head = cel_phase_body(x, head, &filtered, 0);
    r->responded = r->streaming = 1;
    r->status = head->status;
    int no_body = head->status == 204 || head->status == 304;
    /* HTTP/1.0 has no chunked coding: the body ends when the connection does. */
    /* sized: the length is known, unless a body filter rewrites the body */
    int sized = head->sized && !x->filter;
    if (r->minor == 0 && !sized)
        r->keep_alive = 0;
    /* A HEAD gets the framing its GET would get, and no body. */
    int framing = no_body    ? CEL_H1_BODY_NONE
                  : sized    ? CEL_H1_BODY_LENGTH
                  : r->minor ? CEL_H1_BODY_CHUNKED
                             : CEL_H1_BODY_NONE;
    r->chunks = framing == CEL_H1_BODY_CHUNKED;
    int conn = response_connection(h, r);
    if (conn == CEL_H1_CONN_CLOSE)
        r->keep_alive = 0; /* also when a streamed body is cut short by the answer */
    int rc = write_head(h, x, &r->arena, head, framing, sized ? head->body_len : 0, conn);
    if (no_body || r->head)
        r->streaming = 2; /* headers only: writes are dropped, end finishes */
    flush_soon(h);
    return rc ? CEL_EIO : 0;
}

static int raw_write(cel_exchange *x, const void *p, size_t n)
{
    req *r = REQ_OF(x);
    cel_h1 *h = r->h;
    if (!r->streaming || r->ended)
        return CEL_EINVAL;
    if (r->streaming == 2 || n == 0)
        return 0;
    int rc = 0;
    if (r->chunks) {
        char line[24];
        int k = cel_h1_write_chunk_size(line, sizeof(line), n);
        rc =
            k < 0 || (size_t)k > sizeof(line) ? CEL_EINVAL : cel_outq_copy(h->out, line, (size_t)k);
    }
    if (!rc)
        rc = cel_outq_copy(h->out, p, n);
    if (!rc && r->chunks)
        rc = cel_outq_copy(h->out, "\r\n", 2);
    if (rc)
        return CEL_ENOMEM;
    r->bytes_sent += n;
    h->progress++;
    flush_soon(h);
    return cel_outq_pending(h->out) > STREAM_HIGH ? CEL_EAGAIN : 0;
}

static void close_fd(void *arg)
{
    close((int)(intptr_t)arg);
}

static int x_write_file(cel_exchange *x, int fd, uint64_t off, uint64_t n)
{
    req *r = REQ_OF(x);
    cel_h1 *h = r->h;
    if (r->streaming != 1 || r->ended || r->chunks || x->filter || !cel_outq_can_sendfile(h->out) ||
        !n || n > SIZE_MAX)
        return CEL_EINVAL;
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0)
        return CEL_EINVAL;
    if (cel_outq_file(h->out, own, (off_t)off, (size_t)n, close_fd, (void *)(intptr_t)own)) {
        close(own);
        return CEL_ENOMEM;
    }
    r->bytes_sent += n;
    h->progress++;
    flush_soon(h);
    return cel_outq_pending(h->out) > STREAM_HIGH ? CEL_EAGAIN : 0;
}

static int raw_end(cel_exchange *x)
{
    req *r = REQ_OF(x);
    cel_h1 *h = r->h;
    if (!r->streaming || r->ended)
        return CEL_EINVAL;
    r->ended = 1;
    int rc = r->streaming == 1 && r->chunks ? cel_outq_copy(h->out, CEL_H1_LAST_CHUNK, 5) : 0;
    done(h, r, rc == 0);
    return rc ? CEL_ENOMEM : 0;
}

static const cel_body_next body_next = {raw_write, raw_end};

static int x_write(cel_exchange *x, const void *p, size_t n)
{
    if (CEL_UNLIKELY(x->filter != NULL))
        return x->filter->write(x, p, n, &body_next);
    return raw_write(x, p, n);
}

static int x_end(cel_exchange *x)
{
    if (CEL_UNLIKELY(x->filter != NULL))
        return x->filter->end(x, &body_next);
    return raw_end(x);
}

static size_t x_buffered(const cel_exchange *x)
{
    return cel_outq_pending(REQ_OF(x)->h->out);
}

static void x_fail(cel_exchange *x)
{
    req *r = REQ_OF(x);
    cel_h1 *h = r->h;
    if (r->ended)
        return;
    if (!r->responded) {
        cel_response res;
        cel_response_error(&res, 500);
        r->keep_alive = 0;
        respond(h, r, &res, NULL);
    } else {
        /* Half an answer is out: only closing tells the client it is cut. */
        h->goaway = 1;
        h->state = S_CLOSED;
        r->ended = 1;
        done(h, r, 0);
    }
    flush_soon(h);
}

static void x_body_resume(cel_exchange *x)
{
    req *r = REQ_OF(x);
    r->held = 0;
    r->resume_due = 1;
    flush_soon(r->h);
}

static int x_state(const cel_exchange *x)
{
    const req *r = REQ_OF(x);
    return !r->responded ? CEL_X_WAITING : r->ended ? CEL_X_ANSWERED : CEL_X_STREAMING;
}

static const cel_exchange_ops exchange_ops = {
    .respond = x_respond,
    .start = x_start,
    .write = x_write,
    .write_file = x_write_file,
    .end = x_end,
    .buffered = x_buffered,
    .fail = x_fail,
    .hold = cel_genref_hold_exchange,
    .body_resume = x_body_resume,
    .state = x_state,
};

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
    r->x.ops = &exchange_ops;
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
    h->dispatching = NULL;
    if (rc != CEL_HANDLER_ASYNC)
        respond(h, r, &res, NULL);
    else if (r->pending)
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
        respond(h, r, &res, NULL);
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
    if (cel_outq_copy(h->out, CEL_H1_SWITCH_H2C, sizeof(CEL_H1_SWITCH_H2C) - 1)) {
        req_free(h, r, 0);
        return -1;
    }
    void *h2 = cel_h2_new_upgraded(h->env, h->out, h->want_flush, h->flush_ctx, h->conn, settings,
                                   slen, &r->req);
    req_free(h, r, 0); /* HTTP/2 took its own copy */
    if (!h2) {
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
                refuse_request(h, 413, r);
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
            refuse_request(h, cel_h1_error_status(rc == CEL_ENOMEM ? CEL_EIO : rc), r);
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
    return h->state != S_BUSY || h->ilen < IBUF_SOFT_CAP;
}

static int p_want_write(const void *s)
{
    const cel_h1 *h = s;
    /* Answers go straight into the output queue; only a streamed answer waiting
     * for room has more to give once a flush drained the queue below the
     * low-water mark, and the connection asks p_send for it then. */
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
