/* The module handler: a route instance of a loaded .so, and the celeris_*
 * functions of the module ABI (include/celeris/module.h) that modules call. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_view.h"
#include "env.h"
#include "handler.h"
#include "http.h"
#include "log.h"
#include "module.h"
#include "module_metrics.h"
#include "module_req.h"
#include "module_loop.h"
#include "real_ip.h"
#include "tls.h"

#define MAX_MODULE_HEADERS 64

typedef struct module_handler {
    cel_handler base;
    cel_module_image *img;
    const celeris_module *m;
    void *instance;
    unsigned nworkers;
    void **wdata; /* per worker id */
    char *route;
    atomic_uint warned; /* refusals already logged (1 << enum refusal) */
    /* What init declared (celeris_metric_declare). */
    cel_module_metrics *metrics;
} module_handler;

/* What a module can get refused, each logged once per route instance: a module
 * that repeats the mistake on every request costs no log line per request. */
enum refusal {
    REF_STATUS,
    REF_HEADER_NAME,
    REF_HEADER_VALUE,
    REF_HEADER_RESERVED,
    REF_HEADER_COUNT,
    REF_LATE_HEADER,
    REF_SECOND_ANSWER,
    REF_NOT_STREAMING,
};

enum { R_NEW, R_SYNC, R_STARTED, R_DONE, R_SUSPENDED };

struct celeris_req {
    cel_exchange *x; /* NULL once the front end is done with the request */
    module_handler *mh;
    cel_response *sync_res; /* inside handle(): where a plain response goes */
    int in_handle;
    int taken; /* the exchange was used directly: handle() must not answer */
    int state;
    cel_kv *hdrs;
    size_t nhdrs;
    cel_str ctype;
    celeris_async *token;
    void (*close_fn)(void *arg, int finished);
    void *close_arg;
    void (*writable_fn)(celeris_req *req, void *arg);
    void *writable_arg;
    cel_mod_events *events; /* its timers and watches (module_loop.c) */
    /* The body as a stream (celeris_req_body_on_data): */
    size_t (*body_fn)(celeris_req *req, const void *data, size_t len, int end, void *arg);
    void *body_arg;
    int body_paused;          /* body_fn took less than offered: until celeris_req_body_resume */
    int body_complete;        /* body_fn took the end, or the body failed */
    unsigned body_resumes;    /* celeris_req_body_resume calls, also from inside body_fn */
    size_t body_off;          /* a buffered body: what body_fn took of it */
    celeris_timer *body_due;  /* a buffered body: its delivery from the loop */
    struct cleanup *cleanups; /* celeris_req_on_cleanup, newest first */
    int aborted;              /* celeris_resp_abort answered already */
};

struct cleanup {
    struct cleanup *next;
    void (*fn)(void *arg);
    void *arg;
};

struct celeris_async {
    cel_task task;    /* first: the env runs it */
    celeris_req *req; /* NULL when the request went away meanwhile */
    cel_env *env;
    cel_body_owner hold; /* keeps the instance and its code loaded */
    void (*fn)(celeris_req *req, void *arg);
    void *arg;
};

/* ---- the handler ---- */

/* init() of the handler being built on this thread, for celeris_init_body_stream. */
static _Thread_local struct {
    const celeris_init_args *args;
    module_handler *mh;
} initializing;

/* The names module authors find in celeris/module.h. */
static const char *code_name(int rc)
{
    switch (rc) {
    case CELERIS_OK:
        return "CELERIS_OK";
    case CELERIS_ERROR:
        return "CELERIS_ERROR";
    case CELERIS_NOTFOUND:
        return "CELERIS_NOTFOUND";
    case CELERIS_AGAIN:
        return "CELERIS_AGAIN";
    case CELERIS_STATE:
        return "CELERIS_STATE";
    case CELERIS_NOMEM:
        return "CELERIS_NOMEM";
    case CELERIS_SUSPENDED:
        return "CELERIS_SUSPENDED";
    default:
        return "a code celeris/module.h does not define";
    }
}

/* "module NAME on route "PATH"", the name left out when the descriptor has none. */
static void describe(const module_handler *mh, char *buf, size_t len)
{
    const char *name = cel_module_name(mh->img);
    if (name && name[0])
        snprintf(buf, len, "module %s on route \"%s\"", name, mh->route);
    else
        snprintf(buf, len, "module on route \"%s\"", mh->route);
}

