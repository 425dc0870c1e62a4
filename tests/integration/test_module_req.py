"""What an application needs from the request it runs in (issue 16, items 3, 4,
6 and 7), against the real daemon over HTTP/1.1 and HTTP/2: a module built
here out of tree with `pkg-config --cflags celeris-module` only uses
celeris_req_alloc and celeris_req_on_cleanup (cleanups run once, after
on_close, newest first, however the request ends: answered, reset, connection
gone, worker stopping), celeris_resp_abort (a 500 before a start; after it a
RST_STREAM INTERNAL_ERROR on HTTP/2, a cut chunked body and a close on
HTTP/1.1), celeris_req_cookie and celeris_req_form, and module metrics
(counters, gauges, histograms in the metrics route under the module's name,
with the route as label, continued across a reload)."""

import re
import signal
import socket
import time
import uuid

import pytest

from support import build_module, curl

KIT_SRC = r"""
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <celeris/module.h>

typedef struct inst {
    celeris_metric *hits, *inflight, *sizes;
} inst;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char events[32768];
static size_t elen;

static void event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void event(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    pthread_mutex_lock(&mu);
    if (elen + (size_t)n > sizeof(events))
        elen = 0;
    memcpy(events + elen, line, (size_t)n);
    elen += (size_t)n;
    pthread_mutex_unlock(&mu);
    celeris_log(CELERIS_LOG_WARN, "kit event: %.*s", n - 1, line);
}

/* Tokens of held requests, by tag. */
#define MAX_HELD 64
static struct {
    char tag[64];
    celeris_async *tok;
} held[MAX_HELD];

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    static const double bounds[] = {10, 100, 1000};
    static const double bad_bounds[] = {100, 10};
    if (strstr(args->config_json, "\"refusals\"")) {
        celeris_metric *ok = celeris_metric_declare(args, CELERIS_METRIC_COUNTER, "ok_total", NULL,
                                                    NULL, 0);
        celeris_metric *a = celeris_metric_declare(args, CELERIS_METRIC_COUNTER, "9bad", NULL,
                                                   NULL, 0);
        celeris_metric *b = celeris_metric_declare(args, CELERIS_METRIC_COUNTER, "ok_total", NULL,
                                                   NULL, 0);
        celeris_metric *c = celeris_metric_declare(args, CELERIS_METRIC_HISTOGRAM, "h", NULL,
                                                   bad_bounds, 2);
        celeris_metric *d = celeris_metric_declare(args, 7, "t", NULL, NULL, 0);
        snprintf(err, errlen, "declared ok=%d bad_name=%d twice=%d bad_bounds=%d bad_type=%d",
                 ok != NULL, a != NULL, b != NULL, c != NULL, d != NULL);
        return CELERIS_ERROR;
    }
    inst *in = calloc(1, sizeof(*in));
    if (!in)
        return CELERIS_ERROR;
    in->hits = celeris_metric_declare(args, CELERIS_METRIC_COUNTER, "hits_total",
                                      "Requests the kit answered.", NULL, 0);
    in->inflight = celeris_metric_declare(args, CELERIS_METRIC_GAUGE, "held",
                                          "Requests the kit holds \\ now.", NULL, 0);
    in->sizes = celeris_metric_declare(args, CELERIS_METRIC_HISTOGRAM, "size",
                                       "Values observed.", bounds, 3);
    if (!in->hits || !in->inflight || !in->sizes) {
        snprintf(err, errlen, "celeris_metric_declare failed");
        free(in);
        return CELERIS_ERROR;
    }
    *instance = in;
    return CELERIS_OK;
}

static void fini(void *instance)
{
    free(instance);
}

static int is(celeris_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* The query argument "tag" copied into the request's memory. */
static const char *tag_of(celeris_req *req)
{
    celeris_str t;
    if (celeris_req_query_arg(req, "tag", &t) != CELERIS_OK)
        return "none";
    char *d = celeris_req_alloc(req, t.len + 1);
    if (!d)
        return "nomem";
    memcpy(d, t.ptr, t.len);
    d[t.len] = 0;
    return d;
}

static void on_close(void *arg, int finished)
{
    event("close %s %d", (const char *)arg, finished);
}

static void cleanup(void *arg)
{
    event("cleanup %s", (const char *)arg);
}

static void unhold(void *arg)
{
    celeris_metric_add(((inst *)arg)->inflight, -1);
}

static void watch(celeris_req *req, const char *tag)
{
    celeris_req_on_close(req, on_close, (void *)tag);
    celeris_req_on_cleanup(req, cleanup, (void *)tag);
}

static void released(celeris_req *req, void *arg)
{
    if (req) {
        event("resumed %s", (char *)arg);
        celeris_resp_send(req, 200, "released\n", 9);
    } else {
        event("resumed %s null", (char *)arg);
    }
    free(arg);
}

static void aborting(celeris_req *req, void *arg)
{
    char *tag = arg;
    if (!req) {
        event("abort_async %s gone", tag);
        free(tag);
        return;
    }
    static char chunk[3000];
    memset(chunk, 'b', sizeof(chunk));
    int s = celeris_resp_start(req, 200);
    int w = celeris_resp_write(req, chunk, sizeof(chunk));
    int rc = celeris_resp_abort(req);
    int rc2 = celeris_resp_write(req, chunk, 10);
    int rc3 = celeris_resp_abort(req);
    event("abort_async %s %d %d %d %d %d", tag, s, w, rc, rc2, rc3);
    free(tag);
}

typedef struct later {
    celeris_async *tok;
    const char *tag;
} later;

static void *resume_later(void *arg)
{
    later l = *(later *)arg;
    free(arg);
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    celeris_async_resume(l.tok, aborting, (void *)l.tag);
    return NULL;
}

static void *add_from_thread(void *arg)
{
    celeris_metric_add(((inst *)arg)->hits, 5);
    celeris_metric_observe(((inst *)arg)->sizes, 5000);
    return NULL;
}

static int json_rc(celeris_req *req, int rc, celeris_str v)
{
    celeris_resp_header(req, "content-type", "application/json");
    return celeris_resp_printf(req, 200, "{\"rc\":%d,\"v\":\"%.*s\",\"nul\":%d}", rc,
                               rc == CELERIS_OK ? (int)v.len : 0, rc == CELERIS_OK ? v.ptr : "",
                               rc == CELERIS_OK ? v.ptr[v.len] == 0 : -1);
}

static int handle(void *instance, celeris_req *req)
{
    inst *in = instance;
    celeris_metric_add(in->hits, 1);
    celeris_str what, name, v = {"", 0};
    celeris_req_param(req, "what", &what);
    const char *tag = tag_of(req);
    if (is(what, "alloc")) {
        void *a = celeris_req_alloc(req, 1), *b = celeris_req_alloc(req, 24);
        char *big = celeris_req_alloc(req, 200000);
        void *z = celeris_req_alloc(req, 0);
        int aligned = a && b && big && z && !((uintptr_t)a & 15) && !((uintptr_t)b & 15) &&
                      !((uintptr_t)big & 15) && !((uintptr_t)z & 15);
        if (big)
            memset(big, 'x', 200000);
        static const char *const parts[] = {"1", "2", "3"};
        for (int i = 0; i < 3; i++) {
            char *t = celeris_req_alloc(req, strlen(tag) + 3);
            snprintf(t, strlen(tag) + 3, "%s.%s", tag, parts[i]);
            celeris_req_on_cleanup(req, cleanup, t);
        }
        celeris_req_on_close(req, on_close, (void *)tag);
        return celeris_resp_printf(req, 200, "{\"aligned\":%d,\"distinct\":%d}", aligned,
                                   a != b && b != z && a != z);
    }
    if (is(what, "hold")) {
        watch(req, tag);
        celeris_metric_add(in->inflight, 1);
        celeris_req_on_cleanup(req, unhold, in);
        celeris_async *tok = celeris_req_suspend(req);
        pthread_mutex_lock(&mu);
        for (int i = 0; i < MAX_HELD; i++)
            if (!held[i].tok) {
                snprintf(held[i].tag, sizeof(held[i].tag), "%s", tag);
                held[i].tok = tok;
                break;
            }
        pthread_mutex_unlock(&mu);
        event("held %s", tag);
        return CELERIS_SUSPENDED;
    }
    if (is(what, "release")) {
        celeris_async *tok = NULL;
        pthread_mutex_lock(&mu);
        for (int i = 0; i < MAX_HELD; i++)
            if (held[i].tok && strcmp(held[i].tag, tag) == 0) {
                tok = held[i].tok;
                held[i].tok = NULL;
                break;
            }
        pthread_mutex_unlock(&mu);
        if (!tok)
            return celeris_resp_send(req, 404, "no such token\n", 14);
        celeris_async_resume(tok, released, strdup(tag));
        return celeris_resp_send(req, 200, "ok\n", 3);
    }
    if (is(what, "abort_before")) {
        watch(req, tag);
        celeris_resp_header(req, "x-kit", "1");
        int rc = celeris_resp_abort(req);
        int rc2 = celeris_resp_send(req, 200, "late", 4);
        int rc3 = celeris_resp_header(req, "x-late", "1");
        event("abort_before %s %d %d %d", tag, rc, rc2, rc3);
        return CELERIS_OK;
    }
    if (is(what, "abort_sync")) {
        watch(req, tag);
        static char chunk[1000];
        memset(chunk, 'a', sizeof(chunk));
        celeris_resp_start(req, 200);
        celeris_resp_write(req, chunk, sizeof(chunk));
        event("abort_sync %s %d", tag, celeris_resp_abort(req));
        return CELERIS_OK;
    }
    if (is(what, "abort_async")) {
        watch(req, tag);
        later *l = malloc(sizeof(*l));
        l->tok = celeris_req_suspend(req);
        l->tag = strdup(tag); /* the resumed function may get NULL: not from the request */
        pthread_t t;
        pthread_create(&t, NULL, resume_later, l);
        pthread_detach(t);
        return CELERIS_SUSPENDED;
    }
    if (is(what, "abort_after_end")) {
        watch(req, tag);
        celeris_resp_start(req, 200);
        celeris_resp_write(req, "whole\n", 6);
        celeris_resp_end(req);
        event("abort_after_end %s %d", tag, celeris_resp_abort(req));
        return CELERIS_OK;
    }
    if (is(what, "cookie")) {
        celeris_req_query_arg(req, "name", &name);
        return json_rc(req, celeris_req_cookie(req, name.ptr, &v), v);
    }
    if (is(what, "form")) {
        celeris_req_query_arg(req, "name", &name);
        return json_rc(req, celeris_req_form(req, name.ptr, &v), v);
    }
    if (is(what, "observe")) {
        celeris_str s;
        if (celeris_req_query_arg(req, "v", &s) == CELERIS_OK)
            celeris_metric_observe(in->sizes, strtod(s.ptr, NULL));
        return celeris_resp_send(req, 200, "observed\n", 9);
    }
    if (is(what, "thread")) {
        pthread_t t;
        pthread_create(&t, NULL, add_from_thread, in);
        pthread_join(t, NULL);
        return celeris_resp_send(req, 200, "added\n", 6);
    }
    if (is(what, "outs")) {
        /* Every lookup that fails leaves its out parameters as they were. */
        static const char sentinel[] = "kept";
        celeris_str o = {sentinel, 4}, o2 = {sentinel, 4};
        unsigned port = 7;
        int kept = 1, rc;
        rc = celeris_req_param(req, "nope", &o);
        kept &= rc == CELERIS_NOTFOUND && o.ptr == sentinel;
        rc = celeris_req_query_arg(req, "nope", &o);
        kept &= rc == CELERIS_NOTFOUND && o.ptr == sentinel;
        rc = celeris_req_header(req, "x-nope", &o);
        kept &= rc == CELERIS_NOTFOUND && o.ptr == sentinel;
        rc = celeris_req_header_at(req, 1000, &o, &o2);
        kept &= rc == CELERIS_NOTFOUND && o.ptr == sentinel && o2.ptr == sentinel;
        rc = celeris_req_addr(req, 99, &o, &port);
        kept &= rc == CELERIS_NOTFOUND && o.ptr == sentinel && port == 7;
        rc = celeris_req_cookie(req, "nope", &o);
        kept &= rc == CELERIS_NOTFOUND && o.ptr == sentinel;
        rc = celeris_req_form(req, "nope", &o);
        kept &= rc == CELERIS_NOTFOUND && o.ptr == sentinel;
        return celeris_resp_printf(req, 200, "kept %d\n", kept);
    }
    if (is(what, "events")) {
        pthread_mutex_lock(&mu);
        int rc = celeris_resp_send(req, 200, events, elen);
        pthread_mutex_unlock(&mu);
        return rc;
    }
    return celeris_resp_send(req, 404, "what?\n", 6);
}

CELERIS_MODULE(kit) = {
    CELERIS_MODULE_HEADER,
    .init = init,
    .fini = fini,
    .handle = handle,
};
"""

