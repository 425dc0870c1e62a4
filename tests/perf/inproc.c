/*
 * celeris-inproc-bench: what a request costs without sockets, so that every
 * change is judged against what nghttp2 alone costs (issue #6).
 *
 * A client nghttp2 session sends GET requests the way h2load 1.52 does (its
 * SETTINGS, connection window and header set: :path, :scheme, :authority,
 * :method, user-agent), ROUNDS of -m at a time, and checks every response:
 * status 200, the route's content-type, a content-length and exactly the
 * route's body. The server side of the same process is one of
 *
 *   floor-malloc   a bare nghttp2 server session: no header callback; on a
 *                  request's END_STREAM it submits :status 200, server, date,
 *                  content-type and content-length (what celerisd sends, no
 *                  copies) and the body through a data provider; glibc malloc
 *   floor-pool     the same on the daemon's per-worker allocator, cel_pool,
 *                  through the nghttp2_mem glue h2.c uses (cel_h2_pool_mem)
 *   floor-nohttp   glibc malloc and nghttp2_option_set_no_http_messaging
 *   floor-both     cel_pool and no_http_messaging
 *   floor-nopri    floor-both with SETTINGS_NO_RFC7540_PRIORITIES = 1, as the
 *                  daemon runs nghttp2: no priority tree, no closed streams
 *   daemon         celerisd's whole request path, as conn.c runs it on a read
 *                  event: the date tick, cel_h2_recv (h2*.c's callbacks, the
 *                  router, the handler, the counters), cel_h2_send into the
 *                  output queue and its flush, into memory here. It runs in a
 *                  libevent callback, so the loop's time cache works as in the
 *                  daemon; the loop itself is not counted. Routes and limits
 *                  are conf/bench.yaml's (bench_yaml below), without the
 *                  module route; no access log, as there.
 *
 * Only the server's work in measured rounds runs inside server_round(): under
 *   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=server_round
 * callgrind's total Ir divided by -n is the server side's instructions per
 * request (scripts/bench --inproc does that). Warm-up rounds and the client are
 * outside it. The wall-clock ns per request printed beside is a noisy second
 * figure.
 *
 *   celeris-inproc-bench --mode MODE [--route PATH] [-n N] [-m STREAMS] [-w ROUNDS]
 *   celeris-inproc-bench --mode all -n 200     every floor on /bench, the daemon
 *                                              on every route: the quick test
 * Exits 0 only when every response was right.
 */
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "env.h"
#include "genref.h"
#include "h2.h"
#include "log.h"
#include "outq.h"
#include "pool.h"
#include "stats.h"
#include "version.h"

/* conf/bench.yaml without listen, modules and the module route. */
static const char bench_yaml[] = "workers: 1\n"
                                 "log: { level: warn }\n"
                                 "limits:\n"
                                 "  max_concurrent_streams: 128\n"
                                 "  max_connections: 10000\n"
                                 "  idle_timeout: 60s\n"
                                 "  header_timeout: 10s\n"
                                 "routes:\n"
                                 "  - path: /bench\n"
                                 "    static: { body: \"OK\", content_type: text/plain }\n"
                                 "  - path: /json\n"
                                 "    json: { template: { message: \"Hello, World!\" } }\n"
                                 "  - path: /users/:id/posts/:postId\n"
                                 "    methods: [GET]\n"
                                 "    json: { template: { user: \"{{param.id}}\", post: "
                                 "\"{{param.postId}}\" } }\n";

/* What the client asks for and what every answer must be. */
typedef struct route {
    const char *path;
    const char *body;
    const char *ctype;
} route;

static const route routes[] = {
    {"/bench", "OK", "text/plain"},
    {"/json", "{\"message\":\"Hello, World!\"}", "application/json"},
    {"/users/123/posts/456", "{\"user\":\"123\",\"post\":\"456\"}", "application/json"},
};

static const char *const floor_modes[] = {"floor-malloc", "floor-pool", "floor-nohttp",
                                          "floor-both", "floor-nopri"};

#define MAX_STREAMS 128               /* conf/bench.yaml's max_concurrent_streams */
#define H2LOAD_WINDOW ((1 << 30) - 1) /* h2load's default -w 30 and -W 30 */
#define AUTHORITY "127.0.0.1:18080"   /* conf/bench.yaml's listen */
#define USER_AGENT "h2load nghttp2/1.52.0"

