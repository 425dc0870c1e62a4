#include "json_template.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/*
 * A template is a flat program: literal chunks of ready-made JSON text and slots
 * that fetch one request value. Literals and slot names share one text buffer;
 * ops refer to it by offset so the buffer may move while it grows at compile time.
 */
enum { OP_LIT, OP_PARAM, OP_QUERY, OP_HEADER, OP_METHOD, OP_PATH, OP_REQUEST_ID, OP_HOST };

struct op {
    int kind;
    int idx;    /* OP_PARAM: the param's place in the route pattern, or -1 */
    size_t off; /* into text: the literal bytes, or the slot's name */
    size_t len;
};

struct cel_tmpl {
    char *text;
    size_t tlen, tcap;
    struct op *ops;
    size_t nops, ocap;
    size_t lit_bytes; /* sum of all literal lengths: the fixed part of the bound */
    unsigned nparams; /* params in the pattern bound to (cel_tmpl_bind_params) */
    int bound_only;   /* every slot is a param of that pattern: render_bound applies */
    int is_header;    /* a header value (cel_tmpl_compile_text), not JSON */
    int is_url;       /* and a URL: values percent-encoded (cel_tmpl_compile_url) */
    int nomem;        /* sticky, so compile helpers need no error plumbing */
};

/* Escaping turns one input byte into at most 6 output bytes ("\u0001"), and an
 * invalid UTF-8 sequence of one or more bytes into exactly 6 ("\ufffd"). */
#define ESC_MAX 6

/*
 * Length of the valid UTF-8 sequence at S (S[0] >= 0x80), or 0 when it is not
 * valid; then *BAD is the length of its maximal invalid prefix, which becomes a
 * single U+FFFD (the Unicode "maximal subpart" practice). Ranges follow RFC 3629,
 * so overlongs, surrogates and code points above U+10FFFF are all rejected.
 */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned c = s[0], lo = 0x80, hi = 0xbf;
    size_t need;

    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xbf;
    }
    return need + 1;
}

/*
 * Writes SRC as the inside of a JSON string at W, never past END. Returns the
 * new write position, or NULL when it does not fit.
 * SRC may lie ahead of W in the same buffer (render decodes into the tail of the
 * output): every step reads its input before it writes and copies use memmove,
 * so that is safe as long as the caller leaves ESC_MAX bytes per input byte.
 */
static char *esc(char *w, char *end, const char *src, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *s = (const unsigned char *)src, *e = s + n;

    while (s < e) {
        const unsigned char *run = s;
        while (s < e && *s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\')
            s++;
        size_t k = (size_t)(s - run);
        if (k) {
            if ((size_t)(end - w) < k)
                return NULL;
            memmove(w, run, k);
            w += k;
            continue;
        }

        char tmp[ESC_MAX];
        unsigned c = *s;
        if (c >= 0x80) {
            size_t bad = 0, len = utf8_seq(s, (size_t)(e - s), &bad);
            if (len) {
                if ((size_t)(end - w) < len)
                    return NULL;
                memmove(w, s, len);
                w += len;
                s += len;
                continue;
            }
            s += bad;
            memcpy(tmp, "\\ufffd", 6);
            k = 6;
        } else {
            s++;
            tmp[0] = '\\';
            k = 2;
            switch (c) {
            case '"':
            case '\\':
                tmp[1] = (char)c;
                break;
            case '\n':
                tmp[1] = 'n';
                break;
            case '\r':
                tmp[1] = 'r';
                break;
            case '\t':
                tmp[1] = 't';
                break;
            case '\b':
                tmp[1] = 'b';
                break;
            case '\f':
                tmp[1] = 'f';
                break;
            default:
                memcpy(tmp + 1, "u00", 3);
                tmp[4] = hex[c >> 4];
                tmp[5] = hex[c & 15];
                k = 6;
            }
        }
        if ((size_t)(end - w) < k)
            return NULL;
        memcpy(w, tmp, k);
        w += k;
    }
    return w;
}

/*
 * Writes SRC as part of a header value: control octets (below 0x20, and 0x7f)
 * become %XX, so no value can end the field or the head (CR, LF) or be cut
 * (NUL); everything else is copied. Same in-place rule as esc (3 <= ESC_MAX).
 */
/* Percent-encodes every octet of SRC but the unreserved ones (RFC 3986 2.3)
 * and '/', so a value cannot add a query, a fragment or another host. */
static char *url_esc(char *w, char *end, const char *src, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (cel_http_is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
            if (w == end)
                return NULL;
            *w++ = (char)c;
            continue;
        }
        if (end - w < 3)
            return NULL;
        w[0] = '%';
        w[1] = hex[c >> 4];
        w[2] = hex[c & 15];
        w += 3;
    }
    return w;
}

