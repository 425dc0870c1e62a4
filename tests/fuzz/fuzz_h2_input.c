/*
 * fuzz_h2_input: the connection's input path without a socket. Bytes a client
 * could send go through cel_h2_recv into nghttp2, the callbacks in h2*.c,
 * dispatch and the static and json handlers; what the server answers goes
 * through cel_h2_send into an output queue, flushed into a sink.
 *
 * Input layout:
 *   byte 0   how the client stream is cut into cel_h2_recv calls: 0 = all at
 *            once, else chunks of 1..255 bytes, the size varying from chunk to
 *            chunk with the following bytes
 *   byte 1   bits 0-3: the sink takes at most N*512 bytes per flush round, a
 *            writev at a time, then answers EAGAIN (0 = everything at once);
 *            bit 4: graceful GOAWAY (cel_h2_goaway) once the input is in;
 *            bit 5: the second world (tight limits, custom access log format);
 *            bit 7: do not prepend the client preface (the rest must bring it)
 *   rest     what the client sends after the preface: frames
 * Stops feeding when cel_h2_recv or cel_h2_send fails, as conn.c does.
 *
 * Setup once: two worker-like envs (below: "worlds"), each on its own event base
 * with a generation loaded from a small YAML (static, big static sent by
 * reference, json with params, json echoing headers, a POST route, 204,
 * metrics and status) and an access log. Per input: a fresh pool (so anything h2*.c keeps allocated
 * past cel_h2_free is a leak LeakSanitizer sees), outq and session, all freed again.
 *
 * Checked, abort() otherwise, on everything the server wrote:
 *   - it is a sequence of whole frames beginning with our SETTINGS;
 *   - each frame is one a server may send, on a stream id its type allows, of
 *     a valid length; no PUSH_PROMISE or PRIORITY; CONTINUATION only inside a
 *     header block and nothing else there;
 *   - header blocks decode with an HPACK decoder of our own session; a response
 *     starts with a three-digit :status, has no other pseudo-header, never 500
 *     (these handlers cannot fail);
 *   - per stream: one HEADERS, DATA only after it and never past END_STREAM or
 *     our RST_STREAM, no DATA frame over 16384 bytes, and a stream that ends
 *     with DATA carries exactly content-length bytes;
 *   - no response HEADERS for a stream above the last id of a GOAWAY we sent;
 *   - the generation's user count is back to zero once everything is freed;
 *   - every access log line is whole: valid JSON in the json format, printable
 *     ASCII beginning with the client address in the custom one.
 */
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "env.h"
#include "fuzz.h"
#include "fuzz_sink.h"
#include "genref.h"
#include "h2.h"
#include "log.h"
#include "outq.h"

/* The routes both configurations serve; @BIG@ becomes a body long enough to be
 * sent by reference, @OFF@ an access_log key. */
static const char routes_yaml[] =
    "routes:\n"
    "  - path: /\n"
    "    static: { body: \"OK\" }\n"
    "  - path: /big\n"
    "    static: { body: \"@BIG@\", content_type: text/plain, headers: { cache-control: "
    "\"max-age=60\" } }\n"
    "  - path: /empty\n"
    "    static: { body: \"\", status: 204 }\n"
    "  - path: /json\n"
    "    @OFF@\n"
    "    json: { template: { message: \"Hello, World!\" } }\n"
    "  - path: /users/:id/posts/:postId\n"
    "    methods: [GET]\n"
    "    json: { template: { user: \"{{param.id}}\", post: \"{{param.postId}}\", q: "
    "\"{{query.q}}\" } }\n"
    "  - path: /echo/*rest\n"
    "    methods: [GET, POST, PUT]\n"
    "    json:\n"
    "      status: 201\n"
    "      template:\n"
    "        method: \"{{method}}\"\n"
    "        path: \"{{path}}\"\n"
    "        rest: \"{{param.rest}}\"\n"
    "        agent: \"{{header.user-agent}}\"\n"
    "        cookie: \"{{header.cookie}}\"\n"
    "        type: \"{{header.content-type}}\"\n"
    "  - path: /submit\n"
    "    methods: [POST]\n"
    "    static: { body: \"accepted\", status: 202 }\n"
    "  - path: /metrics\n"
    "    metrics: {}\n"
    "  - path: /status\n"
    "    status: {}\n";

