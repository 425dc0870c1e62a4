/* The dir handler's runtime: path to file, conditions, ranges, body. */
#include "handler_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dir_listing.h"
#include "env.h"
#include "fspath.h"
#include "http.h"
#include "http_cond.h"
#include "mime.h"

/* A body up to this size is read whole into the stream's arena and answered
 * in one piece; a larger one is streamed CHUNK bytes at a time. */
#define SMALL_FILE (32 * 1024)
#define CHUNK (16 * 1024)
/* A kept body at least this long is answered by reference to the cache's
 * bytes; a shorter one is copied into the arena, which costs less than the
 * exchange's respond (its owner, its flush) for so few bytes. */
#define KEPT_REF_MIN 1024
/* More ranges than this in one request: the whole file is sent instead. */
#define MAX_RANGES 16
/* Cached paths are at most this long; longer ones are opened each time. */
#define CACHE_PATH 192
/* A file's ETag and Last-Modified text, one after the other. */
#define TEXT_MAX (CEL_ETAG_MAX + CEL_HTTP_DATE_LEN + 1)
/* A slot's kept bytes are allocated in steps of this many. */
#define BODY_STEP 256
/* Room after a mapped path for "/<index name>" or a coding's suffix. */
#define REL_CAP (CEL_FSPATH_MAX + 256)
#define INDEX_MAX 200

static const struct {
    const char *name, *suffix;
    size_t nlen, slen;
} codings[CEL_ENC_COUNT] = {
    {"br", ".br", 2, 3},
    {"zstd", ".zst", 4, 4},
    {"gzip", ".gz", 4, 3},
};

/* A descriptor the open-file cache opened, shared by its slot and by every
 * answer still sending from it (the download, the front end's queue): closed
 * when the last of them lets go, so a slot looked up again (a second later,
 * or by another path in the same slot) never closes it under an answer. Taken
 * and let go on the worker whose cache opened it, as everything of that
 * cache: no atomics. */
typedef struct fdref {
    int fd;
    unsigned refs;
} fdref;

static void fdref_drop(fdref *r)
{
    if (--r->refs)
        return;
    close(r->fd);
    free(r);
}

static void fdref_release(void *arg)
{
    fdref_drop(arg);
}

/* A slot's kept bytes, shared as its descriptor is: by the slot and by every
 * answer that sends them by reference (the front end's queue), so a slot
 * looked up again reads a new file's bytes into a block of its own while an
 * answer still points into the old one. On the cache's worker: no atomics. */
typedef struct kbody {
    unsigned refs;
    char data[];
} kbody;

static void kbody_drop(kbody *b)
{
    if (b && !--b->refs)
        free(b);
}

static void kbody_release(void *arg)
{
    kbody_drop(arg);
}

/* One file as a lookup found it: the cache's (REF: a reference on its
 * descriptor FD) or opened for this request (OWNED). LASTMOD follows ETAG in
 * memory. */
typedef struct ffile {
    int fd, owned, is_dir;
    fdref *ref;
    uint64_t size;
    int64_t mtime;
    cel_str etag, lastmod;
    struct fentry *entry; /* the cache slot it came from (holds REF while it is F's), or NULL */
    char text_buf[TEXT_MAX];
} ffile;

/* A slot of a worker's open-file cache: a descriptor and what fstat said,
 * or the error the lookup gave (negative entries spare the failed open of
 * x.br beside every x). CHECKED is the second it was looked up. A small file
 * answered again within that second keeps its bytes in BODY (BODY_OK), read
 * once instead of once per answer; the buffer stays with the slot for the
 * next file it holds. */
typedef struct fentry {
    uint64_t hash;
    time_t checked; /* 0: a free slot, or one to look up again */
    int fd;         /* -1: ERR */
    fdref *ref;     /* the slot's reference on FD, or NULL with FD -1 */
    int err;
    int is_dir;
    uint64_t size;
    int64_t mtime;
    unsigned plen, etag_len;
    cel_str ctype; /* the media type of PATH (memory of the handler's table) */
    char path[CACHE_PATH];
    char text[TEXT_MAX]; /* the ETag, then Last-Modified */
    kbody *body;         /* BODY_CAP bytes of data, or NULL */
    uint32_t body_cap;
    uint8_t body_ok;  /* BODY holds the file's SIZE bytes as read since CHECKED */
    uint8_t answered; /* answered since CHECKED */
} fentry;

typedef struct fcache {
    fentry *slots; /* NULL until the worker's first lookup */
    size_t mask;
    size_t body_bytes; /* the slots' BODY_CAPs */
    int failed;        /* no memory for it: open each time */
} fcache;

typedef struct dir_handler {
    cel_handler base;
    cel_fsroot root;
    cel_mime *mime;
    char **index;
    size_t nindex;
    char *fallback;
    size_t fallback_len;
    int listing, etag;
    cel_encoding enc[CEL_ENC_COUNT];
    size_t nenc;
    cel_kv *extra; /* configured headers and cache-control */
    size_t nextra;
    char *strings;
    char *param;
    size_t param_len;
    /* PARAM is params[PARAM_IDX] of a match with NPARAMS params */
    unsigned param_idx, nparams;
    fcache *caches; /* one per worker */
    unsigned nworkers;
    size_t cache_entries;
    size_t body_max;    /* a file's bytes are kept up to this size */
    size_t body_budget; /* and up to this many per worker */
} dir_handler;

