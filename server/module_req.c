/* Cookies and form fields, parsed on each call from the request's header
 * fields and body, copied into the request's memory. */
#include "module_req.h"

#include <string.h>

#include "http.h"
#include "router.h"

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int copy_out(celeris_req *req, const char *p, size_t n, celeris_str *out)
{
    char *d = celeris_req_alloc(req, n + 1);
    if (!d)
        return CELERIS_NOMEM;
    memcpy(d, p, n);
    d[n] = 0;
    *out = (celeris_str){d, n};
    return CELERIS_OK;
}

/* NAME's value among the "a=1; b=2" pairs of one Cookie field, or NULL. */
static const char *find_cookie(const char *p, size_t n, const char *name, size_t nlen, size_t *vlen)
{
    const char *end = p + n;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ';'))
            p++;
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pair_end = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        if (eq) {
            const char *k_end = eq;
            while (k_end > p && is_ows(k_end[-1]))
                k_end--;
            if ((size_t)(k_end - p) == nlen && memcmp(p, name, nlen) == 0) {
                const char *v = eq + 1, *v_end = pair_end;
                while (v < v_end && is_ows(*v))
                    v++;
                while (v_end > v && is_ows(v_end[-1]))
                    v_end--;
                if (v_end - v >= 2 && *v == '"' && v_end[-1] == '"') {
                    v++;
                    v_end--;
                }
                *vlen = (size_t)(v_end - v);
                return v;
            }
        }
        p = pair_end;
    }
    return NULL;
}

int cel_module_cookie(celeris_req *req, const cel_request *r, const char *name, celeris_str *out)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++) {
        const cel_header *h = &r->headers[i];
        if (h->name.n != 6 || memcmp(h->name.p, "cookie", 6) != 0)
            continue;
        size_t vlen;
        const char *v = find_cookie(h->value.p, h->value.n, name, nlen, &vlen);
        if (v)
            return copy_out(req, v, vlen, out);
    }
    return CELERIS_NOTFOUND;
}

static int is_form(const cel_request *r)
{
    static const char form[] = "application/x-www-form-urlencoded";
    cel_str ct;
    if (cel_request_header(r, "content-type", 12, &ct))
        return 0;
    const char *p = ct.p, *end = ct.p + ct.n;
    const char *semi = memchr(p, ';', ct.n);
    if (semi)
        end = semi;
    while (p < end && is_ows(*p))
        p++;
    while (end > p && is_ows(end[-1]))
        end--;
    if ((size_t)(end - p) != sizeof(form) - 1)
        return 0;
    for (size_t i = 0; i < sizeof(form) - 1; i++)
        if (cel_http_lower((unsigned char)p[i]) != (unsigned char)form[i])
            return 0;
    return 1;
}

int cel_module_form(celeris_req *req, const cel_request *r, const char *name, celeris_str *out)
{
    if (!r->body_len || !is_form(r))
        return CELERIS_NOTFOUND;
    size_t nlen = strlen(name);
    /* A key that decodes to NAME has between NLEN and 3 * NLEN raw bytes. */
    char small[256], *key = small;
    if (nlen > sizeof(small) / 3 && !(key = celeris_req_alloc(req, 3 * nlen)))
        return CELERIS_NOMEM;
    const char *p = r->body, *end = r->body + r->body_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *f_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(f_end - p));
        const char *k_end = eq ? eq : f_end;
        size_t klen = (size_t)(k_end - p);
        if (klen >= nlen && klen <= 3 * nlen && cel_pct_decode(key, p, klen, 1) == nlen &&
            memcmp(key, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : f_end;
            size_t vlen = (size_t)(f_end - v);
            char *d = celeris_req_alloc(req, vlen + 1);
            if (!d)
                return CELERIS_NOMEM;
            size_t n = cel_pct_decode(d, v, vlen, 1);
            d[n] = 0;
            *out = (celeris_str){d, n};
            return CELERIS_OK;
        }
        p = f_end + 1;
    }
    return CELERIS_NOTFOUND;
}
