/*
 * Unit tests for the route tree. Linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc so the wrappers below can count
 * (and, on demand, fail) the router's allocations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

#include "../alloc_count.h" /* alloc_fail_at: the allocation number that fails */

static int tag[32]; /* distinct data pointers for routes */
#define D(i) ((void *)&tag[i])

static void add_ok(cel_router *r, const char *pattern, unsigned methods, void *data)
{
    char err[256] = "";
    void *conflict = NULL;
    int rc = cel_router_add(r, pattern, methods, data, &conflict, err, sizeof(err));
    if (rc != 0)
        print_error("adding %s: rc %d, %s\n", pattern, rc, err);
    assert_int_equal(rc, 0);
}

static int lookup(const cel_router *r, const char *path, unsigned method, cel_route_match *m)
{
    return cel_router_lookup(r, path, strlen(path), method, m);
}

static void expect_found(const cel_router *r, const char *path, unsigned method, void *data,
                         cel_route_match *m)
{
    int rc = lookup(r, path, method, m);
    if (rc != CEL_ROUTE_FOUND)
        print_error("looking up %s: rc %d\n", path, rc);
    assert_int_equal(rc, CEL_ROUTE_FOUND);
    assert_ptr_equal(m->data, data);
    assert_null(m->allow);
}

static void expect_not_found(const cel_router *r, const char *path, unsigned method)
{
    cel_route_match m;
    int rc = lookup(r, path, method, &m);
    if (rc != CEL_ROUTE_NOT_FOUND)
        print_error("looking up %s: rc %d\n", path, rc);
    assert_int_equal(rc, CEL_ROUTE_NOT_FOUND);
    assert_null(m.data);
    assert_null(m.allow);
    assert_int_equal(m.nparams, 0);
}

static void expect_405(const cel_router *r, const char *path, unsigned method, const char *allow)
{
    cel_route_match m;
    assert_int_equal(lookup(r, path, method, &m), CEL_ROUTE_BAD_METHOD);
    assert_null(m.data);
    assert_non_null(m.allow);
    assert_string_equal(m.allow, allow);
}

/* Param I of M is NAME with raw value VALUE taken from PATH. */
static void expect_param(const cel_route_match *m, const char *path, unsigned i, const char *name,
                         const char *value)
{
    assert_true(i < m->nparams);
    assert_string_equal(m->params[i].name, name);
    assert_int_equal(m->params[i].len, strlen(value));
    assert_true(m->params[i].off + m->params[i].len <= strlen(path));
    assert_memory_equal(path + m->params[i].off, value, strlen(value));
}

static void test_method_bit(void **state)
{
    static const char *const names[] = {"GET",   "HEAD",    "POST",    "PUT",  "DELETE",
                                        "PATCH", "OPTIONS", "CONNECT", "TRACE"};
    (void)state;
    for (unsigned i = 0; i < CEL_ARRAY_LEN(names); i++)
        assert_int_equal(cel_method_bit(names[i], strlen(names[i])), 1u << i);
    assert_int_equal(cel_method_bit("GET", 3), CEL_M_GET);
    assert_int_equal(cel_method_bit("TRACE", 5), CEL_M_TRACE);
    assert_int_equal(cel_method_bit("get", 3), 0);
    assert_int_equal(cel_method_bit("GETS", 4), 0);
    assert_int_equal(cel_method_bit("GETS", 3), CEL_M_GET);
    assert_int_equal(cel_method_bit("GE", 2), 0);
    assert_int_equal(cel_method_bit("", 0), 0);
    assert_int_equal(cel_method_bit("PROPFIND", 8), 0);
}

static void test_root(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/", CEL_M_GET, D(0));
    expect_found(r, "/", CEL_M_GET, D(0), &m);
    assert_int_equal(m.nparams, 0);
    expect_not_found(r, "", CEL_M_GET);
    expect_not_found(r, "//", CEL_M_GET);
    expect_not_found(r, "/a", CEL_M_GET);
    expect_not_found(r, "*", CEL_M_OPTIONS);
    expect_not_found(r, "a", CEL_M_GET);
    cel_router_free(r);
}

static void test_trailing_slash_and_empty_segments(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/users/:id", CEL_M_GET, D(0));
    add_ok(r, "/a/b", CEL_M_GET, D(1));
    add_ok(r, "/c/", CEL_M_GET, D(2));
    add_ok(r, "/d//e", CEL_M_GET, D(3));

    expect_found(r, "/users/1", CEL_M_GET, D(0), &m);
    expect_not_found(r, "/users/1/", CEL_M_GET);
    expect_not_found(r, "/users/", CEL_M_GET); /* a param is never empty */
    expect_not_found(r, "/users", CEL_M_GET);
    expect_found(r, "/a/b", CEL_M_GET, D(1), &m);
    expect_not_found(r, "/a//b", CEL_M_GET);
    expect_not_found(r, "/a/b/", CEL_M_GET);
    expect_not_found(r, "//a/b", CEL_M_GET);
    expect_found(r, "/c/", CEL_M_GET, D(2), &m);
    expect_not_found(r, "/c", CEL_M_GET);
    expect_found(r, "/d//e", CEL_M_GET, D(3), &m);
    expect_not_found(r, "/d/e", CEL_M_GET);
    expect_not_found(r, "/d///e", CEL_M_GET);
    cel_router_free(r);
}