/* As url_esc, for {{host}} in a URL: a port's ':' and an IPv6 literal's
 * brackets stay (https://{{host}}/ must name the host it came with), '/'
 * does not, so the value still cannot add a path, query, fragment or
 * userinfo. */
static char *host_esc(char *w, char *end, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == ':' || c == '[' || c == ']') {
            if (w == end)
                return NULL;
            *w++ = (char)c;
        } else if (c == '/') {
            if (end - w < 3)
                return NULL;
            memcpy(w, "%2F", 3);
            w += 3;
        } else if (!(w = url_esc(w, end, src + i, 1))) {
            return NULL;
        }
    }
    return w;
}

static char *hdr_esc(char *w, char *end, const char *src, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c >= 0x20 && c != 0x7f) {
            if (w == end)
                return NULL;
            *w++ = (char)c;
            continue;
        }
        if (end - w < 3)
            return NULL;
        w[0] = '%';
        w[1] = hex[c >> 4];
        w[2] = hex[c & 15];
        w += 3;
    }
    return w;
}

/* ---- placeholders ---- */

struct ph {
    int kind;
    const char *name; /* NULL for method and path */
    size_t nlen;
    size_t end; /* index just past the closing "}}" */
};

static void ph_error(char *err, size_t errlen, const char *what, const char *s, size_t n)
{
    if (!err || !errlen)
        return;
    /* Long or runaway text (a forgotten "}}") would drown the message. */
    int cut = n > 64;
    snprintf(err, errlen, "%s placeholder \"%.*s%s\"", what, cut ? 60 : (int)n, s,
             cut ? "..." : "");
}

static int word_is(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && memcmp(s, w, n) == 0;
}

static int name_ok(const char *s, size_t n, int dots)
{
    if (!n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || (dots && (c == '-' || c == '.'));
        if (!ok)
            return 0;
    }
    return 1;
}

/* Parses the placeholder whose "{{" is at S[I]. */
static int parse_ph(const char *s, size_t n, size_t i, struct ph *ph, char *err, size_t errlen)
{
    size_t j = i + 2;
    while (j + 1 < n && !(s[j] == '}' && s[j + 1] == '}'))
        j++;
    if (j + 1 >= n) {
        ph_error(err, errlen, "unterminated", s + i, n - i);
        return CEL_EINVAL;
    }
    const char *in = s + i + 2, *text = s + i;
    size_t inl = j - i - 2, tlen = j + 2 - i;

    ph->end = j + 2;
    ph->name = NULL;
    ph->nlen = 0;
    if (word_is(in, inl, "method")) {
        ph->kind = OP_METHOD;
        return 0;
    }
    if (word_is(in, inl, "path")) {
        ph->kind = OP_PATH;
        return 0;
    }
    if (word_is(in, inl, "request_id")) {
        ph->kind = OP_REQUEST_ID;
        return 0;
    }
    if (word_is(in, inl, "host")) {
        ph->kind = OP_HOST;
        return 0;
    }
    const char *dot = memchr(in, '.', inl);
    size_t kl = dot ? (size_t)(dot - in) : inl;
    if (dot && word_is(in, kl, "param"))
        ph->kind = OP_PARAM;
    else if (dot && word_is(in, kl, "query"))
        ph->kind = OP_QUERY;
    else if (dot && word_is(in, kl, "header"))
        ph->kind = OP_HEADER;
    else {
        ph_error(err, errlen, "unknown", text, tlen);
        return CEL_EINVAL;
    }
    ph->name = dot + 1;
    ph->nlen = inl - kl - 1;
    if (!name_ok(ph->name, ph->nlen, ph->kind != OP_PARAM)) {
        ph_error(err, errlen, "bad name in", text, tlen);
        return CEL_EINVAL;
    }
    return 0;
}

/* ---- compile ---- */

/* Room for N more text bytes, and LIT_SLACK zeros after them (render_bound
 * copies a short literal as one 16-byte block); NULL (and nomem set) when
 * memory runs out. */
#define LIT_SLACK 16

