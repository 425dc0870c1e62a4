/*
 * Unit tests for configuration loading (config.c, conf_handlers.c): YAML files
 * written into a temporary directory, loaded with cel_config_load, and checked
 * field by field; every refused file must be refused with the exact
 * "FILE:LINE:COL: " of the offending node. Also cel_listen_parse, and the
 * README's key lists against the key tables of conf.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../alloc_count.h"
#include "arena.h"
#include "conf.h"
#include "config.h"
#include "handler.h"
#include "log.h"
#include "pool.h"
#include "request.h"
#include "router.h"

/* ---- temp dir and files ---- */

static char tmpdir[64];
static char errbuf[1024];

/* TMPDIR/REL in a rotating static buffer (a few may be live at once). */
static const char *in_tmp(const char *rel)
{
    static char bufs[4][PATH_MAX];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, PATH_MAX, "%s/%s", tmpdir, rel);
    return b;
}

static void write_bytes(const char *rel, const char *data, size_t len)
{
    FILE *f = fopen(in_tmp(rel), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_text(const char *rel, const char *text)
{
    write_bytes(rel, text, strlen(text));
}

/* Writes YAML to TMPDIR/REL and loads it. */
static cel_config *load_as(const char *rel, const char *yaml)
{
    write_text(rel, yaml);
    errbuf[0] = 0;
    cel_config *c = cel_config_load(in_tmp(rel), errbuf, sizeof(errbuf));
    if (!c)
        print_error("unexpected load error: %s\n", errbuf);
    return c;
}

static cel_config *load_ok(const char *yaml)
{
    cel_config *c = load_as("good.yaml", yaml);
    assert_non_null(c);
    return c;
}

static cel_config *load_okf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static cel_config *load_okf(const char *fmt, ...)
{
    char yaml[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(yaml, sizeof(yaml), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(yaml));
    return load_ok(yaml);
}

/* Asserts that YAML is refused with "PATH:LINE:COL: " and a message holding WORD
 * (and WORD2 when given). */
static void expect_error_at(const char *yaml, unsigned line, unsigned col, const char *word,
                            const char *word2)
{
    const char *path = in_tmp("bad.yaml");
    write_text("bad.yaml", yaml);
    memset(errbuf, 0, sizeof(errbuf));
    cel_config *c = cel_config_load(path, errbuf, sizeof(errbuf));
    if (c) {
        print_error("expected an error at %u:%u (%s), but the file loaded\n", line, col, word);
        cel_config_unref(c);
    }
    assert_null(c);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "%s:%u:%u: ", path, line, col);
    if (strncmp(errbuf, want, strlen(want)) != 0)
        print_error("expected prefix \"%s\"\n     got message \"%s\"\n", want, errbuf);
    assert_int_equal(strncmp(errbuf, want, strlen(want)), 0);
    if (!strstr(errbuf, word))
        print_error("message \"%s\" lacks \"%s\"\n", errbuf, word);
    assert_non_null(strstr(errbuf, word));
    if (word2) {
        if (!strstr(errbuf, word2))
            print_error("message \"%s\" lacks \"%s\"\n", errbuf, word2);
        assert_non_null(strstr(errbuf, word2));
    }
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/celerisd-test-config-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    /* A directory, for "file: sub" (not a regular file). */
    if (mkdir(in_tmp("sub"), 0700) || mkdir(in_tmp("www"), 0700))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- CPUs ---- */

static int avail_cpus(int *ids, int max)
{
    cpu_set_t set;
    int n = 0;
    assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
    for (int i = 0; i < CPU_SETSIZE && n < max; i++)
        if (CPU_ISSET(i, &set))
            ids[n++] = i;
    assert_true(n > 0);
    return n;
}

/* ---- listen helpers ---- */

static void check_v4(const cel_listen *l, const char *ip, unsigned port)
{
    const struct sockaddr_in *a = (const struct sockaddr_in *)&l->addr;
    assert_int_equal(a->sin_family, AF_INET);
    assert_int_equal(l->addrlen, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(a->sin_port), port);
    char buf[INET_ADDRSTRLEN];
    assert_non_null(inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
}

static void check_v6(const cel_listen *l, const char *ip, unsigned port)
{
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&l->addr;
    assert_int_equal(a->sin6_family, AF_INET6);
    assert_int_equal(l->addrlen, sizeof(struct sockaddr_in6));
    assert_int_equal(ntohs(a->sin6_port), port);
    char buf[INET6_ADDRSTRLEN];
    assert_non_null(inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
}

/* ---- calling handlers ---- */

typedef struct call {
    cel_pool *pool;
    cel_arena arena;
    char first[256];
    char path[256];
    cel_route_match m;
    cel_request req;
    cel_response res;
    const cel_route *route;
} call;

/* Looks PATH up for METHOD in CFG's router; asserts it is found. */
static const cel_route *find(const cel_config *cfg, const char *path, unsigned method,
                             cel_route_match *m)
{
    assert_non_null(cfg->router);
    int rc = cel_router_lookup(cfg->router, path, strlen(path), method, m);
    if (rc != CEL_ROUTE_FOUND)
        print_error("lookup %s (method %#x): %d\n", path, method, rc);
    assert_int_equal(rc, CEL_ROUTE_FOUND);
    assert_non_null(m->data);
    const cel_route *r = m->data;
    /* The data is one of this generation's routes. */
    assert_true(r >= cfg->routes && r < cfg->routes + cfg->nroutes);
    return r;
}

/* Routes PATH with GET and calls the handler with a request carrying the match's params. */
static void do_call(call *k, const cel_config *cfg, const char *path)
{
    memset(k, 0, sizeof(*k));
    snprintf(k->path, sizeof(k->path), "%s", path);
    k->route = find(cfg, k->path, CEL_M_GET, &k->m);
    k->pool = cel_pool_new(1 << 20);
    assert_non_null(k->pool);
    cel_arena_init(&k->arena, k->pool, k->first, sizeof(k->first));
    k->req.method_bit = CEL_M_GET;
    k->req.method = CEL_STR_LIT("GET");
    k->req.path = (cel_str){k->path, strlen(k->path)};
    k->req.params = k->m.params;
    k->req.nparams = k->m.nparams;
    k->res.status = -1;
    cel_handler *h = k->route->handler;
    assert_non_null(h);
    cel_exchange x = {.req = &k->req, .arena = &k->arena};
    assert_int_equal(h->handle(h, &x, &k->res), 0);
}

static void end_call(call *k)
{
    cel_arena_deinit(&k->arena);
    cel_pool_free(k->pool);
}

static void assert_str_is(cel_str s, const char *want)
{
    if (s.n != strlen(want) || memcmp(s.p, want, s.n) != 0)
        print_error("got \"%.*s\", want \"%s\"\n", (int)s.n, s.p ? s.p : "", want);
    assert_int_equal(s.n, strlen(want));
    assert_memory_equal(s.p, want, s.n);
}

static void assert_body_is(const cel_response *res, const char *want, size_t len)
{
    if (res->body_len != len || (len && memcmp(res->body, want, len) != 0))
        print_error("body \"%.*s\", want \"%.*s\"\n", (int)res->body_len,
                    res->body ? res->body : "", (int)len, want);
    assert_int_equal(res->body_len, len);
    if (len) {
        assert_non_null(res->body);
        assert_memory_equal(res->body, want, len);
    }
}

/* ================= good configurations ================= */

static const char one_route[] = "routes:\n"
                                "  - path: /\n"
                                "    static: {body: hi}\n";

static void test_defaults(void **state)
{
    (void)state;
    cel_config *c = load_ok(one_route);

    assert_string_equal(c->file, in_tmp("good.yaml"));
    assert_true(c->generation >= 1);
    assert_int_equal(atomic_load(&c->refs), 1);

    assert_int_equal(c->nlisten, 1);
    check_v4(&c->listen[0], "127.0.0.1", 8080);

    int ids[CPU_SETSIZE];
    int n = avail_cpus(ids, CPU_SETSIZE);
    assert_int_equal(c->nworkers, (unsigned)n);
    assert_non_null(c->cpus);
    for (int i = 0; i < n; i++)
        assert_int_equal(c->cpus[i], ids[i]);

    assert_int_equal(c->log_level, CEL_LOG_INFO);
    assert_int_equal(c->shutdown_timeout_ms, CEL_DEF_SHUTDOWN_TIMEOUT_MS);
    assert_int_equal(c->limits.max_concurrent_streams, CEL_DEF_MAX_CONCURRENT_STREAMS);
    assert_int_equal(c->limits.max_header_list_size, CEL_DEF_MAX_HEADER_LIST_SIZE);
    assert_int_equal(c->limits.max_request_body, CEL_DEF_MAX_REQUEST_BODY);
    assert_int_equal(c->limits.max_connections, CEL_DEF_MAX_CONNECTIONS);
    assert_int_equal(c->limits.idle_timeout_ms, CEL_DEF_IDLE_TIMEOUT_MS);
    assert_int_equal(c->limits.header_timeout_ms, CEL_DEF_HEADER_TIMEOUT_MS);
    assert_int_equal(c->limits.write_timeout_ms, CEL_DEF_WRITE_TIMEOUT_MS);
    assert_int_equal(c->limits.initial_window_size, CEL_DEF_INITIAL_WINDOW_SIZE);
    assert_int_equal(c->limits.body_window, CEL_DEF_BODY_WINDOW);
    assert_int_equal(c->limits.connection_window, CEL_DEF_CONNECTION_WINDOW);
    assert_int_equal(c->limits.max_output_buffer, CEL_DEF_MAX_OUTPUT_BUFFER);
    assert_int_equal(c->limits.tcp_notsent_lowat, CEL_DEF_TCP_NOTSENT_LOWAT);

    assert_int_equal(c->nroutes, 1);
    assert_string_equal(c->routes[0].pattern, "/");
    assert_int_equal(c->routes[0].methods, CEL_M_GET | CEL_M_HEAD);
    cel_config_unref(c);
}

/* A configuration without routes still has a (empty) router: dispatch looks
 * every request up in it. */
static void test_no_routes_empty_router(void **state)
{
    (void)state;
    static const char *const yamls[] = {
        "log: {level: warn}\n",
        "listen: \"8080\"\nroutes:\n",
        "workers: 1\n",
    };
    size_t missing = 0;
    for (size_t i = 0; i < CEL_ARRAY_LEN(yamls); i++) {
        cel_config *c = load_ok(yamls[i]);
        assert_int_equal(c->nroutes, 0);
        assert_true(c->nworkers >= 1);
        if (c->router) {
            cel_route_match m;
            assert_int_equal(cel_router_lookup(c->router, "/", 1, CEL_M_GET, &m),
                             CEL_ROUTE_NOT_FOUND);
        } else {
            print_error("cfg->router is NULL for \"%s\"\n", yamls[i]);
            missing++;
        }
        cel_config_unref(c);
    }
    assert_int_equal(missing, 0);
}

static void test_limits_parsed(void **state)
{
    (void)state;
    cel_config *c = load_ok("limits:\n"
                            "  max_concurrent_streams: 7\n"
                            "  max_header_list_size: 64k\n"
                            "  max_request_body: 1m\n"
                            "  max_connections: 42\n"
                            "  idle_timeout: 250ms\n"
                            "  header_timeout: 10s\n"
                            "  write_timeout: 2m\n"
                            "  initial_window_size: 1000\n"
                            "  connection_window: 1m\n"
                            "  body_window: 256k\n"
                            "  max_output_buffer: 20000\n"
                            "  tcp_notsent_lowat: 0\n"
                            "shutdown_timeout: 3\n"
                            "log:\n"
                            "  level: debug\n");
    assert_int_equal(c->limits.max_concurrent_streams, 7);
    assert_int_equal(c->limits.max_header_list_size, 65536);
    assert_int_equal(c->limits.max_request_body, 1048576);
    assert_int_equal(c->limits.max_connections, 42);
    assert_int_equal(c->limits.idle_timeout_ms, 250);
    assert_int_equal(c->limits.header_timeout_ms, 10000);
    assert_int_equal(c->limits.write_timeout_ms, 120000);
    assert_int_equal(c->limits.initial_window_size, 1000);
    assert_int_equal(c->limits.connection_window, 1048576);
    assert_int_equal(c->limits.body_window, 262144);
    assert_int_equal(c->limits.max_output_buffer, 20000);
    assert_int_equal(c->limits.tcp_notsent_lowat, 0);
    assert_int_equal(c->shutdown_timeout_ms, 3000);
    assert_int_equal(c->log_level, CEL_LOG_DEBUG);
    cel_config_unref(c);
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t bytes;
    } cases[] = {
        {"0", 0},
        {"1234", 1234},
        {"64k", 64 * 1024},
        {"2K", 2048},
        {"1m", 1024 * 1024},
        {"3M", 3 * 1024 * 1024},
        {"1g", (size_t)1 << 30},
        {"\"5k\"", 5 * 1024},
    };
    for (size_t i = 0; i < CEL_ARRAY_LEN(cases); i++) {
        cel_config *c = load_okf("limits: {max_request_body: %s}\n", cases[i].text);
        if (c->limits.max_request_body != cases[i].bytes)
            print_error("size %s\n", cases[i].text);
        assert_int_equal(c->limits.max_request_body, cases[i].bytes);
        /* The other limits keep their defaults. */
        assert_int_equal(c->limits.max_output_buffer, CEL_DEF_MAX_OUTPUT_BUFFER);
        cel_config_unref(c);
    }
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint32_t ms;
    } cases[] = {
        {"250ms", 250}, {"10s", 10000}, {"2m", 120000}, {"1h", 3600000},
        {"7", 7000},    {"1.5", 1500},  {"1ms", 1},     {"\"30s\"", 30000},
    };
    for (size_t i = 0; i < CEL_ARRAY_LEN(cases); i++) {
        cel_config *c = load_okf("limits: {idle_timeout: %s}\nshutdown_timeout: %s\n",
                                 cases[i].text, cases[i].text);
        if (c->limits.idle_timeout_ms != cases[i].ms)
            print_error("duration %s\n", cases[i].text);
        assert_int_equal(c->limits.idle_timeout_ms, cases[i].ms);
        assert_int_equal(c->shutdown_timeout_ms, cases[i].ms);
        assert_int_equal(c->limits.write_timeout_ms, CEL_DEF_WRITE_TIMEOUT_MS);
        cel_config_unref(c);
    }
}

/* ---- the README's key lists against the key tables (conf.h) ---- */

/* The rows of README's table under HEADING: for each, its first and second
 * cells. Returns the number of rows (at most MAX). */
typedef struct readme_row {
    char keys[256], defaults[256];
} readme_row;

static size_t readme_table(const char *heading, readme_row *rows, size_t max)
{
    FILE *f = fopen(CEL_SOURCE_ROOT "/README.md", "r");
    if (!f)
        fail_msg("cannot open %s/README.md", CEL_SOURCE_ROOT);
    char line[4096];
    int in = 0;
    size_t n = 0;
    while (fgets(line, sizeof(line), f)) {
        if (!in) {
            in = strncmp(line, heading, strlen(heading)) == 0 && line[strlen(heading)] == '\n';
            continue;
        }
        if (line[0] == '#')
            break;
        if (strncmp(line, "| `", 3) != 0)
            continue; /* prose, the header row, the |---| row */
        char *cell2 = strchr(line + 1, '|');
        char *end2 = cell2 ? strchr(cell2 + 1, '|') : NULL;
        assert_non_null(end2);
        if (n == max)
            fail_msg("more than %zu rows under %s", max, heading);
        snprintf(rows[n].keys, sizeof(rows[n].keys), "%.*s", (int)(cell2 - line - 1), line + 1);
        snprintf(rows[n].defaults, sizeof(rows[n].defaults), "%.*s", (int)(end2 - cell2 - 1),
                 cell2 + 1);
        n++;
    }
    fclose(f);
    if (!in)
        fail_msg("README.md has no \"%s\" section", heading);
    return n;
}

/* The next `name` of a cell ("`a`, `b`") into OUT; NULL after the last. */
static const char *next_key(const char *p, char *out, size_t len)
{
    const char *open = strchr(p, '`');
    const char *close = open ? strchr(open + 1, '`') : NULL;
    if (!close)
        return NULL;
    snprintf(out, len, "%.*s", (int)(close - open - 1), open + 1);
    return close + 1;
}

/* The next ", "-separated item of a cell, trimmed, into OUT. */
static const char *next_item(const char *p, char *out, size_t len)
{
    while (*p == ' ')
        p++;
    if (!*p)
        return NULL;
    const char *end = strchr(p, ',');
    size_t k = end ? (size_t)(end - p) : strlen(p);
    while (k && p[k - 1] == ' ')
        k--;
    snprintf(out, len, "%.*s", (int)k, p);
    return end ? end + 1 : p + strlen(p);
}

/* A default as the README writes it: 64k, 1m, 60s, 250ms, 128. */
static void format_default(const conf_limit *d, char *out, size_t len)
{
    unsigned long long v = d->def;
    if (d->kind == CONF_DURATION)
        snprintf(out, len, v % 1000 ? "%llums" : "%llus", v % 1000 ? v : v / 1000);
    else if (d->kind == CONF_SIZE && v && v % (1u << 20) == 0)
        snprintf(out, len, "%llum", v >> 20);
    else if (d->kind == CONF_SIZE && v && v % 1024 == 0)
        snprintf(out, len, "%lluk", v >> 10);
    else
        snprintf(out, len, "%llu", v);
}

/* Every key of conf_limits is a row of README's Limits table with its default,
 * and every row names a key of the table: a limit added on one side only fails. */
static void test_readme_limits(void **state)
{
    (void)state;
    readme_row rows[64];
    size_t nrows = readme_table("### Limits", rows, CEL_ARRAY_LEN(rows));
    int seen[64] = {0};
    assert_true(conf_nlimits <= CEL_ARRAY_LEN(seen));
    for (size_t r = 0; r < nrows; r++) {
        const char *kp = rows[r].keys, *dp = rows[r].defaults;
        char key[64], def[64], want[64];
        while ((kp = next_key(kp, key, sizeof(key)))) {
            if (!(dp = next_item(dp, def, sizeof(def))))
                fail_msg("README Limits: `%s` has no default of its own in \"%s\"", key,
                         rows[r].defaults);
            size_t j = 0;
            while (j < conf_nlimits && strcmp(conf_limits[j].key, key) != 0)
                j++;
            if (j == conf_nlimits)
                fail_msg("README Limits lists `%s`, which is not a key of conf_limits", key);
            format_default(&conf_limits[j], want, sizeof(want));
            if (strcmp(def, want) != 0)
                fail_msg("README Limits: `%s` defaults to %s in the code, not %s", key, want, def);
            seen[j] = 1;
        }
    }
    for (size_t j = 0; j < conf_nlimits; j++) {
        if (!seen[j])
            fail_msg("limits.%s is missing from README's Limits table", conf_limits[j].key);
        /* limit_store writes a uint32_t or a size_t, nothing else */
        assert_true(conf_limits[j].width == sizeof(uint32_t) ||
                    conf_limits[j].width == sizeof(size_t));
    }
}

static int in_keys(const conf_key *keys, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].key, key) == 0)
            return (int)i;
    return -1;
}

