#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "env.h"
#include "middleware.h"

#define ID_LEN 32
#define B64_LEN 22
#define B64_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#define MAX_INCOMING 128

typedef struct mw_request_id {
    cel_mw base;
    cel_id_source src;
    cel_str header;
    int b64;   /* format: base64url */
    int trust; /* trust_incoming */
    /* ~0 when HEADER is none of the head phase's own fields (cel_fields
     * fixed): the head looks for it past them alone. */
    size_t past_fixed;
    char name[];
} mw_request_id;

/* Sixteen octets at once (SSE2 on x86-64, NEON on arm64, plain code
 * elsewhere): the digits of the high nibbles, then those of the low ones.
 * Every bit is in one digit; which digit holds it does not matter for a
 * random id, and the table this replaced cost 82 instructions an id. */
typedef uint8_t octets16 __attribute__((vector_size(16)));

typedef int8_t soctets16 __attribute__((vector_size(16)));

/* Each octet 0 to 15 (signed: one compare instruction) as its digit. */
static inline octets16 hex_digits(octets16 v)
{
    return v + '0' + ((octets16)((soctets16)v > 9) & ('a' - '0' - 10));
}

typedef uint64_t words2 __attribute__((vector_size(16)));

static void hex_id(char *p, uint64_t a, uint64_t b)
{
    octets16 v = (octets16)(words2){a, b}, hi, lo;
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
    for (int i = 0; i < 4096; i++) {
        b64_pairs[i][0] = B64_ALPHABET[i & 63];
        b64_pairs[i][1] = B64_ALPHABET[i >> 6];
    }
}

/* Each octet 0 to 63 as its base64url character (RFC 4648 5): 'A' + v,
 * moved past 'Z' to the small letters, then down to the digits, '-' and
 * '_'. Sixteen at once, as the hex digits are. */
static inline octets16 b64_chars(octets16 v)
{
    soctets16 s = (soctets16)v;
    return v + 'A' + ((octets16)(s > 25) & 6) + ((octets16)(s > 51) & (uint8_t)-75) +
           ((octets16)(s > 61) & (uint8_t)-13) + ((octets16)(s > 62) & 49);
}

/* The high bit of each octet of V, octet 0's the lowest. */
static inline unsigned high_bits(octets16 v)
{
#if defined(__SSE2__)
    return (unsigned)_mm_movemask_epi8((__m128i)v);
#else
    uint64_t w[2];
    memcpy(w, &v, sizeof(w));
    /* each octet's high bit times the multiplier lands in the top octet */
    return (unsigned)((w[0] & CEL_HIGHS) * 0x0002040810204081ull >> 56) |
           (unsigned)((w[1] & CEL_HIGHS) * 0x0002040810204081ull >> 56) << 8;
#endif
}

/* Sixteen characters from the low six bits of the octets, six from their
 * two high bits (the sixteen seventh bits, then the sixth): two pairs of
 * twelve bits and the last eight, the final character A to D. */
static inline void b64_id(char *p, uint64_t a, uint64_t b)
{
    octets16 v = (octets16)(words2){a, b};
    octets16 lo = b64_chars(v & 63);
    uint32_t w = high_bits(v) | high_bits(v + v) << 16;
    memcpy(p, &lo, sizeof(lo));
    memcpy(p + 16, b64_pairs[w & 4095], 2);
    memcpy(p + 18, b64_pairs[w >> 12 & 4095], 2);
    memcpy(p + 20, b64_pairs[w >> 24], 2);
}

/* The id into P, B64_LEN or ID_LEN octets from X's arena. */
static inline __attribute__((always_inline)) void fresh_into(cel_exchange *x, char *p, int b64)
{
    uint64_t a, b;
    cel_env_rand2(x->env, &a, &b);
    if (b64)
        b64_id(p, a, b);
    else
        hex_id(p, a, b);
    x->req->id = (cel_str){p, b64 ? B64_LEN : ID_LEN};
}