CONFIG = """listen: "127.0.0.1:{{port}}"
workers: 2
modules_dir: {mods}
routes:
  - path: /kit/:what
    methods: [GET, POST]
    module: {{ name: kit }}
  - path: /kit2/:what
    module: {{ name: kit }}
  - path: /metrics
    metrics: {{}}
"""


@pytest.fixture(scope="module")
def mods(tmp_path_factory):
    d = tmp_path_factory.mktemp("kit")
    src = d / "kit.c"
    src.write_text(KIT_SRC)
    (d / "mods").mkdir()
    build_module(src, d / "mods" / "kit.so", "-pthread")
    return d / "mods"


@pytest.fixture(scope="module")
def srv(module_celerisd, mods):
    return module_celerisd(CONFIG.format(mods=mods))


def tag():
    return uuid.uuid4().hex[:12]


def events(srv):
    r = curl([srv.url("/kit/events")])
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().splitlines()


def wait_events(srv, want, timeout=10):
    """Waits until every line of WANT is among the module's events; returns them."""
    deadline = time.monotonic() + timeout
    while True:
        ev = events(srv)
        if all(w in ev for w in want) or time.monotonic() > deadline:
            return ev
        time.sleep(0.05)


def of(ev, t):
    """The events about tag T, in order."""
    return [e for e in ev if re.search(rf"\b{t}\b", e)]


