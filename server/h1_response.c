/* The HTTP/1.1 front end's answers: the response head and body into the
 * output queue, the server's own refusals, and the exchange's operations for
 * handlers that answer later or in pieces. The connection and its parser loop
 * are in h1.c. */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "dispatch.h"
#include "h1_internal.h"
#include "http.h"
#include "phase.h"

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

int cel_h1_respond(cel_h1 *h, req *r, const cel_response *res, const cel_body_owner *owner)
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

/* Whether T is a request target the parser takes: visible ASCII but '#'. */
static int target_ok(cel_str t)
{
    for (size_t i = 0; i < t.n; i++) {
        unsigned char c = (unsigned char)t.p[i];
        if (c <= ' ' || c >= 0x7f || c == '#')
            return 0;
    }
    return 1;
}

/* What the first line of the input says of a request whose head was refused,
 * for the access log: method, target and version as far as the parser could
 * read them. A method that is no token leaves both out (the line is no request
 * line: the log would show its bytes as a method and a path), and a target with
 * a byte the parser refuses leaves the target out. */
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
    if (!cel_http_is_token(tok[0].p, tok[0].n))
        tok[0].n = tok[1].n = 0;
    else if (!target_ok(tok[1]))
        tok[1].n = 0;
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
void cel_h1_refuse_request(cel_h1 *h, int status, req *r)
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
    x->id_as_is = 1;
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
    return cel_h1_respond(h, r, res, owner);
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

/* N body bytes of R are in the output queue: counted, flushed soon; 0, or
 * CEL_EAGAIN once the queue holds enough that the writer should wait. */
static int body_queued(cel_h1 *h, req *r, uint64_t n)
{
    r->bytes_sent += n;
    h->progress++;
    flush_soon(h);
    return cel_outq_pending(h->out) > STREAM_HIGH ? CEL_EAGAIN : 0;
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
    return body_queued(h, r, n);
}

static int x_write_file(cel_exchange *x, int fd, uint64_t off, uint64_t n,
                        const cel_body_owner *owner)
{
    req *r = REQ_OF(x);
    cel_h1 *h = r->h;
    if (r->streaming != 1 || r->ended || r->chunks || x->filter || !cel_outq_can_sendfile(h->out) ||
        !n || n > SIZE_MAX)
        return cel_body_owner_done(owner, CEL_EINVAL);
    cel_body_owner own;
    if (cel_body_owner_for_fd(owner, &fd, &own))
        return CEL_EINVAL;
    if (cel_outq_file(h->out, fd, (off_t)off, (size_t)n, own.release, own.arg)) {
        own.release(own.arg);
        return CEL_ENOMEM;
    }
    return body_queued(h, r, n);
}

static int x_read_file(cel_exchange *x, int fd, uint64_t off, size_t n)
{
    req *r = REQ_OF(x);
    cel_h1 *h = r->h;
    if (r->streaming == 2 && !r->ended)
        return 0; /* HEAD, 204, 304: the bytes are dropped unread */
    if (r->streaming != 1 || r->ended || r->chunks || x->filter || !n || off > INT64_MAX)
        return CEL_EINVAL;
    int rc = cel_outq_copy_read(h->out, NULL, 0, fd, (off_t)off, n);
    if (rc)
        return rc;
    return body_queued(h, r, n);
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
    return cel_phase_write(x, p, n, &body_next);
}

static int x_end(cel_exchange *x)
{
    return cel_phase_end(x, &body_next);
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
        cel_h1_respond(h, r, &res, NULL);
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

const cel_exchange_ops cel_h1_exchange_ops = {
    .respond = x_respond,
    .start = x_start,
    .write = x_write,
    .write_file = x_write_file,
    .read_file = x_read_file,
    .end = x_end,
    .buffered = x_buffered,
    .fail = x_fail,
    .hold = cel_genref_hold_exchange,
    .body_resume = x_body_resume,
    .state = x_state,
};
