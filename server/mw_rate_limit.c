#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "conn_view.h"
#include "env.h"
#include "http.h"
#include "middleware.h"
#include "real_ip.h"

#define NIL UINT32_MAX

typedef struct entry {
    uint64_t key; /* the key's hash */
    uint64_t tat; /* GCRA: when the bucket is empty again, env->now_us */
    uint32_t hnext;
    uint32_t prev, next; /* recency: head is the newest */
} entry;

/* One worker's keys: a hash of chains and a recency list, fixed size. */
typedef struct table {
    entry *e;
    uint32_t *buckets;
    uint32_t cap, used, nbuckets; /* nbuckets: a power of two */
    uint32_t head, tail;
    uint64_t seed;
} table;

typedef struct mw_rate_limit {
    cel_mw base;
    cel_str header;
    char *name;
    uint64_t interval_us;  /* per worker: one request per interval */
    uint64_t tolerance_us; /* burst * interval */
    uint64_t delay_us;     /* delay * interval: a request later than this is held */
    int status;
    double rate;
    uint64_t rate_ceil; /* ratelimit-limit: requests per second, rounded up */
    unsigned burst, ntables;
    table *tables; /* one per worker */
} mw_rate_limit;

/* A keyed hash (the seed is random per table), so that clients cannot aim
 * keys at one chain. */
static uint64_t hash(uint64_t seed, const char *p, size_t n)
{
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15u);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9u;
        h ^= h >> 31;
        p += 8, n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebu;
    return h ^ (h >> 29);
}

static void unlink_lru(table *t, uint32_t i)
{
    entry *e = &t->e[i];
    if (e->prev != NIL)
        t->e[e->prev].next = e->next;
    else
        t->head = e->next;
    if (e->next != NIL)
        t->e[e->next].prev = e->prev;
    else
        t->tail = e->prev;
}

static void push_front(table *t, uint32_t i)
{
    entry *e = &t->e[i];
    e->prev = NIL;
    e->next = t->head;
    if (t->head != NIL)
        t->e[t->head].prev = i;
    t->head = i;
    if (t->tail == NIL)
        t->tail = i;
}

static void unlink_hash(table *t, uint32_t i)
{
    uint32_t *p = &t->buckets[t->e[i].key & (t->nbuckets - 1)];
    while (*p != i)
        p = &t->e[*p].hnext;
    *p = t->e[i].hnext;
}

/* KEY's entry, made (evicting the least recently seen) when new. */
static entry *lookup(table *t, uint64_t key, uint64_t now)
{
    uint32_t *b = &t->buckets[key & (t->nbuckets - 1)];
    for (uint32_t i = *b; i != NIL; i = t->e[i].hnext)
        if (t->e[i].key == key) {
            if (t->head != i) {
                unlink_lru(t, i);
                push_front(t, i);
            }
            return &t->e[i];
        }
    uint32_t i;
    if (t->used < t->cap) {
        i = t->used++;
    } else {
        i = t->tail;
        unlink_lru(t, i);
        unlink_hash(t, i);
    }
    t->e[i] = (entry){key, now, *b, NIL, NIL};
    *b = i;
    push_front(t, i);
    return &t->e[i];
}

static cel_str num(cel_exchange *x, uint64_t v)
{
    char *p = cel_arena_alloc(x->arena, 20);
    return p ? (cel_str){p, cel_http_utoa(p, v)} : (cel_str){"0", 1};
}

static int refuse(const mw_rate_limit *r, cel_exchange *x, cel_response *res, uint64_t wait_us)
{
    cel_response_error(res, r->status);
    cel_kv *h = cel_arena_alloc(x->arena, 5 * sizeof(*h));
    if (!h)
        return CEL_MW_ANSWERED;
    uint64_t secs = (wait_us + 999999) / 1000000;
    char *policy = cel_arena_alloc(x->arena, 64);
    size_t pn = 0;
    if (policy) {
        /* "R;w=1;burst=B": the daemon's rate per second, as configured */
        pn = cel_http_utoa(policy, r->rate_ceil);
        memcpy(policy + pn, ";w=1;burst=", 11);
        pn += 11;
        pn += cel_http_utoa(policy + pn, r->burst);
    }
    h[0] = (cel_kv){CEL_STR_LIT("retry-after"), num(x, secs ? secs : 1)};
    h[1] = (cel_kv){CEL_STR_LIT("ratelimit-limit"), num(x, r->rate_ceil)};
    h[2] = (cel_kv){CEL_STR_LIT("ratelimit-remaining"), CEL_STR_LIT("0")};
    h[3] = (cel_kv){CEL_STR_LIT("ratelimit-reset"), num(x, secs ? secs : 1)};
    h[4] = (cel_kv){CEL_STR_LIT("ratelimit-policy"), {policy ? policy : "", pn}};
    res->headers = h;
    res->nheaders = policy ? 5 : 4;
    return CEL_MW_ANSWERED;
}

/* A request held within the burst: in its exchange's arena, so nothing is
 * allocated per request and it goes when the exchange does. */
typedef struct held {
    cel_mw_resume resume; /* first: x->resume points at the whole */
    struct event ev;
    cel_exchange *x;
} held;