def h1(port, raw, timeout=10):
    """Sends RAW on a fresh connection, reads until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            data += b
    return data


def get1(port, path, extra=b""):
    return h1(port, b"GET " + path.encode() + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" +
              extra + b"\r\n")


# ---- per-request memory and cleanups ----

@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_alloc_and_cleanups_after_a_response(srv, proto):
    t = tag()
    if proto == "h1":
        data = get1(srv.port, f"/kit/alloc?tag={t}")
        assert data.startswith(b"HTTP/1.1 200"), data
        body = data.partition(b"\r\n\r\n")[2]
    else:
        with srv.client() as c:
            r = c.get(f"/kit/alloc?tag={t}")
        assert r.status == 200
        body = r.body
    assert body == b'{"aligned":1,"distinct":1}', body
    want = [f"close {t} 1", f"cleanup {t}.3", f"cleanup {t}.2", f"cleanup {t}.1"]
    assert of(wait_events(srv, want), t) == want


def test_cleanup_when_the_client_resets_the_stream(srv):
    t = tag()
    with srv.client() as c:
        sid = c.send_request("GET", f"/kit/hold?tag={t}")
        wait_events(srv, [f"held {t}"])
        c.reset_stream(sid)
        ev = wait_events(srv, [f"close {t} 0", f"cleanup {t}"])
    assert of(ev, t) == [f"held {t}", f"close {t} 0", f"cleanup {t}"]
    # The token is still out: resumed now, its function gets NULL.
    r = curl([srv.url(f"/kit/release?tag={t}")])
    assert r.stdout == b"ok\n"
    ev = wait_events(srv, [f"resumed {t} null"])
    assert of(ev, t)[-1] == f"resumed {t} null" and ev.count(f"cleanup {t}") == 1


def test_cleanup_when_the_http1_connection_goes(srv):
    t = tag()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(f"GET /kit/hold?tag={t} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    wait_events(srv, [f"held {t}"])
    s.close()
    ev = wait_events(srv, [f"cleanup {t}"])
    assert of(ev, t) == [f"held {t}", f"close {t} 0", f"cleanup {t}"]
    curl([srv.url(f"/kit/release?tag={t}")])
    assert f"resumed {t} null" in wait_events(srv, [f"resumed {t} null"])


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_cleanup_after_a_resumed_answer(srv, proto):
    t = tag()
    if proto == "h2":
        with srv.client() as c:
            sid = c.send_request("GET", f"/kit/hold?tag={t}")
            wait_events(srv, [f"held {t}"])
            assert curl([srv.url(f"/kit/release?tag={t}")]).stdout == b"ok\n"
            r = c.response(sid)
        assert r.status == 200 and r.body == b"released\n"
    else:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(f"GET /kit/hold?tag={t} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
                  .encode())
        wait_events(srv, [f"held {t}"])
        assert curl([srv.url(f"/kit/release?tag={t}")]).stdout == b"ok\n"
        data = b""
        while (b := s.recv(65536)):
            data += b
        s.close()
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"released\n"), data
    ev = wait_events(srv, [f"cleanup {t}"])
    assert of(ev, t) == [f"held {t}", f"resumed {t}", f"close {t} 1", f"cleanup {t}"]


def test_cleanup_when_the_worker_stops(celerisd, mods):
    """A request held past shutdown_timeout: the stop closes its connection,
    on_close and the cleanup run, and the process exits 0."""
    s = celerisd(CONFIG.format(mods=mods).replace("workers: 2",
                                                  "workers: 1\nshutdown_timeout: 300ms"))
    t = tag()
    with s.client() as c:
        c.send_request("GET", f"/kit/hold?tag={t}")
        deadline = time.monotonic() + 10
        while f"kit event: held {t}" not in s.stderr_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rc, _ = s.stop()
        assert rc == 0
    log = s.stderr_text()
    lines = [ln.split("kit event: ", 1)[1] for ln in log.splitlines()
             if "kit event: " in ln and t in ln]
    assert lines == [f"held {t}", f"close {t} 0", f"cleanup {t}"], log[-3000:]


# ---- abort ----

@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_abort_before_a_start_answers_500(srv, proto):
    t = tag()
    if proto == "h1":
        # kept alive by the request: the 500 closes the connection all the same
        data = h1(srv.port, f"GET /kit/abort_before?tag={t} HTTP/1.1\r\nhost: x\r\n\r\n"
                  .encode())
        head = data.partition(b"\r\n\r\n")[0].lower()
        assert data.startswith(b"HTTP/1.1 500"), data
        assert b"x-kit" not in head and b"connection: close" in head, data
    else:
        with srv.client() as c:
            r = c.get(f"/kit/abort_before?tag={t}")
            assert r.status == 500 and r.header("x-kit") is None, r
            assert c.get("/kit/alloc").status == 200  # the connection goes on
    # abort OK, then a send and a header: CELERIS_STATE (-4)
    ev = wait_events(srv, [f"cleanup {t}"])
    assert of(ev, t) == [f"abort_before {t} 0 -4 -4", f"close {t} 1", f"cleanup {t}"]


def test_abort_after_a_start_http2_resets_the_stream(srv):
    for what in ("abort_sync", "abort_async"):
        t = tag()
        with srv.client() as c:
            sid = c.send_request("GET", f"/kit/{what}?tag={t}")
            c.wait_for(lambda: c.responses[sid].done, what="the reset")
            r = c.responses[sid]
            # INTERNAL_ERROR; the head and data written in the same turn of the
            # loop may be dropped with the stream: never an ended response
            assert r.reset == 2 and not r.ended and r.status in (None, 200), (what, r)
            assert c.get("/kit/alloc").status == 200  # other streams go on
        ev = wait_events(srv, [f"cleanup {t}"])
        mine = of(ev, t)
        assert mine[-2:] == [f"close {t} 0", f"cleanup {t}"], (what, mine)
        if what == "abort_async":
            # start, write OK; abort OK; then a write and a second abort: CELERIS_STATE
            assert mine[0] == f"abort_async {t} 0 0 0 -4 -4", mine


def test_abort_after_a_start_http1_cuts_the_body(srv):
    for what, fill in (("abort_sync", b"a" * 1000), ("abort_async", b"b" * 3000)):
        t = tag()
        data = h1(srv.port, f"GET /kit/{what}?tag={t} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), data
        assert b"transfer-encoding: chunked" in head.lower(), head
        # the bytes written before the abort, then the close: never the last chunk
        assert not body.endswith(b"0\r\n\r\n"), body[-64:]
        payload = b"".join(re.findall(rb"[0-9a-f]+\r\n([ab]+)\r\n", body))
        assert payload == fill, body[:64]
        ev = wait_events(srv, [f"cleanup {t}"])
        assert of(ev, t)[-2:] == [f"close {t} 0", f"cleanup {t}"], of(ev, t)


def test_abort_after_the_end_is_refused(srv):
    t = tag()
    data = get1(srv.port, f"/kit/abort_after_end?tag={t}")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"6\r\nwhole\n\r\n0\r\n\r\n"), data
    ev = wait_events(srv, [f"cleanup {t}"])
    assert of(ev, t) == [f"abort_after_end {t} -4", f"close {t} 1", f"cleanup {t}"]


# ---- cookies and forms ----

def kit_json(srv, proto, path, headers=(), body=None):
    import json
    if proto == "h2":
        with srv.client() as c:
            r = c.request("POST" if body is not None else "GET", path, headers=list(headers),
                          body=body or b"")
        assert r.status == 200, r
        return json.loads(r.body)
    extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers)
    if body is not None:
        raw = (f"POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
               f"content-length: {len(body)}\r\n").encode() + extra + b"\r\n" + body
    else:
        raw = f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".encode() + extra + b"\r\n"
    data = h1(srv.port, raw)
    assert data.startswith(b"HTTP/1.1 200"), data
    return json.loads(data.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_cookies(srv, proto):
    hdrs = [("cookie", 'sid=abc123; theme="dark"; b = sp ;e='),
            ("cookie", "late=2; sid=second")]
    def ck(name):
        return kit_json(srv, proto, f"/kit/cookie?name={name}", hdrs)
    assert ck("sid") == {"rc": 0, "v": "abc123", "nul": 1}
    assert ck("theme") == {"rc": 0, "v": "dark", "nul": 1}
    assert ck("b") == {"rc": 0, "v": "sp", "nul": 1}
    assert ck("e") == {"rc": 0, "v": "", "nul": 1}
    assert ck("late") == {"rc": 0, "v": "2", "nul": 1}   # a second cookie field
    assert ck("SID")["rc"] == -2 and ck("nope")["rc"] == -2
    assert kit_json(srv, proto, "/kit/cookie?name=sid")["rc"] == -2  # no cookie at all


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_form_fields(srv, proto):
    body = b"name=J%C3%BCrgen+X&a%20b=c%26d&flag&x=1&x=2&pct=100%25"
    ct = [("content-type", "Application/X-WWW-Form-Urlencoded; charset=UTF-8")]
    def f(name, hdrs=ct, b=body):
        return kit_json(srv, proto, f"/kit/form?name={name}", hdrs, b)
    assert f("name") == {"rc": 0, "v": "Jürgen X", "nul": 1}
    assert f("a+b") == {"rc": 0, "v": "c&d", "nul": 1}      # the name compared decoded
    assert f("flag") == {"rc": 0, "v": "", "nul": 1}
    assert f("x") == {"rc": 0, "v": "1", "nul": 1}
    assert f("pct") == {"rc": 0, "v": "100%", "nul": 1}
    assert f("missing")["rc"] == -2
    assert f("name", hdrs=[("content-type", "application/json")])["rc"] == -2
    assert f("name", hdrs=[])["rc"] == -2


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_failed_lookups_leave_out_parameters_alone(srv, proto):
    hdrs = [("cookie", "a=1"), ("content-type", "application/x-www-form-urlencoded")]
    if proto == "h2":
        with srv.client() as c:
            r = c.request("POST", "/kit/outs?x=1", headers=hdrs, body=b"b=2")
        assert r.status == 200 and r.body == b"kept 1\n", r
    else:
        extra = "".join(f"{k}: {v}\r\n" for k, v in hdrs)
        data = h1(srv.port, (f"POST /kit/outs?x=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                             f"content-length: 3\r\n{extra}\r\nb=2").encode())
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"kept 1\n"), data


# ---- metrics ----

def scrape(srv):
    r = curl([srv.url("/metrics")])
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def value(text, series):
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_metrics_in_the_metrics_route(srv):
    before = scrape(srv)
    h0 = value(before, 'kit_hits_total{route="/kit/:what"}') or 0
    k0 = value(before, 'kit_hits_total{route="/kit2/:what"}') or 0
    for v in (5, 50, 50, 5000):
        assert curl([srv.url(f"/kit/observe?v={v}")]).returncode == 0
    with srv.client() as c:
        for _ in range(3):
            assert c.get("/kit2/observe?v=7").status == 200
    assert curl([srv.url("/kit/thread")]).returncode == 0  # +5 from a module thread
    text = scrape(srv)
    assert value(text, 'kit_hits_total{route="/kit/:what"}') == h0 + 5 + 5
    assert value(text, 'kit_hits_total{route="/kit2/:what"}') == k0 + 3
    # one family header for both routes, the help escaped, the type declared
    assert text.count("# TYPE kit_hits_total counter\n") == 1, text
    assert "# HELP kit_held Requests the kit holds \\\\ now.\n# TYPE kit_held gauge\n" in text
    assert "# TYPE kit_size histogram\n" in text
    b = {le: value(text, f'kit_size_bucket{{route="/kit2/:what",le="{le}"}}')
         for le in ("10", "100", "1000", "+Inf")}
    assert b == {"10": 3, "100": 3, "1000": 3, "+Inf": 3}, b
    assert value(text, 'kit_size_sum{route="/kit2/:what"}') == 21
    assert value(text, 'kit_size_count{route="/kit2/:what"}') == 3
    # /kit: 5, 50, 50, 5000 and 5000 from the thread (cumulative buckets)
    c = {le: value(text, f'kit_size_bucket{{route="/kit/:what",le="{le}"}}')
         for le in ("10", "100", "1000", "+Inf")}
    c0 = {le: value(before, f'kit_size_bucket{{route="/kit/:what",le="{le}"}}') or 0
          for le in ("10", "100", "1000", "+Inf")}
    assert {k: c[k] - c0[k] for k in c} == {"10": 1, "100": 3, "1000": 3, "+Inf": 5}, (c, c0)
    # the families' samples come in one group each
    fams = [re.sub(r"^(kit_size)_(bucket|sum|count)$", r"\1", ln.split("{")[0])
            for ln in text.splitlines() if ln.startswith("kit_")]
    order = [f for i, f in enumerate(fams) if i == 0 or fams[i - 1] != f]
    assert len(order) == len(set(order)), order


def test_gauge_follows_held_requests(srv):
    g = 'kit_held{route="/kit/:what"}'
    g0 = value(scrape(srv), g)
    t1, t2 = tag(), tag()
    with srv.client() as c:
        s1 = c.send_request("GET", f"/kit/hold?tag={t1}")
        c.send_request("GET", f"/kit/hold?tag={t2}")
        wait_events(srv, [f"held {t1}", f"held {t2}"])
        assert value(scrape(srv), g) == g0 + 2
        c.reset_stream(s1)
        wait_events(srv, [f"cleanup {t1}"])
        assert value(scrape(srv), g) == g0 + 1
        curl([srv.url(f"/kit/release?tag={t2}")])
        wait_events(srv, [f"cleanup {t2}"])
    assert value(scrape(srv), g) == g0
    curl([srv.url(f"/kit/release?tag={t1}")])


def test_metrics_continue_across_a_reload(celerisd, mods):
    s = celerisd(CONFIG.format(mods=mods))
    for _ in range(4):
        assert curl([s.url("/kit/observe?v=1")]).returncode == 0
    series = 'kit_hits_total{route="/kit/:what"}'
    assert value(scrape(s), series) == 4
    s.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "generation 2 is serving" not in s.stderr_text():
        assert time.monotonic() < deadline, s.stderr_text()[-2000:]
        time.sleep(0.05)
    assert curl([s.url("/kit/observe?v=1")]).returncode == 0
    text = scrape(s)
    assert value(text, series) == 5, text
    assert text.count(series + " ") == 1
    # a route the new configuration drops leaves the output with its last instance
    text = s.config_path.read_text()
    kit2 = "  - path: /kit2/:what\n    module: { name: kit }\n"
    assert kit2 in text
    s.config_path.write_text(text.replace(kit2, ""))
    s.send_signal(signal.SIGHUP)
    while "generation 3 is serving" not in s.stderr_text():
        assert time.monotonic() < deadline, s.stderr_text()[-2000:]
        time.sleep(0.05)
    deadline = time.monotonic() + 20
    while "/kit2/" in scrape(s):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert value(scrape(s), series) == 5


def test_metric_declarations_refused(celerisd, mods, tmp_path):
    """A bad name, a name declared twice, bounds out of order and an unknown
    type get NULL (init then fails and the configuration is refused)."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"""listen: "127.0.0.1:1"