/* README's Top level table against conf_top_keys, its `log.X` rows against
 * conf_log_keys, both ways. */
static void test_readme_top_level(void **state)
{
    (void)state;
    readme_row rows[64];
    size_t nrows = readme_table("### Top level", rows, CEL_ARRAY_LEN(rows));
    int top_seen[32] = {0}, log_seen[32] = {0};
    assert_true(conf_ntop_keys <= 32 && conf_nlog_keys <= 32);
    for (size_t r = 0; r < nrows; r++) {
        char key[64];
        const char *kp = rows[r].keys;
        while ((kp = next_key(kp, key, sizeof(key)))) {
            char *dot = strchr(key, '.');
            if (dot)
                *dot = 0;
            int i = in_keys(conf_top_keys, conf_ntop_keys, key);
            if (i < 0)
                fail_msg("README Top level lists `%s`, which is not a key of conf_top_keys", key);
            top_seen[i] = 1;
            if (!dot)
                continue;
            if (strcmp(key, "log") != 0)
                fail_msg("README Top level: `%s.%s`: only log's keys are listed so", key, dot + 1);
            int l = in_keys(conf_log_keys, conf_nlog_keys, dot + 1);
            if (l < 0)
                fail_msg("README Top level lists `log.%s`, which is not a key of conf_log_keys",
                         dot + 1);
            log_seen[l] = 1;
        }
    }
    for (size_t i = 0; i < conf_ntop_keys; i++)
        if (!top_seen[i])
            fail_msg("`%s` is missing from README's Top level table", conf_top_keys[i].key);
    for (size_t i = 0; i < conf_nlog_keys; i++)
        if (!log_seen[i])
            fail_msg("`log.%s` is missing from README's Top level table", conf_log_keys[i].key);
}