/* The front end is done with a held request (the client reset the stream or
 * closed the connection, a `timeout` answered it): its timer must not fire. */
static void gone(cel_exchange *x, int finished)
{
    (void)finished;
    event_del(&((held *)x->resume)->ev);
}

static void release(evutil_socket_t fd, short what, void *arg)
{
    held *h = arg;
    cel_exchange *x = h->x;
    (void)fd, (void)what;
    cel_env *env = x->env;
    event_base_gettimeofday_cached(env->base, &env->now);
    env->now_us = cel_clock_us();
    cel_env_tick(env, env->now.tv_sec);
    x->on_close = NULL;
    h->resume.go(x);
}

/* X waits WAIT_US on the worker's loop, then goes on (cel_mw_resume.go).
 * 0 when it could not be held (no memory). */
static int hold(cel_exchange *x, uint64_t wait_us)
{
    held *h = cel_arena_alloc(x->arena, sizeof(*h));
    if (!h)
        return 0;
    h->x = x;
    evtimer_assign(&h->ev, x->env->base, release, h);
    struct timeval tv = {(time_t)(wait_us / 1000000u), (suseconds_t)(wait_us % 1000000u)};
    if (evtimer_add(&h->ev, &tv) < 0)
        return 0;
    x->resume = &h->resume;
    x->on_close = gone;
    return 1;
}

static int request(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    const mw_rate_limit *r = (const mw_rate_limit *)m;
    if (CEL_UNLIKELY(x->env->worker_id >= r->ntables))
        return 0; /* a worker a reload is about to stop */
    table *t = &r->tables[x->env->worker_id];
    cel_str k;
    char buf[64];
    if (r->header.n) {
        if (cel_request_header(x->req, r->header.p, r->header.n, &k))
            return 0;
    } else {
        const char *peer = x->conn ? x->conn->peer : "-";
        if (x->real_ip)
            peer = cel_real_ip_of(x->real_ip, x->req, peer, buf, sizeof(buf));
        k = (cel_str){peer, strlen(peer)};
    }
    uint64_t now = x->env->now_us;
    entry *e = lookup(t, hash(t->seed, k.p, k.n), now);
    uint64_t tat = e->tat > now ? e->tat : now;
    uint64_t wait = tat - now;
    if (wait > r->tolerance_us)
        return refuse(r, x, res, wait - r->tolerance_us);
    if (CEL_UNLIKELY(wait > r->delay_us)) {
        /* requests leave at the rate: this one when its turn comes */
        if (!hold(x, wait - r->delay_us))
            return refuse(r, x, res, wait - r->delay_us);
        e->tat = tat + r->interval_us;
        return CEL_MW_HELD;
    }
    e->tat = tat + r->interval_us;
    return 0;
}

static void destroy(cel_mw *m)
{
    mw_rate_limit *r = (mw_rate_limit *)m;
    for (unsigned i = 0; r->tables && i < r->ntables; i++) {
        free(r->tables[i].e);
        free(r->tables[i].buckets);
    }
    free(r->tables);
    free(r->name);
    free(r);
}

static const cel_mw_ops ops = {.request = request, .destroy = destroy};

cel_mw *cel_mw_rate_limit_new(const cel_rate_limit_conf *c)
{
    mw_rate_limit *r = calloc(1, sizeof(*r));
    unsigned nw = c->nworkers ? c->nworkers : 1;
    if (!r || !(r->tables = calloc(nw, sizeof(table))) || !(r->name = malloc(c->header.n + 1))) {
        if (r)
            free(r->tables);
        free(r);
        return NULL;
    }
    r->base = (cel_mw){&ops, "rate_limit"};
    r->ntables = nw;
    if (c->header.n) /* key: client_ip has no header name (a NULL pointer) */
        memcpy(r->name, c->header.p, c->header.n);
    r->name[c->header.n] = '\0';
    r->header = (cel_str){r->name, c->header.n};
    r->status = c->status;
    r->rate = c->rate;
    r->rate_ceil = (uint64_t)c->rate + ((double)(uint64_t)c->rate < c->rate);
    r->burst = c->burst;
    r->interval_us = (uint64_t)(1e6 * nw / c->rate);
    r->tolerance_us = (uint64_t)(c->burst / nw) * r->interval_us;
    r->delay_us = (uint64_t)((c->delay < c->burst ? c->delay : c->burst) / nw) * r->interval_us;
    size_t per = (c->max_keys + nw - 1) / nw;
    if (per == 0)
        per = 1;
    uint32_t nb = 16;
    while (nb < per && nb < (1u << 30))
        nb <<= 1;
    for (unsigned i = 0; i < nw; i++) {
        table *t = &r->tables[i];
        t->cap = (uint32_t)per;
        t->nbuckets = nb;
        t->head = t->tail = NIL;
        if (getrandom(&t->seed, sizeof(t->seed), 0) != (ssize_t)sizeof(t->seed))
            t->seed = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15u;
        t->e = malloc(per * sizeof(entry));
        t->buckets = malloc(nb * sizeof(uint32_t));
        if (!t->e || !t->buckets) {
            destroy(&r->base);
            return NULL;
        }
        memset(t->buckets, 0xff, nb * sizeof(uint32_t));
    }
    return &r->base;
}