/* GCC may clone a function under a new name (server_round.constprop.0), and
 * --toggle-collect needs the name: noipa forbids that. clang has no noipa and
 * does not rename. */
#if defined(__clang__)
#define MEASURED __attribute__((noinline))
#else
#define MEASURED __attribute__((noinline, noipa))
#endif

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("celeris-inproc-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- bytes in flight between the two sides ---- */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void buf_put(buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q)
            die("out of memory");
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* ---- the client: h2load's requests, every response checked ---- */

typedef struct reply {
    int open;
    int status;
    int ctype_ok;
    long long clen; /* -1: none */
    size_t got;     /* body bytes so far */
    int body_bad;
} reply;

typedef struct client {
    nghttp2_session *s;
    const route *rt;
    size_t body_len;
    nghttp2_nv nva[5];
    reply slots[MAX_STREAMS]; /* one per stream of the current round */
    uint64_t right, wrong;
} client;

#define NV(n, v, vlen)                                                                             \
    (nghttp2_nv)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen),                                     \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                           \
    }

static long long parse_digits(const uint8_t *p, size_t n)
{
    if (n == 0 || n > 18)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int c_on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *ud)
{
    client *c = ud;
    (void)flags;
    reply *r = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (!r || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (namelen == 7 && !memcmp(name, ":status", 7))
        r->status = valuelen == 3 ? (int)parse_digits(value, valuelen) : -1;
    else if (namelen == 12 && !memcmp(name, "content-type", 12))
        r->ctype_ok = valuelen == strlen(c->rt->ctype) && !memcmp(value, c->rt->ctype, valuelen);
    else if (namelen == 14 && !memcmp(name, "content-length", 14))
        r->clen = parse_digits(value, valuelen);
    return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                     void *ud)
{
    client *c = ud;
    (void)flags;
    reply *r = nghttp2_session_get_stream_user_data(s, id);
    if (!r)
        return 0;
    if (r->got + len > c->body_len || memcmp(c->rt->body + r->got, data, len))
        r->body_bad = 1;
    r->got += len;
    return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    client *c = ud;
    reply *r = nghttp2_session_get_stream_user_data(s, id);
    if (!r)
        return 0;
    r->open = 0;
    if (code == NGHTTP2_NO_ERROR && r->status == 200 && r->ctype_ok &&
        r->clen == (long long)c->body_len && r->got == c->body_len && !r->body_bad) {
        c->right++;
        return 0;
    }
    if (c->wrong++ < 5)
        fprintf(stderr,
                "celeris-inproc-bench: stream %d: %s: status %d, content-type %s, "
                "content-length %lld, %zu body bytes%s (want 200, %s, %zu)\n",
                id, nghttp2_http2_strerror(code), r->status, r->ctype_ok ? "right" : "wrong",
                r->clen, r->got, r->body_bad ? " that differ" : "", c->rt->ctype, c->body_len);
    return 0;
}

static void client_init(client *c, const route *rt)
{
    memset(c, 0, sizeof(*c));
    c->rt = rt;
    c->body_len = strlen(rt->body);
    c->nva[0] = NV(":path", rt->path, strlen(rt->path));
    c->nva[1] = NV(":scheme", "http", 4);
    c->nva[2] = NV(":authority", AUTHORITY, sizeof(AUTHORITY) - 1);
    c->nva[3] = NV(":method", "GET", 3);
    c->nva[4] = NV("user-agent", USER_AGENT, sizeof(USER_AGENT) - 1);
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb))
        die("out of memory");
    nghttp2_session_callbacks_set_on_header_callback(cb, c_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_on_close);
    int rv = nghttp2_session_client_new(&c->s, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rv)
        die("nghttp2_session_client_new: %s", nghttp2_strerror(rv));
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2LOAD_WINDOW},
    };
    if (nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 2) ||
        nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, H2LOAD_WINDOW))
        die("client SETTINGS failed");
}

static void client_deinit(client *c)
{
    nghttp2_session_del(c->s);
}