/* README's Routes section names every handler type, in its "Exactly one
 * handler per route" line and in a heading of its own, and no other. */
static void test_readme_handler_types(void **state)
{
    (void)state;
    FILE *f = fopen(CEL_SOURCE_ROOT "/README.md", "r");
    assert_non_null(f);
    char line[4096], key[64];
    int listed[32] = {0}, headed[32] = {0}, found = 0, in = 0;
    assert_true(conf_nhandler_types <= 32);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "## ", 3) == 0 || strncmp(line, "### ", 4) == 0)
            in = strcmp(line, "### Routes\n") == 0;
        if (!in)
            continue;
        int list = strncmp(line, "- Exactly one handler per route:", 32) == 0;
        int heading = strncmp(line, "#### `", 6) == 0;
        if (!list && !heading)
            continue;
        found |= list;
        const char *p = line;
        while ((p = next_key(p, key, sizeof(key)))) {
            size_t i = 0;
            while (i < conf_nhandler_types && strcmp(conf_handler_types[i].key, key) != 0)
                i++;
            if (i == conf_nhandler_types)
                fail_msg("README names handler type `%s`, which conf_handler_types has not", key);
            *(list ? &listed[i] : &headed[i]) = 1;
        }
    }
    fclose(f);
    assert_true(found);
    for (size_t i = 0; i < conf_nhandler_types; i++)
        if (!listed[i] || !headed[i])
            fail_msg("handler type `%s` is missing from README's Routes (%s)",
                     conf_handler_types[i].key, listed[i] ? "its #### section" : "the list");
}

/* README's Middleware section has a #### heading for every middleware kind
 * of conf_mw_kinds, and none for a kind the table has not. */
static void test_readme_middleware(void **state)
{
    (void)state;
    FILE *f = fopen(CEL_SOURCE_ROOT "/README.md", "r");
    assert_non_null(f);
    char line[4096], key[64];
    int headed[32] = {0}, in = 0;
    assert_true(conf_nmw_kinds <= 32);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "## ", 3) == 0 || strncmp(line, "### ", 4) == 0)
            in = strcmp(line, "### Middleware\n") == 0;
        if (!in || strncmp(line, "#### `", 6) != 0)
            continue;
        const char *p = line;
        while ((p = next_key(p, key, sizeof(key)))) {
            size_t i = 0;
            while (i < conf_nmw_kinds && strcmp(conf_mw_kinds[i].key, key) != 0)
                i++;
            if (i == conf_nmw_kinds)
                fail_msg("README names middleware `%s`, which conf_mw_kinds has not", key);
            headed[i] = 1;
        }
    }
    fclose(f);
    for (size_t i = 0; i < conf_nmw_kinds; i++)
        if (!headed[i])
            fail_msg("middleware `%s` has no #### section in README's Middleware",
                     conf_mw_kinds[i].key);
}

static void test_log_levels(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int level;
    } cases[] = {
        {"debug", CEL_LOG_DEBUG},
        {"info", CEL_LOG_INFO},
        {"warn", CEL_LOG_WARN},
        {"error", CEL_LOG_ERROR},
    };
    for (size_t i = 0; i < CEL_ARRAY_LEN(cases); i++) {
        cel_config *c = load_okf("log: {level: %s}\n", cases[i].name);
        assert_int_equal(c->log_level, cases[i].level);
        cel_config_unref(c);
    }
}

static void test_workers_number_and_auto(void **state)
{
    (void)state;
    int ids[CPU_SETSIZE];
    int n = avail_cpus(ids, CPU_SETSIZE);

    cel_config *c = load_ok("workers: 3\n");
    assert_int_equal(c->nworkers, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c->cpus[i], ids[i % n]);
    cel_config_unref(c);

    c = load_ok("workers: 1\n");
    assert_int_equal(c->nworkers, 1);
    assert_int_equal(c->cpus[0], ids[0]);
    cel_config_unref(c);

    c = load_ok("workers: auto\n");
    assert_int_equal(c->nworkers, (unsigned)n);
    for (int i = 0; i < n; i++)
        assert_int_equal(c->cpus[i], ids[i]);
    cel_config_unref(c);
}

static void test_workers_cpu_list(void **state)
{
    (void)state;
    int ids[CPU_SETSIZE];
    int n = avail_cpus(ids, CPU_SETSIZE);

    /* The last available CPU, then the first (order is kept), then the last again. */
    cel_config *c = load_okf("workers: [%d, %d, %d]\n", ids[n - 1], ids[0], ids[n - 1]);
    assert_int_equal(c->nworkers, 3);
    assert_int_equal(c->cpus[0], ids[n - 1]);
    assert_int_equal(c->cpus[1], ids[0]);
    assert_int_equal(c->cpus[2], ids[n - 1]);
    cel_config_unref(c);

    /* A CPU this process may not use is refused at that item. */
    int missing = -1;
    for (int id = 0; id < CPU_SETSIZE && missing < 0; id++) {
        int used = 0;
        for (int j = 0; j < n; j++)
            used |= ids[j] == id;
        if (!used)
            missing = id;
    }
    if (missing < 0)
        skip();
    char yaml[128], word[64];
    snprintf(yaml, sizeof(yaml), "workers: [%d, %d]\n", ids[0], missing);
    snprintf(word, sizeof(word), "CPU %d is not available", missing);
    int len0 = snprintf(NULL, 0, "%d", ids[0]);
    /* "workers: [" is 10 columns, then "ID, " */
    expect_error_at(yaml, 1, (unsigned)(11 + len0 + 2), word, NULL);
}