/* ---- looking files up, through the worker's cache ---- */

static uint64_t mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    return h ^ h >> 32;
}

/* Eight bytes at a time: paths are hashed on every request. */
static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n, w;
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 < n; i += 8) {
            memcpy(&w, s + i, 8);
            h = mix(h, w);
        }
        memcpy(&w, s + n - 8, 8); /* the last eight, overlapping */
        return mix(h, w) * 0xc4ceb9fe1a85ec53ull;
    }
    w = 0;
    for (size_t i = 0; i < n; i++)
        w = w << 8 | (unsigned char)s[i];
    return mix(h, w) * 0xc4ceb9fe1a85ec53ull;
}

/* fstat of FD into the fields; a file that is neither regular nor a
 * directory (a device, a FIFO) is refused. 0 or -errno. */
static int describe(int fd, int *is_dir, uint64_t *size, int64_t *mtime)
{
    struct stat st;
    if (fstat(fd, &st))
        return -errno;
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return -EACCES;
    *is_dir = S_ISDIR(st.st_mode);
    *size = (uint64_t)st.st_size;
    *mtime = (int64_t)st.st_mtime;
    return 0;
}

/* F's ETag and Last-Modified text in its own buffer. */
static void own_text(ffile *f)
{
    f->etag = (cel_str){f->text_buf, cel_etag_format(f->text_buf, f->mtime, f->size)};
    f->lastmod = (cel_str){f->text_buf + f->etag.n,
                           cel_http_date(f->text_buf + f->etag.n, (time_t)f->mtime)};
}

static int open_fresh(const dir_handler *d, const char *rel, ffile *f)
{
    int fd = cel_fspath_open(&d->root, rel);
    if (fd < 0)
        return fd;
    int rc = describe(fd, &f->is_dir, &f->size, &f->mtime);
    if (rc) {
        close(fd);
        return rc;
    }
    f->fd = fd;
    f->owned = 1;
    f->ref = NULL;
    f->entry = NULL;
    own_text(f);
    return 0;
}

/* Lets go of the slot's descriptor whatever CHECKED says: a slot forgotten
 * (CHECKED 0, see forget) still holds it. */
static void entry_drop(fentry *e)
{
    if (e->ref)
        fdref_drop(e->ref);
    e->ref = NULL;
    e->checked = 0;
    e->fd = -1;
}

static void entry_fill(const dir_handler *d, fentry *e, const char *rel, size_t n, uint64_t h,
                       time_t now)
{
    entry_drop(e);
    e->hash = h;
    e->plen = (unsigned)n;
    memcpy(e->path, rel, n);
    e->checked = now;
    e->err = 0;
    e->body_ok = 0;
    e->answered = 0;
    int fd = cel_fspath_open(&d->root, rel);
    int rc = fd < 0 ? fd : describe(fd, &e->is_dir, &e->size, &e->mtime);
    fdref *ref = rc ? NULL : malloc(sizeof(*ref)); /* once a second at most per path */
    if (!rc && !ref)
        rc = -ENOMEM;
    if (rc) {
        if (fd >= 0)
            close(fd);
        e->err = rc;
        return;
    }
    *ref = (fdref){fd, 1};
    e->ref = ref;
    e->fd = fd;
    e->etag_len = (unsigned)cel_etag_format(e->text, e->mtime, e->size);
    e->ctype = cel_mime_lookup(d->mime, rel, n);
    cel_http_date(e->text + e->etag_len, (time_t)e->mtime);
}

/* The worker's slots, made at its first lookup on this route (so routes
 * that see no traffic cost no memory); freed with the generation. */
static int cache_alloc(const dir_handler *d, fcache *c)
{
    if (!d->cache_entries || c->failed)
        return CEL_ENOMEM;
    if (!(c->slots = calloc(d->cache_entries, sizeof(*c->slots)))) {
        c->failed = 1;
        return CEL_ENOMEM;
    }
    for (size_t i = 0; i < d->cache_entries; i++)
        c->slots[i].fd = -1;
    c->mask = d->cache_entries - 1;
    return 0;
}

/* REL (N bytes, NUL-terminated) under the root: 0 and *F, or -errno. */
static int lookup(const dir_handler *d, cel_env *env, const char *rel, size_t n, ffile *f)
{
    fcache *c = env->worker_id < d->nworkers ? &d->caches[env->worker_id] : NULL;
    if (!c || n >= CACHE_PATH || (!c->slots && cache_alloc(d, c)))
        return open_fresh(d, rel, f);
    uint64_t h = hash(rel, n);
    fentry *e = &c->slots[h & c->mask];
    time_t now = env->now.tv_sec ? env->now.tv_sec : time(NULL);
    if (!(e->checked == now && e->hash == h && e->plen == n && cel_eq_small(e->path, rel, n)))
        entry_fill(d, e, rel, n, h, now);
    if (e->fd < 0)
        return e->err;
    f->fd = e->fd;
    f->owned = 0;
    f->ref = e->ref;
    f->ref->refs++;
    f->entry = e;
    f->is_dir = e->is_dir;
    f->size = e->size;
    f->mtime = e->mtime;
    f->etag = (cel_str){e->text, e->etag_len};
    f->lastmod = (cel_str){e->text + e->etag_len, CEL_HTTP_DATE_LEN};
    return 0;
}

