/* The metrics handler (Prometheus text format, or OpenMetrics text when the
 * request's accept prefers it), the status handler (a small JSON for health
 * checks) and the readiness handler (a balancer's check: 503 while draining):
 * they read the counters of stats.c, module_metrics.c and drain.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "drain.h"
#include "handler.h"
#include "module_metrics.h"
#include "stats.h"
#include "version.h"

enum { K_METRICS, K_STATUS, K_READINESS };

typedef struct stats_handler {
    cel_handler base;
    int kind;
} stats_handler;

/* One of the two formats as an accept field rates it: the q-value (in
 * thousandths) of the most specific media range that names it (specificity:
 * 0 for * / *, 1 for type / *, 2 for type/subtype, 3 with the version), or
 * q = -1 when none does. */
typedef struct fit {
    int q, spec;
} fit;

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* A qvalue ("0", "0.5", "1.000"): thousandths, or 1000 when malformed (the
 * range then counts as if it had none). */
static int qvalue(const char *p, size_t n)
{
    if (!n || (p[0] != '0' && p[0] != '1') || n > 5 || (n > 1 && p[1] != '.'))
        return 1000;
    int q = (p[0] - '0') * 1000;
    for (size_t i = 2, scale = 100; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9')
            return 1000;
        q += (p[i] - '0') * (int)scale;
    }
    return q > 1000 ? 1000 : q;
}

static int is(const char *p, size_t n, const char *lit)
{
    return n == strlen(lit) && strncasecmp(p, lit, n) == 0;
}

/* Rates media range R (N octets: type/subtype and parameters) for
 * TYPE/SUB in VERSION, into F. */
static void rate(const char *r, size_t n, const char *type, const char *sub, const char *version,
                 fit *f)
{
    const char *semi = memchr(r, ';', n), *slash;
    const char *mend = semi ? semi : r + n;
    while (mend > r && (mend[-1] == ' ' || mend[-1] == '\t'))
        mend--;
    if (!(slash = memchr(r, '/', (size_t)(mend - r))))
        return;
    int spec;
    if (is(r, (size_t)(slash - r), "*") && is(slash + 1, (size_t)(mend - slash - 1), "*"))
        spec = 0;
    else if (!is(r, (size_t)(slash - r), type))
        return;
    else if (is(slash + 1, (size_t)(mend - slash - 1), "*"))
        spec = 1;
    else if (is(slash + 1, (size_t)(mend - slash - 1), sub))
        spec = 2;
    else
        return;
    int q = 1000;
    /* the parameters: ";name=value" each, OWS around the parts */
    for (size_t at = semi ? (size_t)(semi - r) : n; at < n;) {
        size_t b = at + 1, e = b;
        while (e < n && r[e] != ';')
            e++;
        at = e;
        while (b < e && (r[b] == ' ' || r[b] == '\t'))
            b++;
        while (e > b && (r[e - 1] == ' ' || r[e - 1] == '\t'))
            e--;
        size_t eq = b;
        while (eq < e && r[eq] != '=')
            eq++;
        if (eq == e)
            continue;
        size_t ne = eq, v = eq + 1;
        while (ne > b && (r[ne - 1] == ' ' || r[ne - 1] == '\t'))
            ne--;
        while (v < e && (r[v] == ' ' || r[v] == '\t'))
            v++;
        if (e - v >= 2 && r[v] == '"' && r[e - 1] == '"')
            v++, e--;
        if (is(r + b, ne - b, "q"))
            q = qvalue(r + v, e - v);
        else if (spec == 2 && is(r + b, ne - b, "version")) {
            if (!is(r + v, e - v, version))
                return; /* another version than the one we write */
            spec = 3;
        }
    }
    if (spec > f->spec || (spec == f->spec && q > f->q))
        *f = (fit){q, spec};
}

/* Whether REQ's accept fields prefer OpenMetrics 1.0 to the Prometheus text
 * format 0.0.4: a higher q-value, or the same one from a more specific range.
 * Prometheus sends "application/openmetrics-text;version=1.0.0,...,
 * text/plain;version=0.0.4;q=0.5,* / *;q=0.1"; without an accept field, or
 * when neither is acceptable, the answer is the Prometheus text format. */