static char *reserve(cel_tmpl *t, size_t n)
{
    if (t->nomem)
        return NULL;
    if (t->tcap - t->tlen < n + LIT_SLACK) {
        size_t cap = t->tcap ? t->tcap : 256;
        while (cap - t->tlen < n + LIT_SLACK)
            cap *= 2;
        char *p = realloc(t->text, cap);
        if (!p) {
            t->nomem = 1;
            return NULL;
        }
        memset(p + t->tlen, 0, cap - t->tlen);
        t->text = p;
        t->tcap = cap;
    }
    return t->text + t->tlen;
}

static void push_op(cel_tmpl *t, int kind, size_t off, size_t len)
{
    if (t->nomem)
        return;
    if (t->nops == t->ocap) {
        size_t cap = t->ocap ? t->ocap * 2 : 16;
        struct op *p = realloc(t->ops, cap * sizeof(*p));
        if (!p) {
            t->nomem = 1;
            return;
        }
        t->ops = p;
        t->ocap = cap;
    }
    t->ops[t->nops++] = (struct op){kind, -1, off, len};
}

/* Registers N literal bytes just appended at OFF. Text that directly follows the
 * previous literal joins it, so render does one memcpy per run of constant JSON
 * and a template without slots is a single chunk. */
static void add_lit(cel_tmpl *t, size_t off, size_t n)
{
    struct op *last = t->nops ? &t->ops[t->nops - 1] : NULL;
    t->lit_bytes += n;
    if (last && last->kind == OP_LIT && last->off + last->len == off)
        last->len += n;
    else
        push_op(t, OP_LIT, off, n);
}

static void lit(cel_tmpl *t, const char *s, size_t n)
{
    char *w = reserve(t, n);
    if (!w)
        return;
    memcpy(w, s, n);
    t->tlen += n;
    add_lit(t, t->tlen - n, n);
}

static void lit_esc(cel_tmpl *t, const char *s, size_t n)
{
    char *w = n ? reserve(t, ESC_MAX * n) : NULL;
    if (!w)
        return;
    char *e = esc(w, w + ESC_MAX * n, s, n);
    size_t k = (size_t)(e - w);
    t->tlen += k;
    add_lit(t, t->tlen - k, k);
}

static void add_slot(cel_tmpl *t, const struct ph *ph)
{
    char *w = ph->nlen ? reserve(t, ph->nlen) : NULL;
    if (ph->nlen && !w)
        return;
    /* Request header names are lowercase (HTTP/2), so match them that way. */
    for (size_t i = 0; i < ph->nlen; i++) {
        char c = ph->name[i];
        w[i] = ph->kind == OP_HEADER && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    push_op(t, ph->kind, t->tlen, ph->nlen);
    t->tlen += ph->nlen;
}

/* Checks string S; with T, also compiles it (quotes included) into T. */
static int scan(cel_tmpl *t, const char *s, size_t n, char *err, size_t errlen)
{
    size_t i = 0, start = 0;
    /* Header text is sent as it is written: no quotes, nothing escaped. */
    void (*literal)(cel_tmpl *, const char *, size_t) = t && t->is_header ? lit : lit_esc;

    if (t && !t->is_header)
        lit(t, "\"", 1);
    while (i + 1 < n) {
        if (s[i] != '{' || s[i + 1] != '{') {
            i++;
            continue;
        }
        struct ph ph;
        int rc = parse_ph(s, n, i, &ph, err, errlen);
        if (rc)
            return rc;
        if (t) {
            if (i > start)
                literal(t, s + start, i - start);
            add_slot(t, &ph);
        }
        i = start = ph.end;
    }
    if (t) {
        if (n > start)
            literal(t, s + start, n - start);
        if (!t->is_header)
            lit(t, "\"", 1);
    }
    return 0;
}

static size_t key_len(void *it, const char *key)
{
#if JANSSON_VERSION_HEX >= 0x020e00
    (void)key;
    return json_object_iter_key_len(it);
#else
    (void)it;
    return strlen(key);
#endif
}

/* jansson's iteration and dump calls take a non-const json_t although they only
 * read it; V is never modified here. */
static int emit(cel_tmpl *t, json_t *v, char *err, size_t errlen)
{
    int rc = 0;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        lit(t, "{", 1);
        for (void *it = json_object_iter(v), *first = it; it && !rc;
             it = json_object_iter_next(v, it)) {
            const char *key = json_object_iter_key(it);
            if (it != first)
                lit(t, ",", 1);
            /* Keys are literal text; placeholders there are not expanded. */
            lit(t, "\"", 1);
            lit_esc(t, key, key_len(it, key));
            lit(t, "\":", 2);
            rc = emit(t, json_object_iter_value(it), err, errlen);
        }
        lit(t, "}", 1);
        return rc;
    case JSON_ARRAY:
        lit(t, "[", 1);
        for (size_t i = 0; i < json_array_size(v) && !rc; i++) {
            if (i)
                lit(t, ",", 1);
            rc = emit(t, json_array_get(v, i), err, errlen);
        }
        lit(t, "]", 1);
        return rc;
    case JSON_STRING:
        return scan(t, json_string_value(v), json_string_length(v), err, errlen);
    case JSON_INTEGER:
    case JSON_REAL: {
        /* Numbers come out exactly as jansson would print them. */
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!s) {
            t->nomem = 1;
            return CEL_ENOMEM;
        }
        lit(t, s, strlen(s));
        free(s);
        return 0;
    }
    case JSON_TRUE:
        lit(t, "true", 4);
        return 0;
    case JSON_FALSE:
        lit(t, "false", 5);
        return 0;
    case JSON_NULL:
        lit(t, "null", 4);
        return 0;
    }
    return 0;
}

