/*
 * Unit tests for the PROXY protocol parser and CIDR lists (proxy_proto.c):
 * version 1 and 2 headers whole, cut at every byte (0 = need more, never a
 * wrong answer), malformed ones refused; CIDR parsing and matching.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "common.h"
#include "proxy_proto.h"

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Every proper prefix of a valid header is "need more". */
static void check_prefixes(const uint8_t *p, size_t len)
{
    cel_proxy_info info;
    for (size_t i = 0; i < len; i++)
        assert_int_equal(cel_proxy_parse(p, i, &info), 0);
}

static void test_v1_tcp4(void **state)
{
    (void)state;
    const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
    size_t hl = strlen("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n");
    cel_proxy_info info;
    assert_int_equal(cel_proxy_parse((const uint8_t *)h, strlen(h), &info), (int)hl);
    assert_int_equal(info.has_addr, 1);
    assert_int_equal(info.family, AF_INET);
    assert_int_equal(info.port, 56324);
    char text[64];
    cel_proxy_addr_text(&info, text, sizeof(text));
    assert_string_equal(text, "192.0.2.7");
    check_prefixes((const uint8_t *)h, hl);
}

static void test_v1_tcp6_unknown(void **state)
{
    (void)state;
    const char *h = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
    cel_proxy_info info;
    assert_int_equal(cel_proxy_parse((const uint8_t *)h, strlen(h), &info), (int)strlen(h));
    char text[64];
    cel_proxy_addr_text(&info, text, sizeof(text));
    assert_string_equal(text, "2001:db8::1");
    const char *u = "PROXY UNKNOWN ff:: ff:: 1 2\r\n";
    assert_int_equal(cel_proxy_parse((const uint8_t *)u, strlen(u), &info), (int)strlen(u));
    assert_int_equal(info.has_addr, 0);
    const char *u2 = "PROXY UNKNOWN\r\n";
    assert_int_equal(cel_proxy_parse((const uint8_t *)u2, strlen(u2), &info), (int)strlen(u2));
}

static void test_v1_bad(void **state)
{
    (void)state;
    static const char *bad[] = {
        "GET / HTTP/1.1\r\n",
        "PRI * HTTP/2.0\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 9\r\n",
        "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",
        "PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 0443 443\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 -1 443\r\n",
        "PROXY UDP4 192.0.2.7 198.51.100.1 1 443\r\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 443\n",
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 443\rX",
        "proxy TCP4 192.0.2.7 198.51.100.1 1 443\r\n",
    };
    cel_proxy_info info;
    for (size_t i = 0; i < CEL_ARRAY_LEN(bad); i++)
        assert_int_equal(cel_proxy_parse((const uint8_t *)bad[i], strlen(bad[i]), &info),
                         CEL_EINVAL);
    /* No CRLF within 107 bytes. */
    char longl[200] = "PROXY TCP4 ";
    memset(longl + 11, '1', sizeof(longl) - 12);
    longl[sizeof(longl) - 1] = 0;
    assert_int_equal(cel_proxy_parse((const uint8_t *)longl, strlen(longl), &info), CEL_EINVAL);
}

static size_t make_v2(uint8_t *b, uint8_t ver_cmd, uint8_t fam, const uint8_t *addr, size_t alen,
                      size_t tlvs)
{
    memcpy(b, sig, 12);
    b[12] = ver_cmd;
    b[13] = fam;
    size_t len = alen + tlvs;
    b[14] = (uint8_t)(len >> 8);
    b[15] = (uint8_t)len;
    memcpy(b + 16, addr, alen);
    memset(b + 16 + alen, 0x04, tlvs); /* contents do not matter: skipped */
    return 16 + len;
}

static void test_v2_inet(void **state)
{
    (void)state;
    uint8_t a[12] = {203, 0, 113, 9, 10, 0, 0, 1, 0xc3, 0x50, 0x01, 0xbb};
    uint8_t b[600];
    size_t n = make_v2(b, 0x21, 0x11, a, sizeof(a), 0);
    b[n] = 'P'; /* the first byte of what follows: not part of it */
    cel_proxy_info info;
    assert_int_equal(cel_proxy_parse(b, n + 1, &info), (int)n);
    assert_int_equal(info.has_addr, 1);
    assert_int_equal(info.port, 50000);
    char text[64];
    cel_proxy_addr_text(&info, text, sizeof(text));
    assert_string_equal(text, "203.0.113.9");
    check_prefixes(b, n);
    /* With TLVs, skipped. */
    n = make_v2(b, 0x21, 0x11, a, sizeof(a), 100);
    assert_int_equal(cel_proxy_parse(b, n, &info), (int)n);
    assert_int_equal(info.has_addr, 1);
}