/* Two worlds, picked per input by bit 5 of the mode byte:
 *   0: roomy limits (a :path or header long enough to fill an access log line
 *      fits), access log in the json format, checked line by line with jansson;
 *   1: tight limits (4 streams, 1k windows and bodies, 16k output buffer, low
 *      flood limits) and a custom access log format using every directive.
 * Each access log goes to a memfd of ours, emptied before every input. */
static const char *const world_yaml[2] = {
    "workers: 1\n"
    "log:\n"
    "  access: { path: \"/proc/self/fd/@FD@\", format: json }\n"
    "limits:\n"
    "  max_concurrent_streams: 16\n"
    "  max_header_list_size: 16k\n"
    "  max_request_body: 8k\n"
    "  max_output_buffer: 32k\n"
    "  initial_window_size: 65535\n",

    "workers: 1\n"
    "log:\n"
    "  access:\n"
    "    path: \"/proc/self/fd/@FD@\"\n"
    "    format: '%h %t \"%r\" %m %U %q %H %s %b %B %D %T %v \"%{User-Agent}i\" %{cookie}i "
    "%{:authority}i %%'\n"
    "limits:\n"
    "  max_concurrent_streams: 4\n"
    "  max_header_list_size: 1k\n"
    "  max_request_body: 1k\n"
    "  max_output_buffer: 16k\n"
    "  initial_window_size: 1024\n"
    "  max_settings_entries: 8\n"
    "  reset_burst: 5\n"
    "  reset_rate: 1\n"
    "  max_continuations: 2\n"
    "  max_outbound_ack: 20\n"
    "  glitch_burst: 40\n"
    "  glitch_rate: 1\n",
};

#define BIG_BODY 3000

typedef struct world {
    cel_env env;
    int logfd; /* the memfd the access log appends to */
    int json;  /* the access log is in the json format */
} world;

static world worlds[2];
static int ready;
static int trace;           /* FUZZ_TRACE=1: print each response and each frame the server sent */
static int no_access_check; /* FUZZ_H2_NO_ACCESS_CHECK=1: to hunt past a known access log bug */

/* Writes TEXT to F with @NAME@ tokens replaced. */
static void put_yaml(FILE *f, const char *text, int fd, const char *off)
{
    char big[BIG_BODY + 1];
    for (size_t i = 0; i < BIG_BODY; i++)
        big[i] = (char)('a' + i % 26);
    big[BIG_BODY] = '\0';
    for (const char *p = text; *p;) {
        if (!strncmp(p, "@BIG@", 5)) {
            fputs(big, f);
            p += 5;
        } else if (!strncmp(p, "@FD@", 4)) {
            fprintf(f, "%d", fd);
            p += 4;
        } else if (!strncmp(p, "@OFF@", 5)) {
            fputs(off, f);
            p += 5;
        } else {
            fputc(*p++, f);
        }
    }
}

static void setup_world(world *w, unsigned i)
{
    w->json = i == 0;
    w->logfd = memfd_create(i ? "fuzz_h2_access_custom" : "fuzz_h2_access_json", MFD_CLOEXEC);
    int fd = memfd_create("fuzz_h2_input.yaml", MFD_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "w+") : NULL;
    if (w->logfd < 0 || !f) {
        perror("fuzz_h2_input: memfds");
        exit(1);
    }
    put_yaml(f, world_yaml[i], w->logfd, "");
    put_yaml(f, routes_yaml, w->logfd, i ? "access_log: off" : "access_log: on");
    fflush(f);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    char err[512];
    cel_config *cfg = cel_config_load(path, err, sizeof(err));
    fclose(f);
    if (!cfg) {
        fprintf(stderr, "fuzz_h2_input: built-in config %u does not load: %s\n", i, err);
        exit(1);
    }
    struct event_base *base = event_base_new();
    if (!base || cel_env_init(&w->env, 0, base) || cel_genref_init(&w->env, cfg)) {
        fprintf(stderr, "fuzz_h2_input: env setup failed\n");
        exit(1);
    }
    cel_config_unref(cfg); /* the env holds its own */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (ready)
        return 0;
    trace = getenv("FUZZ_TRACE") != NULL;
    no_access_check = getenv("FUZZ_H2_NO_ACCESS_CHECK") != NULL;
    if (!getenv("FUZZ_VERBOSE"))
        cel_log_level = CEL_LOG_ERROR + 1; /* silence: errors are what we look for */
    if (cel_h2_global_init()) {
        fprintf(stderr, "fuzz_h2_input: cel_h2_global_init failed\n");
        exit(1);
    }
    for (unsigned i = 0; i < 2; i++)
        setup_world(&worlds[i], i);
    ready = 1;
    return 0;
}

