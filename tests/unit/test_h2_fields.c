/*
 * RFC 9113 section 8 request checks (server/h2_fields.c), which stand in for
 * nghttp2's HTTP messaging. Each row is a whole request: its fields in order,
 * whether trailers follow and how many DATA octets; the row says whether the
 * request is well-formed. The conformance suite checks the same rules on the
 * wire; these rows pin every branch, including the character classes octet by
 * octet.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common.h"
#include "h2_fields.h"

/* Rows leave out what they do not need (vlen, trailers). */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define MAXF 8

typedef struct field {
    const char *name, *value;
    size_t vlen; /* 0: strlen(value) */
} field;

typedef struct row {
    const char *name;
    int ok;
    field f[MAXF];
    field trailers[2];
    long data; /* DATA octets received, -1 none */
} row;

#define BASE                                                                                       \
    {":method", "GET"}, {":scheme", "https"}, {":authority", "example.com"},                       \
    {                                                                                              \
        ":path", "/"                                                                               \
    }

static const row rows[] = {
    {"minimal GET", 1, {BASE}, {{0}}, -1},
    {"host instead of :authority",
     1,
     {{":method", "GET"}, {":scheme", "http"}, {":path", "/a?b"}, {"host", "h:80"}},
     {{0}},
     -1},
    {"pseudo in any order",
     1,
     {{":path", "/"}, {":authority", "a"}, {":scheme", "http"}, {":method", "POST"}},
     {{0}},
     -1},
    {"regular fields",
     1,
     {BASE, {"user-agent", "x/1 (y)"}, {"accept", "*/*"}, {"x-e", ""}},
     {{0}},
     -1},
    {"te trailers", 1, {BASE, {"te", "Trailers"}}, {{0}}, -1},
    {"content-length matches", 1, {BASE, {"content-length", "5"}}, {{0}}, 5},
    {"content-length 0 without data", 1, {BASE, {"content-length", "0"}}, {{0}}, -1},
    {"content-length with leading zeros",
     1,
     {BASE, {"content-length", "00000000000000000000000000005"}},
     {{0}},
     5},
    {"content-length all zeros",
     1,
     {BASE, {"content-length", "0000000000000000000000"}},
     {{0}},
     -1},
    {"trailers", 1, {BASE}, {{"x-t", "1"}}, 3},
    {"OPTIONS *",
     1,
     {{":method", "OPTIONS"}, {":scheme", "http"}, {":authority", "a"}, {":path", "*"}},
     {{0}},
     -1},
    {"non-http scheme, any path",
     1,
     {{":method", "GET"}, {":scheme", "foo+bar"}, {":authority", "a"}, {":path", "x"}},
     {{0}},
     -1},
    {"CONNECT", 1, {{":method", "CONNECT"}, {":authority", "a:443"}}, {{0}}, -1},
    {"CONNECT ignores content-length",
     1,
     {{":method", "CONNECT"}, {":authority", "a:443"}, {"content-length", "9"}},
     {{0}},
     2},
    {"obs-text and inner HTAB in a value", 1, {BASE, {"x-a", "a\t\xff b"}}, {{0}}, -1},

    {"no :method", 0, {{":scheme", "http"}, {":authority", "a"}, {":path", "/"}}, {{0}}, -1},
    {"no :path", 0, {{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}}, {{0}}, -1},
    {"no :scheme", 0, {{":method", "GET"}, {":authority", "a"}, {":path", "/"}}, {{0}}, -1},
    {"no authority or host (8.3.1 allows it)",
     1,
     {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}},
     {{0}},
     -1},
    {"duplicate :path", 0, {BASE, {":path", "/"}}, {{0}}, -1},
    {"duplicate host", 0, {BASE, {"host", "a"}, {"host", "a"}}, {{0}}, -1},
    {"empty :method",
     0,
     {{":method", ""}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}},
     {{0}},
     -1},
    {"empty host", 0, {BASE, {"host", ""}}, {{0}}, -1},
    {"unknown pseudo", 0, {BASE, {":foo", "1"}}, {{0}}, -1},
    {":protocol without extended CONNECT", 0, {BASE, {":protocol", "websocket"}}, {{0}}, -1},
    {":status in a request", 0, {BASE, {":status", "200"}}, {{0}}, -1},
    {"lone colon", 0, {BASE, {":", "x"}}, {{0}}, -1},
    {"pseudo after regular",
     0,
     {{":method", "GET"}, {":scheme", "http"}, {"x", "1"}, {":path", "/"}, {":authority", "a"}},
     {{0}},
     -1},
    {"pseudo in trailers", 0, {BASE}, {{":path", "/"}}, 0},
    {"uppercase name", 0, {BASE, {"X-A", "1"}}, {{0}}, -1},
    {"uppercase in trailers", 0, {BASE}, {{"X-T", "1"}}, 1},
    {"space in name", 0, {BASE, {"x a", "1"}}, {{0}}, -1},
    {"colon inside a name", 0, {BASE, {"x:a", "1"}}, {{0}}, -1},
    {"empty name", 0, {BASE, {"", "1"}}, {{0}}, -1},
    {"NUL in value", 0, {BASE, {"x-a", "a\0b", 3}}, {{0}}, -1},
    {"CR in value", 0, {BASE, {"x-a", "a\rb"}}, {{0}}, -1},
    {"DEL in value", 0, {BASE, {"x-a", "a\x7f"}}, {{0}}, -1},
    {"leading space", 0, {BASE, {"x-a", " a"}}, {{0}}, -1},
    {"trailing tab", 0, {BASE, {"x-a", "a\t"}}, {{0}}, -1},
    {"space in :path",
     0,
     {{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/a b"}},
     {{0}},
     -1},
    {"relative :path with http",
     0,
     {{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "a"}},
     {{0}},
     -1},
    {"* for GET",
     0,
     {{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "*"}},
     {{0}},
     -1},
    {"space in :method",
     0,
     {{":method", "G T"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}},
     {{0}},
     -1},
    {"digit first in :scheme",
     0,
     {{":method", "GET"}, {":scheme", "1http"}, {":authority", "a"}, {":path", "/"}},
     {{0}},
     -1},
    {"slash in :authority",
     0,
     {{":method", "GET"}, {":scheme", "http"}, {":authority", "a/b"}, {":path", "/"}},
     {{0}},
     -1},
    {"connection", 0, {BASE, {"connection", "close"}}, {{0}}, -1},
    {"keep-alive", 0, {BASE, {"keep-alive", "1"}}, {{0}}, -1},
    {"proxy-connection", 0, {BASE, {"proxy-connection", "1"}}, {{0}}, -1},
    {"transfer-encoding", 0, {BASE, {"transfer-encoding", "chunked"}}, {{0}}, -1},
    {"upgrade", 0, {BASE, {"upgrade", "h2c"}}, {{0}}, -1},
    {"connection in trailers", 0, {BASE}, {{"connection", "close"}}, 1},
    {"te gzip", 0, {BASE, {"te", "gzip"}}, {{0}}, -1},
    {"content-length not a number", 0, {BASE, {"content-length", "1a"}}, {{0}}, 2},
    {"content-length empty", 0, {BASE, {"content-length", ""}}, {{0}}, -1},
    {"content-length twice", 0, {BASE, {"content-length", "1"}, {"content-length", "1"}}, {{0}}, 1},
    {"content-length over 18 digits",
     0,
     {BASE, {"content-length", "1234567890123456789"}},
     {{0}},
     -1},
    {"more data than content-length", 0, {BASE, {"content-length", "3"}}, {{0}}, 4},
    {"less data than content-length", 0, {BASE, {"content-length", "3"}}, {{0}}, 2},
    {"content-length without data", 0, {BASE, {"content-length", "3"}}, {{0}}, -1},
    {"CONNECT without :authority", 0, {{":method", "CONNECT"}}, {{0}}, -1},
    {"CONNECT with :path",
     0,
     {{":method", "CONNECT"}, {":authority", "a"}, {":path", "/"}},
     {{0}},
     -1},
    {"CONNECT with :scheme",
     0,
     {{":method", "CONNECT"}, {":authority", "a"}, {":scheme", "http"}},
     {{0}},
     -1},
};

static int put(cel_h2_fields *f, const field *x)
{
    size_t vlen = x->vlen ? x->vlen : strlen(x->value);
    return cel_h2_field(f, (const uint8_t *)x->name, strlen(x->name), (const uint8_t *)x->value,
                        vlen);
}

static int finish(cel_h2_fields *f, const row *r);

/* The whole request as h2_intake.c runs it: 0 well-formed, -1 malformed. */
static int run(const row *r)
{
    cel_h2_fields f;
    cel_h2_fields_init(&f);
    for (size_t i = 0; i < MAXF && r->f[i].name; i++)
        if (put(&f, &r->f[i]) < 0)
            return -1;
    return finish(&f, r);
}

/* After the request's fields: the end of its block, its DATA, its trailers. */
static int finish(cel_h2_fields *f, const row *r)
{
    if (cel_h2_fields_request_end(f))
        return -1;
    if (r->data >= 0 && cel_h2_fields_data(f, (size_t)r->data))
        return -1;
    if (r->trailers[0].name) {
        f->seen |= CEL_HF_TRAILERS;
        for (size_t i = 0; i < 2 && r->trailers[i].name; i++)
            if (put(f, &r->trailers[i]) < 0)
                return -1;
    }
    return cel_h2_fields_body_end(f);
}

static void test_row(void **state)
{
    const row *r = *state;
    int rc = run(r);
    if (r->ok && rc != 0)
        fail_msg("%s: refused, should be well-formed", r->name);
    if (!r->ok && rc == 0)
        fail_msg("%s: accepted, should be malformed", r->name);
}

/* The return value names the pseudo-header, which on_header relies on. */
static void test_kinds(void **state)
{
    (void)state;
    cel_h2_fields f;
    cel_h2_fields_init(&f);
    assert_int_equal(put(&f, &(field){":method", "GET"}), CEL_HF_METHOD);
    assert_int_equal(put(&f, &(field){":path", "/x"}), CEL_HF_PATH);
    assert_int_equal(put(&f, &(field){":scheme", "http"}), CEL_HF_SCHEME);
    assert_int_equal(put(&f, &(field){":authority", "a"}), CEL_HF_AUTHORITY);
    assert_int_equal(put(&f, &(field){"cookie", "a=b"}), 0);
    assert_int_equal(put(&f, &(field){"content-length", "42"}), CEL_HF_LENGTH);
    assert_true(f.content_length == 42);
}

/* h2_intake.c keeps the verdict on a field the client's HPACK table hands out again
 * (cel_h2_field_again): for every row, a request made of verdicts kept from
 * an earlier identical one must come out the same as the checks themselves. */
typedef struct verdict {
    int kind;
    uint32_t bits;
    int kept;
} verdict;

static int put_keep(cel_h2_fields *f, const field *x, verdict *v)
{
    uint32_t before = f->seen;
    int k = put(f, x);
    v->kept = k >= 0 && k != CEL_HF_LENGTH;
    v->kind = k;
    v->bits = (f->seen & ~before) | (x->name[0] != ':' ? CEL_HF_REGULAR : 0);
    return k;
}

static int run_again(const row *r)
{
    verdict v[MAXF] = {{0}};
    cel_h2_fields f;
    cel_h2_fields_init(&f);
    for (size_t i = 0; i < MAXF && r->f[i].name; i++)
        if (put_keep(&f, &r->f[i], &v[i]) < 0)
            break;
    cel_h2_fields_init(&f);
    for (size_t i = 0; i < MAXF && r->f[i].name; i++) {
        int k = v[i].kept ? cel_h2_field_again(&f, v[i].kind, v[i].bits) : put(&f, &r->f[i]);
        if (k < 0)
            return -1;
    }
    return finish(&f, r);
}

static void test_rows_again(void **state)
{
    (void)state;
    for (size_t i = 0; i < CEL_ARRAY_LEN(rows); i++) {
        int first = run(&rows[i]), again = run_again(&rows[i]);
        if (first != again)
            fail_msg("%s: %d checked, %d from kept verdicts", rows[i].name, first, again);
    }
}

/* Kept verdicts still obey the rules that depend on the other fields. */
static void test_again_in_another_order(void **state)
{
    (void)state;
    verdict m, a, host, ua;
    cel_h2_fields f;
    cel_h2_fields_init(&f);
    assert_int_equal(put_keep(&f, &(field){":method", "GET"}, &m), CEL_HF_METHOD);
    assert_int_equal(put_keep(&f, &(field){":authority", "a"}, &a), CEL_HF_AUTHORITY);
    assert_int_equal(put_keep(&f, &(field){"host", "a"}, &host), 0);
    assert_int_equal(put_keep(&f, &(field){"user-agent", "x"}, &ua), 0);
    /* a pseudo-header after a regular field (8.3) */
    cel_h2_fields_init(&f);
    assert_int_equal(cel_h2_field_again(&f, ua.kind, ua.bits), 0);
    assert_int_equal(cel_h2_field_again(&f, m.kind, m.bits), -1);
    /* a pseudo-header twice */
    cel_h2_fields_init(&f);
    assert_int_equal(cel_h2_field_again(&f, a.kind, a.bits), CEL_HF_AUTHORITY);
    assert_int_equal(cel_h2_field_again(&f, a.kind, a.bits), -1);
    /* host twice */
    cel_h2_fields_init(&f);
    assert_int_equal(cel_h2_field_again(&f, host.kind, host.bits), 0);
    assert_int_equal(cel_h2_field_again(&f, host.kind, host.bits), -1);
    /* a pseudo-header in trailers */
    cel_h2_fields_init(&f);
    f.seen |= CEL_HF_TRAILERS;
    assert_int_equal(cel_h2_field_again(&f, m.kind, m.bits), -1);
    assert_int_equal(cel_h2_field_again(&f, ua.kind, ua.bits), 0);
}

/* Octet by octet, the classes RFC 9110 and RFC 9113 8.2.1 define. */
static void test_octets(void **state)
{
    (void)state;
    static const char tchar_punct[] = "!#$%&'*+-.^_`|~";
    for (unsigned c = 0; c < 256; c++) {
        uint8_t name[3] = {'x', (uint8_t)c, 'y'};
        uint8_t value[3] = {'a', (uint8_t)c, 'b'};
        int lower_tchar =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c && strchr(tchar_punct, (int)c));
        int vchar = c == '\t' || (c >= 0x20 && c != 0x7f);
        cel_h2_fields f;
        cel_h2_fields_init(&f);
        int rn = cel_h2_field(&f, name, 3, (const uint8_t *)"v", 1);
        if ((rn == 0) != lower_tchar)
            fail_msg("name octet 0x%02x: %s", c, rn == 0 ? "accepted" : "refused");
        cel_h2_fields_init(&f);
        int rv = cel_h2_field(&f, (const uint8_t *)"x-a", 3, value, 3);
        if ((rv == 0) != vchar)
            fail_msg("value octet 0x%02x: %s", c, rv == 0 ? "accepted" : "refused");
    }
}

