/*
 * fuzz_h2_fields_diff: h2_fields.c's request checks against nghttp2's own
 * HTTP messaging checks, which they replace. Both judge the same request;
 * any verdict that differs aborts.
 *
 * The input: byte 0 is a body length (DATA octets, 0-255), byte 1 bit 0 asks
 * for DATA to be sent even when the length is 0; then fields, each one octet
 * of name length, the name, one octet of value length, the value (any octets:
 * pseudo-headers in any order, duplicates, empty names). A name length of
 * 0xff ends the request's header block: the fields after it are trailers.
 *
 * nghttp2's verdict: a server session with HTTP messaging on (and an
 * on_invalid_header callback that fails the stream, so that a field nghttp2
 * would otherwise drop silently counts as malformed, as RFC 9113 8.2.1 says)
 * is fed the client preface, the HEADERS (HPACK by nghttp2's deflater), the
 * DATA and the trailers; the request is refused when it resets stream 1 or
 * ends the connection. celerisd's verdict: the fields through cel_h2_field as
 * h2_intake.c calls it (and once more through cel_h2_field_again, as it does for a
 * field it has seen before on the connection: that must change nothing),
 * cel_h2_fields_request_end, cel_h2_fields_data and cel_h2_fields_body_end.
 *
 * Where the two may legitimately differ the input is skipped, each case here:
 *   - a content-length of more than 18 digits after its leading zeros (10^18
 *     octets and more): celerisd refuses it outright (RFC 9110 8.6 lets a
 *     recipient refuse a length it cannot use; nghttp2 takes up to INT64_MAX);
 *   - a request with neither :authority nor host in its header block:
 *     celerisd serves it (RFC 9113 8.3.1 lets a client leave the authority
 *     out; README, HTTP/2), nghttp2 resets it.
 */
#include <nghttp2/nghttp2.h>

#include "fuzz.h"
#include "h2_fields.h"

#define MAX_FIELDS 64

typedef struct field {
    const uint8_t *name, *value;
    size_t nlen, vlen;
    int trailer;
} field;

typedef struct req {
    field f[MAX_FIELDS];
    size_t n;
    size_t body;
    int send_data, has_trailers;
} req;

static int parse(const uint8_t *d, size_t size, req *r)
{
    if (size < 2)
        return -1;
    r->body = d[0];
    r->send_data = r->body > 0 || (d[1] & 1);
    r->n = 0;
    r->has_trailers = 0;
    size_t i = 2;
    while (i < size && r->n < MAX_FIELDS) {
        if (d[i] == 0xff) {
            if (r->has_trailers)
                return -1;
            r->has_trailers = 1;
            i++;
            continue;
        }
        size_t nl = d[i++];
        if (size - i < nl + 1)
            break;
        field *f = &r->f[r->n];
        f->name = d + i;
        f->nlen = nl;
        i += nl;
        size_t vl = d[i++];
        if (size - i < vl)
            break;
        f->value = d + i;
        f->vlen = vl;
        i += vl;
        f->trailer = r->has_trailers;
        r->n++;
    }
    return 0;
}

/* ---- nghttp2 ---- */

typedef struct ng_state {
    int refused;
    int headers_seen;
} ng_state;

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *fr, void *ud)
{
    (void)s;
    ng_state *st = ud;
    if ((fr->hd.type == NGHTTP2_RST_STREAM && fr->hd.stream_id == 1) ||
        fr->hd.type == NGHTTP2_GOAWAY)
        st->refused = 1;
    return 0;
}

static int on_invalid_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name,
                             size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags,
                             void *ud)
{
    (void)s, (void)fr, (void)name, (void)nlen, (void)value, (void)vlen, (void)flags, (void)ud;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static size_t put_frame_header(uint8_t *p, size_t len, uint8_t type, uint8_t flags, int32_t id)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    p[5] = (uint8_t)((uint32_t)id >> 24);
    p[6] = (uint8_t)(id >> 16);
    p[7] = (uint8_t)(id >> 8);
    p[8] = (uint8_t)id;
    return 9;
}

