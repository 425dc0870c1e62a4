#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h2_internal.h"
#include "http.h"
#include "log.h"
#include "phase.h"
#include "version.h"

/* Bodies at least this long that live in the generation are queued by
 * reference; shorter ones are copied next to their frame header, which keeps
 * small responses in one iovec. */
#define REF_MIN 1024
#define MAX_RESPONSE_HEADERS (CEL_PHASE_MAX_FIELDS + 2) /* with :status, content-length */

/* A streamed body: above HIGH bytes waiting, write asks the producer to pause;
 * below LOW its on_writable runs. */
#define STREAM_HIGH (64 * 1024)
#define STREAM_LOW (16 * 1024)

/* After an early answer the rest of the request body is read and dropped, so
 * that clients which treat any RST_STREAM as failure still see the answer; past
 * this many times the request's body limit (the route's when it has one; at
 * least 1 MiB) the stream is reset with NO_ERROR. */
#define DISCARD_FACTOR 4
#define DISCARD_MIN (1u << 20)

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    stream *st = src->ptr;
    (void)s, (void)id, (void)buf, (void)ud;
    /* Bytes buffered while a file range waits were written before it (write
     * refuses bytes while one is pending), so they go first. */
    if (st->out_read == st->out_len && st->file_read < st->file_len) {
        /* send_data reads the payload, and resets the stream when the file
         * turns out shorter, before any of the frame is queued. */
        uint64_t left = st->file_len - st->file_read;
        size_t n = left < length ? (size_t)left : length;
        st->file_read += n;
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
        if (st->file_read == st->file_len && (st->flags & ST_ENDED))
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
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
    if (st->out_read == st->out_len && st->file_read == st->file_len &&
        (!(st->flags & ST_STREAMING) || (st->flags & ST_ENDED)))
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
    if (st->x.on_writable && st->out_len - st->out_sent < STREAM_LOW &&
        st->file_sent == st->file_len && !(st->flags & ST_WQ)) {
        st->flags |= ST_WQ;
        st->wnext = h->writable;
        h->writable = st;
    }
}

/* A file stream's next RA_SIZE bytes are read in one pread and its frames
 * queued by reference into that block: one read for several frames, as many
 * copies as reading each frame into the queue. A non-incremental stream
 * (RFC 9218; the default) reads ahead from its first frame, as nghttp2 sends
 * its frames one after the other; an incremental one, whose frames take
 * turns with others', from its second consecutive frame. A block stays while
 * queued frames point into it, so the connection holds at most
 * max_output_buffer / RA_SIZE + 2 of them. */
#define RA_SIZE (64 * 1024)

struct cel_h2_ra {
    cel_pool *pool;
    char *data;    /* RA_SIZE bytes, a pool page block */
    unsigned refs; /* the connection's and one a queued frame */
};

static void ra_unref(void *arg)
{
    struct cel_h2_ra *ra = arg;
    if (--ra->refs)
        return;
    cel_pool_release(ra->pool, ra->data);
    cel_pool_release(ra->pool, ra);
}

void cel_h2_ra_drop(cel_h2 *h)
{
    if (h->ra)
        ra_unref(h->ra);
    h->ra = NULL;
    h->ra_len = 0;
}

/* The LENGTH bytes of ST's file at AT from the read-ahead, reading it when
 * ST is not incremental or this frame follows one of the same stream; NULL:
 * read the frame itself (a single frame, no memory, or the file gave fewer
 * bytes: the frame's own read decides whether it ended). */
