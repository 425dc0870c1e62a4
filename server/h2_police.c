#include <stdlib.h>
#include <string.h>

#include "h2_internal.h"
#include "log.h"

/* We never raise SETTINGS_MAX_FRAME_SIZE above the protocol's initial value. */
#define OUR_MAX_FRAME_SIZE 16384

/* Ends the connection with ENHANCE_YOUR_CALM when bucket B runs dry. */
int cel_h2_spend(cel_h2 *h, cel_bucket *b, const char *what)
{
    if (cel_bucket_take(b, h->env->date_sec) == 0)
        return 0;
    cel_log_debug("h2: %s flood, ending the connection", what);
    nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
    return -1;
}

/* The checks of a frame header that nghttp2 leaves to us, made by cel_h2_recv
 * once nghttp2 has read everything before the frame (the fast path there
 * passes over frames that need none). */
static void frame_begins(cel_h2 *h, uint8_t type, uint8_t flags, uint32_t len, int32_t id)
{
    nghttp2_session *s = h->s;
    if (cel_h2_is_glitch(type, flags, len) && cel_h2_spend(h, &h->glitches, "frame"))
        return;
    /* Our own reset limit, so the answer is ENHANCE_YOUR_CALM (nghttp2's own,
     * kept as a backstop, answers INTERNAL_ERROR). */
    if (type == NGHTTP2_RST_STREAM && cel_h2_spend(h, &h->resets, "RST_STREAM"))
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

void cel_h2_police_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_before_frame_send_callback(cb, before_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
}
