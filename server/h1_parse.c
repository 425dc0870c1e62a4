#include "h1_parse.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "http.h"

const cel_h1_limits cel_h1_default_limits = {65536, 8192, 8192, CEL_H1_MAX_HEADERS};

static const struct {
    int err, status;
    const char *text;
} errors[] = {
    {CEL_EH1_REQLINE, 400, "malformed request line"},
    {CEL_EH1_HEADER, 400, "malformed header field"},
    {CEL_EH1_OBSFOLD, 400, "folded header line"},
    {CEL_EH1_COLONSPACE, 400, "whitespace before colon"},
    {CEL_EH1_HOST, 400, "missing, repeated or malformed host"},
    {CEL_EH1_LENGTH, 400, "bad content-length"},
    {CEL_EH1_FRAMING, 400, "ambiguous message framing"},
    {CEL_EH1_TARGET_LONG, 414, "request target too long"},
    {CEL_EH1_LINE_LONG, 431, "header line too long"},
    {CEL_EH1_HEAD_LONG, 431, "request head too long"},
    {CEL_EH1_TOO_MANY, 431, "too many header fields"},
    {CEL_EH1_CODING, 501, "unsupported transfer coding"},
    {CEL_EH1_METHOD, 501, "method too long"},
    {CEL_EH1_VERSION, 505, "unsupported HTTP version"},
    {CEL_EH1_CHUNKED, 400, "malformed chunked body"},
};

int cel_h1_error_status(int err)
{
    if (err >= 0 || err == CEL_EAGAIN)
        return 0;
    if (err == CEL_ETOOBIG)
        return 413;
    for (size_t i = 0; i < CEL_ARRAY_LEN(errors); i++) {
        if (errors[i].err == err)
            return errors[i].status;
    }
    return 500;
}

const char *cel_h1_strerror(int err)
{
    for (size_t i = 0; i < CEL_ARRAY_LEN(errors); i++) {
        if (errors[i].err == err)
            return errors[i].text;
    }
    return err >= 0 ? "no error" : err == CEL_EAGAIN ? "incomplete" : "internal error";
}

/* Control bytes other than HT: never part of a field value or chunk extension. */
static int is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int ieq(const char *s, size_t n, const char *low, size_t ln)
{
    if (n != ln)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)s[i]) != (unsigned char)low[i])
            return 0;
    }
    return 1;
}

#define IEQ(str, lit) ieq((str).p, (str).n, lit, sizeof(lit) - 1)

static const cel_str empty = {"", 0};

static cel_str trim(const char *p, const char *e)
{
    while (p < e && is_ows(*p))
        p++;
    while (e > p && is_ows(e[-1]))
        e--;
    return (cel_str){p, (size_t)(e - p)};
}

/* The next non-empty element of comma list *L (RFC 9110 section 5.6.1 lets
 * senders leave empty ones), advancing *L past it. 0 when none is left. */
static int next_item(cel_str *l, cel_str *item)
{
    while (l->n) {
        const char *c = memchr(l->p, ',', l->n);
        const char *e = c ? c : l->p + l->n;
        *item = trim(l->p, e);
        size_t used = (size_t)(e - l->p) + (c != NULL);
        l->p += used;
        l->n -= used;
        if (item->n)
            return 1;
    }
    return 0;
}

static int alnum_or(cel_str s, const char *extra)
{
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (!cel_http_is_alnum(c) && (c == 0 || !strchr(extra, c)))
            return 0;
    }
    return 1;
}

/* reg-name, IP-literal and port characters: anything else in a host would let
 * it smuggle a path or userinfo into URLs built from it. */
static int host_ok(cel_str h)
{
    return alnum_or(h, "-._~!$&'()*+,;=:[]%");
}

static cel_h1_limits effective(const cel_h1_limits *l)
{
    cel_h1_limits e = cel_h1_default_limits;
    if (l) {
        e.max_head = l->max_head ? l->max_head : e.max_head;
        e.max_line = l->max_line ? l->max_line : e.max_line;
        e.max_target = l->max_target ? l->max_target : e.max_target;
        e.max_headers = l->max_headers ? l->max_headers : e.max_headers;
    }
    if (e.max_headers > CEL_H1_MAX_HEADERS)
        e.max_headers = CEL_H1_MAX_HEADERS;
    if (e.max_head > INT_MAX) /* the head length is returned as an int */
        e.max_head = INT_MAX;
    return e;
}

