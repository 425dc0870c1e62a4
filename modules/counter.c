/*
 * counter: per-worker state and a process-wide total.
 *
 *   - path: /count
 *     module: { name: counter }
 *
 * Each request adds one to its worker's count (plain memory: only that worker
 * touches it) and to the instance's total (atomic: every worker does). The
 * answer is JSON: {"worker":0,"worker_count":3,"total":7}.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <celeris/module.h>

typedef struct counter {
    atomic_ullong total;
} counter;

typedef struct per_worker {
    unsigned long long count;
} per_worker;

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    (void)args, (void)err, (void)errlen;
    counter *c = calloc(1, sizeof(*c));
    if (!c)
        return CELERIS_ERROR;
    atomic_init(&c->total, 0);
    *instance = c;
    return CELERIS_OK;
}

static void fini(void *instance)
{
    free(instance);
}

static int worker_init(void *instance, celeris_worker *w, void **data)
{
    (void)instance, (void)w;
    *data = calloc(1, sizeof(per_worker));
    return *data ? CELERIS_OK : CELERIS_ERROR;
}

static void worker_fini(void *instance, celeris_worker *w, void *data)
{
    (void)instance, (void)w;
    free(data);
}

static int handle(void *instance, celeris_req *req)
{
    counter *c = instance;
    per_worker *pw = celeris_req_worker_data(req);
    if (!pw)
        return CELERIS_ERROR;
    pw->count++;
    unsigned long long total = atomic_fetch_add(&c->total, 1) + 1;
    celeris_resp_header(req, "content-type", "application/json");
    return celeris_resp_printf(req, 200, "{\"worker\":%u,\"worker_count\":%llu,\"total\":%llu}",
                               celeris_req_worker_id(req), pw->count, total);
}

/* One field a line: clang-format would set these out in columns. */
/* clang-format off */
CELERIS_MODULE(counter) = {
    CELERIS_MODULE_HEADER,
    .name = "counter",
    .init = init,
    .fini = fini,
    .worker_init = worker_init,
    .worker_fini = worker_fini,
    .handle = handle,
};
/* clang-format on */
