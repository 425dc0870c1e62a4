/* The redirect handler: a status and a location, rendered per request when
 * the target has placeholders (values percent-encoded, cel_tmpl_compile_url). */
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "json_template.h"

/* Most targets fit; a longer one costs one more (exactly sized) render. */
#define TARGET_GUESS 256

typedef struct redirect_handler {
    cel_handler base;
    int status;
    struct cel_tmpl *to; /* NULL: constant */
    cel_kv location;     /* the constant one, or the name alone */
    char *target;
} redirect_handler;

static int handle(cel_handler *h, cel_exchange *x, cel_response *res)
{
    redirect_handler *r = (redirect_handler *)h;
    res->status = r->status;
    res->body = "";
    res->body_in_gen = 1;
    if (!r->to) {
        res->headers = &r->location;
        res->nheaders = 1;
        return 0;
    }
    cel_kv *loc = cel_arena_alloc(x->arena, sizeof(*loc));
    char *buf = cel_arena_alloc(x->arena, TARGET_GUESS);
    size_t len;
    if (!loc || !buf)
        return CEL_ENOMEM;
    int rc = cel_tmpl_render(r->to, x->req, buf, TARGET_GUESS, &len);
    if (rc == CEL_ETOOBIG) {
        if (!(buf = cel_arena_alloc(x->arena, len)))
            return CEL_ENOMEM;
        rc = cel_tmpl_render(r->to, x->req, buf, len, &len);
    }
    if (rc)
        return rc;
    *loc = (cel_kv){CEL_STR_LIT("location"), {buf, len}};
    res->headers = loc;
    res->nheaders = 1;
    return 0;
}

static void destroy(cel_handler *h)
{
    redirect_handler *r = (redirect_handler *)h;
    cel_tmpl_free(r->to);
    free(r->target);
    free(r);
}

cel_handler *cel_handler_redirect_new(int status, struct cel_tmpl *to)
{
    redirect_handler *r = calloc(1, sizeof(*r));
    size_t n = 0;
    const char *c = cel_tmpl_constant(to, &n);
    if (!r || (c && !(r->target = malloc(n ? n : 1)))) {
        free(r);
        cel_tmpl_free(to);
        return NULL;
    }
    r->base.type = "redirect";
    r->base.handle = handle;
    r->base.destroy = destroy;
    r->status = status;
    if (c) {
        memcpy(r->target, c, n);
        r->location = (cel_kv){CEL_STR_LIT("location"), {r->target, n}};
        cel_tmpl_free(to);
    } else {
        r->to = to;
    }
    return &r->base;
}
