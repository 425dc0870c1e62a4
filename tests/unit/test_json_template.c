#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_template.h"

/* Counts heap calls made from this binary's own objects, to prove render
 * allocates nothing. */
#include "../alloc_count.h"

/* ---- helpers ---- */

static char out[1 << 16];
static size_t outlen;

static cel_str S(const char *s)
{
    return (cel_str){s, strlen(s)};
}

static cel_tmpl *compile_text(const char *text)
{
    json_error_t je;
    json_t *root = json_loads(text, JSON_DECODE_ANY | JSON_PRESERVE_ORDER | JSON_ALLOW_NUL, &je);
    assert_non_null(root);
    char err[256] = "";
    cel_tmpl *t = cel_tmpl_compile(root, err, sizeof(err));
    json_decref(root);
    if (!t)
        fail_msg("compile failed: %s", err);
    return t;
}

/* Renders into the global buffer, NUL-terminated for easy comparison. */
static const char *render(const cel_tmpl *t, const cel_request *req)
{
    assert_int_equal(cel_tmpl_render(t, req, out, sizeof(out) - 1, &outlen), 0);
    out[outlen] = '\0';
    return out;
}

static void expect_render(const char *tmpl, const cel_request *req, const char *expected)
{
    cel_tmpl *t = compile_text(tmpl);
    assert_string_equal(render(t, req), expected);
    cel_tmpl_free(t);
}

/* Renders a template that is one string and checks the value a JSON parser
 * reads back from the output. */
static void expect_parsed_n(const char *tmpl, const cel_request *req, const char *expected,
                            size_t explen)
{
    cel_tmpl *t = compile_text(tmpl);
    render(t, req);
    json_error_t je;
    json_t *v = json_loadb(out, outlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v)
        fail_msg("output is not JSON (%s): %s", je.text, out);
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), explen);
    assert_memory_equal(json_string_value(v), expected, explen);
    json_decref(v);
    cel_tmpl_free(t);
}

static void expect_parsed(const char *tmpl, const cel_request *req, const char *expected)
{
    expect_parsed_n(tmpl, req, expected, strlen(expected));
}

static cel_header hdrs[4];
static cel_param prms[2];

/* GET /users/42?q=a+b%21&empty=&flag&dup=1&dup=2 with a route param "id". */
static cel_request base_req(void)
{
    hdrs[0] = (cel_header){S("user-agent"), S("test/1.0")};
    hdrs[1] = (cel_header){S("x-request-id"), S("abc-123")};
    hdrs[2] = (cel_header){S("x-request-id"), S("second")};
    prms[0] = (cel_param){"id", 7, 2};
    prms[1] = (cel_param){"name", 0, 0};
    cel_request r = {0};
    r.method_bit = CEL_M_GET;
    r.method = S("GET");
    r.path = S("/users/42");
    r.query = S("q=a+b%21&empty=&flag&dup=1&dup=2");
    r.headers = hdrs;
    r.nheaders = 3;
    r.params = prms;
    r.nparams = 1;
    return r;
}

/* A request whose header "x" holds N raw bytes of V, param "p" holds V as its
 * raw (percent-encoded) text, and query is V itself. */
static cel_request value_req(const char *v, size_t n)
{
    hdrs[0] = (cel_header){S("x"), {v, n}};
    prms[0] = (cel_param){"p", 0, (uint32_t)n};
    cel_request r = {0};
    r.method = S("GET");
    r.path = (cel_str){v, n};
    r.query = S("");
    r.headers = hdrs;
    r.nheaders = 1;
    r.params = prms;
    r.nparams = 1;
    return r;
}

/* ---- constant templates ---- */

/* Constant templates must come out as one chunk equal to jansson's compact dump. */
static void expect_constant(const char *tmpl)
{
    json_t *root = json_loads(tmpl, JSON_DECODE_ANY | JSON_PRESERVE_ORDER, NULL);
    assert_non_null(root);
    char *want = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
    cel_tmpl *t = cel_tmpl_compile(root, NULL, 0);
    assert_non_null(t);
    size_t len = 0;
    const char *c = cel_tmpl_constant(t, &len);
    assert_non_null(c);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(c, want, len);
    cel_request req = base_req();
    assert_string_equal(render(t, &req), want);
    cel_tmpl_free(t);
    free(want);
    json_decref(root);
}

static void test_constant_object(void **state)
{
    (void)state;
    cel_tmpl *t = compile_text("{\"message\": \"Hello, World!\"}");
    size_t len = 0;
    const char *c = cel_tmpl_constant(t, &len);
    assert_non_null(c);
    assert_int_equal(len, strlen("{\"message\":\"Hello, World!\"}"));
    assert_memory_equal(c, "{\"message\":\"Hello, World!\"}", len);
    cel_tmpl_free(t);
    expect_constant("{}");
    expect_constant("{\"z\": 1, \"a\": 2, \"m\": {\"y\": 3, \"b\": 4}}");
}