static void test_precedence(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    /* added lowest precedence first so insertion order cannot explain the result */
    add_ok(r, "/a/*rest", CEL_M_GET, D(2));
    add_ok(r, "/a/:x", CEL_M_GET, D(1));
    add_ok(r, "/a/b", CEL_M_GET, D(0));

    expect_found(r, "/a/b", CEL_M_GET, D(0), &m);
    assert_int_equal(m.nparams, 0);
    expect_found(r, "/a/c", CEL_M_GET, D(1), &m);
    assert_int_equal(m.nparams, 1);
    expect_param(&m, "/a/c", 0, "x", "c");
    expect_found(r, "/a/c/d", CEL_M_GET, D(2), &m);
    expect_param(&m, "/a/c/d", 0, "rest", "c/d");
    expect_found(r, "/a/b/", CEL_M_GET, D(2), &m);
    expect_param(&m, "/a/b/", 0, "rest", "b/");
    expect_found(r, "/a/", CEL_M_GET, D(2), &m);
    expect_param(&m, "/a/", 0, "rest", "");
    expect_not_found(r, "/a", CEL_M_GET);
    cel_router_free(r);
}

static void test_backtracking(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/a/b/d", CEL_M_GET, D(0));
    add_ok(r, "/a/:x/c", CEL_M_GET, D(1));
    add_ok(r, "/:p/:q/e", CEL_M_GET, D(2));
    add_ok(r, "/*all", CEL_M_GET, D(3));

    expect_found(r, "/a/b/d", CEL_M_GET, D(0), &m);
    expect_found(r, "/a/b/c", CEL_M_GET, D(1), &m);
    assert_int_equal(m.nparams, 1);
    expect_param(&m, "/a/b/c", 0, "x", "b");
    /* literal a, then param b, then "e" fails; falls back to the root param */
    expect_found(r, "/a/b/e", CEL_M_GET, D(2), &m);
    assert_int_equal(m.nparams, 2);
    expect_param(&m, "/a/b/e", 0, "p", "a");
    expect_param(&m, "/a/b/e", 1, "q", "b");
    /* every specific branch fails; the params pushed on the way must be gone */
    expect_found(r, "/a/b/f", CEL_M_GET, D(3), &m);
    assert_int_equal(m.nparams, 1);
    expect_param(&m, "/a/b/f", 0, "all", "a/b/f");
    expect_found(r, "/", CEL_M_GET, D(3), &m);
    expect_param(&m, "/", 0, "all", "");
    cel_router_free(r);
}

/* Nodes with one way on are walked in a loop, the first node with a choice
 * hands over to the backtracking walk; a later route can turn a one-way node
 * into a choice, deep in the tree. */
static void test_straight_then_choice(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/s/t/:p/x", CEL_M_GET, D(0));
    expect_found(r, "/s/t/1/x", CEL_M_GET, D(0), &m);
    expect_param(&m, "/s/t/1/x", 0, "p", "1");
    expect_not_found(r, "/s/t/1/y", CEL_M_GET);
    expect_not_found(r, "/s/t/1", CEL_M_GET);
    expect_not_found(r, "/s/t//x", CEL_M_GET); /* a param is never empty */
    /* the node after :p gets a param beside its literal */
    add_ok(r, "/s/t/:p/:q", CEL_M_GET, D(1));
    expect_found(r, "/s/t/1/x", CEL_M_GET, D(0), &m);
    expect_found(r, "/s/t/1/y", CEL_M_GET, D(1), &m);
    assert_int_equal(m.nparams, 2);
    expect_param(&m, "/s/t/1/y", 1, "q", "y");
    /* and /s gets a wildcard: /s/t/1/x/z fails down the tree, then matches it */
    add_ok(r, "/s/*rest", CEL_M_GET, D(2));
    expect_found(r, "/s/t/1/x/z", CEL_M_GET, D(2), &m);
    assert_int_equal(m.nparams, 1);
    expect_param(&m, "/s/t/1/x/z", 0, "rest", "t/1/x/z");
    expect_found(r, "/s/t/1/y", CEL_M_GET, D(1), &m);
    /* 405 from a leaf reached on the straight walk */
    expect_405(r, "/s/t/1/x", CEL_M_POST, "GET");
    cel_router_free(r);
}

static void test_param_offsets(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    const char *p;
    (void)state;
    add_ok(r, "/users/:id/posts/:pid", CEL_M_GET, D(0));
    add_ok(r, "/u/:id/*path", CEL_M_GET, D(1));

    p = "/users/42/posts/7";
    expect_found(r, p, CEL_M_GET, D(0), &m);
    assert_int_equal(m.nparams, 2);
    assert_int_equal(m.params[0].off, 7);
    assert_int_equal(m.params[0].len, 2);
    assert_int_equal(m.params[1].off, 16);
    assert_int_equal(m.params[1].len, 1);
    expect_param(&m, p, 0, "id", "42");
    expect_param(&m, p, 1, "pid", "7");

    /* values stay raw: percent escapes are the handler's business */
    p = "/users/a%20b/posts/%2F";
    expect_found(r, p, CEL_M_GET, D(0), &m);
    expect_param(&m, p, 0, "id", "a%20b");
    expect_param(&m, p, 1, "pid", "%2F");

    p = "/u/7/x/y.txt";
    expect_found(r, p, CEL_M_GET, D(1), &m);
    assert_int_equal(m.nparams, 2);
    expect_param(&m, p, 0, "id", "7");
    expect_param(&m, p, 1, "path", "x/y.txt");
    /* a node with a wildcard alone takes the rest as it stands, empty too */
    p = "/u/7/";
    expect_found(r, p, CEL_M_GET, D(1), &m);
    expect_param(&m, p, 1, "path", "");
    p = "/u/7/a//b/%2e/";
    expect_found(r, p, CEL_M_GET, D(1), &m);
    expect_param(&m, p, 1, "path", "a//b/%2e/");
    expect_405(r, "/u/7/x", CEL_M_POST, "GET");
    expect_not_found(r, "/u/7", CEL_M_GET);
    cel_router_free(r);
}