/* One access log line: JSON in the json world; in the custom one, printable
 * ASCII only (put_safe escapes the rest) and starting with the peer address. */
static void check_access_line(const world *w, const char *p, size_t len)
{
    int show = (int)(len < 600 ? len : 600);
    if (w->json) {
        json_error_t je;
        json_t *v = json_loadb(p, len, 0, &je);
        FUZZ_CHECK(v && json_is_object(v), "access log line is not a JSON object (%s): %.*s",
                   v ? "not an object" : je.text, show, p);
        json_decref(v);
        return;
    }
    FUZZ_CHECK(len > 10 && !memcmp(p, "192.0.2.1 [", 11),
               "access log line does not start with the peer: %.*s", show, p);
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(p[i] >= 0x20 && p[i] < 0x7f, "access log byte 0x%02x at %zu: %.*s",
                   (unsigned char)p[i], i, show, p);
}

/* Writes out the world's access log, checks every line, empties it. */
static void check_access_log(world *w)
{
    cel_genref_flush_logs(&w->env);
    struct stat st;
    if (fstat(w->logfd, &st))
        abort();
    size_t n = (size_t)st.st_size;
    if (n == 0)
        return;
    char *buf = malloc(n);
    if (!buf || pread(w->logfd, buf, n, 0) != (ssize_t)n)
        abort();
    FUZZ_CHECK(buf[n - 1] == '\n', "the access log ends inside a line");
    for (char *p = buf, *end = buf + n; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)(nl - p);
        if (trace)
            fprintf(stderr, "access: %.*s\n", (int)len, p);
        if (!no_access_check)
            check_access_line(w, p, len);
        p = nl + 1;
    }
    free(buf);
    if (ftruncate(w->logfd, 0))
        abort();
}

/* ---- the output oracle ---- */

typedef struct sstream {
    int32_t id;
    int headers, ended, reset, ended_on_headers;
    long long content_length; /* -1: none */
    size_t data;
} sstream;

typedef struct oracle {
    sstream *st;
    size_t n, cap;
    nghttp2_hd_inflater *inf;
    uint8_t *block; /* the header block being collected */
    size_t blen, bcap;
    int32_t block_stream;
    int block_end_stream;
    int32_t goaway_last; /* -1: no GOAWAY yet */
} oracle;

static sstream *stream_of(oracle *o, int32_t id)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->st[i].id == id)
            return &o->st[i];
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 16;
        o->st = realloc(o->st, o->cap * sizeof(*o->st));
        if (!o->st)
            abort();
    }
    o->st[o->n] = (sstream){.id = id, .content_length = -1};
    return &o->st[o->n++];
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void end_stream(sstream *s)
{
    s->ended = 1;
    if (s->content_length >= 0 && !s->ended_on_headers)
        FUZZ_CHECK((long long)s->data == s->content_length,
                   "stream %d: %zu DATA bytes, content-length %lld", s->id, s->data,
                   s->content_length);
}

