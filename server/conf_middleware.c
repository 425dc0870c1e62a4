/* The config half of middleware: the `middleware:` lists and each kind's keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conf_middleware_internal.h"
#include "http.h"
#include "middleware.h"
#include "mw_compress.h"
#include "mw_timeout.h"

#define MAX_FIELDS 64

/* ---- headers ---- */

typedef struct headers_build {
    cel_kv set[MAX_FIELDS], add[MAX_FIELDS];
    cel_str remove[MAX_FIELDS];
    size_t nset, nadd, nremove;
    char names[3 * MAX_FIELDS][MAX_NAME];
    size_t nnames;
} headers_build;

/* A field name middleware may write, lowercased into LOW (MAX_NAME octets). */
static int field_name(conf_ctx *c, yaml_node_t *n, char *low, cel_str *out)
{
    const char *key;
    int rc = conf_string(c, n, "a header name", &key);
    if (rc)
        return rc;
    size_t len = strlen(key);
    if (len == 0 || len >= MAX_NAME)
        return conf_error(c, n, "header name \"%s\" is empty or too long", key);
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
    int rc = field_name(c, k, a->b->names[a->b->nnames++], &kv->name);
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
        return field_name(c, v, b->names[b->nnames++], &b->remove[b->nremove++]);
    int rc = conf_want(c, v, YAML_SEQUENCE_NODE, key);
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         !rc && it < v->data.sequence.items.top; it++) {
        if (b->nremove == MAX_FIELDS)
            return conf_error(c, v, "too many headers (at most %d)", MAX_FIELDS);
        rc = field_name(c, conf_node(c, *it), b->names[b->nnames++], &b->remove[b->nremove++]);
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

/* ---- shared by the kinds ---- */

int conf_mw_want_bool(conf_ctx *c, yaml_node_t *v, const char *what, int *out)
{
    const char *s;
    int rc = conf_string(c, v, what, &s);
    if (rc)
        return rc;
    if (strcmp(s, "true") && strcmp(s, "false"))
        return conf_error(c, v, "%s must be true or false, not \"%s\"", what, s);
    *out = strcmp(s, "true") == 0;
    return 0;
}

/* A middleware with no keys may be given as `- name: {}` or `- name:`. */
static int mapping_or_empty(conf_ctx *c, yaml_node_t *n, const char *what, conf_pair_fn fn,
                            void *arg)
{
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0)
        return 0;
    return conf_mapping(c, n, what, fn, arg);
}

/* ---- request_id ---- */

typedef struct request_id_build {
    char name[MAX_NAME];
    cel_str header;
    int trust;
    int base64url;
} request_id_build;

static int request_id_header(conf_ctx *c, void *arg, const char *key, yaml_node_t *k,
                             yaml_node_t *v)
{
    request_id_build *b = arg;
    (void)key, (void)k;
    return field_name(c, v, b->name, &b->header);
}

static int request_id_trust(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    request_id_build *b = arg;
    (void)k;
    return conf_mw_want_bool(c, v, key, &b->trust);
}

static int request_id_format(conf_ctx *c, void *arg, const char *key, yaml_node_t *k,
                             yaml_node_t *v)
{
    request_id_build *b = arg;
    const char *s;
    (void)k;
    int rc = conf_string(c, v, key, &s);
    if (rc)
        return rc;
    if (strcmp(s, "hex") && strcmp(s, "base64url"))
        return conf_error(c, v, "format must be hex or base64url, not \"%s\"", s);
    b->base64url = strcmp(s, "base64url") == 0;
    return 0;
}

static const conf_key request_id_keys[] = {
    {"header", request_id_header},
    {"trust_incoming", request_id_trust},
    {"format", request_id_format},
};

static int request_id_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, request_id_keys, CEL_ARRAY_LEN(request_id_keys), "request_id", arg, key,
                         k, v);
}

static int build_request_id(conf_ctx *c, yaml_node_t *n, cel_mw **out)
{
    request_id_build b = {.name = "x-request-id", .header = CEL_STR_LIT("x-request-id")};
    int rc = mapping_or_empty(c, n, "request_id", request_id_pair, &b);
    if (!rc && !(*out = cel_mw_request_id_new(b.header, b.trust, b.base64url)))
        rc = conf_error(c, n, "out of memory");
    return rc;
}

/* ---- cors ---- */

typedef struct cors_build {
    cel_cors_conf k;
    cel_str origins[MAX_LIST], methods[MAX_LIST], headers[MAX_LIST], expose[MAX_LIST];
    char names[3 * MAX_LIST][MAX_NAME]; /* lowercased header names */
    size_t nnames;
    yaml_node_t *origins_node;
} cors_build;

/* A list of strings (or one) into OUT; "*" alone sets *ANY when ANY is given. */
typedef int (*item_fn)(conf_ctx *c, cors_build *b, yaml_node_t *n, cel_str *out);

static int cors_list(conf_ctx *c, cors_build *b, yaml_node_t *v, const char *what, item_fn fn,
                     cel_str *out, size_t *n, int *any)
{
    if (any && v->type == YAML_SCALAR_NODE &&
        strcmp((const char *)v->data.scalar.value, "*") == 0) {
        *any = 1;
        return 0;
    }
    if (v->type == YAML_SCALAR_NODE) {
        *n = 1;
        return fn(c, b, v, &out[0]);
    }
    int rc = conf_want(c, v, YAML_SEQUENCE_NODE, what);
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         !rc && it < v->data.sequence.items.top; it++) {
        yaml_node_t *item = conf_node(c, *it);
        if (*n == MAX_LIST)
            return conf_error(c, item, "%s has more than %d entries", what, MAX_LIST);
        if (any && item->type == YAML_SCALAR_NODE &&
            strcmp((const char *)item->data.scalar.value, "*") == 0)
            return conf_error(c, item, "\"*\" stands alone: %s: \"*\", not in a list", what);
        rc = fn(c, b, item, &out[(*n)++]);
    }
    return rc;
}

