/* The config half of the `errors:` block (errors.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "errors.h"

/* Error bodies belong to no route: a json template may name no param. */
#define NO_ROUTE "/"

typedef struct errors_build {
    cel_errors *e;
    size_t cap;
    unsigned char set[CEL_ERRORS_N]; /* 1: by a class, 2: by its own status */
} errors_build;

/* Calls FN on every scalar under N. */
static int each_scalar(conf_ctx *c, yaml_node_t *n, int depth,
                       int (*fn)(conf_ctx *c, yaml_node_t *n, void *arg), void *arg)
{
    if (depth > 64)
        return conf_error(c, n, "error body nests deeper than 64 levels");
    int rc = 0;
    if (n->type == YAML_SCALAR_NODE)
        return fn(c, n, arg);
    if (n->type == YAML_SEQUENCE_NODE)
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             !rc && it < n->data.sequence.items.top; it++)
            rc = each_scalar(c, conf_node(c, *it), depth + 1, fn, arg);
    if (n->type == YAML_MAPPING_NODE)
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
             !rc && p < n->data.mapping.pairs.top; p++)
            rc = each_scalar(c, conf_node(c, p->value), depth + 1, fn, arg);
    return rc;
}

static int has(const yaml_node_t *n, const char *what)
{
    return memmem(n->data.scalar.value, n->data.scalar.length, what, strlen(what)) != NULL;
}

/* The scalars holding {{status}}: their text, swapped per status. */
#define MAX_SLOTS 64
typedef struct status_slots {
    yaml_node_t *n[MAX_SLOTS];
    yaml_char_t *orig[MAX_SLOTS];
    size_t len[MAX_SLOTS], count;
} status_slots;

static int find_status(conf_ctx *c, yaml_node_t *n, void *arg)
{
    status_slots *s = arg;
    if (!has(n, "{{status}}"))
        return 0;
    if (s->count == MAX_SLOTS)
        return conf_error(c, n, "{{status}} in more than %d strings", MAX_SLOTS);
    s->n[s->count] = n;
    s->orig[s->count] = n->data.scalar.value;
    s->len[s->count++] = n->data.scalar.length;
    return 0;
}

/* The slots' text with {{status}} as STATUS; 0 or CEL_ENOMEM (then restore). */
static int put_status(status_slots *s, int status)
{
    for (size_t i = 0; i < s->count; i++) {
        const char *p = (const char *)s->orig[i], *end = p + s->len[i];
        char *out = malloc(s->len[i] + 1), *w = out;
        if (!out)
            return CEL_ENOMEM;
        while (p < end) {
            const char *at = memmem(p, (size_t)(end - p), "{{status}}", 10);
            size_t lit = at ? (size_t)(at - p) : (size_t)(end - p);
            memcpy(w, p, lit);
            w += lit;
            if (!at)
                break;
            w += snprintf(w, 4, "%d", status);
            p = at + 10;
        }
        *w = 0;
        s->n[i]->data.scalar.value = (yaml_char_t *)out;
        s->n[i]->data.scalar.length = (size_t)(w - out);
    }
    return 0;
}

static void restore(status_slots *s)
{
    for (size_t i = 0; i < s->count; i++) {
        if (s->n[i]->data.scalar.value != s->orig[i])
            free(s->n[i]->data.scalar.value);
        s->n[i]->data.scalar.value = s->orig[i];
        s->n[i]->data.scalar.length = s->len[i];
    }
}

typedef struct body_build {
    yaml_node_t *json; /* the value of `json:`, or NULL: a static body */
} body_build;

static int body_key(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    body_build *b = arg;
    if (strcmp(key, "status") == 0)
        return conf_error(c, k, "an error body has no status: it keeps the answer's");
    if (strcmp(key, "json") == 0)
        b->json = v;
    return 0;
}

static int build_one(conf_ctx *c, yaml_node_t *v, cel_handler **out)
{
    body_build b = {NULL};
    int rc = conf_mapping(c, v, "an error body", body_key, &b);
    if (!rc && b.json && v->data.mapping.pairs.top - v->data.mapping.pairs.start != 1)
        rc = conf_error(c, v,
                        "an error body is `{ json: { template: ... } }` or "
                        "`{ file: ..., content_type: ... }`, not both");
    if (!rc && b.json && b.json->type == YAML_MAPPING_NODE)
        rc = conf_mapping(c, b.json, "json", body_key, &(body_build){NULL});
    if (rc)
        return rc;
    return b.json ? conf_handler_json(c, b.json, NO_ROUTE, out)
                  : conf_handler_static(c, v, NO_ROUTE, out);
}

static int own(conf_ctx *c, errors_build *b, yaml_node_t *n, cel_handler *h)
{
    if (b->e->nowned == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        cel_handler **o = realloc(b->e->owned, cap * sizeof(*o));
        if (!o) {
            h->destroy(h);
            return conf_error(c, n, "out of memory");
        }
        b->e->owned = o, b->cap = cap;
    }
    b->e->owned[b->e->nowned++] = h;
    return 0;
}

static int errors_pair(conf_ctx *c, void *arg, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    errors_build *b = arg;
    int first, last, level;
    char *end;
    long s = strtol(key, &end, 10);
    if (strlen(key) == 3 && (key[0] == '4' || key[0] == '5') && strcmp(key + 1, "xx") == 0) {
        first = (key[0] - '0') * 100, last = first + 99, level = 1;
    } else if (*key && !*end && s >= 400 && s <= 599) {
        first = last = (int)s, level = 2;
    } else {
        return conf_error(c, k,
                          "errors are keyed by a status 400-599 or a class (4xx, 5xx), not "
                          "\"%s\"",
                          key);
    }
    status_slots slots = {.count = 0};
    int rc = each_scalar(c, v, 0, find_status, &slots);
    cel_handler *h = NULL;
    for (int st = first; !rc && st <= last; st++) {
        if (b->set[st - CEL_ERRORS_FIRST] > level)
            continue; /* a status of its own beats its class, whatever the order */
        if (slots.count || !h) {
            if ((rc = put_status(&slots, st)))
                rc = conf_error(c, v, "out of memory");
            if (!rc && !(rc = build_one(c, v, &h)))
                rc = own(c, b, v, h);
            restore(&slots);
        }
        if (!rc) {
            b->e->by_status[st - CEL_ERRORS_FIRST] = h;
            b->set[st - CEL_ERRORS_FIRST] = (unsigned char)level;
        }
    }
    return rc;
}

int conf_errors(conf_ctx *c, yaml_node_t *n, cel_errors **out)
{
    errors_build b = {.e = calloc(1, sizeof(cel_errors))};
    if (!b.e)
        return conf_error(c, n, "out of memory");
    int rc = conf_mapping(c, n, "errors", errors_pair, &b);
    if (rc) {
        cel_errors_free(b.e);
        return rc;
    }
    *out = b.e;
    return 0;
}
