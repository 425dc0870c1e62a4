/*
 * The HTTP helpers (server/http.h), each against a straightforward reference:
 * the character table against RFC 9110's tchar (and the other classes)
 * for every octet, the date
 * writer against strftime in the C locale, the decimal writer against
 * snprintf, the reason phrases and connection-specific names against lists
 * written out here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http.h"

/* RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-"
 * / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA, ALPHA and DIGIT as in
 * RFC 5234 B.1. */
static int ref_alnum(unsigned c)
{
    return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39);
}

static int ref_tchar(unsigned c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    for (size_t i = 0; i < sizeof(extra) - 1; i++)
        if ((unsigned char)extra[i] == c)
            return 1;
    return ref_alnum(c);
}

static int in_set(unsigned c, const char *set)
{
    for (; *set; set++)
        if ((unsigned char)*set == c)
            return 1;
    return 0;
}

/* The other classes, as RFC 9110 5.5 (field-vchar = VCHAR / obs-text),
 * RFC 3986 3.2.2 (reg-name, IP-literal, pct-encoded) and 3.1 (scheme) say. */
static unsigned ref_classes(unsigned c)
{
    int vis = (c >= 0x21 && c <= 0x7e) || c >= 0x80;
    unsigned r = 0;
    if (ref_tchar(c) && !(c >= 'A' && c <= 'Z'))
        r |= CEL_HTTP_NAME;
    if (ref_tchar(c))
        r |= CEL_HTTP_TCHAR;
    if (vis || c == ' ' || c == '\t')
        r |= CEL_HTTP_VALUE;
    if (vis)
        r |= CEL_HTTP_PATH;
    if (ref_alnum(c) || in_set(c, "-._~!$&'()*+,;=:@[]%"))
        r |= CEL_HTTP_AUTH;
    if (ref_alnum(c) || in_set(c, "+-."))
        r |= CEL_HTTP_SCHEME;
    if (ref_alnum(c))
        r |= CEL_HTTP_ALNUM;
    return r;
}

static void test_chars_every_octet(void **state)
{
    (void)state;
    int ntchar = 0;
    for (unsigned c = 0; c < 256; c++) {
        assert_int_equal(cel_http_chars[c], ref_classes(c));
        assert_int_equal(cel_http_is_tchar((unsigned char)c), ref_tchar(c));
        assert_int_equal(cel_http_is_alnum((unsigned char)c), ref_alnum(c));
        char one = (char)c;
        assert_int_equal(cel_http_is_token(&one, 1), ref_tchar(c));
        assert_int_equal(cel_http_lower((unsigned char)c), c >= 0x41 && c <= 0x5a ? c + 0x20 : c);
        ntchar += ref_tchar(c);
    }
    assert_int_equal(ntchar, 26 * 2 + 10 + 15);
    /* the same answer whatever the locale says (isalnum would not) */
    if (setlocale(LC_CTYPE, "C.UTF-8") || setlocale(LC_CTYPE, "en_US.ISO-8859-1"))
        for (unsigned c = 0; c < 256; c++)
            assert_int_equal(cel_http_is_tchar((unsigned char)c), ref_tchar(c));
    setlocale(LC_CTYPE, "C");
    assert_int_equal(cel_http_is_token("", 0), 0);
    assert_int_equal(cel_http_is_token("x-Trace_ID.1", 12), 1);
    assert_int_equal(cel_http_is_token("x trace", 7), 0);
    assert_int_equal(cel_http_is_token("x:", 2), 0);
}

static void test_conn_specific(void **state)
{
    (void)state;
    static const char *const yes[] = {"connection",        "keep-alive",        "proxy-connection",
                                      "transfer-encoding", "upgrade",           "Connection",
                                      "KEEP-ALIVE",        "Transfer-Encoding", "UpGrade"};
    static const char *const no[] = {"content-length",
                                     "te",
                                     "host",
                                     "date",
                                     "server",
                                     "connectio",
                                     "connections",
                                     "upgrade ",
                                     "keep_alive",
                                     "transfer-encodinG2",
                                     "proxy-connexion",
                                     "",
                                     "x"};
    for (size_t i = 0; i < CEL_ARRAY_LEN(yes); i++)
        assert_int_equal(cel_http_conn_specific(yes[i], strlen(yes[i])), 1);
    for (size_t i = 0; i < CEL_ARRAY_LEN(no); i++)
        assert_int_equal(cel_http_conn_specific(no[i], strlen(no[i])), 0);
    /* only the N octets count */
    assert_int_equal(cel_http_conn_specific("upgrades", 7), 1);
    assert_int_equal(cel_http_conn_specific("upgrade", 6), 0);
}