/* cel_h2_path_copy against cel_h2_path and a plain search for '?': paths of
 * every length up to 40 with one chosen octet at every position (every octet
 * value), and with '?' at one or two places, as the words' edges fall. */
static void path_copy_case(const uint8_t *v, size_t n)
{
    cel_h2_fields a, b;
    cel_h2_fields_init(&a);
    cel_h2_fields_init(&b);
    char d[64];
    memset(d, 0x55, sizeof(d));
    size_t q = 999;
    int want = cel_h2_path(&a, v, n);
    int got = cel_h2_path_copy(&b, d, v, n, &q);
    if (got != want || a.seen != b.seen)
        fail_msg("path of %zu octets: copy says %d (seen %x), check says %d (seen %x)", n, got,
                 b.seen, want, a.seen);
    if (got < 0)
        return;
    const void *mark = memchr(v, '?', n);
    size_t want_q = mark ? (size_t)((const uint8_t *)mark - v) : n;
    if (q != want_q)
        fail_msg("path of %zu octets: query at %zu, want %zu", n, q, want_q);
    if (memcmp(d, v, n) != 0 || d[n] != 0x55)
        fail_msg("path of %zu octets: copy differs or overruns", n);
}

/* cel_h2_plain_copy against cel_h2_field_plain: values of every length up to
 * 40 with one chosen octet at every position (every octet value), so each
 * bad octet falls at each place of the words and at both ends. */
