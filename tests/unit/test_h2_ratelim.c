/*
 * The HTTP/2 flood limits' parts (server/h2_ratelim.c): the token bucket
 * against a reference model stepped second by second, its edges (no burst, no
 * rate, a long silence, a high rate, the clock set back), and the glitch classification against
 * RFC 9113's frame types for every type and flag octet.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <nghttp2/nghttp2.h>

#include "h2_ratelim.h"

static void test_burst_then_dry(void **state)
{
    (void)state;
    cel_bucket b;
    cel_bucket_init(&b, 5, 1, 1000);
    for (int i = 0; i < 5; i++)
        assert_int_equal(cel_bucket_take(&b, 1000), 0);
    /* dry within the second, however often it is asked */
    for (int i = 0; i < 3; i++)
        assert_int_equal(cel_bucket_take(&b, 1000), -1);
}

static void test_refill_per_second(void **state)
{
    (void)state;
    cel_bucket b;
    cel_bucket_init(&b, 10, 3, 50);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cel_bucket_take(&b, 50), 0);
    assert_int_equal(cel_bucket_take(&b, 50), -1);
    /* one second later: RATE tokens, no more */
    for (int i = 0; i < 3; i++)
        assert_int_equal(cel_bucket_take(&b, 51), 0);
    assert_int_equal(cel_bucket_take(&b, 51), -1);
    /* two seconds of silence: twice RATE */
    for (int i = 0; i < 6; i++)
        assert_int_equal(cel_bucket_take(&b, 53), 0);
    assert_int_equal(cel_bucket_take(&b, 53), -1);
    /* a long silence fills it to BURST, never beyond */
    for (int i = 0; i < 10; i++)
        assert_int_equal(cel_bucket_take(&b, 100), 0);
    assert_int_equal(cel_bucket_take(&b, 100), -1);
}

/* The clock set back (it is the wall clock) refills nothing, and the
 * bucket counts on from the new time. */
