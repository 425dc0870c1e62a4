#include "env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "accesslog.h"
#include "http.h"
#include "log.h"

static cel_genref *genref_new(cel_env *e, cel_config *cfg)
{
    cel_genref *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->env = e;
    cel_config_ref(cfg);
    r->cfg = cfg;
    return r;
}

int cel_env_init(cel_env *e, unsigned id, struct event_base *base, cel_config *cfg)
{
    e->worker_id = id;
    e->base = base;
    e->inbox = NULL;
    e->tasks_pending = 0;
    e->orphaned = 0;
    pthread_mutex_init(&e->inbox_lock, NULL);
    e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->pool = cel_pool_new(8u << 20);
    e->rbuf = malloc(CEL_READ_BUF);
    e->gen = genref_new(e, cfg);
    e->retired = NULL;
    e->stats = NULL;
    e->date_sec = 0;
    if (e->efd < 0 || !e->pool || !e->rbuf || !e->gen) {
        cel_env_deinit(e);
        return CEL_ENOMEM;
    }
    gettimeofday(&e->now, NULL);
    e->now_us = cel_clock_us();
    cel_env_tick(e, e->now.tv_sec);
    return 0;
}

static _Thread_local cel_env *self;

cel_env *cel_env_self(void)
{
    return self;
}

void cel_env_set_self(cel_env *e)
{
    self = e;
}

static void genref_free(cel_env *e, cel_genref *r)
{
    if (!e->orphaned)
        cel_env_detach(e, r->cfg);
    cel_config_unref(r->cfg);
    free(r);
}

void cel_env_deinit(cel_env *e)
{
    cel_env_run_tasks(e);
    if (e->gen) {
        genref_free(e, e->gen);
        e->gen = NULL;
    }
    while (e->retired) {
        cel_genref *r = e->retired;
        e->retired = r->next;
        genref_free(e, r);
    }
    if (e->efd >= 0)
        close(e->efd);
    e->efd = -1;
    pthread_mutex_destroy(&e->inbox_lock);
    free(e->rbuf);
    e->rbuf = NULL;
    if (e->pool)
        cel_pool_free(e->pool);
    e->pool = NULL;
}

int cel_env_use(cel_env *e, cel_config *cfg)
{
    if (cfg == e->gen->cfg || cfg->generation < e->gen->cfg->generation)
        return 0;
    cel_genref *r = genref_new(e, cfg);
    if (!r)
        return CEL_ENOMEM;
    cel_env_attach(e, cfg);
    cel_genref *old = e->gen;
    e->gen = r;
    if (old->users == 0) {
        genref_free(e, old);
    } else {
        old->next = e->retired;
        e->retired = old;
    }
    return 0;
}

void cel_env_orphan(cel_env *e)
{
    cel_env_detach(e, e->gen->cfg);
    for (cel_genref *r = e->retired; r; r = r->next)
        cel_env_detach(e, r->cfg);
    e->orphaned = 1;
    if (self == e)
        self = NULL;
}

void cel_env_retire(cel_env *e, cel_genref *r)
{
    for (cel_genref **p = &e->retired; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            genref_free(e, r);
            return;
        }
    }
}

void cel_env_tick(cel_env *e, time_t now)
{
    if (now == e->date_sec)
        return;
    e->date_len = cel_http_date(e->date, now);
    e->date_sec = now;
}

void cel_env_post(cel_env *e, cel_task *t)
{
    pthread_mutex_lock(&e->inbox_lock);
    t->next = e->inbox;
    e->inbox = t;
    pthread_mutex_unlock(&e->inbox_lock);
    uint64_t one = 1;
    if (write(e->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        cel_log(CEL_LOG_WARN, "worker %u: eventfd write: %s", e->worker_id, strerror(errno));
}

void cel_env_run_tasks(cel_env *e)
{
    pthread_mutex_lock(&e->inbox_lock);
    cel_task *list = e->inbox;
    e->inbox = NULL;
    pthread_mutex_unlock(&e->inbox_lock);
    /* Posted newest first: run them in posting order. */
    cel_task *ordered = NULL;
    while (list) {
        cel_task *next = list->next;
        list->next = ordered;
        ordered = list;
        list = next;
    }
    while (ordered) {
        cel_task *t = ordered;
        ordered = t->next;
        t->run(t);
    }
}

void cel_env_attach(cel_env *e, cel_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        cel_handler *h = cfg->routes[i].handler;
        if (h->worker_init && h->worker_init(h, e))
            cel_log(CEL_LOG_ERROR, "worker %u: %s handler of route \"%s\": worker init failed",
                    e->worker_id, h->type, cfg->routes[i].pattern);
    }
}

void cel_env_detach(cel_env *e, cel_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        cel_handler *h = cfg->routes[i].handler;
        if (h->worker_fini)
            h->worker_fini(h, e);
    }
}

void cel_env_flush_logs(cel_env *e)
{
    if (e->gen && e->gen->cfg->accesslog)
        cel_accesslog_flush(e->gen->cfg->accesslog, e->worker_id);
    for (cel_genref *r = e->retired; r; r = r->next)
        if (r->cfg->accesslog)
            cel_accesslog_flush(r->cfg->accesslog, e->worker_id);
}