static void release(ffile *f)
{
    if (f->owned && f->fd >= 0)
        close(f->fd);
    else if (f->ref)
        fdref_drop(f->ref);
    f->ref = NULL;
    f->fd = -1;
}

/* F's cache slot while it still holds F's descriptor, else NULL: a later
 * lookup (a precompressed sibling, an index file) may have filled the slot
 * with another path since. */
static fentry *slot_of(const ffile *f)
{
    return f->entry && f->entry->ref == f->ref ? f->entry : NULL;
}

/* The file changed under a cached descriptor: look it up again next time. */
static void forget(ffile *f)
{
    fentry *e = slot_of(f);
    if (e)
        e->checked = 0;
}

/* ---- answers ---- */

static int error(cel_response *res, int status)
{
    cel_response_error(res, status);
    return 0;
}

static int status_of(int err)
{
    switch (err) {
    case -EXDEV:
    case -ELOOP:
    case -EACCES:
    case -EPERM:
        return 403;
    case -EMFILE:
    case -ENFILE:
    case -ENOMEM:
        return 503;
    default:
        return 404; /* ENOENT, ENOTDIR, ENAMETOOLONG, and what else a path can do */
    }
}

/* Response headers under construction, in the arena. */
typedef struct hdrs {
    cel_kv *kv;
    size_t n, cap;
} hdrs;

static void add(hdrs *h, const char *name, size_t nlen, const char *v, size_t vlen)
{
    if (h->n < h->cap)
        h->kv[h->n++] = (cel_kv){{name, nlen}, {v, vlen}};
}
#define ADD_LIT(h, name, v, vlen) add(h, name, sizeof(name) - 1, v, vlen)

static size_t put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return n;
}
#define PUT_LIT(p, lit) put(p, lit, sizeof(lit) - 1)

/* "bytes A-B/SIZE" (or "bytes * /SIZE" without the space when R is NULL). */
static cel_str content_range(cel_arena *a, const cel_range *r, uint64_t size)
{
    char *p = cel_arena_alloc(a, 6 + 3 * 20 + 3);
    if (!p)
        return (cel_str){"", 0};
    size_t n = PUT_LIT(p, "bytes ");
    if (r) {
        n += cel_http_utoa(p + n, r->off);
        p[n++] = '-';
        n += cel_http_utoa(p + n, r->off + r->len - 1);
    } else {
        p[n++] = '*';
    }
    p[n++] = '/';
    n += cel_http_utoa(p + n, size);
    return (cel_str){p, n};
}

/* A streamed body: the ranges of FD, each after its part header when
 * multipart. Lives in the exchange's arena. */
typedef struct dl {
    int fd;
    fdref *ref; /* the cache's descriptor FD, or NULL: FD is the download's own */
    int nranges, cur;
    int part_started, closed;
    uint64_t pos; /* bytes of ranges[cur] sent */
    cel_range ranges[MAX_RANGES];
    cel_str parts[MAX_RANGES]; /* multipart: each range's part header; else empty */
    cel_str closing;
    char buf[CHUNK];
} dl;

static void dl_let_go(dl *s)
{
    if (s->ref)
        fdref_drop(s->ref);
    else if (s->fd >= 0)
        close(s->fd);
    s->ref = NULL;
    s->fd = -1;
}

static void dl_close(cel_exchange *x, int finished)
{
    dl *s = x->hdata;
    (void)finished;
    if (s)
        dl_let_go(s);
}

/* RANGE of S's file handed to the front end, which holds a reference of its
 * own on a cached descriptor until it is done: no descriptor call. */
static int file_range(cel_exchange *x, dl *s, const cel_range *r)
{
    if (!s->ref)
        return x->ops->write_file(x, s->fd, r->off, r->len, NULL);
    s->ref->refs++;
    cel_body_owner o = {fdref_release, s->ref};
    return x->ops->write_file(x, s->fd, r->off, r->len, &o);
}

/* Bytes of a range read into the output queue at a time (read_file): four
 * of the pread CHUNKs, as h2's read-ahead reads 64 KiB. */
#define READ_CHUNK (64 * 1024)

/* The next piece of RANGE read into the output queue (read_file); S's place
 * moves on unless the exchange refused (CEL_EINVAL) or failed. */
static int read_range(cel_exchange *x, dl *s, const cel_range *r)
{
    uint64_t left = r->len - s->pos;
    size_t want = left < READ_CHUNK ? (size_t)left : READ_CHUNK;
    int rc = x->ops->read_file(x, s->fd, r->off + s->pos, want);
    if (rc == 0 || rc == CEL_EAGAIN)
        s->pos += want;
    return rc;
}

/* Sends what it can; on CEL_EAGAIN waits for on_writable to call it again.
 * A file that ends early (truncated under us) ends this stream only. */