/* Returns RC, the code a module gets for a refused call, and logs why the
 * first time this route instance refuses it for KIND. */
static int refuse(const celeris_req *req, enum refusal kind, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(const celeris_req *req, enum refusal kind, int rc, const char *fmt, ...)
{
    module_handler *mh = req->mh;
    unsigned bit = 1u << kind;
    if (atomic_load_explicit(&mh->warned, memory_order_relaxed) & bit ||
        atomic_fetch_or(&mh->warned, bit) & bit)
        return rc;
    char who[256], why[512];
    describe(mh, who, sizeof(who));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    cel_log(CEL_LOG_WARN, "%s: %s: %s (%d) (logged once per route)", who, why, code_name(rc), rc);
    return rc;
}

static void on_close(cel_exchange *x, int finished)
{
    celeris_req *r = x->hdata;
    r->x = NULL;
    if (r->token)
        r->token->req = NULL;
    if (r->close_fn)
        r->close_fn(r->close_arg, finished);
    cel_module_events_close(r->events);
    for (struct cleanup *c = r->cleanups; c; c = c->next)
        c->fn(c->arg);
}

static void take(celeris_req *r)
{
    if (!r->taken) {
        r->taken = 1;
        r->x->hdata = r;
        r->x->on_close = on_close;
    }
}

static void stream_body(celeris_req *r);

/* Something can still call the module back for an unanswered request. */
static int waiting(const celeris_req *r)
{
    return r->token || cel_module_events_armed(r->events) || (r->body_fn && !r->body_complete);
}

static int handle(cel_handler *h, cel_exchange *x, cel_response *res)
{
    module_handler *mh = (module_handler *)h;
    celeris_req *r = cel_arena_alloc(x->arena, sizeof(*r));
    if (!r)
        return CEL_ENOMEM;
    memset(r, 0, sizeof(*r));
    r->x = x;
    r->mh = mh;
    r->sync_res = res;
    r->in_handle = 1;
    if (CEL_UNLIKELY(x->body_streamed))
        stream_body(r);
    int rc = mh->m->handle(mh->instance, r);
    r->in_handle = 0;
    r->sync_res = NULL;
    if (r->state == R_SYNC)
        return 0;
    if (rc >= 0 && r->state != R_NEW)
        return CEL_HANDLER_ASYNC; /* started, answered through the exchange, or suspended */
    char who[256];
    describe(mh, who, sizeof(who));
    if (rc >= 0)
        cel_log(CEL_LOG_ERROR, "%s: handle returned without answering", who);
    else
        cel_log(CEL_LOG_ERROR, "%s: handle returned %s (%d)", who, code_name(rc), rc);
    if (!r->taken) {
        cel_response_error(res, 500);
        return 0;
    }
    /* Failed after taking the exchange: a token still out finds it answered. */
    r->state = R_DONE;
    if (!r->aborted)
        x->ops->fail(x);
    return CEL_HANDLER_ASYNC;
}

static int worker_init(cel_handler *h, cel_env *env)
{
    module_handler *mh = (module_handler *)h;
    if (!mh->m->worker_init || env->worker_id >= mh->nworkers)
        return 0;
    return mh->m->worker_init(mh->instance, (celeris_worker *)env, &mh->wdata[env->worker_id]) ==
                   CELERIS_OK
               ? 0
               : CEL_EIO;
}

static void worker_fini(cel_handler *h, cel_env *env)
{
    module_handler *mh = (module_handler *)h;
    if (mh->m->worker_fini && env->worker_id < mh->nworkers)
        mh->m->worker_fini(mh->instance, (celeris_worker *)env, mh->wdata[env->worker_id]);
}

static void destroy(cel_handler *h)
{
    module_handler *mh = (module_handler *)h;
    if (mh->m->fini)
        mh->m->fini(mh->instance);
    cel_module_metrics_free(mh->metrics);
    cel_module_unref(mh->img);
    free(mh->wdata);
    free(mh->route);
    free(mh);
}

cel_handler *cel_handler_module_new(cel_module_image *img, const char *route,
                                    const char *config_json, unsigned nworkers, char *err,
                                    size_t errlen)
{
    module_handler *mh = calloc(1, sizeof(*mh));
    if (!mh || !(mh->wdata = calloc(nworkers ? nworkers : 1, sizeof(void *))) ||
        !(mh->route = strdup(route))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    mh->base.type = "module";
    mh->base.handle = handle;
    mh->base.destroy = destroy;
    mh->base.worker_init = worker_init;
    mh->base.worker_fini = worker_fini;
    mh->img = img;
    mh->m = cel_module_desc(img);
    mh->nworkers = nworkers;
    if (mh->m->init) {
        cel_module_init_ctx ctx = {
            {sizeof(celeris_init_args), route, config_json, strlen(config_json), nworkers},
            cel_module_name(img),
            NULL};
        char msg[512] = "";
        cel_module_init_open(&ctx);
        initializing.args = &ctx.args;
        initializing.mh = mh;
        int rc = mh->m->init(&ctx.args, &mh->instance, msg, sizeof(msg));
        initializing.args = NULL;
        cel_module_init_close(&ctx);
        mh->metrics = ctx.metrics;
        if (rc != CELERIS_OK) {
            char who[256];
            describe(mh, who, sizeof(who));
            snprintf(err, errlen, "%s: init failed: %s", who, msg[0] ? msg : "(no message)");
            goto fail;
        }
    }
    return &mh->base;
fail:
    if (mh) {
        cel_module_metrics_free(mh->metrics);
        free(mh->wdata);
        free(mh->route);
        free(mh);
    }
    cel_module_unref(img);
    return NULL;
}

/* ---- the request ---- */

static celeris_str to_str(cel_str s)
{
    return (celeris_str){s.n ? s.p : "", s.n};
}

celeris_str celeris_req_method(const celeris_req *req)
{
    return to_str(req->x->req->method);
}

celeris_str celeris_req_path(const celeris_req *req)
{
    return to_str(req->x->req->path);
}

celeris_str celeris_req_query(const celeris_req *req)
{
    return to_str(req->x->req->query);
}

static int decoded(celeris_req *req, cel_str raw, int plus, celeris_str *out)
{
    char *d = cel_arena_alloc(req->x->arena, raw.n + 1);
    if (!d)
        return CELERIS_NOMEM;
    size_t n = cel_pct_decode(d, raw.p, raw.n, plus);
    d[n] = 0;
    *out = (celeris_str){d, n};
    return CELERIS_OK;
}

int celeris_req_param(celeris_req *req, const char *name, celeris_str *out)
{
    cel_str raw;
    if (cel_request_param(req->x->req, name, strlen(name), &raw))
        return CELERIS_NOTFOUND;
    return decoded(req, raw, 0, out);
}

int celeris_req_query_arg(celeris_req *req, const char *name, celeris_str *out)
{
    cel_str raw;
    if (cel_request_query(req->x->req, name, strlen(name), &raw))
        return CELERIS_NOTFOUND;
    return decoded(req, raw, 1, out);
}

int celeris_req_header(const celeris_req *req, const char *name, celeris_str *out)
{
    char low[256];
    size_t n = strlen(name);
    if (n >= sizeof(low))
        return CELERIS_NOTFOUND;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)cel_http_lower((unsigned char)name[i]);
    cel_str v;
    if (cel_request_header(req->x->req, low, n, &v))
        return CELERIS_NOTFOUND;
    *out = to_str(v);
    return CELERIS_OK;
}

size_t celeris_req_header_count(const celeris_req *req)
{
    return req->x->req->nheaders;
}

int celeris_req_header_at(const celeris_req *req, size_t i, celeris_str *name, celeris_str *value)
{
    if (i >= req->x->req->nheaders)
        return CELERIS_NOTFOUND;
    *name = to_str(req->x->req->headers[i].name);
    *value = to_str(req->x->req->headers[i].value);
    return CELERIS_OK;
}

celeris_str celeris_req_body(const celeris_req *req)
{
    return (celeris_str){req->x->req->body_len ? req->x->req->body : "", req->x->req->body_len};
}

/* ---- the connection ---- */

_Static_assert(CELERIS_TLS_VERSION == CEL_TLS_VERSION && CELERIS_TLS_CIPHER == CEL_TLS_CIPHER &&
                   CELERIS_TLS_SNI == CEL_TLS_SNI && CELERIS_TLS_ALPN == CEL_TLS_ALPN &&
                   CELERIS_TLS_CLIENT_SUBJECT == CEL_TLS_CLIENT_SUBJECT,
               "tls.h and celeris/module.h name the same items");

/* A request with no connection behind it (tests) has no addresses and no TLS. */
static const cel_conn_view *conn_of(const celeris_req *req)
{
    static const cel_conn_view none = {"-", -1, NULL, 0, 0};
    return req->x->conn ? req->x->conn : &none;
}

celeris_str celeris_req_authority(const celeris_req *req)
{
    return to_str(req->x->req->authority);
}

celeris_str celeris_req_scheme(const celeris_req *req)
{
    if (req->x->http2)
        return to_str(req->x->req->scheme);
    return conn_of(req)->ssl ? (celeris_str){"https", 5} : (celeris_str){"http", 4};
}

celeris_str celeris_req_protocol(const celeris_req *req)
{
    if (!req->x->http2)
        return (celeris_str){"HTTP/1.1", 8};
    return conn_of(req)->ssl ? (celeris_str){"h2", 2} : (celeris_str){"h2c", 3};
}

/* The address of FD's peer (LOCAL: its own) into the request's arena. */
static int sock_addr(celeris_req *req, int fd, int local, celeris_str *ip, unsigned *port)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if ((local ? getsockname(fd, (struct sockaddr *)&ss, &sl)
               : getpeername(fd, (struct sockaddr *)&ss, &sl)) < 0)
        return CELERIS_NOTFOUND;
    char *buf = cel_arena_alloc(req->x->arena, INET6_ADDRSTRLEN);
    if (!buf)
        return CELERIS_NOMEM;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, buf, INET6_ADDRSTRLEN);
        *port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, buf, INET6_ADDRSTRLEN);
        *port = ntohs(a->sin6_port);
    } else {
        return CELERIS_NOTFOUND;
    }
    *ip = (celeris_str){buf, strlen(buf)};
    return CELERIS_OK;
}

