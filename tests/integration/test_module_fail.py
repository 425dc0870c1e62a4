"""A module that fails a request at each point of its answer, against the real
daemon over h2c and HTTP/1.1 (README: Modules, celeris_resp_abort). Before
the answer began the client gets a 500 with the `errors:` body; once it began,
HTTP/2 sends the status and headers and then resets the stream with
INTERNAL_ERROR (also when the head was only queued, in the same turn as the
start), and HTTP/1.1 sends what was written and closes the connection without
the last chunk; an answer that was already whole (sent, or streamed and
ended) stands on both."""

import os
import socket
import time

import pytest

from support import build_module

SCALE = float(os.environ.get("CELERIS_ATTACK_SCALE", "1"))
INTERNAL_ERROR = 2
PART = b"partial body;"

MOD_SRC = r"""
#include <string.h>
#include <celeris/module.h>

/* /M/...: how the request fails, M one of
 * start    celeris_resp_start, then abort in handle (headers only queued)
 * write    start, a body write, then abort in handle
 * later    start, a body write, then abort from a timer (both on the wire)
 * ended    start, write, end, then handle returns an error
 * sent     celeris_resp_send_ref in handle, then handle returns an error
 * wait     a timer, then abort before anything was answered */
static const char part[] = "partial body;";

static int is(celeris_str p, const char *m)
{
    size_t n = strlen(m);
    return p.len > n + 1 && p.ptr[0] == '/' && !memcmp(p.ptr + 1, m, n) && p.ptr[n + 1] == '/';
}

static void abort_it(celeris_req *req, void *arg)
{
    (void)arg;
    celeris_resp_abort(req);
}

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    celeris_str p = celeris_req_path(req);
    celeris_resp_header(req, "x-failer", "yes");
    if (is(p, "wait"))
        return celeris_timer_start(req, 20, 0, abort_it, NULL, NULL);
    if (is(p, "sent")) {
        if (celeris_resp_send_ref(req, 200, part, sizeof(part) - 1, NULL, NULL) != CELERIS_OK)
            return CELERIS_OK;
        return CELERIS_ERROR;
    }
    if (celeris_resp_start(req, 200) != CELERIS_OK)
        return CELERIS_ERROR;
    if (is(p, "start"))
        return celeris_resp_abort(req) == CELERIS_OK ? CELERIS_OK : CELERIS_ERROR;
    celeris_resp_write(req, part, sizeof(part) - 1);
    if (is(p, "write"))
        return celeris_resp_abort(req) == CELERIS_OK ? CELERIS_OK : CELERIS_ERROR;
    if (is(p, "later"))
        return celeris_timer_start(req, 50, 0, abort_it, NULL, NULL);
    celeris_resp_end(req);
    return CELERIS_ERROR;
}

CELERIS_MODULE(failer) = {
    CELERIS_MODULE_HEADER,
    .name = "failer",
    .handle = handle,
};
"""


@pytest.fixture(scope="module")
def failer(tmp_path_factory):
    d = tmp_path_factory.mktemp("failer")
    (d / "failer.c").write_text(MOD_SRC)
    return build_module(d / "failer.c", d / "failer.so")


def failer_config(so, limits=""):
    return f"""workers: 1
{limits}errors: {{ 500: {{ body: "custom 500" }} }}
routes:
  - path: /*rest
    module: {{ path: {so} }}
"""


@pytest.fixture(scope="module")
def srv(factory, failer):
    return factory(failer_config(failer))


def test_h2_fail_after_start_sends_head_then_resets(srv):
    """celeris_resp_start then abort in the same handle call: the head was only
    queued (before: nghttp2 dropped it, the client saw a bare RST_STREAM)."""
    with srv.client(timeout=10 * SCALE) as c:
        for mode in ("start", "write"):
            r = c.get(f"/{mode}/x")
            assert r.status == 200 and r.header("x-failer") == "yes", (mode, r)
            assert r.reset == INTERNAL_ERROR and not r.ended, (mode, r)
            assert PART.startswith(r.body), (mode, r)
        r = c.get("/later/x")  # the head and the write went out before the abort
        assert r.status == 200 and r.body == PART, r
        assert r.reset == INTERNAL_ERROR and not r.ended, r
        # the connection's other streams go on
        r = c.get("/sent/x")
        assert r.status == 200 and r.body == PART and r.ended


