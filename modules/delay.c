/*
 * delay: answers after N milliseconds, from a timer on the worker's event loop
 * or from a thread pool: the two asynchronous paths of the module ABI.
 *
 *   - path: /delay
 *     module: { name: delay, config: { ms: 1, mode: loop } }
 *   - path: /delay-thread
 *     module: { name: delay, config: { ms: 1, mode: thread, threads: 4 } }
 *
 * Loop mode needs no token and no libevent: a celeris_timer_start timer
 * belongs to the request, answers it when it fires, and is stopped by
 * celerisd if the client leaves first.
 *
 * Thread mode: a request's job is shared by two holders, the pool thread that
 * completes it and the request itself (until on_close); both let go on the
 * worker, so a plain count decides who frees it. A pool thread's late
 * completion finds the request gone (NULL) and only lets go of the job.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <celeris/module.h>

enum { MODE_LOOP, MODE_THREAD };

typedef struct job {
    struct job *next; /* the pool's queue */
    int refs;
    unsigned ms;
    celeris_async *token;
} job;

typedef struct delay {
    unsigned ms;
    int mode;
    unsigned nthreads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job *head, *tail;
    int stopping;
} delay;

static void unref(job *j)
{
    if (--j->refs == 0)
        free(j);
}

/* On the worker, from a pool thread's resume. */
static void complete(celeris_req *req, void *arg)
{
    job *j = arg;
    if (req) {
        celeris_resp_header(req, "content-type", "text/plain");
        celeris_resp_printf(req, 200, "delayed %u ms on thread\n", j->ms);
    }
    unref(j);
}

static void on_close(void *arg, int finished)
{
    (void)finished;
    unref(arg);
}

static void on_timer(celeris_req *req, void *arg)
{
    delay *d = arg;
    celeris_resp_header(req, "content-type", "text/plain");
    celeris_resp_printf(req, 200, "delayed %u ms on loop\n", d->ms);
}

static void *pool_main(void *arg)
{
    delay *d = arg;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->head && !d->stopping)
            pthread_cond_wait(&d->cond, &d->lock);
        if (!d->head)
            break;
        job *j = d->head;
        d->head = j->next;
        if (!d->head)
            d->tail = NULL;
        pthread_mutex_unlock(&d->lock);
        struct timespec ts = {j->ms / 1000, (long)(j->ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
            ;
        celeris_async_resume(j->token, complete, j); /* posted to the request's worker */
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

static void stop_pool(delay *d, unsigned started)
{
    pthread_mutex_lock(&d->lock);
    d->stopping = 1;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    for (unsigned i = 0; i < started; i++)
        pthread_join(d->threads[i], NULL);
}

static void fini(void *instance)
{
    delay *d = instance;
    if (d->mode == MODE_THREAD)
        stop_pool(d, d->nthreads);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    free(d->threads);
    free(d);
}

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    delay *d = calloc(1, sizeof(*d));
    if (!d)
        return CELERIS_ERROR;
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    json_error_t je;
    json_int_t ms = 1, threads = 4;
    const char *mode = "loop";
    json_t *cfg = json_loadb(args->config_json, args->config_len, 0, &je);
    if (!cfg || json_unpack_ex(cfg, &je, JSON_STRICT, "{s?I,s?s,s?I}", "ms", &ms, "mode", &mode,
                               "threads", &threads) != 0) {
        snprintf(err, errlen, "%s (delay knows: ms and threads, integers; mode, a string)",
                 je.text);
        json_decref(cfg);
        fini(d);
        return CELERIS_ERROR;
    }
    d->mode = strcmp(mode, "thread") == 0 ? MODE_THREAD : MODE_LOOP;
    int bad_mode = d->mode == MODE_LOOP && strcmp(mode, "loop") != 0;
    json_decref(cfg);
    if (bad_mode || ms < 0 || ms > 60000 || threads < 1 || threads > 256) {
        snprintf(err, errlen, "mode must be loop or thread, ms 0-60000 and threads 1-256");
        d->mode = MODE_LOOP;
        fini(d);
        return CELERIS_ERROR;
    }
    d->ms = (unsigned)ms;
    if (d->mode == MODE_THREAD) {
        d->threads = calloc((size_t)threads, sizeof(pthread_t));
        for (long i = 0; d->threads && i < threads; i++) {
            if (pthread_create(&d->threads[i], NULL, pool_main, d) != 0) {
                snprintf(err, errlen, "cannot start pool thread %ld", i);
                stop_pool(d, (unsigned)i);
                d->mode = MODE_LOOP;
                fini(d);
                return CELERIS_ERROR;
            }
            d->nthreads = (unsigned)i + 1;
        }
        if (!d->threads) {
            fini(d);
            return CELERIS_ERROR;
        }
    }
    *instance = d;
    return CELERIS_OK;
}

static int handle(void *instance, celeris_req *req)
{
    delay *d = instance;
    if (d->mode == MODE_LOOP)
        return celeris_timer_start(req, d->ms, 0, on_timer, d, NULL) == CELERIS_OK
                   ? CELERIS_SUSPENDED
                   : CELERIS_ERROR;
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return CELERIS_ERROR;
    j->refs = 2; /* the pool thread and the request */
    j->ms = d->ms;
    j->token = celeris_req_suspend(req);
    if (!j->token) {
        free(j);
        return CELERIS_ERROR;
    }
    celeris_req_on_close(req, on_close, j);
    pthread_mutex_lock(&d->lock);
    if (d->tail)
        d->tail->next = j;
    else
        d->head = j;
    d->tail = j;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    return CELERIS_SUSPENDED;
}

/* One field a line: clang-format would set these out in columns. */
/* clang-format off */
CELERIS_MODULE(delay) = {
    CELERIS_MODULE_HEADER,
    .name = "delay",
    .init = init,
    .fini = fini,
    .handle = handle,
};
/* clang-format on */
