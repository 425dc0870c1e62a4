#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "genref.h"
#include "log.h"
#include "proxy_proto.h"
#include "stats.h"
#include "tls.h"

typedef struct cel_wlistener {
    struct cel_wlistener *next;
    int fd;
    int owned;
    struct sockaddr_storage addr; /* to find the generation's settings for it (TLS) */
    socklen_t addrlen;
    unsigned id; /* cel_listen_id of addr: its connections' listen_id */
    struct event ev;
    cel_worker *w;
} wlistener;

enum { CMD_ADD, CMD_REMOVE };

/* A listener change posted by the main thread, run on the worker as a task. */
typedef struct wcmd {
    cel_task task; /* first: the env runs it */
    cel_worker *w;
    int type;
    int fd;
    int owned;
} wcmd;

#define BEAT_MS 1000

/* Accepts per listener event, so one busy listener cannot starve the loop. */
#define ACCEPTS_PER_EVENT 64
/* Back-off when the process is out of descriptors or memory. */
#define ACCEPT_PAUSE_MS 100
#define ACCEPT_LOG_EVERY_S 60

static void pause_accepting(cel_worker *w, int with_timer)
{
    if (!w->paused)
        for (wlistener *l = w->listeners; l; l = l->next)
            event_del(&l->ev);
    w->paused = 1;
    if (with_timer) {
        struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
        event_add(&w->resume_ev, &tv);
    }
}

static void resume_accepting(cel_worker *w)
{
    if (!w->paused || w->stopping)
        return;
    w->paused = 0;
    for (wlistener *l = w->listeners; l; l = l->next)
        event_add(&l->ev, NULL);
}

static int at_limit(const cel_worker *w)
{
    return w->nconns >= w->env.gen->cfg->limits.max_connections;
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    cel_worker *w = arg;
    (void)fd, (void)what;
    if (!at_limit(w))
        resume_accepting(w);
}

static void on_conn_close(cel_conn_host *host, cel_conn *c)
{
    cel_worker *w = (cel_worker *)host;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    atomic_store_explicit(&w->conns_now, w->nconns, memory_order_relaxed);
    if (w->env.stats)
        cel_uncount(&w->env.stats->connections_open[c->proto_id], 1);
    if (w->stopping) {
        if (w->nconns == 0)
            event_base_loopexit(w->host.base, NULL);
    } else if (w->paused && !at_limit(w) && !event_pending(&w->resume_ev, EV_TIMEOUT, NULL)) {
        resume_accepting(w);
    }
}

/* The current generation's settings for listener L (TLS, PROXY), or NULL. */
static const cel_listen *listener_conf(const cel_worker *w, const wlistener *l)
{
    const cel_config *cfg = w->env.gen->cfg;
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].addrlen == l->addrlen &&
            memcmp(&cfg->listen[i].addr, &l->addr, l->addrlen) == 0)
            return &cfg->listen[i];
    return NULL;
}

/* Out of descriptors lasts: the first failure is logged, then how many more
 * there were, once a minute at most (the pause retries ten times a second). */
static void accept_failed(cel_worker *w, int err)
{
    struct timeval tv;
    event_base_gettimeofday_cached(w->host.base, &tv);
    time_t now = tv.tv_sec;
    w->accept_failures++;
    if (w->accept_logged && now - w->accept_logged < ACCEPT_LOG_EVERY_S)
        return;
    if (w->accept_failures > 1)
        cel_log(CEL_LOG_WARN,
                "worker %u: cannot accept: %s; %lu times since the last report, "
                "pausing %d ms each",
                w->id, strerror(err), w->accept_failures, ACCEPT_PAUSE_MS);
    else
        cel_log(CEL_LOG_WARN,
                "worker %u: cannot accept: %s; pausing %d ms (reported once a "
                "minute while it lasts)",
                w->id, strerror(err), ACCEPT_PAUSE_MS);
    w->accept_logged = now;
    w->accept_failures = 0;
}