static void client_submit(client *c, unsigned k)
{
    for (unsigned i = 0; i < k; i++) {
        c->slots[i] = (reply){.open = 1, .clen = -1};
        int32_t id = nghttp2_submit_request(c->s, NULL, c->nva, 5, NULL, &c->slots[i]);
        if (id < 0)
            die("nghttp2_submit_request: %s", nghttp2_strerror(id));
    }
}

static void client_out(client *c, buf *out)
{
    for (;;) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->s, &p);
        if (n < 0)
            die("client send: %s", nghttp2_strerror((int)n));
        if (n == 0)
            return;
        buf_put(out, p, (size_t)n);
    }
}

static void client_in(client *c, const buf *in)
{
    ssize_t n = nghttp2_session_mem_recv(c->s, in->p, in->len);
    if (n < 0 || (size_t)n != in->len)
        die("client receive: %s", n < 0 ? nghttp2_strerror((int)n) : "short");
}

/* ---- the server side ---- */

typedef struct server server;
struct server {
    /* The server's work on one round: takes the client's bytes IN, appends what
     * it answers to OUT. 0, or -1 when the connection would end. */
    int (*serve)(server *sv, const uint8_t *in, size_t n, buf *out);
    /* Runs serve (through server_round when MEASURED is set) as the mode needs;
     * NULL: called directly. */
    int (*run)(server *sv, int measured, const uint8_t *in, size_t n, buf *out);
    /* Frees the server; -1 when it finds something left over. */
    int (*done)(server *sv);
    uint64_t ns; /* wall clock inside server_round */
};

/* --no-alloc: the daemon mode fails if its measured rounds call libc's
 * allocator. It also stops the clock: each new second's date header is a new
 * entry in nghttp2's HPACK table (one allocation a connection a second, from a
 * cold pool, until the table is full and recycles evicted entries), which
 * would make the count depend on when the run crosses a second. */
static int no_alloc;

/* libc allocator calls our code makes inside measured rounds (alloc_counting
 * is set only there). The executable is linked with --wrap=malloc,calloc,
 * realloc, which catches every call from the daemon's objects (the pool going
 * to libc included); libnghttp2 allocates through the nghttp2_mem it is given,
 * so in daemon mode that is the pool too. */
#include "../alloc_count.h"

/* One measured round of the server side: callgrind counts what runs in here,
 * and nothing else. */
MEASURED static int server_round(server *sv, const uint8_t *in, size_t n, buf *out)
{
    alloc_counting = 1;
    int rc = sv->serve(sv, in, n, out);
    alloc_counting = 0;
    return rc;
}

static int serve_timed(server *sv, int measured, const uint8_t *in, size_t n, buf *out)
{
    if (!measured)
        return sv->serve(sv, in, n, out);
    uint64_t t0 = now_ns();
    int rc = server_round(sv, in, n, out);
    sv->ns += now_ns() - t0;
    return rc;
}

/* ---- floor: nghttp2 alone ---- */

typedef struct floor_srv {
    server base;
    nghttp2_session *s;
    cel_pool *pool; /* NULL: malloc */
    const route *rt;
    size_t body_len;
    char clen[24], date[32];
    nghttp2_nv nva[5];
} floor_srv;

static ssize_t f_body_read(nghttp2_session *s, int32_t id, uint8_t *p, size_t length,
                           uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    const floor_srv *f = src->ptr;
    (void)s, (void)id, (void)ud, (void)length; /* the body fits a frame: checked at setup */
    memcpy(p, f->rt->body, f->body_len);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)f->body_len;
}

static int f_on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    floor_srv *f = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    nghttp2_data_provider prd = {.source.ptr = f, .read_callback = f_body_read};
    if (nghttp2_submit_response(s, frame->hd.stream_id, f->nva, 5, &prd))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static int floor_serve(server *sv, const uint8_t *in, size_t n, buf *out)
{
    floor_srv *f = (floor_srv *)sv;
    if (nghttp2_session_mem_recv(f->s, in, n) != (ssize_t)n)
        return -1;
    for (;;) {
        const uint8_t *p;
        ssize_t k = nghttp2_session_mem_send(f->s, &p);
        if (k <= 0)
            return k < 0 ? -1 : 0;
        buf_put(out, p, (size_t)k);
    }
}