int celeris_req_addr(celeris_req *req, int which, celeris_str *ip, unsigned *port)
{
    const cel_conn_view *c = conn_of(req);
    unsigned p = 0;
    if (which == CELERIS_ADDR_PEER || which == CELERIS_ADDR_LOCAL) {
        int rc = sock_addr(req, c->fd, which == CELERIS_ADDR_LOCAL, ip, &p);
        if (rc == CELERIS_OK && port)
            *port = p;
        return rc;
    }
    if (which != CELERIS_ADDR_CLIENT)
        return CELERIS_NOTFOUND;
    /* What the access log shows: the PROXY header's source, then real_ip's. */
    char real[64];
    const char *addr = c->peer;
    if (req->x->real_ip)
        addr = cel_real_ip_of(req->x->real_ip, req->x->req, c->peer, real, sizeof(real));
    if (addr != c->peer) {
        p = 0; /* a forwarding header names no port */
    } else if (c->proxied) {
        p = c->proxy_port;
    } else {
        celeris_str sip;
        int rc = sock_addr(req, c->fd, 0, &sip, &p);
        if (rc != CELERIS_OK)
            return rc;
    }
    char *d = cel_arena_dup(req->x->arena, addr, strlen(addr));
    if (!d)
        return CELERIS_NOMEM;
    *ip = (celeris_str){d, strlen(addr)};
    if (port)
        *port = p;
    return CELERIS_OK;
}