static void test_listen_forms(void **state)
{
    (void)state;
    cel_config *c = load_ok("listen: \"[::1]:8080\"\n");
    assert_int_equal(c->nlisten, 1);
    check_v6(&c->listen[0], "::1", 8080);
    assert_string_equal(c->listen[0].text, "[::1]:8080");
    assert_int_equal(c->listen[0].loc.line, 1);
    assert_int_equal(c->listen[0].loc.col, 9);
    cel_config_unref(c);

    c = load_ok("listen: \"*:80\"\n");
    assert_int_equal(c->nlisten, 1);
    check_v4(&c->listen[0], "0.0.0.0", 80);
    cel_config_unref(c);

    c = load_ok("listen: 8080\n");
    assert_int_equal(c->nlisten, 1);
    check_v4(&c->listen[0], "0.0.0.0", 8080);
    assert_string_equal(c->listen[0].text, "8080");
    cel_config_unref(c);

    c = load_ok("listen:\n"
                "  - 10.1.2.3:443\n"
                "  - \"[::1]:8080\"\n"
                "  - \"*:80\"\n"
                "  - \"8081\"\n");
    assert_int_equal(c->nlisten, 4);
    check_v4(&c->listen[0], "10.1.2.3", 443);
    check_v6(&c->listen[1], "::1", 8080);
    check_v4(&c->listen[2], "0.0.0.0", 80);
    check_v4(&c->listen[3], "0.0.0.0", 8081);
    assert_string_equal(c->listen[1].text, "[::1]:8080");
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(c->listen[i].loc.line, i + 2);
        assert_int_equal(c->listen[i].loc.col, 5);
    }
    cel_config_unref(c);
}

/* pid_file is relative to the config file's directory; cel_config_check
 * (celerisd -t) loads the same file without creating the access log. */
static void test_pid_file_and_check(void **state)
{
    (void)state;
    char want[PATH_MAX];
    cel_config *c = load_ok("pid_file: run/d.pid\n");
    snprintf(want, sizeof(want), "%s/run/d.pid", tmpdir);
    assert_string_equal(c->pid_file, want);
    cel_config_unref(c);
    c = load_ok("pid_file: /run/celerisd/celerisd.pid\n");
    assert_string_equal(c->pid_file, "/run/celerisd/celerisd.pid");
    cel_config_unref(c);

    const char *log = in_tmp("check-access.log");
    unlink(log);
    write_text("check.yaml", "log: { access: { path: check-access.log } }\n");
    c = cel_config_check(in_tmp("check.yaml"), errbuf, sizeof(errbuf));
    assert_non_null(c);
    assert_non_null(c->accesslog);
    cel_config_unref(c);
    assert_int_equal(access(log, F_OK), -1);
    c = cel_config_load(in_tmp("check.yaml"), errbuf, sizeof(errbuf));
    assert_non_null(c);
    cel_config_unref(c);
    assert_int_equal(access(log, F_OK), 0);
    unlink(log);
}

static void test_listen_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int family;
        const char *ip;
        unsigned port;
    } good[] = {
        {"1.2.3.4:80", AF_INET, "1.2.3.4", 80}, {"127.0.0.1:8080", AF_INET, "127.0.0.1", 8080},
        {"*:65535", AF_INET, "0.0.0.0", 65535}, {"1", AF_INET, "0.0.0.0", 1},
        {"8080", AF_INET, "0.0.0.0", 8080},     {"[::1]:443", AF_INET6, "::1", 443},
        {"[::]:80", AF_INET6, "::", 80},        {"[fe80::1:2]:9000", AF_INET6, "fe80::1:2", 9000},
    };
    for (size_t i = 0; i < CEL_ARRAY_LEN(good); i++) {
        cel_listen l;
        char err[256] = "";
        int rc = cel_listen_parse(good[i].s, &l, err, sizeof(err));
        if (rc)
            print_error("\"%s\": %s\n", good[i].s, err);
        assert_int_equal(rc, 0);
        assert_string_equal(l.text, good[i].s);
        if (good[i].family == AF_INET)
            check_v4(&l, good[i].ip, good[i].port);
        else
            check_v6(&l, good[i].ip, good[i].port);
    }

    static const struct {
        const char *s;
        const char *word;
    } bad[] = {
        {"", "bad listen address"},
        {"http", "bad listen address"},
        {"1.2.3.4", "bad listen address"},
        {"1.2.3.4:", "bad listen address"},
        {"1.2.3.4:80x", "bad listen address"},
        {"1.2.3.4:-1", "bad listen address"},
        {"1.2.3.4:+80", "bad listen address"},
        {"300.1.1.1:80", "bad listen address"},
        {"localhost:80", "bad listen address"},
        {"::1:80", "bad listen address"},
        {"[::1]80", "bad listen address"},
        {"[::1]:", "bad listen address"},
        {"[::1:80", "bad listen address"},
        {"[1.2.3.4]:80", "bad listen address"},
        {"1.2.3.4:0", "out of range"},
        {"1.2.3.4:65536", "out of range"},
        {"[::1]:99999", "out of range"},
        {"0", "out of range"},
    };
    for (size_t i = 0; i < CEL_ARRAY_LEN(bad); i++) {
        cel_listen l;
        char err[256] = "";
        int rc = cel_listen_parse(bad[i].s, &l, err, sizeof(err));
        if (rc != CEL_EINVAL || !strstr(err, bad[i].word))
            print_error("\"%s\": rc %d, \"%s\" (want \"%s\")\n", bad[i].s, rc, err, bad[i].word);
        assert_int_equal(rc, CEL_EINVAL);
        assert_non_null(strstr(err, bad[i].word));
        char quoted[80];
        snprintf(quoted, sizeof(quoted), "\"%s\"", bad[i].s);
        assert_non_null(strstr(err, quoted));
    }
}

/* cel_listen_id over many addresses: one id each, dense in the order first
 * seen, the same when asked again after the table grew many times; a length
 * past the address's storage has none. */
static void test_listen_ids(void **state)
{
    (void)state;
    enum { N = 3000 };
    static unsigned first[N];
    struct sockaddr_storage a;
    unsigned base = 0;
    for (int round = 0; round < 2; round++)
        for (unsigned i = 0; i < N; i++) {
            char text[64];
            cel_listen l;
            char err[256];
            if (i % 3 == 0)
                snprintf(text, sizeof(text), "10.%u.%u.1:%u", i >> 8 & 255, i & 255, 1000 + i);
            else if (i % 3 == 1)
                snprintf(text, sizeof(text), "[fd00::%x]:%u", i, 2000 + i % 7);
            else
                snprintf(text, sizeof(text), "unix:/run/celeris-test/%u.sock", i);
            assert_int_equal(cel_listen_parse(text, &l, err, sizeof(err)), 0);
            unsigned id = cel_listen_id(&l.addr, l.addrlen);
            if (round == 0) {
                if (i == 0)
                    base = id;
                assert_int_equal(id, base + i); /* a new one: the next id */
                first[i] = id;
            } else {
                assert_int_equal(id, first[i]);
            }
        }
    /* a unix path that is a prefix of another, shorter by its length alone */
    cel_listen l1, l2;
    char err[256];
    assert_int_equal(cel_listen_parse("unix:/run/celeris-test/1", &l1, err, sizeof(err)), 0);
    assert_int_equal(cel_listen_parse("unix:/run/celeris-test/1.sock", &l2, err, sizeof(err)), 0);
    assert_int_not_equal(cel_listen_id(&l1.addr, l1.addrlen), cel_listen_id(&l2.addr, l2.addrlen));
    memset(&a, 0, sizeof(a));
    assert_int_equal(cel_listen_id(&a, (socklen_t)sizeof(a) + 1), 0);
}