static void plain_copy_case(const uint8_t *v, size_t n)
{
    cel_h2_fields a, b;
    cel_h2_fields_init(&a);
    cel_h2_fields_init(&b);
    char d[64];
    memset(d, 0x55, sizeof(d));
    int want = cel_h2_field_plain(&a, v, n);
    int got = cel_h2_plain_copy(&b, d, v, n);
    if (got != want || a.seen != b.seen)
        fail_msg("value of %zu octets: copy says %d (seen %x), check says %d (seen %x)", n, got,
                 b.seen, want, a.seen);
    if (memcmp(d, v, n) != 0 || d[n] != 0x55)
        fail_msg("value of %zu octets: copy differs or overruns", n);
}

static void test_plain_copy(void **state)
{
    (void)state;
    uint8_t v[40] = {0};
    for (size_t n = 0; n <= sizeof(v); n++) {
        for (size_t i = 0; i < n; i++)
            v[i] = (uint8_t)('"' + i % 90);
        plain_copy_case(v, n);
        for (size_t at = 0; at < n; at++) {
            for (unsigned c = 0; c < 256; c++) {
                uint8_t keep = v[at];
                v[at] = (uint8_t)c;
                plain_copy_case(v, n);
                v[at] = keep;
            }
        }
    }
}

static void test_path_copy(void **state)
{
    (void)state;
    uint8_t v[40] = {0};
    for (size_t n = 0; n <= sizeof(v); n++) {
        for (size_t i = 0; i < n; i++)
            v[i] = (uint8_t)('a' + i % 26);
        if (n)
            v[0] = '/';
        path_copy_case(v, n);
        for (size_t at = 0; at < n; at++) {
            for (unsigned c = 0; c < 256; c++) {
                uint8_t keep = v[at];
                v[at] = (uint8_t)c;
                path_copy_case(v, n);
                v[at] = keep;
            }
            for (size_t second = at + 1; second <= n; second++) {
                uint8_t k1 = v[at], k2 = second < n ? v[second] : 0;
                v[at] = '?';
                if (second < n)
                    v[second] = '?';
                path_copy_case(v, n);
                v[at] = k1;
                if (second < n)
                    v[second] = k2;
            }
        }
    }
    /* placed as cel_h2_path wants: not twice, not after a regular field */
    cel_h2_fields f;
    cel_h2_fields_init(&f);
    char d[8];
    size_t q;
    assert_int_equal(cel_h2_path_copy(&f, d, (const uint8_t *)"/a", 2, &q), CEL_HF_PATH);
    assert_int_equal(cel_h2_path_copy(&f, d, (const uint8_t *)"/a", 2, &q), -1);
    cel_h2_fields_init(&f);
    assert_int_equal(cel_h2_field(&f, (const uint8_t *)"x-a", 3, (const uint8_t *)"1", 1), 0);
    assert_int_equal(cel_h2_path_copy(&f, d, (const uint8_t *)"/a", 2, &q), -1);
}