static void pump(cel_exchange *x)
{
    dl *s = x->hdata;
    for (;;) {
        int rc;
        if (s->cur == s->nranges) {
            if (s->closing.n && !s->closed) {
                s->closed = 1;
                rc = x->ops->write(x, s->closing.p, s->closing.n);
                if (rc == CEL_EAGAIN) {
                    x->on_writable = pump;
                    return;
                }
                if (rc) {
                    x->ops->fail(x);
                    return;
                }
            }
            if (x->ops->end(x))
                x->ops->fail(x);
            return;
        }
        const cel_range *r = &s->ranges[s->cur];
        if (s->parts[s->cur].n && !s->part_started) {
            s->part_started = 1;
            rc = x->ops->write(x, s->parts[s->cur].p, s->parts[s->cur].n);
        } else if (s->pos == r->len) {
            s->cur++;
            s->pos = 0;
            s->part_started = 0;
            continue;
        } else if (s->pos == 0 && x->ops->write_file && (rc = file_range(x, s, r)) != CEL_EINVAL) {
            /* the whole range queued as a file range, never read here */
            if (rc && rc != CEL_EAGAIN) {
                x->ops->fail(x);
                return;
            }
            s->pos = r->len;
            /* end() may follow at once; another write waits for on_writable */
            if (rc == CEL_EAGAIN && (s->cur + 1 < s->nranges || s->closing.n)) {
                x->on_writable = pump;
                return;
            }
            continue;
        } else if (x->ops->read_file && (rc = read_range(x, s, r)) != CEL_EINVAL) {
            /* read straight into the output queue: no copy through s->buf */
            if (rc && rc != CEL_EAGAIN) {
                x->ops->fail(x);
                return;
            }
        } else {
            uint64_t left = r->len - s->pos;
            size_t want = left < CHUNK ? (size_t)left : CHUNK;
            ssize_t k = pread(s->fd, s->buf, want, (off_t)(r->off + s->pos));
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                x->ops->fail(x);
                return;
            }
            s->pos += (uint64_t)k;
            rc = x->ops->write(x, s->buf, (size_t)k);
        }
        if (rc == CEL_EAGAIN) {
            x->on_writable = pump;
            return;
        }
        if (rc) {
            x->ops->fail(x);
            return;
        }
    }
}

/* Reads LEN bytes at OFF whole; short when the file shrank. */
static size_t read_whole(int fd, char *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t k = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    return got;
}

/* F's bytes from its cache slot, or NULL (then read them): kept from the
 * slot's second answer on, within the handler's sizes. */
static const char *kept_body(const dir_handler *d, cel_env *env, ffile *f)
{
    fentry *e = slot_of(f);
    if (!e || !d->body_budget || f->size > d->body_max)
        return NULL;
    if (e->body_ok)
        return e->body->data;
    if (!e->answered) {
        e->answered = 1;
        return NULL;
    }
    fcache *c = &d->caches[env->worker_id];
    size_t need = ((size_t)f->size + BODY_STEP) & ~(size_t)(BODY_STEP - 1);
    /* a block an answer still sends from is left to it: a new one */
    if (!e->body || e->body_cap < f->size || e->body->refs > 1) {
        if (c->body_bytes - e->body_cap + need > d->body_budget)
            return NULL;
        kbody_drop(e->body);
        c->body_bytes -= e->body_cap;
        e->body_cap = 0;
        if (!(e->body = malloc(sizeof(kbody) + need)))
            return NULL;
        e->body->refs = 1;
        e->body_cap = (uint32_t)need;
        c->body_bytes += need;
    }
    if (read_whole(e->fd, e->body->data, (size_t)f->size, 0) < f->size)
        return NULL;
    e->body_ok = 1;
    return e->body->data;
}

/* Sends RES (status, type and headers set) with the NR RANGES of F as its
 * body (the whole file when NR is 0): in one piece when small, else streamed. */
