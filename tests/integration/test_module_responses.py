"""Module responses over both protocols: streamed answers that fill the socket
on HTTP/1.1 (the on_writable callback must keep coming), HEAD on a streamed
route, and the reasons for refused calls in the log."""

import hashlib
import os
import pathlib
import socket
import subprocess
import time

import pytest

from support import BINARY, build_module, curl, parse_curl_headers

MODULES = pathlib.Path(BINARY).resolve().parent / "modules"
SCALE = float(os.environ.get("CELERIS_ATTACK_SCALE", "1"))

# Streams `size` bytes of a 256-byte pattern in `chunk`-byte writes, honouring
# CELERIS_AGAIN and on_writable; says in the log when a call is refused.
STREAMER_SRC = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <celeris/module.h>

typedef struct conf { size_t size, chunk; } conf;
typedef struct job { size_t off, size, chunk; } job;

static unsigned char pat[(1 << 16) + 256];

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    (void)err; (void)errlen;
    conf *c = calloc(1, sizeof(*c));
    if (!c)
        return CELERIS_ERROR;
    const char *p = strstr(args->config_json, "\"size\":");
    c->size = p ? strtoul(p + 7, NULL, 10) : 1024;
    p = strstr(args->config_json, "\"chunk\":");
    c->chunk = p ? strtoul(p + 8, NULL, 10) : 16384;
    if (c->chunk > (1 << 16))
        c->chunk = 1 << 16;
    for (size_t i = 0; i < sizeof(pat); i++)
        pat[i] = (unsigned char)i;
    *instance = c;
    return CELERIS_OK;
}

static void fini(void *instance) { free(instance); }

static void pump(celeris_req *req, void *arg)
{
    job *j = arg;
    while (j->off < j->size) {
        size_t n = j->size - j->off < j->chunk ? j->size - j->off : j->chunk;
        int rc = celeris_resp_write(req, pat + j->off % 256, n);
        if (rc != CELERIS_OK && rc != CELERIS_AGAIN) {
            celeris_log(CELERIS_LOG_WARN, "streamer: write returned %d", rc);
            return;
        }
        j->off += n;
        if (rc == CELERIS_AGAIN && j->off < j->size) {
            rc = celeris_resp_on_writable(req, pump, j);
            if (rc != CELERIS_OK)
                celeris_log(CELERIS_LOG_WARN, "streamer: on_writable returned %d", rc);
            return;
        }
    }
    int rc = celeris_resp_end(req);
    if (rc != CELERIS_OK)
        celeris_log(CELERIS_LOG_WARN, "streamer: end returned %d", rc);
}

static void closed(void *arg, int finished) { (void)finished; free(arg); }

static int handle(void *instance, celeris_req *req)
{
    conf *c = instance;
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return CELERIS_ERROR;
    j->size = c->size;
    j->chunk = c->chunk;
    char total[32];
    snprintf(total, sizeof(total), "%zu", c->size);
    celeris_resp_header(req, "content-type", "application/x-pattern");
    celeris_resp_header(req, "x-total", total);
    if (celeris_req_on_close(req, closed, j) != CELERIS_OK) {
        free(j);
        return CELERIS_ERROR;
    }
    int rc = celeris_resp_start(req, 200);
    if (rc != CELERIS_OK) {
        celeris_log(CELERIS_LOG_WARN, "streamer: start returned %d", rc);
        return CELERIS_ERROR;
    }
    pump(req, j);
    return CELERIS_OK;
}

CELERIS_MODULE(streamer) = {
    CELERIS_MODULE_HEADER,
    .name = "streamer",
    .init = init,
    .fini = fini,
    .handle = handle,
};
"""

MIB = 1024 * 1024
BIG = 20 * MIB


def pattern(size):
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


@pytest.fixture(scope="module")
def streamer_so(tmp_path_factory):
    d = tmp_path_factory.mktemp("streamer")
    src = d / "streamer.c"
    src.write_text(STREAMER_SRC)
    return build_module(src, d / "streamer.so")


@pytest.fixture
def srv(celerisd, streamer_so):
    return celerisd(f"""workers: 2
modules_dir: {MODULES}
limits: {{ max_request_body: 8m, idle_timeout: 60s }}
routes:
  - path: /echo
    methods: [POST, PUT]
    module: {{ name: echo, config: {{ chunk: 16384 }} }}
  - path: /big
    module: {{ path: {streamer_so}, config: {{ size: {BIG}, chunk: 65536 }} }}
  - path: /small
    module: {{ path: {streamer_so}, config: {{ size: 1000, chunk: 100 }} }}
