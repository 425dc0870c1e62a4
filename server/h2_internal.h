/*
 * What the files of the HTTP/2 front end (h2*.c) share: the session and stream
 * structs, the stream table, and the functions one file calls in another.
 * Private to them: nothing outside server/h2*.c includes this. The files, one
 * concern each: h2.c the session and its life, h2_stream.c the streams' life,
 * h2_intake.c requests as nghttp2 hands them over, h2_response.c responses and
 * the exchange, h2_police.c the checks and flood limits beside nghttp2 (with
 * h2_ratelim.c's buckets), h2_upgrade.c the h2c upgrade.
 */
#ifndef CEL_H2_INTERNAL_H
#define CEL_H2_INTERNAL_H

#include <nghttp2/nghttp2.h>

#include "arena.h"
#include "dispatch.h"
#include "h2.h"
#include "h2_fields.h"
#include "h2_ratelim.h"

#define INLINE_HEADERS 16
#define INLINE_ARENA 1024

enum {
    ST_RESPONDED = 1u << 0,      /* a response has been submitted */
    ST_DISCARD = 1u << 1,        /* answered early (413, 431): drop what the client still sends */
    ST_HDR_TOO_BIG = 1u << 2,    /* header list over the limit: answer 431 */
    ST_SENT = 1u << 3,           /* the whole response has been handed to the output queue */
    ST_RESET = 1u << 4,          /* we reset the stream */
    ST_COOKIE = 1u << 5,         /* a cookie field is among the request's (8.2.3: join crumbs) */
    ST_STREAMING = 1u << 6,      /* the body comes through write/end */
    ST_ENDED = 1u << 7,          /* streaming: end was called */
    ST_DEFERRED = 1u << 8,       /* streaming: nghttp2 waits for data (resume on write) */
    ST_WQ = 1u << 9,             /* on the connection's list of on_writable calls */
    ST_WU_OVERFLOW = 1u << 10,   /* a WINDOW_UPDATE overflowed this stream's window */
    ST_DATA_OVERFLOW = 1u << 11, /* the client sent more DATA than the stream's window */
    ST_MALFORMED = 1u << 12,     /* RFC 9113 8.1.1: reset with PROTOCOL_ERROR, never served */
    ST_PEER_DONE = 1u << 13, /* the client ended or reset the stream: more from it is an error */
    ST_HELD = 1u << 14,      /* waits on the server alone (counted in held) */
    ST_FAILING = 1u << 15,   /* failed mid-answer: reset once its HEADERS are out */
    /* reset for a failure of ours (handler, submit, short file, expiry): not
     * charged to the client's reset budget */
    ST_OURS = 1u << 16,
};

#define PRIO_SET 0x80

/* stream.bflags: a request body taken as a stream (h2_body.c). */
enum {
    CEL_H2B_STREAM = 1u << 0, /* the handler runs while the body comes (x.body_streamed) */
    CEL_H2B_END = 1u << 1,    /* the client ended the body */
    CEL_H2B_TAKEN = 1u << 2,  /* the handler took it all, end included: nothing more to offer */
    CEL_H2B_HELD = 1u << 3,   /* the handler took less than offered: until body_resume */
    CEL_H2B_RESUME = 1u << 4, /* body_resume was called: offer again before the next send */
};

/* Where a fixed response body lives, which decides how it is queued. */
enum { BODY_ARENA, BODY_GEN, BODY_EXT };

/* A body referenced from outside (a module's): released once neither the
 * stream nor the output queue needs it. */
typedef struct ext_body {
    unsigned refs;
    cel_pool *pool;
    cel_body_owner owner;
} ext_body;

