/*
 * fuzz_h1_input: an HTTP/1.1 connection without a socket, the h2c upgrade
 * included. Bytes a client could send go through cel_h1_proto.recv (h1.c: the
 * input buffer, the parser loop, bodies by length or chunked, 100-continue,
 * pipelining), dispatch and the static and json handlers; an upgrade switches
 * to the HTTP/2 session h1.c made and feeds it what followed the request, as
 * conn.c's feed does. What the server answers goes through the protocol's send
 * into an output queue, flushed into a sink.
 *
 * Input layout:
 *   byte 0   how the client's bytes are cut into recv calls: 0 = all at once,
 *            else pieces of 1..255 bytes, the size varying with the bytes
 *   byte 1   bits 0-3: the sink takes at most N*512 bytes per flush round (0 =
 *            everything at once); bit 4: graceful goaway once the input is in;
 *            bit 5: a timeout (expire) once the input is in; bit 6: the peer
 *            is the HTTP/1.0-era "-" (no address)
 *   rest     what the client sends
 *
 * Setup once: a worker-like env with a generation from a small YAML (static,
 * a big static, 204, json, json echoing the request, POST routes, bodies up to
 * 4k) and a json access log. Per input: a fresh pool (so what h1.c or h2*.c
 * keep past their free is a leak LeakSanitizer sees), outq and session.
 *
 * Checked, abort() otherwise, on everything the server wrote:
 *   - it is a sequence of whole HTTP/1.1 responses: "HTTP/1.1 NNN reason"
 *     (100..599, never 500: these handlers cannot fail), fields with a token
 *     name and a value without CR, LF or NUL, then the framing: a body of
 *     exactly content-length bytes (none for a HEAD, see below), a well-formed
 *     chunked body, none for 1xx, 204 and 304, or (no framing) the rest of the
 *     output; never both content-length and transfer-encoding, nor two of one;
 *   - after "101 Switching Protocols", HTTP/2: whole frames of at most 16384
 *     octets, the first our SETTINGS, and the upgraded request (stream 1)
 *     answered with HEADERS or RST_STREAM unless a GOAWAY ended the session;
 *   - the generation's user count is back to zero once everything is freed;
 *   - every access log line is a JSON object, without "\u0000".
 * A HEAD response carries the content-length of the body it leaves out; the
 * checker knows it by the next status line (or the end) following the head at
 * once, which no body these routes send begins with.
 */
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
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
#include "h1.h"
#include "h1_parse.h"
#include "h2.h"
#include "http.h"
#include "log.h"
#include "outq.h"

static const char config_yaml[] = "workers: 1\n"
                                  "log:\n"
                                  "  access: { path: \"/proc/self/fd/@FD@\", format: json }\n"
                                  "limits:\n"
                                  "  max_request_body: 4k\n"
                                  "  max_header_list_size: 8k\n"
                                  "  max_header_line: 1k\n"
                                  "  max_request_line: 1k\n"
                                  "  max_headers: 16\n"
                                  "  max_concurrent_streams: 8\n"
                                  "  max_output_buffer: 32k\n"
                                  "routes:\n"
                                  "  - path: /\n"
                                  "    static: { body: \"OK\" }\n"
                                  "  - path: /big\n"
                                  "    static: { body: \"@BIG@\", content_type: text/plain }\n"
                                  "  - path: /empty\n"
                                  "    static: { body: \"\", status: 204 }\n"
                                  "  - path: /json\n"
                                  "    json: { template: { message: \"Hello, World!\" } }\n"
                                  "  - path: /echo/*rest\n"
                                  "    methods: [GET, POST, PUT]\n"
                                  "    json:\n"
                                  "      status: 201\n"
                                  "      template:\n"
                                  "        method: \"{{method}}\"\n"
                                  "        path: \"{{path}}\"\n"
                                  "        rest: \"{{param.rest}}\"\n"
                                  "        q: \"{{query.q}}\"\n"
                                  "        agent: \"{{header.user-agent}}\"\n"
                                  "        host: \"{{header.host}}\"\n"
                                  "  - path: /submit\n"
                                  "    methods: [POST, PUT]\n"
                                  "    static: { body: \"accepted\", status: 202 }\n";

#define BIG_BODY 3000

