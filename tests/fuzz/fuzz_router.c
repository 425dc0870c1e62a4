/*
 * fuzz_router: cel_router_add and cel_router_lookup against a reference model.
 *
 * The input is lines ('\n'-separated; empty lines are skipped):
 *   +METHODS PATTERN   a route; METHODS is letters G H P U D A O C T (GET, HEAD,
 *                      POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE), none
 *                      meaning GET|HEAD; '!' asks for an empty mask and 'X' for a
 *                      bit past CEL_M_ALL (both must be refused)
 *   M PATH             a lookup of PATH (raw bytes) for method letter M; any
 *                      other letter is a method with no bit (0)
 * Every route line is added first (the router forbids adds after a lookup), then
 * every lookup runs. One space after METHODS / M is optional and skipped.
 *
 * The model is a direct reading of router.h: a pattern matches a path segment by
 * segment (literals compared with the percent-decoded segment, ":x" one non-empty
 * segment, "*x" the rest); among the shapes that match, the one whose segment
 * kinds are smallest in literal < param < wildcard order wins. Checked:
 *   - add: 0 / CEL_EINVAL / CEL_EEXIST exactly as the model says, and the
 *     conflict reported is the first earlier route of that shape sharing a method;
 *   - lookup: FOUND with exactly the model's route and params (names, offsets and
 *     lengths, each inside the path), BAD_METHOD with the model's allow string,
 *     NOT_FOUND otherwise, data NULL unless FOUND.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "router.h"

#define MAX_ROUTES 64
#define MAX_LOOKUPS 256
#define MAX_SEGS 256
#define ROUTER_MAX_DEPTH 64 /* router.c's limit on segments: more is refused */

enum { K_LIT = 0, K_PARAM = 1, K_WILD = 2 };

typedef struct mseg {
    int kind;
    const char *p; /* literal text or param name, into the pattern */
    size_t n;
} mseg;

typedef struct mroute {
    char *pattern;
    unsigned mask;
    int valid, added;
    mseg segs[MAX_SEGS];
    unsigned nsegs, nparams;
} mroute;

static const char method_letters[] = "GHPUDAOCT";
static const char *const method_names[] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
};

static unsigned letter_bit(char c)
{
    const char *p = c ? strchr(method_letters, c) : NULL;
    return p ? 1u << (unsigned)(p - method_letters) : 0;
}

/* Splits the pattern and checks it as router.h describes; sets valid. */
static void model_parse(mroute *r)
{
    const char *s = r->pattern;
    r->valid = 0;
    r->nsegs = r->nparams = 0;
    if (s[0] != '/')
        return;
    const char *p = s + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (r->nsegs == MAX_SEGS)
            return; /* far past ROUTER_MAX_DEPTH: refused either way */
        mseg *g = &r->segs[r->nsegs++];
        *g = (mseg){K_LIT, p, n};
        if (n > 0 && (p[0] == ':' || p[0] == '*')) {
            g->kind = p[0] == ':' ? K_PARAM : K_WILD;
            g->p = p + 1;
            g->n = n - 1;
            if (g->n == 0)
                return; /* a param or wildcard with no name */
            if (g->kind == K_WILD && end)
                return; /* a wildcard not last */
            for (unsigned i = 0; i + 1 < r->nsegs; i++)
                if (r->segs[i].kind != K_LIT && r->segs[i].n == g->n &&
                    memcmp(r->segs[i].p, g->p, g->n) == 0)
                    return; /* one name twice */
            if (++r->nparams > CEL_MAX_PARAMS)
                return;
        }
        if (!end)
            break;
        p = end + 1;
    }
    r->valid = 1;
}

static int same_shape(const mroute *a, const mroute *b)
{
    if (a->nsegs != b->nsegs)
        return 0;
    for (unsigned i = 0; i < a->nsegs; i++) {
        if (a->segs[i].kind != b->segs[i].kind)
            return 0;
        if (a->segs[i].kind == K_LIT &&
            (a->segs[i].n != b->segs[i].n || memcmp(a->segs[i].p, b->segs[i].p, a->segs[i].n)))
            return 0;
    }
    return 1;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)(c | 0x20);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Whether the raw segment S[0..N) percent-decodes to exactly LIT[0..LN). */
static int seg_equals(const char *s, size_t n, const char *lit, size_t ln)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
            hexval((unsigned char)s[i + 2]) >= 0) {
            c = (unsigned char)(hexval((unsigned char)s[i + 1]) << 4 |
                                hexval((unsigned char)s[i + 2]));
            i += 3;
        } else {
            i++;
        }
        if (o == ln || (unsigned char)lit[o] != c)
            return 0;
        o++;
    }
    return o == ln;
}