static void follow_generation(cel_conn_host *host);

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    wlistener *l = arg;
    cel_worker *w = l->w;
    (void)what;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        if (at_limit(w)) {
            pause_accepting(w, 0);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t peerlen = sizeof(peer);
        int fd = accept4(lfd, (struct sockaddr *)&peer, &peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                accept_failed(w, errno);
                pause_accepting(w, 1);
            }
            return;
        }
        if (cel_genref_behind(&w->env))
            follow_generation(&w->host);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int lowat = (int)w->env.gen->cfg->limits.tcp_notsent_lowat;
        if (lowat)
            setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
        const cel_listen *conf = listener_conf(w, l);
        cel_conn *c = cel_conn_new(&w->host, fd, conf ? conf->tls : NULL);
        if (!c) {
            cel_log(CEL_LOG_WARN, "worker %u: out of memory for a new connection", w->id);
            continue;
        }
        c->view.listen_id = l->id;
        c->proxy_wait = conf && conf->proxy_protocol &&
                        cel_cidr_match_sa(conf->trusted, conf->ntrusted, (struct sockaddr *)&peer);
        c->next = w->conns;
        c->prev = NULL;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        w->nconns++;
        atomic_store_explicit(&w->conns_now, w->nconns, memory_order_relaxed);
        if (w->env.stats) {
            cel_count(&w->env.stats->connections_open[CEL_PROTO_UNKNOWN], 1);
            cel_count(&w->env.stats->connections_total, 1);
        }
        cel_conn_start(c);
    }
}

static void on_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
    cel_worker *w = arg;
    (void)fd, (void)what;
    if (w->nconns)
        cel_log(CEL_LOG_WARN, "worker %u: shutdown timeout, closing %zu connections", w->id,
                w->nconns);
    while (w->conns)
        cel_conn_abort(w->conns);
    event_base_loopexit(w->host.base, NULL);
}

static void listener_free(wlistener *l)
{
    event_del(&l->ev);
    if (l->owned)
        close(l->fd);
    free(l);
}

static void drop_listeners(cel_worker *w)
{
    while (w->listeners) {
        wlistener *l = w->listeners;
        w->listeners = l->next;
        listener_free(l);
    }
}

static void add_listener(cel_worker *w, int fd, int owned)
{
    wlistener *l = calloc(1, sizeof(*l));
    if (!l) {
        cel_log(CEL_LOG_ERROR, "worker %u: out of memory adding a listener", w->id);
        if (owned)
            close(fd);
        return;
    }
    l->fd = fd;
    l->owned = owned;
    l->w = w;
    l->addrlen = sizeof(l->addr);
    if (getsockname(fd, (struct sockaddr *)&l->addr, &l->addrlen) < 0)
        l->addrlen = 0;
    l->id = l->addrlen ? cel_listen_id(&l->addr, l->addrlen) : 0;
    event_assign(&l->ev, w->host.base, fd, EV_READ | EV_PERSIST, on_accept, l);
    l->next = w->listeners;
    w->listeners = l;
    if (!w->paused)
        event_add(&l->ev, NULL);
}

static void remove_listener(cel_worker *w, int fd)
{
    for (wlistener **p = &w->listeners; *p; p = &(*p)->next) {
        wlistener *l = *p;
        if (l->fd != fd)
            continue;
        /* Take what is queued before letting go of the socket. */
        if (!w->paused)
            on_accept(fd, EV_READ, l);
        *p = l->next;
        listener_free(l);
        return;
    }
}

static void begin_stop(cel_worker *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    drop_listeners(w);
    event_del(&w->resume_ev);
    event_del(&w->beat_ev);
    for (cel_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        cel_conn_shutdown(c);
    }
    if (w->nconns == 0) {
        event_base_loopexit(w->host.base, NULL);
        return;
    }
    /* The generation in force now: a reload may have changed it. */
    uint32_t ms = w->env.gen->cfg->shutdown_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(&w->stop_ev, &tv);
}

static void refresh_generation(cel_worker *w)
{
    if (cel_config_published_generation() == w->env.gen->cfg->generation)
        return;
    cel_config *cfg = cel_config_acquire();
    if (cfg) {
        if (cel_genref_use(&w->env, cfg))
            cel_log(CEL_LOG_ERROR, "worker %u: out of memory switching configuration", w->id);
        cel_config_unref(cfg);
    }
}

