#include "h2.h"

#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "dispatch.h"
#include "h2_fields.h"
#include "http.h"
#include "log.h"
#include "phase.h"
#include "stats.h"
#include "version.h"

/* Bodies at least this long that live in the generation are queued by
 * reference; shorter ones are copied next to their frame header, which keeps
 * small responses in one iovec. */
#define REF_MIN 1024
#define INLINE_HEADERS 16
#define INLINE_ARENA 1024
#define MAX_RESPONSE_HEADERS (CEL_PHASE_MAX_FIELDS + 2) /* with :status, content-length */

enum {
    ST_RESPONDED = 1u << 0,      /* a response has been submitted */
    ST_DISCARD = 1u << 1,        /* answered early (413, 431): drop what the client still sends */
    ST_HDR_TOO_BIG = 1u << 2,    /* header list over the limit: answer 431 */
    ST_SENT = 1u << 3,           /* the whole response has been handed to the output queue */
    ST_RESET = 1u << 4,          /* we reset the stream */
    ST_STREAMING = 1u << 6,      /* the body comes through write/end */
    ST_ENDED = 1u << 7,          /* streaming: end was called */
    ST_DEFERRED = 1u << 8,       /* streaming: nghttp2 waits for data (resume on write) */
    ST_WQ = 1u << 9,             /* on the connection's list of on_writable calls */
    ST_WU_OVERFLOW = 1u << 10,   /* a WINDOW_UPDATE overflowed this stream's window */
    ST_DATA_OVERFLOW = 1u << 11, /* the client sent more DATA than the stream's window */
    ST_MALFORMED = 1u << 12,     /* RFC 9113 8.1.1: reset with PROTOCOL_ERROR, never served */
    ST_PEER_DONE = 1u << 13, /* the client ended or reset the stream: more from it is an error */
    ST_HELD = 1u << 14,      /* waits on the server alone (counted in held) */
};

#define PRIO_SET 0x80

/* We never raise SETTINGS_MAX_FRAME_SIZE above the protocol's initial value. */
#define OUR_MAX_FRAME_SIZE 16384

/* A streamed body: above HIGH bytes waiting, write asks the producer to pause;
 * below LOW its on_writable runs. */
#define STREAM_HIGH (64 * 1024)
#define STREAM_LOW (16 * 1024)

/* Where a fixed response body lives, which decides how it is queued. */
enum { BODY_ARENA, BODY_GEN, BODY_EXT };

/* A body referenced from outside (a module's): released once neither the
 * stream nor the output queue needs it. */
typedef struct ext_body {
    unsigned refs;
    cel_pool *pool;
    cel_body_owner owner;
} ext_body;

/* After an early answer the rest of the request body is read and dropped, so
 * that clients which treat any RST_STREAM as failure still see the answer; past
 * this many bytes (and at least 1 MiB) the stream is reset with NO_ERROR. */
#define DISCARD_FACTOR 4
#define DISCARD_MIN (1u << 20)

/* A token bucket refilled once a second. */
typedef struct bucket {
    uint32_t tokens, burst, rate;
    time_t at;
} bucket;

static void bucket_init(bucket *b, uint32_t burst, uint32_t rate, time_t now)
{
    *b = (bucket){burst, burst, rate, now};
}

/* Takes a token; -1 when none is left. */
static int bucket_take(bucket *b, time_t now)
{
    if (now != b->at) {
        uint64_t refill = (uint64_t)(now - b->at) * b->rate + b->tokens;
        b->tokens = refill > b->burst ? b->burst : (uint32_t)refill;
        b->at = now;
    }
    if (b->tokens == 0)
        return -1;
    b->tokens--;
    return 0;
}

typedef struct stream {
    /* Set one by one in stream_new (the static asserts after STREAM_CLEARED
     * check this layout, and tests/test_layout.py that they do): */
    struct stream *prev, *next;
    struct cel_h2 *h;
    cel_genref *gen;
    cel_arena arena;
    cel_h2_fields hf; /* section 8 checks (nghttp2's HTTP messaging is off) */
    cel_header *hdrs;
    int32_t id;
    uint32_t cap_hdrs;
    uint64_t start_us; /* env->now_us of the first header */
    /* Cleared in stream_new, from here up to match.params: */
    cel_exchange x;
    unsigned flags;
    uint32_t nhdrs;
    cel_request req;
    size_t hdr_bytes;
    char *body; /* pool memory; grows to limits.max_request_body */
    size_t body_len, body_cap;
    size_t discarded;
    int status;
    uint8_t prio; /* RFC 9218 priority field: PRIO_SET | urgency << 1 | incremental */
    uint64_t bytes_sent;
    /* the response body being sent: fixed (out) or streamed (sbuf) */
    const char *out;
    size_t out_len, out_read, out_sent;
    int out_kind;
    ext_body *ext;
    char *sbuf; /* pool memory: [out_sent, out_len) is waiting */
    size_t sbuf_cap;
    struct stream *wnext; /* on the connection's list of on_writable calls to make */
    /* Last of what stream_new clears: the router fills match.params up to
     * match.nparams, and nothing reads past that. */
    cel_route_match match;
    /* content-length as text: here rather than on submit's stack, so nghttp2
     * can take it without a copy (NO_COPY_VALUE) */
    char clen_txt[24];
    cel_header inline_hdrs[INLINE_HEADERS];
    char inline_arena[INLINE_ARENA];
} stream;

struct cel_h2 {
    nghttp2_session *s;
    cel_env *env;
    cel_outq *out;
    cel_limits limits; /* the generation's limits when the connection began */
    stream *streams;   /* newest first */
    stream *oldest;    /* the last of them */
    size_t nstreams;
    stream *cur;         /* the stream of in_headers, when it has one */
    int32_t in_headers;  /* stream whose header block is still arriving, or 0 */
    int32_t last_stream; /* highest client stream id seen in a HEADERS frame */
    bucket glitches;     /* frames that do no work */
    bucket resets;       /* RST_STREAMs either side sent (rapid reset, MadeYouReset) */
    uint64_t progress;   /* request or response bytes moved: what idleness is measured by */
    uint64_t data_sent;  /* DATA frames we sent */
    uint64_t wu_recv;    /* WINDOW_UPDATE frames received */
    stream *writable;    /* streams whose on_writable is due, run after each send */
    void (*want_flush)(void *ctx);
    void *flush_ctx;
    const cel_conn_view *conn;
    const char *peer;    /* client address, for the access log */
    uint8_t served;      /* a request was dispatched */
    uint8_t goaway;      /* we sent (or queued) our GOAWAY */
    uint32_t discarding; /* streams with ST_DISCARD */
    uint32_t held;       /* streams with ST_HELD */
    /* The client's frames, followed beside nghttp2 (see cel_h2_recv). */
    uint32_t scan_skip;             /* octets of the current frame (or preface) still to pass */
    int32_t scan_pri;               /* stream of the PRIORITY payload being read, or -1 */
    uint8_t scan_have;              /* octets of scan_buf filled */
    uint8_t scan_buf[9];            /* a frame header (or PRIORITY payload) cut by a read */
    struct kept_field *kept;        /* verdicts on repeated fields (on_header), or NULL */
    const nghttp2_rcbuf *path_name; /* nghttp2's static-table ":path" name, once seen */
    stream **slots;                 /* STREAM_SLOTS streams by id (find_stream), or NULL */
    int32_t ended_top;              /* highest stream id in ended_bits */
    uint32_t kept_bytes; /* what the kept entries' references hold (KEPT_BYTES at most) */
    uint64_t ended_bits; /* bit i: stream ended_top - 2i closed after its client ended it */
};

static const cel_exchange_ops exchange_ops;

static nghttp2_session_callbacks *callbacks;

static void maybe_reset(cel_h2 *h, stream *st);
static int spend(struct cel_h2 *h, bucket *b, const char *what);

/* ---- nghttp2's memory comes from the worker's pool ---- */

static void *mem_malloc(size_t n, void *ud)
{
    return cel_pool_alloc(ud, n);
}

static void mem_free(void *p, void *ud)
{
    cel_pool_release(ud, p);
}

static void *mem_calloc(size_t nmemb, size_t size, void *ud)
{
    return cel_pool_calloc(ud, nmemb, size);
}

static void *mem_realloc(void *p, size_t n, void *ud)
{
    return cel_pool_realloc(ud, p, n);
}

void cel_h2_pool_mem(nghttp2_mem *mem, cel_pool *pool)
{
    *mem = (nghttp2_mem){pool, mem_malloc, mem_free, mem_calloc, mem_realloc};
}

/* ---- streams ---- */

/*
 * Our streams by id, without nghttp2's stream map (no stream user data is
 * set): a slot per id modulo STREAM_SLOTS, which concurrent streams of one
 * client (consecutive odd ids) rarely share, and the list of the connection's
 * streams behind it. The slots come with the first stream.
 */
#define STREAM_SLOTS 32

static inline stream **stream_slot(cel_h2 *h, int32_t id)
{
    return &h->slots[((uint32_t)id >> 1) & (STREAM_SLOTS - 1)];
}

