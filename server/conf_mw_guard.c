/*
 * The middleware kinds that refuse requests (access, rate_limit,
 * basic_auth): their keys, read into the kinds' constructors. The kinds
 * table itself is conf_middleware.c's.
 */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conf_middleware_internal.h"
#include "http.h"
#include "middleware.h"
#include "proxy_proto.h"

/* ---- access ---- */

typedef struct access_build {
    cel_cidr allow[MAX_LIST], deny[MAX_LIST];
    size_t nallow, ndeny;
    int allow_all, deny_all;
} access_build;

static int cidr_list(conf_ctx *c, yaml_node_t *v, const char *what, cel_cidr *out, size_t *n,
                     int *all)
{
    yaml_node_item_t one[1];
    yaml_node_item_t *start = one, *top = one;
    if (v->type == YAML_SEQUENCE_NODE) {
        start = v->data.sequence.items.start;
        top = v->data.sequence.items.top;
    } else if (v->type == YAML_SCALAR_NODE) {
        top = one + 1;
    } else {
        return conf_error(c, v, "%s must be a list of address ranges like [10.0.0.0/8, \"::1\"]",
                          what);
    }
    for (yaml_node_item_t *it = start; it < top; it++) {
        yaml_node_t *item = it == one ? v : conf_node(c, *it);
        const char *s;
        int rc = conf_string(c, item, what, &s);
        if (rc)
            return rc;
        if (strcmp(s, "all") == 0) {
            *all = 1;
            continue;
        }
        if (*n == MAX_LIST)
            return conf_error(c, item, "%s has more than %d ranges", what, MAX_LIST);
        if (cel_cidr_parse(s, &out[*n]))
            return conf_error(c, item,
                              "\"%s\" is not an address range (like 10.0.0.0/8, \"::1\" or "
                              "all; host bits below the prefix must be 0)",
                              s);
        (*n)++;
    }
    return 0;
}

static int access_allow(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    access_build *b = arg;
    (void)k;
    return cidr_list(c, v, key, b->allow, &b->nallow, &b->allow_all);
}

static int access_deny(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    access_build *b = arg;
    (void)k;
    return cidr_list(c, v, key, b->deny, &b->ndeny, &b->deny_all);
}

static const conf_key access_keys[] = {
    {"allow", access_allow},
    {"deny", access_deny},
};

static int access_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, access_keys, CEL_ARRAY_LEN(access_keys), "access", arg, key, k, v);
}

int conf_mw_build_access(conf_ctx *c, yaml_node_t *n, cel_mw **out)
{
    access_build *b = calloc(1, sizeof(*b));
    if (!b)
        return conf_error(c, n, "out of memory");
    int rc = conf_mapping(c, n, "access", access_pair, b);
    if (!rc && !b->nallow && !b->allow_all && !b->ndeny && !b->deny_all)
        rc = conf_error(c, n, "access needs allow or deny (lists of address ranges)");
    if (!rc && !(*out = cel_mw_access_new(b->allow, b->nallow, b->allow_all, b->deny, b->ndeny,
                                          b->deny_all)))
        rc = conf_error(c, n, "out of memory");
    free(b);
    return rc;
}

/* ---- rate_limit ---- */

/* The whole-number keys: read into rate_build.num, then copied into the
 * conf's fields of their own types. */
enum { RATE_BURST, RATE_DELAY, RATE_STATUS, RATE_MAX_KEYS, RATE_NUMS };

static const struct rate_num {
    const char *key;
    long long min, max;
} rate_nums[RATE_NUMS] = {
    [RATE_BURST] = {"burst", 0, 1000000},
    [RATE_DELAY] = {"delay", 0, 1000000},
    [RATE_STATUS] = {"status", 400, 599},
    [RATE_MAX_KEYS] = {"max_keys", 1, 100000000},
};

typedef struct rate_build {
    cel_rate_limit_conf k;
    char name[MAX_NAME];
    int have_rate;
    int nodelay; /* -1: not given */
    yaml_node_t *nodelay_node;
    long long num[RATE_NUMS];
    yaml_node_t *num_node[RATE_NUMS]; /* NULL: not given */
} rate_build;