/* cel_conn_host.follow: a connection is about to read and a newer generation
 * is out. A stopping worker keeps its own (see on_wake). */
static void follow_generation(cel_conn_host *host)
{
    cel_worker *w = (cel_worker *)host;
    if (!atomic_load(&w->stop))
        refresh_generation(w);
}

static void run_command(cel_task *t)
{
    wcmd *c = (wcmd *)t;
    cel_worker *w = c->w;
    if (c->type == CMD_ADD && !w->stopping)
        add_listener(w, c->fd, c->owned);
    else if (c->type == CMD_ADD && c->owned)
        close(c->fd); /* a stopping worker accepts nothing more */
    else if (c->type == CMD_REMOVE)
        remove_listener(w, c->fd);
    free(c);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    cel_worker *w = arg;
    uint64_t v;
    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        cel_log(CEL_LOG_WARN, "worker %u: eventfd read: %s", w->id, strerror(errno));
    /* A worker that is stopping keeps the generation it has: a newer one may
     * not even have a place for it (fewer workers). */
    if (atomic_load(&w->stop))
        begin_stop(w);
    else
        refresh_generation(w);
    cel_env_run_tasks(&w->env); /* listener changes, async completions */
    if (w->stopping && w->nconns == 0)
        event_base_loopexit(w->host.base, NULL);
}

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
    cel_worker *w = arg;
    (void)fd, (void)what;
    atomic_fetch_add_explicit(&w->beats, 1, memory_order_relaxed);
    cel_genref_flush_logs(&w->env);
}

static void *run(void *arg)
{
    cel_worker *w = arg;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (rc)
            cel_log(CEL_LOG_WARN, "worker %u: cannot pin to CPU %d: %s", w->id, w->cpu,
                    strerror(rc));
    }
    cel_env_set_self(&w->env);
    cel_genref_attach(&w->env, w->env.gen->cfg);
    event_base_dispatch(w->host.base);
    while (w->conns)
        cel_conn_close(w->conns);
    cel_env_run_tasks(&w->env);
    cel_genref_flush_logs(&w->env);
    /* Handlers' worker_fini runs here, on the worker's own thread. Tokens
     * still out (a module thread that has not answered yet) would keep the
     * stop waiting on module code: the env outlives the thread for them, and
     * whoever joins the worker runs their completions. */
    if (w->env.tasks_pending) {
        cel_log(CEL_LOG_INFO, "worker %u: ended with %zu module completions still out", w->id,
                w->env.tasks_pending);
        cel_genref_orphan(&w->env);
        return NULL;
    }
    cel_genref_deinit(&w->env);
    cel_env_deinit(&w->env);
    w->env_live = 0;
    return NULL;
}

static void worker_free(cel_worker *w)
{
    w->stopping = 1; /* listener tasks still queued only close their sockets */
    drop_listeners(w);
    if (w->host.base) {
        event_del(&w->wake_ev);
        event_del(&w->resume_ev);
        event_del(&w->stop_ev);
        event_del(&w->beat_ev);
        event_base_free(w->host.base);
    }
    if (w->env_live) {
        cel_genref_deinit(&w->env);
        cel_env_deinit(&w->env);
    }
    w->env_live = 0;
    w->host.base = NULL;
}