static void test_v2_inet6_local(void **state)
{
    (void)state;
    uint8_t a[36] = {0};
    inet_pton(AF_INET6, "2001:db8::42", a);
    a[32] = 0x12;
    a[33] = 0x34;
    uint8_t b[600];
    size_t n = make_v2(b, 0x21, 0x21, a, sizeof(a), 0);
    cel_proxy_info info;
    assert_int_equal(cel_proxy_parse(b, n, &info), (int)n);
    char text[64];
    cel_proxy_addr_text(&info, text, sizeof(text));
    assert_string_equal(text, "2001:db8::42");
    assert_int_equal(info.port, 0x1234);
    /* LOCAL (a balancer's health check): no address, whatever the block says. */
    n = make_v2(b, 0x20, 0x00, a, 0, 0);
    assert_int_equal(cel_proxy_parse(b, n, &info), 16);
    assert_int_equal(info.has_addr, 0);
    n = make_v2(b, 0x20, 0x11, a, 12, 0);
    assert_int_equal(cel_proxy_parse(b, n, &info), 28);
    assert_int_equal(info.has_addr, 0);
}

static void test_v2_bad(void **state)
{
    (void)state;
    uint8_t a[36] = {0};
    uint8_t b[1024];
    cel_proxy_info info;
    size_t n = make_v2(b, 0x11, 0x11, a, 12, 0); /* version 1 in a v2 header */
    assert_int_equal(cel_proxy_parse(b, n, &info), CEL_EINVAL);
    n = make_v2(b, 0x22, 0x11, a, 12, 0); /* command 2 */
    assert_int_equal(cel_proxy_parse(b, n, &info), CEL_EINVAL);
    n = make_v2(b, 0x21, 0x11, a, 8, 0); /* block too short for IPv4 */
    assert_int_equal(cel_proxy_parse(b, n, &info), CEL_EINVAL);
    n = make_v2(b, 0x21, 0x21, a, 12, 0); /* too short for IPv6 */
    assert_int_equal(cel_proxy_parse(b, n, &info), CEL_EINVAL);
    n = make_v2(b, 0x21, 0x41, a, 12, 0); /* family 4 */
    assert_int_equal(cel_proxy_parse(b, n, &info), CEL_EINVAL);
    n = make_v2(b, 0x21, 0x11, a, 12, CEL_PROXY_MAX); /* too long: refused from 16 bytes on */
    assert_int_equal(cel_proxy_parse(b, 16, &info), CEL_EINVAL);
    b[3] = 'X'; /* broken signature */
    assert_int_equal(cel_proxy_parse(b, 16, &info), CEL_EINVAL);
    assert_int_equal(cel_proxy_parse(b, 4, &info), CEL_EINVAL);
}

static void test_cidr(void **state)
{
    (void)state;
    cel_cidr l[3];
    assert_int_equal(cel_cidr_parse("10.0.0.0/8", &l[0]), 0);
    assert_int_equal(cel_cidr_parse("2001:db8::/32", &l[1]), 0);
    assert_int_equal(cel_cidr_parse("127.0.0.1", &l[2]), 0);
    assert_int_equal(l[2].bits, 32);
    uint8_t a4[4], a6[16];
    inet_pton(AF_INET, "10.200.3.4", a4);
    assert_true(cel_cidr_match(l, 3, AF_INET, a4));
    inet_pton(AF_INET, "11.0.0.1", a4);
    assert_false(cel_cidr_match(l, 3, AF_INET, a4));
    inet_pton(AF_INET, "127.0.0.2", a4);
    assert_false(cel_cidr_match(l, 3, AF_INET, a4));
    inet_pton(AF_INET6, "2001:db8:ffff::1", a6);
    assert_true(cel_cidr_match(l, 3, AF_INET6, a6));
    inet_pton(AF_INET6, "2001:db9::1", a6);
    assert_false(cel_cidr_match(l, 3, AF_INET6, a6));
    inet_pton(AF_INET6, "::ffff:10.1.2.3", a6);
    assert_true(cel_cidr_match(l, 3, AF_INET6, a6));
    assert_false(cel_cidr_match(l, 0, AF_INET6, a6));
    cel_cidr c;
    assert_int_equal(cel_cidr_parse("10.0.0.1/8", &c), CEL_EINVAL); /* host bits */
    assert_int_equal(cel_cidr_parse("10.0.0.0/33", &c), CEL_EINVAL);
    assert_int_equal(cel_cidr_parse("10.0.0.0/", &c), CEL_EINVAL);
    assert_int_equal(cel_cidr_parse("10.0.0.0/08", &c), CEL_EINVAL);
    assert_int_equal(cel_cidr_parse("example.com", &c), CEL_EINVAL);
    assert_int_equal(cel_cidr_parse("", &c), CEL_EINVAL);
    assert_int_equal(cel_cidr_parse("0.0.0.0/0", &c), 0);
    inet_pton(AF_INET, "8.8.8.8", a4);
    assert_true(cel_cidr_match(&c, 1, AF_INET, a4));
    assert_int_equal(cel_cidr_parse("10.1.0.0/17", &c), 0);
    inet_pton(AF_INET, "10.1.127.255", a4);
    assert_true(cel_cidr_match(&c, 1, AF_INET, a4));
    inet_pton(AF_INET, "10.1.128.0", a4);
    assert_false(cel_cidr_match(&c, 1, AF_INET, a4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),        cmocka_unit_test(test_v1_tcp6_unknown),
        cmocka_unit_test(test_v1_bad),         cmocka_unit_test(test_v2_inet),
        cmocka_unit_test(test_v2_inet6_local), cmocka_unit_test(test_v2_bad),
        cmocka_unit_test(test_cidr),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