def test_h2_error_after_whole_answer_keeps_it(srv):
    """handle returns CELERIS_ERROR after its answer was whole: the answer
    stands, as over HTTP/1.1 (before: the stream was reset, head and body
    dropped)."""
    with srv.client(timeout=10 * SCALE) as c:
        for mode in ("ended", "sent"):
            r = c.get(f"/{mode}/x")
            assert r.status == 200 and r.reset is None and r.ended, (mode, r)
            assert r.body == PART and r.header("x-failer") == "yes", (mode, r)
    assert "handle returned CELERIS_ERROR" in srv.stderr_text()


RESET_BURST = 50
ENHANCE_YOUR_CALM = 11


def test_h2_failing_handler_spends_no_reset_budget(factory, failer):
    """The RST_STREAM INTERNAL_ERROR that follows a handler's failure is the
    server's own reset: three times reset_burst of them leave the connection
    up (before: GOAWAY ENHANCE_YOUR_CALM once the budget was spent, as if the
    client had reset the streams). The client's own resets still spend it."""
    srv = factory(failer_config(
        failer, f"limits: {{ reset_burst: {RESET_BURST}, reset_rate: 1 }}\n"))
    with srv.client(timeout=20 * SCALE) as c:
        for batch in range(3):
            rs = c.many([f"/{('start', 'write')[i % 2]}/{batch}.{i}" for i in range(RESET_BURST)])
            assert all(r.status == 200 and r.reset == INTERNAL_ERROR for r in rs), rs
            assert c.goaway is None, (batch, c.goaway)
        r = c.get("/sent/x")
        assert r.status == 200 and r.body == PART and r.ended, r
        assert c.goaway is None, c.goaway
        # The budget is in force: the client's own cancels spend it.
        for _ in range(2 * RESET_BURST):
            if c.goaway is not None or c.eof:
                break
            c.reset_stream(c.send_request("GET", "/wait/x"))
        c.wait_for(lambda: c.goaway is not None, what="GOAWAY")
        assert c.goaway.error_code == ENHANCE_YOUR_CALM, c.goaway


def test_h2_fail_before_start_is_500(srv):
    with srv.client(timeout=10 * SCALE) as c:
        r = c.get("/wait/x")
        assert r.status == 500 and r.body == b"custom 500" and r.ended, r
        assert r.header("x-failer") is None


def h1(port, path, then=None):
    """One HTTP/1.1 request (and THEN on the same connection, if given): what
    came back, and whether the server closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SCALE) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        if then:
            s.sendall(f"GET {then} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        buf = b""
        deadline = time.monotonic() + 10 * SCALE
        s.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                if buf.count(b"HTTP/1.1 ") >= (2 if then else 1) and (
                        buf.endswith(b"0\r\n\r\n") or buf.endswith(PART)
                        or buf.endswith(b"custom 500")):
                    return buf, False
                continue
            if not chunk:
                return buf, True
            buf += chunk
        raise AssertionError(f"no end in sight: {buf!r}")


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize("mode,body", [("start", b""), ("write", b"d\r\npartial body;\r\n"),
                                       ("later", b"d\r\npartial body;\r\n")])
def test_h1_fail_after_start_cuts_the_connection(srv, mode, body):
    data, closed = h1(srv.port, f"/{mode}/x")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(CHUNKED_HEAD) and b"transfer-encoding: chunked" in head, data
    assert b"x-failer: yes" in head
    assert rest == body and closed, (data, closed)


def test_h1_error_after_whole_answer_keeps_it(srv):
    data, closed = h1(srv.port, "/ended/x", then="/sent/x")
    first, second = data.split(b"HTTP/1.1 200 OK")[1:]
    assert first.endswith(b"\r\n\r\nd\r\npartial body;\r\n0\r\n\r\n"), data
    assert b"content-length: 13" in second and second.endswith(b"\r\n\r\n" + PART), data
    assert not closed


def test_h1_fail_before_start_is_500(srv):
    data, closed = h1(srv.port, "/wait/x")
    assert data.startswith(b"HTTP/1.1 500 ") and data.endswith(b"\r\n\r\ncustom 500"), data
    assert b"x-failer" not in data and closed
