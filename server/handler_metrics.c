/* The metrics handler (Prometheus text format), the status handler (a small
 * JSON for health checks) and the readiness handler (a balancer's check: 503
 * while draining): they read the counters of stats.c, module_metrics.c and
 * drain.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    /* Counters move between two passes: a little slack for the second one. */
    size_t cap = 32768;
    for (int attempt = 0; attempt < 3; attempt++) {
        char *buf = cel_arena_alloc(x->arena, cap);
        if (!buf)
            return CEL_ENOMEM;
        size_t n = cel_stats_prometheus(buf, cap);
        n += cel_module_metrics_prometheus(n < cap ? buf + n : NULL, n < cap ? cap - n : 0);
        if (n < cap) {
            res->content_type = CEL_STR_LIT("text/plain; version=0.0.4; charset=utf-8");
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