static stream *find_stream(cel_h2 *h, int32_t id)
{
    if (CEL_LIKELY(h->slots != NULL)) {
        stream *st = *stream_slot(h, id);
        if (CEL_LIKELY(st && st->id == id))
            return st;
    }
    for (stream *st = h->streams; st; st = st->next)
        if (st->id == id)
            return st;
    return NULL;
}

/* A stream starts or stops waiting on the server alone (see cel_proto.held). */
static void set_held(cel_h2 *h, stream *st, int on)
{
    if (on == !!(st->flags & ST_HELD))
        return;
    st->flags ^= ST_HELD;
    if (on)
        h->held++;
    else
        h->held--;
}

/* What stream_new clears: from x up to match.params. */
#define STREAM_CLEARED (offsetof(stream, match.params) - offsetof(stream, x))
_Static_assert(STREAM_CLEARED % 8 == 0, "cel_zero clears 8 bytes at a time");

/* The layout stream_new relies on, checked so that a field added in the wrong
 * place (left set by the pool's previous user) stops the build. Before x,
 * exactly the fields stream_new sets one by one: */
#define FIELD_END(t, f) (offsetof(t, f) + sizeof(((t *)0)->f))
_Static_assert(offsetof(stream, x) == 4 * sizeof(void *) + sizeof(cel_arena) +
                                          sizeof(cel_h2_fields) + sizeof(cel_header *) +
                                          sizeof(int32_t) + sizeof(uint32_t) + sizeof(uint64_t),
               "a field before stream.x: set it in stream_new and count it here");
/* after the cleared part, only what the router fills (params, up to nparams)
 * and the buffers that are written before being read: */
_Static_assert(FIELD_END(cel_route_match, params) == sizeof(cel_route_match),
               "a field after cel_route_match.params is not cleared by stream_new");
_Static_assert(offsetof(stream, clen_txt) == FIELD_END(stream, match) &&
                   offsetof(stream, inline_hdrs) == FIELD_END(stream, clen_txt) &&
                   offsetof(stream, inline_arena) == FIELD_END(stream, inline_hdrs) &&
                   sizeof(stream) == FIELD_END(stream, inline_arena),
               "a field after stream.match is not cleared by stream_new: move it above match");

static stream *stream_new(cel_h2 *h, int32_t id)
{
    stream *st = cel_pool_alloc(h->env->pool, sizeof(*st));
    if (!st)
        return NULL;
    cel_zero(&st->x, STREAM_CLEARED);
    st->id = id;
    st->h = h;
    st->x.ops = &exchange_ops;
    st->x.req = &st->req;
    st->x.arena = &st->arena;
    st->x.env = h->env;
    st->gen = cel_env_hold(h->env);
    st->x.gen = st->gen;
    st->x.conn = h->conn;
    st->x.real_ip = st->gen->cfg->real_ip;
    st->x.http2 = 1;
    cel_h2_fields_init(&st->hf);
    st->start_us = h->env->now_us;
    if (h->env->stats)
        cel_count(&h->env->stats->streams_open[CEL_PROTO_H2], 1);
    cel_arena_init(&st->arena, h->env->pool, st->inline_arena, sizeof(st->inline_arena));
    st->hdrs = st->inline_hdrs;
    st->cap_hdrs = INLINE_HEADERS;
    st->prev = NULL;
    st->next = h->streams;
    if (h->streams)
        h->streams->prev = st;
    else
        h->oldest = st;
    h->streams = st;
    h->nstreams++;
    if (h->slots || (h->slots = cel_pool_calloc(h->env->pool, STREAM_SLOTS, sizeof(stream *))))
        *stream_slot(h, id) = st;
    return st;
}

static void ext_unref(void *arg)
{
    ext_body *e = arg;
    if (--e->refs)
        return;
    e->owner.release(e->owner.arg);
    cel_pool_release(e->pool, e);
}

/* A stream that never reached a route: answered early (413, 431) or reset as
 * malformed (logged as 400); one that ended without either (the client reset
 * it, the connection went) is not a request anyone answered. */
static __attribute__((noinline)) void account_rejected(cel_h2 *h, stream *st)
{
    int status = st->flags & ST_RESPONDED ? st->status : 400;
    if (!(st->flags & ST_RESPONDED) && !(st->flags & ST_MALFORMED))
        return;
    cel_dispatch_rejected(h->env, st->gen->cfg, &st->req, "HTTP/2.0", h->peer, status,
                          st->bytes_sent, st->start_us);
}

/* A stream ends: count it, and log it when the route wants that. */
static void account(cel_h2 *h, stream *st)
{
    if (h->env->stats)
        cel_uncount(&h->env->stats->streams_open[CEL_PROTO_H2], 1);
    st->req.headers = st->hdrs;
    st->req.nheaders = st->nhdrs;
    if (CEL_UNLIKELY((st->flags & (ST_RESPONDED | ST_DISCARD)) != ST_RESPONDED)) {
        account_rejected(h, st);
        return;
    }
    cel_dispatch_done(h->env, st->gen->cfg, &st->match, &st->req, "HTTP/2.0", h->peer, st->status,
                      st->bytes_sent, st->start_us);
}

/* What a stream may hold beyond the usual, let go in this order. */
static __attribute__((noinline)) void stream_free_extras(cel_h2 *h, stream *st)
{
    if (st->flags & ST_DISCARD)
        h->discarding--;
    set_held(h, st, 0);
    if (st->x.on_close)
        st->x.on_close(&st->x, (st->flags & ST_SENT) != 0);
    if (st->flags & ST_WQ)
        for (stream **p = &h->writable; *p; p = &(*p)->wnext)
            if (*p == st) {
                *p = st->wnext;
                break;
            }
    if (st->ext)
        ext_unref(st->ext);
    cel_pool_release(h->env->pool, st->sbuf);
    if (st->hdrs != st->inline_hdrs)
        cel_pool_release(h->env->pool, st->hdrs);
    cel_pool_release(h->env->pool, st->body);
}

static void stream_free(cel_h2 *h, stream *st)
{
    account(h, st);
    /* one test for all of stream_free_extras' cases, none on most streams */
    if ((st->flags & (ST_DISCARD | ST_WQ | ST_HELD)) | (st->x.on_close != NULL) |
        (uintptr_t)st->ext | (uintptr_t)st->sbuf | (uintptr_t)st->body |
        ((uintptr_t)st->hdrs ^ (uintptr_t)st->inline_hdrs))
        stream_free_extras(h, st);
    if (h->slots && *stream_slot(h, st->id) == st)
        *stream_slot(h, st->id) = NULL;
    if (st->prev)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    else
        h->oldest = st->prev;
    h->nstreams--;
    if (st->arena.blocks)
        cel_arena_deinit(&st->arena);
    cel_genref_drop(st->gen);
    cel_pool_release(h->env->pool, st);
}

/* ---- responses ---- */

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    stream *st = src->ptr;
    (void)s, (void)id, (void)buf, (void)ud;
    size_t n = st->out_len - st->out_read;
    if (n == 0 && (st->flags & (ST_STREAMING | ST_ENDED)) == ST_STREAMING) {
        st->flags |= ST_DEFERRED;
        set_held(st->h, st, 1);
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n > length)
        n = length;
    st->out_read += n;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (st->out_read == st->out_len && (!(st->flags & ST_STREAMING) || (st->flags & ST_ENDED)))
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void release_gen(void *arg)
{
    cel_genref_drop(arg);
}

/* Streaming: bytes went to the queue; compact the buffer and see whether the
 * producer may go on. */
static void stream_consumed(cel_h2 *h, stream *st)
{
    if (st->out_sent == st->out_len) {
        st->out_sent = st->out_read = st->out_len = 0;
    } else if (st->out_sent > st->sbuf_cap / 2) {
        memmove(st->sbuf, st->sbuf + st->out_sent, st->out_len - st->out_sent);
        st->out_len -= st->out_sent;
        st->out_read -= st->out_sent;
        st->out_sent = 0;
    }
    if (st->x.on_writable && st->out_len - st->out_sent < STREAM_LOW && !(st->flags & ST_WQ)) {
        st->flags |= ST_WQ;
        st->wnext = h->writable;
        h->writable = st;
    }
}

static int send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t length, nghttp2_data_source *src, void *ud)
{
    cel_h2 *h = ud;
    stream *st = src->ptr;
    (void)s;
    if (cel_outq_pending(h->out) >= h->limits.max_output_buffer)
        return NGHTTP2_ERR_WOULDBLOCK;
    static const uint8_t zeros[256];
    size_t pad = frame->data.padlen;
    const char *p = (st->flags & ST_STREAMING ? st->sbuf : st->out) + st->out_sent;
    st->out_sent += length;
    st->bytes_sent += length;
    h->progress++;
    h->data_sent++;
    int rc;
    if (CEL_LIKELY(!pad && (length < REF_MIN || st->out_kind == BODY_ARENA))) {
        /* the usual short body: one copy with its frame header */
        rc = cel_outq_copy2(h->out, framehd, 9, p, length);
    } else if (cel_outq_copy(h->out, framehd, 9) ||
               (pad && cel_outq_copy(h->out, zeros, 1))) { /* the pad length byte */
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    } else if (st->out_kind == BODY_GEN && length >= REF_MIN) {
        if ((rc = cel_outq_ref(h->out, p, length, release_gen, cel_genref_take(st->gen))))
            cel_genref_drop(st->gen);
    } else if (st->out_kind == BODY_EXT && length >= REF_MIN) {
        st->ext->refs++;
        if ((rc = cel_outq_ref(h->out, p, length, ext_unref, st->ext)))
            st->ext->refs--;
    } else {
        rc = cel_outq_copy(h->out, p, length);
    }
    if (rc)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (st->flags & ST_STREAMING)
        stream_consumed(h, st);
    if (pad > 1 && cel_outq_copy(h->out, zeros, pad - 1))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        st->flags |= ST_SENT; /* what on_frame_send would say next */
    return 0;
}

