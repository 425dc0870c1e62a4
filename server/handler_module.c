/* The module handler: a route instance of a loaded .so, its handle and
 * middleware calls, and the module ABI's calls that outlive handle (suspension,
 * timers and watches, the body as a stream, per-request memory). The request's
 * getters are in handler_module_req.c, the response in handler_module_resp.c. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "handler.h"
#include "handler_internal.h"
#include "handler_module_internal.h"
#include "log.h"
#include "module.h"
#include "module_loop.h"
#include "module_metrics.h"

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
    case CELERIS_CONTINUE:
        return "CELERIS_CONTINUE";
    default:
        return "a code celeris/module.h does not define";
    }
}

/* "module NAME on route "PATH"", the name left out when the descriptor has none. */
static void describe(const module_handler *mh, char *buf, size_t len)
{
    const char *name = cel_module_name(mh->img);
    if (mh->mw)
        snprintf(buf, len, "middleware module %s%s%s%s", name ? name : "(unnamed)",
                 mh->route[0] ? " on route \"" : " (global)", mh->route, mh->route[0] ? "\"" : "");
    else if (name && name[0])
        snprintf(buf, len, "module %s on route \"%s\"", name, mh->route);
    else
        snprintf(buf, len, "module on route \"%s\"", mh->route);
}

int cel_modh_refuse(const celeris_req *req, enum refusal kind, int rc, const char *fmt, ...)
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

void cel_modh_on_close(cel_exchange *x, int finished)
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

static cel_handler *instance_new(cel_module_image *img, const char *route, const char *config_json,
                                 unsigned nworkers, int mw, char *err, size_t errlen)
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
    mh->mw = mw;
    if (mh->m->init) {
        cel_module_init_ctx ctx = {{sizeof(celeris_init_args), route, config_json,
                                    strlen(config_json), nworkers,
                                    mw ? CELERIS_INIT_MIDDLEWARE : 0},
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

cel_handler *cel_handler_module_new(cel_module_image *img, const char *route,
                                    const char *config_json, unsigned nworkers, char *err,
                                    size_t errlen)
{
    if (!cel_module_desc(img)->handle) {
        snprintf(err, errlen,
                 "module \"%s\" has no handle function: it is middleware only (list it under "
                 "middleware:)",
                 cel_module_path(img));
        cel_module_unref(img);
        return NULL;
    }
    return instance_new(img, route, config_json, nworkers, 0, err, errlen);
}

cel_handler *cel_module_mw_instance_new(cel_module_image *img, const char *route,
                                        const char *config_json, unsigned nworkers, char *err,
                                        size_t errlen)
{
    return instance_new(img, route, config_json, nworkers, 1, err, errlen);
}

/* ---- middleware ---- */

static celeris_req *mw_req(module_handler *mh, cel_exchange *x)
{
    celeris_req *r = cel_arena_alloc(x->arena, sizeof(*r));
    if (r) {
        memset(r, 0, sizeof(*r));
        r->x = x;
        r->mh = mh;
        r->mw = 1;
    }
    return r;
}

int cel_module_mw_request(cel_handler *h, cel_exchange *x, cel_response *res)
{
    module_handler *mh = (module_handler *)h;
    celeris_req *r = mw_req(mh, x);
    if (!r) {
        cel_response_error(res, 500);
        return 1;
    }
    r->sync_res = res;
    r->in_handle = 1;
    int rc = mh->m->on_request(mh->instance, r);
    r->in_handle = 0;
    r->sync_res = NULL;
    r->state = R_DONE; /* what it kept of REQ answers CELERIS_STATE from now on */
    if (res->status && rc != CELERIS_ERROR)
        return 1;
    if (rc == CELERIS_CONTINUE && !res->status)
        return 0;
    cel_modh_refuse(r, REF_MW_RETURN, rc,
                    "on_request returned this %s: the client gets a 500 (CELERIS_CONTINUE goes on)",
                    res->status ? "after answering" : "without answering");
    cel_response_error(res, 500);
    return 1;
}

void cel_module_mw_head(cel_handler *h, cel_exchange *x, int status, struct cel_fields *f)
{
    module_handler *mh = (module_handler *)h;
    celeris_req *r = mw_req(mh, x);
    if (!r)
        return;
    r->state = R_DONE;
    r->fields = f;
    mh->m->on_response_head(mh->instance, r, status);
    r->fields = NULL;
}

struct cel_fields *cel_module_req_fields(const celeris_req *req)
{
    return req->fields;
}

int cel_module_req_refuse_field(const celeris_req *req, int rc, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return cel_modh_refuse(req, REF_FIELD, rc, "%s", why);
}

int cel_modh_sync_only(const celeris_req *req, const char *call)
{
    return cel_modh_refuse(req, REF_SYNC_ONLY, CELERIS_STATE,
                           "%s refused: middleware answers synchronously (celeris_resp_send)",
                           call);
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
    if (CEL_UNLIKELY(req->mw)) {
        cel_modh_sync_only(req, "celeris_req_suspend");
        return NULL;
    }
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
    if (CEL_UNLIKELY(req->mw))
        return cel_modh_sync_only(req, "celeris_req_on_close");
    req->close_fn = fn;
    req->close_arg = arg;
    take(req);
    return CELERIS_OK;
}

/* ---- timers and watches (module_loop.c) ---- */

static void settle(celeris_req *req);

/* The request's set of timers and watches, its exchange taken over (so
 * cel_modh_on_close runs) and, when it has no answer yet, marked as waiting. NULL:
 * *RC says why. */
static cel_mod_events *events_of(celeris_req *req, int *rc)
{
    *rc = CELERIS_STATE;
    if (!req->x)
        return NULL;
    if (CEL_UNLIKELY(req->mw)) {
        cel_modh_sync_only(req, "a timer or watch");
        return NULL;
    }
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
    if (CEL_UNLIKELY(req->mw))
        return cel_modh_sync_only(req, "celeris_req_body_on_data");
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
    if (CEL_UNLIKELY(req->mw))
        return cel_modh_sync_only(req, "celeris_req_on_cleanup");
    struct cleanup *c = cel_arena_alloc(req->x->arena, sizeof(*c));
    if (!c)
        return CELERIS_NOMEM;
    *c = (struct cleanup){req->cleanups, fn, arg};
    req->cleanups = c;
    take(req);
    return CELERIS_OK;
}
