/* The config half of middleware: the `middleware:` lists and each kind's keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "http.h"
#include "middleware.h"
#include "mw_compress.h"
#include "mw_timeout.h"

#define MAX_FIELDS 64
#define MAX_NAME 128

/* ---- headers ---- */

typedef struct headers_build {
    cel_kv set[MAX_FIELDS], add[MAX_FIELDS];
    cel_str remove[MAX_FIELDS];
    size_t nset, nadd, nremove;
    char names[3 * MAX_FIELDS][MAX_NAME];
    size_t nnames;
} headers_build;

/* A field name middleware may write, lowercased into B's storage. */
static int field_name(conf_ctx *c, headers_build *b, yaml_node_t *n, cel_str *out)
{
    const char *key;
    int rc = conf_string(c, n, "a header name", &key);
    if (rc)
        return rc;
    size_t len = strlen(key);
    if (len == 0 || len >= MAX_NAME)
        return conf_error(c, n, "header name \"%s\" is empty or too long", key);
    char *low = b->names[b->nnames++];
    for (size_t i = 0; i < len; i++) {
        if (!cel_http_is_tchar((unsigned char)key[i]))
            return conf_error(c, n, "header name \"%s\" has a character not allowed in a name",
                              key);
        low[i] = (char)cel_http_lower((unsigned char)key[i]);
    }
    low[len] = 0;
    if (cel_http_field_owner(low, len) == CEL_HTTP_FRAMING)
        return conf_error(c, n, "header \"%s\" cannot be set here (%s)", key,
                          "the protocol's framing: the server writes it");
    *out = (cel_str){low, len};
    return 0;
}

typedef struct pair_arg {
    headers_build *b;
    cel_kv *into;
    size_t *n;
} pair_arg;

static int header_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    pair_arg *a = arg;
    (void)key;
    if (*a->n == MAX_FIELDS)
        return conf_error(c, k, "too many headers (at most %d)", MAX_FIELDS);
    cel_kv *kv = &a->into[*a->n];
    int rc = field_name(c, a->b, k, &kv->name);
    const char *val;
    char what[160];
    snprintf(what, sizeof(what), "header value for \"%s\"", key);
    if (rc || (rc = conf_wire_string(c, v, what, 1, &val)))
        return rc;
    kv->value = (cel_str){val, strlen(val)};
    (*a->n)++;
    return 0;
}

static int headers_set(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    headers_build *b = arg;
    (void)k;
    pair_arg a = {b, b->set, &b->nset};
    return conf_mapping(c, v, key, header_pair, &a);
}

static int headers_add(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    headers_build *b = arg;
    (void)k;
    pair_arg a = {b, b->add, &b->nadd};
    return conf_mapping(c, v, key, header_pair, &a);
}

static int headers_remove(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    headers_build *b = arg;
    (void)k;
    if (v->type == YAML_SCALAR_NODE)
        return field_name(c, b, v, &b->remove[b->nremove++]);
    int rc = conf_want(c, v, YAML_SEQUENCE_NODE, key);
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         !rc && it < v->data.sequence.items.top; it++) {
        if (b->nremove == MAX_FIELDS)
            return conf_error(c, v, "too many headers (at most %d)", MAX_FIELDS);
        rc = field_name(c, b, conf_node(c, *it), &b->remove[b->nremove++]);
    }
    return rc;
}

static const conf_key headers_keys[] = {
    {"set", headers_set},
    {"add", headers_add},
    {"remove", headers_remove},
};

static int headers_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, headers_keys, CEL_ARRAY_LEN(headers_keys), "headers", arg, key, k, v);
}

static int build_headers(conf_ctx *c, yaml_node_t *n, cel_mw **out)
{
    headers_build *b = calloc(1, sizeof(*b));
    if (!b)
        return conf_error(c, n, "out of memory");
    int rc = conf_mapping(c, n, "headers", headers_pair, b);
    if (!rc &&
        !(*out = cel_mw_headers_new(b->set, b->nset, b->add, b->nadd, b->remove, b->nremove)))
        rc = conf_error(c, n, "out of memory");
    free(b);
    return rc;
}

/* ---- compress ---- */

#define MAX_TYPES 32