static int floor_done(server *sv)
{
    floor_srv *f = (floor_srv *)sv;
    nghttp2_session_del(f->s);
    if (f->pool)
        cel_pool_free(f->pool);
    free(f);
    return 0;
}

static server *floor_new(const char *mode, const route *rt)
{
    int nopri = !strcmp(mode, "floor-nopri");
    int pool = !strcmp(mode, "floor-pool") || !strcmp(mode, "floor-both") || nopri;
    int nohttp = !strcmp(mode, "floor-nohttp") || !strcmp(mode, "floor-both") || nopri;
    floor_srv *f = calloc(1, sizeof(*f));
    if (!f)
        die("out of memory");
    f->base.serve = floor_serve;
    f->base.done = floor_done;
    f->rt = rt;
    f->body_len = strlen(rt->body);
    if (f->body_len > 16384)
        die("%s: a floor body must fit one DATA frame", rt->path);
    snprintf(f->clen, sizeof(f->clen), "%zu", f->body_len);
    time_t now = time(NULL);
    struct tm tm;
    strftime(f->date, sizeof(f->date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    f->nva[0] = NV(":status", "200", 3);
    f->nva[1] = NV("server", CEL_SERVER_NAME, sizeof(CEL_SERVER_NAME) - 1);
    f->nva[2] = NV("date", f->date, strlen(f->date));
    f->nva[3] = NV("content-type", rt->ctype, strlen(rt->ctype));
    f->nva[4] = NV("content-length", f->clen, strlen(f->clen));

    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) || nghttp2_option_new(&opt))
        die("out of memory");
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, f_on_frame_recv);
    if (nohttp)
        nghttp2_option_set_no_http_messaging(opt, 1);
    nghttp2_mem mem;
    if (pool && !(f->pool = cel_pool_new(8u << 20)))
        die("out of memory");
    cel_h2_pool_mem(&mem, f->pool);
    int rv = nghttp2_session_server_new3(&f->s, cb, f, opt, pool ? &mem : NULL);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv)
        die("nghttp2_session_server_new3: %s", nghttp2_strerror(rv));
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS},
                                   {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1}};
    if (nghttp2_submit_settings(f->s, NGHTTP2_FLAG_NONE, iv, nopri ? 2 : 1))
        die("server SETTINGS failed");
    return &f->base;
}

/* ---- daemon: celerisd's request path ---- */

typedef struct daemon_srv {
    server base;
    cel_env env;
    cel_outq q;
    cel_h2 *h;
    struct event *ev; /* runs the round, from the loop */
    /* the round on_round runs */
    int measured, rc;
    const uint8_t *in;
    size_t n;
    buf *out;
} daemon_srv;

static ssize_t sink_writev(void *ctx, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        buf_put(ctx, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
    }
    return (ssize_t)total;
}

/* What conn.c's on_read and pump do with a read of N bytes. */
static int daemon_serve(server *sv, const uint8_t *in, size_t n, buf *out)
{
    daemon_srv *d = (daemon_srv *)sv;
    struct timeval now;
    event_base_gettimeofday_cached(d->env.base, &now);
    d->env.now = now;
    cel_env_tick(&d->env, no_alloc ? d->env.date_sec : now.tv_sec);
    cel_count(&d->env.stats->bytes_in, n);
    if (cel_h2_recv(d->h, in, n))
        return -1;
    do {
        if (cel_h2_send(d->h) || cel_outq_flush(&d->q, sink_writev, out))
            return -1;
    } while (cel_h2_want_write(d->h));
    return 0;
}

static void on_round(evutil_socket_t fd, short what, void *arg)
{
    daemon_srv *d = arg;
    (void)fd, (void)what;
    d->rc = serve_timed(&d->base, d->measured, d->in, d->n, d->out);
}

static int daemon_run(server *sv, int measured, const uint8_t *in, size_t n, buf *out)
{
    daemon_srv *d = (daemon_srv *)sv;
    d->measured = measured;
    d->in = in;
    d->n = n;
    d->out = out;
    d->rc = -1;
    event_active(d->ev, EV_READ, 0);
    if (event_base_loop(d->env.base, EVLOOP_ONCE | EVLOOP_NONBLOCK) < 0)
        return -1;
    return d->rc;
}

