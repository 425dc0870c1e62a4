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

/* The 8 nibbles of V as 8 lowercase hex digits, all at once: each nibble
 * spread to its own octet, then '0' added, and 39 more where it is past 9. */
static inline uint64_t hex8(uint32_t v)
{
    uint64_t x = v;
    x = (x | x << 16) & 0x0000ffff0000ffffu;
    x = (x | x << 8) & 0x00ff00ff00ff00ffu;
    x = (x | x << 4) & 0x0f0f0f0f0f0f0f0fu;
    uint64_t over9 = ((x + 0x0606060606060606u) >> 4) & 0x0101010101010101u;
    return x + 0x3030303030303030u + over9 * 39;
}

static int fresh(cel_exchange *x)
{
    char *p = cel_arena_alloc(x->arena, ID_LEN);
    if (!p)
        return CEL_ENOMEM;
    for (int half = 0; half < 2; half++) {
        uint64_t v = cel_env_rand(x->env), d[2] = {hex8((uint32_t)v), hex8((uint32_t)(v >> 32))};
        memcpy(p + half * 16, d, 16);
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