static int rate_key(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    rate_build *b = arg;
    const char *s;
    (void)k;
    int rc = conf_string(c, v, key, &s);
    if (rc)
        return rc;
    if (strcmp(s, "client_ip") == 0) {
        b->k.header = (cel_str){"", 0};
        return 0;
    }
    if (strncmp(s, "header.", 7) != 0 || !s[7])
        return conf_error(c, v, "key must be client_ip or header.NAME, not \"%s\"", s);
    size_t len = strlen(s + 7);
    if (len >= MAX_NAME || !cel_http_is_token(s + 7, len))
        return conf_error(c, v, "\"%s\" is not a header name", s + 7);
    for (size_t i = 0; i <= len; i++)
        b->name[i] = (char)cel_http_lower((unsigned char)s[7 + i]);
    b->k.header = (cel_str){b->name, len};
    return 0;
}

static int rate_rate(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    rate_build *b = arg;
    const char *s;
    (void)k;
    int rc = conf_string(c, v, key, &s);
    if (rc)
        return rc;
    char *end;
    double n = strtod(s, &end);
    double per = 0;
    if (strcmp(end, "/s") == 0 || *end == 0)
        per = 1;
    else if (strcmp(end, "/m") == 0)
        per = 60;
    else if (strcmp(end, "/h") == 0)
        per = 3600;
    if (end == s || per == 0 || !(n > 0) || n > 1e9)
        return conf_error(c, v,
                          "rate must be a number of requests per time, like 100/s, 30/m "
                          "or 500/h, not \"%s\"",
                          s);
    b->k.rate = n / per;
    b->have_rate = 1;
    return 0;
}

/* Only rate_keys' rows for the keys of rate_nums lead here. */
static int rate_num(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    rate_build *b = arg;
    size_t i = 0;
    (void)k;
    while (strcmp(rate_nums[i].key, key) != 0)
        i++;
    b->num_node[i] = v;
    return conf_int(c, v, key, rate_nums[i].min, rate_nums[i].max, &b->num[i]);
}

static int rate_nodelay(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    rate_build *b = arg;
    (void)k;
    b->nodelay_node = v;
    return conf_mw_want_bool(c, v, key, &b->nodelay);
}

/* nginx's defaults and exclusions: nodelay (today's behaviour, kept as the
 * default) serves the whole burst at once; `nodelay: false` holds all of it;
 * `delay: N` serves N at once and holds the rest. */
static int rate_delay_check(conf_ctx *c, rate_build *b)
{
    if (b->num_node[RATE_DELAY]) {
        if (b->nodelay == 1)
            return conf_error(c, b->nodelay_node,
                              "nodelay: true serves the whole burst at once; with delay, leave "
                              "nodelay out");
        if (b->k.delay > b->k.burst)
            return conf_error(c, b->num_node[RATE_DELAY],
                              "delay (%u) must not exceed burst (%u): it is how many of the burst "
                              "are served at once",
                              b->k.delay, b->k.burst);
        return 0;
    }
    b->k.delay = b->nodelay == 0 ? 0 : b->k.burst;
    return 0;
}

static const conf_key rate_keys[] = {
    {"key", rate_key},   {"rate", rate_rate},  {"burst", rate_num},    {"nodelay", rate_nodelay},
    {"delay", rate_num}, {"status", rate_num}, {"max_keys", rate_num},
};

static int rate_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, rate_keys, CEL_ARRAY_LEN(rate_keys), "rate_limit", arg, key, k, v);
}

int conf_mw_build_rate_limit(conf_ctx *c, yaml_node_t *n, cel_mw **out)
{
    rate_build b = {.k = {.nworkers = c->nworkers},
                    .nodelay = -1,
                    .num = {[RATE_STATUS] = 429, [RATE_MAX_KEYS] = 100000}};
    int rc = conf_mapping(c, n, "rate_limit", rate_pair, &b);
    if (!rc && !b.have_rate)
        rc = conf_error(c, n, "rate_limit needs rate (like 100/s)");
    b.k.burst = (unsigned)b.num[RATE_BURST];
    b.k.delay = (unsigned)b.num[RATE_DELAY];
    b.k.status = (int)b.num[RATE_STATUS];
    b.k.max_keys = (size_t)b.num[RATE_MAX_KEYS];
    if (!rc)
        rc = rate_delay_check(c, &b);
    if (!rc && !(*out = cel_mw_rate_limit_new(&b.k)))
        rc = conf_error(c, n, "out of memory");
    return rc;
}