static void test_constant_array_nested(void **state)
{
    (void)state;
    expect_constant("[]");
    expect_constant("[1, \"x\", [], {}, [[[\"deep\"]]], {\"a\": [{\"b\": null}]}]");
    expect_constant("{\"a\": {\"b\": [1, {\"c\": []}]}, \"d\": {}}");
}

static void test_constant_scalars(void **state)
{
    (void)state;
    expect_constant("[0, -1, 9223372036854775807, -9223372036854775808, 1.5, -0.25, 1e300, "
                    "3.0, 0.1, 1e-7]");
    expect_constant("[true, false, null]");
    expect_constant("42");
    expect_constant("-2.5");
    expect_constant("true");
    expect_constant("null");
    expect_constant("\"just a string\"");
    expect_constant("\"\"");
}

static void test_constant_unicode_and_escapes(void **state)
{
    (void)state;
    expect_constant("{\"s\": \"h\\u00e9llo \\u2603 \\ud83d\\ude00\", \"k\\u00e9y\": 1}");
    expect_constant("{\"q\\\"k\\\\\": \"\\u0001\\\"\\\\/\\n\\r\\t\\b\\f\\u001f\\u007f\"}");
    expect_render("[\"\\u00e9\\u2603\", \"a\\nb\"]", NULL, "[\"\xc3\xa9\xe2\x98\x83\",\"a\\nb\"]");
    expect_render("\"\\u0000x\"", NULL, "\"\\u0000x\"");
    /* Braces that do not form "{{" and a lone "}}" are plain text. */
    expect_constant("[\"}}\", \"{\", \"a}}b{\", \"{x}\", \"{ {\"]");
    /* Keys are never expanded or checked. */
    expect_constant("{\"{{param.id}}\": 1, \"{{bogus\": 2}");
}

/* ---- slots ---- */

static void test_slot_kinds(void **state)
{
    (void)state;
    cel_request req = base_req();
    expect_render("{\"id\": \"{{param.id}}\"}", &req, "{\"id\":\"42\"}");
    expect_render("{\"q\": \"{{query.q}}\"}", &req, "{\"q\":\"a b!\"}");
    expect_render("{\"h\": \"{{header.user-agent}}\"}", &req, "{\"h\":\"test/1.0\"}");
    expect_render("{\"m\": \"{{method}}\"}", &req, "{\"m\":\"GET\"}");
    expect_render("{\"p\": \"{{path}}\"}", &req, "{\"p\":\"/users/42\"}");
    expect_render("\"{{path}}\"", &req, "\"/users/42\"");
    expect_render("[\"{{method}}\", 1, {\"x\": [\"{{param.id}}\"]}]", &req,
                  "[\"GET\",1,{\"x\":[\"42\"]}]");

    cel_tmpl *t = compile_text("{\"id\": \"{{param.id}}\"}");
    size_t len = 99;
    assert_null(cel_tmpl_constant(t, &len));
    assert_int_equal(len, 99);
    cel_tmpl_free(t);
}

static void test_header_case_and_first(void **state)
{
    (void)state;
    cel_request req = base_req();
    /* Names are lowercased at compile; the first of repeated headers wins. */
    expect_render("\"{{header.X-Request-ID}}\"", &req, "\"abc-123\"");
    expect_render("\"{{header.x-request-id}}\"", &req, "\"abc-123\"");
    expect_render("\"{{query.dup}}\"", &req, "\"1\"");
}

static void test_text_around(void **state)
{
    (void)state;
    cel_request req = base_req();
    expect_render("{\"u\": \"user-{{param.id}}!\"}", &req, "{\"u\":\"user-42!\"}");
    expect_render("\"{{method}} {{path}}?q={{query.q}}\"", &req, "\"GET /users/42?q=a b!\"");
    expect_render("\"{{param.id}}{{param.id}}\"", &req, "\"4242\"");
    expect_render("\"}}{{param.id}}}}\"", &req, "\"}}42}}\"");
    expect_render("\"a\\\"{{param.id}}\\n\"", &req, "\"a\\\"42\\n\"");
    expect_render("{\"a\": 1, \"b\": \"<{{method}}>\", \"c\": [true]}", &req,
                  "{\"a\":1,\"b\":\"<GET>\",\"c\":[true]}");
}

static void test_missing_values(void **state)
{
    (void)state;
    cel_request req = base_req();
    expect_render("[\"{{param.nope}}\", \"{{query.nope}}\", \"{{header.nope}}\"]", &req,
                  "[\"\",\"\",\"\"]");
    expect_render("[\"{{query.empty}}\", \"{{query.flag}}\"]", &req, "[\"\",\"\"]");
    expect_render("\"x{{param.nope}}y\"", &req, "\"xy\"");

    /* A request with nothing in it (query as an empty slice, not NULL: see the
     * report on request.c's pointer arithmetic). */
    cel_request empty = {0};
    empty.query = S("");
    expect_render("[\"{{method}}\", \"{{path}}\", \"{{param.id}}\", \"{{query.q}}\", "
                  "\"{{header.a}}\"]",
                  &empty, "[\"\",\"\",\"\",\"\",\"\"]");
}

