#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "env.h"
#include "middleware.h"

#define CACHE_SLOTS 64
#define MAX_CRED 256 /* "user:password" octets; longer is refused */

typedef struct slot {
    uint64_t expires_us; /* 0: empty */
    uint16_t len;
    char cred[MAX_CRED];
} slot;

/* One worker's: verified credentials, and crypt_rn's scratch memory. */
typedef struct wstate {
    slot cache[CACHE_SLOTS];
    struct crypt_data data;
    uint64_t seed;
} wstate;

typedef struct mw_basic_auth {
    cel_mw base;
    cel_str challenge; /* the www-authenticate value */
    cel_str *users, *hashes;
    size_t n;
    uint64_t cache_us;
    unsigned nworkers;
    wstate *w;
    char *strings;
} mw_basic_auth;

static int same_ct(const char *a, size_t an, const char *b, size_t bn)
{
    unsigned char d = an != bn;
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static int b64(unsigned char c)
{
    return c >= 'A' && c <= 'Z'   ? c - 'A'
           : c >= 'a' && c <= 'z' ? c - 'a' + 26
           : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+'             ? 62
           : c == '/'             ? 63
                                  : -1;
}

/* Standard base64 (padding optional) of IN into OUT (CAP). Length, or -1. */
static long decode(cel_str in, char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t k = 0, i = 0;
    for (; i < in.n && in.p[i] != '='; i++) {
        int v = b64((unsigned char)in.p[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        if ((bits += 6) >= 8) {
            bits -= 8;
            if (k == cap)
                return -1;
            out[k++] = (char)(acc >> bits);
        }
    }
    for (; i < in.n; i++)
        if (in.p[i] != '=')
            return -1;
    return (long)k;
}

static uint64_t mix(uint64_t seed, const char *p, size_t n)
{
    uint64_t h = seed;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3u;
    return h ^ (h >> 29);
}

/* 1 when CRED ("user:password", N octets) names a user whose hash matches. */
static int verify(const mw_basic_auth *a, wstate *w, const char *cred, size_t n)
{
    const char *colon = memchr(cred, ':', n);
    if (!colon)
        return 0;
    size_t ulen = (size_t)(colon - cred);
    char pass[MAX_CRED + 1];
    memcpy(pass, colon + 1, n - ulen - 1);
    pass[n - ulen - 1] = 0;
    if (memchr(pass, 0, n - ulen - 1))
        return 0;
    /* an unknown user is checked against the first user's hash: it costs
     * what a known one does */
    const char *hash = a->hashes[0].p;
    size_t hlen = a->hashes[0].n;
    int known = 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->users[i].n == ulen && memcmp(a->users[i].p, cred, ulen) == 0) {
            hash = a->hashes[i].p, hlen = a->hashes[i].n;
            known = 1;
            break;
        }
    const char *out = crypt_rn(pass, hash, &w->data, sizeof(w->data));
    explicit_bzero(pass, sizeof(pass));
    return known && out && same_ct(out, strlen(out), hash, hlen);
}

static int refuse(const mw_basic_auth *a, cel_exchange *x, cel_response *res)
{
    cel_response_error(res, 401);
    cel_kv *h = cel_arena_alloc(x->arena, sizeof(*h));
    if (h) {
        *h = (cel_kv){CEL_STR_LIT("www-authenticate"), a->challenge};
        res->headers = h;
        res->nheaders = 1;
    }
    return CEL_MW_ANSWERED;
}

static int request(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    const mw_basic_auth *a = (const mw_basic_auth *)m;
    cel_str v;
    if (cel_request_header(x->req, "authorization", 13, &v) || v.n < 6 ||
        strncasecmp(v.p, "basic ", 6) != 0 || x->env->worker_id >= a->nworkers)
        return refuse(a, x, res);
    cel_str enc = {v.p + 6, v.n - 6};
    while (enc.n && enc.p[0] == ' ')
        enc.p++, enc.n--;
    char cred[MAX_CRED];
    long n = decode(enc, cred, sizeof(cred));
    if (n <= 0)
        return refuse(a, x, res);
    wstate *w = &a->w[x->env->worker_id];
    uint64_t now = x->env->now_us;
    slot *s = &w->cache[mix(w->seed, cred, (size_t)n) % CACHE_SLOTS];
    if (s->expires_us > now && same_ct(s->cred, s->len, cred, (size_t)n))
        return 0;
    if (!verify(a, w, cred, (size_t)n)) {
        explicit_bzero(cred, sizeof(cred));
        return refuse(a, x, res);
    }
    if (a->cache_us) {
        memcpy(s->cred, cred, (size_t)n);
        s->len = (uint16_t)n;
        s->expires_us = now + a->cache_us;
    }
    explicit_bzero(cred, sizeof(cred));
    return 0;
}

static void destroy(cel_mw *m)
{
    mw_basic_auth *a = (mw_basic_auth *)m;
    if (a->w)
        explicit_bzero(a->w, a->nworkers * sizeof(*a->w));
    free(a->w);
    free(a->users);
    free(a->strings);
    free(a);
}

static const cel_mw_ops ops = {.request = request, .destroy = destroy};

cel_mw *cel_mw_basic_auth_new(cel_str realm, const cel_str *users, const cel_str *hashes, size_t n,
                              uint32_t cache_ms, unsigned nworkers)
{
    mw_basic_auth *a = calloc(1, sizeof(*a));
    size_t bytes = realm.n * 2 + 64;
    for (size_t i = 0; i < n; i++)
        bytes += users[i].n + hashes[i].n + 2;
    nworkers = nworkers ? nworkers : 1;
    if (!a || !(a->users = malloc((2 * n + 1) * sizeof(cel_str))) ||
        !(a->strings = malloc(bytes)) || !(a->w = calloc(nworkers, sizeof(wstate)))) {
        if (a) {
            free(a->users);
            free(a->strings);
        }
        free(a);
        return NULL;
    }
    a->base = (cel_mw){&ops, "basic_auth"};
    a->hashes = a->users + n;
    a->n = n;
    a->cache_us = (uint64_t)cache_ms * 1000;
    a->nworkers = nworkers;
    char *at = a->strings;
    /* Basic realm="R", charset="UTF-8" (RFC 7617); config refused '"' and '\\' in R */
    char *c0 = at;
    memcpy(at, "Basic realm=\"", 13), at += 13;
    memcpy(at, realm.p, realm.n), at += realm.n;
    memcpy(at, "\", charset=\"UTF-8\"", 18), at += 18;
    a->challenge = (cel_str){c0, (size_t)(at - c0)};
    for (size_t i = 0; i < n; i++) {
        memcpy(at, users[i].p, users[i].n);
        a->users[i] = (cel_str){at, users[i].n};
        at += users[i].n;
        memcpy(at, hashes[i].p, hashes[i].n);
        at[hashes[i].n] = 0; /* crypt_rn reads the setting as a C string */
        a->hashes[i] = (cel_str){at, hashes[i].n};
        at += hashes[i].n + 1;
    }
    for (unsigned i = 0; i < nworkers; i++)
        if (getrandom(&a->w[i].seed, sizeof(a->w[i].seed), 0) != (ssize_t)sizeof(a->w[i].seed))
            a->w[i].seed = 0xcbf29ce484222325u + i;
    return &a->base;
}
