#include <string.h>

#include "h2.h"
#include "h2_internal.h"
#include "http.h"

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
                            const cel_request *rq, int *dispatched)
{
    *dispatched = 0;
    cel_h2 *h = cel_h2_new(env, out, want_flush, ctx, conn);
    if (!h)
        return NULL;
    if (nghttp2_session_upgrade2(h->s, settings, slen, rq->method_bit == CEL_M_HEAD, NULL)) {
        cel_h2_free(h);
        return NULL;
    }
    stream *st = cel_h2_stream_new(h, 1);
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
              cel_h2_add_header(h, st, n, v);
    }
    if (bad || !t || dispatch(h, st)) {
        *dispatched = h->served; /* set by dispatch just before the handler runs */
        cel_h2_free(h);
        return NULL;
    }
    return h;
}