/* RFC 9218 priority field values: what cel_h2_priority makes of them, from
 * urgency 3, not incremental. ok = 0 means the line does not parse. */
static const struct prio_row {
    const char *value;
    int ok;
    uint8_t u, i;
} prio_rows[] = {
    {"u=0", 1, 0, 0},
    {"u=7, i", 1, 7, 1},
    {"i", 1, 3, 1},
    {"i=?0", 1, 3, 0},
    {"i=?1, u=5", 1, 5, 1},
    {"  u=2 ,\ti  ", 1, 2, 1},
    {"u=1, u=6", 1, 6, 0}, /* the last value of a key counts */
    {"u=8", 1, 3, 0},      /* out of range: ignored */
    {"u=-1", 1, 3, 0},
    {"u=1.5", 1, 3, 0},                        /* a decimal: the wrong type */
    {"u=\"1\"", 1, 3, 0},                      /* a string: the wrong type */
    {"i=1", 1, 3, 0},                          /* an integer where a boolean belongs */
    {"u=2;x=1, i;y", 1, 2, 1},                 /* parameters are passed over */
    {"x=(a \"b\" 1);p, u=4", 1, 4, 0},         /* so are inner lists */
    {"foo=bar, u=1, baz=:cHJpbw==:", 1, 1, 0}, /* and unknown members */
    {"", 1, 3, 0},
    {"u=", 0, 3, 0},
    {"U=1", 0, 3, 0},  /* keys are lowercase */
    {"u=1,", 0, 3, 0}, /* a trailing comma */
    {"u=1 i", 0, 3, 0},
    {"i=?2", 0, 3, 0},
    {"u=1234567890123456", 0, 3, 0}, /* more than 15 digits */
    {"x=\"unterminated", 0, 3, 0},
    {"u=1;", 0, 3, 0},
};