/* A field whose name and value both outlive the HEADERS frame: the stream
 * (clen_txt, its arena), the generation the stream holds
 * (content-type, configured headers, middleware's), the worker (date,
 * rewritten in place once a second, always 29 bytes) or static storage. nghttp2 drops a stream's
 * pending HEADERS unread when the stream closes first. */
static nghttp2_nv nv_name_lit(const char *name, size_t nlen, const char *v, size_t vlen)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)v, nlen, vlen,
                        NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
}

_Static_assert(sizeof(cel_field) == sizeof(nghttp2_nv) &&
                   offsetof(cel_field, name) == offsetof(nghttp2_nv, name) &&
                   offsetof(cel_field, value) == offsetof(nghttp2_nv, value) &&
                   offsetof(cel_field, name_len) == offsetof(nghttp2_nv, namelen) &&
                   offsetof(cel_field, value_len) == offsetof(nghttp2_nv, valuelen) &&
                   offsetof(cel_field, flags) == offsetof(nghttp2_nv, flags),
               "the head phase writes nghttp2_nv");
_Static_assert(CEL_FIELD_KEPT == (NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE),
               "a kept field is one nghttp2 need not copy");
_Static_assert(CEL_FIELD_UNIQUE == NGHTTP2_NV_FLAG_NO_INDEX, "a unique value is never indexed");

/* ":status" values 100 to 599 as text, filled before main(). Responses come
 * with 200-599 (configured and module statuses are checked to be in it, the
 * daemon's own are 4xx and 5xx). */
static char status_texts[500][3];

__attribute__((constructor)) static void fill_status_texts(void)
{
    for (int i = 0; i < 500; i++) {
        status_texts[i][0] = (char)('0' + (i + 100) / 100);
        status_texts[i][1] = (char)('0' + (i + 100) / 10 % 10);
        status_texts[i][2] = (char)('0' + (i + 100) % 10);
    }
}

/* HEAD, 204 and 304 answers carry no content, whatever the handler writes. */
static int no_content(const stream *st)
{
    return st->req.method_bit == CEL_M_HEAD || st->status == 204 || st->status == 304;
}

/* Submits RES's status and headers; with STREAMING the body follows through
 * write/end (no content-length), else RES's body is the whole body. */
static int submit(cel_h2 *h, stream *st, const cel_response *res, int streaming)
{
    nghttp2_nv nva[MAX_RESPONSE_HEADERS];
    cel_response filtered;
    res = cel_phase_body(&st->x, res, &filtered, !streaming);
    unsigned si = (unsigned)res->status - 100;
    const char *status = status_texts[si < 500 ? si : 400]; /* never outside: 500 then */
    nva[0] = nv_name_lit(":status", 7, status, 3);
    /* The phase's fields are nghttp2_nv's (see cel_field), lowercase, and live
     * in the generation, the stream's arena or static storage. */
    size_t n = 1 + cel_phase_head(&st->x, res, (cel_field *)&nva[1], CEL_PHASE_MAX_FIELDS);
    char *clen = st->clen_txt;
    int no_body = res->status == 204 || res->status == 304;
    if (!no_body && !streaming)
        nva[n++] = nv_name_lit("content-length", 14, clen, cel_http_utoa(clen, res->body_len));

    st->flags |= ST_RESPONDED;
    st->status = res->status;
    if (streaming) {
        st->flags |= ST_STREAMING;
    } else {
        st->out = res->body;
        st->out_len = res->body_len;
        st->out_kind = res->body_in_gen ? BODY_GEN : BODY_ARENA;
    }
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = body_read};
    /* A streamed answer without content (HEAD, 204, 304) still ends when the
     * handler ends it: its writes are dropped until then, and the stream ends
     * with an empty DATA frame, so the exchange stays valid as long as on GET. */
    int with_body = streaming || (!no_body && !no_content(st) && res->body_len);
    if (!with_body)
        st->flags |= ST_ENDED; /* a HEAD or 204 stream has nothing to write */
    int rv = nghttp2_submit_response(h->s, st->id, nva, n, with_body ? &prd : NULL);
    if (rv) {
        cel_log_debug("stream %d: cannot submit response: %s", st->id, nghttp2_strerror(rv));
        st->flags |= ST_RESET;
        return nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    }
    return 0;
}

static int respond(cel_h2 *h, stream *st, const cel_response *res)
{
    return submit(h, st, res, 0);
}

/* ---- the exchange, for handlers that answer later or in pieces ---- */

static void flush_soon(cel_h2 *h)
{
    if (h->want_flush)
        h->want_flush(h->flush_ctx);
}

static int x_respond(cel_exchange *x, const cel_response *res, const cel_body_owner *owner)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    cel_h2 *h = st->h;
    if (st->flags & ST_RESPONDED) {
        if (owner)
            owner->release(owner->arg);
        return CEL_EINVAL;
    }
    set_held(h, st, 0);
    if (owner) {
        ext_body *e = cel_pool_alloc(h->env->pool, sizeof(*e));
        if (!e) {
            owner->release(owner->arg);
            return CEL_ENOMEM;
        }
        *e = (ext_body){1, h->env->pool, *owner};
        st->ext = e;
    }
    int rc = respond(h, st, res);
    if (owner)
        st->out_kind = BODY_EXT;
    flush_soon(h);
    return rc ? CEL_EIO : 0;
}

static int x_start(cel_exchange *x, const cel_response *head)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    if (st->flags & ST_RESPONDED)
        return CEL_EINVAL;
    set_held(st->h, st, 0);
    int rc = submit(st->h, st, head, 1);
    flush_soon(st->h);
    return rc ? CEL_EIO : 0;
}

static void resume_if_deferred(stream *st)
{
    if (st->flags & ST_DEFERRED) {
        st->flags &= ~ST_DEFERRED;
        set_held(st->h, st, 0);
        nghttp2_session_resume_data(st->h->s, st->id);
    }
    flush_soon(st->h);
}

static int raw_write(cel_exchange *x, const void *p, size_t n)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    if ((st->flags & (ST_STREAMING | ST_ENDED)) != ST_STREAMING)
        return CEL_EINVAL;
    if (no_content(st) || n == 0)
        return 0;
    if (st->out_len + n > st->sbuf_cap) {
        size_t cap = st->sbuf_cap ? st->sbuf_cap : 16384;
        while (cap < st->out_len + n)
            cap *= 2;
        char *b = cel_pool_realloc(st->h->env->pool, st->sbuf, cap);
        if (!b)
            return CEL_ENOMEM;
        st->sbuf = b;
        st->sbuf_cap = cap;
    }
    memcpy(st->sbuf + st->out_len, p, n);
    st->out_len += n;
    resume_if_deferred(st);
    return st->out_len - st->out_sent > STREAM_HIGH ? CEL_EAGAIN : 0;
}

static int raw_end(cel_exchange *x)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    if (!(st->flags & ST_STREAMING) || (st->flags & ST_ENDED))
        return CEL_EINVAL;
    st->flags |= ST_ENDED;
    resume_if_deferred(st);
    return 0;
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
    const stream *st = (const stream *)((const char *)x - offsetof(stream, x));
    return st->out_len - st->out_sent;
}

static void x_fail(cel_exchange *x)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    if (st->flags & ST_RESET)
        return;
    set_held(st->h, st, 0);
    if (!(st->flags & ST_RESPONDED)) {
        cel_response res;
        cel_response_error(&res, 500);
        respond(st->h, st, &res);
    } else {
        st->flags |= ST_RESET;
        nghttp2_submit_rst_stream(st->h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    }
    flush_soon(st->h);
}

static const cel_exchange_ops exchange_ops = {
    .respond = x_respond,
    .start = x_start,
    .write = x_write,
    .end = x_end,
    .buffered = x_buffered,
    .fail = x_fail,
    .hold = cel_genref_hold_exchange,
};

/* Answers before the request is complete (413, 431); the rest of the request is
 * then read and dropped, and the stream reset once the answer is out. */
static int respond_early(cel_h2 *h, stream *st, int status)
{
    cel_response res;
    cel_response_error(&res, status);
    st->x.mw = st->gen->cfg->mw; /* before dispatch: the global middleware */
    if (!(st->flags & ST_DISCARD))
        h->discarding++;
    st->flags |= ST_DISCARD;
    cel_pool_release(h->env->pool, st->body);
    st->body = NULL;
    st->body_len = st->body_cap = 0;
    return respond(h, st, &res);
}

