/*
 * fuzz_h1_parse: the HTTP/1.1 request parser (h1_parse.c): cel_h1_parse_head,
 * cel_h1_parse_head_resume as h1.c calls it while bytes arrive, and the chunked
 * body decoder.
 *
 * Input layout:
 *   byte 0   bit 0: tight limits (head 512, line 64, target 48, 4 fields) instead
 *            of the defaults; bits 1-7: the first piece size when the input is
 *            fed in pieces (the sizes then vary with the bytes that follow)
 *   rest     what a client sends: a head, then (chunked or not) a body
 * With fewer than 2 bytes, nothing happens.
 *
 * Checked, abort() otherwise:
 *   - the whole input gives a head length (at most the input and max_head),
 *     CEL_EAGAIN (only below max_head bytes) or a CEL_EH1_* error with its own
 *     status and text;
 *   - fed in growing prefixes, each prefix in a heap block of its own size (so
 *     a read past the bytes that arrived is an ASan report) and *SCANNED carried
 *     from call to call: each call gives what cel_h1_parse_head gives on that
 *     prefix, and the first answer other than CEL_EAGAIN is the whole input's
 *     (the header's promise: pieces give the same error as the whole, and a
 *     complete head the same length);
 *   - a complete head: every slice lies inside it (but the static "/" of an
 *     absolute-form target without a path); the method is a token of at most
 *     CEL_H1_MAX_METHOD; the target has no control byte, space, '#' or non-ASCII
 *     byte and is at most max_target; path and query are the target's; at most
 *     max_headers fields, each name a token, each value without control bytes
 *     or surrounding whitespace; minor 0 or 1; chunked only in 1.1 and never with
 *     a content-length; upgrade_h2c and expect_continue only in 1.1, with a
 *     base64url HTTP2-Settings when upgrading (no padding, no length of
 *     4k + 1; empty is SETTINGS without parameters); cel_h1_find finds every
 *     field by its lowercased name, and after cel_h1_lowercase_names every name
 *     is lowercase and otherwise unchanged;
 *   - the chunked decoder, over what follows a complete chunked head (else the
 *     whole input): the same result, output and bytes used whether given all at
 *     once into a separate buffer or in pieces decoded in place, and as a
 *     reference decoder written here from h1_parse.h's grammar gives; output never
 *     runs ahead of input; total counts the output; after the end or an error
 *     every later call says the same and uses nothing;
 *   - a body made from the input's bytes, framed by a chunked encoder here
 *     (chunk sizes, extensions, bare LF or CRLF and a trailer picked by the
 *     input), decodes to exactly those bytes and ends where the framing ends.
 * FUZZ_TRACE=1 prints what the parser and the decoder made of the input.
 */
#include "common.h"
#include "fuzz.h"
#include "h1_parse.h"
#include "http.h"

static const cel_h1_limits tight = {512, 64, 48, 4};

/* Piece sizes for feeding: 1..128, varying with the bytes of D. */
typedef struct cutter {
    const uint8_t *d;
    size_t n, i;
    unsigned next;
} cutter;

static size_t cut(cutter *c, size_t left)
{
    size_t k = c->next ? c->next : 1;
    if (c->n)
        c->next = (c->next * 7u + c->d[c->i++ % c->n]) % 128u + 1u;
    return k < left ? k : left;
}

static int is_h1_error(int rc)
{
    return rc <= CEL_EH1_REQLINE && rc >= CEL_EH1_CHUNKED;
}

static void check_in(const cel_str *s, const char *buf, size_t len, const char *what)
{
    FUZZ_CHECK(s->n == 0 || (s->p >= buf && s->p + s->n <= buf + len),
               "%s (%zu bytes) lies outside the head", what, s->n);
}