/* Segments of every length from 1 to 24, so that each '/' falls at each place
 * of the word scan (the 8-octet words, the 4-to-7-octet tail as two halves,
 * the last few octets one by one), under a param and under a literal. */
static void test_segment_lengths(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/:a/:b", CEL_M_GET, D(0));
    add_ok(r, "/:a/lit/:b", CEL_M_GET, D(1));
    char p[80], x[32], y[32];
    for (size_t i = 1; i <= 24; i++) {
        for (size_t j = 1; j <= 24; j++) {
            memset(x, 'x', i);
            x[i] = '\0';
            memset(y, 'y', j);
            y[j] = '\0';
            snprintf(p, sizeof(p), "/%s/%s", x, y);
            expect_found(r, p, CEL_M_GET, D(0), &m);
            expect_param(&m, p, 0, "a", x);
            expect_param(&m, p, 1, "b", y);
            snprintf(p, sizeof(p), "/%s/lit/%s", x, y);
            expect_found(r, p, CEL_M_GET, D(1), &m);
            expect_param(&m, p, 0, "a", x);
            expect_param(&m, p, 1, "b", y);
            snprintf(p, sizeof(p), "/%s/%s/", x, y); /* a trailing slash: not the pattern */
            lookup(r, p, CEL_M_GET, &m);
            assert_true(m.data != D(0));
        }
    }
    cel_router_free(r);
}

/* Literals that begin alike, or are prefixes of each other: a literal is a
 * whole segment, never a prefix of one; spelled with escapes it still counts. */
static void test_literal_prefixes(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/u", CEL_M_GET, D(0));
    add_ok(r, "/user", CEL_M_GET, D(1));
    add_ok(r, "/users", CEL_M_GET, D(2));
    add_ok(r, "/users/x", CEL_M_GET, D(3));
    add_ok(r, "/uzers", CEL_M_GET, D(4));
    expect_found(r, "/u", CEL_M_GET, D(0), &m);
    expect_found(r, "/user", CEL_M_GET, D(1), &m);
    expect_found(r, "/users", CEL_M_GET, D(2), &m);
    expect_found(r, "/users/x", CEL_M_GET, D(3), &m);
    expect_found(r, "/uzers", CEL_M_GET, D(4), &m);
    expect_found(r, "/%75sers", CEL_M_GET, D(2), &m);
    expect_found(r, "/user%73", CEL_M_GET, D(2), &m);
    expect_found(r, "/users/%78", CEL_M_GET, D(3), &m);
    expect_not_found(r, "/us", CEL_M_GET);
    expect_not_found(r, "/userss", CEL_M_GET);
    expect_not_found(r, "/users/xy", CEL_M_GET);
    expect_not_found(r, "/users/", CEL_M_GET);
    expect_not_found(r, "/user/x", CEL_M_GET);
    expect_not_found(r, "/", CEL_M_GET);
    expect_not_found(r, "//users", CEL_M_GET);
    cel_router_free(r);
}

static void test_wildcard(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/assets/*rest", CEL_M_GET, D(0));
    expect_found(r, "/assets/a/b.png", CEL_M_GET, D(0), &m);
    assert_int_equal(m.nparams, 1);
    assert_int_equal(m.params[0].off, 8);
    expect_param(&m, "/assets/a/b.png", 0, "rest", "a/b.png");
    expect_found(r, "/assets/", CEL_M_GET, D(0), &m);
    assert_int_equal(m.params[0].off, 8);
    assert_int_equal(m.params[0].len, 0);
    expect_found(r, "/assets//", CEL_M_GET, D(0), &m);
    expect_param(&m, "/assets//", 0, "rest", "/");
    expect_not_found(r, "/assets", CEL_M_GET);
    expect_not_found(r, "/assetsx/a", CEL_M_GET);
    expect_not_found(r, "/", CEL_M_GET);
    cel_router_free(r);
}

static void test_percent_decoded_literals(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    const char *p;
    (void)state;
    add_ok(r, "/caf\xc3\xa9", CEL_M_GET, D(0));
    add_ok(r, "/a/b", CEL_M_GET, D(1));
    add_ok(r, "/lit%20", CEL_M_GET, D(2));
    add_ok(r, "/x/A", CEL_M_GET, D(3));
    add_ok(r, "/y/%zz", CEL_M_GET, D(4));
    add_ok(r, "/q/:v", CEL_M_GET, D(5));

    expect_found(r, "/caf%C3%A9", CEL_M_GET, D(0), &m);
    expect_found(r, "/caf%c3%a9", CEL_M_GET, D(0), &m);
    expect_found(r, "/caf\xc3\xa9", CEL_M_GET, D(0), &m);
    expect_found(r, "/%63%61%66%C3%A9", CEL_M_GET, D(0), &m);
    expect_not_found(r, "/caf%C3", CEL_M_GET);
    expect_not_found(r, "/caf%C3%A9x", CEL_M_GET);
    /* the path is split on raw '/' first, so %2F never separates segments */
    expect_not_found(r, "/a%2Fb", CEL_M_GET);
    expect_not_found(r, "/a%2fb", CEL_M_GET);
    expect_found(r, "/%61/%62", CEL_M_GET, D(1), &m);
    /* pattern text is literal: "%20" in a pattern is three characters */
    expect_not_found(r, "/lit%20", CEL_M_GET);
    expect_found(r, "/lit%2520", CEL_M_GET, D(2), &m);
    expect_not_found(r, "/lit%2020", CEL_M_GET);
    expect_found(r, "/x/%41", CEL_M_GET, D(3), &m);
    expect_not_found(r, "/x/%4", CEL_M_GET);
    /* a malformed escape stays as it is */
    expect_found(r, "/y/%zz", CEL_M_GET, D(4), &m);
    expect_found(r, "/y/%25zz", CEL_M_GET, D(4), &m);
    p = "/q/a%2Fb";
    expect_found(r, p, CEL_M_GET, D(5), &m);
    expect_param(&m, p, 0, "v", "a%2Fb");
    cel_router_free(r);
}

