/*
 * An HTTP/2 request under allocation failure (h2.c, h2_response.c): a session
 * without a socket gets a client preface, SETTINGS and one GET, and every heap
 * call, the Nth, fails, for each N until one run needs no failure. The
 * client's view (the frames in the output queue) and the access log must
 * agree: a stream the server reset with INTERNAL_ERROR before any HEADERS of
 * its answer left is a 500 in the log, not the handler's 200. One whose
 * response nghttp2 could not take (nghttp2_submit_response out of memory)
 * used to be logged and counted as a 200 of no bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "../alloc_count.h"
#include "one_route_env.h"
#include "h2.h"
#include "outq.h"
#include "pool.h"

/* preface; SETTINGS (empty); HEADERS stream 1, END_STREAM|END_HEADERS:
 * :method GET, :scheme http, :path /, :authority t (literal, indexed name) */
static const uint8_t request[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                 "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                                 "\x00\x00\x06\x01\x05\x00\x00\x00\x01"
                                 "\x82\x86\x84\x41\x01t";

static void want_flush(void *ctx)
{
    (void)ctx;
}

static int setup(void **state)
{
    (void)state;
    return one_route_setup("test_h2_alloc");
}

/* What the client would read: the output queue's bytes. */
typedef struct wire {
    uint8_t b[16384];
    size_t n;
} wire;

static ssize_t collect(void *ctx, const struct iovec *iov, int iovcnt)
{
    wire *w = ctx;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        size_t k = iov[i].iov_len;
        if (k > sizeof(w->b) - w->n)
            k = sizeof(w->b) - w->n;
        memcpy(w->b + w->n, iov[i].iov_base, k);
        w->n += k;
        total += k;
        if (k < iov[i].iov_len)
            break;
    }
    return total ? (ssize_t)total : -1;
}

typedef struct seen {
    int headers;   /* a HEADERS frame on stream 1 */
    int rst_error; /* RST_STREAM on stream 1: its error code; -1 none */
} seen;

static seen frames_of(const wire *w)
{
    seen s = {0, -1};
    size_t off = 0;
    while (off + 9 <= w->n) {
        const uint8_t *f = w->b + off;
        size_t len = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];
        uint32_t id = ((uint32_t)f[5] << 24 | (uint32_t)f[6] << 16 | (uint32_t)f[7] << 8 | f[8]) &
                      0x7fffffffu;
        if (off + 9 + len > w->n)
            break;
        if (id == 1 && f[3] == 0x1)
            s.headers = 1;
        if (id == 1 && f[3] == 0x3 && len == 4)
            s.rst_error = f[9] << 24 | f[10] << 16 | f[11] << 8 | f[12];
        off += 9 + len;
    }
    return s;
}

/* One connection: the request, with the FAIL_ATth heap call failing (0:
 * none). Returns the access log's lines; *CALLS the heap calls,
 * *S what reached the wire. */
static char *one_run(unsigned long fail_at, unsigned long *calls, seen *s)
{
    cel_pool *saved = run_begin();
    cel_outq q;
    cel_outq_init(&q, env.pool);
    cel_conn_view view = {"192.0.2.1", -1, NULL, 0, 0, 0, 0, {0}};
    cel_h2 *h = cel_h2_new(&env, &q, want_flush, NULL, &view);
    assert_non_null(h);

    alloc_calls = 0;
    alloc_fail_at = fail_at;
    alloc_counting = 1;
    if (cel_h2_recv(h, request, sizeof(request) - 1) == 0)
        cel_h2_send(h);
    alloc_counting = 0;
    alloc_fail_at = 0;
    *calls = alloc_calls;

    static wire w;
    w.n = 0;
    while (cel_outq_pending(&q) && cel_outq_flush(&q, collect, &w) == 0 && w.n < sizeof(w.b))
        ;
    *s = frames_of(&w);
    cel_h2_free(h);
    cel_outq_deinit(&q);
    return run_end(saved);
}

static void test_reset_answer_is_logged_500(void **state)
{
    (void)state;
    unsigned long calls;
    seen s;
    char *log = one_run(0, &calls, &s);
    /* without failures: answered on stream 1 */
    assert_string_equal(log, "HTTP/2.0 200\n");
    assert_true(s.headers);
    assert_int_equal(s.rst_error, -1);
    free(log);
    assert_true(calls > 0);
    unsigned long n, reset_logged_500 = 0;
    for (n = 1; n <= calls + 1; n++) {
        unsigned long used;
        log = one_run(n, &used, &s);
        if (!s.headers && s.rst_error == 2 /* INTERNAL_ERROR */) {
            /* reset without an answer: a 500, or no line when the stream
             * itself could not be made (nothing about it is known) */
            int ok = !*log || !strcmp(log, "HTTP/2.0 500\n");
            if (!ok)
                print_error("heap call %lu of %lu failing: stream 1 reset without an answer, "
                            "logged as:\n%s",
                            n, calls, log);
            reset_logged_500 += *log != 0;
            free(log);
            assert_true(ok);
        } else {
            free(log);
        }
        if (used < n)
            break; /* nothing failed: every failing point was tried */
    }
    assert_true(n <= calls + 1);
    /* the case this test is for (nghttp2_submit_response failing) was
     * reached at least once */
    assert_true(reset_logged_500 > 0);
}

int main(void)
{
    alloc_counting = 0; /* only around one_run's recv and send */
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reset_answer_is_logged_500),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
