/*
 * HTTP/1.1 request heads, chunked bodies and response heads.
 *
 * Every parse goes through an exact-size heap copy of its input, so the
 * sanitizers catch a read one byte past the end, and every call into the unit
 * is bracketed by the allocation counters below: built with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, they prove it allocates
 * nothing. Each table row is its own TAP case.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h1_parse.h"
#include "http.h"

#include "../alloc_count.h"

static char *dup_exact(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

/* One parse of the first N bytes of S through a fresh exact-size copy, which is
 * left in *KEEP (the head's slices point into it) for the caller to free. */
static int parse_n(const char *s, size_t n, cel_h1_head *h, const cel_h1_limits *lim,
                   size_t *scanned, char **keep)
{
    char *buf = dup_exact(s, n);
    size_t before = alloc_calls;
    int rc = cel_h1_parse_head_resume(buf, n, h, lim, scanned);
    assert_int_equal(alloc_calls, before);
    *keep = buf;
    return rc;
}

static int parse_once(const char *s, size_t n, cel_h1_head *h, const cel_h1_limits *lim)
{
    char *buf;
    int rc = parse_n(s, n, h, lim, NULL, &buf);
    free(buf);
    return rc;
}

static void assert_slice(cel_str got, const char *want)
{
    if (!want)
        want = "";
    if (got.n != strlen(want) || memcmp(got.p, want, got.n) != 0)
        fail_msg("got \"%.*s\", want \"%s\"", (int)got.n, got.p, want);
}

/* Good heads. Every row is checked whole, then fed one byte more at a time both
 * without and with the resume hint. */
struct good {
    const char *name, *raw;
    size_t extra;               /* bytes after the head: body or the next request */
    const char *want;           /* describe() of the head */
    const char *fname, *fvalue; /* one field cel_h1_find must see */
};

#define H11 " HTTP/1.1\r\nHost: example.com\r\n"
#define SECOND "GET /2" H11 "\r\n"

static const struct good goods[] = {
    {"simple GET", "GET /" H11 "\r\n", 0,
     "GET / 1.1 path=/ query= host=example.com fields=1 cl=-1 keep-alive", "host", "example.com"},
    {"path and query", "GET /a/b%20c?x=1&y=2" H11 "\r\n", 0,
     "GET /a/b%20c?x=1&y=2 1.1 path=/a/b%20c query=x=1&y=2 host=example.com fields=1 cl=-1 "
     "keep-alive",
     NULL, NULL},
    {"empty query", "GET /p?" H11 "\r\n", 0,
     "GET /p? 1.1 path=/p query= host=example.com fields=1 cl=-1 keep-alive", NULL, NULL},
    {"every target punctuation", "GET /%7e!$&'()*+,;=:@[]~-._/?a=b/c?d\"{}|\\^`" H11 "\r\n", 0,
     "GET /%7e!$&'()*+,;=:@[]~-._/?a=b/c?d\"{}|\\^` 1.1 path=/%7e!$&'()*+,;=:@[]~-._/ "
     "query=a=b/c?d\"{}|\\^` host=example.com fields=1 cl=-1 keep-alive",
     NULL, NULL},
    {"HTTP/1.0 without host", "GET / HTTP/1.0\r\n\r\n", 0,
     "GET / 1.0 path=/ query= host= fields=0 cl=-1", NULL, NULL},
    {"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0,
     "GET / 1.0 path=/ query= host= fields=1 cl=-1 keep-alive", NULL, NULL},
    {"HTTP/1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0,
     "GET / 1.0 path=/ query= host= fields=1 cl=-1", NULL, NULL},
    {"HTTP/1.1 close", "GET /" H11 "Connection: close\r\n\r\n", 0,
     "GET / 1.1 path=/ query= host=example.com fields=2 cl=-1", NULL, NULL},
    {"connection token list",
     "GET /" H11 "Connection: ,foo , Keep-Alive\r\nConnection: x, CLOSE ,\r\n\r\n", 0,
     "GET / 1.1 path=/ query= host=example.com fields=3 cl=-1", NULL, NULL},
    {"closed is not close", "GET /" H11 "Connection: closed, xclose\r\n\r\n", 0,
     "GET / 1.1 path=/ query= host=example.com fields=2 cl=-1 keep-alive", NULL, NULL},
    {"content-length body", "POST /f" H11 "Content-Length: 5\r\n\r\nhello", 5,
     "POST /f 1.1 path=/f query= host=example.com fields=2 cl=5 keep-alive", "content-length", "5"},
    {"content-length zero, leading zeros", "PUT /" H11 "content-length: 000\r\n\r\n", 0,
     "PUT / 1.1 path=/ query= host=example.com fields=2 cl=0 keep-alive", NULL, NULL},
    {"content-length repeated alike",
     "POST /" H11 "Content-Length: 7, 7\r\nContent-Length:7\r\n\r\n", 0,
     "POST / 1.1 path=/ query= host=example.com fields=3 cl=7 keep-alive", NULL, NULL},
    {"content-length max", "POST /" H11 "Content-Length: 9223372036854775807\r\n\r\n", 0,
     "POST / 1.1 path=/ query= host=example.com fields=2 cl=9223372036854775807 keep-alive", NULL,
     NULL},
    {"chunked", "POST /u" H11 "Transfer-Encoding: chunked\r\n\r\n", 0,
     "POST /u 1.1 path=/u query= host=example.com fields=2 cl=-1 keep-alive chunked", NULL, NULL},
    {"chunked, case and spaces", "POST /u" H11 "transfer-encoding:  ,CHUNKED \t\r\n\r\n", 0,
     "POST /u 1.1 path=/u query= host=example.com fields=2 cl=-1 keep-alive chunked",
     "transfer-encoding", ",CHUNKED"},
    {"expect 100-continue", "PUT /x" H11 "Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n", 0,
     "PUT /x 1.1 path=/x query= host=example.com fields=3 cl=3 keep-alive continue", NULL, NULL},
    {"expect in HTTP/1.0 ignored",
     "PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", 0,
     "PUT /x 1.0 path=/x query= host= fields=2 cl=3", NULL, NULL},
    {"h2c upgrade",
     "GET /" H11 "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
     "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
     0,
     "GET / 1.1 path=/ query= host=example.com fields=4 cl=-1 keep-alive "
     "h2c=AAMAAABkAARAAAAAAAIAAAAA",
     NULL, NULL},
    {"h2c among upgrades, empty settings",
     "OPTIONS /" H11 "Upgrade: websocket, H2C\r\nconnection: upgrade\r\n"
     "http2-settings:\r\n\r\n",
     0, "OPTIONS / 1.1 path=/ query= host=example.com fields=4 cl=-1 keep-alive h2c=", NULL, NULL},
    {"h2c without settings", "GET /" H11 "Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 0,
     "GET / 1.1 path=/ query= host=example.com fields=3 cl=-1 keep-alive", NULL, NULL},
    {"h2c without connection upgrade", "GET /" H11 "Upgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n",
     0, "GET / 1.1 path=/ query= host=example.com fields=3 cl=-1 keep-alive", NULL, NULL},
    {"h2c with two settings",
     "GET /" H11 "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n"
     "HTTP2-Settings: AAMA\r\n\r\n",
     0, "GET / 1.1 path=/ query= host=example.com fields=5 cl=-1 keep-alive", NULL, NULL},
    {"h2c with bad settings",
     "GET /" H11 "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AA+/\r\n\r\n", 0,
     "GET / 1.1 path=/ query= host=example.com fields=4 cl=-1 keep-alive", NULL, NULL},
    {"h2c with a character past whole groups of four (not base64url)",
     "GET /" H11 "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkA\r\n\r\n", 0,
     "GET / 1.1 path=/ query= host=example.com fields=4 cl=-1 keep-alive", NULL, NULL},
    {"h2c with padding (no whole settings are ever padded)",
     "GET /" H11 "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAA==\r\n\r\n", 0,
     "GET / 1.1 path=/ query= host=example.com fields=4 cl=-1 keep-alive", NULL, NULL},
    {"h2c in HTTP/1.0",
     "GET / HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n"
     "\r\n",
     0, "GET / 1.0 path=/ query= host= fields=3 cl=-1", NULL, NULL},
    {"bare LF", "GET /lf HTTP/1.1\nHost: a\nX: y\n\n", 0,
     "GET /lf 1.1 path=/lf query= host=a fields=2 cl=-1 keep-alive", "x", "y"},
    {"mixed line endings", "GET / HTTP/1.1\nHost: a\r\nX: y\n\r\n", 0,
     "GET / 1.1 path=/ query= host=a fields=2 cl=-1 keep-alive", NULL, NULL},
    {"leading empty lines", "\r\n\nGET /" H11 "\r\n", 0,
     "GET / 1.1 path=/ query= host=example.com fields=1 cl=-1 keep-alive", NULL, NULL},
    {"absolute-form", "GET http://Example.org:8080/p/q?z=1 HTTP/1.1\r\nHost: other\r\n\r\n", 0,
     "GET http://Example.org:8080/p/q?z=1 1.1 path=/p/q query=z=1 host=Example.org:8080 fields=1 "
     "cl=-1 keep-alive",
     NULL, NULL},
    {"absolute-form without path", "HEAD HTTPS://h?x HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     "HEAD HTTPS://h?x 1.1 path=/ query=x host=h fields=1 cl=-1 keep-alive", NULL, NULL},
    {"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0,
     "OPTIONS * 1.1 path=* query= host=h fields=1 cl=-1 keep-alive", NULL, NULL},
    {"authority-form", "CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", 0,
     "CONNECT example.com:443 1.1 path= query= host=example.com:443 fields=1 cl=-1 keep-alive",
     NULL, NULL},
    {"unknown method", "PURGE /c" H11 "\r\n", 0,
     "PURGE /c 1.1 path=/c query= host=example.com fields=1 cl=-1 keep-alive", NULL, NULL},
    {"32-byte method", "ABCDEFGHIJKLMNOPQRSTUVWXYZ-!#$%& /" H11 "\r\n", 0,
     "ABCDEFGHIJKLMNOPQRSTUVWXYZ-!#$%& / 1.1 path=/ query= host=example.com fields=1 cl=-1 "
     "keep-alive",
     NULL, NULL},
    {"values: OWS, tabs, obs-text, empty",
     "GET /" H11 "X-A: \t a \t b \t\r\nX-Utf8: caf\xc3\xa9\r\nX-Empty:\r\nX-Sp:   \r\n\r\n", 0,
     "GET / 1.1 path=/ query= host=example.com fields=5 cl=-1 keep-alive", "x-a", "a \t b"},
    {"names kept as sent, found by any case",
     "GET / HTTP/1.1\r\nhOsT: h\r\nX-MiXeD~!#$%&'*+-.^_`|: v\r\n\r\n", 0,
     "GET / 1.1 path=/ query= host=h fields=2 cl=-1 keep-alive", "x-mixed~!#$%&'*+-.^_`|", "v"},
    {"host forms", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0,
     "GET / 1.1 path=/ query= host=[::1]:8080 fields=1 cl=-1 keep-alive", NULL, NULL},
    {"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 0,
     "GET / 1.1 path=/ query= host= fields=1 cl=-1 keep-alive", NULL, NULL},
    {"pipelined", "GET /1" H11 "\r\n" SECOND, sizeof(SECOND) - 1,
     "GET /1 1.1 path=/1 query= host=example.com fields=1 cl=-1 keep-alive", NULL, NULL},
};

/* The head's derived fields as one line, so a table row states them all at once. */
static void describe(const cel_h1_head *h, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%.*s %.*s 1.%d path=%.*s query=%.*s host=%.*s fields=%zu cl=%lld",
                     (int)h->method.n, h->method.p, (int)h->target.n, h->target.p, h->minor,
                     (int)h->path.n, h->path.p, (int)h->query.n, h->query.p, (int)h->host.n,
                     h->host.p, h->nheaders, (long long)h->content_length);
    n += snprintf(out + n, cap - (size_t)n, "%s%s%s", h->keep_alive ? " keep-alive" : "",
                  h->chunked ? " chunked" : "", h->expect_continue ? " continue" : "");
    if (h->upgrade_h2c)
        snprintf(out + n, cap - (size_t)n, " h2c=%.*s", (int)h->http2_settings.n,
                 h->http2_settings.p);
}

