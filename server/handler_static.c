/* The static handler: a fixed status, headers and body, all owned by the
 * generation and sent by reference. Also home of cel_resp_head, the fixed part
 * of a response that other handler types share, and of the server's own
 * plain-text error responses (static bodies too). */
#include <stdlib.h>
#include <string.h>

#include "filebuf.h"
#include "handler.h"
#include "http.h"
#include "json_template.h"

/* Most rendered header values fit; a longer one costs one more (exactly sized) render. */
#define VALUE_GUESS 256

typedef struct static_handler {
    cel_handler base;
    cel_resp_head head;
    char *body;
    size_t body_len;
    struct cel_filebuf *fb; /* owns body when set */
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

/* A head with templated headers: its own function, so the constant one above
 * does not even test for them. */
static int handle_templated(cel_handler *h, cel_exchange *x, cel_response *res)
{
    static_handler *s = (static_handler *)h;
    int rc = cel_resp_head_render(&s->head, x, res);
    if (rc)
        return rc;
    res->body = s->body;
    res->body_len = s->body_len;
    res->body_in_gen = 1;
    return 0;
}

/* A template reads the request's id as it is: made here first. */
static int handle_id(cel_handler *h, cel_exchange *x, cel_response *res)
{
    cel_exchange_id(x);
    return handle_templated(h, x, res);
}

static int constant(cel_handler *h, cel_response *res)
{
    static_handler *s = (static_handler *)h;
    memset(res, 0, sizeof(*res));
    res->status = s->head.status;
    res->content_type = s->head.content_type;
    res->body = s->body;
    res->body_len = s->body_len;
    res->body_in_gen = 1;
    return 1;
}

static void destroy(cel_handler *h)
{
    static_handler *s = (static_handler *)h;
    cel_resp_head_deinit(&s->head);
    if (s->fb)
        cel_filebuf_unref(s->fb);
    else
        free(s->body);
    free(s);
}

static void free_tmpls(struct cel_tmpl *const *tmpls, size_t n)
{
    for (size_t i = 0; tmpls && i < n; i++)
        cel_tmpl_free(tmpls[i]);
}

int cel_resp_head_init(cel_resp_head *h, int status, const char *ctype, const cel_kv *in, size_t n,
                       struct cel_tmpl *const *tmpls)
{
    h->tmpls = NULL;
    for (size_t i = 0; tmpls && i < n; i++)
        if (tmpls[i] && !h->tmpls) {
            if (!(h->tmpls = malloc(n * sizeof(*h->tmpls)))) {
                free_tmpls(tmpls, n);
                return CEL_ENOMEM;
            }
            memcpy(h->tmpls, tmpls, n * sizeof(*h->tmpls));
        }
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
        free_tmpls(h->tmpls, n);
        free(h->tmpls);
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
    free_tmpls(h->tmpls, h->nheaders);
    free(h->tmpls);
    free(h->headers);
    free(h->strings);
}

int cel_resp_head_uses_id(const cel_resp_head *h)
{
    for (size_t i = 0; h->tmpls && i < h->nheaders; i++)
        if (cel_tmpl_uses_id(h->tmpls[i]))
            return 1;
    return 0;
}

int cel_resp_head_render(const cel_resp_head *h, cel_exchange *x, cel_response *res)
{
    cel_resp_head_apply(h, res);
    cel_kv *kv = cel_arena_alloc(x->arena, h->nheaders * sizeof(*kv));
    if (!kv)
        return CEL_ENOMEM;
    memcpy(kv, h->headers, h->nheaders * sizeof(*kv));
    for (size_t i = 0; i < h->nheaders; i++) {
        if (!h->tmpls[i])
            continue;
        size_t cap = VALUE_GUESS, len;
        for (int attempt = 0;; attempt++) {
            char *buf = cel_arena_alloc(x->arena, cap);
            if (!buf)
                return CEL_ENOMEM;
            int rc = cel_tmpl_render(h->tmpls[i], x->req, buf, cap, &len);
            if (rc == 0) {
                kv[i].value = (cel_str){buf, len};
                break;
            }
            if (rc != CEL_ETOOBIG || attempt)
                return rc == CEL_ETOOBIG ? CEL_EIO : rc;
            cap = len;
        }
    }
    res->headers = kv;
    return 0;
}

cel_handler *cel_handler_static_new(int status, const char *content_type, const cel_kv *headers,
                                    size_t nheaders, struct cel_tmpl *const *tmpls, char *body,
                                    size_t body_len)
{
    static_handler *s = calloc(1, sizeof(*s));
    if (!s) {
        free_tmpls(tmpls, nheaders);
        return NULL;
    }
    if (cel_resp_head_init(&s->head, status, content_type, headers, nheaders, tmpls)) {
        free(s);
        return NULL;
    }
    s->base.type = "static";
    s->base.handle = cel_resp_head_uses_id(&s->head) ? handle_id
                     : s->head.tmpls                 ? handle_templated
                                                     : handle;
    s->base.destroy = destroy;
    s->base.constant = constant;
    s->body = body;
    s->body_len = body_len;
    return &s->base;
}

cel_handler *cel_handler_static_new_shared(int status, const char *content_type,
                                           const cel_kv *headers, size_t nheaders,
                                           struct cel_tmpl *const *tmpls, struct cel_filebuf *fb)
{
    cel_handler *h = cel_handler_static_new(status, content_type, headers, nheaders, tmpls,
                                            (char *)cel_filebuf_data(fb), cel_filebuf_len(fb));
    if (!h) {
        cel_filebuf_unref(fb);
        return NULL;
    }
    ((static_handler *)h)->fb = fb;
    return h;
}

void cel_response_error(cel_response *res, int status)
{
    cel_str text = cel_http_reason(status);
    memset(res, 0, sizeof(*res));
    res->status = status;
    res->content_type = CEL_STR_LIT("text/plain; charset=utf-8");
    res->body = text.p;
    res->body_len = text.n ? text.n + 1 : 0; /* "Not Found\n" */
    res->body_in_gen = 1;                    /* static storage outlives every generation */
}