static void split_path(cel_request *req, cel_str raw)
{
    const char *q = memchr(raw.p, '?', raw.n);
    if (q) {
        req->path = (cel_str){raw.p, (size_t)(q - raw.p)};
        req->query = (cel_str){q + 1, raw.n - req->path.n - 1};
    } else {
        req->path = raw;
        req->query = (cel_str){raw.p + raw.n, 0};
    }
}

static inline __attribute__((always_inline)) int dispatch(cel_h2 *h, stream *st)
{
    if (st->flags & (ST_RESPONDED | ST_DISCARD))
        return 0;
    if (st->flags & ST_HDR_TOO_BIG)
        return respond_early(h, st, 431);
    cel_request *req = &st->req;
    req->headers = st->hdrs;
    req->nheaders = st->nhdrs;
    req->body = st->body;
    req->body_len = st->body_len;
    h->served = 1;
    cel_response res;
    if (cel_dispatch(st->gen->cfg, &st->x, &st->match, &res) == CEL_HANDLER_ASYNC) {
        if (!(st->flags & (ST_RESPONDED | ST_RESET)))
            set_held(h, st, 1);
        return 0;
    }
    return respond(h, st, &res);
}

/* ---- nghttp2 callbacks ---- */

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    cel_h2 *h = ud;
    (void)s, (void)flags;
    if (cel_outq_pending(h->out) >= h->limits.max_output_buffer)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (cel_outq_copy(h->out, data, len))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

/* RFC 9113 8.1.1: a malformed request is a stream error PROTOCOL_ERROR. The
 * stream is never served; what the client still sends on it is dropped. */
static void malformed(cel_h2 *h, stream *st)
{
    st->flags |= ST_MALFORMED;
    if (st->flags & ST_RESET)
        return;
    st->flags |= ST_RESET;
    nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    cel_h2 *h = ud;
    (void)s;
    h->cur = NULL; /* on_header's short path takes h->cur as the block's stream */
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    h->in_headers = frame->hd.stream_id;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* 8.1: a second header block is the trailers, and ends the stream */
        stream *st = h->cur = find_stream(h, frame->hd.stream_id);
        if (st) {
            st->hf.seen |= CEL_HF_TRAILERS;
            if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                st->flags |= ST_MALFORMED;
        }
        return 0;
    }
    stream *st = stream_new(h, frame->hd.stream_id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    h->progress++;
    h->cur = st;
    return 0;
}

static int add_header(cel_h2 *h, stream *st, cel_str name, cel_str value)
{
    if (st->nhdrs == st->cap_hdrs) {
        uint32_t cap = st->cap_hdrs * 2;
        cel_header *n = cel_pool_alloc(h->env->pool, cap * sizeof(*n));
        if (!n)
            return -1;
        memcpy(n, st->hdrs, st->nhdrs * sizeof(*n));
        if (st->hdrs != st->inline_hdrs)
            cel_pool_release(h->env->pool, st->hdrs);
        st->hdrs = n;
        st->cap_hdrs = cap;
    }
    st->hdrs[st->nhdrs++] = (cel_header){name, value};
    return 0;
}

/*
 * Most of a client's fields come again and again from its HPACK table (the
 * authority, user-agent, accept...): nghttp2 hands them out as the same
 * reference-counted buffers each time. The verdict of the octet checks on such
 * a pair is kept, with a reference on both buffers so that their addresses
 * stay theirs, and the next request's identical field costs a few comparisons
 * (cel_h2_field_again makes the checks that depend on the other fields).
 * KEPT_SETS sets of KEPT_WAYS entries, by the value's address, most recently
 * kept first; a connection gets the table at its first request (1.3 KiB).
 * Names and values up to KEPT_MAX octets, and KEPT_BYTES of them in all (as
 * much as a default HPACK table holds), bound what the references keep alive
 * after the client's table has let them go.
 */
#define KEPT_SETS 8
#define KEPT_WAYS 4
#define KEPT_MAX 255
#define KEPT_BYTES 4096

/* A field as on_header takes it: from a kept verdict, or checked now. */
typedef struct field_view {
    const uint8_t *name, *value;
    uint32_t namelen, valuelen;
} field_view;

/* What a kept field does to the request, when on_header's short path can do it
 * (see on_header): */
enum {
    KEPT_ACT_NONE,      /* the full path: priority, cookie, a name to copy... */
    KEPT_ACT_METHOD,    /* a method we have a static spelling of (method_bit, vp) */
    KEPT_ACT_SCHEME,    /* "http" or "https" */
    KEPT_ACT_AUTHORITY, /* the request's authority is the kept value */
    KEPT_ACT_FIELD,     /* a regular field with a static-table name and the kept value */
};

typedef struct kept_field {
    nghttp2_rcbuf *name, *value; /* references held */
    const uint8_t *np, *vp;
    uint8_t nlen, vlen;
    uint8_t name_static; /* the name is nghttp2's static table's: no copy needed */
    uint8_t act;         /* KEPT_ACT_* */
    int16_t kind;        /* what cel_h2_field said */
    uint16_t bits;       /* and what it added to the fields seen */
    uint16_t deny;       /* fields seen before that make this one malformed */
    uint16_t method_bit; /* KEPT_ACT_METHOD: its CEL_M_* */
    /* The newest stream that may point at the value (on_header's short path
     * does not copy it): the entry is not let go while that stream or an
     * older one lives. */
    int32_t pin;
} kept_field;

static inline kept_field *kept_set(kept_field *kept, const nghttp2_rcbuf *value)
{
    uint64_t a = (uint64_t)(uintptr_t)value * 0x9e3779b97f4a7c15ull;
    return kept + (a >> 61) * KEPT_WAYS; /* the top 3 bits: KEPT_SETS == 8 */
}

/* The octets an entry's references hold (a static-table name holds none). */
static inline size_t kept_cost(const kept_field *k)
{
    return (k->name_static ? 0 : k->nlen) + (size_t)k->vlen;
}

static void kept_free(cel_h2 *h)
{
    if (!h->kept)
        return;
    for (size_t i = 0; i < KEPT_SETS * KEPT_WAYS; i++)
        if (h->kept[i].value) {
            nghttp2_rcbuf_decref(h->kept[i].name);
            nghttp2_rcbuf_decref(h->kept[i].value);
        }
    cel_pool_release(h->env->pool, h->kept);
    h->kept = NULL;
}

/* Keeps the verdict on a field just checked, first in its set; the set's
 * last entry is let go. */
static void keep(cel_h2 *h, nghttp2_rcbuf *name, nghttp2_rcbuf *value, nghttp2_vec n, nghttp2_vec v,
                 int kind, uint32_t bits)
{
    if (n.len > KEPT_MAX || v.len > KEPT_MAX)
        return;
    if (!h->kept &&
        !(h->kept = cel_pool_calloc(h->env->pool, KEPT_SETS * KEPT_WAYS, sizeof(kept_field))))
        return;
    kept_field *k = kept_set(h->kept, value);
    int name_static = nghttp2_rcbuf_is_static(name);
    size_t cost = (name_static ? 0 : n.len) + v.len;
    kept_field *last = &k[KEPT_WAYS - 1];
    if (last->value && h->oldest && h->oldest->id <= last->pin)
        return; /* a live stream may still point at its value */
    size_t freed = last->value ? kept_cost(last) : 0;
    if (h->kept_bytes - freed + cost > KEPT_BYTES)
        return;
    if (last->value) {
        nghttp2_rcbuf_decref(last->name);
        nghttp2_rcbuf_decref(last->value);
    }
    memmove(k + 1, k, (KEPT_WAYS - 1) * sizeof(*k));
    nghttp2_rcbuf_incref(name);
    nghttp2_rcbuf_incref(value);
    unsigned act = KEPT_ACT_NONE, mbit = 0;
    if (kind == CEL_HF_METHOD) {
        mbit = cel_method_bit((const char *)v.base, v.len);
        if (cel_method_name(mbit))
            act = KEPT_ACT_METHOD;
    } else if (kind == CEL_HF_SCHEME) {
        if (v.len == 4 ? !memcmp(v.base, "http", 4) : v.len == 5 && !memcmp(v.base, "https", 5))
            act = KEPT_ACT_SCHEME;
    } else if (kind == CEL_HF_AUTHORITY) {
        act = KEPT_ACT_AUTHORITY;
    } else if (kind == 0 && name_static && !(n.len == 6 && !memcmp(n.base, "cookie", 6))) {
        act = KEPT_ACT_FIELD;
    }
    /* cel_h2_field_again's checks as one mask */
    uint32_t deny = (kind & CEL_HF_PSEUDO) ? CEL_HF_TRAILERS | CEL_HF_REGULAR | (uint32_t)kind
                                           : bits & CEL_HF_HOST;
    *k = (kept_field){.name = name,
                      .value = value,
                      .np = n.base,
                      /* never NULL; a method's is our static spelling of it */
                      .vp = act == KEPT_ACT_METHOD ? (const uint8_t *)cel_method_name(mbit)
                            : v.len                ? v.base
                                                   : (const uint8_t *)"",
                      .nlen = (uint8_t)n.len,
                      .vlen = (uint8_t)v.len,
                      .name_static = (uint8_t)name_static,
                      .act = (uint8_t)act,
                      .kind = (int16_t)kind,
                      .bits = (uint16_t)bits,
                      .deny = (uint16_t)deny,
                      .method_bit = (uint16_t)mbit,
                      .pin = 0};
    h->kept_bytes = (uint32_t)(h->kept_bytes - freed + cost);
}