typedef struct compress_build {
    cel_compress_conf conf;
    cel_str types[MAX_TYPES];
} compress_build;

static const char *const enc_keys[CEL_ENC_N] = {"gzip", "br", "zstd"};
/* Levels per coding: the range each library takes, and its default for
 * bodies encoded per request (fast enough to stream). */
static const int enc_min[CEL_ENC_N] = {1, 0, 1}, enc_max[CEL_ENC_N] = {9, 11, 19},
                 enc_def[CEL_ENC_N] = {6, 4, 3};

static int enc_of(conf_ctx *c, yaml_node_t *n, const char *what, int *out)
{
    const char *s;
    int rc = conf_string(c, n, what, &s);
    if (rc)
        return rc;
    for (int i = 0; i < CEL_ENC_N; i++)
        if (strcmp(s, enc_keys[i]) == 0) {
            *out = i;
            return 0;
        }
    return conf_error(c, n, "unknown encoding \"%s\" (one of: zstd, br, gzip)", s);
}

static int compress_encodings(conf_ctx *c, void *arg, const char *key, yaml_node_t *k,
                              yaml_node_t *v)
{
    cel_compress_conf *cf = &((compress_build *)arg)->conf;
    (void)k;
    int rc = conf_want(c, v, YAML_SEQUENCE_NODE, key);
    if (rc)
        return rc;
    if (v->data.sequence.items.start == v->data.sequence.items.top)
        return conf_error(c, v, "encodings needs one of zstd, br, gzip (or `compress: off`)");
    cf->nenc = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *e = conf_node(c, *it);
        int enc;
        if ((rc = enc_of(c, e, "an encoding", &enc)))
            return rc;
        for (size_t i = 0; i < cf->nenc; i++)
            if (cf->order[i] == enc)
                return conf_error(c, e, "encoding \"%s\" is listed twice", enc_keys[enc]);
        cf->order[cf->nenc++] = enc;
    }
    return 0;
}

static int compress_min_length(conf_ctx *c, void *arg, const char *key, yaml_node_t *k,
                               yaml_node_t *v)
{
    (void)k;
    return conf_size(c, v, key, 0, (size_t)1 << 30, &((compress_build *)arg)->conf.min_length);
}

static int compress_types(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    compress_build *b = arg;
    (void)k;
    int rc = conf_want(c, v, YAML_SEQUENCE_NODE, key);
    b->conf.ntypes = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         !rc && it < v->data.sequence.items.top; it++) {
        yaml_node_t *t = conf_node(c, *it);
        const char *s;
        if ((rc = conf_wire_string(c, t, "a media type", 0, &s)))
            return rc;
        const char *slash = strchr(s, '/');
        if (!slash || slash == s || !slash[1] || strchr(s, ';') || strchr(s, ' ') ||
            (strchr(s, '*') && strcmp(strchr(s, '*'), "*") != 0) || strcmp(s, "*/*") == 0)
            return conf_error(c, t, "\"%s\" is not a media type like text/html or text/*", s);
        if (b->conf.ntypes == MAX_TYPES)
            return conf_error(c, t, "too many types (at most %d)", MAX_TYPES);
        b->types[b->conf.ntypes++] = (cel_str){s, strlen(s)};
    }
    return rc;
}

static int level_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cel_compress_conf *cf = &((compress_build *)arg)->conf;
    int enc;
    int rc = enc_of(c, k, "an encoding", &enc);
    long long level;
    char what[32];
    snprintf(what, sizeof(what), "level.%s", key);
    if (rc || (rc = conf_int(c, v, what, enc_min[enc], enc_max[enc], &level)))
        return rc;
    cf->level[enc] = (int)level;
    return 0;
}

static int compress_level(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    (void)k;
    return conf_mapping(c, v, key, level_pair, arg);
}

static const conf_key compress_keys[] = {
    {"encodings", compress_encodings},
    {"min_length", compress_min_length},
    {"types", compress_types},
    {"level", compress_level},
};

static int compress_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, compress_keys, CEL_ARRAY_LEN(compress_keys), "compress", arg, key, k,
                         v);
}