""")


def curl_h1(args, timeout=30):
    return subprocess.run(["curl", "--http1.1", "-sS", "--max-time", str(timeout), *args],
                          capture_output=True, timeout=timeout + 5, stdin=subprocess.DEVNULL)


def test_h1_echo_4mib_uploads_all_complete(srv, tmp_path):
    """50 uploads of 4 MiB through echo over HTTP/1.1 from a fast client: each
    comes back whole (before: many stalled at ~3.9 MB once the socket filled)."""
    data = os.urandom(4 * MIB)
    f = tmp_path / "4MiB.bin"
    f.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    for i in range(50):
        p = curl_h1(["--data-binary", f"@{f}", srv.url("/echo")], timeout=int(30 * SCALE))
        assert p.returncode == 0, (i, p.returncode, len(p.stdout), p.stderr)
        assert len(p.stdout) == len(data) and hashlib.sha256(p.stdout).hexdigest() == want, i


def test_h1_stream_to_rate_limited_curl(srv):
    """20 MiB streamed to a client that reads at 8 MB/s: the socket fills again
    and again, on_writable must come every time (before: 4 MiB, then a stall)."""
    p = curl_h1(["--limit-rate", "8M", "-D", "-", srv.url("/big")], timeout=int(60 * SCALE))
    assert p.returncode == 0, (p.returncode, len(p.stdout), p.stderr)
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), head
    assert len(body) == BIG and body == pattern(BIG)


def read_h1_response(s, deadline, pause_every=0, pause=0.0):
    """Reads one chunked HTTP/1.1 response from S, pausing PAUSE seconds after
    every PAUSE_EVERY bytes; returns (head, body)."""
    buf = b""
    paused_at = 0
    while True:
        assert time.monotonic() < deadline, f"stalled after {len(buf)} bytes"
        if pause_every and len(buf) - paused_at >= pause_every:
            paused_at = len(buf)
            time.sleep(pause)
        chunk = s.recv(256 * 1024)
        assert chunk, f"connection closed after {len(buf)} bytes"
        buf += chunk
        if buf.endswith(b"\r\n0\r\n\r\n"):
            break
    head, _, rest = buf.partition(b"\r\n\r\n")
    body = bytearray()
    while True:
        line, _, rest = rest.partition(b"\r\n")
        n = int(line, 16)
        if n == 0:
            break
        body += rest[:n]
        assert rest[n:n + 2] == b"\r\n"
        rest = rest[n + 2:]
    return head, bytes(body)


def test_h1_stream_to_pausing_reader(srv):
    """A reader that stops reading now and then (before: stalled at ~6.7 MB),
    twice on one keep-alive connection."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10 * SCALE) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        for _ in range(2):
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = read_h1_response(s, time.monotonic() + 60 * SCALE,
                                          pause_every=4 * MIB, pause=0.3)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert len(body) == BIG and body == pattern(BIG)


def h1_exchange(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SCALE) as s:
        s.sendall(request)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return buf
            buf += chunk


def header_map(head):
    out = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        out[k.strip().lower().decode()] = v.strip().decode()
    return out


@pytest.mark.parametrize("path", ["/small", "/big"])
def test_head_on_streamed_route_h1(srv, path):
    """HEAD gets the GET's status and headers (chunked framing, no
    content-length) and no body; the module's writes are accepted."""
    get = h1_exchange(srv.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      .encode())
    head = h1_exchange(srv.port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       .encode())
    gh, _, _ = get.partition(b"\r\n\r\n")
    hh, _, hbody = head.partition(b"\r\n\r\n")
    assert hh.split(b"\r\n")[0] == gh.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    g, h = header_map(gh), header_map(hh)
    g.pop("date"), h.pop("date")
    assert h == g, (h, g)
    assert "content-length" not in h and h["transfer-encoding"] == "chunked"
    assert hbody == b""
    assert "streamer:" not in srv.stderr_text(), srv.stderr_text()


