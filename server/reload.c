#include "reload.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "notify.h"
#include "stats.h"
#include "tls.h"

static int same_addr(const cel_listen *a, const struct sockaddr_storage *ss, socklen_t len)
{
    return a->addrlen == len && memcmp(&a->addr, ss, len) == 0;
}

/* A systemd-passed socket bound to L's address, or -1. */
static int inherited_for(const cel_server *s, const cel_listen *l)
{
    for (size_t i = 0; i < s->ninherited; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        if (getsockname(s->inherited[i], (struct sockaddr *)&ss, &len) == 0 &&
            same_addr(l, &ss, len))
            return s->inherited[i];
    }
    return -1;
}

static cel_slot *find_slot(cel_slot *slots, size_t n, const cel_listen *l)
{
    for (size_t i = 0; i < n; i++)
        if (same_addr(&slots[i].addr, &l->addr, l->addrlen))
            return &slots[i];
    return NULL;
}

/* Opens sockets FROM..TO-1 of SLOT (per-worker ones); on failure closes what it
 * opened and writes the reason into ERR. */
static int open_range(const char *file, cel_slot *slot, unsigned from, unsigned to, char *err,
                      size_t errlen)
{
    if (slot->shared_fd >= 0)
        return 0;
    for (unsigned w = from; w < to; w++) {
        char msg[256];
        /* One unix socket per path: every worker accepts on a dup of it. */
        if (slot->addr.addr.ss_family == AF_UNIX && w > 0) {
            slot->fds[w] = fcntl(slot->fds[0], F_DUPFD_CLOEXEC, 0);
            if (slot->fds[w] < 0)
                snprintf(msg, sizeof(msg), "cannot share %s: %s", slot->addr.text, strerror(errno));
        } else {
            slot->fds[w] = cel_listener_open(&slot->addr, msg, sizeof(msg));
        }
        if (slot->fds[w] < 0) {
            snprintf(err, errlen, "%s:%u:%u: %s", file, slot->addr.loc.line, slot->addr.loc.col,
                     msg);
            for (unsigned k = from; k < w; k++)
                close(slot->fds[k]);
            return -1;
        }
    }
    return 0;
}

static void close_slot_fds(cel_slot *slot, unsigned from, unsigned to)
{
    if (slot->shared_fd >= 0)
        return;
    for (unsigned w = from; w < to; w++)
        if (slot->fds[w] >= 0)
            close(slot->fds[w]);
}

static int slot_fd(const cel_slot *slot, unsigned w)
{
    return slot->shared_fd >= 0 ? slot->shared_fd : slot->fds[w];
}

static void free_slots(cel_slot *slots, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(slots[i].fds);
    free(slots);
}

/* Whether this process already holds a socket on L's address or one that
 * overlaps it (ours from the running generation, or passed by systemd): such
 * an address is not probed, since the probe would find our own socket. */
static int held(const cel_server *s, const cel_listen *l)
{
    for (size_t i = 0; i < s->nslots; i++)
        if (cel_listen_overlap(&s->slots[i].addr, l))
            return 1;
    for (size_t i = 0; i < s->ninherited; i++) {
        cel_listen got = {.addrlen = sizeof(got.addr)};
        if (getsockname(s->inherited[i], (struct sockaddr *)&got.addr, &got.addrlen) == 0 &&
            cel_listen_overlap(&got, l))
            return 1;
    }
    return 0;
}

/* Refuses an address another process listens on, before any socket of CFG is
 * opened (so two addresses of one file that overlap do not trip over each other). */
static int probe_new(const cel_server *s, const cel_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const cel_listen *l = &cfg->listen[i];
        char msg[256];
        if (!held(s, l) && cel_listener_probe(l, msg, sizeof(msg))) {
            snprintf(err, errlen, "%s:%u:%u: %s", cfg->file, l->loc.line, l->loc.col, msg);
            return -1;
        }
    }
    return 0;
}