celeris_str celeris_req_tls(celeris_req *req, int what)
{
    const cel_conn_view *c = conn_of(req);
    char buf[512];
    size_t n;
    if (!c->ssl || !(n = cel_tls_info(c->ssl, what, buf, sizeof(buf))))
        return (celeris_str){"", 0};
    char *d = cel_arena_dup(req->x->arena, buf, n);
    return d ? (celeris_str){d, n} : (celeris_str){"", 0};
}

void *celeris_req_worker_data(const celeris_req *req)
{
    unsigned id = req->x->env->worker_id;
    return id < req->mh->nworkers ? req->mh->wdata[id] : NULL;
}

struct event_base *celeris_req_event_base(const celeris_req *req)
{
    return req->x->env->base;
}

unsigned celeris_worker_id(const celeris_worker *worker)
{
    return ((const cel_env *)worker)->worker_id;
}

unsigned celeris_req_worker_id(const celeris_req *req)
{
    return req->x->env->worker_id;
}

/* ---- the response ---- */

/* Fields the server writes itself, whatever the module says (content-type,
 * also the server's, is taken as the type before this is asked). */
static int reserved_header(const char *lower)
{
    return cel_http_field_owner(lower, strlen(lower)) != 0;
}

int celeris_resp_header(celeris_req *req, const char *name, const char *value)
{
    if (!req->x)
        return CELERIS_STATE;
    if (req->state != R_NEW && req->state != R_SUSPENDED)
        return refuse(req, REF_LATE_HEADER, CELERIS_STATE,
                      "celeris_resp_header(\"%.64s\") after the response started", name);
    if (!cel_http_is_token(name, strlen(name)))
        return refuse(req, REF_HEADER_NAME, CELERIS_ERROR,
                      "celeris_resp_header refused the name \"%.64s\": not an HTTP token", name);
    if (strpbrk(value, "\r\n"))
        return refuse(req, REF_HEADER_VALUE, CELERIS_ERROR,
                      "celeris_resp_header refused the value of \"%.64s\": CR or LF in it", name);
    if (req->nhdrs == MAX_MODULE_HEADERS)
        return refuse(req, REF_HEADER_COUNT, CELERIS_ERROR,
                      "celeris_resp_header refused \"%.64s\": more than %d headers", name,
                      MAX_MODULE_HEADERS);
    size_t n = strlen(name), vn = strlen(value);
    char *nm = cel_arena_alloc(req->x->arena, n + 1);
    char *v = cel_arena_dup(req->x->arena, value, vn);
    if (!nm || !v)
        return CELERIS_NOMEM;
    for (size_t i = 0; i <= n; i++)
        nm[i] = (char)cel_http_lower((unsigned char)name[i]);
    if (strcmp(nm, "content-type") == 0) {
        req->ctype = (cel_str){v, vn};
        return CELERIS_OK;
    }
    if (reserved_header(nm))
        return refuse(req, REF_HEADER_RESERVED, CELERIS_ERROR,
                      "celeris_resp_header refused \"%s\": the server sets it", nm);
    if (!req->hdrs) {
        req->hdrs = cel_arena_alloc(req->x->arena, MAX_MODULE_HEADERS * sizeof(cel_kv));
        if (!req->hdrs)
            return CELERIS_NOMEM;
    }
    req->hdrs[req->nhdrs++] = (cel_kv){{nm, n}, {v, vn}};
    return CELERIS_OK;
}