typedef struct stream {
    /* Set one by one in stream_new (the static asserts after STREAM_CLEARED,
     * in h2_stream.c, check this layout, and tests/test_layout.py that they
     * do): */
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
    /* The request body (h2_body.c), set at the headers of one that has a body: */
    size_t body_limit;  /* the route's max_request_body, else the limits' */
    uint64_t body_seen; /* streamed: bytes the client sent */
    int route_rc;       /* 1 + cel_dispatch_route_body's result; 0: not routed yet */
    uint8_t bflags;     /* CEL_H2B_* */
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
    /* A file range queued by write_file, read frame by frame into the
     * output queue (ext holds its descriptor): FILE_LEN bytes from FILE_OFF,
     * of which FILE_READ are framed and FILE_SENT queued. */
    uint64_t file_off, file_len, file_read, file_sent;
    int file_fd;
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
    cel_bucket glitches; /* frames that do no work */
    cel_bucket resets;   /* RST_STREAMs either side sent (rapid reset, MadeYouReset) */
    uint64_t progress;   /* request or response bytes moved: what idleness is measured by */
    uint64_t data_sent;  /* DATA frames we sent */
    uint64_t wu_recv;    /* WINDOW_UPDATE frames received */
    time_t date_sec;     /* env->date_sec of the last response (see submit) */
    stream *writable;    /* streams whose on_writable is due, run after each send */
    void (*want_flush)(void *ctx);
    void *flush_ctx;
    uint8_t receiving; /* in p_recv: the connection sends and flushes after it */
    const cel_conn_view *conn;
    const char *peer;    /* client address, for the access log */
    uint8_t served;      /* a request was dispatched */
    uint8_t goaway;      /* we sent (or queued) our GOAWAY */
    uint32_t discarding; /* streams with ST_DISCARD */
    uint32_t held;       /* streams with ST_HELD */
    uint32_t bodies;     /* streams with CEL_H2B_STREAM */
    uint32_t failing;    /* streams made ST_FAILING since the last cel_h2_reset_failing */
    /* The client's frames, followed beside nghttp2 (see cel_h2_recv). */
    uint32_t scan_skip;             /* octets of the current frame (or preface) still to pass */
    int32_t scan_pri;               /* stream of the PRIORITY payload being read, or -1 */
    uint8_t scan_have;              /* octets of scan_buf filled */
    uint8_t scan_buf[9];            /* a frame header (or PRIORITY payload) cut by a read */
    struct kept_table *kept;        /* verdicts on repeated fields (on_header), or NULL */
    const nghttp2_rcbuf *path_name; /* nghttp2's static-table ":path" name, once seen */
    /* the static-table names of the last two per-resource fields (If-None-Match,
     * Range...) seen with no special rule: on_header takes them (on_fresh) */
    const nghttp2_rcbuf *fresh_name[2];
    stream **slots;      /* STREAM_SLOTS streams by id (find_stream), or NULL */
    int32_t ended_top;   /* highest stream id in ended_bits */
    uint32_t kept_bytes; /* what the kept entries' references hold (KEPT_BYTES at most) */
    uint64_t ended_bits; /* bit i: stream ended_top - 2i closed after its client ended it */
    /* File read-ahead (h2_response.c): RA_LEN bytes of stream RA_ID's file
     * from offset RA_POS in RA's block, or RA NULL; RA_LAST is the stream of
     * the last file frame queued. */
    struct cel_h2_ra *ra;
    uint64_t ra_pos;
    size_t ra_len;
    int32_t ra_id, ra_last;
};

/* Output is waiting: the connection is to send and flush it soon. Not while
 * the connection's read is being taken in (a handler answering during
 * dispatch): the connection sends and flushes after every read, and an
 * event of its own would only run one more pump with nothing left to do. */
static inline void cel_h2_flush_soon(cel_h2 *h)
{
    if (h->want_flush && !h->receiving)
        h->want_flush(h->flush_ctx);
}

/* Drops the connection's hold on its read-ahead block, which goes once no
 * queued frame points into it (h2_response.c). */
void cel_h2_ra_drop(cel_h2 *h);

/* The exchange operations of every stream (h2_response.c). */
extern const cel_exchange_ops cel_h2_exchange_ops;

static inline void ext_unref(void *arg)
{
    ext_body *e = arg;
    if (--e->refs)
        return;
    e->owner.release(e->owner.arg);
    cel_pool_release(e->pool, e);
}

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

static inline stream *find_stream(cel_h2 *h, int32_t id)
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
static inline void set_held(cel_h2 *h, stream *st, int on)
{
    if (on == !!(st->flags & ST_HELD))
        return;
    st->flags ^= ST_HELD;
    if (on)
        h->held++;
    else
        h->held--;
}