static int daemon_done(server *sv)
{
    daemon_srv *d = (daemon_srv *)sv;
    cel_h2_free(d->h);
    cel_outq_deinit(&d->q);
    size_t users = d->env.gen->users;
    if (users)
        fprintf(stderr, "celeris-inproc-bench: %zu users of the generation left\n", users);
    event_free(d->ev);
    struct event_base *base = d->env.base;
    cel_genref_deinit(&d->env);
    cel_env_deinit(&d->env);
    event_base_free(base);
    free(d);
    return users ? -1 : 0;
}

static cel_config *load_routes(void)
{
    int fd = memfd_create("celeris-inproc-bench.yaml", MFD_CLOEXEC);
    if (fd < 0 || write(fd, bench_yaml, sizeof(bench_yaml) - 1) != sizeof(bench_yaml) - 1)
        die("cannot write the config to a memfd");
    char path[64], err[512];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    cel_config *cfg = cel_config_load(path, err, sizeof(err));
    close(fd);
    if (!cfg)
        die("built-in config does not load: %s", err);
    return cfg;
}

static server *daemon_new(void)
{
    daemon_srv *d = calloc(1, sizeof(*d));
    if (!d)
        die("out of memory");
    d->base.serve = daemon_serve;
    d->base.run = daemon_run;
    d->base.done = daemon_done;
    if (cel_h2_global_init())
        die("cel_h2_global_init failed");
    cel_config *cfg = load_routes();
    cel_log_level = cfg->log_level;
    struct event_base *base = event_base_new();
    if (!base || cel_env_init(&d->env, 0, base) || cel_genref_init(&d->env, cfg))
        die("env setup failed");
    cel_config_unref(cfg); /* the env holds its own */
    d->env.stats = cel_stats_worker(0);
    cel_outq_init(&d->q, d->env.pool);
    d->h = cel_h2_new(&d->env, &d->q, NULL, NULL,
                      &(cel_conn_view){"127.0.0.1", -1, NULL, 0, 0, 0, 0, {0}});
    d->ev = event_new(base, -1, 0, on_round, d);
    if (!d->env.stats || !d->h || !d->ev)
        die("session setup failed");
    return &d->base;
}

/* ---- rounds ---- */

/* K requests out, the server's round, the answers checked. 0 or -1. */
static int round_trip(server *sv, client *c, unsigned k, int measured, buf *cin, buf *sout)
{
    client_submit(c, k);
    cin->len = 0;
    client_out(c, cin);
    sout->len = 0;
    int rc = sv->run ? sv->run(sv, measured, cin->p, cin->len, sout)
                     : serve_timed(sv, measured, cin->p, cin->len, sout);
    if (rc) {
        fprintf(stderr, "celeris-inproc-bench: the server side failed\n");
        return -1;
    }
    client_in(c, sout);
    for (unsigned i = 0; i < k; i++) {
        if (c->slots[i].open) {
            fprintf(stderr,
                    "celeris-inproc-bench: a stream of the round is still open after the answer\n");
            return -1;
        }
    }
    return c->wrong ? -1 : 0;
}

/* One mode on one route: WARMUP rounds, then N requests M at a time. */

