#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "json_template.h"
#include "log.h"

#define BUF_SIZE (64 * 1024)
#define MAX_LINE 8192 /* a longer line is cut (values are truncated, not the line end) */
#define MAX_OPS 64
#define JSON_TAIL 512 /* what a JSON line needs after any one value: keys, numbers, '}' */

enum {
    OP_LIT,
    OP_PEER,
    OP_TIME,
    OP_REQLINE,
    OP_METHOD,
    OP_PATH,
    OP_QUERY,
    OP_PROTO,
    OP_STATUS,
    OP_BYTES_DASH,
    OP_BYTES,
    OP_USEC,
    OP_SEC,
    OP_HOST,
    OP_HEADER,
    OP_REQID,
    OP_JSON,
};

typedef struct op {
    int kind;
    const char *s; /* literal text or header name (lowercase), in l->text */
    size_t n;
} op;

typedef struct wbuf {
    char *p;
    size_t len;
    time_t stamp_sec; /* the cached %t of this worker */
    char stamp[40];   /* [10/Oct/2026:13:55:36 +0000] */
    size_t stamp_len;
    char iso[24]; /* 2026-10-10T13:55:36Z */
} wbuf;

struct cel_accesslog {
    int fd;
    int own_fd;
    char *path;
    char *text;
    op ops[MAX_OPS];
    size_t nops;
    unsigned nworkers;
    wbuf *bufs;
};

static const char *named(const char *format)
{
    if (strcmp(format, "combined") == 0)
        return "%h - - %t \"%r\" %s %b \"%{referer}i\" \"%{user-agent}i\"";
    if (strcmp(format, "common") == 0)
        return "%h - - %t \"%r\" %s %b";
    return NULL;
}

static int compile(cel_accesslog *l, const char *format, char *err, size_t errlen)
{
    if (strcmp(format, "json") == 0) {
        l->ops[l->nops++] = (op){OP_JSON, NULL, 0};
        return 0;
    }
    const char *f = named(format);
    if (!f)
        f = format;
    l->text = strdup(f);
    if (!l->text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char *p = l->text;
    while (*p) {
        if (l->nops == MAX_OPS) {
            snprintf(err, errlen, "access log format has more than %d parts", MAX_OPS);
            return -1;
        }
        if (*p != '%') {
            char *q = strchr(p, '%');
            size_t n = q ? (size_t)(q - p) : strlen(p);
            l->ops[l->nops++] = (op){OP_LIT, p, n};
            p += n;
            continue;
        }
        p++;
        static const char codes[] = "htrmUqHsbBDTv";
        static const int kinds[] = {OP_PEER,  OP_TIME,  OP_REQLINE, OP_METHOD,     OP_PATH,
                                    OP_QUERY, OP_PROTO, OP_STATUS,  OP_BYTES_DASH, OP_BYTES,
                                    OP_USEC,  OP_SEC,   OP_HOST};
        const char *c = *p ? strchr(codes, *p) : NULL;
        if (*p == '%') {
            l->ops[l->nops++] = (op){OP_LIT, p, 1};
            p++;
        } else if (c) {
            l->ops[l->nops++] = (op){kinds[c - codes], NULL, 0};
            p++;
        } else if (*p == '{') {
            char *close = strchr(p, '}');
            if (close && close - p == 11 && memcmp(p, "{request_id}", 12) == 0) {
                l->ops[l->nops++] = (op){OP_REQID, NULL, 0};
                p = close + 1;
                continue;
            }
            if (!close || close[1] != 'i' || close == p + 1) {
                snprintf(err, errlen, "access log format: %%{NAME}i expected at \"%%%.10s\"", p);
                return -1;
            }
            for (char *k = p + 1; k < close; k++)
                *k = (char)(*k >= 'A' && *k <= 'Z' ? *k + 32 : *k);
            l->ops[l->nops++] = (op){OP_HEADER, p + 1, (size_t)(close - p - 1)};
            p = close + 2;
        } else {
            snprintf(err, errlen, "access log format: unknown directive \"%%%c\"", *p ? *p : ' ');
            return -1;
        }
    }
    /* A misspelt "json" or "common" would otherwise log itself on every line. */
    for (size_t i = 0; i < l->nops; i++)
        if (l->ops[i].kind != OP_LIT)
            return 0;
    snprintf(err, errlen,
             "access log format \"%.40s\" is not combined, common or json, and as a custom "
             "format it has no %%-directive (like %%h or %%s)",
             format);
    return -1;
}

/* Whether PATH could be opened for appending, without creating it or writing
 * to it: root running `celerisd -t` must not leave a root-owned file that the
 * service user then cannot open. */
static int check_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno != ENOENT)
        return -1;
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    return faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS);
}

