/*
 * RFC 9113 section 8 request checks; see h2_fields.h. The character classes
 * come from RFC 9110 (token, field-value) and RFC 3986 (authority, scheme),
 * in http.h's 256-entry table so that each octet costs one lookup.
 */
#include "h2_fields.h"

#include "common.h"
#include "http.h"

#include <string.h>

/* The character classes are the server's one table (http.h). */
#define cls cel_http_chars
#define C_NAME CEL_HTTP_NAME
#define C_TOKEN CEL_HTTP_TCHAR
#define C_VALUE CEL_HTTP_VALUE
#define C_PATH CEL_HTTP_PATH
#define C_AUTH CEL_HTTP_AUTH
#define C_SCHEME CEL_HTTP_SCHEME

/* Nonzero when every octet of P[0..N) is in class C. */
static inline int all_in(const uint8_t *p, size_t n, uint8_t c)
{
    uint8_t acc = c;
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        acc &= (uint8_t)(cls[p[i]] & cls[p[i + 1]] & cls[p[i + 2]] & cls[p[i + 3]]);
    for (; i < n; i++)
        acc &= cls[p[i]];
    return acc != 0;
}

/* Eight octets at a time for values and paths, the longest fields: a word has
 * an octet below LIM or equal to 0x7f exactly when this is nonzero (the borrow
 * trick can mark extra octets, never miss one). */
#define ONES CEL_ONES
#define HIGHS CEL_HIGHS

static inline uint64_t load8(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t below_or_del(uint64_t w, uint8_t lim)
{
    uint64_t x = w ^ (ONES * 0x7f);
    return (((w - ONES * lim) & ~w) | ((x - ONES) & ~x)) & HIGHS;
}

/* Every octet of V[0..N) in class C, where C admits no octet below LIM (other
 * than HTAB) nor DEL: clean words pass at once, a marked one goes to the table
 * (for values, HTAB is below 0x20 and allowed). */
static inline int chars_ok(const uint8_t *v, size_t n, uint8_t lim, uint8_t c)
{
    if (n < 8)
        return all_in(v, n, c);
    uint64_t bad = below_or_del(load8(v + n - 8), lim); /* the tail, overlapping */
    for (size_t i = 0; i + 8 <= n; i += 8)
        bad |= below_or_del(load8(v + i), lim);
    return !bad || all_in(v, n, c);
}

/* The high bit of each octet of W that is neither a-z nor '-', the octets of
 * nearly every field name. Octets are cleared of their high bit first so that
 * no sum carries into its neighbour. */
static inline uint64_t not_lower_or_dash(uint64_t w)
{
    uint64_t low7 = w & ~HIGHS;
    uint64_t ge_a = (low7 + ONES * (0x80 - 'a')) & HIGHS;
    uint64_t gt_z = (low7 + ONES * (0x80 - 'z' - 1)) & HIGHS;
    uint64_t x = low7 ^ (ONES * '-');
    uint64_t dash = ~(x + ONES * 0x7f) & HIGHS;
    return (~((ge_a & ~gt_z) | dash) & HIGHS) | (w & HIGHS);
}

static inline int name_chars_ok(const uint8_t *p, size_t n)
{
    if (n >= 8) {
        uint64_t odd = not_lower_or_dash(load8(p + n - 8));
        for (size_t i = 0; i + 8 <= n; i += 8)
            odd |= not_lower_or_dash(load8(p + i));
        if (!odd)
            return 1;
    }
    return all_in(p, n, C_NAME); /* digits and the other token octets */
}

static inline int eq(const uint8_t *p, size_t n, const char *lit, size_t len)
{
    return n == len && memcmp(p, lit, len) == 0;
}

static int ieq(const uint8_t *p, size_t n, const char *lower_lit, size_t len)
{
    if (n != len)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c + ('a' - 'A'));
        if (c != (uint8_t)lower_lit[i])
            return 0;
    }
    return 1;
}

#define EQ(p, n, lit) eq((p), (n), (lit), sizeof(lit) - 1)

