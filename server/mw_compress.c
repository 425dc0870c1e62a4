#include <brotli/encode.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

#include "codecs.h"
#include "http.h"
#include "mw_compress.h"

/* Output of a streamed chunk goes out in pieces this big: the bound on what
 * a stream holds besides its codec's state. */
#define OUT_CHUNK 16384
/* Codec windows for streams: what bounds a stream's memory. */
#define GZIP_WBITS 15
#define BR_LGWIN 18
#define ZSTD_WLOG 20
/* Constant bodies are compressed once, at load: the best each codec has. */
static const int load_level[CEL_ENC_N] = {9, 11, 19};

static const cel_str enc_names[CEL_ENC_N] = {
    CEL_STR_LIT("gzip"),
    CEL_STR_LIT("br"),
    CEL_STR_LIT("zstd"),
};

typedef struct variants {
    const char *body; /* the generation's constant body (the key), NULL: free slot */
    size_t len;
    cel_str v[CEL_ENC_N]; /* {NULL, 0}: no smaller than the body */
} variants;

typedef struct mw_compress {
    cel_mw base;
    cel_compress_conf conf;
    char *strings;
    variants *tab; /* open addressing on the body's address; filled at load only */
    size_t tab_cap, tab_n;
} mw_compress;

/* The per-request state, in the exchange's arena. */
typedef struct cstate {
    const mw_compress *m;
    int enc;     /* the variant the client prefers */
    int applied; /* the answer's body is encoded */
    int typed;   /* its type is one to compress: 1, 0, or -1 not known yet */
    union {
        z_stream *z;
        BrotliEncoderState *br;
        ZSTD_CCtx *zs;
    } s;
    int open;           /* s holds a codec */
    cel_codecs *codecs; /* the worker's, where s came from and goes back */
    unsigned char *out;
} cstate;

/* ---- negotiation ---- */

static int ieq(cel_str a, cel_str b)
{
    if (a.n != b.n)
        return 0;
    for (size_t i = 0; i < a.n; i++)
        if (cel_http_lower((unsigned char)a.p[i]) != (unsigned char)b.p[i])
            return 0;
    return 1;
}

static cel_str trim(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return (cel_str){p, (size_t)(e - p)};
}

/* A qvalue ("0", "0.5", "1.000") in thousandths; malformed counts as 1000,
 * as a client that names a coding means it. */
static int qvalue(const char *p, const char *e)
{
    if (p == e || (*p != '0' && *p != '1'))
        return 1000;
    int q = (*p - '0') * 1000, scale = 100;
    for (p += 2; p < e && scale; p++, scale /= 10) {
        if (*p < '0' || *p > '9')
            return 1000;
        q += (*p - '0') * scale;
    }
    return q > 1000 ? 1000 : q;
}

/* Which coding token T names: CEL_ENC_*, CEL_ENC_N for "*", -1 for others. */
static int coding_of(const char *t, size_t n)
{
    char low[6];
    if (n == 0 || n > sizeof(low))
        return -1;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)cel_http_lower((unsigned char)t[i]);
    if (n == 4 && memcmp(low, "gzip", 4) == 0)
        return CEL_ENC_GZIP;
    if (n == 2 && memcmp(low, "br", 2) == 0)
        return CEL_ENC_BR;
    if (n == 4 && memcmp(low, "zstd", 4) == 0)
        return CEL_ENC_ZSTD;
    if (n == 6 && memcmp(low, "x-gzip", 6) == 0)
        return CEL_ENC_GZIP;
    return n == 1 && low[0] == '*' ? CEL_ENC_N : -1;
}

/* The q each coding gets from one accept-encoding value, in one pass: QS[i]
 * for the named ones, QS[CEL_ENC_N] for "*" (-1: not given). */
