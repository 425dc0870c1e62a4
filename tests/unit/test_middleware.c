/*
 * Middleware chains and response field lists (server/middleware.c): set,
 * add and remove against hand-written expectations, order kept, capacity
 * honoured; chains joined global-then-own with their phases noted (and the
 * methods no member's request phase has work for, which dispatch skips); the one
 * list of field owners (cel_http_field_owner) the config and front ends ask.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http.h"
#include "middleware.h"

static cel_str S(const char *s)
{
    return (cel_str){s, strlen(s)};
}

/* F's fields as "name=value,name=value". */
static const char *dump(const cel_fields *f)
{
    static char buf[512];
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < f->n; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%.*s=%.*s", i ? "," : "",
                              (int)f->v[i].name_len, f->v[i].name, (int)f->v[i].value_len,
                              f->v[i].value);
    return buf;
}

static void test_fields(void **state)
{
    (void)state;
    cel_field v[6];
    cel_fields f = {v, 0, 6, 0};
    assert_int_equal(cel_fields_add(&f, S("server"), S("x")), 0);
    assert_int_equal(cel_fields_add(&f, S("vary"), S("a")), 0);
    assert_int_equal(cel_fields_add(&f, S("link"), S("1")), 0);
    assert_int_equal(cel_fields_add(&f, S("vary"), S("b")), 0);
    assert_string_equal(dump(&f), "server=x,vary=a,link=1,vary=b");
    /* set: the first keeps its place, the later ones go */
    assert_int_equal(cel_fields_set(&f, S("vary"), S("c")), 0);
    assert_string_equal(dump(&f), "server=x,vary=c,link=1");
    assert_int_equal(cel_fields_set(&f, S("date"), S("d")), 0);
    assert_string_equal(dump(&f), "server=x,vary=c,link=1,date=d");
    cel_fields_remove(&f, S("server"));
    cel_fields_remove(&f, S("nothing"));
    assert_string_equal(dump(&f), "vary=c,link=1,date=d");
    /* a name sharing a length and first octet is still another name */
    assert_int_equal(cel_fields_set(&f, S("lint"), S("2")), 0);
    assert_string_equal(dump(&f), "vary=c,link=1,date=d,lint=2");
    for (size_t i = 0; i < f.n; i++)
        assert_int_equal(v[i].flags, CEL_FIELD_KEPT);
    assert_int_equal(cel_fields_set_flags(&f, S("x-id"), S("7"), CEL_FIELD_UNIQUE), 0);
    assert_int_equal(v[4].flags, CEL_FIELD_KEPT | CEL_FIELD_UNIQUE);
    assert_int_equal(f.n, 5);
    assert_int_equal(cel_fields_add(&f, S("a"), S("1")), 0);
    assert_int_equal(cel_fields_add(&f, S("b"), S("2")), CEL_ETOOBIG);
    assert_int_equal(cel_fields_set(&f, S("c"), S("3")), CEL_ETOOBIG);
    assert_int_equal(cel_fields_set(&f, S("a"), S("4")), 0); /* replacing needs no room */
    assert_int_equal(f.n, 6);
}

static int req_fn(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    (void)m, (void)x, (void)res;
    return 0;
}

static void head_fn(const cel_mw *m, cel_exchange *x, int status, cel_fields *f)
{
    (void)m, (void)x, (void)status, (void)f;
}

static int destroyed;
static void destroy_fn(cel_mw *m)
{
    (void)m;
    destroyed++;
}

static void test_chains(void **state)
{
    (void)state;
    static const cel_mw_ops req_ops = {.request = req_fn, .destroy = destroy_fn};
    static const cel_mw_ops head_ops = {.head = head_fn, .destroy = destroy_fn};
    cel_mw a = {&req_ops, "a"}, b = {&head_ops, "b"}, c = {&head_ops, "c"};
    cel_mw_chain *g = cel_mw_chain_new(1, 1), *own = cel_mw_chain_new(2, 1), *j;
    assert_non_null(g);
    assert_non_null(own);
    cel_mw_chain_push(g, &a);
    assert_int_equal(g->phases, CEL_MW_REQUEST);
    cel_mw_chain_push(own, &b);
    cel_mw_chain_push(own, &c);
    assert_int_equal(own->phases, CEL_MW_HEAD);
    assert_int_equal(cel_mw_chain_join(g, own, &j), 0);
    assert_int_equal(j->n, 3);
    assert_ptr_equal(j->v[0], &a);
    assert_ptr_equal(j->v[1], &b);
    assert_ptr_equal(j->v[2], &c);
    assert_int_equal(j->phases, CEL_MW_REQUEST | CEL_MW_HEAD);
    cel_mw_chain *same;
    assert_int_equal(cel_mw_chain_join(g, NULL, &same), 0);
    assert_ptr_equal(same, g); /* no list of its own: the global one itself */
    assert_int_equal(cel_mw_chain_join(NULL, NULL, &same), 0);
    assert_null(same);
    cel_mw_chain_free(j); /* owns nothing */
    assert_int_equal(destroyed, 0);
    cel_mw_chain_free(own);
    cel_mw_chain_free(g);
    assert_int_equal(destroyed, 3);
}

static void test_request_skip(void **state)
{
    (void)state;
    static const cel_mw_ops options_ops = {.request = req_fn, .request_methods = CEL_M_OPTIONS};
    static const cel_mw_ops any_ops = {.request = req_fn};
    static const cel_mw_ops head_ops = {.head = head_fn};
    cel_mw o = {&options_ops, "o"}, a = {&any_ops, "a"}, h = {&head_ops, "h"};
    cel_mw_chain *c = cel_mw_chain_new(3, 0);
    assert_non_null(c);
    assert_int_equal(c->request_skip, CEL_M_ALL); /* no request phase: skipped */
    cel_mw_chain_push(c, &h);
    assert_int_equal(c->request_skip, CEL_M_ALL);
    cel_mw_chain_push(c, &o);
    assert_int_equal(c->request_skip, CEL_M_ALL & ~CEL_M_OPTIONS);
    cel_mw_chain_push(c, &a); /* every method */
    assert_int_equal(c->request_skip, 0);
    cel_mw_chain_free(c);
}

static void test_field_owner(void **state)
{
    (void)state;
    static const char *const framing[] = {"content-length", "Content-Length",   "connection",
                                          "keep-alive",     "proxy-connection", "transfer-encoding",
                                          "upgrade"};
    static const char *const server[] = {"server", "Date", "content-type"};
    static const char *const anyone[] = {"vary", "location", "content-lengths", "dat", "te"};
    for (size_t i = 0; i < sizeof(framing) / sizeof(framing[0]); i++)
        assert_int_equal(cel_http_field_owner(framing[i], strlen(framing[i])), CEL_HTTP_FRAMING);
    for (size_t i = 0; i < sizeof(server) / sizeof(server[0]); i++)
        assert_int_equal(cel_http_field_owner(server[i], strlen(server[i])), CEL_HTTP_SERVER);
    for (size_t i = 0; i < sizeof(anyone) / sizeof(anyone[0]); i++)
        assert_int_equal(cel_http_field_owner(anyone[i], strlen(anyone[i])), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_chains),
        cmocka_unit_test(test_request_skip),
        cmocka_unit_test(test_field_owner),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