static cel_env env;
static int logfd;
static int ready;
static int trace; /* FUZZ_TRACE=1: print what the server wrote and the access log */

static void setup(void)
{
    logfd = memfd_create("fuzz_h1_access", MFD_CLOEXEC);
    int fd = memfd_create("fuzz_h1_input.yaml", MFD_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "w+") : NULL;
    if (logfd < 0 || !f) {
        perror("fuzz_h1_input: memfds");
        exit(1);
    }
    for (const char *p = config_yaml; *p;) {
        if (!strncmp(p, "@BIG@", 5)) {
            for (size_t i = 0; i < BIG_BODY; i++)
                fputc('a' + (int)(i % 26), f);
            p += 5;
        } else if (!strncmp(p, "@FD@", 4)) {
            fprintf(f, "%d", logfd);
            p += 4;
        } else {
            fputc(*p++, f);
        }
    }
    fflush(f);
    char path[64], err[512];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    cel_config *cfg = cel_config_load(path, err, sizeof(err));
    fclose(f);
    if (!cfg) {
        fprintf(stderr, "fuzz_h1_input: built-in config does not load: %s\n", err);
        exit(1);
    }
    struct event_base *base = event_base_new();
    if (!base || cel_env_init(&env, 0, base) || cel_genref_init(&env, cfg)) {
        fprintf(stderr, "fuzz_h1_input: env setup failed\n");
        exit(1);
    }
    cel_config_unref(cfg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (ready)
        return 0;
    trace = getenv("FUZZ_TRACE") != NULL;
    if (!getenv("FUZZ_VERBOSE"))
        cel_log_level = CEL_LOG_ERROR + 1;
    if (cel_h2_global_init()) {
        fprintf(stderr, "fuzz_h1_input: cel_h2_global_init failed\n");
        exit(1);
    }
    setup();
    ready = 1;
    return 0;
}

static void check_access_log(void)
{
    cel_genref_flush_logs(&env);
    struct stat st;
    if (fstat(logfd, &st))
        abort();
    size_t n = (size_t)st.st_size;
    if (n == 0)
        return;
    char *buf = malloc(n);
    if (!buf || pread(logfd, buf, n, 0) != (ssize_t)n)
        abort();
    FUZZ_CHECK(buf[n - 1] == '\n', "the access log ends inside a line");
    for (char *p = buf, *end = buf + n; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        int len = (int)(nl - p);
        if (trace)
            fprintf(stderr, "access: %.*s\n", len, p);
        json_error_t je;
        /* no NUL either (jansson refuses "\u0000" unless told): a malformed
         * request line is logged as far as the parser read it */
        json_t *v = json_loadb(p, (size_t)len, 0, &je);
        FUZZ_CHECK(v && json_is_object(v), "access log line is not a JSON object: %.*s",
                   len < 600 ? len : 600, p);
        json_decref(v);
        p = nl + 1;
    }
    free(buf);
    if (ftruncate(logfd, 0))
        abort();
}

/* ---- the output oracle ---- */

static void check_h2(const uint8_t *b, size_t n)
{
    size_t pos = 0;
    int answered = 0, goaway = 0;
    while (pos < n) {
        FUZZ_CHECK(n - pos >= 9, "h2c: output ends inside a frame header");
        const uint8_t *h = b + pos;
        size_t flen = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        uint32_t sid = ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) &
                       0x7fffffffu;
        FUZZ_CHECK(flen <= 16384, "h2c: a frame of %zu octets", flen);
        FUZZ_CHECK(n - pos - 9 >= flen, "h2c: output ends inside a frame");
        if (pos == 0)
            FUZZ_CHECK(h[3] == 4 && !(h[4] & 1) && sid == 0,
                       "h2c: the first frame is not SETTINGS");
        if (sid == 1 && (h[3] == 1 || h[3] == 3))
            answered = 1;
        goaway |= h[3] == 7;
        if (trace)
            fprintf(stderr, "  h2 frame type %u flags 0x%02x stream %u length %zu\n", h[3], h[4],
                    sid, flen);
        pos += 9 + flen;
    }
    FUZZ_CHECK(answered || goaway, "h2c: the upgraded request is never answered");
}

static int digits(const char *p, size_t n, long long *v)
{
    *v = 0;
    if (n == 0 || n > 18)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        *v = *v * 10 + (p[i] - '0');
    }
    return 1;
}