/* Whether the client had ended (or reset) stream ID, closed now: remembered
 * for the last 64 client streams, which is the "limited period" 5.1 allows. */
static inline int ended_stream(const cel_h2 *h, int32_t id)
{
    if (id > h->ended_top)
        return 0;
    uint32_t i = (uint32_t)(h->ended_top - id) / 2;
    return i < 64 && (h->ended_bits >> i & 1);
}

static inline void note_ended(cel_h2 *h, int32_t id)
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

/* h2_stream.c: a stream for client stream ID, on the table; NULL on ENOMEM. */
stream *cel_h2_stream_new(cel_h2 *h, int32_t id);
/* h2_stream.c: accounts for ST (stats, access log) and frees it. */
void cel_h2_stream_free(cel_h2 *h, stream *st);

/* h2_intake.c: appends a request field to ST's list; -1 on ENOMEM. */
int cel_h2_add_header(cel_h2 *h, stream *st, cel_str name, cel_str value);
/* h2_intake.c: lets go of the kept-field verdicts and their references. */
void cel_h2_kept_free(cel_h2 *h);

/* h2_response.c: submits RES (status, headers, whole body) on ST. 0, or
 * nghttp2's error from resetting the stream when the response cannot go. */
int cel_h2_respond(cel_h2 *h, stream *st, const cel_response *res);
/* h2_response.c: answers STATUS (413, 431) before the request is complete; the
 * rest of it is then read and dropped, and the stream reset once the answer is
 * out. */
int cel_h2_respond_early(cel_h2 *h, stream *st, int status);
/* h2_response.c: resets a stream answered early once the answer is out and the
 * client has sent more than it may discard. */
void cel_h2_maybe_reset(cel_h2 *h, stream *st);
/* h2_response.c: after a send that did not stop at the output limit (every
 * HEADERS queued before it is out), resets the ST_FAILING streams with
 * INTERNAL_ERROR. */
void cel_h2_reset_failing(cel_h2 *h);

/* h2_police.c: takes a token from B (WHAT names the flood for the log); -1,
 * with the session terminated ENHANCE_YOUR_CALM, when B has run dry. */
int cel_h2_spend(cel_h2 *h, cel_bucket *b, const char *what);

/* h2_body.c: request bodies, buffered or streamed to their handler, and the
 * flow control that follows what the handler took. At the headers of a
 * request with a body: routes it (the body's limit, streaming) and, for a
 * handler that streams bodies, dispatches it. */
int cel_h2_body_headers(cel_h2 *h, stream *st);
/* h2_body.c: LEN bytes of DATA on ST (not malformed). 0 or an nghttp2 error. */
int cel_h2_body_data(cel_h2 *h, stream *st, const uint8_t *data, size_t len);
/* h2_body.c: the client ended a stream routed at its headers. */
int cel_h2_body_dispatch(cel_h2 *h, stream *st);
/* h2_body.c: the exchange's body_resume. */
void cel_h2_body_resume(cel_exchange *x);
/* h2_body.c: before a send, offers again what resumed handlers may take and
 * drops what answered ones will not (H->bodies is not 0). */
void cel_h2_body_pump(cel_h2 *h);

/* Each file's nghttp2 callbacks, set on CB by cel_h2_global_init (h2.c). */
void cel_h2_stream_callbacks(nghttp2_session_callbacks *cb);
void cel_h2_intake_callbacks(nghttp2_session_callbacks *cb);
void cel_h2_response_callbacks(nghttp2_session_callbacks *cb);
void cel_h2_police_callbacks(nghttp2_session_callbacks *cb);

/* A request whose header block (or body) is complete goes to its route (the
 * request's hot path: inlined into on_frame_recv). */
static inline __attribute__((always_inline)) int dispatch(cel_h2 *h, stream *st)
{
    if (CEL_UNLIKELY(st->route_rc))
        return cel_h2_body_dispatch(h, st);
    if (st->flags & (ST_RESPONDED | ST_DISCARD))
        return 0;
    if (st->flags & ST_HDR_TOO_BIG)
        return cel_h2_respond_early(h, st, 431);
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
    return cel_h2_respond(h, st, &res);
}

#endif