static void test_routes_methods_lookup(void **state)
{
    (void)state;
    cel_config *c = load_ok("routes:\n"
                            "  - path: /a\n"
                            "    static: {body: a}\n"
                            "  - path: /b\n"
                            "    methods: [GET, POST]\n"
                            "    static: {body: b}\n"
                            "  - path: /c\n"
                            "    methods: POST\n"
                            "    static: {body: c}\n"
                            "  - path: /c\n"
                            "    methods: [PUT, DELETE]\n"
                            "    json: {template: {c: 2}}\n"
                            "  - path: /users/:id\n"
                            "    static: {body: u}\n");
    assert_int_equal(c->nroutes, 5);
    static const struct {
        const char *pattern;
        unsigned methods;
        unsigned line;
        const char *type;
    } want[] = {
        {"/a", CEL_M_GET | CEL_M_HEAD, 2, "static"},
        {"/b", CEL_M_GET | CEL_M_HEAD | CEL_M_POST, 4, "static"},
        {"/c", CEL_M_POST, 7, "static"},
        {"/c", CEL_M_PUT | CEL_M_DELETE, 10, "json"},
        {"/users/:id", CEL_M_GET | CEL_M_HEAD, 13, "static"},
    };
    for (size_t i = 0; i < CEL_ARRAY_LEN(want); i++) {
        assert_string_equal(c->routes[i].pattern, want[i].pattern);
        assert_int_equal(c->routes[i].methods, want[i].methods);
        /* A route's location is its path value. */
        assert_int_equal(c->routes[i].loc.line, want[i].line);
        assert_int_equal(c->routes[i].loc.col, 11);
        assert_string_equal(c->routes[i].handler->type, want[i].type);
    }

    cel_route_match m;
    assert_ptr_equal(find(c, "/a", CEL_M_GET, &m), &c->routes[0]);
    assert_ptr_equal(find(c, "/a", CEL_M_HEAD, &m), &c->routes[0]);
    assert_ptr_equal(find(c, "/b", CEL_M_HEAD, &m), &c->routes[1]);
    assert_ptr_equal(find(c, "/b", CEL_M_POST, &m), &c->routes[1]);
    assert_ptr_equal(find(c, "/c", CEL_M_POST, &m), &c->routes[2]);
    assert_ptr_equal(find(c, "/c", CEL_M_PUT, &m), &c->routes[3]);
    assert_ptr_equal(find(c, "/c", CEL_M_DELETE, &m), &c->routes[3]);
    assert_ptr_equal(find(c, "/users/42", CEL_M_GET, &m), &c->routes[4]);
    assert_int_equal(m.nparams, 1);
    assert_string_equal(m.params[0].name, "id");

    assert_int_equal(cel_router_lookup(c->router, "/a", 2, CEL_M_POST, &m), CEL_ROUTE_BAD_METHOD);
    assert_non_null(strstr(m.allow, "GET"));
    assert_non_null(strstr(m.allow, "HEAD"));
    assert_null(strstr(m.allow, "POST"));
    /* POST only does not imply HEAD. */
    assert_int_equal(cel_router_lookup(c->router, "/c", 2, CEL_M_GET, &m), CEL_ROUTE_BAD_METHOD);
    assert_null(strstr(m.allow, "GET"));
    assert_non_null(strstr(m.allow, "POST"));
    assert_non_null(strstr(m.allow, "PUT"));
    assert_non_null(strstr(m.allow, "DELETE"));
    assert_int_equal(cel_router_lookup(c->router, "/d", 2, CEL_M_GET, &m), CEL_ROUTE_NOT_FOUND);
    assert_int_equal(cel_router_lookup(c->router, "/users/42/x", 11, CEL_M_GET, &m),
                     CEL_ROUTE_NOT_FOUND);
    cel_config_unref(c);
}

static void test_static_body_response(void **state)
{
    (void)state;
    cel_config *c = load_ok("routes:\n"
                            "  - path: /bench\n"
                            "    static: { body: \"OK\" }\n"
                            "  - path: /made\n"
                            "    methods: [POST]\n"
                            "    static:\n"
                            "      status: 201\n"
                            "      content_type: application/x-thing\n"
                            "      headers: { Cache-Control: \"max-age=60\", x-a: b }\n"
                            "      body: \"line1\\nline2\"\n");
    call k;
    do_call(&k, c, "/bench");
    assert_int_equal(k.res.status, 200);
    assert_str_is(k.res.content_type, "text/plain");
    assert_int_equal(k.res.nheaders, 0);
    assert_body_is(&k.res, "OK", 2);
    assert_int_equal(k.res.body_in_gen, 1);
    end_call(&k);

    /* /made is POST only: call its handler directly. */
    cel_route_match m;
    const cel_route *r = find(c, "/made", CEL_M_POST, &m);
    assert_ptr_equal(r, &c->routes[1]);
    cel_request req;
    cel_response res;
    memset(&req, 0, sizeof(req));
    memset(&res, 0, sizeof(res));
    cel_pool *pool = cel_pool_new(1 << 20);
    assert_non_null(pool);
    char first[128];
    cel_arena a;
    cel_arena_init(&a, pool, first, sizeof(first));
    cel_exchange x = {.req = &req, .arena = &a};
    assert_int_equal(r->handler->handle(r->handler, &x, &res), 0);
    assert_int_equal(res.status, 201);
    assert_str_is(res.content_type, "application/x-thing");
    assert_int_equal(res.nheaders, 2);
    assert_str_is(res.headers[0].name, "cache-control");
    assert_str_is(res.headers[0].value, "max-age=60");
    assert_str_is(res.headers[1].name, "x-a");
    assert_str_is(res.headers[1].value, "b");
    assert_body_is(&res, "line1\nline2", 11);
    assert_int_equal(res.body_in_gen, 1);
    cel_arena_deinit(&a);
    cel_pool_free(pool);
    cel_config_unref(c);
}

static void test_static_file_relative(void **state)
{
    (void)state;
    static const char data[] = "<svg>\0binary\xff</svg>\n";
    write_bytes("www/logo.svg", data, sizeof(data) - 1);
    write_bytes("www/empty", "", 0);
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    /* Make sure a path relative to the working directory would not find it. */
    assert_int_equal(chdir("/"), 0);
    cel_config *c = load_as("conf.yaml", "routes:\n"
                                         "  - path: /assets/*rest\n"
                                         "    static:\n"
                                         "      file: www/logo.svg\n"
                                         "      headers: {cache-control: \"max-age=60\"}\n"
                                         "  - path: /typed\n"
                                         "    static: {file: www/logo.svg, content_type: "
                                         "image/svg+xml}\n"
                                         "  - path: /empty\n"
                                         "    static: {file: www/empty}\n");
    assert_int_equal(chdir(cwd), 0);
    assert_non_null(c);

    call k;
    do_call(&k, c, "/assets/x/y.svg");
    assert_ptr_equal(k.route, &c->routes[0]);
    assert_int_equal(k.res.status, 200);
    assert_str_is(k.res.content_type, "application/octet-stream");
    assert_int_equal(k.res.nheaders, 1);
    assert_str_is(k.res.headers[0].name, "cache-control");
    assert_str_is(k.res.headers[0].value, "max-age=60");
    assert_body_is(&k.res, data, sizeof(data) - 1);
    assert_int_equal(k.res.body_in_gen, 1);
    end_call(&k);

    do_call(&k, c, "/typed");
    assert_str_is(k.res.content_type, "image/svg+xml");
    assert_body_is(&k.res, data, sizeof(data) - 1);
    end_call(&k);

    do_call(&k, c, "/empty");
    assert_int_equal(k.res.status, 200);
    assert_int_equal(k.res.body_len, 0);
    end_call(&k);
    cel_config_unref(c);
}

static void test_static_file_absolute_and_relative_config(void **state)
{
    (void)state;
    write_text("www/abs.txt", "absolute\n");
    write_text("www/rel.txt", "relative\n");
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));

    /* An absolute file name is used as is. */
    cel_config *c = load_okf("routes:\n"
                             "  - path: /abs\n"
                             "    static: {file: \"%s\"}\n",
                             in_tmp("www/abs.txt"));
    call k;
    do_call(&k, c, "/abs");
    assert_body_is(&k.res, "absolute\n", 9);
    end_call(&k);
    cel_config_unref(c);

    /* A config file named without a directory: files are relative to ".". */
    write_text("www/rel.yaml", "routes:\n"
                               "  - path: /rel\n"
                               "    static: {file: rel.txt}\n");
    assert_int_equal(chdir(in_tmp("www")), 0);
    c = cel_config_load("rel.yaml", errbuf, sizeof(errbuf));
    assert_int_equal(chdir(cwd), 0);
    if (!c)
        print_error("%s\n", errbuf);
    assert_non_null(c);
    assert_string_equal(c->file, "rel.yaml");
    do_call(&k, c, "/rel");
    assert_body_is(&k.res, "relative\n", 9);
    end_call(&k);
    cel_config_unref(c);
}

static void test_json_constant(void **state)
{
    (void)state;
    cel_config *c = load_ok("routes:\n"
                            "  - path: /json\n"
                            "    json: { template: { message: \"Hello, World!\" } }\n"
                            "  - path: /types\n"
                            "    json:\n"
                            "      status: 202\n"
                            "      headers: {x-kind: typed}\n"
                            "      template:\n"
                            "        count: 3\n"
                            "        neg: -2\n"
                            "        ok: true\n"
                            "        no: false\n"
                            "        n: null\n"
                            "        s: \"3\"\n"
                            "        word: plain words\n"
                            "        list: [1, 2.5, x]\n"
                            "  - path: /text\n"
                            "    json: {template: '{\"a\": [1, 2], \"b\": {\"c\": \"d\"}}', "
                            "content_type: application/vnd.x+json}\n");
    call k;
    do_call(&k, c, "/json");
    assert_int_equal(k.res.status, 200);
    assert_str_is(k.res.content_type, "application/json");
    static const char hello[] = "{\"message\":\"Hello, World!\"}";
    assert_body_is(&k.res, hello, sizeof(hello) - 1);
    assert_int_equal(k.res.body_in_gen, 1);
    end_call(&k);

    do_call(&k, c, "/types");
    assert_int_equal(k.res.status, 202);
    assert_int_equal(k.res.nheaders, 1);
    assert_str_is(k.res.headers[0].name, "x-kind");
    assert_str_is(k.res.headers[0].value, "typed");
    static const char typed[] = "{\"count\":3,\"neg\":-2,\"ok\":true,\"no\":false,\"n\":null,"
                                "\"s\":\"3\",\"word\":\"plain words\",\"list\":[1,2.5,\"x\"]}";
    assert_body_is(&k.res, typed, sizeof(typed) - 1);
    end_call(&k);

    do_call(&k, c, "/text");
    assert_str_is(k.res.content_type, "application/vnd.x+json");
    static const char text[] = "{\"a\":[1,2],\"b\":{\"c\":\"d\"}}";
    assert_body_is(&k.res, text, sizeof(text) - 1);
    end_call(&k);
    cel_config_unref(c);
}