/* ---- decoding and escaping ---- */

static void test_percent_decoding(void **state)
{
    (void)state;
    const char *raw = "a+b%2Fc%20d%zz%4";
    cel_request req = value_req(raw, strlen(raw));
    /* In a param '+' stays; malformed escapes are kept as is. */
    expect_parsed("\"{{param.p}}\"", &req, "a+b/c d%zz%4");
    /* Headers and the path are inserted raw. */
    expect_parsed("\"{{header.x}}\"", &req, raw);
    expect_parsed("\"{{path}}\"", &req, raw);

    cel_request q = base_req();
    q.query = S("x=a+b%2B%26c&y=%22%5C&z=%00");
    expect_parsed("\"{{query.x}}\"", &q, "a b+&c");
    expect_parsed("\"{{query.y}}\"", &q, "\"\\");
    expect_parsed_n("\"{{query.z}}\"", &q, "\0", 1);
    expect_render("\"{{query.z}}\"", &q, "\"\\u0000\"");
}

static void test_escaping(void **state)
{
    (void)state;
    const char *v = "q\"b\\s/\x01\x1f\x7f\n\r\t\b\f end";
    cel_request req = value_req(v, strlen(v));
    expect_parsed("\"{{header.x}}\"", &req, v);
    expect_render("\"{{header.x}}\"", &req,
                  "\"q\\\"b\\\\s/\\u0001\\u001F\x7f\\n\\r\\t\\b\\f end\"");

    /* Encoded in a param, the same bytes come out the same after decoding. */
    const char *enc = "q%22b%5Cs/%01%1F%7F%0A%0D%09%08%0C%20end";
    req = value_req(enc, strlen(enc));
    expect_parsed("\"{{param.p}}\"", &req, v);

    const char *utf8 = "h\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf";
    req = value_req(utf8, strlen(utf8));
    /* Valid multibyte sequences are copied byte for byte. */
    expect_render("\"{{header.x}}\"", &req,
                  "\"h\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf\"");
}

#define FFFD "\xef\xbf\xbd"

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"\xff", FFFD},
        {"\x80", FFFD},
        {"a\xc3", "a" FFFD},
        {"\xc3(", FFFD "("},
        {"\xc0\xaf", FFFD FFFD},          /* overlong '/' */
        {"\xc1\xbf", FFFD FFFD},          /* overlong */
        {"\xe0\x80\xaf", FFFD FFFD FFFD}, /* overlong, 3 bytes */
        {"\xf0\x80\x80\xaf", FFFD FFFD FFFD FFFD},
        {"\xed\xa0\x80", FFFD FFFD FFFD},          /* surrogate */
        {"\xed\xbf\xbf", FFFD FFFD FFFD},          /* surrogate */
        {"\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD}, /* above U+10FFFF */
        {"\xf5\x80\x80\x80", FFFD FFFD FFFD FFFD},
        {"\xe2\x82", FFFD}, /* truncated: one replacement */
        {"\xe2\x82(", FFFD "("},
        {"\xf0\x9f\x98x", FFFD "x"},
        {"\xf0\x9f\x98\xc3\xa9", FFFD "\xc3\xa9"},
        {"ok\xfe\xfe"
         "ok",
         "ok" FFFD FFFD "ok"},
    };
    for (size_t i = 0; i < CEL_ARRAY_LEN(cases); i++) {
        cel_request req = value_req(cases[i].in, strlen(cases[i].in));
        expect_parsed("\"{{header.x}}\"", &req, cases[i].want);
        char want[64];
        snprintf(want, sizeof(want), "[%s]", cases[i].want);
        expect_parsed("\"[{{path}}]\"", &req, want);
    }
}

static void test_invalid_utf8_encoded(void **state)
{
    (void)state;
    const char *enc = "%ff%c3%a9%e2%82%ed%a0%80";
    cel_request req = value_req(enc, strlen(enc));
    expect_parsed("\"{{param.p}}\"", &req, FFFD "\xc3\xa9" FFFD FFFD FFFD FFFD);
    req.query = S("v=%C0%AF+%F4%90%80%80");
    expect_parsed("\"{{query.v}}\"", &req, FFFD FFFD " " FFFD FFFD FFFD FFFD);
}

static uint32_t rnd_state = 12345;

static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

/* Random bytes, biased towards the interesting ones: whatever a client sends,
 * the output parses, and valid UTF-8 survives unchanged. */