/* 8.2.1: a value neither begins nor ends with SP or HTAB, and holds no NUL, CR,
 * LF or other control octet. */
static inline int value_ok(const uint8_t *v, size_t n)
{
    if (n == 0)
        return 1;
    if (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')
        return 0;
    return chars_ok(v, n, 0x20, C_VALUE);
}

/* 8.3: a :path in the request's own block, before every regular field, once,
 * and never empty. */
static inline int path_placed(const cel_h2_fields *f, size_t n)
{
    return !(f->seen & (CEL_HF_TRAILERS | CEL_HF_REGULAR | CEL_HF_PATH)) && n != 0;
}

/* A :path whose octets passed: what it says about the request. */
static inline int path_seen(cel_h2_fields *f, const uint8_t *v, size_t n)
{
    if (v[0] == '/')
        f->seen |= CEL_HF_SLASH;
    else if (n == 1 && v[0] == '*')
        f->seen |= CEL_HF_ASTERISK;
    f->seen |= CEL_HF_PATH;
    return CEL_HF_PATH;
}

int cel_h2_path(cel_h2_fields *f, const uint8_t *v, size_t n)
{
    /* 8.3.1: VCHAR and obs-text */
    if (!path_placed(f, n) || !chars_ok(v, n, 0x21, C_PATH))
        return -1;
    return path_seen(f, v, n);
}

int cel_h2_path_copy(cel_h2_fields *f, char *d, const uint8_t *v, size_t n, size_t *query)
{
    if (!path_placed(f, n))
        return -1;
    size_t q = n;
    if (n >= 8) {
        /* Each word is checked, copied and searched for '?' in one pass; the
         * last one overlaps the one before it, whose '?' came first. */
        uint64_t bad = 0, w, z;
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            w = load8(v + i);
            memcpy(d + i, &w, 8);
            bad |= below_or_del(w, 0x21);
            if (q == n && (z = cel_octets_eq(w, '?')))
                q = i + (size_t)(__builtin_ctzll(z) >> 3);
        }
        if (i < n) {
            w = load8(v + n - 8);
            memcpy(d + n - 8, &w, 8);
            bad |= below_or_del(w, 0x21);
            if (q == n && (z = cel_octets_eq(w, '?')))
                q = n - 8 + (size_t)(__builtin_ctzll(z) >> 3);
        }
        if (bad && !all_in(v, n, C_PATH))
            return -1;
    } else if (n >= 4) { /* one word of two halves */
        uint64_t w = cel_load_halves(v, n), z;
        cel_store_halves(d, w, n);
        if (below_or_del(w, 0x21) && !all_in(v, n, C_PATH))
            return -1;
        if ((z = cel_octets_eq(w, '?')))
            q = cel_halves_at((unsigned)__builtin_ctzll(z) >> 3, n);
    } else {
        uint8_t acc = C_PATH;
        for (size_t i = 0; i < n; i++) {
            uint8_t c = v[i];
            d[i] = (char)c;
            acc &= cls[c];
            if (c == '?' && q == n)
                q = i;
        }
        if (!acc)
            return -1;
    }
    *query = q;
    return path_seen(f, v, n);
}