/* The kept entry for this name and value, or NULL. */
static inline kept_field *kept_find(kept_field *kept, const nghttp2_rcbuf *name,
                                    const nghttp2_rcbuf *value)
{
    kept_field *k = kept_set(kept, value);
    for (int i = 0; i < KEPT_WAYS; i++)
        if (k[i].value == value && k[i].name == name)
            return &k[i];
    return NULL;
}

/* The octet checks (not inlined: they would crowd on_header's registers for
 * the few fields that need them). */
static __attribute__((noinline)) int check_field(cel_h2 *h, stream *st, nghttp2_rcbuf *name_rc,
                                                 nghttp2_rcbuf *value_rc, field_view *f)
{
    nghttp2_vec n = nghttp2_rcbuf_get_buf(name_rc), v = nghttp2_rcbuf_get_buf(value_rc);
    *f = (field_view){n.base, v.base, (uint32_t)n.len, (uint32_t)v.len};
    if (n.len > UINT32_MAX || v.len > UINT32_MAX) /* far beyond any header list limit */
        return -1;
    uint32_t before = st->hf.seen;
    int kind = cel_h2_field(&st->hf, n.base, n.len, v.base, v.len);
    /* :path seldom comes from the table, content-length's value is state */
    if (kind >= 0 && !(kind & (CEL_HF_PATH | CEL_HF_LENGTH)))
        keep(h, name_rc, value_rc, n, v, kind,
             (st->hf.seen & ~before) | (n.base[0] == ':' ? 0 : CEL_HF_REGULAR));
    return kind;
}

