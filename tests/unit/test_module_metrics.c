#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "module_metrics.h"

/* An instance's init: the context open while DECLARE runs, as the module
 * handler does it. */
typedef struct inst {
    cel_module_init_ctx ctx;
    celeris_metric *m[4];
} inst;

static void open_init(inst *in, const char *module, const char *route, unsigned workers)
{
    memset(in, 0, sizeof(*in));
    in->ctx.args = (celeris_init_args){sizeof(celeris_init_args), route, "{}", 2, workers, 0};
    in->ctx.module = module;
    cel_module_init_open(&in->ctx);
}

static void close_init(inst *in)
{
    cel_module_init_close(&in->ctx);
}

/* The whole scrape, NUL-terminated, owned by the caller. */
static char *scrape(void)
{
    size_t n = cel_module_metrics_prometheus(NULL, 0, 0);
    char *buf = malloc(n + 1);
    assert_non_null(buf);
    assert_int_equal(cel_module_metrics_prometheus(buf, n + 1, 0), n);
    return buf;
}

/* Runs on "worker" ID (the env metrics find through cel_env_self), or on no
 * worker when ID is -1. */
static cel_env fake;

static void as_worker(int id)
{
    memset(&fake, 0, sizeof(fake));
    fake.worker_id = (unsigned)id;
    cel_env_set_self(id < 0 ? NULL : &fake);
}

static const double bounds[] = {0.5, 10};

static void declare_all(inst *in)
{
    const celeris_init_args *a = &in->ctx.args;
    in->m[0] =
        celeris_metric_declare(a, CELERIS_METRIC_COUNTER, "hits_total", "Hits \\ all.", NULL, 0);
    in->m[1] = celeris_metric_declare(a, CELERIS_METRIC_GAUGE, "level", NULL, NULL, 0);
    in->m[2] =
        celeris_metric_declare(a, CELERIS_METRIC_HISTOGRAM, "seconds", "Time\ntaken.", bounds, 2);
    for (int i = 0; i < 3; i++)
        assert_non_null(in->m[i]);
}

static void test_output(void **state)
{
    (void)state;
    inst in;
    open_init(&in, "my-mod.v2", "/a/\"q\"", 2);
    declare_all(&in);
    close_init(&in);
    as_worker(0);
    celeris_metric_add(in.m[0], 2);
    celeris_metric_add(in.m[0], -5); /* a counter never goes down */
    celeris_metric_add(in.m[1], 3);
    celeris_metric_observe(in.m[2], 0.25);
    celeris_metric_observe(in.m[2], 10);
    celeris_metric_add(in.m[2], 1);     /* not a histogram's call: ignored */
    celeris_metric_observe(in.m[0], 1); /* nor a counter's */
    as_worker(1);
    celeris_metric_add(in.m[0], 1.5);
    celeris_metric_add(in.m[1], -1);
    celeris_metric_observe(in.m[2], 99);
    as_worker(7); /* beyond the rows: the shared one */
    celeris_metric_add(in.m[0], 1);
    as_worker(-1);
    celeris_metric_add(in.m[0], 0.5);
    celeris_metric_add(NULL, 1);
    char *text = scrape();
    assert_string_equal(text, "# HELP my_mod_v2_hits_total Hits \\\\ all.\n"
                              "# TYPE my_mod_v2_hits_total counter\n"
                              "my_mod_v2_hits_total{route=\"/a/\\\"q\\\"\"} 5\n"
                              "# TYPE my_mod_v2_level gauge\n"
                              "my_mod_v2_level{route=\"/a/\\\"q\\\"\"} 2\n"
                              "# HELP my_mod_v2_seconds Time\\ntaken.\n"
                              "# TYPE my_mod_v2_seconds histogram\n"
                              "my_mod_v2_seconds_bucket{route=\"/a/\\\"q\\\"\",le=\"0.5\"} 1\n"
                              "my_mod_v2_seconds_bucket{route=\"/a/\\\"q\\\"\",le=\"10\"} 2\n"
                              "my_mod_v2_seconds_bucket{route=\"/a/\\\"q\\\"\",le=\"+Inf\"} 3\n"
                              "my_mod_v2_seconds_sum{route=\"/a/\\\"q\\\"\"} 109.25\n"
                              "my_mod_v2_seconds_count{route=\"/a/\\\"q\\\"\"} 3\n");
    free(text);
    /* Too small a buffer: the length it needs, as snprintf. */
    char small[16];
    assert_true(cel_module_metrics_prometheus(small, sizeof(small), 0) > sizeof(small));
    cel_module_metrics_free(in.ctx.metrics);
    text = scrape();
    assert_string_equal(text, "");
    free(text);
}