static void test_random_values_stay_valid(void **state)
{
    (void)state;
    static const char *pieces[] = {"a",
                                   "\"",
                                   "\\",
                                   "\n",
                                   "\x01",
                                   "\x7f",
                                   "%",
                                   "%2",
                                   "%22",
                                   "%ff",
                                   "%C3%A9",
                                   "+",
                                   "\xc3\xa9",
                                   "\xe2\x98\x83",
                                   "\xf0\x9f\x98\x80",
                                   "\xed\xa0\x80",
                                   "\xc3",
                                   "\xff",
                                   "{{"};
    cel_tmpl *t = compile_text("[\"{{header.x}}\", \"<{{param.p}}>\", \"{{path}}\"]");
    char v[256];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 0, k = rnd() % 20;
        for (size_t i = 0; i < k; i++) {
            if (rnd() % 3 == 0) {
                v[n++] = (char)(rnd() & 0xff);
            } else {
                const char *p = pieces[rnd() % CEL_ARRAY_LEN(pieces)];
                memcpy(v + n, p, strlen(p));
                n += strlen(p);
            }
        }
        cel_request req = value_req(v, n);
        render(t, &req);
        json_error_t je;
        json_t *root = json_loadb(out, outlen, JSON_ALLOW_NUL, &je);
        if (!root)
            fail_msg("invalid JSON for input %d (%s): %s", iter, je.text, out);
        /* jansson's UTF-8 check is the reference for "valid". */
        json_t *ref = json_stringn(v, n);
        json_t *got = json_array_get(root, 0);
        if (ref)
            assert_true(json_equal(ref, got));
        else
            assert_non_null(memmem(json_string_value(got), json_string_length(got), FFFD, 3));
        json_decref(ref);
        json_decref(root);
    }
    cel_tmpl_free(t);
}

/* ---- buffer sizes ---- */

static void test_too_big(void **state)
{
    (void)state;
    cel_tmpl *t = compile_text("{\"h\": \"{{header.x}}\", \"p\": \"{{param.p}}\", \"n\": 1}");
    const char *v = "\x01\x02\"\\%01%02\xff";
    cel_request req = value_req(v, strlen(v));
    char want[256];
    render(t, &req);
    memcpy(want, out, outlen + 1);
    size_t wantlen = outlen;

    size_t need = 0;
    char small[4];
    assert_int_equal(cel_tmpl_render(t, &req, small, sizeof(small), &need), CEL_ETOOBIG);
    assert_true(need >= wantlen);
    assert_int_equal(cel_tmpl_render(t, &req, NULL, 0, &need), CEL_ETOOBIG);

    /* At every capacity: either the right output, or ETOOBIG with a bound that
     * works and nothing written at or past the capacity. */
    static char buf[1024];
    for (size_t cap = 0; cap <= need + 8; cap++) {
        memset(buf, 0xAA, sizeof(buf));
        size_t len = 0;
        int rc = cel_tmpl_render(t, &req, buf, cap, &len);
        for (size_t i = cap; i < sizeof(buf); i++)
            assert_int_equal((unsigned char)buf[i], 0xAA);
        if (rc == 0) {
            assert_true(cap >= wantlen);
            assert_int_equal(len, wantlen);
            assert_memory_equal(buf, want, len);
        } else {
            assert_int_equal(rc, CEL_ETOOBIG);
            assert_true(cap < need);
            assert_int_equal(len, need);
        }
    }
    cel_tmpl_free(t);
}

static void test_too_big_exact(void **state)
{
    (void)state;
    /* Without decoded slots a buffer of exactly the output size is enough. */
    cel_tmpl *t = compile_text("[\"{{header.x}}\", \"{{method}}\", \"{{path}}\"]");
    char v[200];
    memset(v, '\x01', sizeof(v));
    cel_request req = value_req(v, sizeof(v));
    req.path = S("/p");
    render(t, &req);
    size_t wantlen = outlen, len = 0;
    static char buf[4096];
    assert_int_equal(cel_tmpl_render(t, &req, buf, wantlen, &len), 0);
    assert_int_equal(len, wantlen);
    assert_int_equal(cel_tmpl_render(t, &req, buf, wantlen - 1, &len), CEL_ETOOBIG);
    /* Control bytes are the 6x worst case, so the bound is tight for them; the
     * plain "GET" and "/p" are counted at 6x too. */
    assert_int_equal(len, wantlen + 5 * (3 + 2));
    cel_tmpl_free(t);

    /* A param of "%01" repeated: decoding shrinks 3 to 1, escaping grows 1 to 6. */
    t = compile_text("\"{{param.p}}\"");
    char enc[300];
    for (int i = 0; i < 100; i++)
        memcpy(enc + 3 * i, "%01", 3);
    req = value_req(enc, sizeof(enc));
    assert_int_equal(cel_tmpl_render(t, &req, buf, 10, &len), CEL_ETOOBIG);
    assert_int_equal(len, 2 + 6 * sizeof(enc));
    assert_int_equal(cel_tmpl_render(t, &req, buf, len, &len), 0);
    assert_int_equal(len, 2 + 600);
    cel_tmpl_free(t);
}

