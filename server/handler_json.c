/* The json handler: a compiled template rendered into the stream's arena. A
 * template without placeholders is rendered once, at load, and sent by
 * reference like a static body. */
#include <stdlib.h>

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

static int handle(cel_handler *h, cel_exchange *x, cel_response *res)
{
    json_handler *j = (json_handler *)h;
    cel_resp_head_apply(&j->head, res);
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

static void destroy(cel_handler *h)
{
    json_handler *j = (json_handler *)h;
    cel_resp_head_deinit(&j->head);
    cel_tmpl_free(j->tmpl);
    free(j);
}

cel_handler *cel_handler_json_new(int status, const char *content_type, const cel_kv *headers,
                                  size_t nheaders, cel_tmpl *tmpl)
{
    json_handler *j = calloc(1, sizeof(*j));
    if (!j || cel_resp_head_init(&j->head, status, content_type, headers, nheaders)) {
        free(j);
        cel_tmpl_free(tmpl);
        return NULL;
    }
    j->base.type = "json";
    j->base.handle = handle;
    j->base.destroy = destroy;
    j->tmpl = tmpl;
    j->constant = cel_tmpl_constant(tmpl, &j->constant_len);
    return &j->base;
}
