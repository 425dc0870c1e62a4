#include <stdlib.h>
#include <string.h>

#include "h2_internal.h"
#include "http.h"
#include "log.h"

/* RFC 9113 8.1.1: a malformed request is a stream error PROTOCOL_ERROR. The
 * stream is never served; what the client still sends on it is dropped. */
static void malformed(cel_h2 *h, stream *st)
{
    st->flags |= ST_MALFORMED;
    if (st->flags & ST_RESET)
        return;
    st->flags |= ST_RESET;
    nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
}

static inline void kept_block_start(cel_h2 *h);

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    cel_h2 *h = ud;
    (void)s;
    h->cur = NULL; /* on_header's short path takes h->cur as the block's stream */
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    kept_block_start(h);
    h->in_headers = frame->hd.stream_id;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* 8.1: a second header block is the trailers, and ends the stream */
        stream *st = h->cur = find_stream(h, frame->hd.stream_id);
        if (st) {
            st->hf.seen |= CEL_HF_TRAILERS;
            if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                st->flags |= ST_MALFORMED;
        }
        return 0;
    }
    stream *st = cel_h2_stream_new(h, frame->hd.stream_id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    h->progress++;
    h->cur = st;
    return 0;
}

int cel_h2_add_header(cel_h2 *h, stream *st, cel_str name, cel_str value)
{
    if (st->nhdrs == st->cap_hdrs) {
        uint32_t cap = st->cap_hdrs * 2;
        cel_header *n = cel_pool_alloc(h->env->pool, cap * sizeof(*n));
        if (!n)
            return -1;
        memcpy(n, st->hdrs, st->nhdrs * sizeof(*n));
        if (st->hdrs != st->inline_hdrs)
            cel_pool_release(h->env->pool, st->hdrs);
        st->hdrs = n;
        st->cap_hdrs = cap;
    }
    st->hdrs[st->nhdrs++] = (cel_header){name, value};
    return 0;
}

/*
 * Most of a client's fields come again and again from its HPACK table (the
 * authority, user-agent, accept...): nghttp2 hands them out as the same
 * reference-counted buffers each time. The verdict of the octet checks on such
 * a pair is kept, with a reference on both buffers so that their addresses
 * stay theirs, and the next request's identical field costs a few comparisons
 * (cel_h2_field_again makes the checks that depend on the other fields).
 * KEPT_SETS sets of KEPT_WAYS entries, by the value's address, most recently
 * kept first; a connection gets the table at its first request (3.5 KiB).
 * A browser's request has some twenty fields: in sets of four, five of them
 * would often share one and push each other out on every request (and
 * connections laid out alike in memory share that fate).
 * Names up to KEPT_NAME_MAX octets, and KEPT_BYTES of names and values in all
 * (as much as a default HPACK table holds; a 1 KiB cookie fits), bound what
 * the references keep alive after the client's table has let them go.
 * A client sends its fields in the same order request after request: each
 * entry names the entry the field after it found last time (next), so that
 * on_header looks there first, and at the set only when that guess is wrong.
 */
#define KEPT_SETS 8
#define KEPT_SET_SHIFT 61 /* the hash's top 3 bits pick one of KEPT_SETS */
#define KEPT_WAYS 8
#define KEPT_NAME_MAX 255
#define KEPT_BYTES 4096
_Static_assert(KEPT_SETS == 1 << (64 - KEPT_SET_SHIFT), "KEPT_SET_SHIFT picks one of KEPT_SETS");

/* A field as on_header takes it: from a kept verdict, or checked now. */
typedef struct field_view {
    const uint8_t *name, *value;
    uint32_t namelen, valuelen;
    int name_static; /* from HPACK's static table */
} field_view;

/* What a kept field does to the request, when on_header's short path can do it
 * (see on_header): */