static void fill_head(const celeris_req *req, int status, cel_response *res)
{
    memset(res, 0, sizeof(*res));
    res->status = status;
    res->content_type = req->ctype.n ? req->ctype : CEL_STR_LIT("application/octet-stream");
    res->headers = req->hdrs;
    res->nheaders = req->nhdrs;
}

static int can_answer(const celeris_req *req, int status)
{
    if (!req->x)
        return CELERIS_STATE;
    if (req->state != R_NEW && req->state != R_SUSPENDED)
        return refuse(req, REF_SECOND_ANSWER, CELERIS_STATE,
                      "a second answer (status %d) after the response started", status);
    if (status < 200 || status > 599)
        return refuse(req, REF_STATUS, CELERIS_ERROR,
                      "status %d refused: only 200 to 599 can be answered", status);
    return CELERIS_OK;
}

/* A module ends its answer outside handle (from a timer, a pool thread's
 * task, a writable callback): the end time is now, not the time of the
 * connection event that last read the worker's clock. Inside handle, that
 * event's time is the right one. */
static void stamp(const celeris_req *req)
{
    if (!req->in_handle)
        req->x->env->now_us = cel_clock_us();
}

int celeris_resp_send(celeris_req *req, int status, const void *body, size_t len)
{
    int rc = can_answer(req, status);
    if (rc)
        return rc;
    char *copy = cel_arena_dup(req->x->arena, body, len);
    if (!copy)
        return CELERIS_NOMEM;
    if (req->in_handle && !req->taken) {
        fill_head(req, status, req->sync_res);
        req->sync_res->body = copy;
        req->sync_res->body_len = len;
        req->state = R_SYNC;
        return CELERIS_OK;
    }
    cel_response res;
    fill_head(req, status, &res);
    res.body = copy;
    res.body_len = len;
    take(req);
    req->state = R_DONE;
    stamp(req);
    return req->x->ops->respond(req->x, &res, NULL) ? CELERIS_ERROR : CELERIS_OK;
}

