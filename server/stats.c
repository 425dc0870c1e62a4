#include "stats.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "procstat.h"
#include "router.h"
#include "version.h"

/* The duration buckets' upper bounds (CEL_STATS_BUCKET_US) in seconds, as
 * Prometheus labels them. */
static const char *const bucket_le[CEL_STATS_BUCKETS] = {"0.0001", "0.0005", "0.001", "0.0025",
                                                         "0.005",  "0.01",   "0.025", "0.05",
                                                         "0.1",    "0.5",    "1",     "5"};
static const char *const method_names[CEL_STATS_METHODS] = {"GET",    "HEAD",  "POST",    "PUT",
                                                            "DELETE", "PATCH", "OPTIONS", "other"};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static cel_wstats *blocks;
/* A row's name: its pattern, a NUL, the name of its host (its hosts: block's,
 * or its `host:`'s first; empty for none), a NUL, then its listen entry's
 * address (empty for none), NUL-terminated. */
static char *routes[CEL_STATS_ROUTES];
static unsigned nroutes;

static atomic_ulong reloads_ok, reloads_failed, generation;
static atomic_uint workers;
static struct timespec started;

/* The ids that name no route (under the lock). */
static void name_special(void)
{
    if (nroutes)
        return;
    routes[CEL_STATS_UNMATCHED] = "(unmatched)\0\0";
    routes[CEL_STATS_REJECTED] = "(rejected)\0\0";
    routes[CEL_STATS_ROUTES - 1] = "(other)\0\0";
    nroutes = 2;
}

cel_wstats *cel_stats_worker(unsigned worker_id)
{
    cel_wstats *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->worker_id = worker_id;
    pthread_mutex_lock(&lock);
    name_special();
    if (!started.tv_sec)
        clock_gettime(CLOCK_MONOTONIC, &started);
    w->next = blocks;
    blocks = w;
    pthread_mutex_unlock(&lock);
    return w;
}

unsigned cel_stats_route_id(const char *pattern, const char *host, const char *listen)
{
    if (!host)
        host = "";
    if (!listen)
        listen = "";
    size_t plen = strlen(pattern), hlen = strlen(host), llen = strlen(listen);
    pthread_mutex_lock(&lock);
    name_special();
    unsigned id = CEL_STATS_ROUTES - 1;
    for (unsigned i = CEL_STATS_REJECTED + 1; i < nroutes; i++)
        if (strcmp(routes[i], pattern) == 0 && strcmp(routes[i] + plen + 1, host) == 0 &&
            strcmp(routes[i] + plen + hlen + 2, listen) == 0) {
            id = i;
            goto out;
        }
    char *name;
    if (nroutes < CEL_STATS_ROUTES - 1) {
        if (!(name = malloc(plen + hlen + llen + 3))) {
            id = CEL_STATS_ROUTES;
            goto out;
        }
        memcpy(name, pattern, plen + 1);
        memcpy(name + plen + 1, host, hlen + 1);
        memcpy(name + plen + hlen + 2, listen, llen + 1);
        routes[nroutes] = name;
        id = nroutes++;
    }
out:
    pthread_mutex_unlock(&lock);
    return id;
}

void cel_stats_reload(int ok, unsigned long gen, unsigned nworkers)
{
    if (ok >= 0)
        atomic_fetch_add(ok ? &reloads_ok : &reloads_failed, 1);
    atomic_store(&generation, gen);
    atomic_store(&workers, nworkers);
}

typedef struct out {
    char *p;
    size_t len, cap;
} out;