int cel_tmpl_check_string(const char *s, size_t n, char *err, size_t errlen)
{
    return scan(NULL, s, n, err, errlen);
}

/* T as compiled with result RC, or NULL (T freed, ERR said why). */
static cel_tmpl *compiled(cel_tmpl *t, int rc, char *err, size_t errlen)
{
    if (!rc && t->nomem)
        rc = CEL_ENOMEM;
    if (rc) {
        if (rc == CEL_ENOMEM && err && errlen)
            snprintf(err, errlen, "out of memory");
        cel_tmpl_free(t);
        return NULL;
    }
    return t;
}

cel_tmpl *cel_tmpl_compile(const json_t *root, char *err, size_t errlen)
{
    cel_tmpl *t = calloc(1, sizeof(*t));
    return compiled(t, t ? emit(t, (json_t *)root, err, errlen) : CEL_ENOMEM, err, errlen);
}

cel_tmpl *cel_tmpl_compile_text(const char *s, size_t n, char *err, size_t errlen)
{
    cel_tmpl *t = calloc(1, sizeof(*t));
    if (t)
        t->is_header = 1;
    return compiled(t, t ? scan(t, s, n, err, errlen) : CEL_ENOMEM, err, errlen);
}

cel_tmpl *cel_tmpl_compile_url(const char *s, size_t n, char *err, size_t errlen)
{
    cel_tmpl *t = calloc(1, sizeof(*t));
    if (t)
        t->is_header = t->is_url = 1;
    return compiled(t, t ? scan(t, s, n, err, errlen) : CEL_ENOMEM, err, errlen);
}

void cel_tmpl_free(cel_tmpl *t)
{
    if (!t)
        return;
    free(t->text);
    free(t->ops);
    free(t);
}

const char *cel_tmpl_constant(const cel_tmpl *t, size_t *len)
{
    if (t->nops != 1 || t->ops[0].kind != OP_LIT)
        return NULL;
    *len = t->ops[0].len;
    return t->text + t->ops[0].off;
}

int cel_tmpl_uses_id(const cel_tmpl *t)
{
    for (size_t i = 0; t && i < t->nops; i++)
        if (t->ops[i].kind == OP_REQUEST_ID)
            return 1;
    return 0;
}

void cel_tmpl_each_param(const cel_tmpl *t, void (*fn)(void *arg, const char *name, size_t len),
                         void *arg)
{
    for (size_t i = 0; i < t->nops; i++)
        if (t->ops[i].kind == OP_PARAM)
            fn(arg, t->text + t->ops[i].off, t->ops[i].len);
}

void cel_tmpl_bind_params(cel_tmpl *t, const char *pattern)
{
    unsigned k = 0;
    for (const char *p = pattern; (p = strchr(p, '/')); p++) {
        if (p[1] != ':' && p[1] != '*')
            continue;
        const char *name = p + 2;
        size_t len = strcspn(name, "/");
        for (size_t i = 0; i < t->nops; i++) {
            struct op *op = &t->ops[i];
            if (op->kind == OP_PARAM && op->idx < 0 && op->len == len &&
                memcmp(t->text + op->off, name, len) == 0)
                op->idx = (int)k;
        }
        k++;
    }
    t->nparams = k;
    /* render_bound reads LIT_SLACK octets from the start of each short
     * literal: every text writer must go through reserve. Without that slack
     * the general render stays (and a debug build stops here). */
    int slack = t->text && t->tcap - t->tlen >= LIT_SLACK;
    assert(slack || !t->text);
    t->bound_only = slack && !t->is_url; /* url_esc may change a plain param */
    for (size_t i = 0; i < t->nops; i++)
        if (t->ops[i].kind != OP_LIT && !(t->ops[i].kind == OP_PARAM && t->ops[i].idx >= 0))
            t->bound_only = 0;
}

