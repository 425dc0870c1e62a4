#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/* Accepts per listener event, so one busy listener cannot starve the loop. */
#define ACCEPTS_PER_EVENT 64
/* Back-off when the process is out of descriptors or memory. */
#define ACCEPT_PAUSE_MS 100

static void pause_accepting(cel_worker *w, int with_timer)
{
    if (!w->paused)
        for (size_t i = 0; i < w->nlfds; i++)
            event_del(&w->levs[i]);
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
    for (size_t i = 0; i < w->nlfds; i++)
        event_add(&w->levs[i], NULL);
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
    if (w->stopping) {
        if (w->nconns == 0)
            event_base_loopexit(w->host.base, NULL);
    } else if (w->paused && !at_limit(w) && !event_pending(&w->resume_ev, EV_TIMEOUT, NULL)) {
        resume_accepting(w);
    }
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    cel_worker *w = arg;
    (void)what;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        if (at_limit(w)) {
            pause_accepting(w, 0);
            return;
        }
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                cel_log(CEL_LOG_WARN, "worker %u: cannot accept: %s; pausing %d ms", w->id,
                        strerror(errno), ACCEPT_PAUSE_MS);
                pause_accepting(w, 1);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        cel_conn *c = cel_conn_new(&w->host, fd);
        if (!c) {
            cel_log(CEL_LOG_WARN, "worker %u: out of memory for a new connection", w->id);
            continue;
        }
        c->next = w->conns;
        c->prev = NULL;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        w->nconns++;
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
        cel_conn_close(w->conns);
    event_base_loopexit(w->host.base, NULL);
}

static void begin_stop(cel_worker *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    for (size_t i = 0; i < w->nlfds; i++) {
        event_del(&w->levs[i]);
        close(w->lfds[i]);
        w->lfds[i] = -1;
    }
    event_del(&w->resume_ev);
    for (cel_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        cel_conn_shutdown(c);
    }
    if (w->nconns == 0) {
        event_base_loopexit(w->host.base, NULL);
        return;
    }
    struct timeval tv = {w->shutdown_timeout_ms / 1000, (w->shutdown_timeout_ms % 1000) * 1000};
    event_add(&w->stop_ev, &tv);
}

static void refresh_generation(cel_worker *w)
{
    if (cel_config_published_generation() == w->env.gen->cfg->generation)
        return;
    cel_config *cfg = cel_config_acquire();
    if (cfg) {
        if (cel_env_use(&w->env, cfg))
            cel_log(CEL_LOG_ERROR, "worker %u: out of memory switching configuration", w->id);
        cel_config_unref(cfg);
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    cel_worker *w = arg;
    uint64_t v;
    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        cel_log(CEL_LOG_WARN, "worker %u: eventfd read: %s", w->id, strerror(errno));
    refresh_generation(w);
    if (atomic_load(&w->stop))
        begin_stop(w);
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
    event_base_dispatch(w->host.base);
    while (w->conns)
        cel_conn_close(w->conns);
    return NULL;
}

static void worker_free(cel_worker *w)
{
    for (size_t i = 0; i < w->nlfds; i++)
        if (w->lfds[i] >= 0) {
            if (w->levs)
                event_del(&w->levs[i]);
            close(w->lfds[i]);
        }
    if (w->host.base) {
        event_del(&w->wake_ev);
        event_del(&w->resume_ev);
        event_del(&w->stop_ev);
        event_base_free(w->host.base);
    }
    if (w->efd >= 0)
        close(w->efd);
    free(w->levs);
    free(w->lfds);
    cel_env_deinit(&w->env);
    w->host.base = NULL;
}

int cel_worker_start(cel_worker *w, unsigned id, int cpu, int *lfds, size_t nlfds,
                     cel_config *cfg, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->cpu = cpu;
    w->lfds = lfds;
    w->nlfds = nlfds;
    w->efd = -1;
    w->shutdown_timeout_ms = cfg->shutdown_timeout_ms;
    atomic_init(&w->stop, 0);
    w->host.env = &w->env;
    w->host.on_close = on_conn_close;

    struct event_config *ec = event_config_new();
    if (ec) {
        event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
        w->host.base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    w->levs = calloc(nlfds, sizeof(*w->levs));
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!w->host.base || !w->levs || w->efd < 0 || cel_env_init(&w->env, cfg)) {
        snprintf(err, errlen, "worker %u: cannot set up: %s", id, strerror(errno));
        worker_free(w);
        return CEL_ENOMEM;
    }
    for (size_t i = 0; i < nlfds; i++) {
        event_assign(&w->levs[i], w->host.base, lfds[i], EV_READ | EV_PERSIST, on_accept, w);
        event_add(&w->levs[i], NULL);
    }
    event_assign(&w->resume_ev, w->host.base, -1, 0, on_resume, w);
    event_assign(&w->stop_ev, w->host.base, -1, 0, on_stop_timeout, w);
    event_assign(&w->wake_ev, w->host.base, w->efd, EV_READ | EV_PERSIST, on_wake, w);
    event_add(&w->wake_ev, NULL);
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
    if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        cel_log(CEL_LOG_WARN, "worker %u: eventfd write: %s", w->id, strerror(errno));
}

void cel_worker_stop(cel_worker *w)
{
    atomic_store(&w->stop, 1);
    cel_worker_wake(w);
}

void cel_worker_join(cel_worker *w)
{
    pthread_join(w->tid, NULL);
    worker_free(w);
}