/* ---- errors ---- */

static void expect_error(const char *s, const char *msg)
{
    char err[256] = "";
    assert_int_equal(cel_tmpl_check_string(s, strlen(s), err, sizeof(err)), CEL_EINVAL);
    assert_string_equal(err, msg);

    json_t *root = json_pack("{s:[i,s]}", "k", 1, s);
    err[0] = '\0';
    assert_null(cel_tmpl_compile(root, err, sizeof(err)));
    assert_string_equal(err, msg);
    json_decref(root);
}

static void test_compile_errors(void **state)
{
    (void)state;
    expect_error("{{ param.id }}", "unknown placeholder \"{{ param.id }}\"");
    expect_error("{{param.id }}", "bad name in placeholder \"{{param.id }}\"");
    expect_error("{{param.}}", "bad name in placeholder \"{{param.}}\"");
    expect_error("{{query.}}", "bad name in placeholder \"{{query.}}\"");
    expect_error("{{header.}}", "bad name in placeholder \"{{header.}}\"");
    expect_error("{{param.a-b}}", "bad name in placeholder \"{{param.a-b}}\"");
    expect_error("{{param.a.b}}", "bad name in placeholder \"{{param.a.b}}\"");
    expect_error("{{header.a b}}", "bad name in placeholder \"{{header.a b}}\"");
    expect_error("x{{foo.x}}y", "unknown placeholder \"{{foo.x}}\"");
    expect_error("{{method.x}}", "unknown placeholder \"{{method.x}}\"");
    expect_error("{{path.x}}", "unknown placeholder \"{{path.x}}\"");
    expect_error("{{param}}", "unknown placeholder \"{{param}}\"");
    expect_error("{{PARAM.id}}", "unknown placeholder \"{{PARAM.id}}\"");
    expect_error("{{METHOD}}", "unknown placeholder \"{{METHOD}}\"");
    expect_error("{{}}", "unknown placeholder \"{{}}\"");
    expect_error("{{{param.id}}", "unknown placeholder \"{{{param.id}}\"");
    expect_error("user-{{param.id", "unterminated placeholder \"{{param.id\"");
    expect_error("{{param.id}", "unterminated placeholder \"{{param.id}\"");
    expect_error("ok {{", "unterminated placeholder \"{{\"");
    expect_error("{{method}} then {{", "unterminated placeholder \"{{\"");
    expect_error("{{path}}{{nope}}", "unknown placeholder \"{{nope}}\"");

    /* A runaway placeholder is cut short in the message. */
    char longs[200] = "{{param.";
    memset(longs + 8, 'x', 150);
    expect_error(longs, "unterminated placeholder \"{{param.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                        "xxxxxxxxxxxxxxxxx...\"");

    /* A short or absent error buffer is fine. */
    char tiny[8];
    assert_int_equal(cel_tmpl_check_string("{{x}}", 5, tiny, sizeof(tiny)), CEL_EINVAL);
    assert_string_equal(tiny, "unknown");
    assert_int_equal(cel_tmpl_check_string("{{x}}", 5, NULL, 0), CEL_EINVAL);

    /* Errors deep inside objects and arrays fail the whole compile. */
    json_t *root = json_loads("{\"a\": {\"b\": [1, 2, {\"c\": \"{{nope}}\"}]}, \"d\": 1}", 0, NULL);
    assert_null(cel_tmpl_compile(root, NULL, 0));
    json_decref(root);
}

static void test_check_string_ok(void **state)
{
    (void)state;
    static const char *ok[] = {"",
                               "plain",
                               "}}",
                               "{",
                               "{x}",
                               "a}}b{",
                               "{ {param.id}}",
                               "{{param.id}}",
                               "{{param.ID_9}}",
                               "{{query.a-b.c_D}}",
                               "{{header.X-Forwarded-For}}",
                               "{{method}}{{path}}",
                               "user-{{param.id}}!",
                               "{{param.id}}}"};
    for (size_t i = 0; i < CEL_ARRAY_LEN(ok); i++) {
        char err[64] = "";
        assert_int_equal(cel_tmpl_check_string(ok[i], strlen(ok[i]), err, sizeof(err)), 0);
        assert_string_equal(err, "");
    }
    /* Only N bytes are looked at. */
    assert_int_equal(cel_tmpl_check_string("ab{{", 2, NULL, 0), 0);
    assert_int_equal(cel_tmpl_check_string("{{path}}x", 8, NULL, 0), 0);
}

struct names {
    char buf[256];
    int count;
};

static void collect(void *arg, const char *name, size_t len)
{
    struct names *n = arg;
    strncat(n->buf, name, len);
    strcat(n->buf, ",");
    n->count++;
}

