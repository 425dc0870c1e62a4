/*
 * Counters for the metrics and status handlers. Each worker owns one block and
 * is its only writer: a counter moves with a relaxed load and store (a plain
 * add on x86, no lock prefix), and a scrape on any thread sums the blocks.
 * Blocks outlive their workers (a worker drained by a reload keeps its counts
 * in the totals), so counters never go backwards.
 *
 * Routes are counted by a small id that stays the same across generations for
 * the same path pattern and hosts: block, so a reload does not reset a route's
 * counters. Two ids name no route: CEL_STATS_UNMATCHED (no route has the
 * path) and CEL_STATS_REJECTED (a request refused before routing: an HTTP/1.1
 * 400, 413, 414, 431, 501 or 505, an HTTP/2 413 or 431 answered early, an
 * HTTP/2 stream reset as malformed).
 */
#ifndef CEL_STATS_H
#define CEL_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define CEL_STATS_ROUTES 256 /* distinct patterns counted one by one; more share one id */
#define CEL_STATS_METHODS 8  /* GET HEAD POST PUT DELETE PATCH OPTIONS other */
#define CEL_STATS_CLASSES 5  /* 1xx .. 5xx */
#define CEL_STATS_BUCKETS 12
/* Protocols counters are kept by: not known yet (before the first bytes, or
 * during a TLS handshake), HTTP/1.x, HTTP/2. */
enum { CEL_PROTO_UNKNOWN, CEL_PROTO_H1, CEL_PROTO_H2, CEL_STATS_PROTOS };

typedef _Atomic uint64_t cel_counter;

typedef struct cel_wstats {
    struct cel_wstats *next;
    unsigned worker_id;
    cel_counter requests[CEL_STATS_ROUTES][CEL_STATS_METHODS][CEL_STATS_CLASSES];
    /* by route; cumulative only when summed */
    cel_counter duration_buckets[CEL_STATS_ROUTES][CEL_STATS_BUCKETS];
    cel_counter duration_sum_us[CEL_STATS_ROUTES];
    cel_counter connections_open[CEL_STATS_PROTOS]; /* by CEL_PROTO_* */
    cel_counter connections_total;
    cel_counter streams_open[CEL_STATS_PROTOS];
    cel_counter bytes_in, bytes_out;
} cel_wstats;

static inline void cel_count(cel_counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void cel_uncount(cel_counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

/* A block for a new worker (registered for scrapes; never freed). */
cel_wstats *cel_stats_worker(unsigned worker_id);

enum { CEL_STATS_UNMATCHED = 0, CEL_STATS_REJECTED = 1 };

/* The id of route PATTERN of the hosts: block named HOST (its first name, or
 * "default"; NULL: not in a block), main thread, at config load. Rows of
 * other blocks are others, labelled with host="HOST". CEL_STATS_ROUTES (no
 * id) when a new row cannot be allocated. */
unsigned cel_stats_route_id(const char *pattern, const char *host);

/* The duration buckets' upper bounds, in microseconds. */
#define CEL_STATS_BUCKET_US                                                                        \
    {                                                                                              \
        100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 500000, 1000000, 5000000          \
    }

/* One answered request (the worker that served it): inline, as it runs for
 * every request. METHOD_BIT is one CEL_M_* bit or 0; GET .. OPTIONS are bits 0
 * to 6, anything else counts as "other". */
static inline void cel_stats_request(cel_wstats *w, unsigned route_id, unsigned method_bit,
                                     int status, uint64_t duration_us)
{
    static const uint64_t bucket_us[CEL_STATS_BUCKETS] = CEL_STATS_BUCKET_US;
    unsigned cls = status >= 100 && status < 600 ? (unsigned)status / 100 - 1 : 4;
    /* a bit's index, with 0 and bits 7 and up (CONNECT, TRACE) at 7: other */
    unsigned m = (unsigned)__builtin_ctz(method_bit | 1u << (CEL_STATS_METHODS - 1));
    cel_count(&w->requests[route_id][m][cls], 1);
    unsigned b = 0;
    while (b < CEL_STATS_BUCKETS && duration_us > bucket_us[b])
        b++;
    if (b < CEL_STATS_BUCKETS)
        cel_count(&w->duration_buckets[route_id][b], 1);
    cel_count(&w->duration_sum_us[route_id], duration_us);
}

/* Process-wide, main thread. */
void cel_stats_reload(int ok, unsigned long generation, unsigned workers);

/* Renders everything in the Prometheus text format (0.0.4) into BUF, the
 * process_* metrics (read from /proc/self now) included. Returns the length,
 * or the size needed when it is more than CAP. Any thread. */
size_t cel_stats_prometheus(char *buf, size_t cap);

/* Current connections over all workers, for the status handler. */
uint64_t cel_stats_connections(void);
unsigned long cel_stats_generation(void);
unsigned cel_stats_workers(void);
double cel_stats_uptime(void);

#endif