static void test_priority(void **state)
{
    (void)state;
    for (size_t k = 0; k < CEL_ARRAY_LEN(prio_rows); k++) {
        const struct prio_row *r = &prio_rows[k];
        uint8_t u = 3, i = 0;
        int rv = cel_h2_priority((const uint8_t *)r->value, strlen(r->value), &u, &i);
        if ((rv == 0) != r->ok)
            fail_msg("priority \"%s\": %s", r->value, rv == 0 ? "parsed" : "refused");
        if (u != r->u || i != r->i)
            fail_msg("priority \"%s\": u=%u i=%u, want u=%u i=%u", r->value, u, i, r->u, r->i);
    }
}

/* For names from HPACK's static table, cel_h2_field_static_name answers as
 * cel_h2_field does: only the name's octet check is left out. */
static void test_static_name(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value;
    } cases[] = {
        {"if-none-match", "\"1-2\""},
        {"if-none-match", "a\rb"},
        {"if-none-match", " x"},
        {"te", "trailers"},
        {"te", "gzip"},
        {"host", "a.b"},
        {"host", ""},
        {"content-length", "12"},
        {"content-length", "1x"},
        {"cookie", "a=b"},
        {"user-agent", "x\ty"},
        {"accept", ""},
        {":method", "GET"},
        {":scheme", "http"},
        {":authority", "a b"},
    };
    for (size_t i = 0; i < CEL_ARRAY_LEN(cases); i++) {
        cel_h2_fields a, b;
        cel_h2_fields_init(&a);
        cel_h2_fields_init(&b);
        const uint8_t *n = (const uint8_t *)cases[i].name, *v = (const uint8_t *)cases[i].value;
        size_t nl = strlen(cases[i].name), vl = strlen(cases[i].value);
        int ka = cel_h2_field(&a, n, nl, v, vl), kb = cel_h2_field_static_name(&b, n, nl, v, vl);
        if (ka != kb || a.seen != b.seen || a.content_length != b.content_length)
            fail_msg("%s: %s: %d against %d", cases[i].name, cases[i].value, kb, ka);
    }
}