static void test_reload_continues_and_changes_restart(void **state)
{
    (void)state;
    inst old, twin, next;
    open_init(&old, "m", "/r", 1);
    declare_all(&old);
    close_init(&old);
    /* A second route with the same module: one family, two series. */
    open_init(&twin, "m", "/s", 1);
    twin.m[0] =
        celeris_metric_declare(&twin.ctx.args, CELERIS_METRIC_COUNTER, "hits_total", NULL, NULL, 0);
    close_init(&twin);
    as_worker(0);
    celeris_metric_add(old.m[0], 4);
    celeris_metric_add(old.m[1], 1);
    celeris_metric_add(twin.m[0], 1);
    /* The reload: the same counter, a gauge that became a counter, a
     * histogram with other bounds. */
    open_init(&next, "m", "/r", 1);
    const celeris_init_args *a = &next.ctx.args;
    static const double other[] = {1, 2, 3};
    next.m[0] = celeris_metric_declare(a, CELERIS_METRIC_COUNTER, "hits_total", NULL, NULL, 0);
    next.m[1] = celeris_metric_declare(a, CELERIS_METRIC_COUNTER, "level", NULL, NULL, 0);
    next.m[2] = celeris_metric_declare(a, CELERIS_METRIC_HISTOGRAM, "seconds", NULL, other, 3);
    close_init(&next);
    assert_ptr_equal(next.m[0], old.m[0]);
    assert_ptr_not_equal(next.m[1], old.m[1]);
    celeris_metric_add(next.m[0], 1);
    celeris_metric_add(old.m[1], 10); /* the old generation, still finishing */
    cel_module_metrics_free(old.ctx.metrics);
    as_worker(-1);
    char *text = scrape();
    /* The help is the newest declaration's (none). */
    assert_string_equal(text, "# TYPE m_hits_total counter\n"
                              "m_hits_total{route=\"/r\"} 5\n"
                              "m_hits_total{route=\"/s\"} 1\n"
                              "# TYPE m_level counter\n"
                              "m_level{route=\"/r\"} 0\n"
                              "# TYPE m_seconds histogram\n"
                              "m_seconds_bucket{route=\"/r\",le=\"1\"} 0\n"
                              "m_seconds_bucket{route=\"/r\",le=\"2\"} 0\n"
                              "m_seconds_bucket{route=\"/r\",le=\"3\"} 0\n"
                              "m_seconds_bucket{route=\"/r\",le=\"+Inf\"} 0\n"
                              "m_seconds_sum{route=\"/r\"} 0\n"
                              "m_seconds_count{route=\"/r\"} 0\n");
    free(text);
    cel_module_metrics_free(next.ctx.metrics);
    cel_module_metrics_free(twin.ctx.metrics);
    text = scrape();
    assert_string_equal(text, "");
    free(text);
}

static void test_refusals(void **state)
{
    (void)state;
    inst in;
    open_init(&in, "7up", "/r", 1);
    const celeris_init_args *a = &in.ctx.args;
    celeris_init_args copy = *a;
    static const double down[] = {2, 1};
    static const double inf[] = {1, 1.0 / 0.0};
    double many[CELERIS_METRIC_MAX_BOUNDS + 1];
    for (int i = 0; i <= CELERIS_METRIC_MAX_BOUNDS; i++)
        many[i] = i;
    assert_null(celeris_metric_declare(&copy, CELERIS_METRIC_COUNTER, "c", NULL, NULL, 0));
    assert_null(celeris_metric_declare(a, 0, "c", NULL, NULL, 0));
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_COUNTER, "", NULL, NULL, 0));
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_COUNTER, "1c", NULL, NULL, 0));
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_COUNTER, "c-d", NULL, NULL, 0));
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_COUNTER, NULL, NULL, NULL, 0));
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_GAUGE, "g", NULL, down, 2));
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_HISTOGRAM, "h", NULL, NULL, 0));
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_HISTOGRAM, "h", NULL, down, 2));
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_HISTOGRAM, "h", NULL, inf, 2));
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_HISTOGRAM, "h", NULL, many,
                                       CELERIS_METRIC_MAX_BOUNDS + 1));
    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_COUNTER, longname, NULL, NULL, 0));
    celeris_metric *ok = celeris_metric_declare(a, CELERIS_METRIC_HISTOGRAM, "h", NULL, many,
                                                CELERIS_METRIC_MAX_BOUNDS);
    assert_non_null(ok);
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_COUNTER, "h", NULL, NULL, 0));
    close_init(&in);
    /* After init: refused. */
    assert_null(celeris_metric_declare(a, CELERIS_METRIC_COUNTER, "late", NULL, NULL, 0));
    char *text = scrape();
    assert_non_null(strstr(text, "# TYPE _7up_h histogram\n")); /* no leading digit */
    free(text);
    cel_module_metrics_free(in.ctx.metrics);
}

int main(void)
{
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output),
        cmocka_unit_test(test_reload_continues_and_changes_restart),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