modules_dir: {mods}
routes:
  - path: /bad
    module: {{ name: kit, config: {{ refusals: true }} }}
""")
    from support import run_celerisd
    p = run_celerisd(["-t", "-c", str(cfg)])
    out = p.stdout + p.stderr
    out = out.decode() if isinstance(out, bytes) else out
    assert p.returncode != 0
    assert "declared ok=1 bad_name=0 twice=0 bad_bounds=0 bad_type=0" in out, out
    assert 'celeris_metric_declare("9bad") refused: the name is not' in out, out
    assert 'celeris_metric_declare("ok_total") refused: declared twice' in out, out


def test_every_function_the_header_declares_is_exported():
    """What the load check resolves a module's celeris_* imports against:
    each function of celeris/module.h must be in the daemon's dynamic symbols
    (a function in a file nothing in the daemon calls would otherwise be left
    out of the link, and every module using it refused)."""
    import pathlib
    import subprocess
    from support import BINARY, REPO
    header = (REPO / "server" / "include" / "celeris" / "module.h").read_text()
    declared = set(re.findall(r"^[a-z_ *]*?\b(celeris_[a-z_]+)\(", header, re.M))
    declared.discard("celeris_module_complete_")  # CELERIS_MODULE's, in the module
    assert {"celeris_req_alloc", "celeris_req_on_cleanup", "celeris_resp_abort",
            "celeris_req_cookie", "celeris_req_form", "celeris_metric_declare",
            "celeris_metric_add", "celeris_metric_observe", "celeris_req_body"} <= declared
    p = subprocess.run(["nm", "-D", "--defined-only", str(pathlib.Path(BINARY))],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    exported = {ln.split()[-1] for ln in p.stdout.splitlines()}
    assert declared - exported == set()