static int send_body(const dir_handler *d, cel_exchange *x, cel_response *res, ffile *f,
                     const cel_range *ranges, int nr, cel_str ctype)
{
    cel_range whole = {0, f->size};
    if (nr == 0) {
        ranges = &whole;
        nr = 1;
    }
    int head = x->req->method_bit == CEL_M_HEAD;
    if (nr == 1 && (head || ranges[0].len <= SMALL_FILE)) {
        size_t len = (size_t)ranges[0].len;
        if (head) {
            res->body = "";
            res->body_len = len;
            res->sized = 1;
            release(f);
            if (x->ops->start(x, res) || x->ops->end(x))
                x->ops->fail(x);
            return CEL_HANDLER_ASYNC;
        }
        const char *kept = len ? kept_body(d, x->env, f) : NULL;
        if (kept && len >= KEPT_REF_MIN) {
            /* the slot's bytes themselves, held until the front end is done
             * with them: no copy into the arena (HTTP/2 queues 1 KiB and more
             * by reference, HTTP/1.1 copies them once into its queue) */
            kbody *b = slot_of(f)->body;
            b->refs++;
            release(f);
            res->body = kept + ranges[0].off;
            res->body_len = len;
            cel_body_owner own = {kbody_release, b};
            if (x->ops->respond(x, res, &own))
                x->ops->fail(x);
            return CEL_HANDLER_ASYNC;
        }
        char *buf = len ? cel_arena_alloc(x->arena, len) : (char *)"";
        if (!buf) {
            release(f);
            return CEL_ENOMEM;
        }
        size_t got = len;
        if (kept)
            memcpy(buf, kept + ranges[0].off, len);
        else if ((got = read_whole(f->fd, buf, len, ranges[0].off)) < len)
            forget(f);
        release(f);
        res->body = buf;
        res->body_len = got;
        return 0;
    }
    dl *s = cel_arena_alloc(x->arena, sizeof(*s));
    if (!s) {
        release(f);
        return CEL_ENOMEM;
    }
    memset(s, 0, offsetof(dl, buf));
    s->fd = f->fd; /* F's descriptor or reference, now the download's */
    s->ref = f->ref;
    f->owned = 0;
    f->ref = NULL;
    s->nranges = nr;
    memcpy(s->ranges, ranges, (size_t)nr * sizeof(*ranges));
    uint64_t total = 0;
    if (nr > 1) {
        /* multipart/byteranges (RFC 9110 14.6): each part after its header */
        char boundary[24];
        static __thread uint64_t counter;
        uint64_t b = hash(f->etag.p, f->etag.n) ^ (++counter * 0x9e3779b97f4a7c15ull);
        size_t bl = PUT_LIT(boundary, "cel");
        for (int i = 0; i < 16; i++)
            boundary[bl++] = "0123456789abcdef"[(b >> (4 * i)) & 15];
        for (int i = 0; i < nr; i++) {
            cel_str cr = content_range(x->arena, &ranges[i], f->size);
            size_t cap = 2 + 2 + bl + 2 + 14 + ctype.n + 2 + 15 + cr.n + 4;
            char *p = cel_arena_alloc(x->arena, cap);
            if (!p || !cr.n) {
                dl_let_go(s);
                return CEL_ENOMEM;
            }
            size_t n = PUT_LIT(p, "\r\n--");
            n += put(p + n, boundary, bl);
            n += PUT_LIT(p + n, "\r\ncontent-type: ");
            n += put(p + n, ctype.p, ctype.n);
            n += PUT_LIT(p + n, "\r\ncontent-range: ");
            n += put(p + n, cr.p, cr.n);
            n += PUT_LIT(p + n, "\r\n\r\n");
            s->parts[i] = (cel_str){p, n};
            total += n + ranges[i].len;
        }
        char *p = cel_arena_alloc(x->arena, 4 + bl + 4);
        char *t = cel_arena_alloc(x->arena, 31 + bl);
        if (!p || !t) {
            dl_let_go(s);
            return CEL_ENOMEM;
        }
        size_t n = PUT_LIT(p, "\r\n--");
        n += put(p + n, boundary, bl);
        n += PUT_LIT(p + n, "--\r\n");
        s->closing = (cel_str){p, n};
        total += n;
        size_t tn = PUT_LIT(t, "multipart/byteranges; boundary=");
        tn += put(t + tn, boundary, bl);
        res->content_type = (cel_str){t, tn};
    } else {
        total = ranges[0].len;
    }
    x->hdata = s;
    x->on_close = dl_close;
    res->body = "";
    res->body_len = total;
    res->sized = 1;
    if (x->ops->start(x, res)) {
        x->ops->fail(x);
        return CEL_HANDLER_ASYNC;
    }
    if (head) {
        if (x->ops->end(x))
            x->ops->fail(x);
        return CEL_HANDLER_ASYNC;
    }
    pump(x);
    return CEL_HANDLER_ASYNC;
}

/* The request headers a file answer reads, found in one pass (the first of
 * each, as cel_request_header would). */
enum { H_AE, H_IF_MATCH, H_IF_NONE_MATCH, H_IMS, H_IUS, H_RANGE, H_IF_RANGE, H_COUNT };
typedef struct conds {
    cel_str v[H_COUNT];
    unsigned have; /* bit per H_* */
} conds;

/* A field's length sorts it out before any compare (most have none of these
 * lengths); each case label is its literal's length, so they cannot part. */
#define LEN(lit) (sizeof(lit) - 1)
#define IS(name, lit) (memcmp((name)->p, lit, LEN(lit)) == 0)
_Static_assert(LEN("if-match") == LEN("if-range"), "if-match and if-range share a case");

static void read_conds(const cel_request *req, conds *c)
{
    c->have = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const cel_str *name = &req->headers[i].name;
        int k;
        switch (name->n) {
        case LEN("range"):
            k = IS(name, "range") ? H_RANGE : -1;
            break;
        case LEN("if-match"): /* and if-range */
            k = IS(name, "if-match") ? H_IF_MATCH : IS(name, "if-range") ? H_IF_RANGE : -1;
            break;
        case LEN("if-none-match"):
            k = IS(name, "if-none-match") ? H_IF_NONE_MATCH : -1;
            break;
        case LEN("accept-encoding"):
            k = IS(name, "accept-encoding") ? H_AE : -1;
            break;
        case LEN("if-modified-since"):
            k = IS(name, "if-modified-since") ? H_IMS : -1;
            break;
        case LEN("if-unmodified-since"):
            k = IS(name, "if-unmodified-since") ? H_IUS : -1;
            break;
        default:
            continue;
        }
        if (k >= 0 && !(c->have & (1u << k))) { /* the first of each */
            c->v[k] = req->headers[i].value;
            c->have |= 1u << k;
        }
    }
}
#undef IS
#undef LEN