/* What the request line says, before it is copied into a cel_h1_head. */
typedef struct rline {
    cel_str method, target, path, query, host;
    unsigned method_bit;
    int minor, host_from_target;
} rline;

static int target_form(rline *r)
{
    cel_str t = r->target;
    const char *p = t.p, *end = t.p + t.n;
    r->host = r->query = empty;
    r->host_from_target = 0;
    if (r->method_bit == CEL_M_CONNECT) {
        if (t.p[0] == '/' || !host_ok(t))
            return CEL_EH1_REQLINE;
        r->host = t;
        r->host_from_target = 1;
        r->path = empty;
        return 0;
    }
    if (t.n == 1 && t.p[0] == '*') {
        r->path = t;
        return r->method_bit == CEL_M_OPTIONS ? 0 : CEL_EH1_REQLINE;
    }
    if (*p != '/') {
        /* absolute-form, which RFC 9112 section 3.2.2 says a server MUST accept;
         * its authority overrides Host */
        const char *c = memchr(p, ':', t.n);
        if (!c || !(ieq(p, (size_t)(c - p), "http", 4) || ieq(p, (size_t)(c - p), "https", 5)))
            return CEL_EH1_REQLINE;
        if (end - c < 3 || c[1] != '/' || c[2] != '/')
            return CEL_EH1_REQLINE;
        const char *a = c + 3, *ae = a;
        while (ae < end && *ae != '/' && *ae != '?')
            ae++;
        r->host = (cel_str){a, (size_t)(ae - a)};
        r->host_from_target = 1;
        if (r->host.n == 0 || !host_ok(r->host))
            return CEL_EH1_REQLINE;
        p = ae;
    }
    const char *q = memchr(p, '?', (size_t)(end - p));
    const char *pe = q ? q : end;
    r->path = pe > p ? (cel_str){p, (size_t)(pe - p)} : CEL_STR_LIT("/");
    if (q)
        r->query = (cel_str){q + 1, (size_t)(end - q - 1)};
    return 0;
}

/*
 * Checks request line S[0..N) (without its line ending) left to right. When not
 * COMPLETE, S is only what has arrived of it: CEL_EAGAIN unless what is there
 * is already wrong, and since checks run in byte order the error is the one the
 * whole line would give.
 */
static int request_line(const char *s, size_t n, int complete, const cel_h1_limits *L, rline *r)
{
    static const char ver[] = "HTTP/1.1"; /* digits at 5 and 7 vary */
    size_t i = 0;
    while (i < n && cel_http_is_tchar((unsigned char)s[i])) {
        if (++i > CEL_H1_MAX_METHOD)
            return CEL_EH1_METHOD;
    }
    if (i == n)
        return complete ? CEL_EH1_REQLINE : CEL_EAGAIN;
    if (i == 0 || s[i] != ' ')
        return CEL_EH1_REQLINE;
    size_t m = i, t = ++i;
    for (; i < n && s[i] != ' '; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i - t >= L->max_target)
            return CEL_EH1_TARGET_LONG;
        /* visible ASCII: the odd "{}|\^` that clients leave unescaped does no
         * harm to a router matching bytes, but a fragment is never sent */
        if (c <= ' ' || c >= 0x7f || c == '#')
            return CEL_EH1_REQLINE;
    }
    if (i == n)
        return complete ? CEL_EH1_REQLINE : CEL_EAGAIN;
    if (i == t)
        return CEL_EH1_REQLINE;
    size_t v = i + 1, vn = n - v;
    if (vn > 8 || (complete && vn < 8))
        return CEL_EH1_REQLINE;
    for (size_t k = 0; k < vn; k++) {
        char c = s[v + k];
        if (k == 5 || k == 7 ? c < '0' || c > '9' : c != ver[k])
            return CEL_EH1_REQLINE;
    }
    if (!complete)
        return CEL_EAGAIN;
    if (s[v + 5] != '1' || s[v + 7] > '1')
        return CEL_EH1_VERSION;
    r->method = (cel_str){s, m};
    r->method_bit = cel_method_bit(s, m);
    r->target = (cel_str){s + t, i - t};
    r->minor = s[v + 7] - '0';
    return target_form(r);
}