typedef struct mparam {
    size_t off, len;
} mparam;

/* Whether route R matches PATH (which starts with '/'); fills PARAMS. */
static int model_match(const mroute *r, const char *path, size_t len, mparam *params)
{
    size_t pos = 1;
    unsigned np = 0;
    for (unsigned i = 0; i < r->nsegs; i++) {
        const mseg *g = &r->segs[i];
        if (g->kind == K_WILD) {
            params[np++] = (mparam){pos, len - pos};
            return 1;
        }
        const char *slash = pos < len ? memchr(path + pos, '/', len - pos) : NULL;
        size_t e = slash ? (size_t)(slash - path) : len;
        if (g->kind == K_LIT && !seg_equals(path + pos, e - pos, g->p, g->n))
            return 0;
        if (g->kind == K_PARAM) {
            if (e == pos)
                return 0;
            params[np++] = (mparam){pos, e - pos};
        }
        if (i + 1 == r->nsegs)
            return e == len;
        if (e == len)
            return 0;
        pos = e + 1;
    }
    return 0; /* no segments: cannot happen for a valid pattern */
}

/* <0 when A's segment kinds come first in literal < param < wildcard order. */
static int precedence(const mroute *a, const mroute *b)
{
    for (unsigned i = 0; i < a->nsegs && i < b->nsegs; i++)
        if (a->segs[i].kind != b->segs[i].kind)
            return a->segs[i].kind - b->segs[i].kind;
    return (int)a->nsegs - (int)b->nsegs;
}

static void allow_string(unsigned mask, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < CEL_ARRAY_LEN(method_names); i++) {
        if (!(mask & (1u << i)))
            continue;
        o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? ", " : "", method_names[i]);
    }
}

static mroute routes[MAX_ROUTES];

static void check_lookup(const cel_router *rt, size_t nroutes, const char *line, size_t n)
{
    unsigned method = n ? letter_bit(line[0]) : 0;
    size_t skip = n ? 1 : 0;
    if (skip < n && line[skip] == ' ')
        skip++;
    /* an exact-size copy: a read past the path's end is an ASan report */
    size_t len = n - skip;
    char *path = fuzz_dup(line + skip, len, 0);

    cel_route_match m;
    memset(&m, 0xa5, sizeof(m));
    int rc = cel_router_lookup(rt, path, len, method, &m);

    /* the model */
    const mroute *best = NULL, *best_any = NULL;
    mparam best_params[CEL_MAX_PARAMS + 1], tmp[CEL_MAX_PARAMS + 1];
    if (len > 0 && path[0] == '/') {
        for (size_t i = 0; i < nroutes; i++) {
            const mroute *r = &routes[i];
            if (!r->added || !model_match(r, path, len, tmp))
                continue;
            if (!best_any || precedence(r, best_any) < 0)
                best_any = r;
            if ((r->mask & method) && (!best || precedence(r, best) < 0)) {
                best = r;
                memcpy(best_params, tmp, sizeof(tmp));
            }
        }
    }

    if (rc == CEL_ROUTE_FOUND) {
        FUZZ_CHECK(best, "lookup %u \"%.*s\": FOUND, the model finds no route", method, (int)len,
                   path);
        FUZZ_CHECK(m.data == best, "lookup %u \"%.*s\": FOUND route \"%s\", the model says \"%s\"",
                   method, (int)len, path,
                   (m.data >= (void *)routes && m.data < (void *)(routes + nroutes))
                       ? ((const mroute *)m.data)->pattern
                       : "(not a route that was added)",
                   best->pattern);
        FUZZ_CHECK(m.nparams == best->nparams, "lookup \"%.*s\": %u params, want %u", (int)len,
                   path, m.nparams, best->nparams);
        unsigned k = 0;
        for (unsigned i = 0; i < best->nsegs; i++) {
            const mseg *g = &best->segs[i];
            if (g->kind == K_LIT)
                continue;
            const cel_param *p = &m.params[k];
            FUZZ_CHECK((size_t)p->off + p->len <= len, "param %u [%u, +%u) outside a path of %zu",
                       k, p->off, p->len, len);
            FUZZ_CHECK(p->name && strlen(p->name) == g->n && memcmp(p->name, g->p, g->n) == 0,
                       "param %u of \"%s\" named \"%s\"", k, best->pattern,
                       p->name ? p->name : "(null)");
            FUZZ_CHECK(p->off == best_params[k].off && p->len == best_params[k].len,
                       "lookup \"%.*s\" on \"%s\": param %s at [%u, +%u), want [%zu, +%zu)",
                       (int)len, path, best->pattern, p->name, p->off, p->len, best_params[k].off,
                       best_params[k].len);
            if (g->kind == K_PARAM)
                FUZZ_CHECK(p->len > 0 && !memchr(path + p->off, '/', p->len),
                           "param %s is not one non-empty segment", p->name);
            k++;
        }
    } else if (rc == CEL_ROUTE_BAD_METHOD) {
        FUZZ_CHECK(!best && best_any, "lookup %u \"%.*s\": BAD_METHOD, the model says %s", method,
                   (int)len, path, best ? best->pattern : "NOT_FOUND");
        FUZZ_CHECK(m.data == NULL && m.allow, "BAD_METHOD with data or without allow");
        unsigned mask = 0;
        for (size_t i = 0; i < nroutes; i++)
            if (routes[i].added && same_shape(&routes[i], best_any))
                mask |= routes[i].mask;
        char want[CEL_ALLOW_MAX * 2];
        allow_string(mask, want, sizeof(want));
        FUZZ_CHECK(strlen(m.allow) < CEL_ALLOW_MAX && strcmp(m.allow, want) == 0,
                   "lookup \"%.*s\": allow \"%s\", want \"%s\" (shape of \"%s\")", (int)len, path,
                   m.allow, want, best_any->pattern);
    } else {
        FUZZ_CHECK(rc == CEL_ROUTE_NOT_FOUND, "lookup returned %d", rc);
        FUZZ_CHECK(!best_any, "lookup %u \"%.*s\": NOT_FOUND, the model matches \"%s\"", method,
                   (int)len, path, best_any->pattern);
        FUZZ_CHECK(m.data == NULL, "NOT_FOUND with data");
    }
    free(path);
}