static void test_reason(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reason;
    } want[] = {{100, "Continue"},
                {200, "OK"},
                {204, "No Content"},
                {304, "Not Modified"},
                {400, "Bad Request"},
                {404, "Not Found"},
                {405, "Method Not Allowed"},
                {408, "Request Timeout"},
                {413, "Content Too Large"},
                {414, "URI Too Long"},
                {431, "Request Header Fields Too Large"},
                {500, "Internal Server Error"},
                {501, "Not Implemented"},
                {503, "Service Unavailable"},
                {505, "HTTP Version Not Supported"}};
    for (size_t i = 0; i < CEL_ARRAY_LEN(want); i++) {
        cel_str r = cel_http_reason(want[i].status);
        assert_int_equal(r.n, strlen(want[i].reason));
        assert_memory_equal(r.p, want[i].reason, r.n);
        assert_int_equal(r.p[r.n], '\n');
    }
    /* every status the server might name has one, and its text is a reason
     * phrase: no CR, LF or control octet before the newline */
    static const int common[] = {100, 101, 200, 201, 204, 206, 301, 302, 304, 307, 308,
                                 400, 401, 403, 404, 405, 408, 411, 413, 414, 415, 416,
                                 417, 421, 426, 429, 431, 500, 501, 502, 503, 504, 505};
    for (size_t i = 0; i < CEL_ARRAY_LEN(common); i++) {
        cel_str r = cel_http_reason(common[i]);
        assert_true(r.n > 0);
        for (size_t j = 0; j < r.n; j++)
            assert_true(r.p[j] >= 0x20 && r.p[j] < 0x7f);
        assert_int_equal(r.p[r.n], '\n');
    }
    static const int none[] = {0, -1, 99, 102, 199, 299, 418, 599, 600, 1000};
    for (size_t i = 0; i < CEL_ARRAY_LEN(none); i++) {
        cel_str r = cel_http_reason(none[i]);
        assert_int_equal(r.n, 0);
        assert_string_equal(r.p, "");
    }
}

/* Against strftime in the C locale, where %a and %b are the English names. */
static void check_date(time_t t)
{
    char got[CEL_HTTP_DATE_LEN + 8], want[64];
    memset(got, 'x', sizeof(got));
    struct tm tm;
    assert_non_null(gmtime_r(&t, &tm));
    size_t m = strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    assert_int_equal(m, CEL_HTTP_DATE_LEN);
    assert_int_equal(cel_http_date(got, t), CEL_HTTP_DATE_LEN);
    assert_string_equal(got, want);
    assert_int_equal(got[CEL_HTTP_DATE_LEN + 1], 'x'); /* nothing past the NUL */
}

static void test_date(void **state)
{
    (void)state;
    assert_non_null(setlocale(LC_TIME, "C"));
    char buf[CEL_HTTP_DATE_LEN + 1];
    cel_http_date(buf, 784111777);
    assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT"); /* RFC 9110's example */
    cel_http_date(buf, 0);
    assert_string_equal(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    cel_http_date(buf, 4102444799);
    assert_string_equal(buf, "Thu, 31 Dec 2099 23:59:59 GMT");
    /* every day for 40 years at a moving time of day, then a spread to 9999 */
    for (time_t t = 0; t < (time_t)40 * 366 * 86400; t += 86400 + 3607)
        check_date(t);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        check_date((time_t)(x % 253402300800ull)); /* up to 9999-12-31 */
    }
    check_date(253402300799); /* the last second of 9999 */
    /* outside four digits of year: still 29 octets, nothing past BUF */
    char big[CEL_HTTP_DATE_LEN + 8];
    memset(big, 'x', sizeof(big));
    assert_int_equal(cel_http_date(big, (time_t)1 << 40), CEL_HTTP_DATE_LEN);
    assert_int_equal(strlen(big), CEL_HTTP_DATE_LEN);
    assert_int_equal(big[CEL_HTTP_DATE_LEN + 1], 'x');
}

static void check_utoa(uint64_t v)
{
    char got[24], want[24];
    memset(got, 'x', sizeof(got));
    size_t n = cel_http_utoa(got, v);
    int m = snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
    assert_int_equal(n, (size_t)m);
    assert_memory_equal(got, want, n);
    assert_int_equal(got[n], 'x');
}

/* Against snprintf at every power of ten and its neighbours, every value to
 * 100000, a spread of random ones, and UINT64_MAX. */
static void test_utoa(void **state)
{
    (void)state;
    uint64_t p = 1;
    for (int k = 0; k <= 19; k++, p *= 10) {
        uint64_t vs[] = {p - 1, p, p + 1, p * 2 - 1, p * 9, p * 9 + (p - 1)};
        for (size_t i = 0; i < CEL_ARRAY_LEN(vs); i++)
            check_utoa(vs[i]);
    }
    for (uint64_t v = 0; v <= 100000; v++)
        check_utoa(v);
    uint64_t x = 2463534242ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        check_utoa(x >> (i % 64));
    }
    check_utoa(UINT64_MAX);
    char got[20];
    assert_int_equal(cel_http_utoa(got, UINT64_MAX), 20);
    assert_memory_equal(got, "18446744073709551615", 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chars_every_octet),
        cmocka_unit_test(test_conn_specific),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_date),
        cmocka_unit_test(test_utoa),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