static int field_line(const char *s, size_t n, const cel_h1_limits *L, cel_header *f)
{
    if (n > L->max_line)
        return CEL_EH1_LINE_LONG;
    /* obs-fold, or whitespace before the first field (RFC 9112 section 2.2),
     * both of which some parsers join to the line before */
    if (is_ows(s[0]))
        return CEL_EH1_OBSFOLD;
    size_t i = 0;
    while (i < n && cel_http_is_tchar((unsigned char)s[i]))
        i++;
    if (i > 0 && i < n && is_ows(s[i]))
        return CEL_EH1_COLONSPACE;
    if (i == 0 || i == n || s[i] != ':')
        return CEL_EH1_HEADER;
    cel_str v = trim(s + i + 1, s + n);
    for (size_t k = 0; k < v.n; k++) {
        if (is_ctl((unsigned char)v.p[k]))
            return CEL_EH1_HEADER;
    }
    f->name = (cel_str){s, i};
    f->value = v;
    return 0;
}

/* Folds one Content-Length field into *CL. Lists of equal values ("5, 5") are
 * what a proxy that merged duplicate fields sends; RFC 9110 section 8.6 lets
 * us take them as one, anything else is refused. */
static int content_length(cel_str v, int64_t *cl)
{
    const char *p = v.p, *end = v.p + v.n;
    for (;;) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        cel_str d = trim(p, c ? c : end);
        if (d.n == 0)
            return CEL_EH1_LENGTH;
        int64_t x = 0;
        for (size_t i = 0; i < d.n; i++) {
            int dig = d.p[i] - '0';
            if (dig < 0 || dig > 9 || x > (INT64_MAX - dig) / 10)
                return CEL_EH1_LENGTH;
            x = x * 10 + dig;
        }
        if (*cl >= 0 && *cl != x)
            return CEL_EH1_LENGTH;
        *cl = x;
        if (!c)
            return 0;
        p = c + 1;
    }
}

/* Cross-field checks and derived fields of a complete head of COUNT fields. */
static int finish(cel_h1_head *h, const rline *r, size_t count, const cel_h1_limits *L)
{
    if (count > L->max_headers)
        return CEL_EH1_TOO_MANY;
    int nhost = 0, nte = 0, ncodings = 0, unknown = 0, nsettings = 0;
    int close = 0, ka = 0, conn_upgrade = 0, h2c = 0, cont = 0;
    int64_t cl = -1;
    cel_str host = empty, settings = empty, l, it;
    h->chunked = 0;
    for (size_t i = 0; i < count; i++) {
        cel_str name = h->headers[i].name, v = h->headers[i].value;
        if (IEQ(name, "host")) {
            nhost++;
            host = v;
        } else if (IEQ(name, "content-length")) {
            int rc = content_length(v, &cl);
            if (rc)
                return rc;
        } else if (IEQ(name, "transfer-encoding")) {
            nte++;
            for (l = v; next_item(&l, &it); ncodings++) {
                if (!IEQ(it, "chunked"))
                    unknown = 1;
                else if (h->chunked) /* RFC 9112 section 6.1: never twice */
                    return CEL_EH1_FRAMING;
                h->chunked = IEQ(it, "chunked");
            }
        } else if (IEQ(name, "connection")) {
            for (l = v; next_item(&l, &it);) {
                close |= IEQ(it, "close");
                ka |= IEQ(it, "keep-alive");
                conn_upgrade |= IEQ(it, "upgrade");
            }
        } else if (IEQ(name, "expect")) {
            for (l = v; next_item(&l, &it);)
                cont |= IEQ(it, "100-continue");
        } else if (IEQ(name, "upgrade")) {
            for (l = v; next_item(&l, &it);)
                h2c |= IEQ(it, "h2c");
        } else if (IEQ(name, "http2-settings")) {
            nsettings++;
            settings = v;
        }
    }
    /* RFC 9112 section 3.2: a missing (in 1.1) or repeated Host is a 400 */
    if (nhost > 1 || (nhost == 1 && !host_ok(host)) || (nhost == 0 && r->minor == 1))
        return CEL_EH1_HOST;
    /* Content-Length next to Transfer-Encoding, or any TE in HTTP/1.0, is how
     * smuggling starts: whoever reads the other framing sees a second request */
    if (nte && (cl >= 0 || r->minor == 0 || ncodings == 0))
        return CEL_EH1_FRAMING;
    if (unknown)
        return CEL_EH1_CODING;
    h->method = r->method;
    h->method_bit = r->method_bit;
    h->target = r->target;
    h->path = r->path;
    h->query = r->query;
    h->host = r->host_from_target ? r->host : host;
    h->minor = r->minor;
    h->content_length = cl;
    h->keep_alive = r->minor == 1 ? !close : ka && !close;
    /* RFC 9110 section 10.1.1: a 1.0 client cannot take a 100 response */
    h->expect_continue = r->minor == 1 && cont;
    /* RFC 7540 section 3.2.1: exactly one HTTP2-Settings, or no upgrade. It is
     * base64url without padding; one character past a whole group of four
     * would be six bits of no octet, so it is not base64url at all. */
    h->upgrade_h2c = r->minor == 1 && h2c && conn_upgrade && nsettings == 1 &&
                     alnum_or(settings, "-_") && settings.n % 4 != 1;
    h->http2_settings = h->upgrade_h2c ? settings : empty;
    h->nheaders = count;
    return 0;
}

