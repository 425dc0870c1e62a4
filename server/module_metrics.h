/*
 * Module metrics (celeris_metric_* of celeris/module.h): the series modules
 * declare, kept in one registry that outlives configuration generations, so
 * a reload that declares a series again continues it, and written to the
 * metrics route after celerisd's own.
 */
#ifndef CEL_MODULE_METRICS_H
#define CEL_MODULE_METRICS_H

#include <stddef.h>

#include "celeris/module.h"

typedef struct cel_module_metrics cel_module_metrics;

/* What a module's init runs in: the daemon passes &ctx.args to init between
 * cel_module_init_open and _close (same thread), and celeris_metric_declare
 * accepts only that address. METRICS collects the series declared (the
 * caller frees them with cel_module_metrics_free). */
typedef struct cel_module_init_ctx {
    celeris_init_args args;
    const char *module; /* the module's name for logs and metric names, or NULL */
    cel_module_metrics *metrics;
} cel_module_init_ctx;

void cel_module_init_open(cel_module_init_ctx *ctx);
void cel_module_init_close(cel_module_init_ctx *ctx);

/* Lets go of an instance's series (a series no instance uses any more leaves
 * the output). NULL is fine. Any thread. */
void cel_module_metrics_free(cel_module_metrics *m);

/* Appends every series in use in Prometheus text to BUF (at most CAP bytes)
 * and returns the length the whole text needs, as snprintf does (BUF may be
 * NULL when CAP is 0). With OPENMETRICS in OpenMetrics 1.0 text: a counter's
 * family named without _total and its samples with it, HELP escaping '"'
 * too, no _sum or _count beside buckets below 0. Any thread. */
size_t cel_module_metrics_prometheus(char *buf, size_t cap, int openmetrics);

#endif
