/*
 * Route tree. A node stands for one segment position; its children are the
 * candidates for the next request segment, tried literal, then param, then
 * wildcard. Every node sits at a fixed segment depth, so a DFS visits each node at
 * most once per lookup: backtracking is bounded by the tree size, never
 * exponential in the path. A node's literal children are compared one by one
 * up to HASH_MIN of them and found through a hash table past that, so neither
 * a lookup nor adding a route slows down with the number of siblings.
 *
 * A pattern "/" is one empty segment, "/a/" is "a" then an empty segment, and
 * "/a//b" has an empty middle segment; request paths split the same way, so empty
 * segments and trailing slashes are significant with no special cases.
 *
 * Only a segment that *starts* with ':' or '*' is special. "/a:b" and "/v1*" are
 * plain literals, so URLs with colons in them need no escaping; the price is that
 * no literal segment can begin with ':' or '*'. Pattern text is taken literally
 * (a '%' in a pattern is just a '%'); request segments are percent-decoded before
 * being compared with literals, after the path was split on its raw '/'s, so
 * "%2F" never acts as a separator.
 */
#include "router.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64
/* Up to this many literal children a node compares each in turn (cheapest for
 * the few most nodes have); past it, a hash table finds them, so a lookup costs
 * the same among 20,000 siblings as among ten. */
#define HASH_MIN 8

static const char *const method_names[] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
};

struct route {
    unsigned mask;
    void *data;
    unsigned nnames;
    char **names; /* one block: the pointer array, then the strings */
};

/* All the routes of one shape; their masks are disjoint. */
struct leaf {
    unsigned mask;
    size_t n;
    struct route *routes;
    char allow[CEL_ALLOW_MAX];
};

struct node {
    char *lit; /* this node's text when it is a literal child */
    size_t litlen;
    int lit_pct; /* the literal holds a '%' (so raw bytes equal to it may decode otherwise) */
    struct node **lits;
    size_t nlits, litcap;
    size_t maxlit; /* longest literal child, to reject long segments early */
    /* The first octet of each of the first HASH_MIN literals, in LITS' order:
     * find_lit_here runs over these, not over the children. */
    unsigned char firsts[HASH_MIN];
    /* More than HASH_MIN literal children: LITS again, by the hash of their text
     * (open addressing, linear probing; a power of two of slots, at least twice
     * NLITS, so a probe always ends at an empty slot). NULL up to HASH_MIN. */
    struct node **slots;
    size_t smask;
    struct node *param;
    struct node *wild; /* always childless: a wildcard ends the pattern */
    struct leaf *leaf;
    int choice; /* more than one way on (two of literals, a param, a wildcard): see walk_straight */
};

struct cel_router {
    struct node root;
};

enum { SEG_LIT, SEG_PARAM, SEG_WILD };

struct seg {
    int kind;
    const char *p; /* literal text, or the name without its ':' / '*' */
    size_t n;
};

/* Once per request: by length, then the spelling (methods are case-sensitive). */
unsigned cel_method_bit(const char *s, size_t n)
{
#define IS(lit) (memcmp(s, lit, sizeof(lit) - 1) == 0)
    switch (n) {
    case 3:
        return IS("GET") ? CEL_M_GET : IS("PUT") ? CEL_M_PUT : 0;
    case 4:
        return IS("HEAD") ? CEL_M_HEAD : IS("POST") ? CEL_M_POST : 0;
    case 5:
        return IS("PATCH") ? CEL_M_PATCH : IS("TRACE") ? CEL_M_TRACE : 0;
    case 6:
        return IS("DELETE") ? CEL_M_DELETE : 0;
    case 7:
        return IS("OPTIONS") ? CEL_M_OPTIONS : IS("CONNECT") ? CEL_M_CONNECT : 0;
    }
    return 0;
#undef IS
}

const char *cel_method_name(unsigned bit)
{
    if (!bit || (bit & (bit - 1)))
        return NULL;
    unsigned i = (unsigned)__builtin_ctz(bit);
    return i < CEL_ARRAY_LEN(method_names) ? method_names[i] : NULL;
}