static void add_route(cel_router *rt, size_t i, const char *line, size_t n)
{
    mroute *r = &routes[i];
    size_t k = 1; /* past '+' */
    unsigned mask = 0;
    int letters = 0;
    for (; k < n; k++) {
        if (line[k] == '!')
            letters = 1;
        else if (line[k] == 'X')
            mask |= (unsigned)CEL_M_ALL + 1;
        else if (letter_bit(line[k]))
            mask |= letter_bit(line[k]);
        else
            break;
        letters = 1;
    }
    if (!letters)
        mask = CEL_M_GET | CEL_M_HEAD;
    if (k < n && line[k] == ' ')
        k++;
    /* patterns are C strings: an embedded NUL ends them */
    r->pattern = fuzz_dup(line + k, strnlen(line + k, n - k), 1);
    r->mask = mask;
    r->added = 0;
    model_parse(r);

    /* what the model expects */
    int want = 0;
    const mroute *conflict = NULL;
    if (mask == 0 || (mask & ~(unsigned)CEL_M_ALL) || !r->valid) {
        want = CEL_EINVAL;
    } else {
        for (size_t j = 0; j < i && !conflict; j++)
            if (routes[j].added && (routes[j].mask & mask) && same_shape(&routes[j], r))
                conflict = &routes[j];
        if (conflict)
            want = CEL_EEXIST;
    }

    void *got_conflict = NULL;
    char err[96];
    int rc = cel_router_add(rt, r->pattern, mask, r, &got_conflict, err, sizeof(err));
    if (rc == CEL_EINVAL && want == 0 && r->nsegs > ROUTER_MAX_DEPTH)
        return; /* deeper than the router takes: refused, as it may */
    FUZZ_CHECK(rc == want, "add \"%s\" mask 0x%x: %d, want %d (%s)", r->pattern, mask, rc, want,
               rc ? err : "");
    if (rc == CEL_EEXIST)
        FUZZ_CHECK(got_conflict == conflict, "add \"%s\": conflict %p, want \"%s\"", r->pattern,
                   got_conflict, conflict->pattern);
    r->added = rc == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *end = s + size;
    cel_router *rt = cel_router_new();
    if (!rt)
        return 0;
    size_t nroutes = 0;

    /* routes first */
    for (const char *p = s; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n && p[0] == '+' && nroutes < MAX_ROUTES) {
            add_route(rt, nroutes, p, n);
            nroutes++;
        }
        p += n + 1;
    }
    /* then lookups */
    size_t nlook = 0;
    for (const char *p = s; p < end && nlook < MAX_LOOKUPS;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n && p[0] != '+') {
            check_lookup(rt, nroutes, p, n);
            nlook++;
        }
        p += n + 1;
    }

    cel_router_free(rt);
    for (size_t i = 0; i < nroutes; i++)
        free(routes[i].pattern);
    return 0;
}
