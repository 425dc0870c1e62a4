#include "module_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "log.h"

#define MAX_FAMILY 128
#define LINE 64 /* bytes per worker row: rows never share a cache line */

typedef _Atomic uint64_t slot;

/* One series: FAMILY{route="ROUTE"}. Values sit in rows of STRIDE slots, one
 * row per worker id below ROWS and a last row that every other thread shares.
 * A counter or gauge has one value, a double; a histogram has NBOUNDS + 1
 * bucket counts (not cumulative; the last is +Inf) and then its sum. */
struct celeris_metric {
    struct celeris_metric *next; /* the registry, in declaration order */
    char *family, *route, *help;
    int type;
    size_t nbounds;
    double bounds[CELERIS_METRIC_MAX_BOUNDS];
    unsigned refs; /* instances that declared it */
    unsigned rows;
    size_t stride;
    slot *vals;
};

struct cel_module_metrics {
    size_t n, cap;
    struct celeris_metric **list;
};

/* Declarations happen on the main thread, but the last instance of a series
 * may go on a worker and a scrape runs on any: the registry is shared. The
 * values are not under the lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct celeris_metric *registry;
static _Thread_local cel_module_init_ctx *open_ctx;

void cel_module_init_open(cel_module_init_ctx *ctx)
{
    open_ctx = ctx;
}

void cel_module_init_close(cel_module_init_ctx *ctx)
{
    if (open_ctx == ctx)
        open_ctx = NULL;
}

static double as_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

static uint64_t as_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

/* The worker's own row (its only writer: a plain load and store), or the
 * shared row (*SHARED set: compare-and-swap). Rows go by worker id: a worker
 * a reload retired may still be finishing requests when a later reload starts
 * another with its id, and during that overlap the two may lose an update of
 * each other's. Rare and bounded, where an atomic add on every update is not. */
static slot *row(const struct celeris_metric *m, int *shared)
{
    const cel_env *e = cel_env_self();
    if (e && e->worker_id < m->rows) {
        *shared = 0;
        return m->vals + (size_t)e->worker_id * m->stride;
    }
    *shared = 1;
    return m->vals + (size_t)m->rows * m->stride;
}