static int hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The decoded byte at *I, advancing *I past it; a malformed escape is a plain '%'. */
static unsigned char next_byte(const char *s, size_t n, size_t *i)
{
    unsigned char c = (unsigned char)s[*i];
    if (c == '%' && n - *i >= 3) {
        int hi = hex((unsigned char)s[*i + 1]);
        int lo = hex((unsigned char)s[*i + 2]);
        if (hi >= 0 && lo >= 0) {
            *i += 3;
            return (unsigned char)(hi << 4 | lo);
        }
    }
    *i += 1;
    return c;
}

size_t cel_pct_decode(char *dst, const char *src, size_t n, int plus_is_space)
{
    size_t i = 0, o = 0;
    /* o never passes i, so decoding in place only overwrites bytes already read */
    while (i < n) {
        if (plus_is_space && src[i] == '+') {
            dst[o++] = ' ';
            i++;
        } else {
            dst[o++] = (char)next_byte(src, n, &i);
        }
    }
    return o;
}

static size_t decoded_len(const char *s, size_t n)
{
    size_t i = 0, k = 0;
    while (i < n) {
        next_byte(s, n, &i);
        k++;
    }
    return k;
}

static int eq_decoded(const char *lit, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (next_byte(s, n, &i) != (unsigned char)*lit++)
            return 0;
    }
    return 1;
}

/* FNV-1a, a byte at a time: the decoded hash below must be the same function
 * fed one decoded byte after another. */
#define HASH_SEED 0xcbf29ce484222325ull

static inline uint64_t hash_byte(uint64_t h, unsigned char c)
{
    return (h ^ c) * 0x100000001b3ull;
}

static inline uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = HASH_SEED;
    for (size_t i = 0; i < n; i++)
        h = hash_byte(h, (unsigned char)s[i]);
    return h;
}

/* The slot of N's literal child spelled S (LEN octets, hash H), or the empty
 * slot where it would go. */
static struct node **hash_slot(const struct node *n, uint64_t h, const char *s, size_t len)
{
    for (size_t i = (size_t)h;; i++) {
        struct node **slot = &n->slots[i & n->smask];
        if (!*slot || ((*slot)->litlen == len && cel_eq_small((*slot)->lit, s, len)))
            return slot;
    }
}

/* Makes N's table big enough for WANT literals and fills it with LITS. */
static int hash_grow(struct node *n, size_t want)
{
    size_t size = 16;
    while (size < 2 * want)
        size *= 2;
    struct node **slots = calloc(size, sizeof(*slots));
    if (!slots)
        return CEL_ENOMEM;
    free(n->slots);
    n->slots = slots;
    n->smask = size - 1;
    for (size_t i = 0; i < n->nlits; i++) {
        struct node *c = n->lits[i];
        *hash_slot(n, hash_bytes(c->lit, c->litlen), c->lit, c->litlen) = c;
    }
    return 0;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return CEL_EINVAL;
}

/* Splits and checks PATTERN; all validation happens here so a bad pattern never
 * touches the tree. */
static int parse(const char *pattern, struct seg *segs, unsigned *nsegs, unsigned *nparams,
                 char *err, size_t errlen)
{
    const char *p;
    unsigned ns = 0, np = 0;

    if (!pattern)
        return fail(err, errlen, "pattern is NULL");
    if (pattern[0] != '/')
        return fail(err, errlen, "pattern \"%s\" does not start with '/'", pattern);
    p = pattern + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        struct seg *s;

        if (ns == MAX_DEPTH)
            return fail(err, errlen, "pattern \"%s\" has more than %d segments", pattern,
                        MAX_DEPTH);
        s = &segs[ns++];
        s->kind = SEG_LIT;
        s->p = p;
        s->n = n;
        if (n > 0 && (p[0] == ':' || p[0] == '*')) {
            const char *what = p[0] == ':' ? "param" : "wildcard";
            s->kind = p[0] == ':' ? SEG_PARAM : SEG_WILD;
            s->p = p + 1;
            s->n = n - 1;
            if (s->n == 0)
                return fail(err, errlen, "pattern \"%s\" has a %s with no name", pattern, what);
            if (s->kind == SEG_WILD && end)
                return fail(err, errlen, "pattern \"%s\" has a wildcard that is not last", pattern);
            if (np == CEL_MAX_PARAMS)
                return fail(err, errlen, "pattern \"%s\" has more than %d params", pattern,
                            CEL_MAX_PARAMS);
            for (unsigned i = 0; i + 1 < ns; i++) {
                if (segs[i].kind != SEG_LIT && segs[i].n == s->n &&
                    memcmp(segs[i].p, s->p, s->n) == 0)
                    return fail(err, errlen, "pattern \"%s\" uses the param name \"%.*s\" twice",
                                pattern, (int)s->n, s->p);
            }
            np++;
        }
        if (!end)
            break;
        p = end + 1;
    }
    *nsegs = ns;
    *nparams = np;
    return 0;
}

