#include <string.h>

#include "h2_internal.h"

/* nghttp2 runs without automatic WINDOW_UPDATEs (h2.c): a buffered body, and
 * everything dropped, is consumed as it comes; a streamed body is consumed on
 * the connection as it comes (other streams never wait for a slow handler)
 * and on its stream only as far as the handler took it, so the client cannot
 * send more than one stream window ahead of the handler. */

/* The answer is complete: what the handler has not taken is dropped. */
static int answered(const stream *st)
{
    return (st->flags & ST_RESPONDED) &&
           (!(st->flags & ST_STREAMING) || (st->flags & ST_ENDED) || (st->flags & ST_RESET));
}

/* Drops the bytes held for the handler and whatever else comes, as after an
 * early answer (the stream reset with NO_ERROR past the budget). */
static void drop_rest(cel_h2 *h, stream *st)
{
    if (st->body_len)
        nghttp2_session_consume_stream(h->s, st->id, st->body_len);
    st->body_len = 0;
    st->bflags |= CEL_H2B_TAKEN;
    st->bflags &= (uint8_t)~CEL_H2B_HELD;
    if (!(st->flags & ST_DISCARD)) {
        h->discarding++;
        st->flags |= ST_DISCARD;
    }
}

/* The body passed the route's limit: the handler hears of it, the client gets
 * a 413 when no answer has begun, else the stream is cut. */
static int body_fail(cel_h2 *h, stream *st)
{
    size_t took;
    if (st->x.on_body)
        st->x.on_body(&st->x, NULL, 0, -1, &took);
    int begun = (st->flags & ST_RESPONDED) != 0;
    drop_rest(h, st);
    if (!begun)
        return cel_h2_respond_early(h, st, 413);
    if (!(st->flags & ST_RESET)) {
        st->flags |= ST_RESET;
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    }
    return 0;
}

/* Offers the bytes held (and the end, once the client sent it) to the
 * handler, and opens the stream's window by what it took. */
static void offer(cel_h2 *h, stream *st)
{
    if (answered(st)) {
        drop_rest(h, st);
        return;
    }
    if ((st->bflags & (CEL_H2B_HELD | CEL_H2B_TAKEN)) ||
        (!st->body_len && !(st->bflags & CEL_H2B_END)))
        return;
    size_t took = 0;
    st->bflags &= (uint8_t)~CEL_H2B_RESUME;
    int all = st->x.on_body &&
              st->x.on_body(&st->x, st->body, st->body_len, (st->bflags & CEL_H2B_END) != 0, &took);
    if (took) {
        memmove(st->body, st->body + took, st->body_len - took);
        st->body_len -= took;
        nghttp2_session_consume_stream(h->s, st->id, took);
        h->progress++;
    }
    if (!all) {
        /* a handler that resumed from inside its function is offered again
         * from the loop */
        if (!(st->bflags & CEL_H2B_RESUME)) {
            st->bflags |= CEL_H2B_HELD;
            set_held(h, st, 1);
        }
        return;
    }
    set_held(h, st, 0);
    if (st->bflags & CEL_H2B_END) {
        st->bflags |= CEL_H2B_TAKEN;
        if (!(st->flags & (ST_RESPONDED | ST_RESET)))
            set_held(h, st, 1); /* the whole request is in: the handler's turn */
    }
}