/* ---- basic_auth ---- */

typedef struct auth_build {
    const char *realm;
    yaml_node_t *file;
    uint32_t cache_ms;
} auth_build;

static int auth_realm(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    auth_build *b = arg;
    (void)k;
    int rc = conf_wire_string(c, v, key, 0, &b->realm);
    if (!rc && strpbrk(b->realm, "\"\\"))
        rc = conf_error(c, v, "realm must not hold '\"' or '\\'");
    return rc;
}

static int auth_file(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    auth_build *b = arg;
    const char *s;
    (void)k;
    int rc = conf_string(c, v, key, &s);
    b->file = v;
    return rc;
}

static int auth_cache(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    auth_build *b = arg;
    (void)k;
    return conf_duration_ms(c, v, key, &b->cache_ms);
}

static const conf_key auth_keys[] = {
    {"realm", auth_realm},
    {"users_file", auth_file},
    {"cache", auth_cache},
};

static int auth_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, auth_keys, CEL_ARRAY_LEN(auth_keys), "basic_auth", arg, key, k, v);
}

/* The users file: "user:hash" lines (htpasswd's), '#' comments, blank lines. */
static int read_users(conf_ctx *c, yaml_node_t *at, const char *path, char **text, cel_str **users,
                      cel_str **hashes, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return conf_error(c, at, "users_file %s: cannot read it", path);
    size_t cap = 0, len = 0;
    char *buf = NULL;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            char *nb = realloc(buf, cap = cap ? cap * 2 : 8192);
            if (!nb) {
                free(buf);
                fclose(f);
                return conf_error(c, at, "out of memory");
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[len] = 0;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    *users = malloc(2 * lines * sizeof(cel_str));
    if (!*users) {
        free(buf);
        return conf_error(c, at, "out of memory");
    }
    *hashes = *users + lines;
    *text = buf;
    *n = 0;
    unsigned lineno = 0;
    for (char *p = buf, *next; p && *p; p = next) {
        lineno++;
        char *nl = strchr(p, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = 0;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r')
            p[--l] = 0;
        if (l == 0 || p[0] == '#')
            continue;
        char *colon = strchr(p, ':');
        if (!colon || colon == p)
            return conf_error(c, at, "users_file %s:%u: not a \"user:hash\" line", path, lineno);
        *colon = 0;
        char *hash = colon + 1, *end = strchr(hash, ':');
        if (end)
            *end = 0; /* fields after the hash (comments) are not ours */
        if (crypt_checksalt(hash) != CRYPT_SALT_OK)
            return conf_error(c, at,
                              "users_file %s:%u: the hash of \"%s\" is not one libcrypt "
                              "accepts (bcrypt $2b$/$2y$, sha-crypt $5$/$6$, yescrypt $y$)",
                              path, lineno, p);
        (*users)[*n] = (cel_str){p, (size_t)(colon - p)};
        (*hashes)[*n] = (cel_str){hash, strlen(hash)};
        (*n)++;
    }
    if (*n == 0)
        return conf_error(c, at, "users_file %s has no user", path);
    return 0;
}

int conf_mw_build_basic_auth(conf_ctx *c, yaml_node_t *n, cel_mw **out)
{
    auth_build b = {.realm = "restricted", .cache_ms = 60000};
    int rc = conf_mapping(c, n, "basic_auth", auth_pair, &b);
    if (rc)
        return rc;
    if (!b.file)
        return conf_error(c, n,
                          "basic_auth needs users_file (user:hash lines, as htpasswd "
                          "writes them)");
    const char *name = (const char *)b.file->data.scalar.value;
    char path[4096];
    snprintf(path, sizeof(path), "%s%s%s", name[0] == '/' ? "" : c->dir, name[0] == '/' ? "" : "/",
             name);
    char *text = NULL;
    cel_str *users = NULL, *hashes = NULL;
    size_t nusers = 0;
    rc = read_users(c, b.file, path, &text, &users, &hashes, &nusers);
    if (!rc && !(*out = cel_mw_basic_auth_new((cel_str){b.realm, strlen(b.realm)}, users, hashes,
                                              nusers, b.cache_ms, c->nworkers)))
        rc = conf_error(c, n, "out of memory");
    if (text)
        explicit_bzero(text, strlen(text));
    free(text);
    free(users);
    return rc;
}
