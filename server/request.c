#include "request.h"

#include <string.h>

/* Is the NUL-terminated Z exactly the N bytes at NAME? One pass, no strlen. */
static inline int name_is(const char *z, const char *name, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!z[i] || z[i] != name[i])
            return 0;
    return z[n] == '\0';
}

int cel_request_param(const cel_request *req, const char *name, size_t nlen, cel_str *out)
{
    for (unsigned i = 0; i < req->nparams; i++) {
        const cel_param *p = &req->params[i];
        if (name_is(p->name, name, nlen)) {
            out->p = req->path.p + p->off;
            out->n = p->len;
            return 0;
        }
    }
    return CEL_ENOTFOUND;
}

int cel_request_query(const cel_request *req, const char *name, size_t nlen, cel_str *out)
{
    if (req->query.n == 0)
        return CEL_ENOTFOUND;
    const char *p = req->query.p, *end = p + req->query.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *arg_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(arg_end - p));
        const char *key_end = eq ? eq : arg_end;
        if ((size_t)(key_end - p) == nlen && memcmp(p, name, nlen) == 0) {
            out->p = eq ? eq + 1 : arg_end;
            out->n = eq ? (size_t)(arg_end - eq - 1) : 0;
            return 0;
        }
        p = arg_end + 1;
    }
    return CEL_ENOTFOUND;
}

int cel_request_header(const cel_request *req, const char *name, size_t nlen, cel_str *out)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        const cel_header *h = &req->headers[i];
        if (h->name.n == nlen && memcmp(h->name.p, name, nlen) == 0) {
            *out = h->value;
            return 0;
        }
    }
    return CEL_ENOTFOUND;
}