/*
 * Walks the lines of B[0..N) from POS, a line start at or after the request
 * line at RL. With H NULL it only checks them (lines before POS were checked
 * by an earlier call); with H it fills it in. Returns the head length,
 * CEL_EAGAIN with *RESUME at the first incomplete line, or an error.
 */
static int scan(const char *b, size_t n, size_t rl, size_t pos, const cel_h1_limits *L,
                cel_h1_head *h, size_t *resume)
{
    rline r;
    cel_header scratch;
    size_t count = 0;
    memset(&r, 0, sizeof(r));
    for (;;) {
        const char *lf = pos < n ? memchr(b + pos, '\n', n - pos) : NULL;
        size_t e = lf ? (size_t)(lf - b) : n, ln = e - pos;
        /* a CR before the LF is the line ending's; at the end of a partial
         * line it may be, so it is not held against the line either */
        if (ln && b[e - 1] == '\r')
            ln--;
        if (!lf) {
            *resume = pos;
            if (pos == rl)
                return request_line(b + pos, ln, 0, L, &r);
            return ln > L->max_line ? CEL_EH1_LINE_LONG : CEL_EAGAIN;
        }
        int rc = 0;
        if (pos == rl) {
            rc = request_line(b + pos, ln, 1, L, &r);
        } else if (ln == 0) {
            rc = h ? finish(h, &r, count, L) : 0;
            return rc ? rc : (int)(e + 1);
        } else {
            rc = field_line(b + pos, ln, L,
                            h && count < CEL_H1_MAX_HEADERS ? &h->headers[count] : &scratch);
            count++;
        }
        if (rc)
            return rc;
        pos = e + 1;
    }
}

/* RFC 9112 section 2.2: skip an empty line or two a client left after a body. */
static size_t skip_empty_lines(const char *b, size_t n)
{
    size_t i = 0;
    for (int k = 0; k < 2; k++) {
        if (i < n && b[i] == '\n')
            i += 1;
        else if (n - i >= 2 && b[i] == '\r' && b[i + 1] == '\n')
            i += 2;
        else
            break;
    }
    return i;
}

int cel_h1_parse_head_resume(const char *buf, size_t len, cel_h1_head *out,
                             const cel_h1_limits *lim, size_t *scanned)
{
    cel_h1_limits L = effective(lim);
    /* nothing past max_head is looked at, so a long head costs no more than that */
    size_t n = len < L.max_head ? len : L.max_head;
    size_t rl = skip_empty_lines(buf, n), resume = rl;
    int rc;
    if (scanned && *scanned > rl && *scanned <= n && buf[*scanned - 1] == '\n') {
        rc = scan(buf, n, rl, *scanned, &L, NULL, &resume);
        if (rc > 0)
            rc = scan(buf, n, rl, rl, &L, out, &resume);
    } else {
        rc = scan(buf, n, rl, rl, &L, out, &resume);
    }
    if (rc == CEL_EAGAIN && len >= L.max_head)
        rc = CEL_EH1_HEAD_LONG;
    if (scanned)
        *scanned = rc == CEL_EAGAIN ? resume : 0;
    return rc;
}

int cel_h1_parse_head(const char *buf, size_t len, cel_h1_head *out, const cel_h1_limits *lim)
{
    return cel_h1_parse_head_resume(buf, len, out, lim, NULL);
}

const cel_header *cel_h1_find(const cel_h1_head *h, const char *lowername)
{
    size_t n = strlen(lowername);
    for (size_t i = 0; i < h->nheaders; i++) {
        if (ieq(h->headers[i].name.p, h->headers[i].name.n, lowername, n))
            return &h->headers[i];
    }
    return NULL;
}

