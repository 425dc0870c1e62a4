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
#include <string.h>

#define CEL_STATS_ROUTES 256 /* distinct patterns counted one by one; more share one id */
#define CEL_STATS_METHODS 8  /* GET HEAD POST PUT DELETE PATCH OPTIONS other */
#define CEL_STATS_CLASSES 5  /* 1xx .. 5xx */
#define CEL_STATS_BUCKETS 12
/* Protocols counters are kept by: not known yet (before the first bytes, or
 * during a TLS handshake), HTTP/1.x, HTTP/2. */
enum { CEL_PROTO_UNKNOWN, CEL_PROTO_H1, CEL_PROTO_H2, CEL_STATS_PROTOS };

typedef _Atomic uint64_t cel_counter;

/* The longest request id an exemplar carries: OpenMetrics caps an exemplar's
 * labels at 128 characters, names and values, and "request_id" takes 10. */
#define CEL_STATS_EXEMPLAR_ID 118
/* A bucket's exemplar is replaced at most once in this many microseconds:
 * under load the bucket keeps a recent id without a copy on every request
 * (as client libraries keep an exemplar for a minimum time). */
#define CEL_STATS_EXEMPLAR_EVERY_US 1000

/* The last request with an id that landed in one duration bucket of a route
 * on one worker, for OpenMetrics exemplars. Its worker is the only writer and
 * makes SEQ odd while it writes (a seqlock); a scrape that reads SEQ odd or
 * changed across its read has a torn copy and does not use it. */
typedef struct cel_exemplar {
    _Atomic uint32_t seq;
    _Atomic uint32_t len;
    cel_counter us;      /* the request's duration */
    cel_counter wall_us; /* when it ended: microseconds since the epoch */
    cel_counter id[(CEL_STATS_EXEMPLAR_ID + 7) / 8];
} cel_exemplar;

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
    /* by route and bucket, the last one past the last bound; the pages of
     * routes and buckets no request with an id reached are never touched */
    cel_exemplar exemplars[CEL_STATS_ROUTES][CEL_STATS_BUCKETS + 1];
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
 * "default"), or of a top-level route whose `host:` names HOST first (NULL:
 * neither), and of the listen entry LISTEN whose own routes it is in (its
 * address as written; NULL: none), main thread, at config load. Rows of other
 * hosts or listen entries are others, labelled host="HOST" and
 * listen="LISTEN". CEL_STATS_ROUTES (no id) when a new row cannot be
 * allocated. */
unsigned cel_stats_route_id(const char *pattern, const char *host, const char *listen);

/* The duration buckets' upper bounds, in microseconds. */
#define CEL_STATS_BUCKET_US                                                                        \
    {                                                                                              \
        100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 500000, 1000000, 5000000          \
    }

/* One answered request (the worker that served it): inline, as it runs for
 * every request. METHOD_BIT is one CEL_M_* bit or 0; GET .. OPTIONS are bits 0
 * to 6, anything else counts as "other". Returns the duration's bucket
 * (CEL_STATS_BUCKETS: past the last bound), for cel_stats_exemplar. */
static inline unsigned cel_stats_request(cel_wstats *w, unsigned route_id, unsigned method_bit,
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
    return b;
}

/* Keeps ID (N octets, visible ASCII) as the exemplar of BUCKET of ROUTE_ID
 * (cel_stats_request's return), with the request's duration and the wall
 * clock WALL_US, unless the slot took one less than
 * CEL_STATS_EXEMPLAR_EVERY_US before. An id longer than CEL_STATS_EXEMPLAR_ID
 * is not kept. Plain stores between two of SEQ: no lock, no
 * read-modify-write. */
static inline void cel_stats_exemplar(cel_wstats *w, unsigned route_id, unsigned bucket,
                                      const char *id, size_t n, uint64_t duration_us,
                                      uint64_t wall_us)
{
    cel_exemplar *e = &w->exemplars[route_id][bucket];
    /* only this worker writes the slot: a plain read of its own store */
    if (n > CEL_STATS_EXEMPLAR_ID ||
        wall_us - atomic_load_explicit(&e->wall_us, memory_order_relaxed) <
            CEL_STATS_EXEMPLAR_EVERY_US)
        return;
    uint32_t seq = atomic_load_explicit(&e->seq, memory_order_relaxed);
    atomic_store_explicit(&e->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    const char *p = id;
    cel_counter *d = e->id;
    size_t left = n;
    for (; left >= 8; left -= 8, p += 8, d++) {
        uint64_t word;
        memcpy(&word, p, 8);
        atomic_store_explicit(d, word, memory_order_relaxed);
    }
    if (left) {
        /* the last octets: from the id's last eight when it has them (no
         * call to memcpy for a variable length), shifted into place */
        union {
            uint64_t word;
            unsigned char c[8];
        } t = {0};
        if (n >= 8) {
            memcpy(&t.word, id + n - 8, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            t.word <<= 8 * (8 - left);
#else
            t.word >>= 8 * (8 - left);
#endif
        } else
            for (size_t k = 0; k < left; k++)
                t.c[k] = (unsigned char)p[k];
        atomic_store_explicit(d, t.word, memory_order_relaxed);
    }
    atomic_store_explicit(&e->len, (uint32_t)n, memory_order_relaxed);
    atomic_store_explicit(&e->us, duration_us, memory_order_relaxed);
    atomic_store_explicit(&e->wall_us, wall_us, memory_order_relaxed);
    atomic_store_explicit(&e->seq, seq + 2, memory_order_release);
}

/* Process-wide, main thread. */
void cel_stats_reload(int ok, unsigned long generation, unsigned workers);

/* Renders everything in the Prometheus text format (0.0.4), or with
 * OPENMETRICS in OpenMetrics 1.0 text (a counter's family named without
 * _total, UNIT lines, the build info as an info family, the duration buckets'
 * exemplars; without the closing "# EOF"), into BUF, the process_* metrics
 * (read from /proc/self now) included. Returns the length, or the size needed
 * when it is more than CAP. Any thread. */
size_t cel_stats_prometheus(char *buf, size_t cap, int openmetrics);

/* Current connections over all workers, for the status handler. */
uint64_t cel_stats_connections(void);
unsigned long cel_stats_generation(void);
unsigned cel_stats_workers(void);
double cel_stats_uptime(void);

#endif
