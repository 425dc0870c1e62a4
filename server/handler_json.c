/* The json handler: a compiled template rendered into the stream's arena. A
 * template without placeholders is rendered once, at load, and sent by
 * reference like a static body. */
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "json_template.h"

/* Most rendered bodies fit; a larger one costs one more (exactly sized) render. */
#define FIRST_GUESS 512

typedef struct json_handler {
    cel_handler base;
    cel_resp_head head;
    cel_tmpl *tmpl;
    const char *constant; /* the whole body when the template has no slots, or NULL */
    size_t constant_len;
} json_handler;

static inline __attribute__((always_inline)) int body(json_handler *j, cel_exchange *x,
                                                      cel_response *res)
{
    if (j->constant) {
        res->body = j->constant;
        res->body_len = j->constant_len;
        res->body_in_gen = 1;
        return 0;
    }
    size_t len;
    size_t cap = FIRST_GUESS;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *buf = cel_arena_alloc(x->arena, cap);
        if (!buf)
            return CEL_ENOMEM;
        int rc = cel_tmpl_render(j->tmpl, x->req, buf, cap, &len);
        if (rc == 0) {
            res->body = buf;
            res->body_len = len;
            res->body_in_gen = 0;
            return 0;
        }
        if (rc != CEL_ETOOBIG)
            return rc;
        cap = len;
    }
    return CEL_EIO;
}

static int handle(cel_handler *h, cel_exchange *x, cel_response *res)
{
    json_handler *j = (json_handler *)h;
    cel_resp_head_apply(&j->head, res);
    return body(j, x, res);
}

/* Templated headers get their own function, so the one above has no test for them. */
static int handle_templated(cel_handler *h, cel_exchange *x, cel_response *res)
{
    json_handler *j = (json_handler *)h;
    int rc = cel_resp_head_render(&j->head, x, res);
    return rc ? rc : body(j, x, res);
}

/* A template reads the request's id as it is: made here first. */
static int handle_id(cel_handler *h, cel_exchange *x, cel_response *res)
{
    json_handler *j = (json_handler *)h;
    cel_exchange_id(x);
    return j->head.tmpls ? handle_templated(h, x, res) : handle(h, x, res);
}

static int constant(cel_handler *h, cel_response *res)
{
    json_handler *j = (json_handler *)h;
    if (!j->constant)
        return 0;
    memset(res, 0, sizeof(*res));
    res->status = j->head.status;
    res->content_type = j->head.content_type;
    res->body = j->constant;
    res->body_len = j->constant_len;
    res->body_in_gen = 1;
    return 1;
}

static void destroy(cel_handler *h)
{
    json_handler *j = (json_handler *)h;
    cel_resp_head_deinit(&j->head);
    cel_tmpl_free(j->tmpl);
    free(j);
}

cel_handler *cel_handler_json_new(int status, const char *content_type, const cel_kv *headers,
                                  size_t nheaders, cel_tmpl *const *tmpls, cel_tmpl *tmpl)
{
    json_handler *j = calloc(1, sizeof(*j));
    if (!j || cel_resp_head_init(&j->head, status, content_type, headers, nheaders, tmpls)) {
        if (!j)
            for (size_t i = 0; tmpls && i < nheaders; i++)
                cel_tmpl_free(tmpls[i]);
        free(j);
        cel_tmpl_free(tmpl);
        return NULL;
    }
    j->base.type = "json";
    j->base.handle = cel_resp_head_uses_id(&j->head) || cel_tmpl_uses_id(tmpl) ? handle_id
                     : j->head.tmpls                                           ? handle_templated
                                                                               : handle;
    j->base.destroy = destroy;
    j->base.constant = constant;
    j->tmpl = tmpl;
    j->constant = cel_tmpl_constant(tmpl, &j->constant_len);
    return &j->base;
}
