/* The static handler: a fixed status, headers and body, all owned by the
 * generation and sent by reference. Also home of cel_resp_head, the fixed part
 * of a response that other handler types share. */
#include <stdlib.h>
#include <string.h>

#include "handler.h"

typedef struct static_handler {
    cel_handler base;
    cel_resp_head head;
    char *body;
    size_t body_len;
} static_handler;

static int handle(cel_handler *h, cel_exchange *x, cel_response *res)
{
    static_handler *s = (static_handler *)h;
    (void)x;
    cel_resp_head_apply(&s->head, res);
    res->body = s->body;
    res->body_len = s->body_len;
    res->body_in_gen = 1;
    return 0;
}

static void destroy(cel_handler *h)
{
    static_handler *s = (static_handler *)h;
    cel_resp_head_deinit(&s->head);
    free(s->body);
    free(s);
}

int cel_resp_head_init(cel_resp_head *h, int status, const char *ctype, const cel_kv *in,
                       size_t n)
{
    cel_kv **out = &h->headers;
    char **strings = &h->strings;
    cel_str *ctype_out = &h->content_type;
    h->status = status;
    h->nheaders = n;
    size_t total = strlen(ctype) + 1;
    for (size_t i = 0; i < n; i++)
        total += in[i].name.n + in[i].value.n + 2;
    char *p = malloc(total);
    cel_kv *kv = n ? calloc(n, sizeof(*kv)) : NULL;
    if (!p || (n && !kv)) {
        free(p);
        free(kv);
        return CEL_ENOMEM;
    }
    *strings = p;
    *out = kv;
    size_t len = strlen(ctype);
    memcpy(p, ctype, len + 1);
    *ctype_out = (cel_str){p, len};
    p += len + 1;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, in[i].name.p, in[i].name.n);
        p[in[i].name.n] = 0;
        kv[i].name = (cel_str){p, in[i].name.n};
        p += in[i].name.n + 1;
        memcpy(p, in[i].value.p, in[i].value.n);
        p[in[i].value.n] = 0;
        kv[i].value = (cel_str){p, in[i].value.n};
        p += in[i].value.n + 1;
    }
    return 0;
}

void cel_resp_head_deinit(cel_resp_head *h)
{
    free(h->headers);
    free(h->strings);
}

cel_handler *cel_handler_static_new(int status, const char *content_type, const cel_kv *headers,
                                    size_t nheaders, char *body, size_t body_len)
{
    static_handler *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (cel_resp_head_init(&s->head, status, content_type, headers, nheaders)) {
        free(s);
        return NULL;
    }
    s->base.type = "static";
    s->base.handle = handle;
    s->base.destroy = destroy;
    s->body = body;
    s->body_len = body_len;
    return &s->base;
}