/*
 * The sockets CFG needs with NWORKERS workers, reusing what S has open: an
 * address in both keeps its sockets (so nothing queued on them is lost), new
 * addresses and new workers get new ones. Nothing in S changes. On failure
 * every socket opened here is closed again.
 */
static cel_slot *plan_slots(cel_server *s, const cel_config *cfg, char *err, size_t errlen)
{
    unsigned old_n = s->nworkers, new_n = cfg->nworkers;
    if (probe_new(s, cfg, err, errlen))
        return NULL;
    cel_slot *slots = calloc(cfg->nlisten, sizeof(*slots));
    if (!slots) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t i;
    for (i = 0; i < cfg->nlisten; i++) {
        cel_slot *n = &slots[i];
        n->addr = cfg->listen[i];
        n->fds = malloc((new_n ? new_n : 1) * sizeof(int));
        if (!n->fds) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        for (unsigned w = 0; w < new_n; w++)
            n->fds[w] = -1;
        cel_slot *old = find_slot(s->slots, s->nslots, &n->addr);
        n->shared_fd = old ? old->shared_fd : inherited_for(s, &n->addr);
        unsigned keep = old ? (old_n < new_n ? old_n : new_n) : 0;
        if (old && n->shared_fd < 0)
            memcpy(n->fds, old->fds, keep * sizeof(int));
        if (open_range(cfg->file, n, keep, new_n, err, errlen))
            goto fail;
    }
    return slots;
fail:
    for (size_t k = 0; k < i; k++) {
        cel_slot *old = find_slot(s->slots, s->nslots, &slots[k].addr);
        unsigned keep = old ? (old_n < new_n ? old_n : new_n) : 0;
        close_slot_fds(&slots[k], keep, new_n);
    }
    free_slots(slots, cfg->nlisten);
    return NULL;
}

/* Starts workers FROM..TO-1 with signals blocked: the threads inherit the mask,
 * and the main thread alone handles signals. */