cel_accesslog *cel_accesslog_new(const char *path, const char *format, unsigned nworkers,
                                 int check_only, char *err, size_t errlen)
{
    cel_accesslog *l = calloc(1, sizeof(*l));
    if (!l || !(l->path = strdup(path)) ||
        !(l->bufs = calloc(nworkers ? nworkers : 1, sizeof(wbuf)))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    l->nworkers = nworkers;
    l->fd = -1;
    if (compile(l, format, err, errlen))
        goto fail;
    for (unsigned i = 0; i < nworkers; i++)
        if (!(l->bufs[i].p = malloc(BUF_SIZE))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    if (strcmp(path, "stderr") == 0 || strcmp(path, "stdout") == 0) {
        l->fd = path[3] == 'e' ? 2 : 1;
    } else if (check_only) {
        if (check_file(path)) {
            snprintf(err, errlen, "cannot open access log \"%s\": %s", path, strerror(errno));
            goto fail;
        }
    } else {
        l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (l->fd < 0) {
            snprintf(err, errlen, "cannot open access log \"%s\": %s", path, strerror(errno));
            goto fail;
        }
        l->own_fd = 1;
    }
    return l;
fail:
    cel_accesslog_free(l);
    return NULL;
}

static void write_out(cel_accesslog *l, wbuf *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(l->fd, b->p + off, b->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a full disk loses log lines, never requests */
        off += (size_t)n;
    }
    b->len = 0;
}

void cel_accesslog_free(cel_accesslog *l)
{
    if (!l)
        return;
    for (unsigned i = 0; l->bufs && i < l->nworkers; i++) {
        if (l->bufs[i].p && l->fd >= 0)
            write_out(l, &l->bufs[i]);
        free(l->bufs[i].p);
    }
    if (l->own_fd && l->fd >= 0)
        close(l->fd);
    free(l->bufs);
    free(l->text);
    free(l->path);
    free(l);
}

int cel_accesslog_reopen(cel_accesslog *l, char *err, size_t errlen)
{
    if (!l->own_fd)
        return 0;
    int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "cannot reopen access log \"%s\": %s", l->path, strerror(errno));
        return -1;
    }
    /* dup2 swaps the file under the descriptor the workers write to, atomically. */
    if (dup2(fd, l->fd) < 0) {
        snprintf(err, errlen, "cannot reopen access log \"%s\": %s", l->path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* ---- formatting into a bounded line ---- */

typedef struct line {
    char *w, *end;
} line;

static void put(line *ln, const char *s, size_t n)
{
    size_t room = (size_t)(ln->end - ln->w);
    if (n > room)
        n = room;
    memcpy(ln->w, s, n);
    ln->w += n;
}

static void put_num(line *ln, uint64_t v)
{
    char tmp[20];
    put(ln, tmp, cel_http_utoa(tmp, v));
}

/* Quotes, backslashes and bytes outside printable ASCII as \xHH, as nginx
 * does, so a line can always be split on spaces and quotes. */
static void put_safe(line *ln, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n == 0) {
        put(ln, "-", 1);
        return;
    }
    for (size_t i = 0; i < n && ln->w < ln->end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *ln->w++ = (char)c;
        } else {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            put(ln, e, 4);
        }
    }
}

static void put_json(line *ln, const char *key, const char *s, size_t n)
{
    put(ln, "\"", 1);
    put(ln, key, strlen(key));
    put(ln, "\":\"", 3);
    /* Leave room for the rest of the line (every later key, and the numbers):
     * cut the value, never the JSON. */
    char *limit = ln->end - JSON_TAIL > ln->w ? ln->end - JSON_TAIL : ln->w;
    while (n && ln->w < limit) {
        size_t k = (size_t)(limit - ln->w) / 6;
        if (k == 0)
            break;
        if (k > n)
            k = n;
        ln->w = cel_json_escape(ln->w, limit, s, k);
        s += k;
        n -= k;
    }
    put(ln, "\",", 2);
}

static cel_str header(const cel_access *e, const char *name, size_t n)
{
    cel_str v = {"", 0};
    if (n == 10 && memcmp(name, ":authority", 10) == 0)
        return e->req->authority;
    if (cel_request_header(e->req, name, n, &v) && n == 4 && memcmp(name, "host", 4) == 0)
        return e->req->authority;
    return v;
}

static void stamp(wbuf *b, time_t now)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (b->stamp_sec == now && b->stamp_len)
        return;
    struct tm tm;
    gmtime_r(&now, &tm);
    int n = snprintf(b->stamp, sizeof(b->stamp), "[%02d/%s/%04d:%02d:%02d:%02d +0000]", tm.tm_mday,
                     months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    b->stamp_len = n > 0 ? (size_t)n : 0;
    strftime(b->iso, sizeof(b->iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
    b->stamp_sec = now;
}

static void format_json(line *ln, wbuf *b, const cel_access *e)
{
    const cel_request *r = e->req;
    put(ln, "{\"time\":\"", 9);
    put(ln, b->iso, strlen(b->iso));
    put(ln, "\",", 2);
    put_json(ln, "remote", e->peer, strlen(e->peer));
    put_json(ln, "method", r->method.p, r->method.n);
    put_json(ln, "path", r->path.p, r->path.n);
    put_json(ln, "query", r->query.p, r->query.n);
    put_json(ln, "protocol", e->protocol, strlen(e->protocol));
    cel_str host = header(e, "host", 4), ref = header(e, "referer", 7),
            ua = header(e, "user-agent", 10);
    put_json(ln, "host", host.p, host.n);
    put_json(ln, "referer", ref.p, ref.n);
    put_json(ln, "user_agent", ua.p, ua.n);
    if (r->id.n)
        put_json(ln, "request_id", r->id.p, r->id.n);
    put(ln, "\"status\":", 9);
    put_num(ln, (uint64_t)e->status);
    put(ln, ",\"bytes\":", 9);
    put_num(ln, e->bytes);
    put(ln, ",\"duration_us\":", 15);
    put_num(ln, e->duration_us);
    put(ln, "}", 1);
}

void cel_accesslog_add(cel_accesslog *l, unsigned worker, const cel_access *e)
{
    if (worker >= l->nworkers)
        return;
    wbuf *b = &l->bufs[worker];
    if (BUF_SIZE - b->len < MAX_LINE + 1)
        write_out(l, b);
    stamp(b, e->now);
    line ln = {b->p + b->len, b->p + b->len + MAX_LINE};
    const cel_request *r = e->req;
    for (size_t i = 0; i < l->nops; i++) {
        const op *o = &l->ops[i];
        switch (o->kind) {
        case OP_LIT:
            put(&ln, o->s, o->n);
            break;
        case OP_JSON:
            format_json(&ln, b, e);
            break;
        case OP_PEER:
            put(&ln, e->peer, strlen(e->peer));
            break;
        case OP_TIME:
            put(&ln, b->stamp, b->stamp_len);
            break;
        case OP_REQLINE:
            put_safe(&ln, r->method.p, r->method.n);
            put(&ln, " ", 1);
            put_safe(&ln, r->path.p, r->path.n);
            if (r->query.n) {
                put(&ln, "?", 1);
                put_safe(&ln, r->query.p, r->query.n);
            }
            put(&ln, " ", 1);
            put(&ln, e->protocol, strlen(e->protocol));
            break;
        case OP_METHOD:
            put_safe(&ln, r->method.p, r->method.n);
            break;
        case OP_PATH:
            put_safe(&ln, r->path.p, r->path.n);
            break;
        case OP_QUERY:
            if (r->query.n) {
                put(&ln, "?", 1);
                put_safe(&ln, r->query.p, r->query.n);
            }
            break;
        case OP_PROTO:
            put(&ln, e->protocol, strlen(e->protocol));
            break;
        case OP_STATUS:
            put_num(&ln, (uint64_t)e->status);
            break;
        case OP_BYTES_DASH:
            if (e->bytes == 0) {
                put(&ln, "-", 1);
                break;
            }
            /* fall through */
        case OP_BYTES:
            put_num(&ln, e->bytes);
            break;
        case OP_USEC:
            put_num(&ln, e->duration_us);
            break;
        case OP_SEC:
            put_num(&ln, e->duration_us / 1000000);
            break;
        case OP_HOST: {
            cel_str h = header(e, "host", 4);
            put_safe(&ln, h.p, h.n);
            break;
        }
        case OP_HEADER: {
            cel_str h = header(e, o->s, o->n);
            put_safe(&ln, h.p, h.n);
            break;
        }
        case OP_REQID:
            if (e->req->id.n)
                put_safe(&ln, e->req->id.p, e->req->id.n);
            else
                put(&ln, "-", 1);
            break;
        }
    }
    *ln.w++ = '\n'; /* MAX_LINE leaves room for it */
    b->len = (size_t)(ln.w - b->p);
}

void cel_accesslog_flush(cel_accesslog *l, unsigned worker)
{
    if (worker < l->nworkers && l->bufs[worker].len)
        write_out(l, &l->bufs[worker]);
}
