#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "middleware.h"

#define ID_LEN 32
#define MAX_INCOMING 128

typedef struct mw_request_id {
    cel_mw base;
    cel_str header;
    char name[];
} mw_request_id;

/* Sixteen octets at once (SSE2 on x86-64, NEON on arm64, plain code
 * elsewhere): the digits of the high nibbles, then those of the low ones.
 * Every bit is in one digit; which digit holds it does not matter for a
 * random id, and the table this replaced cost 82 instructions an id. */
typedef uint8_t octets16 __attribute__((vector_size(16)));

static inline octets16 hex_digits(octets16 v)
{
    return v + '0' + ((octets16)(v > 9) & ('a' - '0' - 10));
}

static int fresh(cel_exchange *x)
{
    char *p = cel_arena_alloc(x->arena, ID_LEN);
    if (!p)
        return CEL_ENOMEM;
    uint64_t r[2] = {cel_env_rand(x->env), cel_env_rand(x->env)};
    octets16 v, hi, lo;
    memcpy(&v, r, sizeof(v));
    hi = hex_digits(v >> 4);
    lo = hex_digits(v & 15);
    memcpy(p, &hi, sizeof(hi));
    memcpy(p + sizeof(hi), &lo, sizeof(lo));
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
    if (cel_request_header(x->req, r->header.p, r->header.n, &in) == 0 && usable(in))
        x->req->id = in;
    else
        fresh(x); /* out of memory: the request goes on without an id */
    return 0;
}

/* Without trust_incoming: nothing to look up, and no register to save. */
static int request_fresh(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    (void)m, (void)res;
    fresh(x); /* out of memory: the request goes on without an id */
    return 0;
}

/* What head leaves to a call: no id yet (an answer given before the request
 * phase), or a field of that name already there (a handler's or another
 * middleware's), or no room. */
static __attribute__((noinline)) void head_slow(const mw_request_id *r, cel_exchange *x,
                                                cel_fields *f)
{
    if (x->req->id.n || fresh(x) == 0)
        cel_fields_set_flags(f, r->header, x->req->id, CEL_FIELD_UNIQUE);
}

/* Every answer: the common case appends the field with no call, so no
 * register is saved. Length and first octet first, as middleware.c does. */
static void head(const cel_mw *m, cel_exchange *x, int status, cel_fields *f)
{
    const mw_request_id *r = (const mw_request_id *)m;
    (void)status;
    if (CEL_UNLIKELY(!x->req->id.n) || CEL_UNLIKELY(f->n == f->cap)) {
        head_slow(r, x, f);
        return;
    }
    for (size_t i = 0; i < f->n; i++)
        if (f->v[i].name_len == r->header.n && f->v[i].name[0] == r->header.p[0]) {
            head_slow(r, x, f);
            return;
        }
    f->v[f->n++] = (cel_field){r->header.p, x->req->id.p, r->header.n, x->req->id.n,
                               CEL_FIELD_KEPT | CEL_FIELD_UNIQUE};
}

static void destroy(cel_mw *m)
{
    free(m);
}

static const cel_mw_ops ops = {.request = request, .head = head, .destroy = destroy};
static const cel_mw_ops ops_fresh = {.request = request_fresh, .head = head, .destroy = destroy};

cel_mw *cel_mw_request_id_new(cel_str header, int trust)
{
    mw_request_id *r = malloc(sizeof(*r) + header.n);
    if (!r)
        return NULL;
    r->base = (cel_mw){trust ? &ops : &ops_fresh, "request_id"};
    memcpy(r->name, header.p, header.n);
    r->header = (cel_str){r->name, header.n};
    return &r->base;
}