@pytest.mark.parametrize("path", ["/small", "/big"])
def test_head_on_streamed_route_h2(srv, path):
    with srv.client(timeout=30) as c:
        g = c.get(path)
        h = c.request("HEAD", path)
        assert g.status == h.status == 200
        assert len(g.body) == int(g.header("x-total"))
        assert h.body == b""
        for name in ("content-type", "x-total", "server"):
            assert h.header(name) == g.header(name), name
        assert h.header("content-length") is None and g.header("content-length") is None
        # the connection goes on
        assert c.get("/small").body == pattern(1000)
    p = curl(["-I", srv.url(path)])
    assert p.returncode == 0, p.stderr
    status, hdrs = parse_curl_headers(p.stdout)
    assert status == 200 and hdrs["x-total"] == [g.header("x-total")]
    assert "streamer:" not in srv.stderr_text(), srv.stderr_text()


# Tries what a module may get wrong and answers with the codes it got back.
# Built once with a name in its descriptor and once without.
REFUSALS_SRC = r"""
#include <stdio.h>
#include <string.h>
#include <celeris/module.h>

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    celeris_str path = celeris_req_path(req);
    if (path.len == 5 && memcmp(path.ptr, "/fail", 5) == 0)
        return CELERIS_ERROR;
    if (path.len == 7 && memcmp(path.ptr, "/silent", 7) == 0)
        return CELERIS_OK;
    int status = celeris_resp_send(req, 99, "x", 1);
    int name = celeris_resp_header(req, "bad name", "v");
    int value = celeris_resp_header(req, "x-ok", "a\r\nb");
    int reserved = celeris_resp_header(req, "Connection", "close");
    int write = celeris_resp_write(req, "x", 1);
    int ok = celeris_resp_header(req, "x-fine", "yes");
    char body[128];
    snprintf(body, sizeof(body), "%d %d %d %d %d %d", status, name, value, reserved, write, ok);
    int sent = celeris_resp_send(req, 200, body, strlen(body));
    int again = celeris_resp_header(req, "x-late", "1");
    return sent == CELERIS_OK && again == CELERIS_STATE ? CELERIS_OK : CELERIS_ERROR;
}

CELERIS_MODULE(refusals) = {
    CELERIS_MODULE_HEADER,
#ifdef NAME
    .name = NAME,
#endif
    .handle = handle,
};
"""


def test_refusals_logged_once_with_named_codes(celerisd, tmp_path):
    src = tmp_path / "refusals.c"
    src.write_text(REFUSALS_SRC)
    named = build_module(src, tmp_path / "named.so", '-DNAME="refusals"')
    anon = build_module(src, tmp_path / "anon.so")
    srv = celerisd(f"""routes:
  - path: /try
    module: {{ path: {named} }}
  - path: /fail
    module: {{ path: {named} }}
  - path: /silent
    module: {{ path: {anon} }}
""")
    with srv.client() as c:
        for _ in range(20):
            r = c.get("/try")
            assert r.status == 200
            # CELERIS_ERROR for each refused argument, CELERIS_STATE for a write
            # before start; a valid header still goes through
            assert r.body == b"-1 -1 -1 -1 -4 0", r.body
            assert r.header("x-fine") == "yes" and r.header("x-ok") is None
        assert c.get("/fail").status == 500
        assert c.get("/silent").status == 500
    log = srv.stderr_text()
    warns = [ln for ln in log.splitlines() if "[warn]" in ln]
    expected = {
        "status 99": "CELERIS_ERROR (-1)",
        'name "bad name"': "CELERIS_ERROR (-1)",
        'value of "x-ok"': "CELERIS_ERROR (-1)",
        '"connection": the server sets it': "CELERIS_ERROR (-1)",
        "celeris_resp_write before celeris_resp_start": "CELERIS_STATE (-4)",
        '"x-late"': "CELERIS_STATE (-4)",
    }
    for what, code in expected.items():
        lines = [ln for ln in warns if what in ln]
        assert len(lines) == 1, (what, log)  # once, not once per request
        assert 'module refusals on route "/try"' in lines[0] and code in lines[0], lines[0]
    assert len(warns) == len(expected), log
    # a failing handle() is named in the header's terms, not the daemon's
    fail = [ln for ln in log.splitlines() if 'route "/fail"' in ln]
    assert fail and "handle returned CELERIS_ERROR (-1)" in fail[0], log
    assert "(-6)" not in log and "module ?" not in log, log
    # no .name in the descriptor: the name given to CELERIS_MODULE, and the route
    assert 'module refusals on route "/silent": handle returned without answering' in log, log


# Fills the socket, then on its first on_writable call has nothing yet: it asks
# again without writing and arms a timer that writes the tail. The callback
# must wait for that write, not run in a loop that starves the timer.
WAITER_SRC = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <celeris/module.h>

typedef struct job { celeris_req *req; struct event *timer; int calls, tail; } job;