/* Every field the short path in on_header does not take. */
static __attribute__((noinline)) int on_header_full(cel_h2 *h, nghttp2_rcbuf *name_rc,
                                                    nghttp2_rcbuf *value_rc)
{
    stream *st = h->cur; /* on_begin_headers: the block's stream, or NULL */
    if (!st || (st->flags & ST_MALFORMED))
        return 0;
    const uint8_t *name, *value;
    size_t namelen, valuelen;
    int kind, name_static = 0;
    const kept_field *k;
    if (h->kept && (k = kept_find(h->kept, name_rc, value_rc))) {
        kind = cel_h2_field_again(&st->hf, k->kind, k->bits);
        name = k->np;
        value = k->vp;
        namelen = k->nlen;
        valuelen = k->vlen;
        name_static = k->name_static;
    } else {
        field_view f;
        kind = check_field(h, st, name_rc, value_rc, &f);
        if (kind == CEL_HF_PATH && nghttp2_rcbuf_is_static(name_rc))
            h->path_name = name_rc; /* on_header takes it from now on */
        name = f.name;
        value = f.value;
        namelen = f.namelen;
        valuelen = f.valuelen;
    }
    if (kind < 0) {
        st->flags |= ST_MALFORMED; /* reset once the block is in (on_frame_recv) */
        return 0;
    }
    if (CEL_UNLIKELY(st->flags & (ST_DISCARD | ST_HDR_TOO_BIG))) {
        if (st->flags & ST_DISCARD)
            return 0;
        /* Far past the limit (an HPACK bomb: one table entry referenced over
         * and over) even checking each field costs more than the bytes sent:
         * no client means well with that, end the connection. */
        st->hdr_bytes += namelen + valuelen + 32;
        if (st->hdr_bytes > (uint64_t)h->limits.max_header_list_size * 4) {
            cel_log_debug("h2: header list bomb, ending the connection");
            nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        return 0;
    }
    /* RFC 9113 6.5.2: each field counts its name, value and 32 bytes. */
    st->hdr_bytes += namelen + valuelen + 32;
    if (st->hdr_bytes > h->limits.max_header_list_size) {
        st->flags |= ST_HDR_TOO_BIG;
        return 0;
    }
    /* The method and scheme usually have a static spelling to point at;
     * everything else is copied (nghttp2's buffers are gone after this call). */
    if (kind == CEL_HF_METHOD) {
        st->req.method_bit = cel_method_bit((const char *)value, valuelen);
        const char *known = cel_method_name(st->req.method_bit);
        st->req.method.p = known ? known : cel_arena_dup(&st->arena, value, valuelen);
        st->req.method.n = valuelen;
        return st->req.method.p ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (kind == CEL_HF_SCHEME &&
        (valuelen == 4 ? !memcmp(value, "http", 4) : valuelen == 5 && !memcmp(value, "https", 5))) {
        st->req.scheme = (cel_str){"https", valuelen}; /* "http" is its prefix */
        return 0;
    }
    char *v = cel_arena_dup(&st->arena, value, valuelen);
    if (!v)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    cel_str val = {v, valuelen};
    switch (kind) {
    case CEL_HF_PATH:
        split_path(&st->req, val);
        return 0;
    case CEL_HF_AUTHORITY:
        st->req.authority = val;
        return 0;
    case CEL_HF_SCHEME:
        st->req.scheme = val;
        return 0;
    }
    if (kind == CEL_HF_PRIORITY) {
        /* RFC 9218: applied once the header block is in (on_frame_recv) */
        uint8_t u = st->prio ? (st->prio >> 1 & 7) : NGHTTP2_EXTPRI_DEFAULT_URGENCY;
        uint8_t inc = st->prio & 1;
        if (cel_h2_priority(value, valuelen, &u, &inc) == 0)
            st->prio = (uint8_t)(PRIO_SET | u << 1 | inc);
    }
    if (namelen == 6 && !memcmp(name, "cookie", 6)) {
        /* RFC 9113 8.2.3: cookie crumbs reach the application as one field. */
        for (uint32_t i = 0; i < st->nhdrs; i++) {
            cel_header *c = &st->hdrs[i];
            if (c->name.n == 6 && !memcmp(c->name.p, "cookie", 6)) {
                char *j = cel_arena_alloc(&st->arena, c->value.n + 2 + valuelen);
                if (!j)
                    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                memcpy(j, c->value.p, c->value.n);
                memcpy(j + c->value.n, "; ", 2);
                memcpy(j + c->value.n + 2, value, valuelen);
                c->value = (cel_str){j, c->value.n + 2 + valuelen};
                return 0;
            }
        }
    }
    /* nghttp2's static table outlives every stream */
    const char *nm = name_static ? (const char *)name : cel_arena_dup(&st->arena, name, namelen);
    if (!nm || add_header(h, st, (cel_str){nm, namelen}, val))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

/* on_header's :path (a tail call there: its calls would make on_header save
 * registers for every field). */
static __attribute__((noinline)) int on_path(cel_h2 *h, nghttp2_rcbuf *name_rc,
                                             nghttp2_rcbuf *value_rc)
{
    stream *st = h->cur;
    nghttp2_vec v = nghttp2_rcbuf_get_buf(value_rc);
    uint64_t bytes = st->hdr_bytes + v.len + 5 + 32; /* RFC 9113 6.5.2 */
    if (CEL_UNLIKELY(bytes > h->limits.max_header_list_size || st->arena.left <= v.len))
        return on_header_full(h, name_rc, value_rc);
    char *p = st->arena.cur;
    size_t q;
    if (cel_h2_path_copy(&st->hf, p, v.base, v.len, &q) < 0) {
        st->flags |= ST_MALFORMED; /* reset once the block is in (on_frame_recv) */
        return 0;
    }
    st->hdr_bytes = bytes;
    st->arena.cur += v.len;
    st->arena.left -= v.len;
    st->req.path = (cel_str){p, q};
    st->req.query = q < v.len ? (cel_str){p + q + 1, v.len - q - 1} : (cel_str){p + v.len, 0};
    return 0;
}

/*
 * The short path for the fields of almost every request. Everything a case
 * needs is checked before anything is changed, so what it cannot do goes to
 * on_header_full untouched; no call but those tail calls, so nothing to save
 * on the way in.
 *  - A field from the client's HPACK table whose verdict is kept and whose
 *    effect is a common one (KEPT_ACT_*): the method, scheme, authority, and
 *    fields such as user-agent and accept with a static-table name.
 *  - :path, which clients send as a literal every time (nghttp2 never indexes
 *    it), by the name's static-table buffer (h->path_name).
 */
static int on_header(nghttp2_session *s, const nghttp2_frame *frame, nghttp2_rcbuf *name_rc,
                     nghttp2_rcbuf *value_rc, uint8_t flags, void *ud)
{
    cel_h2 *h = ud;
    (void)s, (void)frame, (void)flags;
    stream *st = h->cur;
    if (CEL_UNLIKELY(!st || (st->flags & (ST_MALFORMED | ST_DISCARD | ST_HDR_TOO_BIG))))
        return on_header_full(h, name_rc, value_rc);
    if (name_rc == h->path_name)
        return on_path(h, name_rc, value_rc);
    kept_field *k;
    if (CEL_UNLIKELY(!h->kept || !(k = kept_find(h->kept, name_rc, value_rc)) ||
                     k->act == KEPT_ACT_NONE))
        return on_header_full(h, name_rc, value_rc);
    size_t vlen = k->vlen;
    uint64_t bytes = st->hdr_bytes + k->nlen + vlen + 32; /* RFC 9113 6.5.2 */
    if (CEL_UNLIKELY(bytes > h->limits.max_header_list_size))
        return on_header_full(h, name_rc, value_rc);
    if (CEL_UNLIKELY(st->hf.seen & k->deny)) {
        st->flags |= ST_MALFORMED;
        return 0;
    }
    switch (k->act) {
    case KEPT_ACT_METHOD:
        st->req.method_bit = k->method_bit;
        st->req.method = (cel_str){(const char *)k->vp, vlen};
        break;
    case KEPT_ACT_SCHEME:
        st->req.scheme = (cel_str){"https", vlen}; /* "http" is its prefix */
        break;
    case KEPT_ACT_AUTHORITY:
        /* the kept buffer, pinned, rather than a copy (see kept_field.pin) */
        st->req.authority = (cel_str){(const char *)k->vp, vlen};
        k->pin = h->last_stream;
        break;
    default: /* KEPT_ACT_FIELD */
        if (CEL_UNLIKELY(st->nhdrs == st->cap_hdrs))
            return on_header_full(h, name_rc, value_rc);
        st->hdrs[st->nhdrs++] =
            (cel_header){{(const char *)k->np, k->nlen}, {(const char *)k->vp, vlen}};
        k->pin = h->last_stream;
        break;
    }
    st->hf.seen |= k->bits;
    st->hdr_bytes = bytes;
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    cel_h2 *h = ud;
    (void)flags, (void)s;
    stream *st = find_stream(h, id);
    if (!st || (st->flags & ST_MALFORMED))
        return 0;
    if (cel_h2_fields_data(&st->hf, len)) {
        malformed(h, st); /* 8.1.1: more DATA than content-length */
        return 0;
    }
    if (st->flags & ST_DISCARD) {
        st->discarded += len;
        maybe_reset(h, st);
        return 0;
    }
    h->progress++;
    if (st->flags & (ST_RESPONDED | ST_HDR_TOO_BIG))
        return 0;
    if (st->body_len + len > h->limits.max_request_body)
        return respond_early(h, st, 413) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
    if (st->body_len + len > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap : 4096;
        while (cap < st->body_len + len)
            cap *= 2;
        if (cap > h->limits.max_request_body)
            cap = h->limits.max_request_body;
        char *b = cel_pool_realloc(h->env->pool, st->body, cap);
        if (!b)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->body = b;
        st->body_cap = cap;
    }
    memcpy(st->body + st->body_len, data, len);
    st->body_len += len;
    return 0;
}

static void maybe_reset(cel_h2 *h, stream *st)
{
    size_t budget = h->limits.max_request_body * DISCARD_FACTOR;
    if (budget < DISCARD_MIN)
        budget = DISCARD_MIN;
    if ((st->flags & (ST_SENT | ST_RESET)) != ST_SENT || st->discarded <= budget)
        return;
    /* RFC 9113 8.1: a server that answered before the request ended may reset
     * the stream with NO_ERROR so the client stops sending. */
    st->flags |= ST_RESET;
    nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
}

/* Checks a request whose headers are complete but whose body is still coming. */
static int headers_done(cel_h2 *h, stream *st)
{
    if (st->flags & ST_HDR_TOO_BIG)
        return respond_early(h, st, 431);
    if (st->hf.content_length > 0 && (uint64_t)st->hf.content_length > h->limits.max_request_body)
        return respond_early(h, st, 413);
    return 0;
}

/* A client acknowledges DATA with WINDOW_UPDATEs, at most one per frame on the
 * stream and one on the connection; past that (and a little slack) they only
 * cost us work. */
#define WU_SLACK 100

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    cel_h2 *h = ud;
    if (frame->hd.type == NGHTTP2_WINDOW_UPDATE && ++h->wu_recv > 2 * h->data_sent + WU_SLACK &&
        spend(h, &h->glitches, "WINDOW_UPDATE"))
        return 0;
    stream *st;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        h->in_headers = 0;
        st = h->cur;
        h->cur = NULL;
        if (!st || st->id != frame->hd.stream_id)
            st = find_stream(h, frame->hd.stream_id);
        if (st && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            if (cel_h2_fields_request_end(&st->hf))
                st->flags |= ST_MALFORMED;
            else if (st->prio) {
                nghttp2_extpri pri = {st->prio >> 1 & 7, st->prio & 1};
                nghttp2_session_change_extpri_stream_priority(s, st->id, &pri, 0);
            }
        }
    } else if (frame->hd.type == NGHTTP2_DATA) {
        st = find_stream(h, frame->hd.stream_id);
    } else {
        if (frame->hd.type == NGHTTP2_RST_STREAM && (st = find_stream(h, frame->hd.stream_id)))
            st->flags |= ST_PEER_DONE;
        return 0;
    }
    if (!st)
        return 0;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (end)
        st->flags |= ST_PEER_DONE;
    if ((st->flags & ST_MALFORMED) || (end && cel_h2_fields_body_end(&st->hf))) {
        malformed(h, st);
        return 0;
    }
    int rv = 0;
    if (end)
        rv = dispatch(h, st);
    else if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        rv = headers_done(h, st);
    return rv ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

/* Checks nghttp2 leaves to the application (or makes more lenient than RFC
 * 9113 asks): they run on every frame header before its payload. */
/* Frames that cost us work and give none: PRIORITY, empty DATA that does not
 * end the stream, unknown types, and PING and SETTINGS (their ACK queue is
 * bounded by nghttp2, their rate only here). nghttp2 1.52 has no limiter for
 * these of its own. */
static int is_glitch(uint8_t type, uint8_t flags, uint32_t len)
{
    switch (type) {
    case NGHTTP2_DATA:
        return len == 0 && !(flags & NGHTTP2_FLAG_END_STREAM);
    case NGHTTP2_PRIORITY:
        return 1;
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
        return !(flags & NGHTTP2_FLAG_ACK);
    default:
        return type > NGHTTP2_CONTINUATION;
    }
}

/* Ends the connection with ENHANCE_YOUR_CALM when bucket B runs dry. */
static int spend(cel_h2 *h, bucket *b, const char *what)
{
    if (bucket_take(b, h->env->date_sec) == 0)
        return 0;
    cel_log_debug("h2: %s flood, ending the connection", what);
    nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
    return -1;
}

/* Whether the client had ended (or reset) stream ID, closed now: remembered
 * for the last 64 client streams, which is the "limited period" 5.1 allows. */
static int ended_stream(const cel_h2 *h, int32_t id)
{
    if (id > h->ended_top)
        return 0;
    uint32_t i = (uint32_t)(h->ended_top - id) / 2;
    return i < 64 && (h->ended_bits >> i & 1);
}

static void note_ended(cel_h2 *h, int32_t id)
{
    if (id > h->ended_top) {
        uint32_t shift = (uint32_t)(id - h->ended_top) / 2;
        h->ended_bits = shift >= 64 ? 0 : h->ended_bits << shift;
        h->ended_top = id;
    }
    uint32_t i = (uint32_t)(h->ended_top - id) / 2;
    if (i < 64)
        h->ended_bits |= 1ull << i;
}

/* The checks of a frame header that nghttp2 leaves to us, made by cel_h2_recv
 * once nghttp2 has read everything before the frame (the fast path there
 * passes over frames that need none). */
static void frame_begins(cel_h2 *h, uint8_t type, uint8_t flags, uint32_t len, int32_t id)
{
    nghttp2_session *s = h->s;
    if (is_glitch(type, flags, len) && spend(h, &h->glitches, "frame"))
        return;
    /* Our own reset limit, so the answer is ENHANCE_YOUR_CALM (nghttp2's own,
     * kept as a backstop, answers INTERNAL_ERROR). */
    if (type == NGHTTP2_RST_STREAM && spend(h, &h->resets, "RST_STREAM"))
        return;
    /* 4.2: a frame larger than our SETTINGS_MAX_FRAME_SIZE; nghttp2 1.52 lets an
     * oversized CONTINUATION through. */
    if (len > OUR_MAX_FRAME_SIZE) {
        nghttp2_session_terminate_session(s, NGHTTP2_FRAME_SIZE_ERROR);
        return;
    }
    /* 6.3: PRIORITY belongs to a stream (nghttp2 skips it unread) */
    if (type == NGHTTP2_PRIORITY && id == 0) {
        nghttp2_session_terminate_session(s, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    if (type == NGHTTP2_DATA && id) {
        stream *st = find_stream(h, id);
        int32_t window = nghttp2_session_get_stream_local_window_size(s, id);
        if (st && window >= 0 && len > (uint32_t)window)
            st->flags |= ST_DATA_OVERFLOW;
        /* 5.1: the client had ended or reset the stream, now closed (ours
         * are freed as nghttp2 closes them), and nghttp2, which keeps no
         * closed streams, would drop this in silence */
        if (!st && (id & 1) && id <= h->last_stream && ended_stream(h, id)) {
            cel_log_debug("h2: DATA on closed stream %d", id);
            nghttp2_session_terminate_session(s, NGHTTP2_STREAM_CLOSED);
        }
    }
    if (type == NGHTTP2_HEADERS && (id & 1)) {
        /* 5.1.1: a new stream's id must exceed every id the client used before;
         * nghttp2 drops such a HEADERS silently when the stream is gone. */
        if (id <= h->last_stream && !nghttp2_session_find_stream(s, id)) {
            nghttp2_session_terminate_session(s, NGHTTP2_PROTOCOL_ERROR);
            return;
        }
        if (id > h->last_stream)
            h->last_stream = id;
    }
}

static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *frame, int lib_error, void *ud)
{
    cel_h2 *h = ud;
    (void)s, (void)lib_error;
    if (frame->hd.type == NGHTTP2_WINDOW_UPDATE && frame->hd.stream_id) {
        stream *st = find_stream(h, frame->hd.stream_id);
        if (st)
            st->flags |= ST_WU_OVERFLOW;
    }
    return 0;
}

static int before_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    cel_h2 *h = ud;
    if (frame->hd.type != NGHTTP2_RST_STREAM ||
        frame->rst_stream.error_code != NGHTTP2_FLOW_CONTROL_ERROR)
        return 0;
    /* nghttp2 answers a SETTINGS_INITIAL_WINDOW_SIZE that overflows a stream's
     * window with a stream error; 6.9.2 makes that a connection error. The
     * stream's own WINDOW_UPDATE or DATA overflow stays a stream error. */
    stream *st = find_stream(h, frame->hd.stream_id);
    if (st && (st->flags & (ST_WU_OVERFLOW | ST_DATA_OVERFLOW)))
        return 0;
    nghttp2_session_terminate_session(s, NGHTTP2_FLOW_CONTROL_ERROR);
    return NGHTTP2_ERR_CANCEL;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    cel_h2 *h = ud;
    (void)s;
    /* A client that makes us reset streams (malformed requests, CVE-2025-8671)
     * spends the same budget as one that resets them itself. */
    if (frame->hd.type == NGHTTP2_RST_STREAM && frame->rst_stream.error_code != NGHTTP2_NO_ERROR &&
        spend(h, &h->resets, "provoked RST_STREAM"))
        return 0;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    /* A last DATA frame: send_data has marked its stream sent already; only
     * a stream answered early has more to do. */
    if (frame->hd.type == NGHTTP2_DATA && !h->discarding)
        return 0;
    stream *st = find_stream(h, frame->hd.stream_id);
    if (!st)
        return 0;
    st->flags |= ST_SENT;
    if (st->flags & ST_DISCARD)
        maybe_reset(ud, st);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    cel_h2 *h = ud;
    (void)code, (void)s;
    if (h->in_headers == id)
        h->in_headers = 0;
    stream *st = find_stream(h, id);
    if (h->cur == st)
        h->cur = NULL;
    if (st) {
        if (st->flags & ST_PEER_DONE)
            note_ended(h, id);
        stream_free(h, st);
    }
    return 0;
}

/* ---- the session ---- */

static int init_callbacks(void)
{
    if (callbacks)
        return 0;
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb))
        return CEL_ENOMEM;
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_send_data_callback(cb, send_data);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback2(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_before_frame_send_callback(cb, before_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    callbacks = cb;
    return 0;
}

int cel_h2_global_init(void)
{
    return init_callbacks();
}

cel_h2 *cel_h2_new(cel_env *env, cel_outq *out, void (*want_flush)(void *ctx), void *ctx,
                   const cel_conn_view *conn)
{
    cel_h2 *h = cel_pool_alloc(env->pool, sizeof(*h));
    if (!h)
        return NULL;
    memset(h, 0, sizeof(*h));
    h->env = env;
    h->out = out;
    h->want_flush = want_flush;
    h->flush_ctx = ctx;
    h->conn = conn;
    h->peer = conn && conn->peer ? conn->peer : "-";
    h->limits = env->gen->cfg->limits;
    h->scan_skip = sizeof(NGHTTP2_CLIENT_MAGIC) - 1; /* the preface comes first */
    h->scan_pri = -1;
    bucket_init(&h->glitches, h->limits.glitch_burst, h->limits.glitch_rate, env->date_sec);
    bucket_init(&h->resets, h->limits.reset_burst, h->limits.reset_rate, env->date_sec);
    nghttp2_mem mem;
    cel_h2_pool_mem(&mem, env->pool);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt)) {
        cel_pool_release(env->pool, h);
        return NULL;
    }
    /* Our own value is what we advertise and enforce in on_header. */
    nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
    /* h2_fields.c checks requests (RFC 9113 section 8) while on_header reads
     * them, for a fraction of what nghttp2's own pass costs. */
    nghttp2_option_set_no_http_messaging(opt, 1);
    /* RFC 9218 7.1: the client may change a stream's urgency */
    nghttp2_option_set_builtin_recv_extension_type(opt, NGHTTP2_PRIORITY_UPDATE);
#if defined(HAVE_NGHTTP2_OPTION_SET_MAX_SETTINGS)
    nghttp2_option_set_max_settings(opt, h->limits.max_settings_entries);
#endif
#if defined(HAVE_NGHTTP2_OPTION_SET_STREAM_RESET_RATE_LIMIT)
    nghttp2_option_set_stream_reset_rate_limit(opt, h->limits.reset_burst * 2,
                                               h->limits.reset_rate * 2);
#endif
#if defined(HAVE_NGHTTP2_OPTION_SET_MAX_CONTINUATIONS)
    nghttp2_option_set_max_continuations(opt, h->limits.max_continuations);
#endif
#if defined(HAVE_NGHTTP2_OPTION_SET_MAX_OUTBOUND_ACK)
    nghttp2_option_set_max_outbound_ack(opt, h->limits.max_outbound_ack);
#endif
#if defined(HAVE_NGHTTP2_OPTION_SET_GLITCH_RATE_LIMIT)
    /* nghttp2's own count (1.62+) of frames and errors that do no work: a
     * backstop behind our glitch bucket, twice as loose so ours speaks first. */
    nghttp2_option_set_glitch_rate_limit(opt, h->limits.glitch_burst * 2ull,
                                         h->limits.glitch_rate * 2ull);
#endif
    int rv = nghttp2_session_server_new3(&h->s, callbacks, h, opt, &mem);
    nghttp2_option_del(opt);
    if (rv) {
        cel_pool_release(env->pool, h);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->limits.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, h->limits.initial_window_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, h->limits.max_header_list_size},
        /* RFC 9113 5.3.2: RFC 7540's priority tree is deprecated; without it
         * nghttp2 keeps no closed streams and schedules by RFC 9218 urgency
         * (PRIORITY_UPDATE frames, the priority field). */
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, CEL_ARRAY_LEN(iv))) {
        cel_h2_free(h);
        return NULL;
    }
    return h;
}