void cel_h1_lowercase_names(const cel_h1_head *h, char *buf)
{
    for (size_t i = 0; i < h->nheaders; i++) {
        char *p = buf + (h->headers[i].name.p - buf);
        for (size_t k = 0; k < h->headers[i].name.n; k++)
            p[k] = (char)lower((unsigned char)p[k]);
    }
}

/* Chunked body states: a size line (first digit, more digits, BWS before ';',
 * ignored extension, its LF), data and its line ending, trailer lines. */
enum {
    C_SIZE0,
    C_SIZE,
    C_SIZE_WS,
    C_EXT,
    C_SIZE_LF,
    C_DATA,
    C_DATA_CR,
    C_DATA_LF,
    C_TRAILER0,
    C_TRAILER,
    C_TRAILER_LF,
    C_END_LF,
    C_DONE,
    C_ERROR
};

void cel_h1_chunked_init(cel_h1_chunked *st, size_t max_trailer)
{
    memset(st, 0, sizeof(*st));
    st->max_trailer = max_trailer ? max_trailer : CEL_H1_MAX_TRAILER;
    st->state = C_SIZE0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

static int size_line_end(const cel_h1_chunked *st, unsigned char c)
{
    if (c == '\r')
        return C_SIZE_LF;
    if (c != '\n')
        return C_ERROR;
    return st->remaining ? C_DATA : C_TRAILER0;
}

static int trailer_byte(cel_h1_chunked *st, unsigned char c)
{
    if (c == '\r')
        return C_TRAILER_LF;
    if (c == '\n')
        return C_TRAILER0;
    return is_ctl(c) || ++st->trailer_bytes > st->max_trailer ? C_ERROR : C_TRAILER;
}

/* The state after framing byte C in state S. */
static int step(cel_h1_chunked *st, int s, unsigned char c)
{
    int x = hexval(c);
    switch (s) {
    case C_SIZE0:
        st->remaining = x < 0 ? 0 : (uint64_t)x;
        return x < 0 ? C_ERROR : C_SIZE;
    case C_SIZE:
        if (x >= 0) {
            /* sizes stay below 2^63 so a caller may hold them in an int64_t */
            if (st->remaining > (uint64_t)INT64_MAX >> 4)
                return C_ERROR;
            st->remaining = st->remaining << 4 | (uint64_t)x;
            return C_SIZE;
        }
        if (c == ';')
            return C_EXT;
        return is_ows((char)c) ? C_SIZE_WS : size_line_end(st, c);
    case C_SIZE_WS:
        if (c == ';')
            return C_EXT;
        return is_ows((char)c) ? C_SIZE_WS : C_ERROR;
    case C_EXT:
        if (c == '\r' || c == '\n')
            return size_line_end(st, c);
        return is_ctl(c) || ++st->ext_bytes > CEL_H1_MAX_CHUNK_EXT ? C_ERROR : C_EXT;
    case C_SIZE_LF:
        return c == '\n' ? size_line_end(st, c) : C_ERROR;
    case C_DATA_CR:
        return c == '\r' ? C_DATA_LF : c == '\n' ? C_SIZE0 : C_ERROR;
    case C_DATA_LF:
        return c == '\n' ? C_SIZE0 : C_ERROR;
    case C_TRAILER0:
        if (c == '\r')
            return C_END_LF;
        return c == '\n' ? C_DONE : trailer_byte(st, c);
    case C_TRAILER:
        return trailer_byte(st, c);
    case C_TRAILER_LF:
    case C_END_LF:
        if (c != '\n')
            return C_ERROR;
        return s == C_END_LF ? C_DONE : C_TRAILER0;
    }
    return C_ERROR;
}

int cel_h1_chunked_decode(cel_h1_chunked *st, const char *in, size_t len, char *out, size_t *outlen,
                          size_t *consumed)
{
    size_t i = 0, o = 0;
    int s = st->state;
    while (i < len && s != C_DONE && s != C_ERROR) {
        if (s == C_DATA) {
            size_t k = len - i;
            if (k > st->remaining)
                k = (size_t)st->remaining;
            memmove(out + o, in + i, k); /* o <= i: safe when OUT is IN */
            o += k;
            i += k;
            st->remaining -= k;
            st->total += k;
            if (st->remaining == 0)
                s = C_DATA_CR;
            continue;
        }
        s = step(st, s, (unsigned char)in[i++]);
    }
    st->state = s;
    *outlen = o;
    *consumed = i;
    if (s == C_ERROR)
        return CEL_EH1_CHUNKED;
    return s == C_DONE ? 0 : CEL_EAGAIN;
}

/* An output cursor that remembers running out of room instead of failing each
 * call, so a head is written straight through and checked once. */
typedef struct wbuf {
    char *p;
    size_t n, cap;
    int over;
} wbuf;

static void put(wbuf *w, const char *s, size_t n)
{
    if (w->over || n > w->cap - w->n) {
        w->over = 1;
        return;
    }
    memcpy(w->p + w->n, s, n);
    w->n += n;
}

#define PUT_LIT(w, lit) put(w, lit, sizeof(lit) - 1)

static void put_dec(wbuf *w, uint64_t v)
{
    char tmp[20];
    put(w, tmp, cel_http_utoa(tmp, v));
}

static void put_hex(wbuf *w, uint64_t v)
{
    char tmp[16];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = "0123456789abcdef"[v % 16];
        v /= 16;
    } while (v);
    put(w, tmp + i, sizeof(tmp) - i);
}

