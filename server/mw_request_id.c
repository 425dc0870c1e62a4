#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "middleware.h"

#define ID_LEN 32
#define MAX_INCOMING 128

typedef struct mw_request_id {
    cel_mw base;
    cel_str header;
    int trust;
    char name[];
} mw_request_id;

/* "00" to "ff": two digits per octet, one load each. */
static char pairs[256][2];

__attribute__((constructor)) static void fill_pairs(void)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 256; i++) {
        pairs[i][0] = hex[i >> 4];
        pairs[i][1] = hex[i & 15];
    }
}

static int fresh(cel_exchange *x)
{
    char *p = cel_arena_alloc(x->arena, ID_LEN);
    if (!p)
        return CEL_ENOMEM;
    for (int half = 0; half < 2; half++) {
        uint64_t v = cel_env_rand(x->env);
        for (int i = 0; i < 8; i++, v >>= 8)
            memcpy(p + half * 16 + 2 * i, pairs[v & 255], 2);
    }
    x->req->id = (cel_str){p, ID_LEN};
    return 0;
}

static int usable(cel_str v)
{
    if (v.n == 0 || v.n > MAX_INCOMING)
        return 0;
    for (size_t i = 0; i < v.n; i++)
        if ((unsigned char)v.p[i] <= 0x20 || (unsigned char)v.p[i] >= 0x7f)
            return 0;
    return 1;
}

static int request(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    const mw_request_id *r = (const mw_request_id *)m;
    cel_str in;
    (void)res;
    if (r->trust && cel_request_header(x->req, r->header.p, r->header.n, &in) == 0 && usable(in))
        x->req->id = in;
    else
        fresh(x); /* out of memory: the request goes on without an id */
    return 0;
}

static void head(const cel_mw *m, cel_exchange *x, int status, cel_fields *f)
{
    const mw_request_id *r = (const mw_request_id *)m;
    (void)status;
    if (x->req->id.n || fresh(x) == 0)
        cel_fields_set_flags(f, r->header, x->req->id, CEL_FIELD_UNIQUE);
}

static void destroy(cel_mw *m)
{
    free(m);
}

static const cel_mw_ops ops = {.request = request, .head = head, .destroy = destroy};

cel_mw *cel_mw_request_id_new(cel_str header, int trust)
{
    mw_request_id *r = malloc(sizeof(*r) + header.n);
    if (!r)
        return NULL;
    r->base = (cel_mw){&ops, "request_id"};
    memcpy(r->name, header.p, header.n);
    r->header = (cel_str){r->name, header.n};
    r->trust = trust;
    return &r->base;
}