static void accept_list(cel_str v, int *qs)
{
    const char *p = v.p, *end = v.p + v.n;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *t = p;
        while (p < end && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        int enc = coding_of(t, (size_t)(p - t));
        int q = 1000;
        while (p < end && *p != ',') {
            /* parameters: only q matters */
            if (*p == ';') {
                p++;
                while (p < end && (*p == ' ' || *p == '\t'))
                    p++;
                if (end - p >= 2 && (*p | 0x20) == 'q' && p[1] == '=') {
                    const char *a = p + 2;
                    p = a;
                    while (p < end && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
                        p++;
                    q = qvalue(a, p);
                    continue;
                }
            }
            p++;
        }
        if (enc >= 0)
            qs[enc] = q;
    }
}

/* The configured coding the request's accept-encoding rates highest (ties:
 * the configured order), or -1; also -1 for a request with a range. */
static int negotiate(const cel_compress_conf *c, const cel_request *req)
{
    int qs[CEL_ENC_N + 1] = {-1, -1, -1, -1}, any = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        cel_str name = req->headers[i].name;
        if (name.n == 15 && memcmp(name.p, "accept-encoding", 15) == 0) {
            accept_list(req->headers[i].value, qs);
            any = 1;
        } else if (name.n == 5 && memcmp(name.p, "range", 5) == 0) {
            return -1;
        }
    }
    if (!any)
        return -1;
    int best = -1, bestq = 0;
    for (size_t i = 0; i < c->nenc; i++) {
        int e = c->order[i];
        int q = qs[e] >= 0 ? qs[e] : qs[CEL_ENC_N] >= 0 ? qs[CEL_ENC_N] : 0;
        if (q > bestq)
            best = e, bestq = q;
    }
    return best;
}

static int type_matches(const cel_compress_conf *c, cel_str ct)
{
    const char *semi = memchr(ct.p, ';', ct.n);
    cel_str t = trim(ct.p, semi ? semi : ct.p + ct.n);
    for (size_t i = 0; i < c->ntypes; i++) {
        cel_str p = c->types[i];
        if (p.n >= 2 && p.p[p.n - 1] == '*') {
            if (t.n >= p.n - 1 && ieq((cel_str){t.p, p.n - 1}, (cel_str){p.p, p.n - 1}))
                return 1;
        } else if (ieq(t, p)) {
            return 1;
        }
    }
    return 0;
}

static int has_header(const cel_response *res, cel_str name)
{
    for (size_t i = 0; i < res->nheaders; i++)
        if (res->headers[i].name.n == name.n && memcmp(res->headers[i].name.p, name.p, name.n) == 0)
            return 1;
    return 0;
}

/* ---- codecs ---- */

/* A whole body encoded into OUT (room for CAP) with contexts from C (NULL:
 * made and freed here): its length, or 0 when the codec failed or the
 * result would not be smaller. */
static size_t encode_whole(cel_codecs *c, int enc, int level, const char *in, size_t n,
                           unsigned char *out, size_t cap)
{
    size_t len = 0;
    if (enc == CEL_ENC_GZIP) {
        z_stream *z = cel_codecs_gzip(c, level, GZIP_WBITS + 16);
        if (!z)
            return 0;
        z->next_in = (unsigned char *)(uintptr_t)in;
        z->avail_in = (uInt)n;
        z->next_out = out;
        z->avail_out = (uInt)cap;
        if (deflate(z, Z_FINISH) == Z_STREAM_END)
            len = z->total_out;
        cel_codecs_gzip_put(c, z);
    } else if (enc == CEL_ENC_BR) {
        BrotliEncoderState *b = cel_codecs_br(c);
        if (!b)
            return 0;
        BrotliEncoderSetParameter(b, BROTLI_PARAM_QUALITY, (uint32_t)level);
        BrotliEncoderSetParameter(b, BROTLI_PARAM_LGWIN, BROTLI_DEFAULT_WINDOW);
        BrotliEncoderSetParameter(b, BROTLI_PARAM_SIZE_HINT,
                                  n < (1u << 30) ? (uint32_t)n : (1u << 30));
        size_t in_left = n, out_left = cap;
        const uint8_t *ip = (const uint8_t *)in;
        uint8_t *op = out;
        /* one call does it all when the output fits, and CAP is the bound */
        if (BrotliEncoderCompressStream(b, BROTLI_OPERATION_FINISH, &in_left, &ip, &out_left, &op,
                                        NULL) &&
            BrotliEncoderIsFinished(b))
            len = cap - out_left;
        cel_codecs_br_put(c, b);
    } else {
        ZSTD_CCtx *z = cel_codecs_zstd(c);
        if (!z)
            return 0;
        ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, level);
        len = ZSTD_compress2(z, out, cap, in, n);
        if (ZSTD_isError(len))
            len = 0;
        cel_codecs_zstd_put(c, z);
    }
    return len < n ? len : 0;
}

static size_t bound(int enc, size_t n)
{
    if (enc == CEL_ENC_GZIP)
        return compressBound((uLong)n) + 18; /* the gzip header and trailer */
    if (enc == CEL_ENC_BR)
        return BrotliEncoderMaxCompressedSize(n) ? BrotliEncoderMaxCompressedSize(n) : n + 1024;
    return ZSTD_compressBound(n);
}