/* A HEADERS frame (END_HEADERS, END_STREAM when END) for the fields of R
 * whose trailer flag is TRAILER, appended at OUT. */
static size_t headers_frame(nghttp2_hd_deflater *def, const req *r, int trailer, int end,
                            uint8_t *out, size_t cap)
{
    nghttp2_nv nv[MAX_FIELDS];
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->f[i].trailer == trailer)
            nv[n++] = (nghttp2_nv){(uint8_t *)r->f[i].name, (uint8_t *)r->f[i].value, r->f[i].nlen,
                                   r->f[i].vlen, NGHTTP2_NV_FLAG_NONE};
    ssize_t len = nghttp2_hd_deflate_hd(def, out + 9, cap - 9, nv, n);
    if (len < 0 || len > 16384)
        fuzz_fail("HPACK deflate: %zd", len);
    uint8_t flags = NGHTTP2_FLAG_END_HEADERS | (end ? NGHTTP2_FLAG_END_STREAM : 0);
    return put_frame_header(out, (size_t)len, NGHTTP2_HEADERS, flags, 1) + (size_t)len;
}

static int nghttp2_refuses(const req *r)
{
    static uint8_t buf[3 * 16384 + 1024];
    size_t o = 0;
    memcpy(buf, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
    o += NGHTTP2_CLIENT_MAGIC_LEN;
    o += put_frame_header(buf + o, 0, NGHTTP2_SETTINGS, 0, 0);
    nghttp2_hd_deflater *def;
    if (nghttp2_hd_deflate_new(&def, 4096))
        fuzz_fail("nghttp2_hd_deflate_new");
    int end_headers_stream = !r->send_data && !r->has_trailers;
    o += headers_frame(def, r, 0, end_headers_stream, buf + o, sizeof(buf) - o);
    if (r->send_data) {
        o += put_frame_header(buf + o, r->body, NGHTTP2_DATA,
                              r->has_trailers ? 0 : NGHTTP2_FLAG_END_STREAM, 1);
        memset(buf + o, 'x', r->body);
        o += r->body;
    }
    if (r->has_trailers)
        o += headers_frame(def, r, 1, 1, buf + o, sizeof(buf) - o);
    nghttp2_hd_deflate_del(def);

    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    nghttp2_session *s;
    ng_state st = {0};
    if (nghttp2_session_callbacks_new(&cb) || nghttp2_option_new(&opt))
        fuzz_fail("nghttp2 setup");
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_header_callback(cb, on_invalid_header);
    if (nghttp2_session_server_new2(&s, cb, &st, opt))
        fuzz_fail("nghttp2_session_server_new2");
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    ssize_t rv = nghttp2_session_mem_recv(s, buf, o);
    if (rv < 0)
        st.refused = 1;
    const uint8_t *out;
    while (nghttp2_session_mem_send(s, &out) > 0)
        ;
    nghttp2_session_del(s);
    return st.refused;
}

/* ---- celerisd ---- */

typedef struct seen {
    int kind;
    uint32_t bits;
} seen;

/* The verdict of h2_fields.c; AGAIN replays each field through
 * cel_h2_field_again with what the first pass (FIRST) recorded for it. */
static int celerisd_refuses(const req *r, seen *first, int again)
{
    cel_h2_fields f;
    cel_h2_fields_init(&f);
    int trailers = 0;
    for (size_t i = 0; i < r->n; i++) {
        const field *x = &r->f[i];
        if (x->trailer && !trailers) {
            if (cel_h2_fields_request_end(&f))
                return 1;
            if (r->send_data && cel_h2_fields_data(&f, r->body))
                return 1;
            f.seen |= CEL_HF_TRAILERS;
            trailers = 1;
        }
        uint32_t before = f.seen;
        int kind;
        if (again && first[i].kind >= 0 && !(first[i].kind & (CEL_HF_PATH | CEL_HF_LENGTH)))
            kind = cel_h2_field_again(&f, first[i].kind, first[i].bits);
        else if (x->nlen == 5 && memcmp(x->name, ":path", 5) == 0 &&
                 !(f.seen & (CEL_HF_TRAILERS | CEL_HF_REGULAR)) && x->vlen) {
            /* h2_intake.c's short path for :path copies as it checks */
            char copy[256];
            size_t q;
            cel_h2_fields g = f;
            kind = cel_h2_path_copy(&f, copy, x->value, x->vlen, &q);
            int k2 = cel_h2_field(&g, x->name, x->nlen, x->value, x->vlen);
            if (kind != k2 || f.seen != g.seen)
                fuzz_fail("cel_h2_path_copy %d, cel_h2_field %d", kind, k2);
            if (kind >= 0 && (q > x->vlen || (q < x->vlen && x->value[q] != '?') ||
                              memchr(x->value, '?', q) || memcmp(copy, x->value, x->vlen)))
                fuzz_fail("cel_h2_path_copy: query at %zu of %zu", q, x->vlen);
        } else {
            kind = cel_h2_field(&f, x->name, x->nlen, x->value, x->vlen);
        }
        if (!again) {
            first[i].kind = kind;
            first[i].bits =
                (f.seen & ~before) | (x->nlen && x->name[0] == ':' ? 0 : CEL_HF_REGULAR);
        }
        if (kind < 0)
            return 1;
    }
    if (!trailers) {
        if (cel_h2_fields_request_end(&f))
            return 1;
        if (r->send_data && cel_h2_fields_data(&f, r->body))
            return 1;
    }
    return cel_h2_fields_body_end(&f) ? 1 : 0;
}

/* The exceptions of the header comment. */
static int excepted(const req *r)
{
    int authority = 0;
    for (size_t i = 0; i < r->n; i++) {
        const field *f = &r->f[i];
        if (!f->trailer && ((f->nlen == 10 && memcmp(f->name, ":authority", 10) == 0) ||
                            (f->nlen == 4 && memcmp(f->name, "host", 4) == 0)))
            authority = 1;
        if (f->nlen != 14 || memcmp(f->name, "content-length", 14) != 0)
            continue;
        size_t z = 0;
        while (z + 1 < f->vlen && f->value[z] == '0')
            z++;
        if (f->vlen - z > 18)
            return 1;
    }
    return !authority;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    req r;
    if (parse(data, size, &r) || excepted(&r))
        return 0;
    seen first[MAX_FIELDS];
    for (size_t i = 0; i < MAX_FIELDS; i++)
        first[i] = (seen){-1, 0};
    int ours = celerisd_refuses(&r, first, 0);
    int replay = celerisd_refuses(&r, first, 1);
    if (ours != replay)
        fuzz_fail("celerisd: %d the first time, %d with cel_h2_field_again", ours, replay);
    int theirs = nghttp2_refuses(&r);
    if (ours != theirs) {
        fprintf(stderr, "fields (%zu, body %zu%s):\n", r.n, r.body, r.send_data ? ", DATA" : "");
        for (size_t i = 0; i < r.n; i++) {
            fprintf(stderr, "  %s\"", r.f[i].trailer ? "trailer " : "");
            for (size_t j = 0; j < r.f[i].nlen; j++)
                fprintf(stderr, r.f[i].name[j] >= 0x20 && r.f[i].name[j] < 0x7f ? "%c" : "\\x%02x",
                        r.f[i].name[j]);
            fprintf(stderr, "\": \"");
            for (size_t j = 0; j < r.f[i].vlen; j++)
                fprintf(stderr,
                        r.f[i].value[j] >= 0x20 && r.f[i].value[j] < 0x7f ? "%c" : "\\x%02x",
                        r.f[i].value[j]);
            fprintf(stderr, "\"\n");
        }
        fuzz_fail("celerisd %s the request, nghttp2 %s it", ours ? "refuses" : "accepts",
                  theirs ? "refuses" : "accepts");
    }
    return 0;
}
