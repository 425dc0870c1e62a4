#include "h2.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2_internal.h"
#include "log.h"

static nghttp2_session_callbacks *callbacks;

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

/* ---- what nghttp2 sends goes to the output queue ---- */

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

/* ---- the session ---- */

static int init_callbacks(void)
{
    if (callbacks)
        return 0;
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb))
        return CEL_ENOMEM;
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    cel_h2_intake_callbacks(cb);
    cel_h2_response_callbacks(cb);
    cel_h2_police_callbacks(cb);
    cel_h2_stream_callbacks(cb);
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
    cel_bucket_init(&h->glitches, h->limits.glitch_burst, h->limits.glitch_rate, env->date_sec);
    cel_bucket_init(&h->resets, h->limits.reset_burst, h->limits.reset_rate, env->date_sec);
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
    /* Request bodies open the windows as their handler takes them (h2_body.c). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
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
    /* The connection's window grows only by WINDOW_UPDATE: sent with the
     * SETTINGS, it reaches the client before its first DATA can. */
    if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, CEL_ARRAY_LEN(iv)) ||
        nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)h->limits.connection_window)) {
        cel_h2_free(h);
        return NULL;
    }
    return h;
}

void cel_h2_free(cel_h2 *h)
{
    /* nghttp2_session_del does not report the streams it drops. */
    while (h->streams)
        cel_h2_stream_free(h, h->streams);
    cel_h2_kept_free(h);
    cel_h2_ra_drop(h);
    cel_pool_release(h->env->pool, h->slots);
    nghttp2_session_del(h->s);
    cel_pool_release(h->env->pool, h);
}

int cel_h2_send(cel_h2 *h)
{
    if (CEL_UNLIKELY(h->bodies))
        cel_h2_body_pump(h);
    int rv = nghttp2_session_send(h->s);
    if (CEL_UNLIKELY(h->failing) && !rv && cel_outq_pending(h->out) < h->limits.max_output_buffer) {
        cel_h2_reset_failing(h);
        rv = nghttp2_session_send(h->s);
    }
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
        st->flags |= ST_RESET | ST_OURS;
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
    cel_h2 *h = s;
    h->receiving = 1; /* see cel_h2_flush_soon */
    int rc = cel_h2_recv(h, p, n);
    h->receiving = 0;
    return rc;
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