static void check_output(const uint8_t *b, size_t n)
{
    const char *s = (const char *)b;
    size_t pos = 0;
    while (pos < n) {
        const char *eol = memmem(s + pos, n - pos, "\r\n", 2);
        FUZZ_CHECK(eol, "output ends inside a status line");
        size_t ln = (size_t)(eol - (s + pos));
        FUZZ_CHECK(ln >= 13 && !memcmp(s + pos, "HTTP/1.1 ", 9) && s[pos + 12] == ' ',
                   "not a status line: %.*s", (int)(ln < 80 ? ln : 80), s + pos);
        long long status;
        FUZZ_CHECK(digits(s + pos + 9, 3, &status) && status >= 100 && status <= 599, "status %.3s",
                   s + pos + 9);
        FUZZ_CHECK(status != 500, "status 500 from handlers that cannot fail");
        if (trace)
            fprintf(stderr, "response: %.*s\n", (int)ln, s + pos);
        pos += ln + 2;
        long long cl = -1;
        int chunked = 0, te = 0;
        for (;;) {
            eol = memmem(s + pos, n - pos, "\r\n", 2);
            FUZZ_CHECK(eol, "output ends inside a response head");
            ln = (size_t)(eol - (s + pos));
            const char *f = s + pos;
            pos += ln + 2;
            if (ln == 0)
                break;
            const char *colon = memchr(f, ':', ln);
            FUZZ_CHECK(colon && colon > f && colon + 1 < f + ln && colon[1] == ' ',
                       "not a field line: %.*s", (int)(ln < 80 ? ln : 80), f);
            size_t nl = (size_t)(colon - f), vl = ln - nl - 2;
            const char *v = colon + 2;
            for (size_t i = 0; i < nl; i++)
                FUZZ_CHECK(cel_http_is_tchar((unsigned char)f[i]), "field name %.*s", (int)nl, f);
            for (size_t i = 0; i < vl; i++)
                FUZZ_CHECK(v[i] != '\r' && v[i] != '\n' && v[i] != '\0', "field value byte");
            if (nl == 14 && !strncasecmp(f, "content-length", 14)) {
                FUZZ_CHECK(cl < 0, "two content-lengths");
                FUZZ_CHECK(digits(v, vl, &cl), "content-length %.*s", (int)vl, v);
            } else if (nl == 17 && !strncasecmp(f, "transfer-encoding", 17)) {
                FUZZ_CHECK(!te, "two transfer-encodings");
                te = 1;
                chunked = vl == 7 && !memcmp(v, "chunked", 7);
                FUZZ_CHECK(chunked, "transfer-encoding %.*s", (int)vl, v);
            }
        }
        FUZZ_CHECK(!(te && cl >= 0), "content-length and transfer-encoding");
        if (status == 101) {
            check_h2(b + pos, n - pos);
            return;
        }
        if (status < 200 || status == 204 || status == 304) {
            FUZZ_CHECK(cl <= 0 && !te, "%lld with a body", status);
            continue;
        }
        if (chunked) {
            cel_h1_chunked st;
            cel_h1_chunked_init(&st, 0);
            char *tmp = malloc(n - pos + 1);
            if (!tmp)
                abort();
            size_t ol = 0, used = 0;
            int rc = cel_h1_chunked_decode(&st, s + pos, n - pos, tmp, &ol, &used);
            free(tmp);
            FUZZ_CHECK(rc == 0, "a chunked response body that does not end (%d)", rc);
            pos += used;
        } else if (cl >= 0) {
            int head = pos == n || (n - pos >= 9 && !memcmp(s + pos, "HTTP/1.1 ", 9));
            if (!head) {
                FUZZ_CHECK((long long)(n - pos) >= cl, "%zu bytes left for a body of %lld", n - pos,
                           cl);
                pos += (size_t)cl;
            }
        } else {
            return; /* ends with the connection */
        }
    }
}

/* ---- one connection ---- */

typedef struct conn {
    const cel_proto *proto;
    void *ps;
    void *next_ps;    /* set by the upgrade callback, as conn.c's on_upgrade does */
    int flush_wanted; /* the session asked for a send and a flush (conn.c: want_flush) */
} conn;