static int has(const conds *c, int k, cel_str *out)
{
    if (!(c->have & (1u << k)))
        return 0;
    *out = c->v[k];
    return 1;
}

/* The precompressed sibling of REL (N bytes; REL has room for a suffix) the
 * client's Accept-Encoding prefers, or -1. *V is then that file. */
static int pick_encoding(const dir_handler *d, cel_exchange *x, const conds *cd, char *rel,
                         size_t n, ffile *v)
{
    cel_str ae;
    if (!d->nenc || !has(cd, H_AE, &ae))
        return -1;
    int q[CEL_ENC_COUNT];
    for (size_t i = 0; i < d->nenc; i++)
        q[i] = cel_accept_q(ae, codings[d->enc[i]].name, codings[d->enc[i]].nlen);
    for (;;) {
        int best = -1;
        for (size_t i = 0; i < d->nenc; i++)
            if (q[i] > 0 && (best < 0 || q[i] > q[best]))
                best = (int)i;
        if (best < 0)
            return -1;
        q[best] = 0;
        cel_encoding e = d->enc[best];
        memcpy(rel + n, codings[e].suffix, codings[e].slen + 1);
        int rc = lookup(d, x->env, rel, n + codings[e].slen, v);
        rel[n] = 0;
        if (rc == 0 && !v->is_dir)
            return (int)e;
        if (rc == 0)
            release(v);
    }
}

/* Answers the regular file F, found under REL (N bytes, with room after). */
static int serve(const dir_handler *d, cel_exchange *x, cel_response *res, ffile *f, char *rel,
                 size_t n)
{
    cel_request *req = x->req;
    fentry *slot = slot_of(f);
    cel_str ctype = slot ? slot->ctype : cel_mime_lookup(d->mime, rel, n);
    conds cd;
    read_conds(req, &cd);
    ffile v;
    int enc = pick_encoding(d, x, &cd, rel, n, &v);
    if (enc >= 0) {
        release(f);
        *f = v;
        if (v.owned) /* the copy's strings point into the original's buffer */
            f->etag.p = f->text_buf, f->lastmod.p = f->text_buf + f->etag.n;
    } else if (slot && !slot_of(f)) {
        own_text(f); /* a sibling's lookup took F's slot, and may have its text */
    }
    /* one copy of both texts, after the headers in the same piece of the
     * arena: a cache slot's text changes when it is looked up again, while
     * the stream's headers must stay as they are until sent */
    hdrs h = {.cap = d->nextra + 8};
    size_t tn = f->etag.n + f->lastmod.n;
    if (!(h.kv = cel_arena_alloc(x->arena, h.cap * sizeof(*h.kv) + tn))) {
        release(f);
        return CEL_ENOMEM;
    }
    char *text = (char *)(h.kv + h.cap);
    cel_copy_small(text, f->etag.p, tn);
    cel_str etag = {"", 0};
    char *lm = text + f->etag.n;
    if (d->etag) {
        etag = (cel_str){text, f->etag.n};
        ADD_LIT(&h, "etag", etag.p, etag.n);
    }
    if (d->nenc)
        ADD_LIT(&h, "vary", "accept-encoding", 15);
    if (enc >= 0)
        ADD_LIT(&h, "content-encoding", codings[enc].name, codings[enc].nlen);
    for (size_t i = 0; i < d->nextra; i++)
        add(&h, d->extra[i].name.p, d->extra[i].name.n, d->extra[i].value.p, d->extra[i].value.n);
    ADD_LIT(&h, "last-modified", lm, f->lastmod.n); /* last: a 304 may drop it */

    /* RFC 9110 13.2.2: the preconditions in their order */
    cel_str v1;
    time_t t;
    if (has(&cd, H_IF_MATCH, &v1)) {
        if (!etag.n || !cel_etag_list_match(v1, etag, 0)) {
            release(f);
            return error(res, 412);
        }
    } else if (has(&cd, H_IUS, &v1) && cel_http_date_parse(v1, &t) == 0 && f->mtime > (int64_t)t) {
        release(f);
        return error(res, 412);
    }
    int not_modified = 0;
    if (has(&cd, H_IF_NONE_MATCH, &v1)) /* the usual: the one tag given, as it was */
        not_modified = etag.n && ((v1.n == etag.n && cel_eq_small(v1.p, etag.p, etag.n)) ||
                                  cel_etag_list_match(v1, etag, 1));
    else if (has(&cd, H_IMS, &v1) && cel_http_date_parse(v1, &t) == 0)
        not_modified = f->mtime <= (int64_t)t;
    if (not_modified) {
        release(f);
        /* RFC 9110 15.4.5: beside an ETag, Last-Modified is metadata a 304
         * should not repeat (h2o leaves it out too) */
        if (etag.n && h.n)
            h.n--;
        res->status = 304;
        res->headers = h.kv;
        res->nheaders = h.n;
        return 0;
    }
    ADD_LIT(&h, "accept-ranges", "bytes", 5);
    res->status = 200;
    res->content_type = ctype;
    cel_range ranges[MAX_RANGES];
    int nr = 0;
    if (req->method_bit == CEL_M_GET && has(&cd, H_RANGE, &v1)) {
        cel_str ir;
        int honour = 1;
        if (has(&cd, H_IF_RANGE, &ir)) {
            if (ir.n && (ir.p[0] == '"' || ir.p[0] == 'W'))
                honour = etag.n && ir.n == etag.n && memcmp(ir.p, etag.p, ir.n) == 0;
            else
                honour = cel_http_date_parse(ir, &t) == 0 && (int64_t)t == f->mtime;
        }
        nr = honour ? cel_range_parse(v1, f->size, ranges, MAX_RANGES) : CEL_ENOTFOUND;
        if (nr == 0) {
            release(f);
            cel_response_error(res, 416);
            cel_str cr = content_range(x->arena, NULL, f->size);
            h.n = 0;
            ADD_LIT(&h, "content-range", cr.p, cr.n);
            res->headers = h.kv;
            res->nheaders = h.n;
            return 0;
        }
        if (nr < 0) {
            nr = 0;
        } else {
            res->status = 206;
            if (nr == 1) {
                cel_str cr = content_range(x->arena, &ranges[0], f->size);
                ADD_LIT(&h, "content-range", cr.p, cr.n);
            }
        }
    }
    res->headers = h.kv;
    res->nheaders = h.n;
    return send_body(d, x, res, f, ranges, nr, ctype);
}