static void put_field(wbuf *w, const char *name, size_t nlen, cel_str v)
{
    put(w, name, nlen);
    PUT_LIT(w, ": ");
    put(w, v.p, v.n);
    PUT_LIT(w, "\r\n");
}

static int written(const wbuf *w)
{
    return w->over || w->n > INT_MAX ? CEL_ETOOBIG : (int)w->n;
}

static int status_line(wbuf *w, int status)
{
    if (status < 100 || status > 999)
        return CEL_EINVAL;
    cel_str reason = cel_http_reason(status);
    PUT_LIT(w, "HTTP/1.1 ");
    put_dec(w, (uint64_t)status);
    PUT_LIT(w, " ");
    put(w, reason.p, reason.n);
    PUT_LIT(w, "\r\n");
    return 0;
}

int cel_h1_write_status_line(char *buf, size_t cap, int status)
{
    wbuf w = {buf, 0, cap, 0};
    int rc = status_line(&w, status);
    return rc ? rc : written(&w);
}

static int field_ok(const cel_header *f)
{
    if (f->name.n == 0)
        return 0;
    for (size_t i = 0; i < f->name.n; i++) {
        if (!cel_http_is_tchar((unsigned char)f->name.p[i]))
            return 0;
    }
    for (size_t i = 0; i < f->value.n; i++) {
        char c = f->value.p[i];
        if (c == '\r' || c == '\n' || c == '\0')
            return 0;
    }
    return 1;
}

int cel_h1_write_head(char *buf, size_t cap, const cel_h1_resp *r)
{
    wbuf w = {buf, 0, cap, 0};
    if (status_line(&w, r->status))
        return CEL_EINVAL;
    for (size_t i = 0; i < r->nheaders; i++) {
        const cel_header *f = &r->headers[i];
        if (!field_ok(f))
            return CEL_EINVAL;
        if (cel_http_field_owner(f->name.p, f->name.n) != CEL_HTTP_FRAMING)
            put_field(&w, f->name.p, f->name.n, f->value);
    }
    /* RFC 9110 section 8.6: no Content-Length in a 1xx or 204, and no body either */
    if (r->status >= 200 && r->status != 204) {
        if (r->body == CEL_H1_BODY_LENGTH) {
            PUT_LIT(&w, "content-length: ");
            put_dec(&w, r->content_length);
            PUT_LIT(&w, "\r\n");
        } else if (r->body == CEL_H1_BODY_CHUNKED) {
            PUT_LIT(&w, "transfer-encoding: chunked\r\n");
        }
    }
    if (r->connection == CEL_H1_CONN_CLOSE)
        PUT_LIT(&w, "connection: close\r\n");
    else if (r->connection == CEL_H1_CONN_KEEP_ALIVE)
        PUT_LIT(&w, "connection: keep-alive\r\n");
    PUT_LIT(&w, "\r\n");
    return written(&w);
}

int cel_h1_write_chunk_size(char *buf, size_t cap, uint64_t n)
{
    wbuf w = {buf, 0, cap, 0};
    put_hex(&w, n);
    PUT_LIT(&w, "\r\n");
    return written(&w);
}