enum {
    KEPT_ACT_NONE,      /* the full path: priority, cookie, a name to copy... */
    KEPT_ACT_METHOD,    /* a method we have a static spelling of (method_bit, vp) */
    KEPT_ACT_SCHEME,    /* "http" or "https" */
    KEPT_ACT_AUTHORITY, /* the request's authority is the kept value */
    KEPT_ACT_FIELD,     /* a regular field: the kept name and value */
};

typedef struct kept_field {
    nghttp2_rcbuf *name, *value; /* references held */
    const uint8_t *np, *vp;
    uint16_t vlen;       /* KEPT_BYTES at most */
    uint8_t nlen;        /* KEPT_NAME_MAX at most */
    uint8_t name_static; /* the name is nghttp2's static table's: no copy needed */
    uint8_t act;         /* KEPT_ACT_* */
    uint8_t once;        /* ST_COOKIE for a cookie (a second crumb is joined), else 0 */
    uint8_t next;        /* the entry the next field found last time: a guess */
    int16_t kind;        /* what cel_h2_field said */
    uint16_t bits;       /* and what it added to the fields seen */
    uint16_t deny;       /* fields seen before that make this one malformed */
    uint16_t method_bit; /* KEPT_ACT_METHOD: its CEL_M_* */
    uint16_t size;       /* nlen + vlen + 32, what RFC 9113 6.5.2 counts */
    /* The newest stream that may point at the value (on_header's short path
     * does not copy it): the entry is not let go while that stream or an
     * older one lives. */
    int32_t pin;
} kept_field;

#define KEPT_ENTRIES (KEPT_SETS * KEPT_WAYS)
_Static_assert(KEPT_ENTRIES <= 256, "kept_field.next is an index");

struct kept_table {
    kept_field e[KEPT_ENTRIES];
    /* The guess to check and correct for the header block's next field:
     * FIRST at the block's start, then the next of the entry last found. */
    uint8_t *link;
    uint8_t first;
};

/* A header block begins: its first field is guessed to be the last one's. */
static inline void kept_block_start(cel_h2 *h)
{
    if (h->kept)
        h->kept->link = &h->kept->first;
}

static inline kept_field *kept_set(kept_field *kept, const nghttp2_rcbuf *value)
{
    uint64_t a = (uint64_t)(uintptr_t)value * 0x9e3779b97f4a7c15ull;
    return kept + (a >> KEPT_SET_SHIFT) * KEPT_WAYS;
}

/* The octets an entry's references hold (a static-table name holds none). */
static inline size_t kept_cost(const kept_field *k)
{
    return (k->name_static ? 0 : k->nlen) + (size_t)k->vlen;
}

void cel_h2_kept_free(cel_h2 *h)
{
    if (!h->kept)
        return;
    for (size_t i = 0; i < KEPT_ENTRIES; i++)
        if (h->kept->e[i].value) {
            nghttp2_rcbuf_decref(h->kept->e[i].name);
            nghttp2_rcbuf_decref(h->kept->e[i].value);
        }
    cel_pool_release(h->env->pool, h->kept);
    h->kept = NULL;
}

/* Keeps the verdict on a field just checked, first in its set; the set's
 * last entry is let go. */
