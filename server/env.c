#include "env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "http.h"
#include "log.h"

/* getrandom blocks only before the kernel's pool is first ready (early boot);
 * should it fail, the clock and the env's address still tell workers apart. */
static void seed(cel_env *e)
{
    if (getrandom(e->rng, sizeof(e->rng), 0) != (ssize_t)sizeof(e->rng)) {
        e->rng[0] = e->now_us ^ (uint64_t)(uintptr_t)e;
        e->rng[1] = (uint64_t)e->now.tv_sec * 0x9e3779b97f4a7c15u;
        e->rng[2] = e->worker_id + 1;
        e->rng[3] = (uint64_t)getpid();
    }
    if (!(e->rng[0] | e->rng[1] | e->rng[2] | e->rng[3]))
        e->rng[0] = 1; /* the one state xoshiro never leaves */
}

int cel_env_init(cel_env *e, unsigned id, struct event_base *base)
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
    e->gen = NULL;
    e->retired = NULL;
    e->stats = NULL;
    e->date_sec = 0;
    e->codecs = NULL;
    e->codecs_free = NULL;
    if (e->efd < 0 || !e->pool || !e->rbuf) {
        cel_env_deinit(e);
        return CEL_ENOMEM;
    }
    gettimeofday(&e->now, NULL);
    e->now_us = cel_clock_us();
    seed(e);
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

void cel_env_deinit(cel_env *e)
{
    cel_env_run_tasks(e);
    if (e->efd >= 0)
        close(e->efd);
    e->efd = -1;
    pthread_mutex_destroy(&e->inbox_lock);
    free(e->rbuf);
    e->rbuf = NULL;
    if (e->codecs)
        e->codecs_free(e->codecs);
    e->codecs = NULL;
    if (e->pool)
        cel_pool_free(e->pool);
    e->pool = NULL;
}

void cel_env_orphan(cel_env *e)
{
    e->orphaned = 1;
    if (self == e)
        self = NULL;
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