static int pseudo(cel_h2_fields *f, const uint8_t *name, size_t nlen, const uint8_t *v, size_t vlen)
{
    /* 8.3: only in the request's own block, before every regular field, once
     * each, never empty. */
    if (f->seen & (CEL_HF_TRAILERS | CEL_HF_REGULAR) || vlen == 0)
        return -1;
    uint32_t which;
    switch (nlen) {
    case 5:
        return EQ(name, nlen, ":path") ? cel_h2_path(f, v, vlen) : -1;
    case 7:
        if (EQ(name, nlen, ":method")) {
            if (!EQ(v, vlen, "GET") && !all_in(v, vlen, C_TOKEN))
                return -1;
            which = CEL_HF_METHOD;
            if (EQ(v, vlen, "CONNECT"))
                f->seen |= CEL_HF_CONNECT;
            else if (EQ(v, vlen, "OPTIONS"))
                f->seen |= CEL_HF_OPTIONS;
        } else if (EQ(name, nlen, ":scheme")) {
            which = CEL_HF_SCHEME;
            if (EQ(v, vlen, "http") || EQ(v, vlen, "https")) {
                f->seen |= CEL_HF_HTTP;
                break;
            }
            /* RFC 3986 3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
            if (!(cls[v[0]] & C_SCHEME) || (v[0] >= '0' && v[0] <= '9') || v[0] == '+' ||
                v[0] == '-' || v[0] == '.' || !all_in(v, vlen, C_SCHEME))
                return -1;
            if (ieq(v, vlen, "http", 4) || ieq(v, vlen, "https", 5))
                f->seen |= CEL_HF_HTTP;
        } else {
            return -1;
        }
        break;
    case 10:
        if (!EQ(name, nlen, ":authority") || !all_in(v, vlen, C_AUTH))
            return -1;
        which = CEL_HF_AUTHORITY;
        break;
    default:
        /* :protocol too: we do not offer extended CONNECT (RFC 8441). */
        return -1;
    }
    if (f->seen & which)
        return -1;
    f->seen |= which;
    return (int)which;
}

static int parse_length(const uint8_t *v, size_t n, int64_t *out)
{
    /* 1*DIGIT (RFC 9110 8.6): leading zeros are allowed and do not count */
    size_t i = 0;
    while (i + 1 < n && v[i] == '0')
        i++;
    if (n == 0 || n - i > 18) /* 18 digits cannot overflow int64_t */
        return -1;
    int64_t x = 0;
    for (; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return 0;
}

static inline int field(cel_h2_fields *f, const uint8_t *name, size_t nlen, const uint8_t *value,
                        size_t vlen, int name_known)
{
    if (nlen == 0)
        return -1;
    if (name[0] == ':')
        return pseudo(f, name, nlen, value, vlen);
    /* 8.2.1: lowercase token characters only */
    if (!name_known && !name_chars_ok(name, nlen))
        return -1;
    f->seen |= CEL_HF_REGULAR;
    switch (nlen) {
    case 2:
        /* 8.2.2: TE may only say "trailers" */
        if (name[0] == 't' && name[1] == 'e')
            return ieq(value, vlen, "trailers", 8) ? 0 : -1;
        break;
    case 4:
        if (EQ(name, nlen, "host")) {
            if ((f->seen & CEL_HF_HOST) || vlen == 0 || !all_in(value, vlen, C_AUTH))
                return -1;
            f->seen |= CEL_HF_HOST;
            return 0;
        }
        break;
    case 7:
        if (EQ(name, nlen, "upgrade"))
            return -1; /* 8.2.2 */
        break;
    case 8:
        if (EQ(name, nlen, "priority"))
            return value_ok(value, vlen) ? CEL_HF_PRIORITY : -1;
        break;
    case 10:
        if (EQ(name, nlen, "connection") || EQ(name, nlen, "keep-alive"))
            return -1; /* 8.2.2 */
        break;
    case 14:
        if (EQ(name, nlen, "content-length")) {
            if (f->content_length >= 0 || parse_length(value, vlen, &f->content_length))
                return -1;
            return CEL_HF_LENGTH;
        }
        break;
    case 16:
        if (EQ(name, nlen, "proxy-connection"))
            return -1; /* 8.2.2 */
        break;
    case 17:
        if (EQ(name, nlen, "transfer-encoding"))
            return -1; /* 8.2.2 */
        break;
    }
    return value_ok(value, vlen) ? 0 : -1;
}

int cel_h2_field(cel_h2_fields *f, const uint8_t *name, size_t nlen, const uint8_t *value,
                 size_t vlen)
{
    return field(f, name, nlen, value, vlen, 0);
}

int cel_h2_field_static_name(cel_h2_fields *f, const uint8_t *name, size_t nlen,
                             const uint8_t *value, size_t vlen)
{
    return field(f, name, nlen, value, vlen, 1);
}

int cel_h2_field_plain(cel_h2_fields *f, const uint8_t *value, size_t vlen)
{
    f->seen |= CEL_HF_REGULAR;
    return value_ok(value, vlen) ? 0 : -1;
}

int cel_h2_plain_copy(cel_h2_fields *f, char *d, const uint8_t *v, size_t n)
{
    f->seen |= CEL_HF_REGULAR;
    if (n < 8) { /* the word loop needs eight */
        cel_copy_small(d, v, n);
        return value_ok(v, n) ? 0 : -1;
    }
    /* each word checked and copied in one pass; the last overlaps */
    uint64_t bad = 0, w;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        w = load8(v + i);
        memcpy(d + i, &w, 8);
        bad |= below_or_del(w, 0x20);
    }
    w = load8(v + n - 8);
    memcpy(d + n - 8, &w, 8);
    bad |= below_or_del(w, 0x20);
    if (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t')
        return -1;
    return !bad || all_in(v, n, C_VALUE) ? 0 : -1;
}

int cel_h2_fields_request_end(cel_h2_fields *f)
{
    uint32_t s = f->seen;
    if (s & CEL_HF_CONNECT) {
        /* 8.5: :authority, and neither :scheme nor :path */
        if (!(s & CEL_HF_AUTHORITY) || (s & (CEL_HF_SCHEME | CEL_HF_PATH)))
            return -1;
        f->content_length = -1; /* a tunnel's length is not the request's */
        return 0;
    }
    /* 8.3.1: :method, :scheme and :path. Neither :authority nor host is
     * required (only HTTP/1.1 requires Host): such a request goes to the
     * default host, as RFC 9112 3.3 lets a server do with an empty authority. */
    uint32_t need = CEL_HF_METHOD | CEL_HF_SCHEME | CEL_HF_PATH;
    if ((s & need) != need)
        return -1;
    /* 8.3.1: for http and https, :path is an absolute path, or "*" for OPTIONS */
    if ((s & CEL_HF_HTTP) && !(s & CEL_HF_SLASH) &&
        !((s & CEL_HF_OPTIONS) && (s & CEL_HF_ASTERISK)))
        return -1;
    return 0;
}

/* ---- RFC 9218 priority (RFC 8941 dictionary) ---- */

static int lcalpha(uint8_t c)
{
    return c >= 'a' && c <= 'z';
}

static int digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static size_t ows(const uint8_t *v, size_t n, size_t i)
{
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
        i++;
    return i;
}

/* A key (RFC 8941 3.1.2) at I: its end, or 0. */
static size_t sf_key(const uint8_t *v, size_t n, size_t i)
{
    if (i >= n || !(lcalpha(v[i]) || v[i] == '*'))
        return 0;
    for (i++; i < n && (lcalpha(v[i]) || digit(v[i]) || v[i] == '_' || v[i] == '-' || v[i] == '.' ||
                        v[i] == '*');
         i++)
        ;
    return i;
}

enum { BI_INT, BI_BOOL, BI_OTHER };

/* A bare item (RFC 8941 3.3) at I: its end, or 0; integers and booleans
 * are returned through *KIND and *VAL. */
static size_t sf_bare_item(const uint8_t *v, size_t n, size_t i, int *kind, int64_t *val)
{
    if (i >= n)
        return 0;
    uint8_t c = v[i];
    *kind = BI_OTHER;
    if (c == '-' || digit(c)) { /* integer or decimal */
        int neg = c == '-';
        size_t s = i + neg, j = s;
        int64_t x = 0;
        while (j < n && digit(v[j]) && j - s < 15)
            x = x * 10 + (v[j++] - '0');
        if (j == s || (j < n && digit(v[j])))
            return 0;
        if (j < n && v[j] == '.') { /* decimal: at most 12 + 3 digits */
            if (j - s > 12)
                return 0;
            size_t k = ++j;
            while (j < n && digit(v[j]) && j - k < 3)
                j++;
            if (j == k || (j < n && digit(v[j])))
                return 0;
            return j;
        }
        *kind = BI_INT;
        *val = neg ? -x : x;
        return j;
    }
    if (c == '?') { /* boolean */
        if (i + 1 >= n || (v[i + 1] != '0' && v[i + 1] != '1'))
            return 0;
        *kind = BI_BOOL;
        *val = v[i + 1] == '1';
        return i + 2;
    }
    if (c == '"') { /* string */
        for (i++; i < n; i++) {
            if (v[i] == '\\') {
                if (++i >= n || (v[i] != '"' && v[i] != '\\'))
                    return 0;
            } else if (v[i] == '"') {
                return i + 1;
            } else if (v[i] < 0x20 || v[i] > 0x7e) {
                return 0;
            }
        }
        return 0;
    }
    if (c == ':') { /* byte sequence */
        for (i++; i < n; i++) {
            if (v[i] == ':')
                return i + 1;
            if (!(lcalpha(v[i]) || (v[i] >= 'A' && v[i] <= 'Z') || digit(v[i]) || v[i] == '+' ||
                  v[i] == '/' || v[i] == '='))
                return 0;
        }
        return 0;
    }
    if ((c >= 'A' && c <= 'Z') || lcalpha(c) || c == '*') { /* token */
        for (i++; i < n && ((cls[v[i]] & C_TOKEN) || v[i] == ':' || v[i] == '/'); i++)
            ;
        return i;
    }
    return 0;
}

/* Parameters (RFC 8941 3.1.2) at I: their end, or 0. */
static size_t sf_params(const uint8_t *v, size_t n, size_t i)
{
    while (i < n && v[i] == ';') {
        i = sf_key(v, n, ows(v, n, i + 1));
        if (!i)
            return 0;
        if (i < n && v[i] == '=') {
            int kind;
            int64_t val;
            i = sf_bare_item(v, n, i + 1, &kind, &val);
            if (!i)
                return 0;
        }
    }
    return i;
}

int cel_h2_priority(const uint8_t *v, size_t n, uint8_t *urgency, uint8_t *incremental)
{
    int u = -1, inc = -1;
    size_t i = ows(v, n, 0);
    while (i < n) {
        size_t k = i;
        i = sf_key(v, n, i);
        if (!i)
            return -1;
        size_t klen = i - k;
        int kind = BI_BOOL;
        int64_t val = 1; /* a member without a value is true */
        if (i < n && v[i] == '=') {
            i++;
            if (i < n && v[i] == '(') { /* an inner list: passed over */
                kind = BI_OTHER;
                i = ows(v, n, i + 1);
                while (i < n && v[i] != ')') {
                    int ik;
                    int64_t iv;
                    i = sf_bare_item(v, n, i, &ik, &iv);
                    if (!i || !(i = sf_params(v, n, i)) || i >= n)
                        return -1;
                    if (v[i] != ' ' && v[i] != ')')
                        return -1;
                    i = ows(v, n, i);
                }
                if (i >= n)
                    return -1;
                i++;
            } else {
                i = sf_bare_item(v, n, i, &kind, &val);
                if (!i)
                    return -1;
            }
        }
        i = sf_params(v, n, i);
        if (!i)
            return -1;
        if (klen == 1 && v[k] == 'u')
            u = kind == BI_INT && val >= 0 && val <= 7 ? (int)val : -2;
        else if (klen == 1 && v[k] == 'i')
            inc = kind == BI_BOOL ? (int)val : -2;
        i = ows(v, n, i);
        if (i == n)
            break;
        if (v[i] != ',')
            return -1;
        i = ows(v, n, i + 1);
        if (i == n)
            return -1; /* a trailing comma */
    }
    /* the last value of a key counts; one of the wrong type or range is ignored */
    if (u >= 0)
        *urgency = (uint8_t)u;
    if (inc >= 0)
        *incremental = (uint8_t)inc;
    return 0;
}