static void want_flush(void *ctx)
{
    ((conn *)ctx)->flush_wanted = 1;
}

static void on_upgrade(void *ctx, void *h2)
{
    ((conn *)ctx)->next_ps = h2;
}

/* conn.c's switch_to_h2: the HTTP/2 session an upgrade made takes over and
 * gets what followed the upgrading request. */
static int switch_to_h2(conn *c)
{
    size_t rest = 0;
    void *h1 = c->ps;
    const uint8_t *left = cel_h1_leftover(h1, &rest);
    c->proto = &cel_h2_proto;
    c->ps = c->next_ps;
    c->next_ps = NULL;
    int rc = rest ? c->proto->recv(c->ps, left, rest) : 0;
    cel_h1_proto.free(h1);
    return rc;
}

/* conn.c's feed: an upgrade switches protocols in the middle of the bytes. */
static int feed(conn *c, const uint8_t *p, size_t n)
{
    int rc = c->proto->recv(c->ps, p, n);
    if (c->next_ps)
        rc = switch_to_h2(c);
    return rc;
}

/* What conn.c's on_flush does until nothing is left (or the round cap), with
 * the sink in place of the socket. 0, or -1 once send failed (conn.c closes). */
static int pump(conn *c, cel_outq *q, sink *k)
{
    for (int round = 0; round < 4096; round++) {
        k->left = k->per_round;
        c->flush_wanted = 0;
        if (c->proto->send(c->ps))
            return -1;
        /* an upgrade behind a pipelined request happens in send (conn.c's pump) */
        if (c->next_ps) {
            if (switch_to_h2(c) == 0)
                continue;
            c->proto->send(c->ps);
            return -1;
        }
        int rc = cel_outq_flush(q, sink_writev, k);
        FUZZ_CHECK(rc == 0 || rc == CEL_EAGAIN, "cel_outq_flush: %d", rc);
        if (cel_outq_pending(q) == 0 && !c->proto->want_write(c->ps) && !c->flush_wanted)
            return 0;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size < 2)
        return 0;
    uint8_t chunking = data[0], mode = data[1];
    size_t n = size - 2;
    uint8_t *in = (uint8_t *)fuzz_dup(data + 2, n, 0);

    cel_pool *saved = env.pool;
    env.pool = cel_pool_new(8u << 20);
    if (!env.pool)
        abort();
    cel_outq q;
    cel_outq_init(&q, env.pool);
    sink k = {.per_round = (size_t)(mode & 0x0f) * 512};
    cel_conn_view view = {mode & 0x40 ? "-" : "192.0.2.1", -1, NULL, 0, 0, 0, 0, {0}};
    conn c = {&cel_h1_proto, NULL, NULL, 0};
    c.ps = cel_h1_new(&env, &q, want_flush, &c, &view, on_upgrade, &c);
    FUZZ_CHECK(c.ps, "cel_h1_new failed");

    int dead = 0;
    size_t off = 0;
    for (size_t i = 0; off < n && !dead && c.proto->want_read(c.ps); i++) {
        size_t len = n - off;
        if (chunking) {
            size_t want = 1 + (chunking + in[(off + i) % n]) % chunking;
            if (want < len)
                len = want;
        }
        int rc = feed(&c, in + off, len);
        off += len;
        if (pump(&c, &q, &k) || rc)
            dead = 1;
    }
    if (!dead && (mode & 0x10)) {
        c.proto->goaway(c.ps);
        pump(&c, &q, &k);
    }
    if (!dead && (mode & 0x20)) {
        c.proto->expire(c.ps);
        pump(&c, &q, &k);
    }
    k.per_round = 0;
    int rc = cel_outq_flush(&q, sink_writev, &k);
    FUZZ_CHECK(rc == 0, "final flush: %d", rc);

    c.proto->free(c.ps);
    cel_outq_deinit(&q);
    FUZZ_CHECK(env.gen->users == 0, "%zu users of the generation left after the connection",
               env.gen->users);
    cel_pool_free(env.pool);
    env.pool = saved;
    check_access_log();

    if (trace)
        fprintf(stderr, "output: %zu bytes\n%.*s\n", k.len, (int)k.len, k.buf ? (char *)k.buf : "");
    if (!k.overflow)
        check_output(k.buf, k.len);
    free(k.buf);
    free(in);
    return 0;
}