static void keep(cel_h2 *h, nghttp2_rcbuf *name, nghttp2_rcbuf *value, nghttp2_vec n, nghttp2_vec v,
                 int kind, uint32_t bits)
{
    if (n.len > KEPT_NAME_MAX || v.len > KEPT_BYTES)
        return;
    if (!h->kept) {
        if (!(h->kept = cel_pool_calloc(h->env->pool, 1, sizeof(*h->kept))))
            return;
        h->kept->link = &h->kept->first;
    }
    kept_field *k = kept_set(h->kept->e, value);
    int name_static = nghttp2_rcbuf_is_static(name);
    size_t cost = (name_static ? 0 : n.len) + v.len;
    kept_field *last = &k[KEPT_WAYS - 1];
    if (last->value && h->oldest && h->oldest->id <= last->pin)
        return; /* a live stream may still point at its value */
    size_t freed = last->value ? kept_cost(last) : 0;
    if (h->kept_bytes - freed + cost > KEPT_BYTES)
        return;
    if (last->value) {
        nghttp2_rcbuf_decref(last->name);
        nghttp2_rcbuf_decref(last->value);
    }
    memmove(k + 1, k, (KEPT_WAYS - 1) * sizeof(*k));
    nghttp2_rcbuf_incref(name);
    nghttp2_rcbuf_incref(value);
    unsigned act = KEPT_ACT_NONE, mbit = 0;
    if (kind == CEL_HF_METHOD) {
        mbit = cel_method_bit((const char *)v.base, v.len);
        if (cel_method_name(mbit))
            act = KEPT_ACT_METHOD;
    } else if (kind == CEL_HF_SCHEME) {
        if (v.len == 4 ? !memcmp(v.base, "http", 4) : v.len == 5 && !memcmp(v.base, "https", 5))
            act = KEPT_ACT_SCHEME;
    } else if (kind == CEL_HF_AUTHORITY) {
        act = KEPT_ACT_AUTHORITY;
    } else if (kind == 0) {
        /* The name, like the value, is the kept buffer's while the entry is
         * pinned: a name outside the static table needs no copy either. */
        act = KEPT_ACT_FIELD;
    }
    /* cel_h2_field_again's checks as one mask */
    uint32_t deny = (kind & CEL_HF_PSEUDO) ? CEL_HF_TRAILERS | CEL_HF_REGULAR | (uint32_t)kind
                                           : bits & CEL_HF_HOST;
    *k = (kept_field){.name = name,
                      .value = value,
                      .np = n.base,
                      /* never NULL; a method's is our static spelling of it */
                      .vp = act == KEPT_ACT_METHOD ? (const uint8_t *)cel_method_name(mbit)
                            : v.len                ? v.base
                                                   : (const uint8_t *)"",
                      .nlen = (uint8_t)n.len,
                      .vlen = (uint16_t)v.len,
                      .name_static = (uint8_t)name_static,
                      .act = (uint8_t)act,
                      .once = n.len == 6 && !memcmp(n.base, "cookie", 6) ? ST_COOKIE : 0,
                      .kind = (int16_t)kind,
                      .bits = (uint16_t)bits,
                      .deny = (uint16_t)deny,
                      .method_bit = (uint16_t)mbit,
                      .size = (uint16_t)(n.len + v.len + 32),
                      .pin = 0};
    h->kept_bytes = (uint32_t)(h->kept_bytes - freed + cost);
}

/* The kept entry for this name and value, or NULL. */
static inline kept_field *kept_find(kept_field *kept, const nghttp2_rcbuf *name,
                                    const nghttp2_rcbuf *value)
{
    kept_field *k = kept_set(kept, value);
    for (int i = 0; i < KEPT_WAYS; i++)
        if (k[i].value == value && k[i].name == name)
            return &k[i];
    return NULL;
}

/* A field whose value names one representation of one resource (a
 * validator, a range): a value seldom comes again on a connection (nghttp2's
 * encoder does not even index If-None-Match and If-Modified-Since, so each
 * comes in a new buffer). Keeping those verdicts would cost a slot and two
 * references per request and push out the fields that do come again. */
static int per_resource(nghttp2_vec n)
{
    return (n.len >= 8 && memcmp(n.base, "if-", 3) == 0) ||
           (n.len == 5 && memcmp(n.base, "range", 5) == 0);
}

/* The octet checks (not inlined: they would crowd on_header's registers for
 * the few fields that need them). */