/* ---- render ---- */

/* The raw value a slot refers to; empty when the request lacks it. */
static inline __attribute__((always_inline)) cel_str value(const cel_tmpl *t, const struct op *op,
                                                           const cel_request *req)
{
    const char *name = t->text + op->off;
    cel_str v = {"", 0};
    int rc = 0;

    switch (op->kind) {
    case OP_PARAM:
        if (op->idx >= 0 && req->nparams == t->nparams) {
            /* matched by the route this template was bound to */
            const cel_param *p = &req->params[op->idx];
            v = (cel_str){req->path.p + p->off, p->len};
            break;
        }
        rc = cel_request_param(req, name, op->len, &v);
        break;
    case OP_QUERY:
        rc = cel_request_query(req, name, op->len, &v);
        break;
    case OP_HEADER:
        rc = cel_request_header(req, name, op->len, &v);
        break;
    case OP_METHOD:
        v = req->method;
        break;
    case OP_PATH:
        v = req->path;
        break;
    case OP_REQUEST_ID:
        v = req->id; /* made by the handler first (cel_tmpl_uses_id) */
        break;
    case OP_HOST:
        v = req->authority; /* HTTP/2's :authority, HTTP/1.1's Host */
        break;
    }
    if (rc || !v.p)
        v = (cel_str){"", 0};
    return v;
}

/* Does V go into the output as it is: printable ASCII with nothing JSON
 * escapes, and (for params and query args) nothing percent-decoding changes?
 * Per octet, the bits of the slot kinds for which it is not plain. */
enum { NP_ESC = 1, NP_PARAM = 2, NP_QUERY = 4, NP_URL = 8 };
static uint8_t not_plain[256];

__attribute__((constructor)) static void fill_not_plain(void)
{
    for (unsigned c = 0; c < 256; c++)
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            not_plain[c] = NP_ESC | NP_PARAM | NP_QUERY;
    not_plain['%'] = NP_PARAM | NP_QUERY;
    not_plain['+'] = NP_QUERY;
    for (unsigned c = 0; c < 256; c++)
        if (!cel_http_is_alnum((unsigned char)c) && !strchr("-._~/", (int)c))
            not_plain[c] |= NP_URL;
}

static inline int plain(const char *p, size_t n, int kind, int url)
{
    uint8_t mask = url                ? NP_URL
                   : kind == OP_PARAM ? NP_PARAM
                   : kind == OP_QUERY ? NP_QUERY
                                      : NP_ESC;
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= not_plain[(unsigned char)p[i]];
    return !(acc & mask);
}

static size_t bound(const cel_tmpl *t, const cel_request *req)
{
    size_t b = t->lit_bytes;
    for (size_t i = 0; i < t->nops; i++)
        if (t->ops[i].kind != OP_LIT)
            b += ESC_MAX * value(t, &t->ops[i], req).n;
    return b;
}

/* The high bit of each octet of W that a param cannot hold as plain text (see
 * not_plain): below 0x20, 0x7f and up, '"', '\\' or '%'. Never none when
 * there is one; may mark more (borrows), which only costs the general render. */
static inline uint64_t not_plain_param(uint64_t w)
{
    uint64_t ctl = (w - CEL_ONES * 0x20) & ~w & CEL_HIGHS;
    return ctl | (w & CEL_HIGHS) | cel_octets_eq(w, 0x7f) | cel_octets_eq(w, '"') |
           cel_octets_eq(w, '\\') | cel_octets_eq(w, '%');
}

/* Copies the N octets of a param at S to D when all are plain (nothing to
 * decode or escape): 1 if so, 0 if not (D then holds some of them). Words at a
 * time, overlapping at the ends, with no read outside S[0..N). */