static const char *ra_get(cel_h2 *h, stream *st, uint64_t at, size_t length)
{
    struct cel_h2_ra *ra = h->ra;
    if (ra && h->ra_id == st->id && at >= h->ra_pos && at - h->ra_pos + length <= h->ra_len)
        return ra->data + (at - h->ra_pos);
    uint64_t left = st->file_len - st->file_sent;
    if ((h->ra_last != st->id && (st->prio & 1)) || left <= length || length > RA_SIZE)
        return NULL;
    if (ra && ra->refs > 1)
        cel_h2_ra_drop(h); /* frames still point into it */
    if (!h->ra) {
        ra = cel_pool_alloc(h->env->pool, sizeof(*ra));
        char *data = ra ? cel_pool_alloc(h->env->pool, RA_SIZE) : NULL;
        if (!data) {
            cel_pool_release(h->env->pool, ra);
            return NULL;
        }
        *ra = (struct cel_h2_ra){h->env->pool, data, 1};
        h->ra = ra;
    }
    h->ra_len = 0;
    size_t want = left < RA_SIZE ? (size_t)left : RA_SIZE;
    ssize_t r;
    do
        r = pread(st->file_fd, ra->data, want, (off_t)at);
    while (r < 0 && errno == EINTR);
    if (r < (ssize_t)length)
        return NULL;
    h->ra_id = st->id;
    h->ra_pos = at;
    h->ra_len = (size_t)r;
    return ra->data;
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
    if (st->out_sent == st->out_read && st->file_sent < st->file_len) {
        /* The payload is read into user space rather than sent by sendfile
         * (one read for one or several frames and one writev for many,
         * against two system calls a frame; and on loopback the receiver
         * pays twice for page-sized pieces: README, Performance). */
        uint8_t hd[10];
        memcpy(hd, framehd, 9);
        hd[9] = (uint8_t)(pad ? pad - 1 : 0);
        uint64_t at = st->file_off + st->file_sent;
        const char *ahead = ra_get(h, st, at, length);
        int rc;
        if (ahead) {
            h->ra->refs++;
            if ((rc = cel_outq_copy(h->out, hd, pad ? 10 : 9)) ||
                (rc = cel_outq_ref(h->out, ahead, length, ra_unref, h->ra)))
                h->ra->refs--;
        } else {
            rc = cel_outq_copy_read(h->out, hd, pad ? 10 : 9, st->file_fd, (off_t)at, length);
        }
        if (rc == CEL_EIO) {
            st->flags |= ST_OURS; /* nghttp2 resets the stream: the file is shorter now */
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        if (rc)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        h->ra_last = st->id;
        st->file_sent += length;
        st->bytes_sent += length;
        h->progress++;
        h->data_sent++;
        if (pad > 1 && cel_outq_copy(h->out, zeros, pad - 1))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (st->file_sent == st->file_len)
            stream_consumed(h, st);
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            st->flags |= ST_SENT;
        return 0;
    }
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
    /* A date is only worth an HPACK table entry when another response follows
     * within its second. Indexed, each second's date of a connection that
     * asks once a second would fill the table (about 60 of them), and every
     * response would allocate one, evict one and compare against all of them
     * in cold memory. */
    if (h->date_sec != h->env->date_sec && nva[2].value == (uint8_t *)h->env->date) {
        h->date_sec = h->env->date_sec;
        nva[2].flags |= NGHTTP2_NV_FLAG_NO_INDEX;
    }
    char *clen = st->clen_txt;
    int no_body = res->status == 204 || res->status == 304;
    /* a streamed body announced whole (sized), unless a filter rewrites it */
    if (!no_body && (!streaming || (res->sized && !st->x.filter)))
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
        /* The client gets RST_STREAM INTERNAL_ERROR, not the handler's answer:
         * the access log and the status counters say 500, as for any answer
         * the server failed to make. */
        st->status = 500;
        st->flags |= ST_RESET | ST_OURS;
        return nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    }
    return 0;
}

int cel_h2_respond(cel_h2 *h, stream *st, const cel_response *res)
{
    return submit(h, st, res, 0);
}

/* ---- the exchange, for handlers that answer later or in pieces ---- */

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
    int rc = cel_h2_respond(h, st, res);
    if (owner)
        st->out_kind = BODY_EXT;
    cel_h2_flush_soon(h);
    return rc ? CEL_EIO : 0;
}

static int x_start(cel_exchange *x, const cel_response *head)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    if (st->flags & ST_RESPONDED)
        return CEL_EINVAL;
    set_held(st->h, st, 0);
    int rc = submit(st->h, st, head, 1);
    cel_h2_flush_soon(st->h);
    return rc ? CEL_EIO : 0;
}

static void resume_if_deferred(stream *st)
{
    if (st->flags & ST_DEFERRED) {
        st->flags &= ~ST_DEFERRED;
        set_held(st->h, st, 0);
        nghttp2_session_resume_data(st->h->s, st->id);
    }
    cel_h2_flush_soon(st->h);
}

static int raw_write(cel_exchange *x, const void *p, size_t n)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    if ((st->flags & (ST_STREAMING | ST_ENDED | ST_FAILING)) != ST_STREAMING)
        return CEL_EINVAL;
    if (no_content(st) || n == 0)
        return 0;
    if (st->file_sent < st->file_len)
        return CEL_EINVAL; /* a file range is still being sent: see write_file */
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

static int x_write_file(cel_exchange *x, int fd, uint64_t off, uint64_t n,
                        const cel_body_owner *owner)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    cel_h2 *h = st->h;
    /* one range at a time (the bytes written before it go first), over TLS
     * too, as the payload is read into the queue */
    if ((st->flags & (ST_STREAMING | ST_ENDED | ST_FAILING)) != ST_STREAMING)
        return cel_body_owner_done(owner, CEL_EINVAL);
    if (no_content(st) || n == 0)
        return cel_body_owner_done(owner, 0);
    if (x->filter || (st->ext && !st->file_len) || st->file_sent < st->file_len || n > SIZE_MAX ||
        off > (uint64_t)INT64_MAX - n)
        return cel_body_owner_done(owner, CEL_EINVAL);
    if (st->ext) { /* the previous range is all queued (read, not referenced) */
        ext_unref(st->ext);
        st->ext = NULL;
        st->file_off = st->file_len = st->file_read = st->file_sent = 0;
    }
    ext_body *e = cel_pool_alloc(h->env->pool, sizeof(*e));
    if (!e)
        return cel_body_owner_done(owner, CEL_ENOMEM);
    cel_body_owner own;
    if (cel_body_owner_for_fd(owner, &fd, &own)) {
        cel_pool_release(h->env->pool, e);
        return CEL_EINVAL;
    }
    *e = (ext_body){1, h->env->pool, own};
    st->ext = e;
    st->file_fd = fd;
    st->file_off = off;
    st->file_len = n;
    resume_if_deferred(st);
    return CEL_EAGAIN; /* on_writable once the range is queued */
}