int cel_h2_body_headers(cel_h2 *h, stream *st)
{
    int streamed;
    st->route_rc =
        1 + cel_dispatch_route_body(st->gen->cfg, &st->x, &st->match, h->limits.max_request_body,
                                    &st->body_limit, &streamed);
    if (st->hf.content_length > 0 && (uint64_t)st->hf.content_length > st->body_limit)
        return cel_h2_respond_early(h, st, 413);
    if (!streamed) {
        /* Held whole, at most body_limit whatever the window: the stream may
         * send that much (body_window at most) without waiting for us. */
        uint64_t want =
            st->body_limit < h->limits.body_window ? st->body_limit : h->limits.body_window;
        if (st->hf.content_length >= 0 && (uint64_t)st->hf.content_length < want)
            want = (uint64_t)st->hf.content_length;
        if (want > h->limits.initial_window_size &&
            nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, st->id, (int32_t)want))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        return 0;
    }
    st->bflags |= CEL_H2B_STREAM;
    st->x.body_streamed = 1;
    h->bodies++;
    cel_request *req = &st->req;
    req->headers = st->hdrs;
    req->nheaders = st->nhdrs;
    h->served = 1;
    cel_response res;
    if (cel_dispatch_routed(st->gen->cfg, &st->x, &st->match, st->route_rc - 1, &res) ==
        CEL_HANDLER_ASYNC)
        return 0;
    return cel_h2_respond(h, st, &res);
}

int cel_h2_body_data(cel_h2 *h, stream *st, const uint8_t *data, size_t len)
{
    if (st->flags & ST_DISCARD) {
        st->discarded += len;
        nghttp2_session_consume(h->s, st->id, len);
        cel_h2_maybe_reset(h, st);
        return 0;
    }
    h->progress++;
    if (!(st->bflags & CEL_H2B_STREAM)) {
        nghttp2_session_consume(h->s, st->id, len);
        if (st->flags & (ST_RESPONDED | ST_HDR_TOO_BIG))
            return 0;
        if (st->body_len + len > st->body_limit)
            return cel_h2_respond_early(h, st, 413) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
    } else {
        nghttp2_session_consume_connection(h->s, len);
        st->body_seen += len;
        if (st->body_seen > st->body_limit)
            return body_fail(h, st) ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
        if (answered(st)) {
            nghttp2_session_consume_stream(h->s, st->id, len);
            drop_rest(h, st);
            return 0;
        }
    }
    if (st->body_len + len > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap : 4096;
        while (cap < st->body_len + len)
            cap *= 2;
        /* streamed: no more than a window is ever held */
        if (!(st->bflags & CEL_H2B_STREAM) && cap > st->body_limit)
            cap = st->body_limit;
        char *b = cel_pool_realloc(h->env->pool, st->body, cap);
        if (!b)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->body = b;
        st->body_cap = cap;
    }
    memcpy(st->body + st->body_len, data, len);
    st->body_len += len;
    if (st->bflags & CEL_H2B_STREAM)
        offer(h, st);
    return 0;
}

int cel_h2_body_dispatch(cel_h2 *h, stream *st)
{
    if (st->bflags & CEL_H2B_STREAM) {
        if (!(st->flags & ST_DISCARD)) {
            st->bflags |= CEL_H2B_END;
            offer(h, st);
        }
        return 0;
    }
    if (st->flags & (ST_RESPONDED | ST_DISCARD))
        return 0;
    cel_request *req = &st->req;
    req->headers = st->hdrs;
    req->nheaders = st->nhdrs;
    req->body = st->body;
    req->body_len = st->body_len;
    h->served = 1;
    cel_response res;
    if (cel_dispatch_routed(st->gen->cfg, &st->x, &st->match, st->route_rc - 1, &res) ==
        CEL_HANDLER_ASYNC) {
        if (!(st->flags & (ST_RESPONDED | ST_RESET)))
            set_held(h, st, 1);
        return 0;
    }
    return cel_h2_respond(h, st, &res);
}

void cel_h2_body_resume(cel_exchange *x)
{
    stream *st = (stream *)((char *)x - offsetof(stream, x));
    st->bflags &= (uint8_t)~CEL_H2B_HELD;
    st->bflags |= CEL_H2B_RESUME;
    set_held(st->h, st, 0);
    cel_h2_flush_soon(st->h);
}

void cel_h2_body_pump(cel_h2 *h)
{
    for (stream *st = h->streams; st; st = st->next)
        if ((st->bflags & (CEL_H2B_STREAM | CEL_H2B_TAKEN)) == CEL_H2B_STREAM &&
            !(st->flags & ST_DISCARD) && ((st->bflags & CEL_H2B_RESUME) || answered(st)))
            offer(h, st);
}
