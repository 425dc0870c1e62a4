/*
 * The entity tags of server/http_cond.h: cel_etag_format read back by a
 * decoder written out here (so two files of different mtime or size never
 * share a tag), its form (a strong tag: quotes around etagc octets, RFC 9110
 * 8.8.3) and length bound, and cel_etag_list_match on the tags it makes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "http_cond.h"

static const char digits[] = ":BCDEFGHIJKLMNOPQRSTUVWYjkqvwxyz";

/* The base-32 number in P[0..N), most significant digit first. */
static uint64_t ref_number(const char *p, size_t n)
{
    uint64_t v = 0;
    assert_true(n >= 1 && n <= 13);
    for (size_t i = 0; i < n; i++) {
        const char *d = memchr(digits, p[i], 32);
        assert_non_null(d);
        v = v << 5 | (uint64_t)(d - digits);
    }
    return v;
}

static void check_tag(int64_t mtime, uint64_t size)
{
    char buf[CEL_ETAG_MAX + 8];
    memset(buf, 0x7f, sizeof(buf));
    size_t n = cel_etag_format(buf, mtime, size);
    assert_true(n >= 5 && n <= CEL_ETAG_MAX);
    assert_int_equal(buf[n], 0x7f); /* nothing written past the tag */
    assert_int_equal(buf[0], '"');
    assert_int_equal(buf[n - 1], '"');
    for (size_t i = 1; i < n - 1; i++) /* etagc: %x21 / %x23-7E, no quote */
        assert_true(buf[i] >= 0x21 && buf[i] <= 0x7e && buf[i] != '"');
    const char *x = memchr(buf + 1, 'X', n - 2);
    assert_non_null(x);
    assert_true(ref_number(buf + 1, (size_t)(x - buf - 1)) == (uint64_t)mtime);
    assert_true(ref_number(x + 1, (size_t)(buf + n - 1 - x - 1)) == size);
    /* no leading zero digit, so each pair has one text */
    assert_true(buf[1] != digits[0] || x == buf + 2);
    assert_true(x[1] != digits[0] || x + 2 == buf + n - 1);
}

static void test_etag_form(void **state)
{
    (void)state;
    int64_t mtimes[] = {0,         1,         31, 32,       1023, 1024, 1796408768, (1ll << 35) - 1,
                        1ll << 35, INT64_MAX, -1, INT64_MIN};
    uint64_t sizes[] = {0, 1, 2, 31, 32, 4096, 65536, (1u << 20) - 1, 1u << 20, UINT64_MAX};
    for (size_t i = 0; i < sizeof(mtimes) / sizeof(mtimes[0]); i++)
        for (size_t j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++)
            check_tag(mtimes[i], sizes[j]);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        check_tag((int64_t)(x >> (i % 40)), x >> (i % 64));
    }
}

static void test_etag_examples(void **state)
{
    (void)state;
    char buf[CEL_ETAG_MAX];
    size_t n = cel_etag_format(buf, 0, 0);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "\":X:\"", 5);
    /* 2026-12-04, 2 bytes: 7 digits, an X, 1 digit */
    n = cel_etag_format(buf, 1796408768, 2);
    assert_int_equal(n, 11);
    assert_memory_equal(buf, "\"BVRGBO:XC\"", 11);
}

static void test_etag_list_match(void **state)
{
    (void)state;
    char buf[CEL_ETAG_MAX];
    cel_str tag = {buf, cel_etag_format(buf, 1796408768, 4096)};
    char list[3 * CEL_ETAG_MAX];
    size_t k = 0;
    memcpy(list + k, "\"x\", W/", 7), k += 7;
    memcpy(list + k, buf, tag.n), k += tag.n;
    assert_true(cel_etag_list_match((cel_str){list, k}, tag, 1));  /* weak: W/ matches */
    assert_false(cel_etag_list_match((cel_str){list, k}, tag, 0)); /* strong: it does not */
    assert_true(cel_etag_list_match(tag, tag, 0));
    char other[CEL_ETAG_MAX];
    cel_str next = {other, cel_etag_format(other, 1796408769, 4096)};
    assert_false(cel_etag_list_match(next, tag, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etag_form),
        cmocka_unit_test(test_etag_examples),
        cmocka_unit_test(test_etag_list_match),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