static void test_405_allow(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/x", CEL_M_POST | CEL_M_GET, D(0));
    add_ok(r, "/y", CEL_M_TRACE | CEL_M_DELETE | CEL_M_HEAD, D(1));
    add_ok(r, "/all", CEL_M_ALL, D(2));
    add_ok(r, "/one", CEL_M_OPTIONS, D(3));

    expect_found(r, "/x", CEL_M_GET, D(0), &m);
    expect_found(r, "/x", CEL_M_POST, D(0), &m);
    expect_405(r, "/x", CEL_M_PUT, "GET, POST");
    expect_405(r, "/x", 0, "GET, POST");
    expect_405(r, "/y", CEL_M_GET, "HEAD, DELETE, TRACE");
    expect_405(r, "/all", 0, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE");
    assert_true(sizeof("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE") <=
                CEL_ALLOW_MAX);
    expect_found(r, "/all", CEL_M_CONNECT, D(2), &m);
    expect_405(r, "/one", CEL_M_GET, "OPTIONS");
    /* a 405 names the route at the path, for its counters */
    assert_int_equal(lookup(r, "/y", CEL_M_GET, &m), CEL_ROUTE_BAD_METHOD);
    assert_ptr_equal(m.path_data, D(1));
    expect_not_found(r, "/z", CEL_M_GET);
    expect_not_found(r, "/z", 0);
    cel_router_free(r);
}

static void test_same_shape_disjoint_methods(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/r", CEL_M_DELETE, D(0));
    add_ok(r, "/r", CEL_M_GET | CEL_M_HEAD, D(1));
    add_ok(r, "/r/:id", CEL_M_GET, D(2));
    add_ok(r, "/r/:key", CEL_M_PUT, D(3));
    add_ok(r, "/f/*a", CEL_M_GET, D(4));
    add_ok(r, "/f/*b", CEL_M_POST, D(5));

    expect_found(r, "/r", CEL_M_DELETE, D(0), &m);
    expect_found(r, "/r", CEL_M_HEAD, D(1), &m);
    expect_found(r, "/r", CEL_M_GET, D(1), &m);
    expect_405(r, "/r", CEL_M_POST, "GET, HEAD, DELETE");
    assert_int_equal(lookup(r, "/r", CEL_M_POST, &m), CEL_ROUTE_BAD_METHOD);
    assert_ptr_equal(m.path_data, D(0)); /* the first route added there */

    /* one shape, but each route reports its own param names */
    expect_found(r, "/r/9", CEL_M_GET, D(2), &m);
    expect_param(&m, "/r/9", 0, "id", "9");
    expect_found(r, "/r/9", CEL_M_PUT, D(3), &m);
    expect_param(&m, "/r/9", 0, "key", "9");
    expect_405(r, "/r/9", CEL_M_PATCH, "GET, PUT");

    expect_found(r, "/f/x/y", CEL_M_GET, D(4), &m);
    expect_param(&m, "/f/x/y", 0, "a", "x/y");
    expect_found(r, "/f/x/y", CEL_M_POST, D(5), &m);
    expect_param(&m, "/f/x/y", 0, "b", "x/y");
    cel_router_free(r);
}

static void test_405_across_backtracking(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/a/b", CEL_M_POST, D(0));
    add_ok(r, "/a/:x", CEL_M_GET, D(1));
    add_ok(r, "/a/*w", CEL_M_PATCH, D(2));
    add_ok(r, "/k/:x", CEL_M_PUT, D(3));
    add_ok(r, "/k/*w", CEL_M_GET, D(4));

    expect_found(r, "/a/b", CEL_M_POST, D(0), &m);
    /* the literal leaf does not take GET, the param leaf does */
    expect_found(r, "/a/b", CEL_M_GET, D(1), &m);
    expect_param(&m, "/a/b", 0, "x", "b");
    expect_found(r, "/a/b", CEL_M_PATCH, D(2), &m);
    expect_param(&m, "/a/b", 0, "w", "b");
    /* nobody takes PUT: the allow of the highest-precedence leaf that matched */
    expect_405(r, "/a/b", CEL_M_PUT, "POST");
    expect_405(r, "/a/c", CEL_M_PUT, "GET");
    expect_405(r, "/a/", CEL_M_PUT, "PATCH");
    expect_found(r, "/k/z", CEL_M_GET, D(4), &m);
    expect_405(r, "/k/z", CEL_M_POST, "PUT");
    expect_405(r, "/k/z/z", CEL_M_POST, "GET");
    cel_router_free(r);
}

static void test_collisions(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    void *conflict = NULL;
    char err[128];
    (void)state;
    add_ok(r, "/a/:id", CEL_M_GET, D(0));
    assert_int_equal(
        cel_router_add(r, "/a/:other", CEL_M_GET | CEL_M_POST, D(1), &conflict, err, sizeof(err)),
        CEL_EEXIST);
    assert_ptr_equal(conflict, D(0));
    add_ok(r, "/a/:z", CEL_M_POST, D(2));
    conflict = NULL;
    assert_int_equal(
        cel_router_add(r, "/a/:q", CEL_M_POST | CEL_M_PUT, D(3), &conflict, err, sizeof(err)),
        CEL_EEXIST);
    assert_ptr_equal(conflict, D(2));
    /* a NULL conflict pointer is allowed */
    assert_int_equal(cel_router_add(r, "/a/:q", CEL_M_GET, D(3), NULL, NULL, 0), CEL_EEXIST);

    add_ok(r, "/w/*x", CEL_M_GET, D(4));
    conflict = NULL;
    assert_int_equal(cel_router_add(r, "/w/*y", CEL_M_ALL, D(5), &conflict, err, sizeof(err)),
                     CEL_EEXIST);
    assert_ptr_equal(conflict, D(4));
    /* different shapes never collide */
    add_ok(r, "/w/:x", CEL_M_GET, D(6));
    add_ok(r, "/w/x", CEL_M_GET, D(7));
    add_ok(r, "/a/:id/", CEL_M_GET, D(8));
    add_ok(r, "/", CEL_M_GET, D(9));
    assert_int_equal(cel_router_add(r, "/", CEL_M_GET, D(10), &conflict, err, sizeof(err)),
                     CEL_EEXIST);
    assert_ptr_equal(conflict, D(9));

    /* the refused routes changed nothing */
    expect_found(r, "/a/1", CEL_M_GET, D(0), &m);
    expect_param(&m, "/a/1", 0, "id", "1");
    expect_found(r, "/a/1", CEL_M_POST, D(2), &m);
    expect_405(r, "/a/1", CEL_M_PUT, "GET, POST");
    expect_405(r, "/w/x/y", CEL_M_POST, "GET");
    cel_router_free(r);
}

static void expect_einval(cel_router *r, const char *pattern, unsigned methods, const char *msg)
{
    char err[256] = "";
    void *conflict = D(31);
    assert_int_equal(cel_router_add(r, pattern, methods, D(0), &conflict, err, sizeof(err)),
                     CEL_EINVAL);
    assert_ptr_equal(conflict, D(31));
    if (msg)
        assert_string_equal(err, msg);
    else
        assert_true(err[0] != '\0');
}

static void test_bad_patterns(void **state)
{
    cel_router *r = cel_router_new();
    char deep[64 * 2 + 8], many[CEL_MAX_PARAMS * 8 + 8], err[8];
    (void)state;
    expect_einval(r, "", CEL_M_GET, "pattern \"\" does not start with '/'");
    expect_einval(r, "a/b", CEL_M_GET, "pattern \"a/b\" does not start with '/'");
    expect_einval(r, NULL, CEL_M_GET, NULL);
    expect_einval(r, "/a/:", CEL_M_GET, "pattern \"/a/:\" has a param with no name");
    expect_einval(r, "/:/a", CEL_M_GET, "pattern \"/:/a\" has a param with no name");
    expect_einval(r, "/a/*", CEL_M_GET, "pattern \"/a/*\" has a wildcard with no name");
    expect_einval(r, "/a/*r/b", CEL_M_GET, "pattern \"/a/*r/b\" has a wildcard that is not last");
    expect_einval(r, "/a/*r/", CEL_M_GET, "pattern \"/a/*r/\" has a wildcard that is not last");
    expect_einval(r, "/:a/:a", CEL_M_GET, "pattern \"/:a/:a\" uses the param name \"a\" twice");
    expect_einval(r, "/:a/x/*a", CEL_M_GET, NULL);
    expect_einval(r, "/a", 0, NULL);
    expect_einval(r, "/a", CEL_M_ALL + 1, NULL);

    /* 65 segments is one too many, 64 is fine */
    strcpy(deep, "");
    for (int i = 0; i < 65; i++)
        strcat(deep, "/x");
    expect_einval(r, deep, CEL_M_GET, NULL);
    deep[strlen(deep) - 2] = '\0';
    add_ok(r, deep, CEL_M_GET, D(1));

    strcpy(many, "");
    for (int i = 0; i <= CEL_MAX_PARAMS; i++)
        sprintf(many + strlen(many), "/:p%d", i);
    expect_einval(r, many, CEL_M_GET, NULL);

    /* a short or missing error buffer is fine */
    assert_int_equal(cel_router_add(r, "/:", CEL_M_GET, D(0), NULL, NULL, 0), CEL_EINVAL);
    assert_int_equal(cel_router_add(r, "/:", CEL_M_GET, D(0), NULL, err, sizeof(err)), CEL_EINVAL);
    assert_int_equal(strlen(err), sizeof(err) - 1);

    /* nothing was added by the refused patterns */
    expect_not_found(r, "/a/b", CEL_M_GET);
    expect_not_found(r, "/a", CEL_M_GET);
    expect_not_found(r, "/a/r/b", CEL_M_GET);
    cel_router_free(r);
}

static void test_special_only_at_segment_start(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    (void)state;
    add_ok(r, "/a:b", CEL_M_GET, D(0));
    add_ok(r, "/v1*", CEL_M_GET, D(1));
    add_ok(r, "/x/y:z/*w", CEL_M_GET, D(2));
    expect_found(r, "/a:b", CEL_M_GET, D(0), &m);
    assert_int_equal(m.nparams, 0);
    expect_not_found(r, "/ab", CEL_M_GET);
    expect_found(r, "/v1*", CEL_M_GET, D(1), &m);
    expect_not_found(r, "/v1/x", CEL_M_GET);
    expect_found(r, "/x/y:z/q", CEL_M_GET, D(2), &m);
    expect_param(&m, "/x/y:z/q", 0, "w", "q");
    cel_router_free(r);
}

static void test_max_params(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    char pat[CEL_MAX_PARAMS * 8 + 16], path[CEL_MAX_PARAMS * 8 + 16], name[8], val[8];
    (void)state;
    pat[0] = path[0] = '\0';
    for (int i = 0; i < CEL_MAX_PARAMS; i++) {
        sprintf(pat + strlen(pat), "/:p%d", i);
        sprintf(path + strlen(path), "/v%d", i);
    }
    add_ok(r, pat, CEL_M_GET, D(0));
    expect_found(r, path, CEL_M_GET, D(0), &m);
    assert_int_equal(m.nparams, CEL_MAX_PARAMS);
    for (unsigned i = 0; i < CEL_MAX_PARAMS; i++) {
        sprintf(name, "p%u", i);
        sprintf(val, "v%u", i);
        expect_param(&m, path, i, name, val);
    }

    /* a wildcard counts as one of the CEL_MAX_PARAMS */
    strcat(pat, "/*rest");
    expect_einval(r, pat, CEL_M_GET, NULL);
    strcpy(strrchr(pat, '/'), "");
    strcpy(strrchr(pat, '/'), "/*rest");
    add_ok(r, pat, CEL_M_POST, D(1));
    strcat(path, "/x/y");
    expect_found(r, path, CEL_M_POST, D(1), &m);
    assert_int_equal(m.nparams, CEL_MAX_PARAMS);
    expect_param(&m, path, CEL_MAX_PARAMS - 1, "rest", "v15/x/y");
    cel_router_free(r);
}

static void test_depth_and_long_paths(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    size_t n = 64 * 1024;
    char *path = malloc(n + 1), deep[64 * 2 + 2];
    (void)state;
    deep[0] = '\0';
    for (int i = 0; i < 64; i++)
        strcat(deep, "/x");
    add_ok(r, deep, CEL_M_GET, D(0));
    add_ok(r, "/x/:p", CEL_M_GET, D(1));
    add_ok(r, "/big/*rest", CEL_M_GET, D(2));

    expect_found(r, deep, CEL_M_GET, D(0), &m);
    strcat(deep, "/");
    expect_not_found(r, deep, CEL_M_GET);

    /* "/x/x/x/..." far past the tree depth */
    for (size_t i = 0; i < n; i += 2)
        memcpy(path + i, "/x", 2);
    path[n] = '\0';
    assert_int_equal(cel_router_lookup(r, path, n, CEL_M_GET, &m), CEL_ROUTE_NOT_FOUND);

    /* one huge segment, against literal children and a param */
    memcpy(path, "/x/", 3);
    memset(path + 3, '%', n - 3);
    assert_int_equal(cel_router_lookup(r, path, n, CEL_M_GET, &m), CEL_ROUTE_FOUND);
    assert_ptr_equal(m.data, D(1));
    assert_int_equal(m.params[0].len, n - 3);
    memset(path + 3, 'x', n - 3);
    assert_int_equal(cel_router_lookup(r, path, n, CEL_M_GET, &m), CEL_ROUTE_FOUND);
    assert_ptr_equal(m.data, D(1));

    memcpy(path, "/big/", 5);
    assert_int_equal(cel_router_lookup(r, path, n, CEL_M_GET, &m), CEL_ROUTE_FOUND);
    assert_ptr_equal(m.data, D(2));
    assert_int_equal(m.params[0].off, 5);
    assert_int_equal(m.params[0].len, n - 5);
    free(path);
    cel_router_free(r);
}

static void test_many_literal_children(void **state)
{
    cel_router *r = cel_router_new();
    cel_route_match m;
    char buf[32];
    (void)state;
    for (int i = 0; i < 32; i++) {
        sprintf(buf, "/item%d/%.*s", i, i % 5 + 1, "zzzzzzz");
        add_ok(r, buf, CEL_M_GET, D(i));
    }
    for (int i = 0; i < 32; i++) {
        sprintf(buf, "/item%d/%.*s", i, i % 5 + 1, "zzzzzzz");
        expect_found(r, buf, CEL_M_GET, D(i), &m);
        sprintf(buf, "/item%d/%.*s", i, i % 5 + 2, "zzzzzzz");
        expect_not_found(r, buf, CEL_M_GET);
    }
    expect_not_found(r, "/item32/z", CEL_M_GET);
    expect_not_found(r, "/item", CEL_M_GET);
    cel_router_free(r);
}

/* Past a handful of literal children a node finds them through a hash table:
 * at every count across the switch and the table's regrowths, every child is
 * found, spelled as it stands or percent-encoded, and nothing else is. */
static void test_hashed_literal_counts(void **state)
{
    static char data[70];
    char buf[32];
    cel_route_match m;
    (void)state;
    for (int n = 1; n <= 70; n++) {
        cel_router *r = cel_router_new();
        for (int i = 0; i < n; i++) {
            sprintf(buf, "/k/s%d", i);
            add_ok(r, buf, CEL_M_GET, &data[i]);
        }
        for (int i = 0; i < n; i++) {
            sprintf(buf, "/k/s%d", i);
            expect_found(r, buf, CEL_M_GET, &data[i], &m);
            sprintf(buf, "/k/%%73%d", i);
            expect_found(r, buf, CEL_M_GET, &data[i], &m);
        }
        sprintf(buf, "/k/s%d", n);
        expect_not_found(r, buf, CEL_M_GET);
        expect_not_found(r, "/k/s", CEL_M_GET);
        expect_not_found(r, "/k/", CEL_M_GET);
        expect_not_found(r, "/k/s0/", CEL_M_GET);
        expect_405(r, "/k/s0", CEL_M_POST, "GET");
        cel_router_free(r);
    }
}

/* A node with a table of literals and a param and a wildcard beside them keeps
 * literal > param > wildcard and backtracks out of a literal that leads nowhere. */
static void test_hashed_node_precedence(void **state)
{
    enum { N = 1000 };
    static char data[N];
    char buf[64], *longseg;
    cel_route_match m;
    void *conflict = NULL;
    const char *p;
    cel_router *r = cel_router_new();
    (void)state;
    for (int i = 0; i < N; i++) {
        sprintf(buf, "/api/r%d/items", i);
        add_ok(r, buf, CEL_M_GET, &data[i]);
    }
    add_ok(r, "/api/:id/detail", CEL_M_GET, D(0));
    add_ok(r, "/api/*rest", CEL_M_GET, D(1));
    add_ok(r, "/api/aA/x", CEL_M_GET, D(2));
    add_ok(r, "/api/a%41/x", CEL_M_GET, D(3));
    add_ok(r, "/api//items", CEL_M_GET, D(4));

    expect_found(r, "/api/r0/items", CEL_M_GET, &data[0], &m);
    expect_found(r, "/api/r999/items", CEL_M_GET, &data[999], &m);
    expect_found(r, "/api/r%35/items", CEL_M_GET, &data[5], &m);
    expect_found(r, "/api/%72%35%30%30/items", CEL_M_GET, &data[500], &m);
    p = "/api/r5/detail"; /* literal r5 has no "detail": back to the param */
    expect_found(r, p, CEL_M_GET, D(0), &m);
    expect_param(&m, p, 0, "id", "r5");
    p = "/api/r%35/detail";
    expect_found(r, p, CEL_M_GET, D(0), &m);
    expect_param(&m, p, 0, "id", "r%35");
    p = "/api/r5/other"; /* neither: the wildcard */
    expect_found(r, p, CEL_M_GET, D(1), &m);
    expect_param(&m, p, 0, "rest", "r5/other");
    p = "/api/r1000/items";
    expect_found(r, p, CEL_M_GET, D(1), &m);
    expect_param(&m, p, 0, "rest", "r1000/items");
    /* pattern text is literal, '%' included, among hashed siblings too */
    expect_found(r, "/api/aA/x", CEL_M_GET, D(2), &m);
    expect_found(r, "/api/a%41/x", CEL_M_GET, D(2), &m);
    expect_found(r, "/api/a%2541/x", CEL_M_GET, D(3), &m);
    expect_found(r, "/api//items", CEL_M_GET, D(4), &m);
    /* a segment longer than any literal goes to the param and wildcard */
    longseg = malloc(4096);
    assert_non_null(longseg);
    memset(longseg, 'r', 4096);
    memcpy(longseg, "/api/", 5);
    memcpy(longseg + 4096 - 7, "/detail", 7);
    assert_int_equal(cel_router_lookup(r, longseg, 4096, CEL_M_GET, &m), CEL_ROUTE_FOUND);
    assert_ptr_equal(m.data, D(0));
    free(longseg);
    /* the first reached leaf answers 405 */
    expect_405(r, "/api/r7/items", CEL_M_POST, "GET");
    /* collisions are found through the table */
    assert_int_equal(
        cel_router_add(r, "/api/r9/items", CEL_M_GET, D(5), &conflict, buf, sizeof(buf)),
        CEL_EEXIST);
    assert_ptr_equal(conflict, &data[9]);
    cel_router_free(r);
}

static void test_lookup_allocates_nothing(void **state)
{
    static const char *const paths[] = {
        "/",      "/users/42",       "/users/42/posts/7", "/caf%C3%A9",
        "/nope",  "/assets/a/b.png", "/users/1/",         "/a/b",
        "/a/c/d", "/x%2Fy",
    };
    cel_router *r = cel_router_new();
    cel_route_match m;
    unsigned long before;
    unsigned found = 0;
    (void)state;
    add_ok(r, "/", CEL_M_GET, D(0));
    add_ok(r, "/users/:id", CEL_M_GET | CEL_M_HEAD, D(1));
    add_ok(r, "/users/:id/posts/:pid", CEL_M_GET, D(2));
    add_ok(r, "/caf\xc3\xa9", CEL_M_GET, D(3));
    add_ok(r, "/assets/*rest", CEL_M_GET, D(4));
    add_ok(r, "/a/b", CEL_M_POST, D(5));
    add_ok(r, "/a/:x", CEL_M_PUT, D(6));
    add_ok(r, "/a/*w", CEL_M_GET, D(7));

    before = alloc_calls;
    for (unsigned i = 0; i < 10000; i++) {
        const char *p = paths[i % CEL_ARRAY_LEN(paths)];
        unsigned method = i % 3 == 0 ? CEL_M_POST : CEL_M_GET;
        found += lookup(r, p, method, &m) == CEL_ROUTE_FOUND;
    }
    assert_int_equal(alloc_calls, before);
    assert_true(found > 0);
    cel_router_free(r);
}

/* Fails each allocation in turn: add must report CEL_ENOMEM, leave the router
 * usable, and leak nothing (the sanitizer checks the last part). */
static void test_out_of_memory(void **state)
{
    static const char *const pats[] = {"/", "/a/b", "/a/:x", "/a/*w", "/c/:p/:q", "/a/b"};
    static const unsigned methods[] = {CEL_M_GET, CEL_M_GET, CEL_M_GET,
                                       CEL_M_GET, CEL_M_GET, CEL_M_POST};
    static const char *const paths[] = {"/", "/a/b", "/a/z", "/a/z/y", "/c/1/2", "/a/b"};
    cel_route_match m;
    int saw_enomem = 0;
    (void)state;
    for (unsigned long k = 1; k < 100; k++) {
        cel_router *r;
        alloc_calls = 0;
        alloc_fail_at = k;
        r = cel_router_new();
        if (r) {
            for (size_t i = 0; i < CEL_ARRAY_LEN(pats); i++) {
                int rc = cel_router_add(r, pats[i], methods[i], D(i), NULL, NULL, 0);
                if (rc == CEL_ENOMEM) {
                    saw_enomem = 1;
                    alloc_fail_at = 0;
                    /* the half-added route must be invisible */
                    rc = lookup(r, paths[i], methods[i], &m);
                    assert_true(rc != CEL_ROUTE_FOUND || m.data != D(i));
                    assert_true(rc != CEL_ROUTE_BAD_METHOD || m.allow[0] != '\0');
                    rc = cel_router_add(r, pats[i], methods[i], D(i), NULL, NULL, 0);
                }
                assert_int_equal(rc, 0);
            }
            alloc_fail_at = 0;
            expect_found(r, "/c/1/2", CEL_M_GET, D(4), &m);
            expect_param(&m, "/c/1/2", 1, "q", "2");
            expect_found(r, "/a/b", CEL_M_POST, D(5), &m);
            expect_found(r, "/a/z/y", CEL_M_GET, D(3), &m);
            cel_router_free(r);
        }
        alloc_fail_at = 0;
    }
    assert_true(saw_enomem);
}

static void test_pct_decode(void **state)
{
    char buf[64];
    size_t n;
    (void)state;
#define DEC(src, plus, want)                                                                       \
    do {                                                                                           \
        n = cel_pct_decode(buf, src, strlen(src), plus);                                           \
        assert_int_equal(n, strlen(want));                                                         \
        assert_memory_equal(buf, want, n);                                                         \
    } while (0)
    DEC("", 0, "");
    DEC("abc", 0, "abc");
    DEC("%41%62%7a%7A", 0, "Abzz");
    DEC("%e2%82%AC", 0, "\xe2\x82\xac");
    DEC("%", 0, "%");
    DEC("%4", 0, "%4");
    DEC("a%", 0, "a%");
    DEC("%zz", 0, "%zz");
    DEC("%4g", 0, "%4g");
    DEC("%g4", 0, "%g4");
    DEC("%%41", 0, "%A");
    DEC("%2541", 0, "%41");
    DEC("a+b", 0, "a+b");
    DEC("a+b", 1, "a b");
    DEC("%2B+%2b", 1, "+ +");
    DEC("+%", 1, " %");
#undef DEC
    /* NUL decodes like any other byte */
    n = cel_pct_decode(buf, "a%00b", 5, 0);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "a\0b", 3);
    /* n stops the input even mid-escape */
    n = cel_pct_decode(buf, "%41", 2, 0);
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "%4", 2);
    /* in place */
    strcpy(buf, "x%20y+%2Fz%4");
    n = cel_pct_decode(buf, buf, strlen(buf), 1);
    assert_int_equal(n, 8);
    assert_memory_equal(buf, "x y /z%4", 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_bit),
        cmocka_unit_test(test_root),
        cmocka_unit_test(test_trailing_slash_and_empty_segments),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_backtracking),
        cmocka_unit_test(test_straight_then_choice),
        cmocka_unit_test(test_param_offsets),
        cmocka_unit_test(test_segment_lengths),
        cmocka_unit_test(test_literal_prefixes),
        cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_percent_decoded_literals),
        cmocka_unit_test(test_405_allow),
        cmocka_unit_test(test_same_shape_disjoint_methods),
        cmocka_unit_test(test_405_across_backtracking),
        cmocka_unit_test(test_collisions),
        cmocka_unit_test(test_bad_patterns),
        cmocka_unit_test(test_special_only_at_segment_start),
        cmocka_unit_test(test_max_params),
        cmocka_unit_test(test_depth_and_long_paths),
        cmocka_unit_test(test_many_literal_children),
        cmocka_unit_test(test_hashed_literal_counts),
        cmocka_unit_test(test_hashed_node_precedence),
        cmocka_unit_test(test_lookup_allocates_nothing),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_pct_decode),
    };
    cmocka_set_message_output(CM_OUTPUT_TAP);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