static void check_good(const struct good *g, const cel_h1_head *h, int rc)
{
    char got[512];
    assert_int_equal(rc, (int)(strlen(g->raw) - g->extra));
    describe(h, got, sizeof(got));
    assert_string_equal(got, g->want);
    assert_int_equal(h->method_bit, cel_method_bit(h->method.p, h->method.n));
    if (!h->upgrade_h2c)
        assert_int_equal(h->http2_settings.n, 0);
    if (g->fname) {
        size_t before = alloc_calls;
        const cel_header *f = cel_h1_find(h, g->fname);
        assert_int_equal(alloc_calls, before);
        assert_non_null(f);
        assert_slice(f->value, g->fvalue);
    }
}

static void test_good(void **state)
{
    const struct good *g = *state;
    size_t len = strlen(g->raw), head = len - g->extra;
    cel_h1_head h;
    char *buf;

    check_good(g, &h, parse_n(g->raw, len, &h, NULL, NULL, &buf));
    free(buf);
    for (int hint = 0; hint < 2; hint++) {
        size_t scanned = 0;
        for (size_t n = 0; n <= len; n++) {
            memset(&h, 0xa5, sizeof(h));
            int rc = parse_n(g->raw, n, &h, NULL, hint ? &scanned : NULL, &buf);
            if (n < head) {
                assert_int_equal(rc, CEL_EAGAIN);
                assert_true(scanned <= n);
            } else {
                check_good(g, &h, rc);
                assert_int_equal(scanned, 0);
            }
            free(buf);
        }
    }
}

/* Bad heads with the exact error and status each must give, whole or in pieces. */
struct bad {
    const char *name, *raw;
    size_t len; /* 0: strlen(raw) */
    int err, status;
    const cel_h1_limits *lim;
};

static const cel_h1_limits small = {
    .max_head = 64, .max_line = 16, .max_target = 8, .max_headers = 2};

#define REQ(line) line "\r\nHost: h\r\n\r\n"
#define HDR(fields) "GET / HTTP/1.1\r\nHost: h\r\n" fields "\r\n"
#define HDR10(fields) "GET / HTTP/1.0\r\n" fields "\r\n"
#define WITH_LEN(s) s, sizeof(s) - 1

