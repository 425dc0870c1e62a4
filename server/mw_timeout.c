#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdlib.h>
#include <time.h>

#include "env.h"
#include "mw_timeout.h"

/* Every request under one timeout middleware waits the same time, so each
 * worker's requests are in deadline order when queued in arrival order: one
 * list and one libevent timer per worker, set for the list's head. */
struct cel_timer_entry {
    struct cel_timer_entry *prev, *next;
    struct tworker *w;
    cel_exchange *x;
    uint64_t deadline_us;
};

typedef struct tworker {
    struct event ev; /* pending only while the list is not empty */
    int armed;
    struct cel_timer_entry *head, *tail;
} tworker;

/* workers: at most 1024 (config.c); each worker's part is made by that
 * worker, on its first request, so no two threads write one slot */
#define MAX_WORKERS 1024

typedef struct mw_timeout {
    cel_mw base;
    uint64_t us;
    tworker *w[MAX_WORKERS];
} mw_timeout;

static void arm(tworker *w, uint64_t deadline, uint64_t now)
{
    uint64_t in = deadline > now ? deadline - now : 0;
    struct timeval tv = {(time_t)(in / 1000000u), (suseconds_t)(in % 1000000u)};
    evtimer_add(&w->ev, &tv);
    w->armed = 1;
}

static void unlink_entry(tworker *w, struct cel_timer_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        w->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        w->tail = e->prev;
    e->x->timer = NULL;
}

/* X's time is up: a 504 when nothing was answered, a reset (HTTP/2) or a
 * closed connection (HTTP/1.1) when a streamed answer is under way. The
 * front end then closes the exchange, and the handler hears on_close. */
static void expire(cel_exchange *x)
{
    int state = x->ops->state(x);
    if (state == CEL_X_WAITING) {
        cel_response res;
        cel_response_error(&res, 504);
        x->ops->respond(x, &res, NULL);
    } else if (state == CEL_X_STREAMING) {
        x->ops->fail(x);
    }
}

static void fire(evutil_socket_t fd, short what, void *arg)
{
    tworker *w = arg;
    (void)fd, (void)what;
    w->armed = 0;
    if (!w->head)
        return;
    /* The worker's clocks move on as on a connection event: the 504 carries
     * this moment's date, and the access log the time the request waited. */
    cel_env *env = w->head->x->env;
    event_base_gettimeofday_cached(env->base, &env->now);
    env->now_us = cel_clock_us();
    cel_env_tick(env, env->now.tv_sec);
    uint64_t now = env->now_us;
    /* libevent may wake a little early: what is due within 1 ms goes now */
    while (w->head && w->head->deadline_us <= now + 1000) {
        struct cel_timer_entry *e = w->head;
        unlink_entry(w, e);
        expire(e->x);
    }
    if (w->head)
        arm(w, w->head->deadline_us, now);
}

static int request(const cel_mw *mw, cel_exchange *x, cel_response *res)
{
    mw_timeout *m = (mw_timeout *)(uintptr_t)mw;
    (void)res;
    unsigned id = x->env->worker_id;
    if (x->timer || id >= MAX_WORKERS)
        return 0;
    tworker *w = m->w[id];
    if (!w) {
        if (!(w = calloc(1, sizeof(*w))))
            return 0;
        evtimer_assign(&w->ev, x->env->base, fire, w);
        m->w[id] = w;
    }
    struct cel_timer_entry *e = cel_arena_alloc(x->arena, sizeof(*e));
    if (!e)
        return 0;
    *e = (struct cel_timer_entry){w->tail, NULL, w, x, x->env->now_us + m->us};
    if (w->tail)
        w->tail->next = e;
    else
        w->head = e;
    w->tail = e;
    x->timer = e;
    if (!w->armed)
        arm(w, e->deadline_us, x->env->now_us);
    return 0;
}

void cel_mw_timeout_cancel(cel_exchange *x)
{
    struct cel_timer_entry *e = x->timer;
    tworker *w = e->w;
    unlink_entry(w, e);
    if (!w->head && w->armed) {
        evtimer_del(&w->ev);
        w->armed = 0;
    }
}

static void destroy(cel_mw *mw)
{
    mw_timeout *m = (mw_timeout *)mw;
    /* no request holds the generation any more: no timer is pending */
    for (size_t i = 0; i < MAX_WORKERS; i++)
        free(m->w[i]);
    free(m);
}

static const cel_mw_ops ops = {.request = request, .destroy = destroy, .flags = CEL_MW_ONE};

cel_mw *cel_mw_timeout_new(uint32_t ms)
{
    mw_timeout *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->base = (cel_mw){&ops, "timeout"};
    m->us = (uint64_t)ms * 1000u;
    return &m->base;
}