static void test_each_param(void **state)
{
    (void)state;
    cel_tmpl *t = compile_text("{\"a\": \"{{param.id}}-{{query.q}}\", \"{{param.key}}\": "
                               "[\"{{param.name}}\", \"{{header.h}}{{param.id}}\"]}");
    struct names n = {"", 0};
    cel_tmpl_each_param(t, collect, &n);
    assert_string_equal(n.buf, "id,name,id,");
    assert_int_equal(n.count, 3);
    cel_tmpl_free(t);

    t = compile_text("{\"a\": \"{{method}}\"}");
    n = (struct names){"", 0};
    cel_tmpl_each_param(t, collect, &n);
    assert_int_equal(n.count, 0);
    cel_tmpl_free(t);
}

/* ---- allocation ---- */

static void test_render_allocates_nothing(void **state)
{
    (void)state;
    cel_tmpl *t = compile_text("{\"id\": \"user-{{param.id}}\", \"q\": \"{{query.q}}\", "
                               "\"h\": \"{{header.user-agent}}\", \"m\": \"{{method}}\", "
                               "\"p\": \"{{path}}\", \"n\": [1, 2.5, null]}");
    cel_request req = base_req();
    char buf[512], small[8];
    size_t len = 0, before = alloc_calls;
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(cel_tmpl_render(t, &req, buf, sizeof(buf), &len), 0);
        assert_int_equal(cel_tmpl_render(t, &req, small, sizeof(small), &len), CEL_ETOOBIG);
    }
    assert_int_equal(alloc_calls, before);
    cel_tmpl_free(t);

    /* The wrappers do see this binary's allocations, so the check means something. */
    t = compile_text("[\"{{path}}\"]");
    assert_true(alloc_calls > before);
    cel_tmpl_free(t);
}

/* Bound to its route pattern, a template reads params by position; the output
 * is the same, and a request with another number of params (not from that
 * route) still finds them by name. */
static void test_bound_params(void **state)
{
    (void)state;
    static cel_param two[2];
    cel_request req = base_req();
    two[0] = (cel_param){"user", 7, 2}; /* "42" in /users/42 */
    two[1] = (cel_param){"id", 1, 5};   /* "users" */
    req.params = two;
    req.nparams = 2;
    cel_tmpl *t = compile_text("{\"a\": \"{{param.id}}\", \"b\": \"{{param.user}}\"}");
    assert_string_equal(render(t, &req), "{\"a\":\"users\",\"b\":\"42\"}");
    cel_tmpl_bind_params(t, "/:user/x/*id");
    assert_string_equal(render(t, &req), "{\"a\":\"users\",\"b\":\"42\"}");
    /* by position: swap the names, and the pattern's order wins */
    two[0].name = "id";
    two[1].name = "user";
    assert_string_equal(render(t, &req), "{\"a\":\"users\",\"b\":\"42\"}");
    /* another route's request (one param): found by name */
    req.nparams = 1;
    assert_string_equal(render(t, &req), "{\"a\":\"42\",\"b\":\"\"}");
    cel_tmpl_free(t);

    /* Bound, with params that need decoding and escaping: the plain-copy path
     * must step aside for them. "/p/%41%22/q%5C" has a = "A\"", b = "q\\". */
    static cel_param enc[2];
    req = base_req();
    req.path = S("/p/%41%22/q%5C");
    enc[0] = (cel_param){"a", 3, 6};
    enc[1] = (cel_param){"b", 10, 4};
    req.params = enc;
    req.nparams = 2;
    t = compile_text("[\"{{param.a}}\", \"{{param.b}}\", \"x\"]");
    cel_tmpl_bind_params(t, "/p/:a/:b");
    assert_string_equal(render(t, &req), "[\"A\\\"\",\"q\\\\\",\"x\"]");
    /* plain params, and a buffer too small for the output: reported, not overrun */
    req.path = S("/p/abc/def");
    enc[0] = (cel_param){"a", 3, 3};
    enc[1] = (cel_param){"b", 7, 3};
    assert_string_equal(render(t, &req), "[\"abc\",\"def\",\"x\"]");
    char small[8];
    size_t need = 0;
    assert_int_equal(cel_tmpl_render(t, &req, small, sizeof(small), &need), CEL_ETOOBIG);
    assert_true(need >= strlen("[\"abc\",\"def\",\"x\"]"));
    cel_tmpl_free(t);
}

/* Header-value templates: literal text as written (no quotes, no JSON
 * escaping), inserted values with control octets percent-encoded, whatever
 * path (bound plain copy, decode, escape) renders them. */