/* E: the limits in force (never NULL). */
static void check_head(const cel_h1_head *h, const char *buf, size_t len, const cel_h1_limits *E)
{
    check_in(&h->method, buf, len, "method");
    check_in(&h->target, buf, len, "target");
    if (!(h->path.n == 1 && h->path.p[0] == '/'))
        check_in(&h->path, buf, len, "path");
    check_in(&h->query, buf, len, "query");
    check_in(&h->host, buf, len, "host");
    check_in(&h->http2_settings, buf, len, "http2-settings");
    FUZZ_CHECK(h->method.n > 0 && h->method.n <= CEL_H1_MAX_METHOD, "method of %zu bytes",
               h->method.n);
    for (size_t i = 0; i < h->method.n; i++)
        FUZZ_CHECK(cel_http_is_tchar((unsigned char)h->method.p[i]), "method byte 0x%02x",
                   (unsigned char)h->method.p[i]);
    FUZZ_CHECK(h->target.n > 0 && h->target.n <= E->max_target, "target of %zu bytes", h->target.n);
    for (size_t i = 0; i < h->target.n; i++) {
        unsigned char c = (unsigned char)h->target.p[i];
        FUZZ_CHECK(c > ' ' && c < 0x7f && c != '#', "target byte 0x%02x", c);
    }
    if (h->path.n && h->path.p >= h->target.p && h->path.p < h->target.p + h->target.n)
        FUZZ_CHECK(h->path.p + h->path.n <= h->target.p + h->target.n, "path leaves the target");
    if (h->query.n) {
        FUZZ_CHECK(h->query.p > h->target.p && h->query.p[-1] == '?' &&
                       h->query.p + h->query.n == h->target.p + h->target.n,
                   "query is not the target's tail after '?'");
    }
    FUZZ_CHECK(h->minor == 0 || h->minor == 1, "minor %d", h->minor);
    FUZZ_CHECK(h->nheaders <= E->max_headers && h->nheaders <= CEL_H1_MAX_HEADERS, "%zu fields",
               h->nheaders);
    for (size_t i = 0; i < h->nheaders; i++) {
        const cel_header *f = &h->headers[i];
        check_in(&f->name, buf, len, "field name");
        check_in(&f->value, buf, len, "field value");
        FUZZ_CHECK(f->name.n > 0, "empty field name");
        for (size_t k = 0; k < f->name.n; k++)
            FUZZ_CHECK(cel_http_is_tchar((unsigned char)f->name.p[k]), "field name byte 0x%02x",
                       (unsigned char)f->name.p[k]);
        for (size_t k = 0; k < f->value.n; k++) {
            unsigned char c = (unsigned char)f->value.p[k];
            FUZZ_CHECK(c >= 0x20 ? c != 0x7f : c == '\t', "field value byte 0x%02x", c);
        }
        if (f->value.n) {
            FUZZ_CHECK(f->value.p[0] != ' ' && f->value.p[0] != '\t' &&
                           f->value.p[f->value.n - 1] != ' ' && f->value.p[f->value.n - 1] != '\t',
                       "field value keeps its surrounding whitespace");
        }
        char low[CEL_H1_MAX_METHOD * 8];
        if (f->name.n < sizeof(low)) {
            for (size_t k = 0; k < f->name.n; k++) {
                unsigned char c = (unsigned char)f->name.p[k];
                low[k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
            low[f->name.n] = '\0';
            const cel_header *g = cel_h1_find(h, low);
            FUZZ_CHECK(g && g <= f, "cel_h1_find(\"%s\") misses field %zu", low, i);
        }
    }
    FUZZ_CHECK(h->content_length >= -1, "content_length %lld", (long long)h->content_length);
    FUZZ_CHECK(!h->chunked || (h->minor == 1 && h->content_length == -1),
               "chunked with content-length %lld in 1.%d", (long long)h->content_length, h->minor);
    FUZZ_CHECK(!h->expect_continue || h->minor == 1, "100-continue in 1.0");
    FUZZ_CHECK(!h->upgrade_h2c || h->minor == 1, "h2c upgrade in 1.0");
    FUZZ_CHECK(h->upgrade_h2c || h->http2_settings.n == 0, "settings without upgrade");
    for (size_t i = 0; i < h->http2_settings.n; i++) {
        unsigned char c = (unsigned char)h->http2_settings.p[i];
        FUZZ_CHECK(cel_http_is_alnum(c) || c == '-' || c == '_', "HTTP2-Settings byte 0x%02x", c);
    }
    FUZZ_CHECK(h->http2_settings.n % 4 != 1, "HTTP2-Settings of %zu characters",
               h->http2_settings.n);
}

/* cel_h1_lowercase_names on a copy parsed again (the head must point into the
 * buffer it is given): names lowercase, nothing else changed. */
static void check_lowercase(const char *buf, size_t len, const cel_h1_limits *L)
{
    char *w = fuzz_dup(buf, len, 0);
    cel_h1_head *h = malloc(sizeof(*h));
    if (!h)
        abort();
    FUZZ_CHECK(cel_h1_parse_head(w, len, h, L) == (int)len, "a copy parses differently");
    cel_h1_lowercase_names(h, w);
    size_t at = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        size_t off = (size_t)(h->headers[i].name.p - w);
        for (; at < off; at++)
            FUZZ_CHECK(w[at] == buf[at], "cel_h1_lowercase_names changed byte %zu", at);
        for (size_t k = 0; k < h->headers[i].name.n; k++, at++) {
            unsigned char c = (unsigned char)buf[at];
            FUZZ_CHECK(w[at] == (char)(c >= 'A' && c <= 'Z' ? c + 32 : c),
                       "name byte %zu not lowercased", at);
        }
    }
    for (; at < len; at++)
        FUZZ_CHECK(w[at] == buf[at], "cel_h1_lowercase_names changed byte %zu", at);
    free(h);
    free(w);
}

/* Feeds D in growing prefixes as h1.c does, each in a block of its own size. */
static void check_pieces(const uint8_t *d, size_t n, const cel_h1_limits *L, const cel_h1_limits *E,
                         int whole, unsigned first)
{
    cutter c = {d, n, 0, first};
    size_t scanned = 0, have = 0;
    while (have < n) {
        have += cut(&c, n - have);
        char *p = fuzz_dup(d, have, 0);
        cel_h1_head a, b;
        size_t hint = scanned;
        int ra = cel_h1_parse_head_resume(p, have, &a, L, &scanned);
        int rb = cel_h1_parse_head(p, have, &b, L);
        FUZZ_CHECK(ra == rb, "prefix %zu: %d with the hint %zu, %d without", have, ra, hint, rb);
        FUZZ_CHECK(ra == CEL_EAGAIN ? scanned <= have : scanned == 0, "hint %zu after %d", scanned,
                   ra);
        if (ra > 0) {
            FUZZ_CHECK(a.nheaders == b.nheaders && a.content_length == b.content_length &&
                           a.minor == b.minor && a.chunked == b.chunked &&
                           a.upgrade_h2c == b.upgrade_h2c && a.target.n == b.target.n &&
                           a.host.n == b.host.n,
                       "prefix %zu: the hint changes the head", have);
            check_head(&a, p, (size_t)ra, E);
        }
        free(p);
        if (ra != CEL_EAGAIN) {
            FUZZ_CHECK(ra == whole, "prefix %zu gives %d (%s), the whole input %d (%s)", have, ra,
                       cel_h1_strerror(ra), whole, cel_h1_strerror(whole));
            return;
        }
    }
    FUZZ_CHECK(whole == CEL_EAGAIN, "every prefix needs more, the whole input gives %d", whole);
}

/* ---- a reference chunked decoder: the grammar h1_parse.h documents, written
 * for clarity over a whole buffer. Returns what cel_h1_chunked_decode returns,
 * with the data bytes in OUT and the bytes used in *USED (all of B but on 0). */

static int model_hex(uint8_t c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static int model_ctl(uint8_t c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* CRLF or a bare LF at *I. 1 when there, 0 when B ends first, -1 when not. */
static int model_eol(const uint8_t *b, size_t n, size_t *i)
{
    if (*i < n && b[*i] == '\r')
        ++*i;
    else if (*i < n && b[*i] != '\n')
        return -1;
    if (*i == n)
        return 0;
    if (b[*i] != '\n')
        return -1;
    ++*i;
    return 1;
}

static int model_chunked(const uint8_t *b, size_t n, size_t max_trailer, uint8_t *out,
                         size_t *outlen, size_t *used)
{
    size_t i = 0, ext = 0, trailer = 0;
    int e;
    *outlen = 0;
    *used = n;
#define MORE_OR_BAD(x) ((x) == 0 ? CEL_EAGAIN : CEL_EH1_CHUNKED)
    for (;;) { /* chunk-size [ BWS chunk-ext ] line end, then data and a line end */
        uint64_t size = 0;
        size_t digits = 0;
        for (; i < n && model_hex(b[i]) >= 0; i++, digits++) {
            if (size > (uint64_t)INT64_MAX >> 4)
                return CEL_EH1_CHUNKED;
            size = size << 4 | (uint64_t)model_hex(b[i]);
        }
        if (i == n)
            return CEL_EAGAIN;
        if (digits == 0)
            return CEL_EH1_CHUNKED;
        if (b[i] == ' ' || b[i] == '\t') {
            while (i < n && (b[i] == ' ' || b[i] == '\t'))
                i++;
            if (i == n)
                return CEL_EAGAIN;
            if (b[i] != ';')
                return CEL_EH1_CHUNKED;
        }
        if (b[i] == ';') {
            for (i++; i < n && b[i] != '\r' && b[i] != '\n'; i++) {
                if (model_ctl(b[i]) || ++ext > CEL_H1_MAX_CHUNK_EXT)
                    return CEL_EH1_CHUNKED;
            }
        }
        if ((e = model_eol(b, n, &i)) <= 0)
            return MORE_OR_BAD(e);
        if (size == 0)
            break;
        size_t k = n - i < size ? n - i : (size_t)size;
        memcpy(out + *outlen, b + i, k);
        *outlen += k;
        i += k;
        if (k < size || (e = model_eol(b, n, &i)) <= 0)
            return k < size ? CEL_EAGAIN : MORE_OR_BAD(e);
    }
    for (;;) { /* trailer lines, then the empty line */
        size_t start = i;
        for (; i < n && b[i] != '\r' && b[i] != '\n'; i++) {
            if (model_ctl(b[i]) || ++trailer > max_trailer)
                return CEL_EH1_CHUNKED;
        }
        if ((e = model_eol(b, n, &i)) <= 0)
            return MORE_OR_BAD(e);
        if (i - start <= 2 && (b[start] == '\n' || b[start] == '\r')) {
            *used = i;
            return 0;
        }
    }
#undef MORE_OR_BAD
}

/* Decodes B whole into a separate buffer, then in pieces in place, and with
 * the reference decoder. */
static void check_chunked(const uint8_t *b, size_t n, const uint8_t *cuts, size_t ncuts,
                          unsigned first)
{
    cel_h1_chunked s1, s2;
    size_t mt = 1 + (first & 31) * 64;
    cel_h1_chunked_init(&s1, mt);
    cel_h1_chunked_init(&s2, mt);
    char *in = fuzz_dup(b, n, 0), *out = malloc(n ? n : 1), *out2 = malloc(n ? n : 1);
    size_t olen = 0, used = 0;
    if (!out || !out2)
        abort();
    int r1 = cel_h1_chunked_decode(&s1, in, n, out, &olen, &used);
    if (getenv("FUZZ_TRACE"))
        fprintf(stderr, "chunked: %d, %zu of %zu bytes used, %zu out\n", r1, used, n, olen);
    FUZZ_CHECK(r1 == 0 || r1 == CEL_EAGAIN || r1 == CEL_EH1_CHUNKED, "chunked decode gives %d", r1);
    FUZZ_CHECK(used <= n && olen <= used, "%zu out of %zu used of %zu", olen, used, n);
    FUZZ_CHECK(r1 != CEL_EAGAIN || used == n, "needs more after %zu of %zu bytes", used, n);
    FUZZ_CHECK(s1.total == olen, "total %llu, output %zu", (unsigned long long)s1.total, olen);
    size_t mlen = 0, mused = 0;
    int rm = model_chunked(b, n, mt, (uint8_t *)out2, &mlen, &mused);
    FUZZ_CHECK(rm == r1, "the reference decoder gives %d, cel_h1_chunked_decode %d", rm, r1);
    FUZZ_CHECK(
        r1 == CEL_EH1_CHUNKED || (mused == used && mlen == olen && !memcmp(out2, out, olen)),
        "the reference decoder used %zu and gave %zu bytes, cel_h1_chunked_decode %zu and %zu",
        mused, mlen, used, olen);

    char *w = fuzz_dup(b, n, 0);
    cutter c = {cuts, ncuts, 0, first};
    size_t at = 0, o2 = 0;
    int r2 = CEL_EAGAIN;
    while (at < n && r2 == CEL_EAGAIN) {
        size_t k = cut(&c, n - at), ol = 0, u = 0;
        r2 = cel_h1_chunked_decode(&s2, w + at, k, w + at, &ol, &u);
        FUZZ_CHECK(u <= k && ol <= u, "piece: %zu out of %zu used of %zu", ol, u, k);
        FUZZ_CHECK(r2 != CEL_EAGAIN || u == k, "piece: needs more after %zu of %zu", u, k);
        FUZZ_CHECK(o2 + ol <= olen && !memcmp(w + at, out + o2, ol),
                   "in pieces the output differs at %zu", o2);
        o2 += ol;
        at += u;
    }
    FUZZ_CHECK(r2 == r1, "in pieces %d, whole %d", r2, r1);
    FUZZ_CHECK(o2 == olen, "in pieces %zu bytes out, whole %zu", o2, olen);
    FUZZ_CHECK(r1 == CEL_EH1_CHUNKED || at == used, "in pieces %zu used, whole %zu", at, used);
    FUZZ_CHECK(s2.total == s1.total, "totals differ");
    if (r1 != CEL_EAGAIN) {
        size_t ol = 1, u = 1;
        int again = cel_h1_chunked_decode(&s1, "0\r\n\r\n", 5, out, &ol, &u);
        FUZZ_CHECK(again == r1 && ol == 0 && u == 0, "after %d a later call gives %d, uses %zu", r1,
                   again, u);
    }
    free(w);
    free(in);
    free(out);
    free(out2);
}

/* Frames PAYLOAD as chunked with sizes, extensions, line ends and a trailer
 * chosen by SHAPE, and checks the decoder gives exactly PAYLOAD back. */
static void check_roundtrip(const uint8_t *payload, size_t n, const uint8_t *shape, size_t ns)
{
    static const char *const ext[] = {"", ";a=b", " ;x", "\t; y=\"q\"", ";;;"};
    static const char *const trailer[] = {"", "x-t: 1", "a:", "trailer-field: v\tw"};
    size_t cap = n + 64 * (n + 2) + 64;
    char *enc = malloc(cap), *dec = malloc(cap);
    if (!enc || !dec)
        abort();
    size_t e = 0, i = 0, si = 0;
#define SHAPE() (ns ? shape[si++ % ns] : 0)
    while (i < n) {
        unsigned s = SHAPE();
        size_t k = (size_t)(s % 64) + 1;
        if (k > n - i)
            k = n - i;
        const char *nl = s & 64 ? "\n" : "\r\n";
        e += (size_t)snprintf(enc + e, cap - e, "%s%zx%s%s", s & 128 ? "0" : "", k,
                              ext[SHAPE() % 5], nl);
        memcpy(enc + e, payload + i, k);
        e += k;
        e += (size_t)snprintf(enc + e, cap - e, "%s", nl);
        i += k;
    }
    unsigned s = SHAPE();
    const char *t = trailer[s % 4];
    e += (size_t)snprintf(enc + e, cap - e, "0%s\r\n%s%s\r\n", ext[(s >> 2) % 5], t,
                          *t ? "\r\n" : "");
#undef SHAPE
    cel_h1_chunked st;
    cel_h1_chunked_init(&st, 0);
    size_t olen = 0, used = 0;
    int rc = cel_h1_chunked_decode(&st, enc, e, dec, &olen, &used);
    FUZZ_CHECK(rc == 0, "a well-formed chunked body of %zu bytes gives %d: %.*s", e, rc,
               (int)(e < 200 ? e : 200), enc);
    FUZZ_CHECK(used == e, "the body ends at %zu, its framing at %zu", used, e);
    FUZZ_CHECK(olen == n && !memcmp(dec, payload, n), "decoded %zu bytes, sent %zu", olen, n);
    free(enc);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned mode = data[0];
    const cel_h1_limits *L = mode & 1 ? &tight : NULL;
    const cel_h1_limits *E = L ? L : &cel_h1_default_limits;
    unsigned first = (mode >> 1) + 1;
    const uint8_t *d = data + 1;
    size_t n = size - 1;

    char *buf = fuzz_dup(d, n, 0);
    cel_h1_head *h = malloc(sizeof(*h));
    if (!h)
        abort();
    int rc = cel_h1_parse_head(buf, n, h, L);
    if (rc > 0) {
        FUZZ_CHECK((size_t)rc <= n && (size_t)rc <= E->max_head, "head length %d of %zu", rc, n);
        check_head(h, buf, (size_t)rc, E);
        check_lowercase(buf, (size_t)rc, L);
    } else if (rc == CEL_EAGAIN) {
        FUZZ_CHECK(n < E->max_head, "needs more after %zu bytes", n);
    } else {
        FUZZ_CHECK(is_h1_error(rc) && rc != CEL_EH1_CHUNKED, "parse gives %d", rc);
        int st = cel_h1_error_status(rc);
        FUZZ_CHECK(st == 400 || st == 414 || st == 431 || st == 501 || st == 505,
                   "status %d for %d", st, rc);
        FUZZ_CHECK(strcmp(cel_h1_strerror(rc), "internal error"), "no text for %d", rc);
    }
    if (getenv("FUZZ_TRACE")) {
        fprintf(stderr, "head: %d (%s)", rc, rc > 0 ? "complete" : cel_h1_strerror(rc));
        if (rc > 0)
            fprintf(stderr, ", 1.%d, %zu fields, length %lld%s%s%s%s", h->minor, h->nheaders,
                    (long long)h->content_length, h->chunked ? ", chunked" : "",
                    h->keep_alive ? ", keep-alive" : "", h->expect_continue ? ", 100-continue" : "",
                    h->upgrade_h2c ? ", h2c" : "");
        fputc('\n', stderr);
    }
    check_pieces(d, n, L, E, rc, first);

    size_t body = rc > 0 && h->chunked ? (size_t)rc : 0;
    check_chunked(d + body, n - body, d, n, first);
    /* at most 1024 bytes: a chunk a byte, each with a 9-byte extension, stays
     * within CEL_H1_MAX_CHUNK_EXT */
    check_roundtrip(d + body, n - body > 1024 ? 1024 : n - body, d, body ? body : n);
    free(h);
    free(buf);
    return 0;
}
