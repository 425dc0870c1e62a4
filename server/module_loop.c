#include "module_loop.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <string.h>

#include "env.h"

enum { KIND_TIMER, KIND_WATCH };

typedef struct cel_mod_event {
    struct event ev;
    struct cel_mod_event *next;
    cel_mod_events *set;
    celeris_req *req;
    cel_env *env;
    int kind;
    int armed;
    unsigned flags;
    struct timeval tv;
    int fd;
    void (*tfn)(celeris_req *req, void *arg);
    void (*wfn)(celeris_req *req, int fd, unsigned events, void *arg);
    void *arg;
} cel_mod_event;

struct cel_mod_events {
    cel_mod_event *head;
    unsigned armed;
    int *alive; /* while a function runs: cleared if the request ends under it */
    cel_arena *arena;
    cel_env *env;
    void (*settle)(celeris_req *req);
};

static void arm(cel_mod_event *e, int on)
{
    if (e->armed == on)
        return;
    e->armed = on;
    if (on)
        e->set->armed++;
    else
        e->set->armed--;
}

/* The worker's clocks move on as conn.c moves them on connection events: the
 * answer a function sends carries this moment's date and end time. */
static void clock_in(cel_env *env)
{
    event_base_gettimeofday_cached(env->base, &env->now);
    env->now_us = cel_clock_us();
    cel_env_tick(env, env->now.tv_sec);
}

static void run(cel_mod_event *e, unsigned events)
{
    cel_mod_events *set = e->set;
    celeris_req *req = e->req;
    int alive = 1;
    clock_in(e->env);
    set->alive = &alive;
    if (e->kind == KIND_TIMER)
        e->tfn(req, e->arg);
    else
        e->wfn(req, e->fd, events, e->arg);
    if (!alive)
        return;
    set->alive = NULL;
    set->settle(req);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    cel_mod_event *e = arg;
    (void)fd, (void)what;
    if (!(e->flags & CELERIS_TIMER_REPEAT))
        arm(e, 0);
    run(e, 0);
}

static void on_fd(evutil_socket_t fd, short what, void *arg)
{
    cel_mod_event *e = arg;
    (void)fd;
    run(e, ((what & EV_READ) ? CELERIS_WATCH_READ : 0) |
               ((what & EV_WRITE) ? CELERIS_WATCH_WRITE : 0));
}

cel_mod_events *cel_module_events_new(cel_arena *arena, cel_env *env,
                                      void (*settle)(celeris_req *req))
{
    cel_mod_events *set = cel_arena_alloc(arena, sizeof(*set));
    if (set)
        *set = (cel_mod_events){.arena = arena, .env = env, .settle = settle};
    return set;
}

static int event_new_of(cel_mod_events *set, celeris_req *req, int kind, cel_mod_event **out)
{
    cel_mod_event *e = cel_arena_alloc(set->arena, sizeof(*e));
    if (!e)
        return CELERIS_NOMEM;
    memset(e, 0, sizeof(*e));
    e->set = set;
    e->req = req;
    e->env = set->env;
    e->kind = kind;
    e->fd = -1;
    e->next = e->set->head;
    e->set->head = e;
    *out = e;
    return CELERIS_OK;
}

static struct timeval tv_of(uint64_t ms)
{
    return (struct timeval){(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
}

/* (Re)arms timer E for MS from now. */
static int timer_arm(cel_mod_event *e, uint64_t ms)
{
    if (ms == 0 && (e->flags & CELERIS_TIMER_REPEAT))
        return CELERIS_ERROR;
    event_del(&e->ev);
    e->tv = tv_of(ms);
    event_assign(&e->ev, e->env->base, -1, (e->flags & CELERIS_TIMER_REPEAT) ? EV_PERSIST : 0,
                 on_timer, e);
    if (event_add(&e->ev, &e->tv) < 0) {
        arm(e, 0);
        return CELERIS_NOMEM;
    }
    arm(e, 1);
    return CELERIS_OK;
}

int cel_module_timer_start(cel_mod_events *set, celeris_req *req, uint64_t ms, unsigned flags,
                           void (*fn)(celeris_req *req, void *arg), void *arg, celeris_timer **out)
{
    cel_mod_event *e;
    int rc = event_new_of(set, req, KIND_TIMER, &e);
    if (rc)
        return rc;
    e->flags = flags;
    e->tfn = fn;
    e->arg = arg;
    event_assign(&e->ev, e->env->base, -1, 0, on_timer, e);
    rc = timer_arm(e, ms);
    if (rc == CELERIS_OK && out)
        *out = (celeris_timer *)e;
    return rc;
}

int celeris_timer_restart(celeris_timer *t, uint64_t ms)
{
    return timer_arm((cel_mod_event *)t, ms);
}

int celeris_timer_cancel(celeris_timer *t)
{
    cel_mod_event *e = (cel_mod_event *)t;
    event_del(&e->ev);
    arm(e, 0);
    return CELERIS_OK;
}

static short ev_flags(unsigned events)
{
    return (short)(((events & CELERIS_WATCH_READ) ? EV_READ : 0) |
                   ((events & CELERIS_WATCH_WRITE) ? EV_WRITE : 0) | EV_PERSIST);
}

static int watch_set(cel_mod_event *e, unsigned events)
{
    event_del(&e->ev);
    event_assign(&e->ev, e->env->base, e->fd, ev_flags(events), on_fd, e);
    if (events && event_add(&e->ev, NULL) < 0) {
        arm(e, 0);
        return CELERIS_ERROR;
    }
    arm(e, 1);
    return CELERIS_OK;
}

int cel_module_watch_start(cel_mod_events *set, celeris_req *req, int fd, unsigned events,
                           void (*fn)(celeris_req *req, int fd, unsigned events, void *arg),
                           void *arg, celeris_watch **out)
{
    cel_mod_event *e;
    int rc = event_new_of(set, req, KIND_WATCH, &e);
    if (rc)
        return rc;
    e->fd = fd;
    e->wfn = fn;
    e->arg = arg;
    event_assign(&e->ev, e->env->base, fd, ev_flags(events), on_fd, e);
    rc = watch_set(e, events);
    if (rc == CELERIS_OK && out)
        *out = (celeris_watch *)e;
    return rc;
}

int celeris_watch_set(celeris_watch *w, unsigned events)
{
    cel_mod_event *e = (cel_mod_event *)w;
    if ((events & ~(CELERIS_WATCH_READ | CELERIS_WATCH_WRITE)) || !e->armed)
        return e->armed ? CELERIS_ERROR : CELERIS_STATE;
    return watch_set(e, events);
}

int celeris_watch_cancel(celeris_watch *w)
{
    cel_mod_event *e = (cel_mod_event *)w;
    event_del(&e->ev);
    arm(e, 0);
    return CELERIS_OK;
}

void cel_module_events_close(cel_mod_events *set)
{
    if (!set)
        return;
    for (cel_mod_event *e = set->head; e; e = e->next) {
        event_del(&e->ev);
        arm(e, 0);
    }
    if (set->alive)
        *set->alive = 0;
}

unsigned cel_module_events_armed(const cel_mod_events *set)
{
    return set ? set->armed : 0;
}