static void test_header_text(void **state)
{
    (void)state;
    char err[256] = "";
    const char *src = "https://e.com/\"{{param.p}}\"?h={{header.x}}&m={{method}}\\";
    static const char raw[] = "a%0D%0Ab%00%7f%22\\\xc3\xa9";
    cel_request req = value_req(raw, sizeof(raw) - 1);
    cel_tmpl *t = cel_tmpl_compile_text(src, strlen(src), err, sizeof(err));
    if (!t)
        fail_msg("compile failed: %s", err);
    assert_null(cel_tmpl_constant(t, &outlen));
    const char *want = "https://e.com/\"a%0D%0Ab%00%7F\"\\\xc3\xa9\"?h=a%0D%0Ab%00%7f%22"
                       "\\\xc3\xa9&m=GET\\";
    assert_string_equal(render(t, &req), want);
    cel_tmpl_bind_params(t, "/:p");
    assert_string_equal(render(t, &req), want);
    /* a header value with raw control bytes (HTTP/1.1 lets a tab through) */
    static const char ctl[] = "x\ty\x01";
    req = value_req(ctl, sizeof(ctl) - 1);
    assert_string_equal(render(t, &req), "https://e.com/\"x%09y%01\"?h=x%09y%01&m=GET\\");
    cel_tmpl_free(t);

    /* a plain param takes the bound copy */
    req = value_req("abc", 3);
    t = cel_tmpl_compile_text("/to/{{param.p}}", 15, err, sizeof(err));
    assert_non_null(t);
    cel_tmpl_bind_params(t, "/:p");
    assert_string_equal(render(t, &req), "/to/abc");
    /* too small a buffer: reported with a size that then fits */
    char small[4];
    size_t need = 0;
    assert_int_equal(cel_tmpl_render(t, &req, small, sizeof(small), &need), CEL_ETOOBIG);
    assert_true(need >= 7);
    cel_tmpl_free(t);

    /* the same placeholder errors as in JSON strings */
    assert_null(cel_tmpl_compile_text("a {{nope}}", 10, err, sizeof(err)));
    assert_non_null(strstr(err, "{{nope}}"));
    assert_null(cel_tmpl_compile_text("{{param.p", 9, err, sizeof(err)));
    assert_non_null(strstr(err, "unterminated"));
}

/* URL templates (a redirect's target): inserted values are percent-decoded
 * where they come encoded, then encoded but for unreserved octets and '/';
 * the literal text stays as written; a bound plain param takes the same
 * encoding (no raw copy). */
static void test_url_text(void **state)
{
    (void)state;
    char err[256] = "";
    static const char src[] = "https://e.com/{{param.p}}?q={{query.q}}&h={{header.x}}&m={{method}}";
    cel_tmpl *t = cel_tmpl_compile_url(src, strlen(src), err, sizeof(err));
    if (!t)
        fail_msg("compile failed: %s", err);
    static const char raw[] = "a/b%20c%3Fd=1%23f%0D%0A@x:y";
    cel_request req = value_req(raw, sizeof(raw) - 1);
    req.query = S("q=x%26y+z&q=2");
    const char *want = "https://e.com/a/b%20c%3Fd%3D1%23f%0D%0A%40x%3Ay?q=x%26y%20z"
                       "&h=a/b%2520c%253Fd%3D1%2523f%250D%250A%40x%3Ay&m=GET";
    assert_string_equal(render(t, &req), want);
    cel_tmpl_bind_params(t, "/:p");
    assert_string_equal(render(t, &req), want);
    /* plain text that a URL still needs encoded: never the bound raw copy */
    req = value_req("a&b=c", 5);
    req.query = S("");
    assert_string_equal(render(t, &req), "https://e.com/a%26b%3Dc?q=&h=a%26b%3Dc&m=GET");
    /* too small a buffer: reported with a size that then fits */
    char small[8];
    size_t need = 0;
    assert_int_equal(cel_tmpl_render(t, &req, small, sizeof(small), &need), CEL_ETOOBIG);
    char *big = malloc(need);
    assert_non_null(big);
    assert_int_equal(cel_tmpl_render(t, &req, big, need, &need), 0);
    free(big);
    cel_tmpl_free(t);
    /* no placeholder: a constant */
    t = cel_tmpl_compile_url("/x?a=b", 6, err, sizeof(err));
    assert_non_null(t);
    assert_string_equal(cel_tmpl_constant(t, &outlen), "/x?a=b");
    cel_tmpl_free(t);
}

/* Bound templates copy short literals as 16-byte blocks: at every capacity the
 * output is right or ETOOBIG, and nothing is written past the capacity.
 * Literals of 1, 15, 16, 17 and 40 octets between the params. */