static void add_double(slot *p, double v, int shared)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    if (!shared) {
        atomic_store_explicit(p, as_bits(as_double(old) + v), memory_order_relaxed);
        return;
    }
    while (!atomic_compare_exchange_weak_explicit(p, &old, as_bits(as_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void celeris_metric_add(celeris_metric *m, double v)
{
    if (!m || m->type == CELERIS_METRIC_HISTOGRAM || isnan(v) ||
        (m->type == CELERIS_METRIC_COUNTER && !(v >= 0)))
        return;
    int shared = 0;
    add_double(row(m, &shared), v, shared);
}

void celeris_metric_observe(celeris_metric *m, double v)
{
    if (!m || m->type != CELERIS_METRIC_HISTOGRAM || isnan(v))
        return;
    size_t b = 0;
    while (b < m->nbounds && v > m->bounds[b])
        b++;
    int shared = 0;
    slot *r = row(m, &shared);
    if (shared)
        atomic_fetch_add_explicit(&r[b], 1, memory_order_relaxed);
    else
        atomic_store_explicit(&r[b], atomic_load_explicit(&r[b], memory_order_relaxed) + 1,
                              memory_order_relaxed);
    add_double(&r[m->nbounds + 1], v, shared);
}

/* ---- declaring ---- */

static void unref(struct celeris_metric *m)
{
    /* under lock */
    if (--m->refs)
        return;
    for (struct celeris_metric **p = &registry; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    free(m->family);
    free(m->route);
    free(m->help);
    free(m->vals);
    free(m);
}

void cel_module_metrics_free(cel_module_metrics *mm)
{
    if (!mm)
        return;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < mm->n; i++)
        unref(mm->list[i]);
    pthread_mutex_unlock(&lock);
    free(mm->list);
    free(mm);
}

static int valid_name(const char *s)
{
    if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

/* The reason a declaration is refused, or NULL. */
static const char *check(int type, const char *name, const double *bounds, size_t nbounds)
{
    if (type != CELERIS_METRIC_COUNTER && type != CELERIS_METRIC_GAUGE &&
        type != CELERIS_METRIC_HISTOGRAM)
        return "unknown type";
    if (!valid_name(name))
        return "the name is not [A-Za-z_][A-Za-z0-9_]*";
    if (type != CELERIS_METRIC_HISTOGRAM)
        return nbounds ? "only a histogram takes bounds" : NULL;
    if (!bounds || nbounds < 1 || nbounds > CELERIS_METRIC_MAX_BOUNDS)
        return "a histogram takes 1 to CELERIS_METRIC_MAX_BOUNDS bounds";
    for (size_t i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
            return "the bounds are not finite and increasing";
    return NULL;
}

static int same_shape(const struct celeris_metric *m, int type, const double *bounds,
                      size_t nbounds)
{
    return m->type == type && m->nbounds == nbounds &&
           (!nbounds || memcmp(m->bounds, bounds, nbounds * sizeof(double)) == 0);
}

static struct celeris_metric *series_new(const char *family, const char *route, int type,
                                         const double *bounds, size_t nbounds, unsigned rows)
{
    struct celeris_metric *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    size_t values = type == CELERIS_METRIC_HISTOGRAM ? nbounds + 2 : 1;
    m->stride = (values * sizeof(slot) + LINE - 1) / LINE * (LINE / sizeof(slot));
    m->rows = rows;
    size_t bytes = (size_t)(rows + 1) * m->stride * sizeof(slot);
    m->family = strdup(family);
    m->route = strdup(route);
    m->vals = aligned_alloc(LINE, bytes);
    if (!m->family || !m->route || !m->vals) {
        free(m->family);
        free(m->route);
        free(m->vals);
        free(m);
        return NULL;
    }
    memset(m->vals, 0, bytes);
    m->type = type;
    m->nbounds = nbounds;
    if (nbounds)
        memcpy(m->bounds, bounds, nbounds * sizeof(double));
    return m;
}

celeris_metric *celeris_metric_declare(const celeris_init_args *args, int type, const char *name,
                                       const char *help, const double *bounds, size_t nbounds)
{
    cel_module_init_ctx *ctx = open_ctx;
    const char *why = NULL;
    char family[MAX_FAMILY + 1];
    if (!ctx || args != &ctx->args) {
        cel_log(CEL_LOG_ERROR, "module: celeris_metric_declare(\"%.64s\") outside init: refused",
                name ? name : "(null)");
        return NULL;
    }
    /* The module's name as a metric name: [A-Za-z0-9_], not starting with a digit. */
    const char *mod = ctx->module && ctx->module[0] ? ctx->module : "module";
    size_t k = 0;
    if (*mod >= '0' && *mod <= '9')
        family[k++] = '_';
    for (; *mod && k < MAX_FAMILY; mod++)
        family[k++] = (char)((*mod >= 'A' && *mod <= 'Z') || (*mod >= 'a' && *mod <= 'z') ||
                                     (*mod >= '0' && *mod <= '9')
                                 ? *mod
                                 : '_');
    if (!(why = check(type, name, bounds, nbounds))) {
        int n = snprintf(family + k, sizeof(family) - k, "_%s", name);
        if (n < 0 || (size_t)n >= sizeof(family) - k)
            why = "the name is too long";
    }
    cel_module_metrics *mm = ctx->metrics;
    for (size_t i = 0; !why && mm && i < mm->n; i++)
        if (strcmp(mm->list[i]->family, family) == 0)
            why = "declared twice";
    if (!why && (!mm || mm->n == mm->cap)) {
        size_t cap = mm ? mm->cap * 2 : 8;
        if (!mm && !(mm = ctx->metrics = calloc(1, sizeof(*mm))))
            why = "out of memory";
        void *l = why ? NULL : realloc(mm->list, cap * sizeof(*mm->list));
        if (!why && !l)
            why = "out of memory";
        if (!why) {
            mm->list = l;
            mm->cap = cap;
        }
    }
    char *h = NULL;
    if (!why && help && !(h = strdup(help)))
        why = "out of memory";
    struct celeris_metric *m = NULL;
    if (!why) {
        pthread_mutex_lock(&lock);
        struct celeris_metric **tail = &registry, *old = NULL;
        for (; *tail; tail = &(*tail)->next)
            if (!old && strcmp((*tail)->family, family) == 0 &&
                strcmp((*tail)->route, ctx->args.route) == 0)
                old = *tail;
        if (old && same_shape(old, type, bounds, nbounds)) {
            m = old;
            m->refs++;
        } else if ((m = series_new(family, ctx->args.route, type, bounds, nbounds,
                                   ctx->args.workers))) {
            /* A changed series replaces the old in the output; the old lives on,
             * unlisted, while an instance of the old generation writes to it. */
            if (old) {
                for (struct celeris_metric **p = &registry; *p; p = &(*p)->next)
                    if (*p == old) {
                        *p = old->next;
                        break;
                    }
                for (tail = &registry; *tail; tail = &(*tail)->next)
                    ;
                old->next = NULL;
            }
            m->refs = 1;
            *tail = m;
        }
        if (m) {
            free(m->help);
            m->help = h;
            h = NULL;
        }
        pthread_mutex_unlock(&lock);
        if (!m)
            why = "out of memory";
    }
    free(h);
    if (why) {
        cel_log(CEL_LOG_ERROR,
                "module %s on route \"%s\": celeris_metric_declare(\"%.64s\") refused: %s",
                ctx->module ? ctx->module : "(unnamed)", ctx->args.route, name ? name : "(null)",
                why);
        return NULL;
    }
    mm->list[mm->n++] = m;
    return m;
}

/* ---- the scrape ---- */

typedef struct out {
    char *p;
    size_t len, cap;
} out;

static void emit(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(out *o, const char *fmt, ...)
{
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room ? o->p + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

/* ESC: the characters escaped besides backslash and newline ('"' in labels). */
static void emit_escaped(out *o, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\' || (quote && *s == '"'))
            emit(o, "\\%c", *s);
        else if (*s == '\n')
            emit(o, "\\n");
        else
            emit(o, "%c", *s);
    }
}

/* The shortest text that reads back as D, as Prometheus writes numbers. */
static void emit_number(out *o, double d)
{
    if (isnan(d)) {
        emit(o, "NaN");
        return;
    }
    if (isinf(d)) {
        emit(o, d > 0 ? "+Inf" : "-Inf");
        return;
    }
    char b[40];
    snprintf(b, sizeof(b), "%.15g", d);
    if (strtod(b, NULL) != d)
        snprintf(b, sizeof(b), "%.17g", d);
    emit(o, "%s", b);
}

static uint64_t sum_count(const struct celeris_metric *m, size_t i)
{
    uint64_t n = 0;
    for (unsigned r = 0; r <= m->rows; r++)
        n += atomic_load_explicit(&m->vals[r * m->stride + i], memory_order_relaxed);
    return n;
}

static double sum_double(const struct celeris_metric *m, size_t i)
{
    double d = 0;
    for (unsigned r = 0; r <= m->rows; r++)
        d += as_double(atomic_load_explicit(&m->vals[r * m->stride + i], memory_order_relaxed));
    return d;
}

/* The length of M's family name in OpenMetrics: a counter's without _total
 * (its samples add it back). */
static size_t om_family_len(const struct celeris_metric *m)
{
    size_t n = strlen(m->family);
    if (m->type == CELERIS_METRIC_COUNTER && n > 6 && strcmp(m->family + n - 6, "_total") == 0)
        n -= 6;
    return n;
}

static void emit_series(out *o, const struct celeris_metric *m, int om)
{
    if (m->type == CELERIS_METRIC_COUNTER && om) {
        emit(o, "%.*s_total{route=\"", (int)om_family_len(m), m->family);
        emit_escaped(o, m->route, 1);
        emit(o, "\"} ");
        emit_number(o, sum_double(m, 0));
        emit(o, "\n");
        return;
    }
    if (m->type != CELERIS_METRIC_HISTOGRAM) {
        emit(o, "%s{route=\"", m->family);
        emit_escaped(o, m->route, 1);
        emit(o, "\"} ");
        emit_number(o, sum_double(m, 0));
        emit(o, "\n");
        return;
    }
    uint64_t cum = 0;
    for (size_t b = 0; b <= m->nbounds; b++) {
        cum += sum_count(m, b);
        emit(o, "%s_bucket{route=\"", m->family);
        emit_escaped(o, m->route, 1);
        emit(o, "\",le=\"");
        emit_number(o, b < m->nbounds ? m->bounds[b] : INFINITY);
        emit(o, "\"} %llu\n", (unsigned long long)cum);
    }
    /* OpenMetrics has no sum (nor then a count) beside buckets below 0 */
    if (om && m->bounds[0] < 0)
        return;
    emit(o, "%s_sum{route=\"", m->family);
    emit_escaped(o, m->route, 1);
    emit(o, "\"} ");
    emit_number(o, sum_double(m, m->nbounds + 1));
    emit(o, "\n%s_count{route=\"", m->family);
    emit_escaped(o, m->route, 1);
    emit(o, "\"} %llu\n", (unsigned long long)cum);
}

/* Whether A and B are one family in the output: the same name, or in
 * OpenMetrics the same family name (a counter x_total is the family x). */
static int same_family(const struct celeris_metric *a, const struct celeris_metric *b, int om)
{
    if (!om)
        return strcmp(a->family, b->family) == 0;
    size_t n = om_family_len(a);
    return n == om_family_len(b) && memcmp(a->family, b->family, n) == 0;
}

size_t cel_module_metrics_prometheus(char *buf, size_t cap, int om)
{
    static const char *const types[] = {"", "counter", "gauge", "histogram"};
    out o = {buf, 0, cap};
    if (cap)
        buf[0] = 0;
    pthread_mutex_lock(&lock);
    /* A family's series are one group in the text, under one HELP and TYPE:
     * each family is written where it first appears, with all its routes (in
     * OpenMetrics, those of its first name and type: a counter x beside a
     * counter x_total is one family there, and shows once). */
    for (const struct celeris_metric *m = registry; m; m = m->next) {
        const struct celeris_metric *f = registry;
        while (f != m && !same_family(f, m, om))
            f = f->next;
        if (f != m)
            continue;
        int n = om ? (int)om_family_len(m) : (int)strlen(m->family);
        if (m->help) {
            emit(&o, "# HELP %.*s ", n, m->family);
            emit_escaped(&o, m->help, om);
            emit(&o, "\n");
        }
        emit(&o, "# TYPE %.*s %s\n", n, m->family, types[m->type]);
        for (const struct celeris_metric *s = m; s; s = s->next)
            if (strcmp(s->family, m->family) == 0 && s->type == m->type)
                emit_series(&o, s, om);
    }
    pthread_mutex_unlock(&lock);
    return o.len;
}