/* Copies N bytes into the stream's arena as a slice. */
static int arena_str(stream *st, cel_str in, cel_str *out)
{
    char *p = cel_arena_dup(&st->arena, in.p, in.n);
    if (!p)
        return -1;
    *out = (cel_str){p, in.n};
    return 0;
}

/* Headers that describe the HTTP/1.1 hop and have no place on HTTP/2. */
static int hop_header(cel_str n)
{
    /* te: HTTP/2 allows only "trailers"; host: :authority carries it */
    static const char *const names[] = {"http2-settings", "te", "host"};
    if (cel_http_conn_specific(n.p, n.n))
        return 1;
    for (size_t i = 0; i < CEL_ARRAY_LEN(names); i++)
        if (n.n == strlen(names[i]) && memcmp(n.p, names[i], n.n) == 0)
            return 1;
    return 0;
}

cel_h2 *cel_h2_new_upgraded(cel_env *env, cel_outq *out, void (*want_flush)(void *ctx), void *ctx,
                            const cel_conn_view *conn, const uint8_t *settings, size_t slen,
                            const cel_request *rq)
{
    cel_h2 *h = cel_h2_new(env, out, want_flush, ctx, conn);
    if (!h)
        return NULL;
    if (nghttp2_session_upgrade2(h->s, settings, slen, rq->method_bit == CEL_M_HEAD, NULL)) {
        cel_h2_free(h);
        return NULL;
    }
    stream *st = stream_new(h, 1);
    if (!st) {
        cel_h2_free(h);
        return NULL;
    }
    h->last_stream = 1;
    st->flags |= ST_PEER_DONE; /* the HTTP/1.1 request was whole */
    cel_request *q = &st->req;
    q->method_bit = rq->method_bit;
    int bad = arena_str(st, rq->method, &q->method) || arena_str(st, rq->authority, &q->authority);
    q->scheme = CEL_STR_LIT("http");
    /* path and query stay one block, as :path would have been */
    char *t = cel_arena_alloc(&st->arena, rq->path.n + rq->query.n + 1);
    if (t) {
        memcpy(t, rq->path.p, rq->path.n);
        memcpy(t + rq->path.n, rq->query.p, rq->query.n);
        q->path = (cel_str){t, rq->path.n};
        q->query = (cel_str){t + rq->path.n, rq->query.n};
    }
    for (size_t i = 0; !bad && t && i < rq->nheaders; i++) {
        cel_str n, v;
        if (hop_header(rq->headers[i].name))
            continue;
        bad = arena_str(st, rq->headers[i].name, &n) || arena_str(st, rq->headers[i].value, &v) ||
              add_header(h, st, n, v);
    }
    if (bad || !t || dispatch(h, st)) {
        cel_h2_free(h);
        return NULL;
    }
    return h;
}