static int fresh_as(cel_exchange *x, int b64)
{
    char *p = cel_arena_alloc(x->arena, b64 ? B64_LEN : ID_LEN);
    if (!p)
        return CEL_ENOMEM;
    fresh_into(x, p, b64);
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

/* The id as R's request phase gives it (out of memory: none). */
static void make(const mw_request_id *r, cel_exchange *x)
{
    cel_str in;
    if (r->trust && cel_request_header(x->req, r->header.p, r->header.n, &in) == 0 && usable(in))
        x->req->id = in;
    else
        fresh(r, x);
}

static void make_src(const cel_id_source *s, cel_exchange *x)
{
    make((const mw_request_id *)((const char *)s - offsetof(mw_request_id, src)), x);
}

static int request(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    (void)res;
    make((const mw_request_id *)m, x); /* out of memory: the request goes on without an id */
    return 0;
}

/* Without trust_incoming: nothing to look up, and no register to save. */
static int request_hex(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    (void)m, (void)res;
    fresh_as(x, 0);
    return 0;
}

static int request_b64(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    (void)m, (void)res;
    fresh_as(x, 1);
    return 0;
}

/* What head leaves to a call: no id yet where this member is not the one
 * to make it (a trusting one, or not the chain's last request_id), or a
 * field of that name already there (a handler's or another middleware's),
 * or no room. An id left to first use is the chain's last request_id's;
 * an answer given before the request phase gets one of this member's. */
static __attribute__((noinline)) void head_slow(const mw_request_id *r, cel_exchange *x,
                                                cel_fields *f)
{
    if (!x->req->id.n && x->id_as_is)
        fresh(r, x);
    if (cel_exchange_id(x).n)
        cel_fields_set_flags(f, r->header, x->req->id, CEL_FIELD_UNIQUE);
}

/* Every answer. Most often the id is made here, its first use: the chain's
 * last request_id (this one) makes it, with no request phase run for it
 * (and an answer given before that phase gets one the same way). The
 * common case appends the field with no call, so no register is saved.
 * Length and first octet first, as middleware.c does. */
static inline __attribute__((always_inline)) void head_as(const cel_mw *m, cel_exchange *x,
                                                          cel_fields *f, int b64)
{
    const mw_request_id *r = (const mw_request_id *)m;
    if (!x->req->id.n) {
        char *p;
        if (CEL_UNLIKELY(x->mw->id_src != &r->src) ||
            !(p = cel_arena_take(x->arena, b64 ? B64_LEN : ID_LEN))) {
            head_slow(r, x, f);
            return;
        }
        fresh_into(x, p, b64);
    }
    if (CEL_UNLIKELY(f->n == f->cap)) {
        head_slow(r, x, f);
        return;
    }
    cel_field *end = f->v + f->n;
    for (const cel_field *v = f->v + (f->fixed & r->past_fixed); v < end; v++)
        if (v->name_len == r->header.n && v->name[0] == r->header.p[0]) {
            head_slow(r, x, f);
            return;
        }
    *end = (cel_field){r->header.p, x->req->id.p, r->header.n, x->req->id.n,
                       CEL_FIELD_KEPT | CEL_FIELD_UNIQUE};
    f->n++;
}

static void head_hex(const cel_mw *m, cel_exchange *x, int status, cel_fields *f)
{
    (void)status;
    head_as(m, x, f, 0);
}

static void head_b64(const cel_mw *m, cel_exchange *x, int status, cel_fields *f)
{
    (void)status;
    head_as(m, x, f, 1);
}

/* trust_incoming: the incoming field is looked up when the id is made. */
static void head_trust(const cel_mw *m, cel_exchange *x, int status, cel_fields *f)
{
    (void)status;
    head_slow((const mw_request_id *)m, x, f);
}

static void destroy(cel_mw *m)
{
    free(m);
}

static const cel_id_source *id(const cel_mw *m)
{
    return &((const mw_request_id *)m)->src;
}

static const cel_mw_ops ops = {
    .request = request, .head = head_trust, .destroy = destroy, .id = id};
static const cel_mw_ops ops_hex = {
    .request = request_hex, .head = head_hex, .destroy = destroy, .id = id};
static const cel_mw_ops ops_b64 = {
    .request = request_b64, .head = head_b64, .destroy = destroy, .id = id};

/* The fields the head phase writes before the handler's (cel_fields.fixed). */
static const char *const phase_own[] = {"server", "date", "content-type"};

cel_mw *cel_mw_request_id_new(cel_str header, int trust, int base64url)
{
    mw_request_id *r = malloc(sizeof(*r) + header.n);
    if (!r)
        return NULL;
    r->base = (cel_mw){trust ? &ops : base64url ? &ops_b64 : &ops_hex, "request_id"};
    r->src.make = make_src;
    memcpy(r->name, header.p, header.n);
    r->header = (cel_str){r->name, header.n};
    r->b64 = base64url;
    r->trust = trust;
    r->past_fixed = ~(size_t)0;
    for (size_t i = 0; i < CEL_ARRAY_LEN(phase_own); i++)
        if (header.n == strlen(phase_own[i]) && memcmp(header.p, phase_own[i], header.n) == 0)
            r->past_fixed = 0;
    return &r->base;
}