static void header_block(oracle *o)
{
    sstream *s = stream_of(o, o->block_stream);
    FUZZ_CHECK(!s->headers, "stream %d: a second HEADERS from the server", s->id);
    FUZZ_CHECK(!s->ended && !s->reset, "stream %d: HEADERS after the stream ended", s->id);
    FUZZ_CHECK(o->goaway_last < 0 || s->id <= o->goaway_last,
               "stream %d: response HEADERS above GOAWAY's last stream %d", s->id, o->goaway_last);
    s->headers = 1;
    const uint8_t *in = o->block;
    size_t left = o->blen;
    int nfields = 0, status = 0;
    for (;;) {
        nghttp2_nv nv;
        int flags = 0;
        ssize_t rv = nghttp2_hd_inflate_hd2(o->inf, &nv, &flags, in, left, 1);
        FUZZ_CHECK(rv >= 0, "stream %d: the server's header block does not decode: %s", s->id,
                   nghttp2_strerror((int)rv));
        in += rv;
        left -= (size_t)rv;
        if (flags & NGHTTP2_HD_INFLATE_EMIT) {
            if (nfields == 0) {
                FUZZ_CHECK(nv.namelen == 7 && !memcmp(nv.name, ":status", 7) && nv.valuelen == 3 &&
                               nv.value[0] >= '1' && nv.value[0] <= '5' && nv.value[1] >= '0' &&
                               nv.value[1] <= '9' && nv.value[2] >= '0' && nv.value[2] <= '9',
                           "stream %d: a response that does not start with :status", s->id);
                status = (nv.value[0] - '0') * 100 + (nv.value[1] - '0') * 10 + nv.value[2] - '0';
            } else {
                FUZZ_CHECK(nv.namelen > 0 && nv.name[0] != ':',
                           "stream %d: pseudo-header %.*s after :status", s->id, (int)nv.namelen,
                           nv.name);
                for (size_t i = 0; i < nv.namelen; i++)
                    FUZZ_CHECK(!(nv.name[i] >= 'A' && nv.name[i] <= 'Z'),
                               "stream %d: upper-case header name %.*s", s->id, (int)nv.namelen,
                               nv.name);
                if (nv.namelen == 14 && !memcmp(nv.name, "content-length", 14)) {
                    FUZZ_CHECK(s->content_length < 0, "stream %d: two content-lengths", s->id);
                    long long v = 0;
                    FUZZ_CHECK(nv.valuelen > 0 && nv.valuelen < 19,
                               "stream %d: content-length of %zu digits", s->id, nv.valuelen);
                    for (size_t i = 0; i < nv.valuelen; i++) {
                        FUZZ_CHECK(nv.value[i] >= '0' && nv.value[i] <= '9',
                                   "stream %d: content-length \"%.*s\"", s->id, (int)nv.valuelen,
                                   nv.value);
                        v = v * 10 + (nv.value[i] - '0');
                    }
                    s->content_length = v;
                }
            }
            nfields++;
        }
        if (flags & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(o->inf);
            break;
        }
        FUZZ_CHECK(rv > 0 || (flags & NGHTTP2_HD_INFLATE_EMIT),
                   "stream %d: the header block ends inside a field", s->id);
    }
    FUZZ_CHECK(left == 0, "stream %d: bytes after the header block", s->id);
    FUZZ_CHECK(nfields > 0, "stream %d: an empty header block", s->id);
    if (trace)
        fprintf(stderr, "  stream %d: status %d, content-length %lld, %d fields\n", s->id, status,
                s->content_length, nfields);
    FUZZ_CHECK(status != 500, "stream %d: status 500 from a handler that cannot fail", s->id);
    if ((status == 204 || status == 304) && s->content_length > 0)
        fuzz_fail("stream %d: %d with a content-length", s->id, status);
    o->blen = 0;
    if (o->block_end_stream) {
        s->ended_on_headers = 1;
        end_stream(s);
    }
}

static void block_add(oracle *o, const uint8_t *p, size_t n)
{
    if (o->blen + n > o->bcap) {
        o->bcap = (o->blen + n) * 2;
        o->block = realloc(o->block, o->bcap);
        if (!o->block)
            abort();
    }
    memcpy(o->block + o->blen, p, n);
    o->blen += n;
}