static void test_bound_literal_lengths(void **state)
{
    (void)state;
    static cel_param ps[2];
    cel_request req = base_req();
    req.path = S("/p/abc/de");
    ps[0] = (cel_param){"a", 3, 3};
    ps[1] = (cel_param){"b", 7, 2};
    req.params = ps;
    req.nparams = 2;
    static const char *const tmpls[] = {
        "[\"{{param.a}}\", \"{{param.b}}\"]",
        "{\"key-of-fifteen\": \"{{param.a}}\", \"k\": \"{{param.b}}\"}",
        "{\"a_key_of_sixteen\": \"{{param.a}}\"}",
        "{\"a_key_of_seventeen\": \"{{param.b}}\"}",
        "{\"a_much_longer_key_that_runs_to_forty__\": \"{{param.a}}{{param.b}}\"}",
    };
    for (size_t k = 0; k < CEL_ARRAY_LEN(tmpls); k++) {
        cel_tmpl *t = compile_text(tmpls[k]);
        char want[256];
        strcpy(want, render(t, &req)); /* unbound: the general render */
        cel_tmpl_bind_params(t, "/p/:a/:b");
        assert_string_equal(render(t, &req), want);
        size_t n = strlen(want);
        for (size_t cap = 0; cap <= n + 40; cap++) {
            char buf[256];
            memset(buf, '#', sizeof(buf));
            size_t len = 0;
            int rc = cel_tmpl_render(t, &req, buf, cap, &len);
            if (rc == 0) {
                assert_int_equal(len, n);
                assert_memory_equal(buf, want, n);
            } else {
                assert_int_equal(rc, CEL_ETOOBIG);
            }
            for (size_t i = cap; i < sizeof(buf); i++)
                if (buf[i] != '#')
                    fail_msg("template %zu, capacity %zu: octet %zu written", k, cap, i);
        }
        cel_tmpl_free(t);
    }
}

/* The bound render reads 16 octets from the start of each short literal, so
 * the compiled text keeps that slack after its end. The text grows a literal
 * at a time here ("[", ",", "0", ... "]"), so across these templates its
 * end meets each capacity the buffer grows through (256, 512): each renders
 * bound as it does unbound (a debug build asserts the slack in bind_params;
 * ASan sees a read past the text). */
static void test_bound_literal_slack(void **state)
{
    (void)state;
    static cel_param ps[1];
    cel_request req = base_req();
    req.path = S("/p/abc");
    ps[0] = (cel_param){"a", 3, 3};
    req.params = ps;
    req.nparams = 1;
    static char tmpl[2048], want[2048];
    for (size_t m = 0; m <= 300; m++) {
        size_t n = (size_t)snprintf(tmpl, sizeof(tmpl), "[\"{{param.a}}\"");
        for (size_t i = 0; i < m; i++)
            n += (size_t)snprintf(tmpl + n, sizeof(tmpl) - n, ",0");
        snprintf(tmpl + n, sizeof(tmpl) - n, "]");
        cel_tmpl *t = compile_text(tmpl);
        strcpy(want, render(t, &req));
        cel_tmpl_bind_params(t, "/p/:a");
        assert_string_equal(render(t, &req), want);
        cel_tmpl_free(t);
    }
}

/* The bound render's word-at-a-time test of params against the general
 * render: every octet at every place of params of 1 to 40 octets. A param the
 * word test lets through unescaped or undecoded shows as a difference. */
static void test_bound_param_octets(void **state)
{
    (void)state;
    static cel_param one[1];
    cel_tmpl *general = compile_text("[\"{{param.a}}\"]");
    cel_tmpl *bound = compile_text("[\"{{param.a}}\"]");
    cel_tmpl_bind_params(bound, "/p/:a");
    char path[64], want[512];
    for (size_t n = 1; n <= 40; n++) {
        memcpy(path, "/p/", 3);
        for (size_t i = 0; i < n; i++)
            path[3 + i] = (char)('a' + i % 26);
        for (size_t at = 0; at < n; at++) {
            for (unsigned c = 0; c < 256; c++) {
                path[3 + at] = (char)c;
                cel_request req = base_req();
                req.path = (cel_str){path, 3 + n};
                one[0] = (cel_param){"a", 3, (uint32_t)n};
                req.params = one;
                req.nparams = 1;
                strcpy(want, render(general, &req));
                const char *got = render(bound, &req);
                if (strcmp(got, want) != 0)
                    fail_msg("param of %zu octets, 0x%02x at %zu: %s, want %s", n, c, at, got,
                             want);
            }
            path[3 + at] = (char)('a' + at % 26);
        }
    }
    cel_tmpl_free(general);
    cel_tmpl_free(bound);
}

int main(void)
{
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant_object),
        cmocka_unit_test(test_constant_array_nested),
        cmocka_unit_test(test_constant_scalars),
        cmocka_unit_test(test_constant_unicode_and_escapes),
        cmocka_unit_test(test_slot_kinds),
        cmocka_unit_test(test_bound_params),
        cmocka_unit_test(test_bound_literal_lengths),
        cmocka_unit_test(test_bound_literal_slack),
        cmocka_unit_test(test_bound_param_octets),
        cmocka_unit_test(test_header_text),
        cmocka_unit_test(test_header_case_and_first),
        cmocka_unit_test(test_text_around),
        cmocka_unit_test(test_missing_values),
        cmocka_unit_test(test_percent_decoding),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_invalid_utf8_encoded),
        cmocka_unit_test(test_random_values_stay_valid),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_too_big_exact),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_check_string_ok),
        cmocka_unit_test(test_each_param),
        cmocka_unit_test(test_url_text),
        cmocka_unit_test(test_render_allocates_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