/* ---- directories ---- */

/* 301 to the directory's path with its '/', query kept. */
static int redirect(cel_exchange *x, cel_response *res)
{
    const cel_request *req = x->req;
    cel_str p = req->path;
    while (p.n > 1 && p.p[0] == '/' && p.p[1] == '/') /* never "//host": another site */
        p.p++, p.n--;
    size_t n = p.n + 1 + (req->query.n ? req->query.n + 1 : 0);
    char *loc = cel_arena_alloc(x->arena, n);
    cel_kv *kv = cel_arena_alloc(x->arena, sizeof(*kv));
    if (!loc || !kv)
        return CEL_ENOMEM;
    size_t k = put(loc, p.p, p.n);
    loc[k++] = '/';
    if (req->query.n) {
        loc[k++] = '?';
        k += put(loc + k, req->query.p, req->query.n);
    }
    cel_response_error(res, 301);
    *kv = (cel_kv){CEL_STR_LIT("location"), {loc, k}};
    res->headers = kv;
    res->nheaders = 1;
    return 0;
}

static int handle(cel_handler *hd, cel_exchange *x, cel_response *res)
{
    const dir_handler *d = (const dir_handler *)hd;
    cel_request *req = x->req;
    if (!(req->method_bit & (CEL_M_GET | CEL_M_HEAD))) {
        cel_kv *allow = cel_arena_alloc(x->arena, sizeof(*allow));
        cel_response_error(res, 405);
        if (allow) {
            *allow = (cel_kv){CEL_STR_LIT("allow"), CEL_STR_LIT("GET, HEAD")};
            res->headers = allow;
            res->nheaders = 1;
        }
        return 0;
    }
    cel_str raw = req->path;
    if (d->param && req->nparams == d->nparams) { /* matched by this handler's route */
        const cel_param *p = &req->params[d->param_idx];
        raw = (cel_str){req->path.p + p->off, p->len};
    } else if (d->param && cel_request_param(req, d->param, d->param_len, &raw)) {
        raw = (cel_str){"", 0};
    }
    char rel[REL_CAP];
    size_t n;
    int slash = 0, rc;
    ffile f;
    if (raw.n > 1 && raw.p[0] == '/') /* a leading '/' maps to nothing */
        raw.p++, raw.n--;
    if (raw.n < CACHE_PATH && cel_fspath_plain(raw.p, raw.n)) {
        n = raw.n; /* the usual path maps to itself: no decoding pass */
        cel_copy_small(rel, raw.p, n);
        rel[n] = 0;
    } else if ((rc = cel_fspath_map(raw.p, raw.n, rel, CEL_FSPATH_MAX + 1, &n, &slash))) {
        return error(res, rc == CEL_EINVAL ? 403 : 404);
    }
    rc = lookup(d, x->env, rel, n, &f);
    if (rc == 0 && f.is_dir) {
        if (!slash && n > 0) {
            release(&f);
            return redirect(x, res);
        }
        for (size_t i = 0; i < d->nindex; i++) {
            size_t k = n;
            if (k)
                rel[k++] = '/';
            size_t il = strlen(d->index[i]);
            memcpy(rel + k, d->index[i], il + 1);
            ffile idx;
            if (lookup(d, x->env, rel, k + il, &idx) == 0) {
                if (!idx.is_dir) {
                    release(&f);
                    return serve(d, x, res, &idx, rel, k + il);
                }
                release(&idx);
            }
            rel[n] = 0;
        }
        if (d->listing) {
            rc = cel_dir_listing(x, res, f.fd);
            release(&f);
            return rc;
        }
        release(&f);
        return error(res, 403);
    }
    if (rc == 0 && slash) {
        release(&f);
        return error(res, 404); /* "file/": not a directory */
    }
    if ((rc == -ENOENT || rc == -ENOTDIR) && d->fallback) {
        memcpy(rel, d->fallback, d->fallback_len + 1);
        n = d->fallback_len;
        if ((rc = lookup(d, x->env, rel, n, &f)) == 0 && f.is_dir) {
            release(&f);
            rc = -ENOENT;
        }
    }
    if (rc)
        return error(res, status_of(rc));
    return serve(d, x, res, &f, rel, n);
}