static int wants_openmetrics(const cel_request *req)
{
    fit om = {-1, -1}, text = {-1, -1};
    for (size_t i = 0; i < req->nheaders; i++) {
        const cel_header *h = &req->headers[i];
        if (!is(h->name.p, h->name.n, "accept"))
            continue;
        const char *p = h->value.p, *end = p + h->value.n;
        while (p < end) {
            p = skip_ows(p, end);
            const char *comma = memchr(p, ',', (size_t)(end - p));
            size_t n = (size_t)((comma ? comma : end) - p);
            rate(p, n, "application", "openmetrics-text", "1.0.0", &om);
            rate(p, n, "text", "plain", "0.0.4", &text);
            p = comma ? comma + 1 : end;
        }
    }
    return om.q > 0 && (om.q > text.q || (om.q == text.q && om.spec > text.spec));
}

static const cel_kv vary = {CEL_STR_LIT("vary"), CEL_STR_LIT("accept")};

static int handle(cel_handler *h, cel_exchange *x, cel_response *res)
{
    stats_handler *s = (stats_handler *)h;
    memset(res, 0, sizeof(*res));
    res->status = 200;
    res->headers = NULL;
    int draining = cel_draining();
    if (s->kind == K_READINESS) {
        res->status = draining ? 503 : 200;
        res->content_type = CEL_STR_LIT("text/plain");
        res->body = draining ? "draining\n" : "ready\n";
        res->body_len = strlen(res->body);
        return 0;
    }
    if (s->kind == K_STATUS) {
        res->status = draining ? 503 : 200;
        char *buf = cel_arena_alloc(x->arena, 256);
        if (!buf)
            return CEL_ENOMEM;
        int n = snprintf(buf, 256,
                         "{\"status\":\"%s\",\"version\":\"%s\",\"generation\":%lu,"
                         "\"workers\":%u,\"connections\":%llu,\"uptime_seconds\":%.0f}",
                         draining ? "draining" : "ok", CEL_VERSION, cel_stats_generation(),
                         cel_stats_workers(), (unsigned long long)cel_stats_connections(),
                         cel_stats_uptime());
        res->content_type = CEL_STR_LIT("application/json");
        res->body = buf;
        res->body_len = n > 0 ? (size_t)n : 0;
        return 0;
    }
    int om = wants_openmetrics(x->req);
    static const char eof[] = "# EOF\n";
    /* Counters move between two passes: a little slack for the second one. */
    size_t cap = 32768;
    for (int attempt = 0; attempt < 3; attempt++) {
        char *buf = cel_arena_alloc(x->arena, cap);
        if (!buf)
            return CEL_ENOMEM;
        size_t n = cel_stats_prometheus(buf, cap, om);
        n += cel_module_metrics_prometheus(n < cap ? buf + n : NULL, n < cap ? cap - n : 0, om);
        if (om && n + sizeof(eof) <= cap) {
            memcpy(buf + n, eof, sizeof(eof) - 1);
            n += sizeof(eof) - 1;
        } else if (om)
            n += sizeof(eof);
        if (n < cap) {
            res->content_type =
                om ? CEL_STR_LIT("application/openmetrics-text; version=1.0.0; charset=utf-8")
                   : CEL_STR_LIT("text/plain; version=0.0.4; charset=utf-8");
            res->headers = &vary;
            res->nheaders = 1;
            res->body = buf;
            res->body_len = n;
            return 0;
        }
        cap = n + 4096;
    }
    return CEL_EIO;
}

static void destroy(cel_handler *h)
{
    free(h);
}

static cel_handler *make(int kind)
{
    static const char *const names[] = {"metrics", "status", "readiness"};
    stats_handler *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->base.type = names[kind];
    s->base.handle = handle;
    s->base.destroy = destroy;
    s->kind = kind;
    return &s->base;
}

cel_handler *cel_handler_metrics_new(void)
{
    return make(K_METRICS);
}

cel_handler *cel_handler_status_new(void)
{
    return make(K_STATUS);
}

cel_handler *cel_handler_readiness_new(void)
{
    return make(K_READINESS);
}