static __attribute__((noinline)) int check_field(cel_h2 *h, stream *st, nghttp2_rcbuf *name_rc,
                                                 nghttp2_rcbuf *value_rc, field_view *f)
{
    nghttp2_vec n = nghttp2_rcbuf_get_buf(name_rc), v = nghttp2_rcbuf_get_buf(value_rc);
    *f = (field_view){n.base, v.base, (uint32_t)n.len, (uint32_t)v.len,
                      nghttp2_rcbuf_is_static(name_rc)};
    if (n.len > UINT32_MAX || v.len > UINT32_MAX) /* far beyond any header list limit */
        return -1;
    uint32_t before = st->hf.seen;
    int kind = f->name_static ? cel_h2_field_static_name(&st->hf, n.base, n.len, v.base, v.len)
                              : cel_h2_field(&st->hf, n.base, n.len, v.base, v.len);
    /* :path seldom comes from the table, content-length's value is state */
    if (kind >= 0 && !(kind & (CEL_HF_PATH | CEL_HF_LENGTH)) && !per_resource(n))
        keep(h, name_rc, value_rc, n, v, kind,
             (st->hf.seen & ~before) | (n.base[0] == ':' ? 0 : CEL_HF_REGULAR));
    return kind;
}

static void split_path(cel_request *req, cel_str raw)
{
    const char *q = memchr(raw.p, '?', raw.n);
    if (q) {
        req->path = (cel_str){raw.p, (size_t)(q - raw.p)};
        req->query = (cel_str){q + 1, raw.n - req->path.n - 1};
    } else {
        req->path = raw;
        req->query = (cel_str){raw.p + raw.n, 0};
    }
}

/* Every field the short path in on_header does not take. UNKEPT: on_header
 * has just looked this field up among the kept verdicts and not found it. */