static const char *const default_types[] = {
    "text/*", "application/json", "application/javascript", "application/xml", "image/svg+xml",
};

static int build_compress(conf_ctx *c, yaml_node_t *n, cel_mw **out)
{
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = (const char *)n->data.scalar.value;
        if (strcmp(s, "off") != 0 && strcmp(s, "on") != 0 && n->data.scalar.length)
            return conf_error(
                c, n,
                "compress is `off`, `on` or a mapping "
                "({ encodings: [...], min_length: ..., types: [...], level: {...} }), "
                "not \"%s\"",
                s);
        if (strcmp(s, "off") == 0)
            return (*out = cel_mw_compress_new(NULL)) ? 0 : conf_error(c, n, "out of memory");
    }
    compress_build *b = calloc(1, sizeof(*b));
    if (!b)
        return conf_error(c, n, "out of memory");
    cel_compress_conf *cf = &b->conf;
    cf->order[0] = CEL_ENC_ZSTD, cf->order[1] = CEL_ENC_BR, cf->order[2] = CEL_ENC_GZIP;
    cf->nenc = 3;
    memcpy(cf->level, enc_def, sizeof(cf->level));
    cf->min_length = 256;
    cf->ntypes = CEL_ARRAY_LEN(default_types);
    for (size_t i = 0; i < cf->ntypes; i++)
        b->types[i] = (cel_str){default_types[i], strlen(default_types[i])};
    int rc = 0;
    if (n->type != YAML_SCALAR_NODE)
        rc = conf_mapping(c, n, "compress", compress_pair, b);
    cf->types = b->types;
    if (!rc && !(*out = cel_mw_compress_new(cf)))
        rc = conf_error(c, n, "out of memory");
    free(b);
    return rc;
}

/* ---- timeout ---- */

static int build_timeout(conf_ctx *c, yaml_node_t *n, cel_mw **out)
{
    uint32_t ms;
    int rc = conf_duration_ms(c, n, "timeout", &ms);
    if (rc)
        return rc;
    return (*out = cel_mw_timeout_new(ms)) ? 0 : conf_error(c, n, "out of memory");
}

/* ---- the lists ---- */

const conf_mw_kind conf_mw_kinds[] = {
    {"headers", build_headers},
    {"compress", build_compress},
    {"timeout", build_timeout},
};
const size_t conf_nmw_kinds = CEL_ARRAY_LEN(conf_mw_kinds);

typedef struct item_build {
    cel_mw *mw;
} item_build;

static int item_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    item_build *b = arg;
    if (b->mw)
        return conf_error(c, k, "a middleware list item names one middleware (\"%s\" is a second)",
                          key);
    for (size_t i = 0; i < conf_nmw_kinds; i++)
        if (strcmp(key, conf_mw_kinds[i].key) == 0)
            return conf_mw_kinds[i].build(c, v, &b->mw);
    char allowed[256] = "";
    return conf_unknown_key(c, k, "middleware", CONF_KEY_LIST(allowed, conf_mw_kinds));
}

int conf_middleware(conf_ctx *c, yaml_node_t *n, const char *what, cel_mw_chain **out)
{
    *out = NULL;
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0)
        return 0; /* "middleware:" with nothing under it */
    int rc = conf_want(c, n, YAML_SEQUENCE_NODE, what);
    if (rc)
        return rc;
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0)
        return 0;
    cel_mw_chain *chain = cel_mw_chain_new(count, 1);
    if (!chain)
        return conf_error(c, n, "out of memory");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *item = conf_node(c, *it);
        item_build b = {NULL};
        if (item->type != YAML_MAPPING_NODE ||
            item->data.mapping.pairs.start == item->data.mapping.pairs.top) {
            char kinds[256] = "";
            rc = conf_error(c, item, "each middleware is a mapping with one key (one of: %s)",
                            CONF_KEY_LIST(kinds, conf_mw_kinds));
        } else {
            rc = conf_mapping(c, item, what, item_pair, &b);
        }
        if (rc) {
            if (b.mw)
                b.mw->ops->destroy(b.mw);
            cel_mw_chain_free(chain);
            return rc;
        }
        cel_mw_chain_push(chain, b.mw);
    }
    *out = chain;
    return 0;
}