static char block[64 * 1024];

static void later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    job *j = arg;
    char tail[64];
    snprintf(tail, sizeof(tail), "tail after %d calls", j->calls);
    j->tail = 1;
    celeris_resp_write(j->req, tail, strlen(tail));
    celeris_resp_end(j->req);
}

static void writable(celeris_req *req, void *arg)
{
    job *j = arg;
    if (j->tail)
        return;
    if (++j->calls == 1) {
        struct timeval tv = {0, 50000};
        evtimer_add(j->timer, &tv);
    }
    celeris_resp_on_writable(req, writable, j);
}

static void closed(void *arg, int finished)
{
    (void)finished;
    job *j = arg;
    event_free(j->timer);
    free(j);
}

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return CELERIS_ERROR;
    j->req = req;
    j->timer = evtimer_new(celeris_req_event_base(req), later, j);
    if (!j->timer || celeris_req_on_close(req, closed, j) != CELERIS_OK)
        return CELERIS_ERROR;
    if (celeris_resp_start(req, 200) != CELERIS_OK)
        return CELERIS_ERROR;
    memset(block, 'x', sizeof(block));
    for (int i = 0; i < 64; i++)
        if (celeris_resp_write(req, block, sizeof(block)) == CELERIS_AGAIN) {
            celeris_resp_on_writable(req, writable, j);
            return CELERIS_OK;
        }
    return CELERIS_ERROR;
}

CELERIS_MODULE(waiter) = { CELERIS_MODULE_HEADER, .name = "waiter", .handle = handle };
"""


def test_h1_on_writable_without_a_write_waits_for_the_next_one(celerisd, tmp_path):
    src = tmp_path / "waiter.c"
    src.write_text(WAITER_SRC)
    libevent = subprocess.run(["pkg-config", "--cflags", "--libs", "libevent"],
                              capture_output=True, text=True, timeout=30)
    assert libevent.returncode == 0, libevent.stderr
    so = build_module(src, tmp_path / "waiter.so", *libevent.stdout.split())
    srv = celerisd(f"""workers: 1
routes:
  - path: /w
    module: {{ path: {so} }}
""")
    p = curl_h1([srv.url("/w")], timeout=int(20 * SCALE))
    assert p.returncode == 0, (p.returncode, len(p.stdout), p.stderr)
    head, _, tail = p.stdout.rpartition(b"x")
    assert set(head) == {ord("x")} and tail.startswith(b"tail after "), tail
    # once after the socket drained, then once per event at most: not a spin
    assert int(tail.split()[2]) < 100, tail
    with srv.client() as c:  # the worker still serves
        assert c.get("/w").status == 200


# A module's connection-specific fields (RFC 9113 8.2.2) are refused, the one
# list the config and both front ends share: proxy-connection too, which HTTP/2
# forbids and which an HTTP/1.1 head used to carry through.
CONN_SPECIFIC_SRC = r"""
#include <stdio.h>
#include <string.h>
#include <celeris/module.h>

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    int proxy = celeris_resp_header(req, "Proxy-Connection", "keep-alive");
    int keep = celeris_resp_header(req, "keep-alive", "timeout=5");
    int up = celeris_resp_header(req, "Upgrade", "h2c");
    int ok = celeris_resp_header(req, "x-after", "1");
    char body[64];
    snprintf(body, sizeof(body), "%d %d %d %d", proxy, keep, up, ok);
    return celeris_resp_send(req, 200, body, strlen(body));
}

CELERIS_MODULE(connspec) = {
    CELERIS_MODULE_HEADER,
    .name = "connspec",
    .handle = handle,
};
"""


def test_module_connection_specific_headers_refused(celerisd, tmp_path):
    src = tmp_path / "connspec.c"
    src.write_text(CONN_SPECIFIC_SRC)
    so = build_module(src, tmp_path / "connspec.so")
    srv = celerisd(f"""routes:
  - path: /c
    module: {{ path: {so} }}
""")
    raw = h1_exchange(srv.port, b"GET /c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw
    assert body == b"-1 -1 -1 0", raw
    fields = header_map(head)
    assert "proxy-connection" not in fields and "keep-alive" not in fields, raw
    assert "upgrade" not in fields and fields.get("x-after") == "1", raw
    with srv.client() as c:
        r = c.get("/c")
        assert r.status == 200 and r.body == b"-1 -1 -1 0", r.body
        assert r.header("proxy-connection") is None and r.header("x-after") == "1"