static inline int copy_plain_param(char *d, const char *s, size_t n)
{
    if (n < 4) {
        if (n == 0)
            return 1;
        /* the first, middle and last octets are all of them */
        unsigned char a = (unsigned char)s[0], b = (unsigned char)s[n / 2],
                      c = (unsigned char)s[n - 1];
        d[0] = (char)a;
        d[n / 2] = (char)b;
        d[n - 1] = (char)c;
        return !((not_plain[a] | not_plain[b] | not_plain[c]) & NP_PARAM);
    }
    if (n <= 8) {
        uint64_t w = cel_load_halves(s, n);
        cel_store_halves(d, w, n);
        return !not_plain_param(w);
    }
    uint64_t bad = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        memcpy(d + i, &w, 8);
        bad |= not_plain_param(w);
    }
    if (i < n) {
        memcpy(&w, s + n - 8, 8);
        memcpy(d + n - 8, &w, 8);
        bad |= not_plain_param(w);
    }
    return !bad;
}

/* The usual template of a params route: literals and the route's own params,
 * which as plain text (nothing to decode or escape) are copied as they are.
 * The params lie within the path, so literals plus the path bound the
 * output. -1 when a param is not plain: the general render takes over. */
static int render_bound(const cel_tmpl *t, const cel_request *req, char *buf, size_t *outlen)
{
    char *w = buf;
    for (const struct op *op = t->ops, *e = op + t->nops; op < e; op++) {
        if (op->kind == OP_LIT) {
            /* A short literal goes as one 16-byte block: the text has the
             * slack after it (reserve), the buffer LIT_SLACK beyond the bound,
             * and what lands past the literal is written over next. */
            const char *src = t->text + op->off;
            if (op->len <= LIT_SLACK)
                memcpy(w, src, LIT_SLACK);
            else
                cel_copy_small(w, src, op->len);
            w += op->len;
            continue;
        }
        const cel_param *p = &req->params[op->idx];
        if (!copy_plain_param(w, req->path.p + p->off, p->len))
            return -1;
        w += p->len;
    }
    *outlen = (size_t)(w - buf);
    return 0;
}

int cel_tmpl_render(const cel_tmpl *t, const cel_request *req, char *buf, size_t cap,
                    size_t *outlen)
{
    char *w = buf, *end;

    if (t->bound_only && req->nparams == t->nparams && buf &&
        cap >= t->lit_bytes + req->path.n + LIT_SLACK && render_bound(t, req, buf, outlen) == 0)
        return 0;

    /* Every template prints at least one byte, so an empty buffer never fits. */
    if (!buf || !cap)
        goto too_big;
    end = buf + cap;
    for (size_t i = 0; i < t->nops; i++) {
        const struct op *op = &t->ops[i];
        if (op->kind == OP_LIT) {
            if ((size_t)(end - w) < op->len)
                goto too_big;
            cel_copy_small(w, t->text + op->off, op->len);
            w += op->len;
            continue;
        }
        cel_str v = value(t, op, req);
        if (plain(v.p, v.n, op->kind, t->is_url) && !(t->is_url && op->kind == OP_HOST)) {
            /* nothing to decode or escape: the common case, a plain copy */
            if ((size_t)(end - w) < v.n)
                goto too_big;
            cel_copy_small(w, v.p, v.n);
            w += v.n;
            continue;
        }
        if (op->kind == OP_PARAM || op->kind == OP_QUERY || (t->is_url && op->kind == OP_PATH)) {
            /* Decode into the tail of the free space, then escape forward from
             * there; with ESC_MAX bytes per raw byte free, writing never
             * overtakes unread input (see esc), and no scratch memory is needed.
             * The bound leaves that much room, so a retry always succeeds. */
            if ((size_t)(end - w) / ESC_MAX < v.n)
                goto too_big;
            char *tmp = end - v.n;
            size_t n = cel_pct_decode(tmp, v.p, v.n, op->kind == OP_QUERY);
            w = t->is_url      ? url_esc(w, end, tmp, n)
                : t->is_header ? hdr_esc(w, end, tmp, n)
                               : esc(w, end, tmp, n);
        } else if (t->is_url && op->kind == OP_HOST) {
            w = host_esc(w, end, v.p, v.n);
        } else {
            w = t->is_url      ? url_esc(w, end, v.p, v.n)
                : t->is_header ? hdr_esc(w, end, v.p, v.n)
                               : esc(w, end, v.p, v.n);
        }
        if (!w)
            goto too_big;
    }
    *outlen = (size_t)(w - buf);
    return 0;

too_big:
    *outlen = bound(t, req);
    return CEL_ETOOBIG;
}

char *cel_json_escape(char *w, char *end, const char *src, size_t n)
{
    return esc(w, end, src, n);
}