int celeris_resp_printf(celeris_req *req, int status, const char *fmt, ...)
{
    if (!req->x)
        return CELERIS_STATE;
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return CELERIS_ERROR;
    if ((size_t)n < sizeof(small))
        return celeris_resp_send(req, status, small, (size_t)n);
    char *big = cel_arena_alloc(req->x->arena, (size_t)n + 1);
    if (!big)
        return CELERIS_NOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return celeris_resp_send(req, status, big, (size_t)n);
}

int celeris_resp_send_ref(celeris_req *req, int status, const void *body, size_t len,
                          void (*release)(void *arg), void *arg)
{
    int rc = can_answer(req, status);
    if (rc) {
        if (release)
            release(arg);
        return rc;
    }
    cel_response res;
    fill_head(req, status, &res);
    res.body = body;
    res.body_len = len;
    cel_body_owner owner = {release, arg};
    take(req);
    req->state = R_DONE;
    stamp(req);
    return req->x->ops->respond(req->x, &res, release ? &owner : NULL) ? CELERIS_ERROR : CELERIS_OK;
}

int celeris_resp_start(celeris_req *req, int status)
{
    int rc = can_answer(req, status);
    if (rc)
        return rc;
    cel_response res;
    fill_head(req, status, &res);
    take(req);
    req->state = R_STARTED;
    return req->x->ops->start(req->x, &res) ? CELERIS_ERROR : CELERIS_OK;
}

/* Why a stream call is not allowed now, once per route. */
static int not_streaming(const celeris_req *req, const char *call)
{
    if (!req->x)
        return CELERIS_STATE;
    return refuse(req, REF_NOT_STREAMING, CELERIS_STATE, "%s %s", call,
                  req->state == R_DONE ? "after the response ended" : "before celeris_resp_start");
}

int celeris_resp_write(celeris_req *req, const void *data, size_t len)
{
    if (!req->x || req->state != R_STARTED)
        return not_streaming(req, "celeris_resp_write");
    int rc = req->x->ops->write(req->x, data, len);
    return rc == CEL_EAGAIN   ? CELERIS_AGAIN
           : rc == CEL_ENOMEM ? CELERIS_NOMEM
           : rc               ? CELERIS_ERROR
                              : CELERIS_OK;
}

int celeris_resp_end(celeris_req *req)
{
    if (!req->x || req->state != R_STARTED)
        return not_streaming(req, "celeris_resp_end");
    req->state = R_DONE;
    stamp(req);
    return req->x->ops->end(req->x) ? CELERIS_ERROR : CELERIS_OK;
}

size_t celeris_resp_buffered(const celeris_req *req)
{
    return req->x && req->state == R_STARTED ? req->x->ops->buffered(req->x) : 0;
}

static void writable(cel_exchange *x)
{
    celeris_req *r = x->hdata;
    void (*fn)(celeris_req *, void *) = r->writable_fn;
    r->writable_fn = NULL;
    if (fn)
        fn(r, r->writable_arg);
}

int celeris_resp_on_writable(celeris_req *req, void (*fn)(celeris_req *req, void *arg), void *arg)
{
    if (!req->x || req->state != R_STARTED)
        return not_streaming(req, "celeris_resp_on_writable");
    req->writable_fn = fn;
    req->writable_arg = arg;
    req->x->on_writable = writable;
    return CELERIS_OK;
}

/* ---- asynchronous completion ---- */

static void run_token(cel_task *t)
{
    celeris_async *a = (celeris_async *)t;
    celeris_req *r = a->req;
    a->env->tasks_pending--;
    if (r) {
        r->token = NULL;
        a->fn(r, a->arg);
        if (r->x && r->state == R_SUSPENDED && !waiting(r)) {
            char who[256];
            describe(r->mh, who, sizeof(who));
            cel_log(CEL_LOG_ERROR, "%s: resumed without answering", who);
            r->state = R_DONE;
            stamp(r);
            r->x->ops->fail(r->x);
        }
    } else {
        a->fn(NULL, a->arg);
    }
    a->hold.release(a->hold.arg);
    cel_pool_release(a->env->pool, a);
}