static int stream_open(cstate *s, int level)
{
    if (s->enc == CEL_ENC_GZIP) {
        z_stream *z = cel_codecs_gzip(s->codecs, level, GZIP_WBITS + 16);
        if (!z)
            return CEL_ENOMEM;
        s->s.z = z;
    } else if (s->enc == CEL_ENC_BR) {
        BrotliEncoderState *b = cel_codecs_br(s->codecs);
        if (!b)
            return CEL_ENOMEM;
        BrotliEncoderSetParameter(b, BROTLI_PARAM_QUALITY, (uint32_t)level);
        BrotliEncoderSetParameter(b, BROTLI_PARAM_LGWIN, BR_LGWIN);
        s->s.br = b;
    } else {
        ZSTD_CCtx *zs = cel_codecs_zstd(s->codecs);
        if (!zs)
            return CEL_ENOMEM;
        ZSTD_CCtx_setParameter(zs, ZSTD_c_compressionLevel, level);
        ZSTD_CCtx_setParameter(zs, ZSTD_c_windowLog, ZSTD_WLOG);
        s->s.zs = zs;
    }
    s->open = 1;
    return 0;
}

static void stream_close(cstate *s)
{
    if (!s->open)
        return;
    s->open = 0;
    if (s->enc == CEL_ENC_GZIP)
        cel_codecs_gzip_put(s->codecs, s->s.z);
    else if (s->enc == CEL_ENC_BR)
        cel_codecs_br_put(s->codecs, s->s.br);
    else
        cel_codecs_zstd_put(s->codecs, s->s.zs);
}

/* Passes the output of P (N bytes) to NEXT, flushed (FIN: finished). Returns
 * as the exchange's write does: CEL_EAGAIN when some write said so. */
static int stream_feed(cel_exchange *x, cstate *s, const void *p, size_t n, int fin,
                       const cel_body_next *next)
{
    int again = 0;
    for (;;) {
        size_t made = 0;
        int more = 0;
        if (s->enc == CEL_ENC_GZIP) {
            z_stream *z = s->s.z;
            z->next_in = (unsigned char *)(uintptr_t)p;
            z->avail_in = (uInt)n;
            z->next_out = s->out;
            z->avail_out = OUT_CHUNK;
            int rc = deflate(z, fin ? Z_FINISH : Z_SYNC_FLUSH);
            if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
                return CEL_EIO;
            made = OUT_CHUNK - z->avail_out;
            p = z->next_in, n = z->avail_in;
            more = z->avail_out == 0 || (fin && rc != Z_STREAM_END);
        } else if (s->enc == CEL_ENC_BR) {
            size_t in_left = n, out_left = OUT_CHUNK;
            const uint8_t *ip = p;
            uint8_t *op = s->out;
            if (!BrotliEncoderCompressStream(s->s.br,
                                             fin ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_FLUSH,
                                             &in_left, &ip, &out_left, &op, NULL))
                return CEL_EIO;
            made = OUT_CHUNK - out_left;
            p = ip, n = in_left;
            more = n > 0 || BrotliEncoderHasMoreOutput(s->s.br) ||
                   (fin && !BrotliEncoderIsFinished(s->s.br));
        } else {
            ZSTD_inBuffer in = {p, n, 0};
            ZSTD_outBuffer out = {s->out, OUT_CHUNK, 0};
            size_t left = ZSTD_compressStream2(s->s.zs, &out, &in, fin ? ZSTD_e_end : ZSTD_e_flush);
            if (ZSTD_isError(left))
                return CEL_EIO;
            made = out.pos;
            p = (const char *)p + in.pos, n -= in.pos;
            more = left != 0;
        }
        if (made) {
            int rc = next->write(x, s->out, made);
            if (rc == CEL_EAGAIN)
                again = 1;
            else if (rc < 0)
                return rc;
        }
        if (!more)
            return again ? CEL_EAGAIN : 0;
    }
}

/* ---- the body filter ---- */

static const cel_body_filter filter;

static const variants *lookup(const mw_compress *m, const char *body, size_t len)
{
    if (!m->tab_cap)
        return NULL;
    size_t mask = m->tab_cap - 1;
    for (size_t i = ((uintptr_t)body >> 4) & mask;; i = (i + 1) & mask) {
        const variants *v = &m->tab[i];
        if (!v->body)
            return NULL;
        if (v->body == body && v->len == len)
            return v;
    }
}