static __attribute__((noinline)) int on_header_full(cel_h2 *h, nghttp2_rcbuf *name_rc,
                                                    nghttp2_rcbuf *value_rc, int unkept)
{
    stream *st = h->cur; /* on_begin_headers: the block's stream, or NULL */
    if (!st || (st->flags & ST_MALFORMED))
        return 0;
    const uint8_t *name, *value;
    size_t namelen, valuelen;
    int kind, name_static = 0;
    const kept_field *k;
    if (!unkept && h->kept && (k = kept_find(h->kept->e, name_rc, value_rc))) {
        kind = cel_h2_field_again(&st->hf, k->kind, k->bits);
        name = k->np;
        value = k->vp;
        namelen = k->nlen;
        valuelen = k->vlen;
        name_static = k->name_static;
    } else {
        field_view f;
        kind = check_field(h, st, name_rc, value_rc, &f);
        if (kind == CEL_HF_PATH && nghttp2_rcbuf_is_static(name_rc))
            h->path_name = name_rc; /* on_header takes it from now on */
        else if (kind == 0 && unkept && f.name_static &&
                 per_resource((nghttp2_vec){(uint8_t *)f.name, f.namelen}) &&
                 h->fresh_name[0] != name_rc) {
            h->fresh_name[1] = h->fresh_name[0]; /* a browser sends two: INM and IMS */
            h->fresh_name[0] = name_rc;
        }
        name = f.name;
        value = f.value;
        namelen = f.namelen;
        valuelen = f.valuelen;
        name_static = f.name_static;
    }
    if (kind < 0) {
        st->flags |= ST_MALFORMED; /* reset once the block is in (on_frame_recv) */
        return 0;
    }
    if (CEL_UNLIKELY(st->flags & (ST_DISCARD | ST_HDR_TOO_BIG))) {
        if (st->flags & ST_DISCARD)
            return 0;
        /* Far past the limit (an HPACK bomb: one table entry referenced over
         * and over) even checking each field costs more than the bytes sent:
         * no client means well with that, end the connection. */
        st->hdr_bytes += namelen + valuelen + 32;
        if (st->hdr_bytes > (uint64_t)h->limits.max_header_list_size * 4) {
            cel_log_debug("h2: header list bomb, ending the connection");
            nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        return 0;
    }
    /* RFC 9113 6.5.2: each field counts its name, value and 32 bytes. */
    st->hdr_bytes += namelen + valuelen + 32;
    if (st->hdr_bytes > h->limits.max_header_list_size) {
        st->flags |= ST_HDR_TOO_BIG;
        return 0;
    }
    /* The method and scheme usually have a static spelling to point at;
     * everything else is copied (nghttp2's buffers are gone after this call). */
    if (kind == CEL_HF_METHOD) {
        st->req.method_bit = cel_method_bit((const char *)value, valuelen);
        const char *known = cel_method_name(st->req.method_bit);
        st->req.method.p = known ? known : cel_arena_dup(&st->arena, value, valuelen);
        st->req.method.n = valuelen;
        return st->req.method.p ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (kind == CEL_HF_SCHEME &&
        (valuelen == 4 ? !memcmp(value, "http", 4) : valuelen == 5 && !memcmp(value, "https", 5))) {
        st->req.scheme = (cel_str){"https", valuelen}; /* "http" is its prefix */
        return 0;
    }
    char *v = cel_arena_dup(&st->arena, value, valuelen);
    if (!v)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    cel_str val = {v, valuelen};
    switch (kind) {
    case CEL_HF_PATH:
        split_path(&st->req, val);
        return 0;
    case CEL_HF_AUTHORITY:
        st->req.authority = val;
        return 0;
    case CEL_HF_SCHEME:
        st->req.scheme = val;
        return 0;
    }
    if (kind == CEL_HF_PRIORITY) {
        /* RFC 9218: applied once the header block is in (on_frame_recv) */
        uint8_t u = st->prio ? (st->prio >> 1 & 7) : NGHTTP2_EXTPRI_DEFAULT_URGENCY;
        uint8_t inc = st->prio & 1;
        if (cel_h2_priority(value, valuelen, &u, &inc) == 0)
            st->prio = (uint8_t)(PRIO_SET | u << 1 | inc);
    }
    if (namelen == 6 && !memcmp(name, "cookie", 6)) {
        /* RFC 9113 8.2.3: cookie crumbs reach the application as one field. */
        for (uint32_t i = 0; i < st->nhdrs; i++) {
            cel_header *c = &st->hdrs[i];
            if (c->name.n == 6 && !memcmp(c->name.p, "cookie", 6)) {
                char *j = cel_arena_alloc(&st->arena, c->value.n + 2 + valuelen);
                if (!j)
                    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                memcpy(j, c->value.p, c->value.n);
                memcpy(j + c->value.n, "; ", 2);
                memcpy(j + c->value.n + 2, value, valuelen);
                c->value = (cel_str){j, c->value.n + 2 + valuelen};
                return 0;
            }
        }
    }
    /* nghttp2's static table outlives every stream */
    const char *nm = name_static ? (const char *)name : cel_arena_dup(&st->arena, name, namelen);
    if (!nm || cel_h2_add_header(h, st, (cel_str){nm, namelen}, val))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (namelen == 6 && !memcmp(name, "cookie", 6))
        st->flags |= ST_COOKIE; /* a later crumb takes this path, to be joined */
    return 0;
}

/* on_header's :path (a tail call there: its calls would make on_header save
 * registers for every field). */
static __attribute__((noinline)) int on_path(cel_h2 *h, nghttp2_rcbuf *name_rc,
                                             nghttp2_rcbuf *value_rc)
{
    stream *st = h->cur;
    nghttp2_vec v = nghttp2_rcbuf_get_buf(value_rc);
    uint64_t bytes = st->hdr_bytes + v.len + 5 + 32; /* RFC 9113 6.5.2 */
    if (CEL_UNLIKELY(bytes > h->limits.max_header_list_size || st->arena.left <= v.len))
        return on_header_full(h, name_rc, value_rc, 0);
    char *p = st->arena.cur;
    size_t q;
    if (cel_h2_path_copy(&st->hf, p, v.base, v.len, &q) < 0) {
        st->flags |= ST_MALFORMED; /* reset once the block is in (on_frame_recv) */
        return 0;
    }
    st->hdr_bytes = bytes;
    st->arena.cur += v.len;
    st->arena.left -= v.len;
    st->req.path = (cel_str){p, q};
    st->req.query = q < v.len ? (cel_str){p + q + 1, v.len - q - 1} : (cel_str){p + v.len, 0};
    return 0;
}

/* A per-resource field (see per_resource) by a static-table name on_header_full
 * has seen pass with no special rule: its value checked and copied, no
 * verdict kept (a tail call in on_header, as on_path). */
static __attribute__((noinline)) int on_fresh(cel_h2 *h, nghttp2_rcbuf *name_rc,
                                              nghttp2_rcbuf *value_rc)
{
    stream *st = h->cur;
    nghttp2_vec n = nghttp2_rcbuf_get_buf(name_rc), v = nghttp2_rcbuf_get_buf(value_rc);
    uint64_t bytes = st->hdr_bytes + n.len + v.len + 32; /* RFC 9113 6.5.2 */
    if (CEL_UNLIKELY(bytes > h->limits.max_header_list_size || st->nhdrs == st->cap_hdrs ||
                     st->arena.left <= v.len))
        return on_header_full(h, name_rc, value_rc, 1);
    char *p = st->arena.cur;
    if (cel_h2_plain_copy(&st->hf, p, v.base, v.len) != 0) { /* no per-resource name has a rule */
        st->flags |= ST_MALFORMED; /* reset once the block is in (on_frame_recv) */
        return 0;
    }
    st->arena.cur += v.len;
    st->arena.left -= v.len;
    st->hdr_bytes = bytes;
    st->hdrs[st->nhdrs++] = (cel_header){{(const char *)n.base, n.len}, {p, v.len}};
    return 0;
}

/*
 * The short path for the fields of almost every request. Everything a case
 * needs is checked before anything is changed, so what it cannot do goes to
 * on_header_full untouched; no call but those tail calls, so nothing to save
 * on the way in.
 *  - A field from the client's HPACK table whose verdict is kept and whose
 *    effect is a common one (KEPT_ACT_*): the method, scheme, authority, and
 *    every regular field (user-agent, accept, sec-fetch-*, the first cookie...).
 *  - :path, which clients send as a literal every time (nghttp2 never indexes
 *    it), by the name's static-table buffer (h->path_name).
 */
static int on_header(nghttp2_session *s, const nghttp2_frame *frame, nghttp2_rcbuf *name_rc,
                     nghttp2_rcbuf *value_rc, uint8_t flags, void *ud)
{
    cel_h2 *h = ud;
    (void)s, (void)frame, (void)flags;
    stream *st = h->cur;
    if (CEL_UNLIKELY(!st || (st->flags & (ST_MALFORMED | ST_DISCARD | ST_HDR_TOO_BIG))))
        return on_header_full(h, name_rc, value_rc, 0);
    if (name_rc == h->path_name)
        return on_path(h, name_rc, value_rc);
    struct kept_table *t = h->kept;
    if (CEL_UNLIKELY(!t))
        return on_header_full(h, name_rc, value_rc, 0);
    kept_field *k = &t->e[*t->link];
    if (CEL_UNLIKELY(k->value != value_rc || k->name != name_rc)) {
        /* a per-resource name is never kept (check_field): no set to search */
        if (name_rc == h->fresh_name[0] || name_rc == h->fresh_name[1])
            return on_fresh(h, name_rc, value_rc);
        if (!(k = kept_find(t->e, name_rc, value_rc)))
            return on_header_full(h, name_rc, value_rc, 1);
        *t->link = (uint8_t)(k - t->e); /* the guess for the next request */
    }
    t->link = &k->next;
    size_t vlen = k->vlen;
    uint64_t bytes = st->hdr_bytes + k->size; /* RFC 9113 6.5.2 */
    if (CEL_UNLIKELY(bytes > h->limits.max_header_list_size))
        return on_header_full(h, name_rc, value_rc, 0);
    if (CEL_UNLIKELY(st->hf.seen & k->deny)) {
        st->flags |= ST_MALFORMED;
        return 0;
    }
    /* regular fields first: a browser sends fifteen of them a request */
    if (CEL_LIKELY(k->act == KEPT_ACT_FIELD)) {
        if (CEL_UNLIKELY(st->nhdrs == st->cap_hdrs))
            return on_header_full(h, name_rc, value_rc, 0);
        if (CEL_UNLIKELY(k->once)) {
            /* a second cookie crumb is joined to the first there (8.2.3) */
            if (st->flags & k->once)
                return on_header_full(h, name_rc, value_rc, 0);
            st->flags |= k->once;
        }
        st->hdrs[st->nhdrs++] =
            (cel_header){{(const char *)k->np, k->nlen}, {(const char *)k->vp, vlen}};
        k->pin = h->last_stream;
    } else if (k->act == KEPT_ACT_METHOD) {
        st->req.method_bit = k->method_bit;
        st->req.method = (cel_str){(const char *)k->vp, vlen};
    } else if (k->act == KEPT_ACT_SCHEME) {
        st->req.scheme = (cel_str){"https", vlen}; /* "http" is its prefix */
    } else if (k->act == KEPT_ACT_AUTHORITY) {
        /* the kept buffer, pinned, rather than a copy (see kept_field.pin) */
        st->req.authority = (cel_str){(const char *)k->vp, vlen};
        k->pin = h->last_stream;
    } else { /* KEPT_ACT_NONE: the checks above change nothing */
        return on_header_full(h, name_rc, value_rc, 0);
    }
    st->hf.seen |= k->bits;
    st->hdr_bytes = bytes;
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    cel_h2 *h = ud;
    (void)flags;
    stream *st = find_stream(h, id);
    if (st && !(st->flags & ST_MALFORMED) && cel_h2_fields_data(&st->hf, len))
        malformed(h, st); /* 8.1.1: more DATA than content-length */
    if (!st || (st->flags & ST_MALFORMED)) {
        nghttp2_session_consume(s, id, len); /* dropped: the windows open again */
        return 0;
    }
    return cel_h2_body_data(h, st, data, len);
}

/* Checks a request whose headers are complete but whose body is still coming. */
static int headers_done(cel_h2 *h, stream *st)
{
    if (st->flags & ST_HDR_TOO_BIG)
        return cel_h2_respond_early(h, st, 431);
    return cel_h2_body_headers(h, st);
}

/* A client acknowledges DATA with WINDOW_UPDATEs, at most one per frame on the
 * stream and one on the connection; past that (and a little slack) they only
 * cost us work. */
#define WU_SLACK 100

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    cel_h2 *h = ud;
    if (frame->hd.type == NGHTTP2_WINDOW_UPDATE && ++h->wu_recv > 2 * h->data_sent + WU_SLACK &&
        cel_h2_spend(h, &h->glitches, "WINDOW_UPDATE"))
        return 0;
    stream *st;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        h->in_headers = 0;
        st = h->cur;
        h->cur = NULL;
        if (!st || st->id != frame->hd.stream_id)
            st = find_stream(h, frame->hd.stream_id);
        if (st && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            if (cel_h2_fields_request_end(&st->hf))
                st->flags |= ST_MALFORMED;
            else if (st->prio) {
                nghttp2_extpri pri = {st->prio >> 1 & 7, st->prio & 1};
                nghttp2_session_change_extpri_stream_priority(s, st->id, &pri, 0);
            }
        }
    } else if (frame->hd.type == NGHTTP2_DATA) {
        st = find_stream(h, frame->hd.stream_id);
    } else {
        if (frame->hd.type == NGHTTP2_RST_STREAM && (st = find_stream(h, frame->hd.stream_id)))
            st->flags |= ST_PEER_DONE;
        return 0;
    }
    if (!st)
        return 0;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (end)
        st->flags |= ST_PEER_DONE;
    if ((st->flags & ST_MALFORMED) || (end && cel_h2_fields_body_end(&st->hf))) {
        malformed(h, st);
        return 0;
    }
    int rv = 0;
    if (end)
        rv = dispatch(h, st);
    else if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        rv = headers_done(h, st);
    return rv ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

void cel_h2_intake_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback2(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
}
