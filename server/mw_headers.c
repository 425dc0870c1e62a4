#include <stdlib.h>
#include <string.h>

#include "middleware.h"

typedef struct mw_headers {
    cel_mw base;
    cel_kv *set, *add;
    cel_str *remove;
    size_t nset, nadd, nremove;
    char *strings;
} mw_headers;

static void head(const cel_mw *m, cel_exchange *x, int status, cel_fields *f)
{
    const mw_headers *h = (const mw_headers *)m;
    (void)x, (void)status;
    for (size_t i = 0; i < h->nremove; i++)
        cel_fields_remove(f, h->remove[i]);
    for (size_t i = 0; i < h->nset; i++)
        cel_fields_set(f, h->set[i].name, h->set[i].value);
    for (size_t i = 0; i < h->nadd; i++)
        cel_fields_add(f, h->add[i].name, h->add[i].value);
}

static void destroy(cel_mw *m)
{
    mw_headers *h = (mw_headers *)m;
    free(h->set);
    free(h->strings);
    free(h);
}

static const cel_mw_ops ops = {.head = head, .destroy = destroy};

static size_t kv_bytes(const cel_kv *v, size_t n)
{
    size_t b = 0;
    for (size_t i = 0; i < n; i++)
        b += v[i].name.n + v[i].value.n;
    return b;
}

static cel_str copy(char **at, cel_str s)
{
    memcpy(*at, s.p, s.n);
    cel_str out = {*at, s.n};
    *at += s.n;
    return out;
}

cel_mw *cel_mw_headers_new(const cel_kv *set, size_t nset, const cel_kv *add, size_t nadd,
                           const cel_str *remove, size_t nremove)
{
    mw_headers *h = calloc(1, sizeof(*h));
    size_t bytes = kv_bytes(set, nset) + kv_bytes(add, nadd) + 1;
    for (size_t i = 0; i < nremove; i++)
        bytes += remove[i].n;
    /* one array for the three lists: set, add, then remove's names */
    size_t nkv = nset + nadd;
    if (!h || !(h->set = malloc(nkv * sizeof(cel_kv) + nremove * sizeof(cel_str) + 1)) ||
        !(h->strings = malloc(bytes))) {
        if (h)
            free(h->set);
        free(h);
        return NULL;
    }
    h->base = (cel_mw){&ops, "headers"};
    h->add = h->set + nset;
    h->remove = (cel_str *)(h->set + nkv);
    char *at = h->strings;
    for (size_t i = 0; i < nset; i++)
        h->set[i] = (cel_kv){copy(&at, set[i].name), copy(&at, set[i].value)};
    for (size_t i = 0; i < nadd; i++)
        h->add[i] = (cel_kv){copy(&at, add[i].name), copy(&at, add[i].value)};
    for (size_t i = 0; i < nremove; i++)
        h->remove[i] = copy(&at, remove[i]);
    h->nset = nset, h->nadd = nadd, h->nremove = nremove;
    return &h->base;
}