static int f_head(cel_exchange *x, cel_response *res, int whole)
{
    cstate *s = x->filter_data;
    const cel_compress_conf *c = &s->m->conf;
    x->filter = NULL; /* unless a stream is encoded: its chunks then pass f_write */
    if (res->status != 200 || has_header(res, CEL_STR_LIT("content-encoding")))
        return 0;
    /* a constant body prepared at load: its type was checked then */
    const variants *v = whole && res->body_in_gen ? lookup(s->m, res->body, res->body_len) : NULL;
    s->typed = v || type_matches(c, res->content_type);
    if (!s->typed || (whole && res->body_len < c->min_length))
        return 0;
    s->codecs = cel_codecs_of(x->env);
    if (!whole) {
        s->out = cel_arena_alloc(x->arena, OUT_CHUNK);
        if (!s->out || stream_open(s, c->level[s->enc]))
            return CEL_ENOMEM;
        s->applied = 1;
        x->filter = &filter;
        return 0;
    }
    cel_str out = {NULL, 0};
    if (v) {
        out = v->v[s->enc];
    } else {
        size_t cap = bound(s->enc, res->body_len);
        unsigned char *buf = cel_arena_alloc(x->arena, cap);
        if (!buf)
            return CEL_ENOMEM;
        out = (cel_str){(const char *)buf, encode_whole(s->codecs, s->enc, c->level[s->enc],
                                                        res->body, res->body_len, buf, cap)};
    }
    if (out.n) {
        res->body = out.p;
        res->body_len = out.n;
        res->body_in_gen = v != NULL;
        s->applied = 1;
    }
    return 0;
}

static int f_write(cel_exchange *x, const void *p, size_t n, const cel_body_next *next)
{
    cstate *s = x->filter_data;
    if (!s->open)
        return next->write(x, p, n);
    return n ? stream_feed(x, s, p, n, 0, next) : 0;
}

static int f_end(cel_exchange *x, const cel_body_next *next)
{
    cstate *s = x->filter_data;
    if (s->open) {
        int rc = stream_feed(x, s, NULL, 0, 1, next);
        stream_close(s);
        if (rc < 0 && rc != CEL_EAGAIN)
            return rc;
    }
    return next->end(x);
}

static void f_close(cel_exchange *x)
{
    stream_close(x->filter_data);
}

static const cel_body_filter filter = {f_head, f_write, f_end, f_close};

/* ---- the phases ---- */

static int request(const cel_mw *mw, cel_exchange *x, cel_response *res)
{
    const mw_compress *m = (const mw_compress *)mw;
    cel_request *req = x->req;
    (void)res;
    if (req->method_bit == CEL_M_HEAD)
        return 0;
    int enc = negotiate(&m->conf, req);
    if (enc < 0)
        return 0;
    cstate *s = cel_arena_alloc(x->arena, sizeof(*s));
    if (!s)
        return 0; /* the answer goes out as it is */
    memset(s, 0, sizeof(*s));
    s->m = m;
    s->enc = enc;
    s->typed = -1;
    x->filter = &filter;
    x->filter_data = s;
    return 0;
}

static const cel_field *find(const cel_fields *f, cel_str name)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->v[i].name_len == name.n && memcmp(f->v[i].name, name.p, name.n) == 0)
            return &f->v[i];
    return NULL;
}

/* Some vary field already names accept-encoding (a handler that serves
 * precompressed files says so itself). */
static int varies(const cel_fields *f)
{
    for (size_t i = 0; i < f->n; i++) {
        const cel_field *v = &f->v[i];
        if (v->name_len != 4 || memcmp(v->name, "vary", 4) != 0)
            continue;
        for (size_t k = 0; k + 15 <= v->value_len; k++)
            if (strncasecmp(v->value + k, "accept-encoding", 15) == 0)
                return 1;
    }
    return 0;
}

static void head(const cel_mw *mw, cel_exchange *x, int status, cel_fields *f)
{
    const mw_compress *m = (const mw_compress *)mw;
    if (status != 200 && status != 304)
        return;
    /* x->filter is cleared once the filter chose: the state says it was this
     * request's when it names this middleware */
    const cstate *s = x->filter_data;
    if (s && s->m != m)
        s = NULL;
    if (status == 200 && !(s && s->typed >= 0)) {
        const cel_field *ct = find(f, CEL_STR_LIT("content-type"));
        if (!ct || !type_matches(&m->conf, (cel_str){ct->value, ct->value_len}))
            return;
    } else if (status == 200 && !s->typed) {
        return;
    }
    if (!varies(f))
        cel_fields_add(f, CEL_STR_LIT("vary"), CEL_STR_LIT("accept-encoding"));
    if (status != 200 || !s || !s->applied)
        return;
    /* one pass: accept-ranges goes, an etag turns weak */
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++) {
        cel_field *fl = &f->v[i];
        if (fl->name_len == 13 && memcmp(fl->name, "accept-ranges", 13) == 0)
            continue;
        if (fl->name_len == 4 && memcmp(fl->name, "etag", 4) == 0 && fl->value_len &&
            fl->value[0] == '"') {
            char *w = cel_arena_alloc(x->arena, fl->value_len + 2);
            if (w) {
                memcpy(w, "W/", 2);
                memcpy(w + 2, fl->value, fl->value_len);
                fl->value = w;
                fl->value_len += 2;
            }
        }
        f->v[k++] = *fl;
    }
    f->n = k;
    cel_fields_add(f, CEL_STR_LIT("content-encoding"), enc_names[s->enc]);
}