int cel_worker_start(cel_worker *w, unsigned id, int cpu, cel_config *cfg, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->cpu = cpu;
    atomic_init(&w->stop, 0);
    w->host.env = &w->env;
    w->host.on_close = on_conn_close;
    w->host.follow = follow_generation;

    struct event_config *ec = event_config_new();
    if (ec) {
        event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
        /* libevent's default loop clock is CLOCK_MONOTONIC_COARSE (a jiffy,
         * 4 ms at HZ=250): a module's 80 ms timer fired after 78 ms of
         * CLOCK_MONOTONIC. The precise clock costs one vDSO read per loop
         * turn, which the loop makes anyway, and libevent then waits on a
         * timerfd: one timerfd_settime a loop turn (304 beside 308
         * epoll_wait in 4 x 256 MiB HTTP/1.1 downloads). Dropping it needs
         * the timers that must not fire early to check the precise clock. */
        event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
        w->host.base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    if (!w->host.base || cel_env_init(&w->env, id, w->host.base)) {
        snprintf(err, errlen, "worker %u: cannot set up: %s", id, strerror(errno));
        worker_free(w);
        return CEL_ENOMEM;
    }
    w->env_live = 1;
    if (cel_genref_init(&w->env, cfg)) {
        snprintf(err, errlen, "worker %u: cannot set up: %s", id, strerror(ENOMEM));
        worker_free(w);
        return CEL_ENOMEM;
    }
    w->env.stats = cel_stats_worker(id);
    event_assign(&w->resume_ev, w->host.base, -1, 0, on_resume, w);
    event_assign(&w->stop_ev, w->host.base, -1, 0, on_stop_timeout, w);
    event_assign(&w->wake_ev, w->host.base, w->env.efd, EV_READ | EV_PERSIST, on_wake, w);
    event_add(&w->wake_ev, NULL);
    struct timeval beat = {BEAT_MS / 1000, (BEAT_MS % 1000) * 1000};
    event_assign(&w->beat_ev, w->host.base, -1, EV_PERSIST, on_beat, w);
    event_add(&w->beat_ev, &beat);
    int rc = pthread_create(&w->tid, NULL, run, w);
    if (rc) {
        snprintf(err, errlen, "worker %u: cannot start a thread: %s", id, strerror(rc));
        worker_free(w);
        return CEL_ENOMEM;
    }
    return 0;
}

void cel_worker_wake(cel_worker *w)
{
    uint64_t one = 1;
    if (write(w->env.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        cel_log(CEL_LOG_WARN, "worker %u: eventfd write: %s", w->id, strerror(errno));
}

void cel_worker_mark_leaving(cel_worker *w)
{
    atomic_store(&w->stop, 1);
}

void cel_worker_stop(cel_worker *w)
{
    atomic_store(&w->stop, 1);
    cel_worker_wake(w);
}

/* W's thread has ended: run what its tokens posted meanwhile, and free W
 * unless some are still out. */
static int collect(cel_worker *w)
{
    w->joined = 1;
    if (w->env_live && w->env.orphaned) {
        cel_env_run_tasks(&w->env);
        if (w->env.tasks_pending)
            return 0;
        cel_log(CEL_LOG_INFO, "worker %u: every module completion came back", w->id);
    }
    worker_free(w);
    return 1;
}

int cel_worker_join(cel_worker *w)
{
    if (!w->joined)
        pthread_join(w->tid, NULL);
    return collect(w);
}

int cel_worker_try_join(cel_worker *w)
{
    if (!w->joined && pthread_tryjoin_np(w->tid, NULL) != 0)
        return 0;
    return collect(w);
}

/* Workers the process ends with while their tokens are out: kept (never
 * freed) so that a module thread still holding a token posts to a live env,
 * and reachable, so the leak checker does not count them. Main thread only. */
static cel_worker *abandoned;

void cel_worker_abandon(cel_worker *w)
{
    w->next_abandoned = abandoned;
    abandoned = w;
}

static void post(cel_worker *w, int type, int fd, int owned)
{
    wcmd *c = calloc(1, sizeof(*c));
    if (!c) {
        cel_log(CEL_LOG_ERROR, "worker %u: out of memory posting a command", w->id);
        if (type == CMD_ADD && owned)
            close(fd);
        return;
    }
    c->task.run = run_command;
    c->w = w;
    c->type = type;
    c->fd = fd;
    c->owned = owned;
    cel_env_post(&w->env, &c->task); /* wakes the worker */
}

void cel_worker_add_listener(cel_worker *w, int fd, int owned)
{
    post(w, CMD_ADD, fd, owned);
}

void cel_worker_remove_listener(cel_worker *w, int fd)
{
    post(w, CMD_REMOVE, fd, 0);
}

void cel_worker_pin(cel_worker *w, int cpu)
{
    w->cpu = cpu;
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(w->tid, sizeof(set), &set);
    if (rc)
        cel_log(CEL_LOG_WARN, "worker %u: cannot pin to CPU %d: %s", w->id, cpu, strerror(rc));
}
