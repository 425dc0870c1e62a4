#include <stdlib.h>
#include <string.h>

#include "h2_internal.h"
#include "mw_timeout.h"
#include "phase.h"
#include "stats.h"

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

stream *cel_h2_stream_new(cel_h2 *h, int32_t id)
{
    stream *st = cel_pool_alloc(h->env->pool, sizeof(*st));
    if (!st)
        return NULL;
    cel_zero(&st->x, STREAM_CLEARED);
    st->id = id;
    st->h = h;
    st->x.ops = &cel_h2_exchange_ops;
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
    if (st->bflags & CEL_H2B_STREAM)
        h->bodies--;
    set_held(h, st, 0);
    if (st->x.on_close)
        st->x.on_close(&st->x, (st->flags & ST_SENT) != 0);
    if (st->x.filter && st->x.filter->close)
        st->x.filter->close(&st->x);
    if (st->x.timer)
        cel_mw_timeout_cancel(&st->x);
    if (st->flags & ST_WQ)
        for (stream **p = &h->writable; *p; p = &(*p)->wnext)
            if (*p == st) {
                *p = st->wnext;
                break;
            }
    if (st->ext)
        ext_unref(st->ext);
    if (h->ra && h->ra_id == st->id)
        cel_h2_ra_drop(h); /* an idle connection keeps no read-ahead */
    cel_pool_release(h->env->pool, st->sbuf);
    if (st->hdrs != st->inline_hdrs)
        cel_pool_release(h->env->pool, st->hdrs);
    cel_pool_release(h->env->pool, st->body);
}

void cel_h2_stream_free(cel_h2 *h, stream *st)
{
    account(h, st);
    /* one test for all of stream_free_extras' cases, none on most streams */
    if ((st->flags & (ST_DISCARD | ST_WQ | ST_HELD)) | st->bflags | (st->x.on_close != NULL) |
        (st->x.filter != NULL) | (st->x.timer != NULL) | (uintptr_t)st->ext | (uintptr_t)st->sbuf |
        (uintptr_t)st->body | ((uintptr_t)st->hdrs ^ (uintptr_t)st->inline_hdrs))
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
        cel_h2_stream_free(h, st);
    }
    return 0;
}

void cel_h2_stream_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
}
