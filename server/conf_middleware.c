/* The config half of middleware: the `middleware:` lists and each kind's keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "http.h"
#include "middleware.h"

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

static int want_bool(conf_ctx *c, yaml_node_t *v, const char *what, int *out)
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
    return want_bool(c, v, key, &b->trust);
}

static const conf_key request_id_keys[] = {
    {"header", request_id_header},
    {"trust_incoming", request_id_trust},
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
    if (!rc && !(*out = cel_mw_request_id_new(b.header, b.trust)))
        rc = conf_error(c, n, "out of memory");
    return rc;
}

/* ---- the lists ---- */

const conf_mw_kind conf_mw_kinds[] = {
    {"headers", build_headers},
    {"request_id", build_request_id},
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