static void emit(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(o->p ? o->p + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static uint64_t get(const cel_counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Label values are route patterns: escape backslash, quote and newline. */
static void emit_label(out *o, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            emit(o, "\\%c", *s);
        else if (*s == '\n')
            emit(o, "\\n");
        else
            emit(o, "%c", *s);
    }
}

/* NAME{route="ROUTE" (and host="HOST", listen="LISTEN" for a row that has
 * them): the caller adds the other labels and closes. ROUTE is a row's name
 * (routes[]). */
static void emit_route(out *o, const char *name, const char *route)
{
    emit(o, "%s{route=\"", name);
    emit_label(o, route);
    const char *host = route + strlen(route) + 1;
    const char *listen = host + strlen(host) + 1;
    if (*host) {
        emit(o, "\",host=\"");
        emit_label(o, host);
    }
    if (*listen) {
        emit(o, "\",listen=\"");
        emit_label(o, listen);
    }
    emit(o, "\"");
}

/* HELP and TYPE of the family whose samples are NAME. OpenMetrics names a
 * counter's family without _total and an info family without _info (the
 * samples keep them), and has UNIT (NULL: none). */
static void emit_family(out *o, int om, const char *name, const char *type, const char *unit,
                        const char *help)
{
    size_t n = strlen(name);
    if (om && strcmp(type, "counter") == 0)
        n -= strlen("_total");
    else if (om && strcmp(type, "info") == 0)
        n -= strlen("_info");
    else if (!om && strcmp(type, "info") == 0)
        type = "gauge";
    emit(o, "# HELP %.*s %s\n# TYPE %.*s %s\n", (int)n, name, help, (int)n, name, type);
    if (om && unit)
        emit(o, "# UNIT %.*s %s\n", (int)n, name, unit);
}

/* A consistent copy of E, or 0 when its worker was writing it (or it is
 * empty). ID gets the octets, NUL-terminated. */
static int read_exemplar(const cel_exemplar *e, char id[CEL_STATS_EXEMPLAR_ID + 1], uint64_t *us,
                         uint64_t *wall_us)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        uint32_t seq = atomic_load_explicit(&e->seq, memory_order_acquire);
        if (!seq || seq & 1)
            continue;
        uint32_t n = atomic_load_explicit(&e->len, memory_order_relaxed);
        uint64_t words[sizeof(e->id) / sizeof(e->id[0])];
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
            words[i] = atomic_load_explicit(&e->id[i], memory_order_relaxed);
        *us = atomic_load_explicit(&e->us, memory_order_relaxed);
        *wall_us = atomic_load_explicit(&e->wall_us, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&e->seq, memory_order_relaxed) != seq)
            continue;
        if (!n || n > CEL_STATS_EXEMPLAR_ID)
            return 0;
        memcpy(id, words, n);
        id[n] = 0;
        for (uint32_t i = 0; i < n; i++)
            if (id[i] < 0x21 || id[i] > 0x7e)
                return 0;
        return 1;
    }
    return 0;
}

/* " # {request_id="ID"} SECONDS WALL" for the latest request any worker kept
 * in BUCKET of route R; nothing when none did. Under the lock. */
static void emit_exemplar(out *o, unsigned r, unsigned bucket)
{
    char best[CEL_STATS_EXEMPLAR_ID + 1], id[CEL_STATS_EXEMPLAR_ID + 1];
    uint64_t best_us = 0, best_wall = 0, us, wall;
    int found = 0;
    for (cel_wstats *w = blocks; w; w = w->next)
        if (read_exemplar(&w->exemplars[r][bucket], id, &us, &wall) &&
            (!found || wall > best_wall)) {
            found = 1;
            memcpy(best, id, sizeof(best));
            best_us = us;
            best_wall = wall;
        }
    if (!found)
        return;
    emit(o, " # {request_id=\"");
    emit_label(o, best);
    emit(o, "\"} %llu.%06llu %llu.%06llu", (unsigned long long)(best_us / 1000000),
         (unsigned long long)(best_us % 1000000), (unsigned long long)(best_wall / 1000000),
         (unsigned long long)(best_wall % 1000000));
}