static void check_output(const uint8_t *b, size_t len)
{
    oracle o = {.goaway_last = -1, .block_stream = 0};
    if (nghttp2_hd_inflate_new(&o.inf))
        abort();
    size_t pos = 0;
    int first = 1, in_block = 0;
    while (pos < len) {
        FUZZ_CHECK(len - pos >= 9, "output ends inside a frame header (%zu bytes)", len - pos);
        const uint8_t *h = b + pos;
        size_t flen = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        uint8_t type = h[3], flags = h[4];
        uint32_t sid_raw = be32(h + 5);
        int32_t sid = (int32_t)(sid_raw & 0x7fffffff);
        FUZZ_CHECK(!(sid_raw & 0x80000000u), "frame with the reserved bit set");
        FUZZ_CHECK(len - pos - 9 >= flen, "output ends inside a frame of type %u (%zu of %zu)",
                   type, len - pos - 9, flen);
        const uint8_t *p = h + 9;
        pos += 9 + flen;
        if (trace)
            fprintf(stderr, "frame type %u flags 0x%02x stream %d length %zu\n", type, flags, sid,
                    flen);
        if (first) {
            FUZZ_CHECK(type == NGHTTP2_SETTINGS && !(flags & NGHTTP2_FLAG_ACK),
                       "the server's first frame is type %u, not SETTINGS", type);
            first = 0;
        }
        if (in_block) {
            FUZZ_CHECK(type == NGHTTP2_CONTINUATION && sid == o.block_stream,
                       "type %u on stream %d inside a header block of stream %d", type, sid,
                       o.block_stream);
        }
        switch (type) {
        case NGHTTP2_DATA: {
            FUZZ_CHECK(sid > 0 && (sid & 1), "DATA on stream %d", sid);
            FUZZ_CHECK(flen <= 16384, "DATA of %zu bytes", flen);
            size_t pad = 0, body = flen;
            if (flags & NGHTTP2_FLAG_PADDED) {
                FUZZ_CHECK(flen >= 1 && p[0] < flen, "bad DATA padding");
                pad = p[0];
                body = flen - 1 - pad;
            }
            sstream *s = stream_of(&o, sid);
            FUZZ_CHECK(s->headers && !s->ended && !s->reset, "stream %d: DATA %s", sid,
                       !s->headers ? "before HEADERS" : "after the stream ended");
            s->data += body;
            if (flags & NGHTTP2_FLAG_END_STREAM)
                end_stream(s);
            break;
        }
        case NGHTTP2_HEADERS: {
            FUZZ_CHECK(sid > 0 && (sid & 1), "HEADERS on stream %d", sid);
            FUZZ_CHECK(!(flags & ~(NGHTTP2_FLAG_END_STREAM | NGHTTP2_FLAG_END_HEADERS)),
                       "HEADERS with flags 0x%x", flags);
            o.block_stream = sid;
            o.block_end_stream = (flags & NGHTTP2_FLAG_END_STREAM) != 0;
            block_add(&o, p, flen);
            in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
            if (!in_block)
                header_block(&o);
            break;
        }
        case NGHTTP2_CONTINUATION:
            FUZZ_CHECK(in_block, "CONTINUATION outside a header block");
            FUZZ_CHECK(!(flags & ~NGHTTP2_FLAG_END_HEADERS), "CONTINUATION flags 0x%x", flags);
            block_add(&o, p, flen);
            in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
            if (!in_block)
                header_block(&o);
            break;
        case NGHTTP2_RST_STREAM: {
            FUZZ_CHECK(sid > 0 && flen == 4, "RST_STREAM on stream %d, %zu bytes", sid, flen);
            stream_of(&o, sid)->reset = 1;
            break;
        }
        case NGHTTP2_SETTINGS:
            FUZZ_CHECK(sid == 0, "SETTINGS on stream %d", sid);
            FUZZ_CHECK((flags & NGHTTP2_FLAG_ACK) ? flen == 0 : flen % 6 == 0,
                       "SETTINGS of %zu bytes, flags 0x%x", flen, flags);
            break;
        case NGHTTP2_PING:
            FUZZ_CHECK(sid == 0 && flen == 8 && (flags & NGHTTP2_FLAG_ACK),
                       "PING from the server: stream %d, %zu bytes, flags 0x%x", sid, flen, flags);
            break;
        case NGHTTP2_GOAWAY: {
            FUZZ_CHECK(sid == 0 && flen >= 8, "GOAWAY on stream %d, %zu bytes", sid, flen);
            int32_t last = (int32_t)(be32(p) & 0x7fffffff);
            FUZZ_CHECK(o.goaway_last < 0 || last <= o.goaway_last,
                       "GOAWAY last stream went up from %d to %d", o.goaway_last, last);
            o.goaway_last = last;
            break;
        }
        case NGHTTP2_WINDOW_UPDATE: {
            FUZZ_CHECK(flen == 4, "WINDOW_UPDATE of %zu bytes", flen);
            uint32_t inc = be32(p) & 0x7fffffff;
            FUZZ_CHECK(inc > 0, "WINDOW_UPDATE of 0 on stream %d", sid);
            break;
        }
        default:
            fuzz_fail("the server sent a frame of type %u", type);
        }
    }
    FUZZ_CHECK(!in_block, "output ends inside a header block");
    nghttp2_hd_inflate_del(o.inf);
    free(o.st);
    free(o.block);
}