static int raw_end(cel_exchange *x)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    if (!(st->flags & ST_STREAMING) || (st->flags & (ST_ENDED | ST_FAILING)))
        return CEL_EINVAL;
    st->flags |= ST_ENDED;
    resume_if_deferred(st);
    return 0;
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
    const stream *st = (const stream *)((const char *)x - offsetof(stream, x));
    return st->out_len - st->out_sent + (size_t)(st->file_len - st->file_sent);
}

static void x_fail(cel_exchange *x)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    if (st->flags & (ST_RESET | ST_FAILING))
        return;
    set_held(st->h, st, 0);
    if (!(st->flags & ST_RESPONDED)) {
        cel_response res;
        cel_response_error(&res, 500);
        cel_h2_respond(st->h, st, &res);
    } else if ((st->flags & (ST_STREAMING | ST_ENDED)) == ST_STREAMING) {
        /* The reset waits for the next send: submitted now, it makes nghttp2
         * drop HEADERS still queued, and the client sees no answer begun.
         * What is not framed yet is dropped, so that the reset comes next. */
        st->flags |= ST_FAILING;
        st->out_len = st->out_read;
        st->file_len = st->file_read;
        st->h->failing++;
    }
    /* else the answer is whole: it stands, as over HTTP/1.1 */
    cel_h2_flush_soon(st->h);
}

void cel_h2_reset_failing(cel_h2 *h)
{
    for (stream *st = h->streams; st; st = st->next)
        if ((st->flags & (ST_FAILING | ST_RESET)) == ST_FAILING) {
            st->flags |= ST_RESET | ST_OURS;
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        }
    h->failing = 0;
}

static int x_state(const cel_exchange *x)
{
    const stream *st = (const stream *)((const char *)x - offsetof(stream, x));
    if (!(st->flags & ST_RESPONDED))
        return CEL_X_WAITING;
    return (st->flags & (ST_STREAMING | ST_ENDED | ST_RESET | ST_FAILING)) == ST_STREAMING
               ? CEL_X_STREAMING
               : CEL_X_ANSWERED;
}

const cel_exchange_ops cel_h2_exchange_ops = {
    .respond = x_respond,
    .start = x_start,
    .write = x_write,
    .write_file = x_write_file,
    .end = x_end,
    .buffered = x_buffered,
    .fail = x_fail,
    .hold = cel_genref_hold_exchange,
    .body_resume = cel_h2_body_resume,
    .state = x_state,
};

/* Answers before the request is complete (413, 431); the rest of the request is
 * then read and dropped, and the stream reset once the answer is out. */
int cel_h2_respond_early(cel_h2 *h, stream *st, int status)
{
    cel_response res;
    cel_response_error(&res, status);
    st->x.mw = st->gen->cfg->mw; /* before dispatch: the global middleware */
    st->x.id_as_is = 1;
    if (!(st->flags & ST_DISCARD))
        h->discarding++;
    st->flags |= ST_DISCARD;
    cel_pool_release(h->env->pool, st->body);
    st->body = NULL;
    st->body_len = st->body_cap = 0;
    return cel_h2_respond(h, st, &res);
}

void cel_h2_maybe_reset(cel_h2 *h, stream *st)
{
    /* the limit the request was held to: its route's, once it was routed */
    size_t limit = st->route_rc ? st->body_limit : h->limits.max_request_body;
    size_t budget = limit * DISCARD_FACTOR;
    if (budget < DISCARD_MIN)
        budget = DISCARD_MIN;
    if ((st->flags & (ST_SENT | ST_RESET)) != ST_SENT || st->discarded <= budget)
        return;
    /* RFC 9113 8.1: a server that answered before the request ended may reset
     * the stream with NO_ERROR so the client stops sending. */
    st->flags |= ST_RESET;
    nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    cel_h2 *h = ud;
    (void)s;
    /* A client that makes us reset streams (malformed requests, CVE-2025-8671)
     * spends the same budget as one that resets them itself; our own failures
     * (ST_OURS) spend none of it. nghttp2 frees the stream after this call. */
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        if (frame->rst_stream.error_code != NGHTTP2_NO_ERROR) {
            const stream *st = find_stream(h, frame->hd.stream_id);
            if (!st || !(st->flags & ST_OURS))
                cel_h2_spend(h, &h->resets, "provoked RST_STREAM");
        }
        return 0;
    }
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
        cel_h2_maybe_reset(ud, st);
    return 0;
}

void cel_h2_response_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_send_data_callback(cb, send_data);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
}