size_t cel_stats_prometheus(char *buf, size_t cap, int om)
{
    out o = {buf, 0, cap};
    pthread_mutex_lock(&lock);
    emit_family(&o, om, "celerisd_build_info", "info", NULL, "Version of this celerisd.");
    emit(&o, "celerisd_build_info{version=\"%s\"} 1\n", CEL_VERSION);
    emit_family(&o, om, "celerisd_requests_total", "counter", NULL,
                "Requests answered, by route, method and status class.");
    for (unsigned r = 0; r < CEL_STATS_ROUTES; r++) {
        if (!routes[r])
            continue;
        for (unsigned m = 0; m < CEL_STATS_METHODS; m++)
            for (unsigned c = 0; c < CEL_STATS_CLASSES; c++) {
                uint64_t n = 0;
                for (cel_wstats *w = blocks; w; w = w->next)
                    n += get(&w->requests[r][m][c]);
                if (!n)
                    continue;
                emit_route(&o, "celerisd_requests_total", routes[r]);
                emit(&o, ",method=\"%s\",code=\"%uxx\"} %llu\n", method_names[m], c + 1,
                     (unsigned long long)n);
            }
    }
    emit_family(&o, om, "celerisd_request_duration_seconds", "histogram", "seconds",
                "Time from the connection event that completed a request's head to the one "
                "that ended its response, by route.");
    for (unsigned r = 0; r < CEL_STATS_ROUTES; r++) {
        if (!routes[r])
            continue;
        /* Buckets before the count: a request counts in requests first, so
         * one that ends meanwhile cannot make a bucket exceed +Inf. */
        uint64_t cum[CEL_STATS_BUCKETS], count = 0, sum = 0;
        for (unsigned b = 0; b < CEL_STATS_BUCKETS; b++) {
            cum[b] = b ? cum[b - 1] : 0;
            for (cel_wstats *w = blocks; w; w = w->next)
                cum[b] += get(&w->duration_buckets[r][b]);
        }
        for (cel_wstats *w = blocks; w; w = w->next) {
            sum += get(&w->duration_sum_us[r]);
            for (unsigned m = 0; m < CEL_STATS_METHODS; m++)
                for (unsigned c = 0; c < CEL_STATS_CLASSES; c++)
                    count += get(&w->requests[r][m][c]);
        }
        if (!count)
            continue;
        for (unsigned b = 0; b <= CEL_STATS_BUCKETS; b++) {
            emit_route(&o, "celerisd_request_duration_seconds_bucket", routes[r]);
            emit(&o, ",le=\"%s\"} %llu", b < CEL_STATS_BUCKETS ? bucket_le[b] : "+Inf",
                 (unsigned long long)(b < CEL_STATS_BUCKETS ? cum[b] : count));
            if (om)
                emit_exemplar(&o, r, b);
            emit(&o, "\n");
        }
        emit_route(&o, "celerisd_request_duration_seconds_sum", routes[r]);
        emit(&o, "} %.6f\n", (double)sum / 1e6);
        emit_route(&o, "celerisd_request_duration_seconds_count", routes[r]);
        emit(&o, "} %llu\n", (unsigned long long)count);
    }

    static const char *const proto_names[CEL_STATS_PROTOS] = {"unknown", "http/1.1", "h2"};
    emit_family(&o, om, "celerisd_connections_open", "gauge", NULL,
                "Connections open now, by protocol (unknown: before the first bytes or during "
                "the TLS handshake).");
    for (cel_wstats *w = blocks; w; w = w->next)
        for (unsigned p = 0; p < CEL_STATS_PROTOS; p++)
            emit(&o, "celerisd_connections_open{protocol=\"%s\",worker=\"%u\"} %llu\n",
                 proto_names[p], w->worker_id, (unsigned long long)get(&w->connections_open[p]));
    emit_family(&o, om, "celerisd_streams_open", "gauge", NULL,
                "Requests in flight now, by protocol.");
    for (cel_wstats *w = blocks; w; w = w->next)
        for (unsigned p = CEL_PROTO_H1; p < CEL_STATS_PROTOS; p++)
            emit(&o, "celerisd_streams_open{protocol=\"%s\",worker=\"%u\"} %llu\n", proto_names[p],
                 w->worker_id, (unsigned long long)get(&w->streams_open[p]));
    static const struct {
        const char *name, *unit, *help;
        size_t off;
    } per_worker[] = {
        {"celerisd_connections_total", NULL, "Connections accepted.",
         offsetof(cel_wstats, connections_total)},
        {"celerisd_received_bytes_total", "bytes", "Bytes read from clients.",
         offsetof(cel_wstats, bytes_in)},
        {"celerisd_sent_bytes_total", "bytes", "Response body bytes sent.",
         offsetof(cel_wstats, bytes_out)},
    };
    for (size_t i = 0; i < sizeof(per_worker) / sizeof(per_worker[0]); i++) {
        emit_family(&o, om, per_worker[i].name, "counter", per_worker[i].unit, per_worker[i].help);
        for (cel_wstats *w = blocks; w; w = w->next)
            emit(&o, "%s{worker=\"%u\"} %llu\n", per_worker[i].name, w->worker_id,
                 (unsigned long long)get(
                     (const cel_counter *)((const char *)w + per_worker[i].off)));
    }
    pthread_mutex_unlock(&lock);

    emit_family(&o, om, "celerisd_reloads_total", "counter", NULL,
                "Configuration reloads, by result.");
    emit(&o,
         "celerisd_reloads_total{result=\"ok\"} %lu\n"
         "celerisd_reloads_total{result=\"failed\"} %lu\n",
         atomic_load(&reloads_ok), atomic_load(&reloads_failed));
    emit_family(&o, om, "celerisd_config_generation", "gauge", NULL,
                "The configuration generation serving new requests.");
    emit(&o, "celerisd_config_generation %lu\n", atomic_load(&generation));
    emit_family(&o, om, "celerisd_workers", "gauge", NULL, "Worker threads.");
    emit(&o, "celerisd_workers %u\n", atomic_load(&workers));
    emit_family(&o, om, "celerisd_uptime_seconds", "gauge", "seconds",
                "Seconds since the daemon started.");
    emit(&o, "celerisd_uptime_seconds %.3f\n", cel_stats_uptime());

    cel_procstat ps;
    if (cel_procstat_read(&ps) == 0) {
        emit_family(&o, om, "process_cpu_seconds_total", "counter", "seconds",
                    "Total user and system CPU time spent in seconds.");
        emit(&o, "process_cpu_seconds_total %.2f\n", ps.cpu_seconds);
        emit_family(&o, om, "process_resident_memory_bytes", "gauge", "bytes",
                    "Resident memory size in bytes.");
        emit(&o, "process_resident_memory_bytes %llu\n", (unsigned long long)ps.resident_bytes);
        emit_family(&o, om, "process_virtual_memory_bytes", "gauge", "bytes",
                    "Virtual memory size in bytes.");
        emit(&o, "process_virtual_memory_bytes %llu\n", (unsigned long long)ps.virtual_bytes);
        emit_family(&o, om, "process_open_fds", "gauge", NULL, "Number of open file descriptors.");
        emit(&o, "process_open_fds %llu\n", (unsigned long long)ps.open_fds);
        emit_family(&o, om, "process_max_fds", "gauge", NULL,
                    "Maximum number of open file descriptors.");
        emit(&o, "process_max_fds %llu\n", (unsigned long long)ps.max_fds);
        emit_family(&o, om, "process_start_time_seconds", "gauge", "seconds",
                    "Start time of the process since unix epoch in seconds.");
        emit(&o, "process_start_time_seconds %.2f\n", ps.start_time);
    }
    return o.len;
}

uint64_t cel_stats_connections(void)
{
    uint64_t n = 0;
    pthread_mutex_lock(&lock);
    for (cel_wstats *w = blocks; w; w = w->next)
        for (unsigned p = 0; p < CEL_STATS_PROTOS; p++)
            n += get(&w->connections_open[p]);
    pthread_mutex_unlock(&lock);
    return n;
}

unsigned long cel_stats_generation(void)
{
    return atomic_load(&generation);
}

unsigned cel_stats_workers(void)
{
    return atomic_load(&workers);
}

double cel_stats_uptime(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - started.tv_sec) + (double)(now.tv_nsec - started.tv_nsec) / 1e9;
}