static struct node *lit_child(struct node *n, const char *s, size_t len)
{
    uint64_t h = hash_bytes(s, len);
    struct node *c, **slot = NULL;

    if (n->slots) {
        slot = hash_slot(n, h, s, len);
        if (*slot)
            return *slot;
    } else {
        for (size_t i = 0; i < n->nlits; i++) {
            c = n->lits[i];
            if (c->litlen == len && memcmp(c->lit, s, len) == 0)
                return c;
        }
    }
    if (n->nlits == n->litcap) {
        size_t cap = n->litcap ? 2 * n->litcap : 4;
        struct node **grown = realloc(n->lits, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        n->lits = grown;
        n->litcap = cap;
    }
    if (n->nlits + 1 > HASH_MIN && 2 * (n->nlits + 1) > (n->slots ? n->smask + 1 : 0)) {
        if (hash_grow(n, n->nlits + 1))
            return NULL;
        slot = hash_slot(n, h, s, len);
    }
    c = calloc(1, sizeof(*c));
    if (!c || !(c->lit = malloc(len + 1))) {
        free(c);
        return NULL;
    }
    memcpy(c->lit, s, len);
    c->lit[len] = '\0';
    c->litlen = len;
    c->lit_pct = memchr(s, '%', len) != NULL;
    if (n->nlits < HASH_MIN)
        n->firsts[n->nlits] = (unsigned char)c->lit[0];
    n->lits[n->nlits++] = c;
    if (slot)
        *slot = c;
    if (len > n->maxlit)
        n->maxlit = len;
    return c;
}

static struct node *special_child(struct node **slot)
{
    if (!*slot)
        *slot = calloc(1, sizeof(**slot));
    return *slot;
}

static void set_allow(struct leaf *l)
{
    size_t o = 0;
    for (size_t i = 0; i < CEL_ARRAY_LEN(method_names); i++) {
        size_t n = strlen(method_names[i]);
        if (!(l->mask & (1u << i)))
            continue;
        if (o) {
            memcpy(l->allow + o, ", ", 2);
            o += 2;
        }
        memcpy(l->allow + o, method_names[i], n);
        o += n;
    }
    l->allow[o] = '\0';
}

static char **copy_names(const struct seg *segs, unsigned nsegs, unsigned nparams)
{
    size_t size = nparams * sizeof(char *);
    char **names, *q;
    unsigned k = 0;

    for (unsigned i = 0; i < nsegs; i++) {
        if (segs[i].kind != SEG_LIT)
            size += segs[i].n + 1;
    }
    names = malloc(size);
    if (!names)
        return NULL;
    q = (char *)(names + nparams);
    for (unsigned i = 0; i < nsegs; i++) {
        if (segs[i].kind == SEG_LIT)
            continue;
        names[k++] = q;
        memcpy(q, segs[i].p, segs[i].n);
        q[segs[i].n] = '\0';
        q += segs[i].n + 1;
    }
    return names;
}

int cel_router_add(cel_router *r, const char *pattern, unsigned methods, void *data,
                   void **conflict, char *err, size_t errlen)
{
    struct seg segs[MAX_DEPTH];
    unsigned nsegs = 0, nparams = 0;
    struct node *n = &r->root;
    struct leaf *l, *fresh = NULL;
    struct route *grown;
    char **names = NULL;
    int rc;

    if (methods == 0 || (methods & ~(unsigned)CEL_M_ALL))
        return fail(err, errlen, "route \"%s\" has an invalid method mask 0x%x",
                    pattern ? pattern : "(null)", methods);
    rc = parse(pattern, segs, &nsegs, &nparams, err, errlen);
    if (rc)
        return rc;

    /* A failed allocation here can leave childless, leafless nodes behind; they
     * match nothing and are freed with the router. */
    for (unsigned i = 0; i < nsegs; i++) {
        struct node *up = n;
        if (segs[i].kind == SEG_LIT)
            n = lit_child(n, segs[i].p, segs[i].n);
        else
            n = special_child(segs[i].kind == SEG_PARAM ? &n->param : &n->wild);
        if (!n)
            return CEL_ENOMEM;
        /* a wildcard alone is one way on (walk_straight takes it): a choice
         * only beside literals or a param */
        up->choice = (up->wild && (up->nlits || up->param)) || (up->nlits && up->param);
    }

    l = n->leaf;
    if (l && (l->mask & methods)) {
        for (size_t i = 0; i < l->n; i++) {
            if (l->routes[i].mask & methods) {
                if (conflict)
                    *conflict = l->routes[i].data;
                break;
            }
        }
        return CEL_EEXIST;
    }
    /* a leaf is attached only once it holds a route: an empty one would turn a
     * 404 into a 405 with an empty allow */
    if (!l && !(l = fresh = calloc(1, sizeof(*l))))
        return CEL_ENOMEM;
    if (nparams && !(names = copy_names(segs, nsegs, nparams))) {
        free(fresh);
        return CEL_ENOMEM;
    }
    grown = realloc(l->routes, (l->n + 1) * sizeof(*grown));
    if (!grown) {
        free(names);
        free(fresh);
        return CEL_ENOMEM;
    }
    n->leaf = l;
    l->routes = grown;
    l->routes[l->n++] = (struct route){methods, data, nparams, names};
    l->mask |= methods;
    set_allow(l);
    return 0;
}

struct walk {
    const char *path;
    size_t len;
    unsigned method;
    unsigned np;
    uint32_t off[CEL_MAX_PARAMS];
    uint32_t plen[CEL_MAX_PARAMS];
    const struct leaf *first; /* highest-precedence leaf the path reached */
    cel_route_match *m;
};

/* Returns 1 when the walk is over: N's leaf takes the method. */
static int at_leaf(struct walk *w, const struct node *n)
{
    const struct leaf *l = n->leaf;

    if (!l)
        return 0;
    if (!(l->mask & w->method)) {
        if (!w->first)
            w->first = l;
        return 0;
    }
    for (size_t i = 0; i < l->n; i++) {
        const struct route *rt = &l->routes[i];
        if (!(rt->mask & w->method))
            continue;
        w->m->data = rt->data;
        w->m->nparams = w->np;
        for (unsigned k = 0; k < w->np; k++) {
            w->m->params[k].name = rt->names[k];
            w->m->params[k].off = w->off[k];
            w->m->params[k].len = w->plen[k];
        }
        return 1;
    }
    return 0;
}

/* PCT: where the segment's first '%' is, or NULL. */
/* The literal child matching the RAW bytes of the segment at S, compared once
 * percent-decoded. Segments rarely hold a '%': first look for a literal equal
 * to the raw bytes (right as it stands unless the literal itself holds a '%',
 * since raw bytes equal to a '%'-free literal have none to decode), and only
 * then for a '%' and the decoded comparison. */
static __attribute__((noinline)) const struct node *find_lit_pct(const struct node *n,
                                                                 const char *s, size_t raw);

static const struct node *find_lit_hashed(const struct node *n, const char *s, size_t raw);

static inline __attribute__((always_inline)) const struct node *find_lit(const struct node *n,
                                                                         const char *s, size_t raw)
{
    /* each decoded byte takes at most three raw ones */
    if (raw / 3 > n->maxlit)
        return NULL;
    if (n->slots)
        return find_lit_hashed(n, s, raw);
    if (raw <= n->maxlit)
        for (size_t i = 0; i < n->nlits; i++) {
            const struct node *c = n->lits[i];
            if (c->litlen == raw && !c->lit_pct && cel_eq_small(c->lit, s, raw))
                return c;
        }
    return find_lit_pct(n, s, raw);
}

/* The literal child spelled, as it stands, by the segment that begins at S
 * (REST octets to the end of the path), and its length in *SEG; or NULL. The
 * first octet sorts the candidates out before any compare. */
static inline const struct node *find_lit_here(const struct node *n, const char *s, size_t rest,
                                               size_t *seg)
{
    if (rest == 0)
        return NULL;
    /* only called without a table: NLITS <= HASH_MIN */
    for (size_t i = 0; i < n->nlits; i++) {
        if (n->firsts[i] != (unsigned char)s[0])
            continue;
        const struct node *c = n->lits[i];
        size_t l = c->litlen;
        if (l <= rest && !c->lit_pct && cel_eq_small(c->lit, s, l) && (l == rest || s[l] == '/')) {
            *seg = l;
            return c;
        }
    }
    return NULL;
}

/* The rest of find_lit: the segment holds a '%', or a literal does. */
static const struct node *find_lit_pct(const struct node *n, const char *s, size_t raw)
{
    const char *pct = memchr(s, '%', raw);
    if (!pct)
        return NULL;
    size_t dlen = (size_t)(pct - s) + decoded_len(pct, raw - (size_t)(pct - s));
    if (dlen > n->maxlit)
        return NULL;
    for (size_t i = 0; i < n->nlits; i++) {
        const struct node *c = n->lits[i];
        if (c->litlen == dlen && eq_decoded(c->lit, s, raw))
            return c;
    }
    return NULL;
}

/* find_lit for a node with a table: the raw bytes' hash first, then, for a
 * segment with a '%', the decoded bytes' hash (computed as they are decoded,
 * into no buffer). */
static const struct node *find_lit_hashed(const struct node *n, const char *s, size_t raw)
{
    if (raw <= n->maxlit) {
        const struct node *c = *hash_slot(n, hash_bytes(s, raw), s, raw);
        if (c && !c->lit_pct)
            return c;
    }
    const char *pct = memchr(s, '%', raw);
    if (!pct)
        return NULL;
    uint64_t h = HASH_SEED;
    size_t i = 0, dlen = 0;
    while (i < raw) {
        h = hash_byte(h, next_byte(s, raw, &i));
        if (++dlen > n->maxlit)
            return NULL;
    }
    for (size_t k = (size_t)h;; k++) {
        const struct node *c = n->slots[k & n->smask];
        if (!c)
            return NULL;
        if (c->litlen == dlen && eq_decoded(c->lit, s, raw))
            return c;
    }
}

static int walk(struct walk *w, const struct node *n, size_t pos);

/* The length of the segment at S, up to the next '/' or REST: eight octets at
 * a time, as segments are short and this runs once per segment of every
 * request. */
static inline size_t seg_scan(const char *s, size_t rest)
{
    size_t i = 0;
    for (; rest - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t sl = cel_octets_eq(w, '/');
        if (sl)
            return i + ((unsigned)__builtin_ctzll(sl) >> 3);
    }
    if (rest - i >= 4) { /* 4 to 7 octets left: one word of two halves */
        uint64_t sl = cel_octets_eq(cel_load_halves(s + i, rest - i), '/');
        if (!sl)
            return rest;
        return i + cel_halves_at((unsigned)__builtin_ctzll(sl) >> 3, rest - i);
    }
    while (i < rest && s[i] != '/')
        i++;
    return i;
}

/* C matched the segment ending at END; go on with the next one, if any. */
static int step(struct walk *w, const struct node *c, size_t end)
{
    if (end == w->len)
        return at_leaf(w, c);
    if (!c->nlits && !c->param && !c->wild)
        return 0;
    return walk(w, c, end + 1);
}

/* Recursion depth is bounded by the tree depth (MAX_DEPTH), whatever the path. */
static int walk(struct walk *w, const struct node *n, size_t pos)
{
    const char *s = w->path + pos;
    size_t rest = w->len - pos;
    size_t seg = seg_scan(s, rest);

    if (n->nlits) {
        const struct node *c = find_lit(n, s, seg);
        if (c && step(w, c, pos + seg))
            return 1;
    }
    /* params are at most CEL_MAX_PARAMS deep by construction; the check is cheap */
    if (n->param && seg > 0 && w->np < CEL_MAX_PARAMS) {
        w->off[w->np] = (uint32_t)pos;
        w->plen[w->np++] = (uint32_t)seg;
        if (step(w, n->param, pos + seg))
            return 1;
        w->np--;
    }
    if (n->wild && w->np < CEL_MAX_PARAMS) {
        w->off[w->np] = (uint32_t)pos;
        w->plen[w->np++] = (uint32_t)rest;
        if (at_leaf(w, n->wild))
            return 1;
        w->np--;
    }
    return 0;
}

/* The walk down nodes that offer one way on (literals only, a param only,
 * or a wildcard only): no choice, so nothing to come back to, and a loop does it. At the
 * first node with a choice, walk takes over. Inlined into both lookup entries
 * (with two callers it would stay a call in cel_router_lookup_once too). */
static inline __attribute__((always_inline)) int walk_straight(struct walk *w, const struct node *n,
                                                               size_t pos)
{
    for (;;) {
        if (n->choice)
            return walk(w, n, pos);
        const char *s = w->path + pos;
        size_t rest = w->len - pos, seg;
        const struct node *c;
        if (n->nlits) {
            /* Literals only: each is tried where the segment begins, with no
             * scan for its end; a segment none of them spells as it stands
             * (percent-encoded, or empty) is scanned and decoded. Past
             * HASH_MIN literals, the scanned segment goes to the table. */
            if (n->slots || !(c = find_lit_here(n, s, rest, &seg))) {
                seg = seg_scan(s, rest);
                if (!(c = find_lit(n, s, seg)))
                    return 0;
            }
        } else if (!n->param) {
            /* a wildcard alone takes the rest as it is: no scan for a '/' */
            if (!n->wild || w->np >= CEL_MAX_PARAMS)
                return 0;
            w->off[w->np] = (uint32_t)pos;
            w->plen[w->np++] = (uint32_t)rest;
            return at_leaf(w, n->wild);
        } else {
            seg = seg_scan(s, rest);
            if (seg == 0 || w->np >= CEL_MAX_PARAMS)
                return 0;
            w->off[w->np] = (uint32_t)pos;
            w->plen[w->np++] = (uint32_t)seg;
            c = n->param;
        }
        pos += seg;
        if (pos == w->len)
            return at_leaf(w, c);
        n = c;
        pos++;
    }
}

static inline __attribute__((always_inline)) int
lookup(const cel_router *r, const char *path, size_t len, unsigned method, cel_route_match *m)
{
    struct walk w;

    m->data = NULL;
    m->allow = NULL;
    m->nparams = 0;
    /* offsets are 32-bit; no sane :path comes near that */
    if (len == 0 || path[0] != '/' || len > UINT32_MAX)
        return CEL_ROUTE_NOT_FOUND;
    w.path = path;
    w.len = len;
    w.method = method;
    w.np = 0;
    w.first = NULL;
    w.m = m;
    if (walk_straight(&w, &r->root, 1))
        return CEL_ROUTE_FOUND;
    if (w.first) {
        m->allow = w.first->allow;
        m->path_data = w.first->routes[0].data;
        return CEL_ROUTE_BAD_METHOD;
    }
    return CEL_ROUTE_NOT_FOUND;
}

int cel_router_lookup(const cel_router *r, const char *path, size_t len, unsigned method,
                      cel_route_match *m)
{
    return lookup(r, path, len, method, m);
}

/* Not merged with its twin above (gcc's identical code folding), which has
 * callers of its own: then neither would be inlined. */
#if __has_attribute(no_icf)
__attribute__((no_icf))
#endif
int cel_router_lookup_once(const cel_router *r, const char *path, size_t len, unsigned method,
                           cel_route_match *m)
{
    return lookup(r, path, len, method, m);
}

cel_router *cel_router_new(void)
{
    return calloc(1, sizeof(cel_router));
}

static void free_node(struct node *n)
{
    for (size_t i = 0; i < n->nlits; i++) {
        free_node(n->lits[i]);
        free(n->lits[i]);
    }
    free(n->lits);
    free(n->slots);
    free(n->lit);
    if (n->param) {
        free_node(n->param);
        free(n->param);
    }
    if (n->wild) {
        free_node(n->wild);
        free(n->wild);
    }
    if (n->leaf) {
        for (size_t i = 0; i < n->leaf->n; i++)
            free(n->leaf->routes[i].names);
        free(n->leaf->routes);
        free(n->leaf);
    }
}

void cel_router_free(cel_router *r)
{
    if (!r)
        return;
    free_node(&r->root);
    free(r);
}