static void destroy(cel_mw *mw)
{
    mw_compress *m = (mw_compress *)mw;
    for (size_t i = 0; i < m->tab_cap; i++)
        for (int e = 0; e < CEL_ENC_N; e++)
            free((void *)(uintptr_t)m->tab[i].v[e].p);
    free(m->tab);
    free(m->conf.types);
    free(m->strings);
    free(m);
}

static int prepare(cel_mw *mw, const cel_response *res)
{
    mw_compress *m = (mw_compress *)mw;
    if (res->status != 200 || !res->body_in_gen || res->body_len < m->conf.min_length ||
        !type_matches(&m->conf, res->content_type) || lookup(m, res->body, res->body_len))
        return 0;
    if ((m->tab_n + 1) * 2 > m->tab_cap) {
        size_t cap = m->tab_cap ? m->tab_cap * 2 : 16;
        variants *t = calloc(cap, sizeof(*t));
        if (!t)
            return CEL_ENOMEM;
        for (size_t i = 0; i < m->tab_cap; i++) {
            if (!m->tab[i].body)
                continue;
            size_t j = ((uintptr_t)m->tab[i].body >> 4) & (cap - 1);
            while (t[j].body)
                j = (j + 1) & (cap - 1);
            t[j] = m->tab[i];
        }
        free(m->tab);
        m->tab = t, m->tab_cap = cap;
    }
    variants v = {res->body, res->body_len, {{NULL, 0}}};
    for (size_t i = 0; i < m->conf.nenc; i++) {
        int e = m->conf.order[i];
        size_t cap = bound(e, res->body_len);
        unsigned char *buf = malloc(cap);
        if (!buf)
            goto nomem;
        size_t len = encode_whole(NULL, e, load_level[e], res->body, res->body_len, buf, cap);
        if (!len) {
            free(buf);
            continue;
        }
        v.v[e] = (cel_str){(const char *)buf, len};
    }
    size_t j = ((uintptr_t)v.body >> 4) & (m->tab_cap - 1);
    while (m->tab[j].body)
        j = (j + 1) & (m->tab_cap - 1);
    m->tab[j] = v;
    m->tab_n++;
    return 0;
nomem:
    for (int e = 0; e < CEL_ENC_N; e++)
        free((void *)(uintptr_t)v.v[e].p);
    return CEL_ENOMEM;
}

static const cel_mw_ops ops = {
    .request = request, .head = head, .destroy = destroy, .prepare = prepare, .flags = CEL_MW_ONE};

static void off_destroy(cel_mw *mw)
{
    free(mw);
}

static const cel_mw_ops off_ops = {.destroy = off_destroy, .flags = CEL_MW_ONE};

cel_mw *cel_mw_compress_new(const cel_compress_conf *conf)
{
    if (!conf) {
        cel_mw *m = calloc(1, sizeof(*m));
        if (m)
            *m = (cel_mw){&off_ops, "compress"};
        return m;
    }
    mw_compress *m = calloc(1, sizeof(*m));
    size_t bytes = 1;
    for (size_t i = 0; i < conf->ntypes; i++)
        bytes += conf->types[i].n;
    if (!m || !(m->strings = malloc(bytes)) ||
        !(m->conf.types = malloc((conf->ntypes ? conf->ntypes : 1) * sizeof(cel_str)))) {
        if (m)
            free(m->strings);
        free(m);
        return NULL;
    }
    m->base = (cel_mw){&ops, "compress"};
    cel_str *types = m->conf.types;
    m->conf = *conf;
    m->conf.types = types;
    char *at = m->strings;
    for (size_t i = 0; i < conf->ntypes; i++) {
        memcpy(at, conf->types[i].p, conf->types[i].n);
        types[i] = (cel_str){at, conf->types[i].n};
        at += conf->types[i].n;
    }
    return &m->base;
}