static int cors_origin(conf_ctx *c, cors_build *b, yaml_node_t *n, cel_str *out)
{
    (void)b;
    const char *s;
    int rc = conf_wire_string(c, n, "an origin", 0, &s);
    if (rc)
        return rc;
    const char *host = strstr(s, "://");
    if (!host || host == s || !host[3] || strchr(host + 3, '/') || strchr(s, ' ') || strchr(s, '*'))
        return conf_error(c, n,
                          "origin \"%s\" is not scheme://host[:port] (like "
                          "https://app.example.com, no path, no wildcard)",
                          s);
    for (char *p = (char *)s; *p; p++)
        *p = (char)cel_http_lower((unsigned char)*p); /* browsers send origins lowercase */
    *out = (cel_str){s, strlen(s)};
    return 0;
}

static int cors_method(conf_ctx *c, cors_build *b, yaml_node_t *n, cel_str *out)
{
    (void)b;
    const char *s;
    int rc = conf_string(c, n, "a method", &s);
    if (rc)
        return rc;
    if (!cel_http_is_token(s, strlen(s)))
        return conf_error(c, n, "method \"%s\" is not a token (methods are like GET, POST)", s);
    *out = (cel_str){s, strlen(s)};
    return 0;
}

static int cors_name(conf_ctx *c, cors_build *b, yaml_node_t *n, cel_str *out)
{
    if (b->nnames == CEL_ARRAY_LEN(b->names))
        return conf_error(c, n, "too many header names");
    const char *key;
    int rc = conf_string(c, n, "a header name", &key);
    if (rc)
        return rc;
    size_t len = strlen(key);
    char *low = b->names[b->nnames++];
    if (len == 0 || len >= MAX_NAME || !cel_http_is_token(key, len))
        return conf_error(c, n, "header name \"%s\" is not a header name", key);
    for (size_t i = 0; i <= len; i++)
        low[i] = (char)cel_http_lower((unsigned char)key[i]);
    *out = (cel_str){low, len};
    return 0;
}

static int cors_origins(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cors_build *b = arg;
    (void)k;
    b->origins_node = v;
    return cors_list(c, b, v, key, cors_origin, b->origins, &b->k.norigins, &b->k.any_origin);
}

static int cors_methods(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cors_build *b = arg;
    (void)k;
    b->k.nmethods = 0;
    return cors_list(c, b, v, key, cors_method, b->methods, &b->k.nmethods, NULL);
}

static int cors_headers(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cors_build *b = arg;
    (void)k;
    return cors_list(c, b, v, key, cors_name, b->headers, &b->k.nheaders, &b->k.any_header);
}

static int cors_expose(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cors_build *b = arg;
    (void)k;
    return cors_list(c, b, v, key, cors_name, b->expose, &b->k.nexpose, NULL);
}

static int cors_credentials(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cors_build *b = arg;
    (void)k;
    return conf_mw_want_bool(c, v, key, &b->k.credentials);
}

static int cors_max_age(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    cors_build *b = arg;
    uint32_t ms;
    (void)k;
    int rc = conf_duration_ms(c, v, key, &ms);
    b->k.max_age_s = ms / 1000;
    return rc;
}

static const conf_key cors_keys[] = {
    {"origins", cors_origins}, {"methods", cors_methods},         {"headers", cors_headers},
    {"expose", cors_expose},   {"credentials", cors_credentials}, {"max_age", cors_max_age},
};

static int cors_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    return conf_key_call(c, cors_keys, CEL_ARRAY_LEN(cors_keys), "cors", arg, key, k, v);
}

static int build_cors(conf_ctx *c, yaml_node_t *n, cel_mw **out)
{
    cors_build *b = calloc(1, sizeof(*b));
    if (!b)
        return conf_error(c, n, "out of memory");
    static const char *const defaults[] = {"GET", "HEAD", "POST"};
    for (size_t i = 0; i < CEL_ARRAY_LEN(defaults); i++)
        b->methods[i] = (cel_str){defaults[i], strlen(defaults[i])};
    b->k.nmethods = CEL_ARRAY_LEN(defaults);
    b->k.max_age_s = -1;
    int rc = conf_mapping(c, n, "cors", cors_pair, b);
    if (!rc && !b->origins_node)
        rc = conf_error(c, n,
                        "cors needs origins (a list like [\"https://app.example.com\"], "
                        "or \"*\")");
    if (!rc && b->k.any_origin && b->k.credentials)
        rc = conf_error(c, b->origins_node,
                        "origins \"*\" with credentials: true would let every site read "
                        "answers meant for the user: list the origins");
    b->k.origins = b->origins, b->k.methods = b->methods, b->k.headers = b->headers;
    b->k.expose = b->expose;
    if (!rc && !(*out = cel_mw_cors_new(&b->k)))
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
        int enc = 0; /* set by enc_of when it returns 0 */
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
    int enc = 0; /* set by enc_of when it returns 0 */
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
    {"request_id", build_request_id},
    {"cors", build_cors},
    {"access", conf_mw_build_access},
    {"rate_limit", conf_mw_build_rate_limit},
    {"basic_auth", conf_mw_build_basic_auth},
    {"compress", build_compress},
    {"timeout", build_timeout},
    {"module", conf_mw_module},
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