void cel_h2_free(cel_h2 *h)
{
    /* nghttp2_session_del does not report the streams it drops. */
    while (h->streams)
        stream_free(h, h->streams);
    kept_free(h);
    cel_pool_release(h->env->pool, h->slots);
    nghttp2_session_del(h->s);
    cel_pool_release(h->env->pool, h);
}

static int feed(cel_h2 *h, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    ssize_t rv = nghttp2_session_mem_recv(h->s, p, n);
    if (rv < 0) {
        cel_log_debug("h2: closing connection: %s", nghttp2_strerror((int)rv));
        /* nghttp2 stops without a GOAWAY on its flood limits; say why we close. */
        uint32_t code = rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
                            ? NGHTTP2_ENHANCE_YOUR_CALM
                        : rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC ? NGHTTP2_PROTOCOL_ERROR
                                                             : NGHTTP2_INTERNAL_ERROR;
        nghttp2_session_terminate_session(h->s, code);
        return CEL_EIO;
    }
    return 0;
}

static inline uint32_t be32(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return __builtin_bswap32(w);
}

/* A frame header's length (its first 3 octets) */
static inline uint32_t be24(const uint8_t *p)
{
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static inline int32_t stream_id31(const uint8_t *p)
{
    return (int32_t)(be32(p) & 0x7fffffffu);
}

/* Every frame header the client sends is looked at here, beside nghttp2, for
 * the checks nghttp2 leaves to us (frame_begins), and for two rules it stops
 * enforcing once RFC 7540 priorities are off (SETTINGS_NO_RFC7540_PRIORITIES):
 * it keeps no closed streams, so DATA on a stream the client had closed would
 * pass in silence (5.1, STREAM_CLOSED), and it reads PRIORITY frames without
 * a look (6.3: not on stream 0; RFC 7540 5.3.1, kept by RFC 9113 5.3.2: not
 * on itself). Input goes to nghttp2 in one piece, except that before a frame
 * that needs a look, everything up to its header goes first: the check then
 * sees the state that frame meets. The common frames (a new stream's HEADERS,
 * WINDOW_UPDATE, CONTINUATION, acknowledgements) cost a few instructions. */
int cel_h2_recv(cel_h2 *h, const uint8_t *p, size_t n)
{
    const uint8_t *q = p, *end = p + n, *fed = p;
    for (;;) {
        size_t left = (size_t)(end - q);
        if (h->scan_skip >= left) {
            h->scan_skip -= (uint32_t)left;
            break;
        }
        q += h->scan_skip;
        left -= h->scan_skip;
        h->scan_skip = 0;
        if (h->scan_have == 0 && h->scan_pri < 0) {
            while (left >= 9) {
                uint32_t w = be32(q); /* length, type */
                uint32_t len = w >> 8;
                uint8_t t = (uint8_t)w;
                if (len > OUR_MAX_FRAME_SIZE)
                    break;
                if (t == NGHTTP2_HEADERS) {
                    int32_t id = stream_id31(q + 5);
                    if (!(id & 1) || id <= h->last_stream)
                        break;
                    h->last_stream = id;
                } else if (t != NGHTTP2_WINDOW_UPDATE && t != NGHTTP2_CONTINUATION &&
                           !((t == NGHTTP2_SETTINGS || t == NGHTTP2_PING) &&
                             (q[4] & NGHTTP2_FLAG_ACK))) {
                    break;
                }
                if (len >= left - 9) {
                    h->scan_skip = (uint32_t)(len - (left - 9));
                    q = end;
                    left = 0;
                    break;
                }
                q += 9 + len;
                left -= 9 + len;
            }
            if (left == 0)
                break;
        }
        /* One frame header (or PRIORITY payload), perhaps cut by the read:
         * what of it this read holds begins at START. */
        size_t want = h->scan_pri >= 0 ? 5 : 9;
        const uint8_t *f, *start = q;
        if (h->scan_have == 0 && left >= want) {
            f = q;
            q += want;
        } else {
            size_t k = want - h->scan_have < left ? want - h->scan_have : left;
            memcpy(h->scan_buf + h->scan_have, q, k);
            h->scan_have = (uint8_t)(h->scan_have + k);
            q += k;
            if (h->scan_have < want)
                break;
            f = h->scan_buf;
            h->scan_have = 0;
        }
        if (h->scan_pri >= 0) { /* a PRIORITY payload: E, dependency, weight */
            int32_t id = h->scan_pri;
            h->scan_pri = -1;
            if (stream_id31(f) != id)
                continue;
            /* A stream error; a connection error where RST_STREAM may not go
             * (an idle stream) or needs not (a closed one). */
            cel_log_debug("h2: stream %d depends on itself", id);
            if (nghttp2_session_find_stream(h->s, id))
                nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
            else
                nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
            continue;
        }
        uint32_t len = be24(f);
        uint8_t type = f[3], flags = f[4];
        int32_t id = stream_id31(f + 5);
        h->scan_skip = len;
        if (type == NGHTTP2_PRIORITY && len == 5 && id != 0) {
            h->scan_pri = id; /* its payload next, for the dependency */
            h->scan_skip = 0;
        }
        /* nghttp2 is to reach this frame in the state the checks look at: all
         * before its header, none of the header (a frame without payload is
         * whole with it, an empty DATA ending the stream among them) */
        if (feed(h, fed, (size_t)(start - fed)))
            return CEL_EIO;
        fed = start;
        frame_begins(h, type, flags, len, id);
    }
    return feed(h, fed, (size_t)(end - fed));
}

int cel_h2_send(cel_h2 *h)
{
    int rv = nghttp2_session_send(h->s);
    if (rv) {
        cel_log_debug("h2: send failed: %s", nghttp2_strerror(rv));
        return CEL_EIO;
    }
    /* Producers that were waiting for room: outside nghttp2's callbacks, so
     * they may write (which resumes the stream for the next send). */
    while (h->writable) {
        stream *st = h->writable;
        h->writable = st->wnext;
        st->wnext = NULL;
        st->flags &= ~ST_WQ;
        void (*fn)(cel_exchange *) = st->x.on_writable;
        st->x.on_writable = NULL;
        if (fn)
            fn(&st->x);
    }
    return 0;
}

int cel_h2_want_write(const cel_h2 *h)
{
    return nghttp2_session_want_write(h->s);
}

int cel_h2_want_read(const cel_h2 *h)
{
    return nghttp2_session_want_read(h->s);
}

size_t cel_h2_streams(const cel_h2 *h)
{
    return h->nstreams;
}

int cel_h2_served(const cel_h2 *h)
{
    return h->served;
}

int cel_h2_in_headers(const cel_h2 *h)
{
    return h->in_headers != 0;
}

uint64_t cel_h2_progress(const cel_h2 *h)
{
    return h->progress;
}

size_t cel_h2_held(const cel_h2 *h)
{
    return h->held;
}

void cel_h2_expire(cel_h2 *h)
{
    for (stream *st = h->streams; st; st = st->next) {
        if (st->flags & ST_RESET)
            continue;
        st->flags |= ST_RESET;
        set_held(h, st, 0);
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    }
    /* Final, even after a graceful one: nothing more will be processed. */
    h->goaway = 1;
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
}

void cel_h2_goaway(cel_h2 *h)
{
    if (h->goaway)
        return;
    h->goaway = 1;
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
}

/* ---- as a connection's protocol ---- */

static int p_recv(void *s, const uint8_t *p, size_t n)
{
    return cel_h2_recv(s, p, n);
}

static int p_send(void *s)
{
    return cel_h2_send(s);
}

static int p_want_read(const void *s)
{
    return cel_h2_want_read(s);
}

static int p_want_write(const void *s)
{
    return cel_h2_want_write(s);
}

static size_t p_streams(const void *s)
{
    return cel_h2_streams(s);
}

static int p_served(const void *s)
{
    return cel_h2_served(s);
}

static int p_in_headers(const void *s)
{
    return cel_h2_in_headers(s);
}

static void p_goaway(void *s)
{
    cel_h2_goaway(s);
}

static uint64_t p_progress(const void *s)
{
    return cel_h2_progress(s);
}

static size_t p_held(const void *s)
{
    return cel_h2_held(s);
}

static void p_expire(void *s)
{
    cel_h2_expire(s);
}

static void p_free(void *s)
{
    cel_h2_free(s);
}

const cel_proto cel_h2_proto = {
    .name = "h2",
    .recv = p_recv,
    .send = p_send,
    .want_read = p_want_read,
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
