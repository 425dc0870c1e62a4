/*
 * The h2c upgrade (h1.c, h2_upgrade.c) under allocation failure: an HTTP/1.1
 * connection without a socket gets an upgrading request, and every heap call
 * from the Nth on fails, for each N until one run needs no failure. However
 * the run ends (101 and stream 1, an answer over HTTP/1.1, a 500, a close),
 * the request's handler runs at most once: the access log, one line per
 * answered request, has at most one line of the route's 200. A session that
 * failed after the handler ran on stream 1 used to be dropped for an answer
 * over HTTP/1.1, running the handler again.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../alloc_count.h"
#include "one_route_env.h"
#include "h1.h"
#include "h2.h"
#include "outq.h"
#include "pool.h"

/* SETTINGS_MAX_CONCURRENT_STREAMS 100, SETTINGS_INITIAL_WINDOW_SIZE 65535 */
static const char request[] = "GET / HTTP/1.1\r\nHost: t\r\n"
                              "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                              "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";

typedef struct conn {
    const cel_proto *proto;
    void *ps;
    void *next_ps; /* set by the upgrade callback, as conn.c's on_upgrade does */
} conn;

static void want_flush(void *ctx)
{
    (void)ctx;
}

static void on_upgrade(void *ctx, void *h2)
{
    ((conn *)ctx)->next_ps = h2;
}

static int setup(void **state)
{
    (void)state;
    return one_route_setup("test_h1_upgrade");
}

static size_t count(const char *s, const char *what)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* One connection: the request, with every heap call from the FAIL_ATth on
 * failing (0: none). Returns the access log's lines; *CALLS the heap calls. */
static char *one_run(unsigned long fail_at, unsigned long *calls)
{
    cel_pool *saved = run_begin();
    cel_outq q;
    cel_outq_init(&q, env.pool);
    cel_conn_view view = {"192.0.2.1", -1, NULL, 0, 0, 0, 0, {0}};
    conn c = {&cel_h1_proto, NULL, NULL};
    c.ps = cel_h1_new(&env, &q, want_flush, &c, &view, on_upgrade, &c);
    assert_non_null(c.ps);

    alloc_calls = 0;
    alloc_fail_at = fail_at;
    alloc_counting = 1;
    c.proto->recv(c.ps, (const uint8_t *)request, sizeof(request) - 1);
    if (c.next_ps) { /* conn.c's switch_to_h2: nothing followed the request */
        cel_h1_proto.free(c.ps);
        c.proto = &cel_h2_proto;
        c.ps = c.next_ps;
    }
    c.proto->send(c.ps);
    alloc_counting = 0;
    alloc_fail_at = 0;
    *calls = alloc_calls;

    c.proto->free(c.ps);
    cel_outq_deinit(&q);
    return run_end(saved);
}

static void test_handler_runs_once_whatever_fails(void **state)
{
    (void)state;
    unsigned long calls;
    char *log = one_run(0, &calls);
    /* without failures: upgraded, answered on stream 1 */
    assert_string_equal(log, "HTTP/2.0 200\n");
    free(log);
    assert_true(calls > 0);
    alloc_fail_rest = 1;
    unsigned long n;
    for (n = 1; n <= calls + 1; n++) {
        unsigned long used;
        log = one_run(n, &used);
        size_t answered = count(log, " 200\n");
        if (answered > 1)
            print_error("heap calls failing from the %luth of %lu: the handler ran %zu times:\n%s",
                        n, calls, answered, log);
        free(log);
        assert_true(answered <= 1);
        if (used < n)
            break; /* nothing failed: every failing point was tried */
    }
    alloc_fail_rest = 0;
    assert_true(n <= calls + 1);
}

int main(void)
{
    alloc_counting = 0; /* only around one_run's recv and send */
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handler_runs_once_whatever_fails),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