/* ---- life cycle ---- */

static void cache_free(fcache *c)
{
    if (!c->slots)
        return;
    for (size_t i = 0; i <= c->mask; i++) {
        entry_drop(&c->slots[i]);
        kbody_drop(c->slots[i].body);
    }
    free(c->slots);
    c->slots = NULL;
}

static void worker_fini(cel_handler *hd, cel_env *env)
{
    dir_handler *d = (dir_handler *)hd;
    if (env->worker_id < d->nworkers)
        cache_free(&d->caches[env->worker_id]);
}

static void destroy(cel_handler *hd)
{
    dir_handler *d = (dir_handler *)hd;
    for (unsigned i = 0; d->caches && i < d->nworkers; i++)
        cache_free(&d->caches[i]);
    free(d->caches);
    cel_fsroot_deinit(&d->root);
    cel_mime_free(d->mime);
    for (size_t i = 0; i < d->nindex; i++)
        free(d->index[i]);
    free(d->index);
    free(d->fallback);
    free(d->extra);
    free(d->strings);
    free(d->param);
    free(d);
}

cel_handler *cel_handler_dir_new(const cel_dir_conf *c, char *err, size_t errlen)
{
    dir_handler *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->root.fd = -1;
    d->base.type = "dir";
    d->base.handle = handle;
    d->base.destroy = destroy;
    d->base.worker_fini = worker_fini;
    int rc = cel_fsroot_init(&d->root, c->root, c->follow_symlinks);
    if (rc) {
        snprintf(err, errlen, "root \"%s\": %s", c->root, strerror(-rc));
        free(d);
        return NULL;
    }
    d->listing = c->listing;
    d->etag = c->etag;
    memcpy(d->enc, c->precompressed, sizeof(d->enc));
    d->nenc = c->nprecompressed;
    d->nworkers = c->nworkers;
    size_t entries = 0;
    if (c->cache_entries) {
        entries = 1;
        while (entries < c->cache_entries)
            entries <<= 1;
    }
    d->cache_entries = entries;
    d->body_budget = entries ? c->cache_bytes : 0;
    d->body_max = d->body_budget < CEL_DIR_BODY_MAX ? d->body_budget : CEL_DIR_BODY_MAX;
    /* cache-control, then the configured headers, as one block of strings */
    char cc[48];
    size_t ccl = c->max_age >= 0 ? (size_t)snprintf(cc, sizeof(cc), "max-age=%lld", c->max_age) : 0;
    size_t total = ccl + 1;
    for (size_t i = 0; i < c->nheaders; i++)
        total += c->headers[i].name.n + c->headers[i].value.n + 2;
    d->nextra = c->nheaders + (ccl ? 1 : 0);
    d->extra = calloc(d->nextra + 1, sizeof(*d->extra));
    d->strings = malloc(total);
    d->mime = cel_mime_new(c->mime_file);
    d->caches = calloc(c->nworkers ? c->nworkers : 1, sizeof(*d->caches));
    d->index = calloc(c->nindex + 1, sizeof(*d->index));
    d->param = c->param ? strdup(c->param) : NULL;
    d->fallback = c->fallback ? strdup(c->fallback) : NULL;
    int bad = !d->extra || !d->strings || !d->mime || !d->caches || !d->index ||
              (c->param && !d->param) || (c->fallback && !d->fallback);
    for (size_t i = 0; !bad && i < c->nindex; i++)
        bad = !(d->index[d->nindex++] = strdup(c->index[i]));
    for (size_t i = 0; !bad && i < c->nmime; i++)
        bad = cel_mime_set(d->mime, c->mime[i].name.p, c->mime[i].value.p) != 0;
    if (bad) {
        destroy(&d->base);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->param_len = d->param ? strlen(d->param) : 0;
    d->param_idx = c->param_idx;
    d->nparams = c->nparams;
    d->fallback_len = d->fallback ? strlen(d->fallback) : 0;
    char *p = d->strings;
    size_t k = 0;
    if (ccl) {
        memcpy(p, cc, ccl + 1);
        d->extra[k++] = (cel_kv){CEL_STR_LIT("cache-control"), {p, ccl}};
        p += ccl + 1;
    }
    for (size_t i = 0; i < c->nheaders; i++) {
        const cel_kv *in = &c->headers[i];
        memcpy(p, in->name.p, in->name.n);
        p[in->name.n] = 0;
        cel_str name = {p, in->name.n};
        p += in->name.n + 1;
        memcpy(p, in->value.p, in->value.n);
        p[in->value.n] = 0;
        d->extra[k++] = (cel_kv){name, {p, in->value.n}};
        p += in->value.n + 1;
    }
    return &d->base;
}