static int start_workers(cel_server *s, cel_config *cfg, const cel_slot *slots, size_t nslots,
                         unsigned from, unsigned to, char *err, size_t errlen)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = 0;
    for (unsigned w = from; w < to && rc == 0; w++) {
        cel_worker *wk = calloc(1, sizeof(*wk));
        if (!wk || cel_worker_start(wk, w, cfg->cpus[w], cfg, err, errlen)) {
            if (!wk)
                snprintf(err, errlen, "out of memory");
            free(wk);
            rc = -1;
            break;
        }
        s->workers[w] = wk;
        s->nworkers = w + 1;
        for (size_t i = 0; i < nslots; i++)
            cel_worker_add_listener(wk, slot_fd(&slots[i], w), slots[i].shared_fd < 0);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static void adopt_inherited(cel_server *s)
{
    int first;
    int n = cel_notify_listen_fds(&first);
    if (n <= 0)
        return;
    s->inherited = calloc((size_t)n, sizeof(int));
    if (!s->inherited)
        return;
    for (int i = 0; i < n; i++) {
        int fd = first + i;
        /* Workers share these: a blocking accept would stall the one that loses a race. */
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
            cel_log(CEL_LOG_WARN, "socket %d from systemd: %s", fd, strerror(errno));
        s->inherited[s->ninherited++] = fd;
    }
    cel_log(CEL_LOG_INFO, "using %d listening sockets passed by systemd", n);
}

int cel_server_start(cel_server *s, cel_config *cfg)
{
    char err[512];
    memset(s, 0, sizeof(*s));
    adopt_inherited(s);
    s->slots = plan_slots(s, cfg, err, sizeof(err));
    if (!s->slots) {
        cel_log(CEL_LOG_ERROR, "%s", err);
        cel_config_unref(cfg);
        free(s->inherited);
        return -1;
    }
    s->nslots = cfg->nlisten;
    s->cfg = cfg;
    cel_tls_set_ticket_rotation((cfg->tls_ticket_rotation_ms + 999) / 1000);
    cel_config_publish(cfg);
    /* Before any worker accepts: its first /status must see this generation. */
    cel_stats_reload(-1, cfg->generation, cfg->nworkers);
    for (size_t i = 0; i < s->ninherited; i++) {
        int used = 0;
        for (size_t k = 0; k < s->nslots; k++)
            used |= s->slots[k].shared_fd == s->inherited[i];
        if (!used)
            cel_log(CEL_LOG_WARN, "socket %d from systemd matches no listen address; unused",
                    s->inherited[i]);
    }
    s->workers = calloc(cfg->nworkers, sizeof(*s->workers));
    int rc = s->workers
                 ? start_workers(s, cfg, s->slots, s->nslots, 0, cfg->nworkers, err, sizeof(err))
                 : -1;
    if (rc) {
        cel_log(CEL_LOG_ERROR, "%s", s->workers ? err : "out of memory");
        /* Sockets not yet handed to a started worker are still ours. */
        for (size_t i = 0; i < s->nslots; i++)
            close_slot_fds(&s->slots[i], s->nworkers, cfg->nworkers);
        cel_server_stop(s);
        return -1;
    }
    for (size_t i = 0; i < s->nslots; i++)
        cel_log(CEL_LOG_INFO, "listening on %s%s", s->slots[i].addr.text,
                s->slots[i].shared_fd >= 0 ? " (socket from systemd)" : "");
    return 0;
}

int cel_server_reload(cel_server *s)
{
    char err[512];
    cel_config *cfg = cel_config_load(s->cfg->file, err, sizeof(err));
    if (!cfg)
        goto fail;
    cel_slot *slots = plan_slots(s, cfg, err, sizeof(err));
    if (!slots) {
        cel_config_unref(cfg);
        goto fail;
    }
    unsigned old_n = s->nworkers, new_n = cfg->nworkers;
    cel_worker **workers = s->workers;
    if (new_n > old_n) {
        workers = realloc(s->workers, new_n * sizeof(*workers));
        if (!workers) {
            snprintf(err, sizeof(err), "out of memory");
            for (size_t i = 0; i < cfg->nlisten; i++) {
                cel_slot *old = find_slot(s->slots, s->nslots, &slots[i].addr);
                close_slot_fds(&slots[i], old ? old_n : 0, new_n);
            }
            free_slots(slots, cfg->nlisten);
            cel_config_unref(cfg);
            goto fail;
        }
        s->workers = workers;
    }

    /* From here on nothing can fail the reload: publish, then rewire. */
    cel_log_level = cfg->log_level;
    cel_tls_set_ticket_rotation((cfg->tls_ticket_rotation_ms + 999) / 1000);
    for (unsigned w = new_n; w < old_n; w++)
        cel_worker_mark_leaving(s->workers[w]);
    cel_config_publish(cfg);
    unsigned common = old_n < new_n ? old_n : new_n;
    for (unsigned w = 0; w < common; w++) {
        cel_worker *wk = s->workers[w];
        for (size_t i = 0; i < cfg->nlisten; i++)
            if (!find_slot(s->slots, s->nslots, &slots[i].addr))
                cel_worker_add_listener(wk, slot_fd(&slots[i], w), slots[i].shared_fd < 0);
        for (size_t i = 0; i < s->nslots; i++)
            if (!find_slot(slots, cfg->nlisten, &s->slots[i].addr))
                cel_worker_remove_listener(wk, slot_fd(&s->slots[i], w));
        if (wk->cpu != cfg->cpus[w])
            cel_worker_pin(wk, cfg->cpus[w]);
        cel_worker_wake(wk);
    }
    if (new_n < old_n) {
        cel_worker **r = realloc(s->retiring, (s->nretiring + old_n - new_n) * sizeof(*r));
        for (unsigned w = new_n; w < old_n; w++) {
            cel_worker_stop(s->workers[w]);
            if (r)
                r[s->nretiring++] = s->workers[w];
            else if (cel_worker_join(s->workers[w])) /* no memory to defer it: wait */
                free(s->workers[w]);
            else
                cel_worker_abandon(s->workers[w]);
        }
        if (r)
            s->retiring = r;
        s->nworkers = new_n;
    } else if (new_n > old_n &&
               start_workers(s, cfg, slots, cfg->nlisten, old_n, new_n, err, sizeof(err))) {
        cel_log(CEL_LOG_ERROR, "reload: %s; serving with %u workers", err, s->nworkers);
        for (size_t i = 0; i < cfg->nlisten; i++)
            close_slot_fds(&slots[i], s->nworkers, new_n);
    }
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (!find_slot(s->slots, s->nslots, &slots[i].addr))
            cel_log(CEL_LOG_INFO, "now listening on %s", slots[i].addr.text);
    for (size_t i = 0; i < s->nslots; i++)
        if (!find_slot(slots, cfg->nlisten, &s->slots[i].addr)) {
            cel_log(CEL_LOG_INFO, "no longer listening on %s", s->slots[i].addr.text);
            if (s->slots[i].shared_fd < 0)
                cel_listener_unlink(&s->slots[i].addr);
        }
    if (new_n != old_n)
        cel_log(CEL_LOG_INFO, "workers: %u -> %u", old_n, s->nworkers);
    free_slots(s->slots, s->nslots);
    s->slots = slots;
    s->nslots = cfg->nlisten;
    cel_config_unref(s->cfg);
    s->cfg = cfg;
    s->reloads_ok++;
    s->last_error[0] = 0;
    return 0;
fail:
    s->reloads_failed++;
    snprintf(s->last_error, sizeof(s->last_error), "%s", err);
    return -1;
}

void cel_server_reap(cel_server *s)
{
    unsigned k = 0;
    for (unsigned i = 0; i < s->nretiring; i++) {
        if (cel_worker_try_join(s->retiring[i]))
            free(s->retiring[i]);
        else
            s->retiring[k++] = s->retiring[i];
    }
    s->nretiring = k;
}

void cel_server_stop(cel_server *s)
{
    for (unsigned i = 0; i < s->nworkers; i++)
        cel_worker_stop(s->workers[i]);
    /* Within shutdown_timeout every worker has closed its connections; module
     * threads still holding tokens are not waited for. */
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (cel_worker_join(s->workers[i]))
            free(s->workers[i]);
        else
            cel_worker_abandon(s->workers[i]);
    }
    for (unsigned i = 0; i < s->nretiring; i++) {
        if (cel_worker_join(s->retiring[i]))
            free(s->retiring[i]);
        else
            cel_worker_abandon(s->retiring[i]);
    }
    free(s->workers);
    free(s->retiring);
    for (size_t i = 0; i < s->nslots; i++)
        if (s->slots[i].shared_fd < 0)
            cel_listener_unlink(&s->slots[i].addr);
    free_slots(s->slots, s->nslots);
    for (size_t i = 0; i < s->ninherited; i++)
        close(s->inherited[i]);
    free(s->inherited);
    cel_config_publish(NULL);
    if (s->cfg)
        cel_config_unref(s->cfg);
    memset(s, 0, sizeof(*s));
}

size_t cel_server_connections(const cel_server *s)
{
    size_t n = 0;
    for (unsigned i = 0; i < s->nworkers; i++)
        n += atomic_load_explicit(&s->workers[i]->conns_now, memory_order_relaxed);
    for (unsigned i = 0; i < s->nretiring; i++)
        n += atomic_load_explicit(&s->retiring[i]->conns_now, memory_order_relaxed);
    return n;
}

int cel_server_alive(cel_server *s)
{
    int alive = 1;
    for (unsigned i = 0; i < s->nworkers; i++) {
        cel_worker *w = s->workers[i];
        uint64_t b = atomic_load_explicit(&w->beats, memory_order_relaxed);
        if (b == w->beats_seen)
            alive = 0;
        w->beats_seen = b;
    }
    return alive;
}