static int bench(const char *mode, const route *rt, uint64_t n, unsigned m, unsigned warmup)
{
    server *sv = strcmp(mode, "daemon") ? floor_new(mode, rt) : daemon_new();
    client c;
    client_init(&c, rt);
    buf cin = {0}, sout = {0};
    int rc = 0;
    for (unsigned i = 0; i < warmup && !rc; i++)
        rc = round_trip(sv, &c, m, 0, &cin, &sout);
    uint64_t before = c.right, t0 = now_ns();
    alloc_calls = 0;
    for (uint64_t left = n; left && !rc;) {
        unsigned k = left < m ? (unsigned)left : m;
        rc = round_trip(sv, &c, k, 1, &cin, &sout);
        left -= k;
    }
    uint64_t total = now_ns() - t0, server_ns = sv->ns;
    if (sv->done(sv))
        rc = -1;
    client_deinit(&c);
    free(cin.p);
    free(sout.p);
    uint64_t right = c.right - before;
    if (rc || right != n) {
        fprintf(stderr,
                "celeris-inproc-bench: %s %s: FAILED, %llu of %llu measured responses right\n",
                mode, rt->path, (unsigned long long)right, (unsigned long long)n);
        return -1;
    }
    printf("%s %s: %llu requests, every response checked; wall clock (noisy): %.0f ns/request "
           "server side, %.0f with the client\n",
           mode, rt->path, (unsigned long long)n, (double)server_ns / (double)n,
           (double)total / (double)n);
    int daemon = !strcmp(mode, "daemon");
    if (daemon || !strcmp(mode, "floor-pool"))
        printf("%s %s: %llu libc allocations in the measured rounds\n", mode, rt->path,
               (unsigned long long)alloc_calls);
    if (daemon && no_alloc && alloc_calls) {
        fprintf(stderr,
                "celeris-inproc-bench: %s %s: FAILED, the warm request path called "
                "libc's allocator %llu times\n",
                mode, rt->path, (unsigned long long)alloc_calls);
        return -1;
    }
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: celeris-inproc-bench --mode MODE [--route PATH] [-n N] [-m STREAMS] "
          "[-w ROUNDS] [--no-alloc]\n"
          "  MODE   floor-malloc, floor-pool, floor-nohttp, floor-both, floor-nopri, daemon,\n"
          "         or all (every floor on /bench and the daemon on every route)\n"
          "  PATH   /bench (default), /json or /users/123/posts/456 (/users)\n"
          "  -n     measured requests (default 20000)\n"
          "  -m     concurrent requests per round, as h2load -m (default 10, at most 128)\n"
          "  -w     warm-up rounds before the measured ones (default 100)\n"
          "  --no-alloc  fail if the daemon's measured rounds call malloc/calloc/realloc\n"
          "Under valgrind --tool=callgrind --collect-atstart=no --toggle-collect=server_round\n"
          "callgrind counts the server side of the measured rounds only.\n",
          f);
}

static unsigned long long number(const char *opt, const char *v, unsigned long long max)
{
    char *end;
    unsigned long long x = v ? strtoull(v, &end, 10) : 0;
    if (!v || !*v || *end || x > max)
        die("%s wants a number up to %llu", opt, max);
    return x;
}

int main(int argc, char **argv)
{
    const char *mode = NULL, *path = "/bench";
    unsigned long long n = 20000, m = 10, warmup = 100;
    alloc_counting = 0; /* until the first measured round */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-alloc")) {
            no_alloc = 1;
            continue;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--mode"))
            mode = v;
        else if (!strcmp(a, "--route"))
            path = v;
        else if (!strcmp(a, "-n"))
            n = number(a, v, 1000000000ull);
        else if (!strcmp(a, "-m"))
            m = number(a, v, MAX_STREAMS);
        else if (!strcmp(a, "-w"))
            warmup = number(a, v, 1000000ull);
        else {
            usage(stderr);
            return 2;
        }
    }
    const route *rt = NULL;
    for (size_t i = 0; i < CEL_ARRAY_LEN(routes); i++)
        if (!strcmp(path, routes[i].path) || (!strcmp(path, "/users") && i == 2))
            rt = &routes[i];
    int known = mode && !strcmp(mode, "daemon");
    for (size_t i = 0; mode && i < CEL_ARRAY_LEN(floor_modes); i++)
        known |= !strcmp(mode, floor_modes[i]);
    if (!mode || (!known && strcmp(mode, "all")) || !rt || n == 0 || m == 0) {
        usage(stderr);
        return 2;
    }
    if (strcmp(mode, "all"))
        return bench(mode, rt, n, (unsigned)m, (unsigned)warmup) ? 1 : 0;
    int failed = 0;
    for (size_t i = 0; i < CEL_ARRAY_LEN(floor_modes); i++)
        failed |= bench(floor_modes[i], &routes[0], n, (unsigned)m, (unsigned)warmup);
    for (size_t i = 0; i < CEL_ARRAY_LEN(routes); i++)
        failed |= bench("daemon", &routes[i], n, (unsigned)m, (unsigned)warmup);
    return failed ? 1 : 0;
}