static void test_json_params(void **state)
{
    (void)state;
    cel_config *c = load_ok("routes:\n"
                            "  - path: /users/:id/posts/:postId\n"
                            "    methods: [GET]\n"
                            "    json: { template: { user: \"{{param.id}}\", "
                            "post: \"{{param.postId}}\", m: \"{{method}}\" } }\n"
                            "  - path: /files/*rest\n"
                            "    json: {template: '[\"{{param.rest}}\", \"{{path}}\"]'}\n");
    assert_int_equal(c->routes[0].methods, CEL_M_GET | CEL_M_HEAD);
    call k;
    do_call(&k, c, "/users/42/posts/a%20%22b");
    assert_ptr_equal(k.route, &c->routes[0]);
    assert_int_equal(k.res.status, 200);
    assert_str_is(k.res.content_type, "application/json");
    static const char want[] = "{\"user\":\"42\",\"post\":\"a \\\"b\",\"m\":\"GET\"}";
    assert_body_is(&k.res, want, sizeof(want) - 1);
    assert_int_equal(k.res.body_in_gen, 0);
    end_call(&k);

    do_call(&k, c, "/files/a/b.txt");
    assert_ptr_equal(k.route, &c->routes[1]);
    static const char want2[] = "[\"a/b.txt\",\"/files/a/b.txt\"]";
    assert_body_is(&k.res, want2, sizeof(want2) - 1);
    end_call(&k);
    cel_config_unref(c);
}

/* Header values with placeholders are rendered per request into the arena;
 * the others stay the generation's constants. */
static void test_header_placeholders(void **state)
{
    (void)state;
    cel_config *cfg = load_ok("routes:\n"
                              "  - path: /go/*rest\n"
                              "    static:\n"
                              "      status: 302\n"
                              "      body: \"\"\n"
                              "      headers: {location: \"https://e.com/{{param.rest}}\", "
                              "x-m: \"{{method}}\", x-c: \"c\"}\n"
                              "  - path: /j/:id\n"
                              "    json: {template: [1], headers: {x-id: \"<{{param.id}}>\"}}\n"
                              "  - path: /k\n"
                              "    static: {body: k, headers: {x-c: \"{ not a placeholder }\"}}\n");
    call k;
    do_call(&k, cfg, "/go/a/b%0D%0Ax:%20y%00");
    assert_int_equal(k.res.status, 302);
    assert_int_equal(k.res.nheaders, 3);
    assert_str_is(k.res.headers[0].name, "location");
    assert_str_is(k.res.headers[0].value, "https://e.com/a/b%0D%0Ax: y%00");
    assert_str_is(k.res.headers[1].value, "GET");
    assert_str_is(k.res.headers[2].value, "c");
    end_call(&k);

    do_call(&k, cfg, "/j/42");
    assert_int_equal(k.res.nheaders, 1);
    assert_str_is(k.res.headers[0].value, "<42>");
    assert_body_is(&k.res, "[1]", 3);
    end_call(&k);

    /* a value past the first guess takes the second, exactly sized render */
    char path[256] = "/j/", want[256] = "<";
    for (int i = 0; i < 80; i++) {
        strcat(path, "%01");
        strcat(want, "%01");
    }
    strcat(want, ">");
    do_call(&k, cfg, path);
    assert_str_is(k.res.headers[0].value, want);
    end_call(&k);

    do_call(&k, cfg, "/k");
    assert_str_is(k.res.headers[0].value, "{ not a placeholder }");
    end_call(&k);
    cel_config_unref(cfg);
}

static void test_refcount_and_publish(void **state)
{
    (void)state;
    cel_config *a = load_ok(one_route);
    cel_config *b = load_ok(one_route);
    assert_true(b->generation > a->generation);
    assert_int_equal(atomic_load(&a->refs), 1);

    cel_config_ref(a);
    assert_int_equal(atomic_load(&a->refs), 2);
    cel_config_unref(a);
    assert_int_equal(atomic_load(&a->refs), 1);
    /* Still whole after the unref. */
    call k;
    do_call(&k, a, "/");
    assert_body_is(&k.res, "hi", 2);
    end_call(&k);

    cel_config_publish(a);
    assert_int_equal(atomic_load(&a->refs), 2);
    assert_int_equal(cel_config_published_generation(), a->generation);
    cel_config *got = cel_config_acquire();
    assert_ptr_equal(got, a);
    assert_int_equal(atomic_load(&a->refs), 3);
    cel_config_unref(got);

    /* Publishing B drops the published reference to A. */
    cel_config_publish(b);
    assert_int_equal(atomic_load(&a->refs), 1);
    assert_int_equal(atomic_load(&b->refs), 2);
    assert_int_equal(cel_config_published_generation(), b->generation);
    got = cel_config_acquire();
    assert_ptr_equal(got, b);
    cel_config_unref(got);

    cel_config_publish(NULL);
    assert_int_equal(cel_config_published_generation(), 0);
    assert_null(cel_config_acquire());
    assert_int_equal(atomic_load(&b->refs), 1);
    cel_config_unref(b);
    cel_config_unref(a); /* the last references: ASan/valgrind see any leak */
}

/* ================= errors without a node ================= */

static void test_missing_file(void **state)
{
    (void)state;
    const char *path = in_tmp("does-not-exist.yaml");
    errbuf[0] = 0;
    assert_null(cel_config_load(path, errbuf, sizeof(errbuf)));
    char want[PATH_MAX + 32];
    snprintf(want, sizeof(want), "%s: ", path);
    assert_int_equal(strncmp(errbuf, want, strlen(want)), 0);
    assert_non_null(strstr(errbuf, "cannot open"));
    assert_non_null(strstr(errbuf, "No such file"));
}

static void test_empty_file(void **state)
{
    (void)state;
    expect_error_at("", 1, 1, "empty", NULL);
    expect_error_at("# only a comment\n\n", 1, 1, "empty", NULL);
}

/* A million "[" once took minutes in libyaml before any limit applied. */
static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 1000000;
    char *yaml = malloc(2 * depth + 16);
    assert_non_null(yaml);
    memcpy(yaml, "routes: ", 8);
    memset(yaml + 8, '[', depth);
    memset(yaml + 8 + depth, ']', depth);
    strcpy(yaml + 8 + 2 * depth, "\n");
    /* the root mapping is level 1: the 100th "[" is level 101 */
    expect_error_at(yaml, 1, 9 + 99, "nest deeper than 100 levels", "depth limit");
    free(yaml);

    /* at the limit, the usual errors apply */
    char ok[256] = "routes: ";
    memset(ok + 8, '[', 99);
    memset(ok + 8 + 99, ']', 99);
    strcpy(ok + 8 + 198, "\n");
    expect_error_at(ok, 1, 10, "must be a mapping", NULL);
}

static void test_directory(void **state)
{
    (void)state;
    errbuf[0] = 0;
    assert_null(cel_config_load(tmpdir, errbuf, sizeof(errbuf)));
    if (!strstr(errbuf, "is a directory"))
        print_error("got \"%s\"\n", errbuf);
    assert_non_null(strstr(errbuf, "is a directory"));
    assert_int_equal(strncmp(errbuf, tmpdir, strlen(tmpdir)), 0);
}

static void test_error_truncated(void **state)
{
    (void)state;
    write_text("bad.yaml", "bogus: 1\n");
    char small[24];
    memset(small, 'X', sizeof(small));
    assert_null(cel_config_load(in_tmp("bad.yaml"), small, sizeof(small)));
    assert_true(memchr(small, 0, sizeof(small)) != NULL);
    assert_int_equal(strncmp(small, tmpdir, strlen(small)), 0);
}

/* ================= errors at a node (table) ================= */

typedef struct err_case {
    const char *name;
    const char *yaml;
    unsigned line, col;
    const char *word, *word2;
} err_case;