celeris_async *celeris_req_suspend(celeris_req *req)
{
    if (!req->x || req->token || (req->state != R_NEW && req->state != R_SUSPENDED))
        return NULL;
    celeris_async *a = cel_pool_alloc(req->x->env->pool, sizeof(*a));
    if (!a)
        return NULL;
    memset(a, 0, sizeof(*a));
    a->task.run = run_token;
    a->req = req;
    a->env = req->x->env;
    req->x->ops->hold(req->x, &a->hold);
    a->env->tasks_pending++;
    req->token = a;
    req->state = R_SUSPENDED;
    take(req);
    return a;
}

void celeris_async_resume(celeris_async *a, void (*fn)(celeris_req *req, void *arg), void *arg)
{
    a->fn = fn;
    a->arg = arg;
    if (cel_env_self() == a->env)
        run_token(&a->task);
    else
        cel_env_post(a->env, &a->task);
}

int celeris_req_on_close(celeris_req *req, void (*fn)(void *arg, int finished), void *arg)
{
    if (!req->x)
        return CELERIS_STATE;
    req->close_fn = fn;
    req->close_arg = arg;
    take(req);
    return CELERIS_OK;
}

/* ---- timers and watches (module_loop.c) ---- */

static void settle(celeris_req *req);

/* The request's set of timers and watches, its exchange taken over (so
 * on_close runs) and, when it has no answer yet, marked as waiting. NULL:
 * *RC says why. */
static cel_mod_events *events_of(celeris_req *req, int *rc)
{
    *rc = CELERIS_STATE;
    if (!req->x)
        return NULL;
    if (!req->events &&
        !(req->events = cel_module_events_new(req->x->arena, req->x->env, settle))) {
        *rc = CELERIS_NOMEM;
        return NULL;
    }
    take(req);
    if (req->state == R_NEW)
        req->state = R_SUSPENDED;
    return req->events;
}

int celeris_timer_start(celeris_req *req, uint64_t ms, unsigned flags,
                        void (*fn)(celeris_req *req, void *arg), void *arg, celeris_timer **out)
{
    if (!fn || (flags & ~CELERIS_TIMER_REPEAT) || (ms == 0 && (flags & CELERIS_TIMER_REPEAT)))
        return CELERIS_ERROR;
    int rc;
    cel_mod_events *set = events_of(req, &rc);
    return set ? cel_module_timer_start(set, req, ms, flags, fn, arg, out) : rc;
}

int celeris_watch_start(celeris_req *req, int fd, unsigned events,
                        void (*fn)(celeris_req *req, int fd, unsigned events, void *arg), void *arg,
                        celeris_watch **out)
{
    if (!fn || fd < 0 || (events & ~(CELERIS_WATCH_READ | CELERIS_WATCH_WRITE)))
        return CELERIS_ERROR;
    int rc;
    cel_mod_events *set = events_of(req, &rc);
    return set ? cel_module_watch_start(set, req, fd, events, fn, arg, out) : rc;
}

/* After a timer, watch or body function returned: a request left unanswered
 * with nothing to wait for is ended with a 500 (logged). */
static void settle(celeris_req *req)
{
    if (!req->x || req->state != R_SUSPENDED || waiting(req))
        return;
    char who[256];
    describe(req->mh, who, sizeof(who));
    cel_log(CEL_LOG_ERROR,
            "%s: a timer, watch or body function left the request unanswered with nothing "
            "to wait for",
            who);
    req->state = R_DONE;
    stamp(req);
    req->x->ops->fail(req->x);
}

/* ---- the request body as a stream ---- */

int celeris_init_body_stream(const celeris_init_args *args)
{
    if (!args || args != initializing.args)
        return CELERIS_STATE;
    initializing.mh->base.body_stream = 1;
    return CELERIS_OK;
}

/* Offers DATA to the module's function: *TOOK is what it took; 1 when that
 * was all (and the end, with END). */
static int offer(celeris_req *r, const char *p, size_t n, int end, size_t *took)
{
    *took = 0;
    if (r->state == R_DONE) {
        *took = n; /* answered: the rest of the body is dropped */
        return 1;
    }
    if (!r->body_fn || r->body_paused || r->body_complete)
        return 0;
    unsigned resumes = r->body_resumes;
    size_t k = r->body_fn(r, p, n, end, r->body_arg);
    *took = k > n ? n : k;
    if (*took < n) {
        r->body_paused = r->body_resumes == resumes; /* not resumed from inside */
        return 0;
    }
    if (end)
        r->body_complete = 1;
    return 1;
}