static const struct bad bads[] = {
    {"double space", REQ("GET  / HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"space before version", REQ("GET /  HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"trailing space", REQ("GET / HTTP/1.1 "), 0, CEL_EH1_REQLINE, 400, NULL},
    {"leading space", REQ(" GET / HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"tab separator", REQ("GET\t/ HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"HTTP/0.9 line", "GET /\r\n\r\n", 0, CEL_EH1_REQLINE, 400, NULL},
    {"method only", "GET\r\n\r\n", 0, CEL_EH1_REQLINE, 400, NULL},
    {"lowercase version", REQ("GET / http/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"two-digit minor", REQ("GET / HTTP/1.10"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"short version", REQ("GET / HTTP/1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"bad method char", REQ("G@T / HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"control in target", REQ("GET /a\x01 HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"DEL in target", REQ("GET /a\x7f HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"non-ASCII target", REQ("GET /caf\xc3\xa9 HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"fragment", REQ("GET /a#b HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"relative target", REQ("GET a/b HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"asterisk with GET", REQ("GET * HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"ftp absolute", REQ("GET ftp://h/ HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"absolute, one slash", REQ("GET http:/h HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"absolute, no authority", REQ("GET http:///p HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"absolute with userinfo", REQ("GET http://u@h/ HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"CONNECT origin-form", REQ("CONNECT /x HTTP/1.1"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"bare CR in request line", REQ("GET / HTTP/1.1\rX"), 0, CEL_EH1_REQLINE, 400, NULL},
    {"bare CR line ends", "GET / HTTP/1.1\rHost: h\r\r", 0, CEL_EH1_REQLINE, 400, NULL},
    {"third leading empty line", "\r\n\r\n\r\n" REQ("GET / HTTP/1.1"), 0, CEL_EH1_REQLINE, 400,
     NULL},
    {"NUL in request line", WITH_LEN(REQ("GET /\0 HTTP/1.1")), CEL_EH1_REQLINE, 400, NULL},
    {"33-byte method", REQ("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456 /"), 0, CEL_EH1_METHOD, 501, NULL},
    {"HTTP/2.0", REQ("GET / HTTP/2.0"), 0, CEL_EH1_VERSION, 505, NULL},
    {"HTTP/1.2", REQ("GET / HTTP/1.2"), 0, CEL_EH1_VERSION, 505, NULL},
    {"HTTP/0.9 version", REQ("GET / HTTP/0.9"), 0, CEL_EH1_VERSION, 505, NULL},
    {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, CEL_EH1_VERSION, 505, NULL},
    {"no colon", HDR("NoColon\r\n"), 0, CEL_EH1_HEADER, 400, NULL},
    {"empty name", HDR(": v\r\n"), 0, CEL_EH1_HEADER, 400, NULL},
    {"bad name char", HDR("X(y): v\r\n"), 0, CEL_EH1_HEADER, 400, NULL},
    {"non-ASCII name", HDR("X\xc3\xa9: v\r\n"), 0, CEL_EH1_HEADER, 400, NULL},
    {"NUL in value", WITH_LEN(HDR("X: a\0b\r\n")), CEL_EH1_HEADER, 400, NULL},
    {"bare CR in value", HDR("X: a\rb\r\n"), 0, CEL_EH1_HEADER, 400, NULL},
    {"DEL in value", HDR("X: a\x7f\r\n"), 0, CEL_EH1_HEADER, 400, NULL},
    {"CR-only empty line", HDR("X: a\r\n\r\r\n"), 0, CEL_EH1_HEADER, 400, NULL},
    {"space before colon", HDR("X : v\r\n"), 0, CEL_EH1_COLONSPACE, 400, NULL},
    {"tab before colon", "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 0, CEL_EH1_COLONSPACE, 400, NULL},
    {"obs-fold", HDR("X: a\r\n  b\r\n"), 0, CEL_EH1_OBSFOLD, 400, NULL},
    {"tab fold", HDR("X: a\r\n\tb\r\n"), 0, CEL_EH1_OBSFOLD, 400, NULL},
    {"space before first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 0, CEL_EH1_OBSFOLD, 400,
     NULL},
    {"no host in 1.1", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 0, CEL_EH1_HOST, 400, NULL},
    {"two hosts", HDR("host: h\r\n"), 0, CEL_EH1_HOST, 400, NULL},
    {"host with slash", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", 0, CEL_EH1_HOST, 400, NULL},
    {"host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 0, CEL_EH1_HOST, 400, NULL},
    {"host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0, CEL_EH1_HOST, 400, NULL},
    {"two hosts in 1.0", HDR10("Host: a\r\nHost: a\r\n"), 0, CEL_EH1_HOST, 400, NULL},
    {"absolute-form still needs host", "GET http://h/ HTTP/1.1\r\n\r\n", 0, CEL_EH1_HOST, 400,
     NULL},
    {"length not a number", HDR("Content-Length: abc\r\n"), 0, CEL_EH1_LENGTH, 400, NULL},
    {"negative length", HDR("Content-Length: -1\r\n"), 0, CEL_EH1_LENGTH, 400, NULL},
    {"plus sign length", HDR("Content-Length: +5\r\n"), 0, CEL_EH1_LENGTH, 400, NULL},
    {"empty length", HDR("Content-Length:\r\n"), 0, CEL_EH1_LENGTH, 400, NULL},
    {"space inside length", HDR("Content-Length: 5 5\r\n"), 0, CEL_EH1_LENGTH, 400, NULL},
    {"hex length", HDR("Content-Length: 0x5\r\n"), 0, CEL_EH1_LENGTH, 400, NULL},
    {"length list differs", HDR("Content-Length: 5, 6\r\n"), 0, CEL_EH1_LENGTH, 400, NULL},
    {"length list trailing comma", HDR("Content-Length: 5,\r\n"), 0, CEL_EH1_LENGTH, 400, NULL},
    {"two lengths differ", HDR("Content-Length: 5\r\nContent-Length: 6\r\n"), 0, CEL_EH1_LENGTH,
     400, NULL},
    {"length overflow", HDR("Content-Length: 9223372036854775808\r\n"), 0, CEL_EH1_LENGTH, 400,
     NULL},
    {"length far overflow", HDR("Content-Length: 99999999999999999999999\r\n"), 0, CEL_EH1_LENGTH,
     400, NULL},
    {"length and chunked", HDR("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 0,
     CEL_EH1_FRAMING, 400, NULL},
    {"chunked and length", HDR("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"), 0,
     CEL_EH1_FRAMING, 400, NULL},
    {"chunked twice", HDR("Transfer-Encoding: chunked, chunked\r\n"), 0, CEL_EH1_FRAMING, 400,
     NULL},
    {"chunked in two fields", HDR("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
     0, CEL_EH1_FRAMING, 400, NULL},
    {"empty transfer-encoding", HDR("Transfer-Encoding: ,\r\n"), 0, CEL_EH1_FRAMING, 400, NULL},
    {"chunked in 1.0", HDR10("Transfer-Encoding: chunked\r\n"), 0, CEL_EH1_FRAMING, 400, NULL},
    {"gzip", HDR("Transfer-Encoding: gzip\r\n"), 0, CEL_EH1_CODING, 501, NULL},
    {"gzip then chunked", HDR("Transfer-Encoding: gzip, chunked\r\n"), 0, CEL_EH1_CODING, 501,
     NULL},
    {"chunked not final", HDR("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), 0,
     CEL_EH1_CODING, 501, NULL},
    {"chunked with parameter", HDR("Transfer-Encoding: chunked;q=1\r\n"), 0, CEL_EH1_CODING, 501,
     NULL},
    {"identity", HDR("Transfer-Encoding: identity\r\n"), 0, CEL_EH1_CODING, 501, NULL},
    {"target over limit", REQ("GET /12345678 HTTP/1.1"), 0, CEL_EH1_TARGET_LONG, 414, &small},
    {"target far over limit", "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, CEL_EH1_TARGET_LONG, 414,
     &small},
    {"line over limit", "GET / HTTP/1.1\r\nHost: 0123456789ab\r\n\r\n", 0, CEL_EH1_LINE_LONG, 431,
     &small},
    {"partial line over limit", "GET / HTTP/1.1\r\nX-Long: 123456789", 0, CEL_EH1_LINE_LONG, 431,
     &small},
    {"three fields over two", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", 0,
     CEL_EH1_TOO_MANY, 431, &small},
    {"head over limit",
     "GET / HTTP/1.1\r\nHost: h\r\nA: 0123456789\r\nB: 0123456789\r\nC: 0123456789\r\n\r\n"
     "GET / HTTP/1.1\r\n\r\n",
     0, CEL_EH1_HEAD_LONG, 431, &small},
    {"unterminated head over limit",
     "GET / HTTP/1.1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\n",
     0, CEL_EH1_HEAD_LONG, 431, &small},
    {"bad char before length limit", "GET / HTTP/1.1\r\nX: a\x01zzzzzzzzzzzzzzzzz\r\n\r\n", 0,
     CEL_EH1_LINE_LONG, 431, &small},
    {"folded line before count", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n c\r\n\r\n", 0,
     CEL_EH1_OBSFOLD, 400, &small},
};

static void test_bad(void **state)
{
    const struct bad *b = *state;
    size_t len = b->len ? b->len : strlen(b->raw);
    cel_h1_head h;

    int rc = parse_once(b->raw, len, &h, b->lim);
    if (rc != b->err)
        fail_msg("%s: got %d (%s), want %d", b->name, rc, cel_h1_strerror(rc), b->err);
    assert_int_equal(cel_h1_error_status(rc), b->status);
    /* in pieces: nothing but CEL_EAGAIN until the same error, which then stays */
    for (int hint = 0; hint < 2; hint++) {
        size_t scanned = 0;
        int seen = 0;
        for (size_t n = 0; n <= len; n++) {
            char *buf;
            rc = parse_n(b->raw, n, &h, b->lim, hint ? &scanned : NULL, &buf);
            free(buf);
            if (rc == CEL_EAGAIN && !seen)
                continue;
            if (rc != b->err)
                fail_msg("%s: %zu bytes, hint %d: got %d, want %d", b->name, n, hint, rc, b->err);
            seen = 1;
            assert_int_equal(scanned, 0);
        }
        assert_true(seen);
    }
}

/* A head of LEN bytes made of a request line with target length TLEN, NF fields and
 * one field line of FLEN bytes (without its CRLF) when FLEN > 0. */
static size_t build(char *out, size_t tlen, size_t nf, size_t flen)
{
    size_t n = 0;
    n += (size_t)sprintf(out + n, "GET /");
    for (size_t i = 1; i < tlen; i++)
        out[n++] = 't';
    n += (size_t)sprintf(out + n, " HTTP/1.1\r\nHost: h\r\n");
    for (size_t i = 1; i < nf; i++)
        n += (size_t)sprintf(out + n, "F%zu: v\r\n", i % 10);
    if (flen) {
        n += (size_t)sprintf(out + n, "X: ");
        for (size_t i = 3; i < flen; i++)
            out[n++] = 'v';
        n += (size_t)sprintf(out + n, "\r\n");
    }
    n += (size_t)sprintf(out + n, "\r\n");
    return n;
}

static void test_limit_target(void **state)
{
    (void)state;
    static char buf[20000];
    cel_h1_limits lim = {.max_target = 100};
    cel_h1_head h;
    size_t n = build(buf, 100, 1, 0);
    assert_int_equal(parse_once(buf, n, &h, &lim), (int)n);
    assert_int_equal(h.target.n, 100);
    n = build(buf, 101, 1, 0);
    assert_int_equal(parse_once(buf, n, &h, &lim), CEL_EH1_TARGET_LONG);
    /* found before the line ends */
    assert_int_equal(parse_once(buf, 4 + 101, &h, &lim), CEL_EH1_TARGET_LONG);
    assert_int_equal(parse_once(buf, 4 + 100, &h, &lim), CEL_EAGAIN);
    /* the default limit */
    n = build(buf, 8192, 1, 0);
    assert_int_equal(parse_once(buf, n, &h, NULL), (int)n);
    n = build(buf, 8193, 1, 0);
    assert_int_equal(parse_once(buf, n, &h, NULL), CEL_EH1_TARGET_LONG);
}

static void test_limit_line(void **state)
{
    (void)state;
    static char buf[20000];
    cel_h1_limits lim = {.max_line = 50};
    cel_h1_head h;
    size_t n = build(buf, 1, 1, 50);
    assert_int_equal(parse_once(buf, n, &h, &lim), (int)n);
    assert_int_equal(h.headers[1].value.n, 47);
    /* the line's own CR, arrived without its LF, is not counted */
    assert_int_equal(parse_once(buf, n - 3, &h, &lim), CEL_EAGAIN);
    n = build(buf, 1, 1, 51);
    assert_int_equal(parse_once(buf, n, &h, &lim), CEL_EH1_LINE_LONG);
    assert_int_equal(parse_once(buf, n - 3, &h, &lim), CEL_EH1_LINE_LONG);
    assert_int_equal(parse_once(buf, n - 5, &h, &lim), CEL_EAGAIN);
    n = build(buf, 1, 1, 8192);
    assert_int_equal(parse_once(buf, n, &h, NULL), (int)n);
    n = build(buf, 1, 1, 8193);
    assert_int_equal(parse_once(buf, n, &h, NULL), CEL_EH1_LINE_LONG);
}

static void test_limit_head(void **state)
{
    (void)state;
    static char buf[80000];
    cel_h1_head h;
    size_t n = build(buf, 1, 3, 0);
    cel_h1_limits lim = {.max_head = n};
    assert_int_equal(parse_once(buf, n, &h, &lim), (int)n);
    /* with a body after it, still fine */
    memcpy(buf + n, "xyz", 3);
    assert_int_equal(parse_once(buf, n + 3, &h, &lim), (int)n);
    lim.max_head = n - 1;
    assert_int_equal(parse_once(buf, n, &h, &lim), CEL_EH1_HEAD_LONG);
    assert_int_equal(parse_once(buf, n - 1, &h, &lim), CEL_EH1_HEAD_LONG);
    assert_int_equal(parse_once(buf, n - 2, &h, &lim), CEL_EAGAIN);
    /* leading empty lines count */
    memmove(buf + 2, buf, n);
    memcpy(buf, "\r\n", 2);
    lim.max_head = n + 2;
    assert_int_equal(parse_once(buf, n + 2, &h, &lim), (int)n + 2);
    lim.max_head = n + 1;
    assert_int_equal(parse_once(buf, n + 2, &h, &lim), CEL_EH1_HEAD_LONG);
    /* the default, 64k: eight 8000-byte fields fit, nine do not */
    n = build(buf, 1, 1, 0);
    size_t at = n - 2;
    for (int i = 0; i < 9; i++) {
        at += (size_t)sprintf(buf + at, "X%d: ", i);
        memset(buf + at, 'v', 7990);
        at += 7990;
        at += (size_t)sprintf(buf + at, "\r\n");
        n = at + (size_t)sprintf(buf + at, "\r\n");
        assert_int_equal(parse_once(buf, n, &h, NULL), n <= 65536 ? (int)n : CEL_EH1_HEAD_LONG);
    }
    assert_true(n > 65536);
}

static void test_limit_headers(void **state)
{
    (void)state;
    static char buf[20000];
    cel_h1_limits lim = {.max_headers = 10};
    cel_h1_head h;
    size_t n = build(buf, 1, 10, 0);
    assert_int_equal(parse_once(buf, n, &h, &lim), (int)n);
    assert_int_equal(h.nheaders, 10);
    n = build(buf, 1, 11, 0);
    assert_int_equal(parse_once(buf, n, &h, &lim), CEL_EH1_TOO_MANY);
    /* all CEL_H1_MAX_HEADERS fit the struct; asking for more is capped */
    n = build(buf, 1, CEL_H1_MAX_HEADERS, 0);
    char *copy;
    assert_int_equal(parse_n(buf, n, &h, NULL, NULL, &copy), (int)n);
    assert_int_equal(h.nheaders, CEL_H1_MAX_HEADERS);
    assert_slice(h.headers[CEL_H1_MAX_HEADERS - 1].name, "F9");
    free(copy);
    lim.max_headers = 1000;
    n = build(buf, 1, CEL_H1_MAX_HEADERS + 1, 0);
    assert_int_equal(parse_once(buf, n, &h, &lim), CEL_EH1_TOO_MANY);
    n = build(buf, 1, 500, 0);
    assert_int_equal(parse_once(buf, n, &h, NULL), CEL_EH1_TOO_MANY);
}

static void test_pipelined(void **state)
{
    (void)state;
    static const char two[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                              "POST /2 HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n";
    cel_h1_head h;
    char *buf;
    int rc = parse_n(two, sizeof(two) - 1, &h, NULL, NULL, &buf);
    assert_int_equal(rc, 28);
    assert_slice(h.path, "/1");
    assert_slice(h.host, "a");
    size_t scanned = 0, before = alloc_calls;
    int rc2 = cel_h1_parse_head_resume(buf + rc, sizeof(two) - 1 - (size_t)rc, &h, NULL, &scanned);
    assert_int_equal(alloc_calls, before);
    assert_int_equal(rc2, (int)sizeof(two) - 1 - rc);
    assert_slice(h.method, "POST");
    assert_slice(h.path, "/2");
    assert_int_equal(h.content_length, 0);
    free(buf);
}

static void test_resume_hint(void **state)
{
    (void)state;
    static const char raw[] = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n";
    cel_h1_head h;
    size_t scanned = 0;
    assert_int_equal(parse_once(raw, 7, &h, NULL), CEL_EAGAIN);
    char *buf;
    assert_int_equal(parse_n(raw, sizeof(raw) - 1, &h, NULL, &scanned, &buf), CEL_EAGAIN);
    free(buf);
    assert_int_equal(scanned, sizeof(raw) - 1); /* all complete lines checked */
    assert_int_equal(parse_n(raw, sizeof(raw) - 3, &h, NULL, &scanned, &buf), CEL_EAGAIN);
    free(buf);
    /* a hint that is not at a line start, or beyond the data, is ignored */
    static const char full[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t bogus[] = {3, 17, 100, SIZE_MAX};
    for (size_t i = 0; i < CEL_ARRAY_LEN(bogus); i++) {
        scanned = bogus[i];
        assert_int_equal(parse_n(full, sizeof(full) - 1, &h, NULL, &scanned, &buf), 27);
        assert_slice(h.host, "h");
        free(buf);
        assert_int_equal(scanned, 0);
    }
}

/* Fed a byte at a time, the hint always rests at a line start, so each call
 * looks only at the line still arriving. */
static void test_resume_positions(void **state)
{
    (void)state;
    static char buf[70000];
    cel_h1_limits lim = {.max_headers = 100};
    size_t n = build(buf, 1, 100, 0);
    cel_h1_head h;
    size_t scanned = 0;
    for (size_t k = 1; k < n; k++) {
        assert_int_equal(cel_h1_parse_head_resume(buf, k, &h, &lim, &scanned), CEL_EAGAIN);
        size_t line = k;
        while (line > 0 && buf[line - 1] != '\n')
            line--;
        assert_int_equal(scanned, line);
    }
    assert_int_equal(cel_h1_parse_head_resume(buf, n, &h, &lim, &scanned), (int)n);
}

static void test_find_and_lowercase(void **state)
{
    (void)state;
    static const char raw[] = "GET / HTTP/1.1\r\nHOST: h\r\nX-One: 1\r\nx-one: 2\r\n\r\n";
    cel_h1_head h;
    char *buf;
    assert_int_equal(parse_n(raw, sizeof(raw) - 1, &h, NULL, NULL, &buf), sizeof(raw) - 1);
    assert_slice(cel_h1_find(&h, "x-one")->value, "1");
    assert_slice(cel_h1_find(&h, "host")->name, "HOST");
    assert_null(cel_h1_find(&h, "x-on"));
    assert_null(cel_h1_find(&h, "x-one-"));
    size_t before = alloc_calls;
    cel_h1_lowercase_names(&h, buf);
    assert_int_equal(alloc_calls, before);
    assert_slice(h.headers[0].name, "host");
    assert_slice(h.headers[1].name, "x-one");
    assert_slice(h.headers[1].value, "1");
    free(buf);
}

static unsigned method_bit_of(const char *raw)
{
    cel_h1_head h;
    assert_int_equal(parse_once(raw, strlen(raw), &h, NULL), (int)strlen(raw));
    return h.method_bit;
}

static void test_method_bits(void **state)
{
    (void)state;
    assert_int_equal(method_bit_of("DELETE /" H11 "\r\n"), CEL_M_DELETE);
    assert_int_equal(method_bit_of("OPTIONS /" H11 "\r\n"), CEL_M_OPTIONS);
    assert_int_equal(method_bit_of("PURGE /" H11 "\r\n"), 0);
    /* methods are case-sensitive */
    assert_int_equal(method_bit_of("get /" H11 "\r\n"), 0);
}

static void test_error_status(void **state)
{
    (void)state;
    static const int map[][2] = {
        {CEL_EH1_REQLINE, 400},
        {CEL_EH1_HEADER, 400},
        {CEL_EH1_OBSFOLD, 400},
        {CEL_EH1_COLONSPACE, 400},
        {CEL_EH1_HOST, 400},
        {CEL_EH1_LENGTH, 400},
        {CEL_EH1_FRAMING, 400},
        {CEL_EH1_TARGET_LONG, 414},
        {CEL_EH1_LINE_LONG, 431},
        {CEL_EH1_HEAD_LONG, 431},
        {CEL_EH1_TOO_MANY, 431},
        {CEL_EH1_CODING, 501},
        {CEL_EH1_METHOD, 501},
        {CEL_EH1_VERSION, 505},
        {CEL_EH1_CHUNKED, 400},
        {CEL_ETOOBIG, 413},
        {CEL_ENOMEM, 500},
        {CEL_EINVAL, 500},
        {CEL_EAGAIN, 0},
        {0, 0},
        {123, 0},
    };
    for (size_t i = 0; i < CEL_ARRAY_LEN(map); i++) {
        assert_int_equal(cel_h1_error_status(map[i][0]), map[i][1]);
        assert_non_null(cel_h1_strerror(map[i][0]));
    }
    assert_string_equal(cel_h1_strerror(CEL_EH1_VERSION), "unsupported HTTP version");
}

/* Chunked bodies. */

/* Feeds IN to a fresh decoder in pieces ending at CUTS (ascending, the last one
 * LEN), each an exact-size copy decoded in place. Returns the last result; the
 * data goes to OUT, the input used to *USED. */
static int feed(const char *in, size_t len, const size_t *cuts, size_t ncuts, size_t max_trailer,
                char *out, size_t *outn, size_t *used)
{
    cel_h1_chunked st;
    cel_h1_chunked_init(&st, max_trailer);
    size_t from = 0;
    int rc = CEL_EAGAIN;
    assert_int_equal(cuts[ncuts - 1], len);
    *outn = *used = 0;
    for (size_t c = 0; c < ncuts; c++) {
        size_t n = cuts[c] - from, ol = 99, cons = 99;
        char *piece = dup_exact(in + from, n);
        size_t before = alloc_calls;
        rc = cel_h1_chunked_decode(&st, piece, n, piece, &ol, &cons);
        assert_int_equal(alloc_calls, before);
        assert_true(ol <= cons && cons <= n);
        memcpy(out + *outn, piece, ol);
        free(piece);
        *outn += ol;
        *used += cons;
        if (rc != CEL_EAGAIN)
            return rc;
        assert_int_equal(cons, n);
        assert_int_equal(st.total, *outn);
        from = cuts[c];
    }
    return rc;
}

struct chunk_case {
    const char *name, *in;
    int rc;             /* 0, CEL_EAGAIN or CEL_EH1_CHUNKED */
    const char *data;   /* decoded body when rc is 0 */
    size_t extra;       /* bytes after the body when rc is 0 */
    size_t max_trailer; /* 0: default */
};

static const struct chunk_case chunks[] = {
    {"two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 0, "hello world", 0, 0},
    {"empty body", "0\r\n\r\n", 0, "", 0, 0},
    {"hex digits, both cases", "a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n", 0,
     "0123456789abcdefghij", 0, 0},
    {"leading zeros", "0000000000000000000003\r\nabc\r\n000\r\n\r\n", 0, "abc", 0, 0},
    {"extensions", "3;a=b;c=\"x ;y\"\r\nabc\r\n2 ; q\r\nde\r\n0;last\r\n\r\n", 0, "abcde", 0, 0},
    {"extension with tab", "1;\ta=b\t\r\nz\r\n0\r\n\r\n", 0, "z", 0, 0},
    {"trailers", "2\r\nhi\r\n0\r\nX-Sum: 1\r\nY: two words\r\n\r\n", 0, "hi", 0, 0},
    {"bare LF framing", "2\nhi\n0\nT: 1\n\n", 0, "hi", 0, 0},
    {"next request follows", "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 0, "x", 16, 0},
    {"data with CRLF inside", "4\r\n\r\n\r\n\r\n0\r\n\r\n", 0, "\r\n\r\n", 0, 0},
    {"largest size", "7fffffffffffffff\r\nabc", CEL_EAGAIN, NULL, 0, 0},
    {"unfinished trailer", "0\r\nX: y\r\n", CEL_EAGAIN, NULL, 0, 0},
    {"size overflow", "8000000000000000\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"size far overflow", "ffffffffffffffffff\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"not hex", "g\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"empty size", "\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"negative size", "-1\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"plus size", "+1\r\nx\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"0x prefix", "0x1\r\nx\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"leading space", " 1\r\nx\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"space before line end", "1 \r\nx\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"bare CR after size", "1\rx\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"data too long", "1\r\nxy\r\n0\r\n\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"no CRLF after data", "1\r\nx0\r\n\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"junk instead of CRLF", "1\r\nxZ0\r\n\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"CR then junk after data", "1\r\nx\rz", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"control in extension", "1;a\x01\r\nx\r\n0\r\n\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"control in trailer", "0\r\nX: \x01\r\n\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"bare CR in trailer", "0\r\nX: a\rb\r\n\r\n", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"bare CR ending body", "0\r\n\rX", CEL_EH1_CHUNKED, NULL, 0, 0},
    {"trailer at limit", "0\r\n0123456789\r\n\r\n", 0, "", 0, 10},
    {"trailer over limit", "0\r\n0123456789A\r\n\r\n", CEL_EH1_CHUNKED, NULL, 0, 10},
    {"trailers over limit together", "0\r\n01234\r\n56789\r\nA\r\n\r\n", CEL_EH1_CHUNKED, NULL, 0,
     10},
};

static void test_chunked(void **state)
{
    const struct chunk_case *c = *state;
    size_t len = strlen(c->in), outn, used;
    char *out = malloc(len + 1);
    /* whole, byte by byte, and cut in two at every position */
    size_t cuts[1024];
    assert_true(len < CEL_ARRAY_LEN(cuts));
    for (int mode = 0; mode < 2; mode++) {
        size_t ncuts = 0;
        for (size_t i = mode ? 1 : len; i <= len; i++)
            cuts[ncuts++] = i;
        int rc = feed(c->in, len, cuts, ncuts, c->max_trailer, out, &outn, &used);
        assert_int_equal(rc, c->rc);
        if (rc == 0) {
            assert_int_equal(outn, strlen(c->data));
            assert_memory_equal(out, c->data, outn);
            assert_int_equal(used, len - c->extra);
        }
    }
    for (size_t at = 0; at <= len; at++) {
        size_t two[2] = {at, len};
        int rc = feed(c->in, len, two, 2, c->max_trailer, out, &outn, &used);
        assert_int_equal(rc, c->rc);
        if (rc == 0) {
            assert_memory_equal(out, c->data, outn);
            assert_int_equal(used, len - c->extra);
        }
    }
    free(out);
}

static void test_chunked_state(void **state)
{
    (void)state;
    char out[64];
    size_t ol, used;
    cel_h1_chunked st;
    cel_h1_chunked_init(&st, 0);
    assert_int_equal(st.max_trailer, CEL_H1_MAX_TRAILER);
    /* the size of a chunk is known before its data, to refuse it early */
    assert_int_equal(cel_h1_chunked_decode(&st, "100000\r\n", 8, out, &ol, &used), CEL_EAGAIN);
    assert_int_equal(st.remaining, 0x100000);
    assert_int_equal(ol, 0);
    assert_int_equal(cel_h1_chunked_decode(&st, "abc", 3, out, &ol, &used), CEL_EAGAIN);
    assert_int_equal(st.remaining, 0x100000 - 3);
    assert_int_equal(st.total, 3);
    /* an error sticks */
    cel_h1_chunked_init(&st, 0);
    assert_int_equal(cel_h1_chunked_decode(&st, "z", 1, out, &ol, &used), CEL_EH1_CHUNKED);
    assert_int_equal(cel_h1_chunked_decode(&st, "0\r\n\r\n", 5, out, &ol, &used), CEL_EH1_CHUNKED);
    /* so does the end: later input is the next request's */
    cel_h1_chunked_init(&st, 0);
    assert_int_equal(cel_h1_chunked_decode(&st, "0\r\n\r\nX", 6, out, &ol, &used), 0);
    assert_int_equal(used, 5);
    assert_int_equal(cel_h1_chunked_decode(&st, "1\r\nx\r\n", 6, out, &ol, &used), 0);
    assert_int_equal(used, 0);
    assert_int_equal(ol, 0);
    /* a separate output buffer works as well as in place */
    static const char in[] = "3\r\nabc\r\n0\r\n\r\n";
    cel_h1_chunked_init(&st, 0);
    assert_int_equal(cel_h1_chunked_decode(&st, in, sizeof(in) - 1, out, &ol, &used), 0);
    assert_int_equal(ol, 3);
    assert_memory_equal(out, "abc", 3);
}

static void test_chunked_ext_budget(void **state)
{
    (void)state;
    /* 16k of extension bytes over the whole body are fine, one more is not */
    char line[128];
    char sink[128];
    size_t ol, used, spent = 0;
    cel_h1_chunked st;
    cel_h1_chunked_init(&st, 0);
    while (spent + 100 <= CEL_H1_MAX_CHUNK_EXT) {
        memset(line, 'e', sizeof(line));
        memcpy(line, "1;", 2);
        memcpy(line + 102, "\r\nx\r\n", 5);
        assert_int_equal(cel_h1_chunked_decode(&st, line, 107, sink, &ol, &used), CEL_EAGAIN);
        spent += 100;
    }
    size_t left = CEL_H1_MAX_CHUNK_EXT - spent;
    memset(line, 'e', sizeof(line));
    memcpy(line, "1;", 2);
    assert_int_equal(cel_h1_chunked_decode(&st, line, 2 + left, sink, &ol, &used), CEL_EAGAIN);
    assert_int_equal(cel_h1_chunked_decode(&st, "e", 1, sink, &ol, &used), CEL_EH1_CHUNKED);
}

/* A caller's body limit: stop once total passes it, or a size line announces more. */
static void test_chunked_body_limit(void **state)
{
    (void)state;
    static const char in[] = "4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n";
    const uint64_t limit = 6;
    char out[sizeof(in)];
    size_t ol, used, i = 0;
    int rc = CEL_EAGAIN, refused = 0;
    cel_h1_chunked st;
    cel_h1_chunked_init(&st, 0);
    while (rc == CEL_EAGAIN && i < sizeof(in) - 1) {
        rc = cel_h1_chunked_decode(&st, in + i, 1, out, &ol, &used);
        i += used;
        if (st.total + st.remaining > limit) {
            refused = 1;
            break;
        }
    }
    assert_true(refused);
    assert_true(i < 16);
    assert_int_equal(cel_h1_error_status(CEL_ETOOBIG), 413);
}

/* Response heads. */

static void test_status_line(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(cel_h1_write_status_line(buf, sizeof(buf), 200), 17);
    assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);
    int n = cel_h1_write_status_line(buf, sizeof(buf), 431);
    assert_int_equal(n, 46);
    assert_memory_equal(buf, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46);
    n = cel_h1_write_status_line(buf, sizeof(buf), 599);
    assert_memory_equal(buf, "HTTP/1.1 599 \r\n", 15);
    assert_int_equal(n, 15);
    assert_int_equal(cel_h1_write_status_line(buf, sizeof(buf), 99), CEL_EINVAL);
    assert_int_equal(cel_h1_write_status_line(buf, sizeof(buf), 1000), CEL_EINVAL);
    for (size_t cap = 0; cap < 17; cap++)
        assert_int_equal(cel_h1_write_status_line(buf, cap, 200), CEL_ETOOBIG);
}

static int write_head(char *buf, size_t cap, const cel_h1_resp *r)
{
    size_t before = alloc_calls;
    int n = cel_h1_write_head(buf, cap, r);
    assert_int_equal(alloc_calls, before);
    return n;
}

static void expect_head(const cel_h1_resp *r, const char *want)
{
    char buf[512];
    int n = write_head(buf, sizeof(buf), r);
    if (n < 0 || (size_t)n != strlen(want) || memcmp(buf, want, (size_t)n) != 0)
        fail_msg("got %d \"%.*s\"", n, n < 0 ? 0 : n, buf);
    /* every smaller buffer is refused whole, an exact one is enough */
    for (size_t cap = 0; cap < (size_t)n; cap++)
        assert_int_equal(write_head(buf, cap, r), CEL_ETOOBIG);
    assert_int_equal(write_head(buf, (size_t)n, r), n);
}

static void test_write_head(void **state)
{
    (void)state;
    cel_header hs[] = {
        {CEL_STR_LIT("content-type"), CEL_STR_LIT("text/plain")},
        {CEL_STR_LIT("Content-Length"), CEL_STR_LIT("999")},
        {CEL_STR_LIT("x-empty"), CEL_STR_LIT("")},
        {CEL_STR_LIT("Transfer-Encoding"), CEL_STR_LIT("gzip")},
        {CEL_STR_LIT("connection"), CEL_STR_LIT("keep-alive")},
        {CEL_STR_LIT("Keep-Alive"), CEL_STR_LIT("timeout=5")},
        {CEL_STR_LIT("upgrade"), CEL_STR_LIT("h2c")},
        {CEL_STR_LIT("Proxy-Connection"), CEL_STR_LIT("close")},
    };
    cel_h1_resp r = {.status = 200,
                     .headers = hs,
                     .nheaders = CEL_ARRAY_LEN(hs),
                     .body = CEL_H1_BODY_LENGTH,
                     .content_length = 13,
                     .connection = CEL_H1_CONN_CLOSE};
    expect_head(&r, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-empty: \r\n"
                    "content-length: 13\r\nconnection: close\r\n\r\n");
    cel_h1_resp c = {
        .status = 404, .body = CEL_H1_BODY_CHUNKED, .connection = CEL_H1_CONN_KEEP_ALIVE};
    expect_head(&c, "HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n"
                    "connection: keep-alive\r\n\r\n");
    cel_h1_resp none = {.status = 200, .body = CEL_H1_BODY_NONE};
    expect_head(&none, "HTTP/1.1 200 OK\r\n\r\n");
    cel_h1_resp nc = {.status = 204, .body = CEL_H1_BODY_LENGTH, .content_length = 5};
    expect_head(&nc, "HTTP/1.1 204 No Content\r\n\r\n");
    cel_h1_resp cont = {.status = 100, .body = CEL_H1_BODY_CHUNKED};
    expect_head(&cont, CEL_H1_CONTINUE);
    cel_h1_resp nm = {.status = 304, .body = CEL_H1_BODY_LENGTH, .content_length = 42};
    expect_head(&nm, "HTTP/1.1 304 Not Modified\r\ncontent-length: 42\r\n\r\n");
    cel_h1_resp big = {.status = 200, .content_length = UINT64_MAX};
    expect_head(&big, "HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551615\r\n\r\n");
    assert_string_equal(CEL_H1_LAST_CHUNK, "0\r\n\r\n");
    assert_int_equal(strncmp(CEL_H1_SWITCH_H2C, "HTTP/1.1 101 Switching Protocols\r\n", 34), 0);
}

static void test_write_head_refuses(void **state)
{
    (void)state;
    char buf[256];
    static const cel_header badf[][1] = {
        {{CEL_STR_LIT("x"), CEL_STR_LIT("a\r\nset-cookie: evil")}},
        {{CEL_STR_LIT("x"), CEL_STR_LIT("a\nb")}},
        {{CEL_STR_LIT("x"), {"a\0b", 3}}},
        {{CEL_STR_LIT("x y"), CEL_STR_LIT("v")}},
        {{CEL_STR_LIT("x:"), CEL_STR_LIT("v")}},
        {{CEL_STR_LIT(""), CEL_STR_LIT("v")}},
    };
    for (size_t i = 0; i < CEL_ARRAY_LEN(badf); i++) {
        cel_h1_resp r = {.status = 200, .headers = badf[i], .nheaders = 1};
        assert_int_equal(write_head(buf, sizeof(buf), &r), CEL_EINVAL);
        /* refused even when it would not fit anyway */
        assert_int_equal(write_head(buf, 3, &r), CEL_EINVAL);
    }
    cel_h1_resp r = {.status = 42};
    assert_int_equal(write_head(buf, sizeof(buf), &r), CEL_EINVAL);
}

static void test_chunk_size(void **state)
{
    (void)state;
    char buf[32];
    assert_int_equal(cel_h1_write_chunk_size(buf, sizeof(buf), 0), 3);
    assert_memory_equal(buf, "0\r\n", 3);
    assert_int_equal(cel_h1_write_chunk_size(buf, sizeof(buf), 0x1a2b), 6);
    assert_memory_equal(buf, "1a2b\r\n", 6);
    assert_int_equal(cel_h1_write_chunk_size(buf, sizeof(buf), UINT64_MAX), 18);
    assert_memory_equal(buf, "ffffffffffffffff\r\n", 18);
    assert_int_equal(cel_h1_write_chunk_size(buf, 5, 0x1a2b), CEL_ETOOBIG);
}

/* Random damage to good heads: no crash, an answer from the documented set, and
 * the same answer whole, byte by byte, and byte by byte with the hint. */
static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_mutations(void **state)
{
    (void)state;
    static const char spice[] = "\r\n :\t\0,;?/#%\x7f\x80\xff"
                                "aZ09-";
    char raw[512];
    cel_h1_head h;
    for (size_t gi = 0; gi < CEL_ARRAY_LEN(goods); gi++) {
        size_t len = strlen(goods[gi].raw);
        for (int m = 0; m < 40; m++) {
            memcpy(raw, goods[gi].raw, len);
            for (int k = 1 + (int)(rnd() % 3); k > 0; k--)
                raw[rnd() % len] = spice[rnd() % (sizeof(spice) - 1)];
            for (int li = 0; li < 2; li++) {
                const cel_h1_limits *lim = li ? &small : NULL;
                int whole = parse_once(raw, len, &h, lim);
                int s = cel_h1_error_status(whole);
                assert_true(whole > 0 || whole == CEL_EAGAIN || s == 400 || s == 414 || s == 431 ||
                            s == 501 || s == 505);
                for (int hint = 0; hint < 2; hint++) {
                    size_t scanned = 0;
                    int first = CEL_EAGAIN;
                    for (size_t n = 0; n <= len; n++) {
                        char *buf;
                        int rc = parse_n(raw, n, &h, lim, hint ? &scanned : NULL, &buf);
                        free(buf);
                        if (first == CEL_EAGAIN)
                            first = rc;
                        else if (rc != first)
                            fail_msg("%s, mutation %d, %zu bytes: %d after %d", goods[gi].name, m,
                                     n, rc, first);
                    }
                    assert_int_equal(first, whole);
                }
            }
        }
    }
}

/* Everything at once with the counters watching, in case a path above missed it. */
static void test_no_allocation(void **state)
{
    (void)state;
    static char buf[] = "\r\nPOST http://h/x?y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked"
                        "\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n\r\n"
                        "3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n";
    cel_h1_head h;
    cel_h1_chunked st;
    char out[256];
    size_t ol, used, scanned = 0, before = alloc_calls;
    int n = cel_h1_parse_head_resume(buf, sizeof(buf) - 1, &h, NULL, &scanned);
    assert_true(n > 0 && h.chunked && h.upgrade_h2c);
    cel_h1_find(&h, "upgrade");
    cel_h1_lowercase_names(&h, buf);
    cel_h1_chunked_init(&st, 0);
    assert_int_equal(
        cel_h1_chunked_decode(&st, buf + n, sizeof(buf) - 1 - (size_t)n, buf + n, &ol, &used), 0);
    cel_h1_resp r = {.status = 200, .headers = h.headers, .nheaders = h.nheaders};
    assert_true(cel_h1_write_head(out, sizeof(out), &r) > 0);
    cel_h1_write_chunk_size(out, sizeof(out), 77);
    cel_http_date(out, 1700000000);
    cel_h1_error_status(n);
    assert_int_equal(alloc_calls, before);
}

#define NGOOD CEL_ARRAY_LEN(goods)
#define NBAD CEL_ARRAY_LEN(bads)
#define NCHUNK CEL_ARRAY_LEN(chunks)

int main(void)
{
    cmocka_set_message_output(CM_OUTPUT_TAP);
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_limit_target),       cmocka_unit_test(test_limit_line),
        cmocka_unit_test(test_limit_head),         cmocka_unit_test(test_limit_headers),
        cmocka_unit_test(test_pipelined),          cmocka_unit_test(test_resume_hint),
        cmocka_unit_test(test_resume_positions),   cmocka_unit_test(test_find_and_lowercase),
        cmocka_unit_test(test_method_bits),        cmocka_unit_test(test_error_status),
        cmocka_unit_test(test_chunked_state),      cmocka_unit_test(test_chunked_ext_budget),
        cmocka_unit_test(test_chunked_body_limit), cmocka_unit_test(test_status_line),
        cmocka_unit_test(test_write_head),         cmocka_unit_test(test_write_head_refuses),
        cmocka_unit_test(test_chunk_size),         cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_no_allocation),
    };
    static struct CMUnitTest tests[NGOOD + NBAD + NCHUNK + CEL_ARRAY_LEN(fixed)];
    static char names[NGOOD + NBAD + NCHUNK][96];
    size_t n = 0;
    for (size_t i = 0; i < NGOOD; i++, n++) {
        snprintf(names[n], sizeof(names[n]), "good: %s", goods[i].name);
        tests[n] = (struct CMUnitTest){names[n], test_good, NULL, NULL, (void *)&goods[i]};
    }
    for (size_t i = 0; i < NBAD; i++, n++) {
        snprintf(names[n], sizeof(names[n]), "bad %d: %s", bads[i].status, bads[i].name);
        tests[n] = (struct CMUnitTest){names[n], test_bad, NULL, NULL, (void *)&bads[i]};
    }
    for (size_t i = 0; i < NCHUNK; i++, n++) {
        snprintf(names[n], sizeof(names[n]), "chunked: %s", chunks[i].name);
        tests[n] = (struct CMUnitTest){names[n], test_chunked, NULL, NULL, (void *)&chunks[i]};
    }
    for (size_t i = 0; i < CEL_ARRAY_LEN(fixed); i++)
        tests[n++] = fixed[i];
    return _cmocka_run_group_tests("h1_parse", tests, n, NULL, NULL);
}
