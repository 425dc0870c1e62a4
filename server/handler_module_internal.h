/*
 * What the files of the module handler share: the route instance, the module's
 * request (struct celeris_req) and the calls one file makes in another.
 * Private to them: nothing outside server/handler_module*.c includes this. The
 * files, one concern each: handler_module.c the handler (the route instance,
 * handle, the middleware calls, suspension, timers, the body as a stream),
 * handler_module_req.c the request's getters (celeris_req_*),
 * handler_module_resp.c the response (celeris_resp_*).
 */
#ifndef CEL_HANDLER_MODULE_INTERNAL_H
#define CEL_HANDLER_MODULE_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>

#include "env.h"
#include "handler.h"
#include "handler_internal.h"
#include "module.h"
#include "module_loop.h"
#include "module_metrics.h"

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
    int mw; /* an item of a middleware: list (ROUTE "" for the global one) */
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
    REF_SYNC_ONLY,
    REF_FIELD,
    REF_MW_RETURN,
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
    /* A middleware's request (MW) answers synchronously at most; FIELDS is
     * the head its on_response_head edits, during that call. */
    int mw;
    struct cel_fields *fields;
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
/* Returns RC, the code a module gets for a refused call, and logs why the
 * first time this route instance refuses it for KIND. */
int cel_modh_refuse(const celeris_req *req, enum refusal kind, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* CALL refused for a middleware's request, which answers synchronously or not
 * at all: CELERIS_STATE, logged once per route. */
int cel_modh_sync_only(const celeris_req *req, const char *call);

/* The exchange's on_close for a taken request: runs its close function, its
 * timers' and watches' end and its cleanups. */
void cel_modh_on_close(cel_exchange *x, int finished);

/* The request uses its exchange directly: handle() must not answer, and the
 * request learns when the exchange goes away. */
static inline void take(celeris_req *r)
{
    if (!r->taken) {
        r->taken = 1;
        r->x->hdata = r;
        r->x->on_close = cel_modh_on_close;
    }
}

/* A module ends its answer outside handle (from a timer, a pool thread's
 * task, a writable callback): the end time is now, not the time of the
 * connection event that last read the worker's clock. Inside handle, that
 * event's time is the right one. */
static inline void stamp(const celeris_req *req)
{
    if (!req->in_handle)
        req->x->env->now_us = cel_clock_us();
}

#endif