static int on_body(cel_exchange *x, const char *p, size_t n, int end, size_t *took)
{
    celeris_req *r = x->hdata;
    if (end < 0) {
        /* the front end answers (413, 400) or cuts the stream */
        *took = 0;
        r->body_complete = 1;
        r->state = R_DONE;
        return 0;
    }
    int all = offer(r, p, n, end, took);
    if (r->x)
        settle(r);
    return all;
}

static void stream_body(celeris_req *r)
{
    take(r);
    r->x->on_body = on_body;
}

/* A buffered (or no) body, delivered from the loop like a streamed one. */
static void deliver_buffered(celeris_req *r, void *arg)
{
    (void)arg;
    cel_request *q = r->x->req;
    size_t took;
    offer(r, q->body + r->body_off, q->body_len - r->body_off, 1, &took);
    r->body_off += took;
}

int celeris_req_body_on_data(celeris_req *req,
                             size_t (*fn)(celeris_req *req, const void *data, size_t len, int end,
                                          void *arg),
                             void *arg)
{
    if (!fn)
        return CELERIS_ERROR;
    if (!req->x || req->body_complete)
        return CELERIS_STATE;
    req->body_fn = fn;
    req->body_arg = arg;
    return celeris_req_body_resume(req);
}

int celeris_req_body_resume(celeris_req *req)
{
    if (!req->x || !req->body_fn || req->body_complete)
        return CELERIS_STATE;
    req->body_paused = 0;
    req->body_resumes++;
    take(req);
    if (req->state == R_NEW)
        req->state = R_SUSPENDED;
    if (req->x->body_streamed) {
        req->x->ops->body_resume(req->x);
        return CELERIS_OK;
    }
    if (req->body_due)
        return celeris_timer_restart(req->body_due, 0);
    return celeris_timer_start(req, 0, 0, deliver_buffered, NULL, &req->body_due);
}

int celeris_req_body_streamed(const celeris_req *req)
{
    return req->x && req->x->body_streamed;
}

void celeris_log(int level, const char *fmt, ...)
{
    static const int map[] = {CEL_LOG_DEBUG, CEL_LOG_INFO, CEL_LOG_WARN, CEL_LOG_ERROR};
    int l = level < 0 ? 0 : level > 3 ? 3 : level;
    if (map[l] < cel_log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cel_log(map[l], "module: %s", msg);
}

/* ---- per-request memory, cleanups, abort ---- */

void *celeris_req_alloc(celeris_req *req, size_t n)
{
    if (!req->x || n > SIZE_MAX / 2)
        return NULL;
    /* The arena aligns to 8; one spare word gives 16. */
    char *p = cel_arena_alloc(req->x->arena, (n ? n : 1) + 8);
    if (!p)
        return NULL;
    return p + ((uintptr_t)p & 8);
}

int celeris_req_on_cleanup(celeris_req *req, void (*fn)(void *arg), void *arg)
{
    if (!req->x)
        return CELERIS_STATE;
    struct cleanup *c = cel_arena_alloc(req->x->arena, sizeof(*c));
    if (!c)
        return CELERIS_NOMEM;
    *c = (struct cleanup){req->cleanups, fn, arg};
    req->cleanups = c;
    take(req);
    return CELERIS_OK;
}

int celeris_resp_abort(celeris_req *req)
{
    if (!req->x || req->state == R_DONE || req->state == R_SYNC)
        return CELERIS_STATE;
    take(req);
    req->state = R_DONE;
    req->aborted = 1;
    stamp(req);
    req->x->ops->fail(req->x);
    return CELERIS_OK;
}

/* ---- cookies and forms (module_req.c) ---- */

int celeris_req_cookie(celeris_req *req, const char *name, celeris_str *out)
{
    return req->x ? cel_module_cookie(req, req->x->req, name, out) : CELERIS_STATE;
}

int celeris_req_form(celeris_req *req, const char *name, celeris_str *out)
{
    return req->x ? cel_module_form(req, req->x->req, name, out) : CELERIS_STATE;
}
