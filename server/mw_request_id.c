#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "middleware.h"

#define ID_LEN 32
#define B64_LEN 22
#define MAX_INCOMING 128

typedef struct mw_request_id {
    cel_mw base;
    cel_str header;
    int b64; /* format: base64url */
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

static void hex_id(char *p, const uint64_t r[2])
{
    octets16 v, hi, lo;
    memcpy(&v, r, sizeof(v));
    hi = hex_digits(v >> 4);
    lo = hex_digits(v & 15);
    memcpy(p, &hi, sizeof(hi));
    memcpy(p + sizeof(hi), &lo, sizeof(lo));
}

/* Two base64url characters for each 12 bits: "AA" to "__", the low six
 * bits first. */
static char b64_pairs[4096][2];

__attribute__((constructor)) static void fill_b64_pairs(void)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < 4096; i++) {
        b64_pairs[i][0] = a[i & 63];
        b64_pairs[i][1] = a[i >> 6];
    }
}

/* 60 bits of each word as ten characters, and their last four bits each as
 * two characters more, the second of which holds two bits (A to D). */
static void b64_id(char *p, const uint64_t r[2])
{
    uint64_t a = r[0], b = r[1];
    for (int i = 0; i < 5; i++, a >>= 12, b >>= 12) {
        memcpy(p + 2 * i, b64_pairs[a & 4095], 2);
        memcpy(p + 10 + 2 * i, b64_pairs[b & 4095], 2);
    }
    memcpy(p + 20, b64_pairs[a | b << 4], 2);
}

static inline __attribute__((always_inline)) int fresh_as(cel_exchange *x, int b64)
{
    size_t n = b64 ? B64_LEN : ID_LEN;
    char *p = cel_arena_alloc(x->arena, n);
    if (!p)
        return CEL_ENOMEM;
    uint64_t r[2] = {cel_env_rand(x->env), cel_env_rand(x->env)};
    if (b64)
        b64_id(p, r);
    else
        hex_id(p, r);
    x->req->id = (cel_str){p, n};
    return 0;
}

static int fresh(const mw_request_id *m, cel_exchange *x)
{
    return m->b64 ? fresh_as(x, 1) : fresh_as(x, 0);
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
        fresh(r, x); /* out of memory: the request goes on without an id */
    return 0;
}

/* Without trust_incoming: nothing to look up, and no register to save. */
static int request_hex(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    (void)m, (void)res;
    fresh_as(x, 0); /* out of memory: the request goes on without an id */
    return 0;
}

static int request_b64(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    (void)m, (void)res;
    fresh_as(x, 1);
    return 0;
}

/* What head leaves to a call: no id yet (an answer given before the request
 * phase), or a field of that name already there (a handler's or another
 * middleware's), or no room. */
static __attribute__((noinline)) void head_slow(const mw_request_id *r, cel_exchange *x,
                                                cel_fields *f)
{
    if (x->req->id.n || fresh(r, x) == 0)
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
static const cel_mw_ops ops_hex = {.request = request_hex, .head = head, .destroy = destroy};
static const cel_mw_ops ops_b64 = {.request = request_b64, .head = head, .destroy = destroy};

cel_mw *cel_mw_request_id_new(cel_str header, int trust, int base64url)
{
    mw_request_id *r = malloc(sizeof(*r) + header.n);
    if (!r)
        return NULL;
    r->base = (cel_mw){trust ? &ops : base64url ? &ops_b64 : &ops_hex, "request_id"};
    memcpy(r->name, header.p, header.n);
    r->header = (cel_str){r->name, header.n};
    r->b64 = base64url;
    return &r->base;
}