/* ---- one connection ---- */

/* Moves frames out until nothing is left or the round cap: what conn.c's pump
 * does, with the sink in place of the socket. 0, or -1 once cel_h2_send failed
 * (conn.c then closes). */
static int pump(cel_h2 *h, cel_outq *q, sink *k)
{
    for (int round = 0; round < 4096; round++) {
        k->left = k->per_round;
        if (cel_h2_send(h))
            return -1;
        int rc = cel_outq_flush(q, sink_writev, k);
        FUZZ_CHECK(rc == 0 || rc == CEL_EAGAIN, "cel_outq_flush: %d", rc);
        if (cel_outq_pending(q) == 0 && !cel_h2_want_write(h))
            return 0;
    }
    return 0;
}

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size < 2)
        return 0;
    uint8_t chunking = data[0], mode = data[1];
    data += 2;
    size -= 2;

    /* the client's bytes, in a block of their exact size */
    size_t plen = (mode & 0x80) ? 0 : sizeof(preface) - 1;
    size_t n = plen + size;
    uint8_t *in = malloc(n ? n : 1);
    if (!in)
        abort();
    memcpy(in, preface, plen);
    if (size)
        memcpy(in + plen, data, size);

    world *w = &worlds[(mode >> 5) & 1];
    cel_env *env = &w->env;
    cel_pool *saved = env->pool;
    env->pool = cel_pool_new(8u << 20);
    if (!env->pool)
        abort();
    cel_outq q;
    cel_outq_init(&q, env->pool);
    sink k = {.per_round = (size_t)(mode & 0x0f) * 512};
    cel_h2 *h =
        cel_h2_new(env, &q, NULL, NULL, &(cel_conn_view){"192.0.2.1", -1, NULL, 0, 0, 0, 0, {0}});
    FUZZ_CHECK(h, "cel_h2_new failed");

    int dead = 0;
    size_t off = 0;
    for (size_t i = 0; off < n && !dead; i++) {
        size_t c = n - off;
        if (chunking) {
            /* vary the size with the input, so splits land everywhere */
            size_t want = 1 + (chunking + in[(off + i) % n]) % chunking;
            if (want < c)
                c = want;
        }
        int rc = cel_h2_recv(h, in + off, c);
        off += c;
        if (pump(h, &q, &k) || rc)
            dead = 1; /* conn.c: let the GOAWAY out (pump did), then close */
    }
    if (!dead && (mode & 0x10)) {
        cel_h2_goaway(h);
        pump(h, &q, &k);
    }
    /* what is still queued goes out whole, so the output ends on a frame */
    k.per_round = 0;
    int rc = cel_outq_flush(&q, sink_writev, &k);
    FUZZ_CHECK(rc == 0, "final flush: %d", rc);

    cel_h2_free(h);
    cel_outq_deinit(&q);
    FUZZ_CHECK(env->gen->users == 0, "%zu users of the generation left after the connection",
               env->gen->users);
    cel_pool_free(env->pool);
    env->pool = saved;
    check_access_log(w);

    if (!k.overflow)
        check_output(k.buf, k.len);
    free(k.buf);
    free(in);
    return 0;
}