static const err_case err_cases[] = {
    /* unknown keys: at the key */
    {"unknown_key_top", "listen: \"8080\"\nbogus: 1\n", 2, 1, "unknown key \"bogus\"",
     "the top level"},
    {"unknown_key_route",
     "routes:\n"
     "  - path: /a\n"
     "    stat: {body: x}\n",
     3, 5, "unknown key \"stat\"", "route"},
    {"unknown_key_static",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x, bdy: y}\n",
     3, 23, "unknown key \"bdy\"", "static"},
    {"unknown_key_json",
     "routes:\n"
     "  - path: /a\n"
     "    json:\n"
     "      template: {a: 1}\n"
     "      tmpl: 2\n",
     5, 7, "unknown key \"tmpl\"", "json"},
    {"unknown_key_limits", "limits:\n  max_streams: 5\n", 2, 3, "unknown key \"max_streams\"",
     "limits"},
    {"unknown_key_log", "log:\n  lvl: debug\n", 2, 3, "unknown key \"lvl\"", "log"},
    {"unknown_middleware", "middleware:\n  - hedaers: {}\n", 2, 5, "unknown key \"hedaers\"",
     "headers"},
    {"unknown_key_headers", "middleware:\n  - headers: {set: {a: b}, sett: {}}\n", 2, 28,
     "unknown key \"sett\"", "set, add, remove"},
    {"middleware_two_kinds", "middleware:\n  - {headers: {}, request_idd: {}}\n", 2, 19,
     "names one middleware", NULL},
    {"middleware_not_list", "middleware: {headers: {}}\n", 1, 13, "middleware must be a list",
     NULL},
    {"middleware_item_scalar", "middleware:\n  - headers\n", 2, 5, "a mapping with one key", NULL},
    {"headers_framing", "middleware:\n  - headers: {set: {Content-Length: \"1\"}}\n", 2, 21,
     "cannot be set here", "framing"},
    {"headers_bad_name", "middleware:\n  - headers: {remove: [\"a b\"]}\n", 2, 24,
     "not allowed in a name", NULL},
    {"headers_bad_value", "middleware:\n  - headers: {add: {x: \"a\\x01\"}}\n", 2, 24,
     "control character", NULL},
    {"route_middleware_unknown",
     "routes:\n"
     "  - path: /a\n"
     "    middleware: [{nope: {}}]\n"
     "    static: {body: x}\n",
     3, 19, "unknown key \"nope\"", "middleware"},

    /* wrong types: at the value */
    {"workers_banana", "workers: banana\n", 1, 10, "workers must be", NULL},
    {"workers_mapping", "workers: {a: 1}\n", 1, 10, "workers must be", NULL},
    {"routes_scalar", "routes: 5\n", 1, 9, "routes must be a list", NULL},
    {"route_not_mapping", "routes:\n  - /a\n", 2, 5, "must be a mapping", NULL},
    {"limits_scalar", "limits: 3\n", 1, 9, "limits must be a mapping", NULL},
    {"listen_mapping_unknown_key", "listen: {a: 1}\n", 1, 10, "unknown key", "address, tls"},
    {"listen_mapping_no_address", "listen: {tls: {}}\n", 1, 9, "needs an address", NULL},
    {"listen_sequence_item", "listen: [[1]]\n", 1, 10, "listen must be a string", NULL},
    {"listen_empty_list", "listen: []\n", 1, 9, "at least one", NULL},
    {"status_quoted_string",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x, status: \"abc\"}\n",
     3, 31, "status must be a number", NULL},
    {"methods_unknown",
     "routes:\n"
     "  - path: /a\n"
     "    methods: [GET, FOO]\n"
     "    static: {body: x}\n",
     3, 20, "unknown method \"FOO\"", NULL},
    {"methods_lower_case",
     "routes:\n"
     "  - path: /a\n"
     "    methods: get\n"
     "    static: {body: x}\n",
     3, 14, "unknown method \"get\"", NULL},
    {"log_level_bad", "log: {level: loud}\n", 1, 14, "log.level must be", "loud"},

    /* out of range */
    {"status_99",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x, status: 99}\n",
     3, 31, "between 200 and 599", NULL},
    {"status_204_with_body",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x, status: 204}\n",
     3, 20, "cannot carry a body", NULL},
    {"max_concurrent_streams_0", "limits:\n  max_concurrent_streams: 0\n", 2, 27,
     "max_concurrent_streams must be between 1", NULL},
    {"port_99999", "listen: \"127.0.0.1:99999\"\n", 1, 9, "out of range", "99999"},
    {"port_in_list",
     "listen:\n"
     "  - \"127.0.0.1:8080\"\n"
     "  - \"[::1]:99999\"\n",
     3, 5, "out of range", NULL},
    {"listen_bad_host", "listen: localhost:80\n", 1, 9, "bad listen address", "localhost:80"},
    {"listen_twice", "listen: [\"8080\", \"*:8080\"]\n", 1, 18, "given twice", NULL},
    {"workers_0", "workers: 0\n", 1, 10, "workers must be", NULL},
    {"workers_2000", "workers: 2000\n", 1, 10, "workers must be", NULL},
    {"workers_empty_list", "workers: []\n", 1, 10, "empty", NULL},

    /* sizes and durations */
    {"size_unit_10x", "limits:\n  max_request_body: 10x\n", 2, 21, "unknown size unit", "10x"},
    {"size_negative", "limits:\n  max_request_body: -5\n", 2, 21, "must be a size", "-5"},
    {"size_too_small", "limits:\n  max_output_buffer: 1k\n", 2, 22, "must be between", NULL},
    {"duration_unit_10x", "limits:\n  idle_timeout: 10x\n", 2, 17, "unknown duration unit", "10x"},
    {"duration_negative", "shutdown_timeout: -5\n", 1, 19, "must be a duration", "-5"},
    {"duration_zero", "limits: {write_timeout: 0}\n", 1, 25, "between 1ms and 7 days", NULL},

    /* duplicate keys: at the second key */
    {"duplicate_key_top",
     "listen: \"8080\"\n"
     "log: {level: info}\n"
     "listen: \"9090\"\n",
     3, 1, "duplicate key \"listen\"", "first at line 1"},
    {"duplicate_key_route",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x}\n"
     "    path: /b\n",
     4, 5, "duplicate key \"path\"", "first at line 2"},

    /* route shape */
    {"route_without_path",
     "routes:\n"
     "  - methods: [GET]\n"
     "    static: {body: x}\n",
     2, 5, "no path", NULL},
    {"route_without_handler",
     "routes:\n"
     "  - path: /a\n"
     "    methods: [GET]\n",
     2, 5, "no handler", NULL},
    {"route_two_handlers",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x}\n"
     "    json: {template: {a: 1}}\n",
     4, 5, "one handler", "line 3"},
    {"static_body_and_file",
     "routes:\n"
     "  - path: /a\n"
     "    static:\n"
     "      body: x\n"
     "      file: f.txt\n",
     5, 7, "either body or file", NULL},
    {"static_without_body",
     "routes:\n"
     "  - path: /a\n"
     "    static: {status: 200}\n",
     3, 13, "needs a body or a file", NULL},
    {"static_missing_file",
     "routes:\n"
     "  - path: /a\n"
     "    static: {file: nope.txt}\n",
     3, 20, "cannot open", "nope.txt"},
    {"static_file_is_directory",
     "routes:\n"
     "  - path: /a\n"
     "    static: {file: sub}\n",
     3, 20, "not a regular file", NULL},

    /* templates */
    {"placeholder_bad_syntax",
     "routes:\n"
     "  - path: /a\n"
     "    json:\n"
     "      template: {a: \"x {{nope}}\"}\n",
     4, 21, "placeholder", "{{nope}}"},
    {"placeholder_unterminated",
     "routes:\n"
     "  - path: /a\n"
     "    json:\n"
     "      template:\n"
     "        - ok\n"
     "        - \"{{param.a\"\n",
     6, 11, "unterminated", NULL},
    {"placeholder_bad_syntax_json_string",
     "routes:\n"
     "  - path: /a\n"
     "    json:\n"
     "      template: '{\"a\": \"{{nope}}\"}'\n",
     4, 17, "placeholder", "{{nope}}"},
    {"param_not_in_path_mapping",
     "routes:\n"
     "  - path: /users/:id\n"
     "    json:\n"
     "      template:\n"
     "        user: \"{{param.id}}\"\n"
     "        other: \"{{param.nope}}\"\n",
     6, 16, "placeholder {{param.nope}} names no param", "/users/:id"},
    {"param_prefix_not_in_path",
     "routes:\n"
     "  - path: /users/:id\n"
     "    json: {template: {u: \"{{param.i}}\"}}\n",
     3, 26, "{{param.i}} names no param", NULL},
    {"param_not_in_path_json_string",
     "routes:\n"
     "  - path: /users/:id\n"
     "    json:\n"
     "      template: '{\"u\": \"{{param.nope}}\"}'\n",
     4, 17, "placeholder {{param.nope}} names no param", "/users/:id"},
    {"template_invalid_json",
     "routes:\n"
     "  - path: /a\n"
     "    json:\n"
     "      template: '{\"a\": }'\n",
     4, 17, "not valid JSON", NULL},
    {"template_plain_scalar",
     "routes:\n"
     "  - path: /a\n"
     "    json:\n"
     "      template: hello\n",
     4, 17, "template must be", NULL},
    {"json_without_template",
     "routes:\n"
     "  - path: /a\n"
     "    json: {status: 200}\n",
     3, 11, "needs a template", NULL},

    /* router */
    {"routes_collide",
     "routes:\n"
     "  - path: /users/:id\n"
     "    static: {body: a}\n"
     "  - path: /users/:name\n"
     "    static: {body: b}\n",
     4, 11, "collides", "line 2:11"},
    {"routes_collide_on_shared_method",
     "routes:\n"
     "  - path: /x\n"
     "    methods: [POST, PUT]\n"
     "    static: {body: a}\n"
     "  - path: /other\n"
     "    static: {body: b}\n"
     "  - path: /x\n"
     "    methods: [DELETE, PUT]\n"
     "    static: {body: c}\n",
     7, 11, "collides", "line 2:11"},
    {"pattern_wildcard_not_last",
     "routes:\n"
     "  - path: /a/*rest/b\n"
     "    static: {body: x}\n",
     2, 11, "wildcard", "/a/*rest/b"},
    {"pattern_no_leading_slash",
     "routes:\n"
     "  - path: /ok\n"
     "    static: {body: x}\n"
     "  - path: nope\n"
     "    static: {body: x}\n",
     4, 11, "does not start with '/'", NULL},

    /* headers */
    {"header_content_length",
     "routes:\n"
     "  - path: /a\n"
     "    static:\n"
     "      body: x\n"
     "      headers: {content-length: \"5\"}\n",
     5, 17, "cannot be set", "content-length"},
    {"header_connection",
     "routes:\n"
     "  - path: /a\n"
     "    json:\n"
     "      template: [1]\n"
     "      headers:\n"
     "        x-ok: fine\n"
     "        Connection: close\n",
     7, 9, "cannot be set", "Connection"},

    /* placeholders in header values */
    {"header_placeholder_missing_param",
     "routes:\n"
     "  - path: /go/:id\n"
     "    static: {body: x, headers: {location: \"/to/{{param.nope}}\"}}\n",
     3, 43, "placeholder {{param.nope}} names no param", "/go/:id"},
    {"header_placeholder_unknown",
     "routes:\n"
     "  - path: /a\n"
     "    json: {template: [1], headers: {x-a: \"{{nope}}\"}}\n",
     3, 42, "placeholder", "{{nope}}"},
    {"header_placeholder_unterminated",
     "routes:\n"
     "  - path: /a/:id\n"
     "    static: {body: x, headers: {x-a: \"{{param.id\"}}\n",
     3, 38, "unterminated", NULL},

    /* strings cut at a NUL, control bytes in what reaches the wire or the router */
    {"path_nul",
     "routes:\n"
     "  - path: \"/a\\0b\"\n"
     "    static: {body: x}\n",
     2, 11, "path must not contain a NUL", NULL},
    {"path_control",
     "routes:\n"
     "  - path: \"/a\\x01b\"\n"
     "    static: {body: x}\n",
     2, 11, "path has a control character", "0x01"},
    {"path_tab",
     "routes:\n"
     "  - path: \"/a\\tb\"\n"
     "    static: {body: x}\n",
     2, 11, "path has a control character", "0x09"},
    {"header_value_nul",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x, headers: {x-a: \"1\\0\"}}\n",
     3, 38, "must not contain a NUL", "x-a"},
    {"header_value_del",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x, headers: {x-a: \"1\\x7f\"}}\n",
     3, 38, "control character", "0x7f"},
    {"header_name_nul",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x, headers: {\"x-a\\0b\": \"1\"}}\n",
     3, 33, "must not contain a NUL", NULL},
    {"content_type_nul",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x, content_type: \"text/plain\\0x\"}\n",
     3, 37, "content_type must not contain a NUL", NULL},
    {"content_type_control",
     "routes:\n"
     "  - path: /a\n"
     "    static: {body: x, content_type: \"text/plain\\x0b\"}\n",
     3, 37, "content_type has a control character", NULL},
    {"method_nul",
     "routes:\n"
     "  - path: /a\n"
     "    methods: [\"GET\\0X\"]\n"
     "    static: {body: x}\n",
     3, 15, "unknown method", NULL},
    {"file_nul",
     "routes:\n"
     "  - path: /a\n"
     "    static: {file: \"good.yaml\\0x\"}\n",
     3, 20, "NUL", NULL},

    /* access log */
    {"access_format_misspelt",
     "log:\n"
     "  access: {path: stderr, format: jsn}\n",
     2, 34, "no %-directive", "jsn"},
    {"access_format_only_percent",
     "log:\n"
     "  access: {path: stderr, format: \"100%%\"}\n",
     2, 34, "no %-directive", NULL},
    {"access_format_unknown_directive",
     "log:\n"
     "  access: {path: stderr, format: \"%h %y\"}\n",
     2, 34, "unknown directive", "%y"},

    /* documents */
    {"second_document",
     "listen: \"8080\"\n"
     "---\n"
     "log: {level: info}\n",
     2, 1, "second YAML document", NULL},
    {"second_document_explicit_first",
     "---\n"
     "listen: \"8080\"\n"
     "...\n"
     "--- {log: {level: info}}\n",
     4, 1, "second YAML document", NULL},

    /* YAML syntax: at the problem */
    {"yaml_tab_indent",
     "routes:\n"
     "\t- path: /a\n"
     "\t  static: {body: x}\n",
     2, 1, "YAML syntax error", "does not allow tabs"},
    {"yaml_syntax_error",
     "listen: \"8080\"\n"
     "log: level: info\n",
     2, 11, "YAML syntax error", "mapping values"},
};

/* hosts: blocks and listen routes, loaded with each of its heap calls failing
 * in turn: every failure is a clean refusal (ASan builds see what leaks),
 * and the load succeeds once none fails. */
static void test_hosts_alloc_failures(void **state)
{
    (void)state;
    write_text("hosts.yaml", "workers: 1\n"
                             "listen:\n"
                             "  - \"127.0.0.1:1\"\n"
                             "  - { address: \"127.0.0.1:2\", redirect_https: 8443 }\n"
                             "  - address: \"127.0.0.1:3\"\n"
                             "    routes:\n"
                             "      - { path: /a, static: { body: a } }\n"
                             "      - { path: /*rest, redirect: { https: true } }\n"
                             "middleware: [ { headers: { set: { x-g: g } } } ]\n"
                             "hosts:\n"
                             "  \"a.test, *.a.test\":\n"
                             "    middleware: [ { headers: { set: { x-b: b } } } ]\n"
                             "    routes:\n"
                             "      - { path: /, static: { body: a } }\n"
                             "      - path: /own\n"
                             "        middleware: [ { headers: { set: { x-r: r } } } ]\n"
                             "        static: { body: own }\n"
                             "  default:\n"
                             "    routes: [ { path: /, static: { body: d } } ]\n");
    cel_config *c = NULL;
    unsigned long n;
    for (n = 1; !c && n < 10000; n++) {
        alloc_calls = 0;
        alloc_fail_at = n;
        alloc_counting = 1;
        errbuf[0] = 0;
        c = cel_config_load(in_tmp("hosts.yaml"), errbuf, sizeof(errbuf));
        alloc_counting = 0;
        if (!c)
            assert_non_null(strstr(errbuf, "hosts.yaml:"));
        else
            assert_true(alloc_calls < n); /* no call failed */
    }
    alloc_fail_at = 0;
    assert_non_null(c);
    assert_true(n > 10); /* failures were injected: the wrapping works */
    assert_int_equal(c->nblocks, 2);
    assert_int_equal(c->nvhosts, 2);
    assert_non_null(c->host_default);
    assert_true(c->listen_routes && c->by_conn);
    assert_null(c->listen[0].router);
    assert_non_null(c->listen[1].router);
    assert_true(c->listen[1].id != c->listen[2].id && c->listen[2].id);
    cel_config_unref(c);
}

static void test_error_case(void **state)
{
    const err_case *e = *state;
    expect_error_at(e->yaml, e->line, e->col, e->word, e->word2);
}

int main(void)
{
    alloc_counting = 0; /* only around the loads of test_hosts_alloc_failures */
    cmocka_set_message_output(CM_OUTPUT_TAP);
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_no_routes_empty_router),
        cmocka_unit_test(test_limits_parsed),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_readme_limits),
        cmocka_unit_test(test_readme_top_level),
        cmocka_unit_test(test_readme_handler_types),
        cmocka_unit_test(test_readme_middleware),
        cmocka_unit_test(test_workers_number_and_auto),
        cmocka_unit_test(test_workers_cpu_list),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_listen_parse),
        cmocka_unit_test(test_listen_ids),
        cmocka_unit_test(test_pid_file_and_check),
        cmocka_unit_test(test_routes_methods_lookup),
        cmocka_unit_test(test_static_body_response),
        cmocka_unit_test(test_static_file_relative),
        cmocka_unit_test(test_static_file_absolute_and_relative_config),
        cmocka_unit_test(test_json_constant),
        cmocka_unit_test(test_json_params),
        cmocka_unit_test(test_header_placeholders),
        cmocka_unit_test(test_refcount_and_publish),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_error_truncated),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_hosts_alloc_failures),
    };
    /* One test per error case, named after it. */
    struct CMUnitTest tests[CEL_ARRAY_LEN(fixed) + CEL_ARRAY_LEN(err_cases)];
    memcpy(tests, fixed, sizeof(fixed));
    for (size_t i = 0; i < CEL_ARRAY_LEN(err_cases); i++)
        tests[CEL_ARRAY_LEN(fixed) + i] = (struct CMUnitTest){
            .name = err_cases[i].name,
            .test_func = test_error_case,
            .initial_state = (void *)&err_cases[i],
        };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
