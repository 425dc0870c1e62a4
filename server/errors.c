#include "errors.h"

#include <stdlib.h>
#include <string.h>

void cel_errors_apply(const cel_errors *e, cel_exchange *x, cel_response *res)
{
    unsigned i = (unsigned)res->status - CEL_ERRORS_FIRST;
    cel_handler *h = i < CEL_ERRORS_N ? e->by_status[i] : NULL;
    if (!h)
        return;
    cel_response b;
    memset(&b, 0, sizeof(b));
    if (h->handle(h, x, &b) != 0)
        return;
    if (b.nheaders) {
        /* the answer's own (a 405's allow) first, then the body's */
        cel_kv *all = cel_arena_alloc(x->arena, (res->nheaders + b.nheaders) * sizeof(*all));
        if (!all)
            return;
        if (res->nheaders)
            memcpy(all, res->headers, res->nheaders * sizeof(*all));
        memcpy(all + res->nheaders, b.headers, b.nheaders * sizeof(*all));
        res->headers = all;
        res->nheaders += b.nheaders;
    }
    res->content_type = b.content_type;
    res->body = b.body;
    res->body_len = b.body_len;
    res->body_in_gen = b.body_in_gen;
}

void cel_errors_free(cel_errors *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->nowned; i++)
        e->owned[i]->destroy(e->owned[i]);
    free(e->owned);
    free(e);
}