/* For the per-resource names on_fresh takes (If-*, Range), cel_h2_field_plain
 * answers as cel_h2_field does. */
static void test_plain(void **state)
{
    (void)state;
    static const char *const names[] = {"if-match",          "if-none-match",
                                        "if-modified-since", "if-unmodified-since",
                                        "if-range",          "range"};
    static const char *const values[] = {
        "\"1-2\"", "W/\"a\", \"b\"", "*",    "bytes=0-1", "",        " x",
        "x ",      "x\ty",           "a\rb", "a\x7f",     "\x80\xff"};
    for (size_t i = 0; i < CEL_ARRAY_LEN(names); i++)
        for (size_t j = 0; j < CEL_ARRAY_LEN(values); j++) {
            cel_h2_fields a, b;
            cel_h2_fields_init(&a);
            cel_h2_fields_init(&b);
            const uint8_t *v = (const uint8_t *)values[j];
            size_t vl = strlen(values[j]);
            int ka = cel_h2_field(&a, (const uint8_t *)names[i], strlen(names[i]), v, vl);
            int kb = cel_h2_field_plain(&b, v, vl);
            if (ka != kb || a.seen != b.seen)
                fail_msg("%s: %s: %d against %d", names[i], values[j], kb, ka);
        }
}

int main(void)
{
    enum { NROWS = CEL_ARRAY_LEN(rows) };
    static struct CMUnitTest tests[NROWS + 9];
    static char names[NROWS][96];
    for (size_t i = 0; i < NROWS; i++) {
        snprintf(names[i], sizeof(names[i]), "%s: %s", rows[i].ok ? "good" : "malformed",
                 rows[i].name);
        tests[i] = (struct CMUnitTest){names[i], test_row, NULL, NULL, (void *)&rows[i]};
    }
    tests[NROWS] = (struct CMUnitTest)cmocka_unit_test(test_kinds);
    tests[NROWS + 1] = (struct CMUnitTest)cmocka_unit_test(test_octets);
    tests[NROWS + 2] = (struct CMUnitTest)cmocka_unit_test(test_priority);
    tests[NROWS + 3] = (struct CMUnitTest)cmocka_unit_test(test_rows_again);
    tests[NROWS + 4] = (struct CMUnitTest)cmocka_unit_test(test_again_in_another_order);
    tests[NROWS + 5] = (struct CMUnitTest)cmocka_unit_test(test_path_copy);
    tests[NROWS + 6] = (struct CMUnitTest)cmocka_unit_test(test_static_name);
    tests[NROWS + 7] = (struct CMUnitTest)cmocka_unit_test(test_plain);
    tests[NROWS + 8] = (struct CMUnitTest)cmocka_unit_test(test_plain_copy);
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return _cmocka_run_group_tests("h2_fields", tests, NROWS + 9, NULL, NULL);
}
