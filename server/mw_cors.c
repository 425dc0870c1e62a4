#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "middleware.h"

typedef struct mw_cors {
    cel_mw base;
    cel_str *origins, *methods, *headers;
    size_t norigins, nmethods, nheaders;
    int any_origin, any_header, credentials;
    /* the preflight's answer fields and the joined lists they carry */
    cel_kv pre[5];
    size_t npre_fixed; /* pre[0..npre_fixed) are constant */
    cel_str expose;    /* joined; empty: none */
    char *strings;
} mw_cors;

static const cel_str ACAO = CEL_STR_LIT("access-control-allow-origin");
static const cel_str VARY = CEL_STR_LIT("vary");
static const cel_str ORIGIN = CEL_STR_LIT("origin");

static int in(const cel_str *v, size_t n, cel_str s)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].n == s.n && memcmp(v[i].p, s.p, s.n) == 0)
            return 1;
    return 0;
}

static int in_lower(const cel_str *v, size_t n, const char *s, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i].n != len)
            continue;
        size_t k = 0;
        while (k < len && v[i].p[k] == (char)cel_http_lower((unsigned char)s[k]))
            k++;
        if (k == len)
            return 1;
    }
    return 0;
}

static int origin_ok(const mw_cors *c, cel_str origin)
{
    return c->any_origin || in(c->origins, c->norigins, origin);
}

/* Each name of the comma-separated list V is allowed. */
static int headers_ok(const mw_cors *c, cel_str v)
{
    if (c->any_header)
        return 1;
    const char *p = v.p, *end = v.p + v.n;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if (p > s && !in_lower(c->headers, c->nheaders, s, (size_t)(p - s)))
            return 0;
    }
    return 1;
}

static int request(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    const mw_cors *c = (const mw_cors *)m;
    const cel_request *req = x->req;
    cel_str origin, method, hdrs = {"", 0};
    if (req->method_bit != CEL_M_OPTIONS || cel_request_header(req, "origin", 6, &origin) ||
        cel_request_header(req, "access-control-request-method", 29, &method))
        return 0;
    cel_request_header(req, "access-control-request-headers", 30, &hdrs);
    int ok = origin_ok(c, origin) && in(c->methods, c->nmethods, method) && headers_ok(c, hdrs);
    cel_kv *h = cel_arena_alloc(x->arena, sizeof(c->pre));
    if (!h) {
        cel_response_error(res, 500);
        return CEL_MW_ANSWERED;
    }
    memcpy(h, c->pre, sizeof(c->pre));
    size_t n = ok ? c->npre_fixed : 1; /* a refusal carries the vary field alone */
    if (ok && c->any_header && hdrs.n)
        h[n++] = (cel_kv){CEL_STR_LIT("access-control-allow-headers"), hdrs};
    if (ok) {
        memset(res, 0, sizeof(*res));
        res->status = 204;
    } else {
        cel_response_error(res, 403);
    }
    res->headers = h;
    res->nheaders = n;
    return CEL_MW_ANSWERED;
}

static void head(const cel_mw *m, cel_exchange *x, int status, cel_fields *f)
{
    const mw_cors *c = (const mw_cors *)m;
    cel_str origin;
    if (!c->any_origin || c->credentials)
        cel_fields_add(f, VARY, ORIGIN);
    if (cel_request_header(x->req, "origin", 6, &origin) || !origin_ok(c, origin))
        return;
    if (CEL_UNLIKELY(x->req->method_bit == CEL_M_OPTIONS) && status == 403 &&
        cel_request_header(x->req, "access-control-request-method", 29, &origin) == 0)
        return; /* a refused preflight: nothing allowed */
    if (c->any_origin && !c->credentials)
        cel_fields_set(f, ACAO, CEL_STR_LIT("*"));
    else
        cel_fields_set(f, ACAO, origin);
    if (c->credentials)
        cel_fields_set(f, CEL_STR_LIT("access-control-allow-credentials"), CEL_STR_LIT("true"));
    if (c->expose.n)
        cel_fields_set(f, CEL_STR_LIT("access-control-expose-headers"), c->expose);
}

static void destroy(cel_mw *m)
{
    mw_cors *c = (mw_cors *)m;
    free(c->origins);
    free(c->strings);
    free(c);
}

static const cel_mw_ops ops = {
    .request = request, .head = head, .destroy = destroy, .request_methods = CEL_M_OPTIONS};

/* Copies N strings of V to *AT (advanced), into OUT. */
static void copy_list(char **at, const cel_str *v, size_t n, cel_str *out)
{
    for (size_t i = 0; i < n; i++) {
        memcpy(*at, v[i].p, v[i].n);
        out[i] = (cel_str){*at, v[i].n};
        *at += v[i].n;
    }
}

/* V joined by ", " at *AT (advanced). */
static cel_str join(char **at, const cel_str *v, size_t n)
{
    char *start = *at;
    for (size_t i = 0; i < n; i++) {
        if (i) {
            memcpy(*at, ", ", 2);
            *at += 2;
        }
        memcpy(*at, v[i].p, v[i].n);
        *at += v[i].n;
    }
    return (cel_str){start, (size_t)(*at - start)};
}

static size_t bytes(const cel_str *v, size_t n)
{
    size_t b = 0;
    for (size_t i = 0; i < n; i++)
        b += 2 * (v[i].n + 2); /* a copy, and in a joined list */
    return b;
}

cel_mw *cel_mw_cors_new(const cel_cors_conf *k)
{
    mw_cors *c = calloc(1, sizeof(*c));
    size_t nstr = k->norigins + k->nmethods + k->nheaders;
    size_t total = bytes(k->origins, k->norigins) + bytes(k->methods, k->nmethods) +
                   bytes(k->headers, k->nheaders) + bytes(k->expose, k->nexpose) + 32;
    if (!c || !(c->origins = malloc((nstr + 1) * sizeof(cel_str))) ||
        !(c->strings = malloc(total))) {
        if (c)
            free(c->origins);
        free(c);
        return NULL;
    }
    c->base = (cel_mw){&ops, "cors"};
    c->methods = c->origins + k->norigins;
    c->headers = c->methods + k->nmethods;
    c->norigins = k->norigins, c->nmethods = k->nmethods, c->nheaders = k->nheaders;
    c->any_origin = k->any_origin, c->any_header = k->any_header;
    c->credentials = k->credentials;
    char *at = c->strings;
    copy_list(&at, k->origins, k->norigins, c->origins);
    copy_list(&at, k->methods, k->nmethods, c->methods);
    copy_list(&at, k->headers, k->nheaders, c->headers);
    c->expose = join(&at, k->expose, k->nexpose);
    size_t n = 0;
    /* the head phase adds vary: origin */
    c->pre[n++] = (cel_kv){VARY, CEL_STR_LIT("access-control-request-method, "
                                             "access-control-request-headers")};
    c->pre[n++] =
        (cel_kv){CEL_STR_LIT("access-control-allow-methods"), join(&at, k->methods, k->nmethods)};
    if (k->nheaders)
        c->pre[n++] = (cel_kv){CEL_STR_LIT("access-control-allow-headers"),
                               join(&at, k->headers, k->nheaders)};
    if (k->max_age_s >= 0) {
        int len = snprintf(at, 24, "%lld", k->max_age_s);
        c->pre[n++] = (cel_kv){CEL_STR_LIT("access-control-max-age"), {at, (size_t)len}};
        at += len;
    }
    c->npre_fixed = n;
    return &c->base;
}