static void test_clock_set_back(void **state)
{
    (void)state;
    cel_bucket b;
    cel_bucket_init(&b, 4, 1, 1000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(cel_bucket_take(&b, 1000), 0);
    assert_int_equal(cel_bucket_take(&b, 990), -1);
    assert_int_equal(cel_bucket_take(&b, 990), -1);
    assert_int_equal(cel_bucket_take(&b, 991), 0);
    assert_int_equal(cel_bucket_take(&b, 991), -1);
}

static void test_no_burst_no_rate(void **state)
{
    (void)state;
    cel_bucket b;
    cel_bucket_init(&b, 0, 100, 7);
    assert_int_equal(cel_bucket_take(&b, 7), -1);
    assert_int_equal(cel_bucket_take(&b, 8), -1); /* refills up to BURST: none */
    cel_bucket_init(&b, 2, 0, 7);
    assert_int_equal(cel_bucket_take(&b, 7), 0);
    assert_int_equal(cel_bucket_take(&b, 7), 0);
    assert_int_equal(cel_bucket_take(&b, 1000000), -1); /* no rate: never again */
}

static void test_no_overflow(void **state)
{
    (void)state;
    /* the largest rate over a silence of decades: the refill is computed
     * wide and capped, not wrapped around to a small count */
    cel_bucket b;
    cel_bucket_init(&b, 4, UINT32_MAX, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(cel_bucket_take(&b, 0), 0);
    assert_int_equal(cel_bucket_take(&b, 0), -1);
    time_t later = (time_t)2000000000;
    for (int i = 0; i < 4; i++)
        assert_int_equal(cel_bucket_take(&b, later), 0);
    assert_int_equal(cel_bucket_take(&b, later), -1);
    /* a silence whose refill wraps 32 bits to exactly 0 (2^32 * 1 token) */
    cel_bucket_init(&b, 3, 1u << 31, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cel_bucket_take(&b, 0), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cel_bucket_take(&b, 2), 0);
    assert_int_equal(cel_bucket_take(&b, 2), -1);
}

/* A client taking a pseudo-random number of tokens each second, against a
 * model written out here: the bucket agrees on every take. */
static void test_against_model(void **state)
{
    (void)state;
    const uint32_t burst = 37, rate = 11;
    cel_bucket b;
    cel_bucket_init(&b, burst, rate, 10);
    uint64_t model = burst;
    uint32_t x = 2463534242u;
    time_t now = 10;
    for (int sec = 0; sec < 2000; sec++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        time_t step = x % 4 == 0 ? 0 : x % 5; /* stays, or moves 1 to 4 seconds */
        if (step) {
            now += step;
            model += (uint64_t)step * rate;
            if (model > burst)
                model = burst;
        }
        uint32_t want = x >> 8 & 63;
        for (uint32_t i = 0; i < want; i++) {
            int expect = model ? 0 : -1;
            if (model)
                model--;
            assert_int_equal(cel_bucket_take(&b, now), expect);
        }
    }
}

/* RFC 9113 6 (and RFC 9218 7.1 for PRIORITY_UPDATE, 0x10, unknown to 9113
 * itself: any type above CONTINUATION counts). */
static int ref_glitch(unsigned type, unsigned flags, uint32_t len)
{
    switch (type) {
    case 0x0: /* DATA: only an empty one that does not end the stream */
        return len == 0 && !(flags & 0x1);
    case 0x2: /* PRIORITY: deprecated, does nothing here */
        return 1;
    case 0x4: /* SETTINGS */
    case 0x6: /* PING: each asks for an ACK */
        return !(flags & 0x1);
    case 0x1: /* HEADERS */
    case 0x3: /* RST_STREAM (its own budget) */
    case 0x5: /* PUSH_PROMISE */
    case 0x7: /* GOAWAY */
    case 0x8: /* WINDOW_UPDATE (counted against DATA sent instead) */
    case 0x9: /* CONTINUATION */
        return 0;
    default:
        return 1;
    }
}

static void test_glitch_every_type(void **state)
{
    (void)state;
    static const uint32_t lens[] = {0, 1, 5, 8, 16384, 16777215};
    for (unsigned type = 0; type < 256; type++)
        for (unsigned flags = 0; flags < 256; flags++)
            for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
                int got = cel_h2_is_glitch((uint8_t)type, (uint8_t)flags, lens[i]);
                if (!!got != ref_glitch(type, flags, lens[i]))
                    fail_msg("type 0x%x flags 0x%x len %u: %d", type, flags, lens[i], got);
            }
    /* the named cases, for a reader */
    assert_true(cel_h2_is_glitch(NGHTTP2_DATA, NGHTTP2_FLAG_NONE, 0));
    assert_false(cel_h2_is_glitch(NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 0));
    assert_false(cel_h2_is_glitch(NGHTTP2_DATA, NGHTTP2_FLAG_NONE, 1));
    assert_true(cel_h2_is_glitch(NGHTTP2_PING, NGHTTP2_FLAG_NONE, 8));
    assert_false(cel_h2_is_glitch(NGHTTP2_PING, NGHTTP2_FLAG_ACK, 8));
    assert_true(cel_h2_is_glitch(NGHTTP2_SETTINGS, NGHTTP2_FLAG_NONE, 0));
    assert_false(cel_h2_is_glitch(NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0));
    assert_true(cel_h2_is_glitch(NGHTTP2_PRIORITY, NGHTTP2_FLAG_NONE, 5));
    assert_true(cel_h2_is_glitch(NGHTTP2_PRIORITY_UPDATE, NGHTTP2_FLAG_NONE, 4));
    assert_false(cel_h2_is_glitch(NGHTTP2_WINDOW_UPDATE, NGHTTP2_FLAG_NONE, 4));
    assert_false(cel_h2_is_glitch(NGHTTP2_RST_STREAM, NGHTTP2_FLAG_NONE, 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_dry),   cmocka_unit_test(test_refill_per_second),
        cmocka_unit_test(test_no_burst_no_rate), cmocka_unit_test(test_no_overflow),
        cmocka_unit_test(test_against_model),    cmocka_unit_test(test_glitch_every_type),
        cmocka_unit_test(test_clock_set_back),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
