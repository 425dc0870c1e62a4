/* The redirect handler: a status and a location, rendered per request when
 * the target has placeholders (values percent-encoded, cel_tmpl_compile_url). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "http.h"
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

/* The target reads the request's id as it is: made here first. */
static int handle_id(cel_handler *h, cel_exchange *x, cel_response *res)
{
    cel_exchange_id(x);
    return handle(h, x, res);
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
    r->base.handle = cel_tmpl_uses_id(to) ? handle_id : handle;
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

/* ---- to https ---- */

typedef struct https_handler {
    cel_handler base;
    int status;
    char port[8]; /* ":8443", or "" */
    size_t port_len;
} https_handler;

/* The host of AUTHORITY without its port, when it is a name or an address a
 * URL can hold as it is: letters, digits, '-', '.', '_', or "[v6]". */
static cel_str host_of(cel_str a)
{
    size_t n = a.n;
    if (n && a.p[0] == '[') {
        const char *end = memchr(a.p, ']', n);
        n = end ? (size_t)(end - a.p) + 1 : 0;
    } else {
        const char *colon = memchr(a.p, ':', n);
        if (colon)
            n = (size_t)(colon - a.p);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a.p[i];
        int v6 = a.p[0] == '[' && (c == ':' || c == '[' || c == ']');
        if (!cel_http_is_alnum(c) && c != '-' && c != '.' && c != '_' && !v6)
            return (cel_str){NULL, 0};
    }
    return (cel_str){a.p, n};
}

/* Appends the N octets at S, percent-encoding those a URL never holds raw
 * (controls, space, non-ASCII, and '"', '<', '>', '\\', '^', '`', '{', '|', '}'). */
static char *url_raw(char *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7f && !strchr("\"<>\\^`{|}", c)) {
            *w++ = (char)c;
        } else {
            *w++ = '%';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    return w;
}

static int handle_https(cel_handler *h, cel_exchange *x, cel_response *res)
{
    https_handler *r = (https_handler *)h;
    const cel_request *req = x->req;
    cel_str a = req->authority;
    if (!a.n)
        cel_request_header(req, "host", 4, &a); /* HTTP/2 may send host instead */
    cel_str host = host_of(a);
    if (!host.n) {
        cel_response_error(res, 400);
        return 0;
    }
    size_t cap = 8 + host.n + r->port_len + 3 * (req->path.n + 1 + req->query.n);
    cel_kv *loc = cel_arena_alloc(x->arena, sizeof(*loc));
    char *buf = cel_arena_alloc(x->arena, cap);
    if (!loc || !buf)
        return CEL_ENOMEM;
    char *w = buf;
    memcpy(w, "https://", 8);
    w += 8;
    for (size_t i = 0; i < host.n; i++)
        *w++ = cel_http_lower(host.p[i]); /* as nginx's $host */
    memcpy(w, r->port, r->port_len);
    w = url_raw(w + r->port_len, req->path.p, req->path.n);
    if (req->query.n) {
        *w++ = '?';
        w = url_raw(w, req->query.p, req->query.n);
    }
    *loc = (cel_kv){CEL_STR_LIT("location"), {buf, (size_t)(w - buf)}};
    res->status = r->status;
    res->body = "";
    res->body_in_gen = 1;
    res->headers = loc;
    res->nheaders = 1;
    return 0;
}

static void destroy_https(cel_handler *h)
{
    free(h);
}

cel_handler *cel_handler_redirect_https_new(int status, unsigned port)
{
    https_handler *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->base.type = "redirect";
    r->base.handle = handle_https;
    r->base.destroy = destroy_https;
    r->status = status;
    if (port && port != 443)
        r->port_len = (size_t)snprintf(r->port, sizeof(r->port), ":%u", port & 0xffff);
    return &r->base;
}
