"""The timeout middleware (README: Middleware, timeout) against the real
daemon over HTTP/1.1 and h2c: a module that never answers gets a 504, one
whose streamed answer stalls is cut (RST_STREAM / the connection closed),
its on_close runs each time, answers in time are untouched, a route's
timeout replaces the global one, and config errors."""

import os
import socket
import time

import pytest

from support import build_module, expect_config_error

SCALE = float(os.environ.get("CELERIS_ATTACK_SCALE", "1"))

# ?never: takes the request and never answers; ?stall: starts a streamed
# answer, writes once and never ends it; else answers at once. Every request
# says in the log when on_close reaches it.
MOD_SRC = r"""
#include <stdlib.h>
#include <string.h>
#include <celeris/module.h>
static int init(const celeris_init_args *a, void **instance, char *err, size_t errlen)
{ (void)a; (void)err; (void)errlen; *instance = NULL; return CELERIS_OK; }
static void fini(void *instance) { (void)instance; }
static void closed(void *arg, int finished)
{
    celeris_log(CELERIS_LOG_WARN, "hang: on_close %s finished=%d", (const char *)arg, finished);
}
static void settled(celeris_req *req, void *arg) { (void)req; (void)arg; }
/* The request is gone: the token is settled, as the ABI asks. */
static void closed_token(void *arg, int finished)
{
    closed("never", finished);
    celeris_async_resume(arg, settled, NULL);
}
static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    celeris_str q = celeris_req_query(req);
    if (q.len == 5 && memcmp(q.ptr, "never", 5) == 0) {
        celeris_async *token = celeris_req_suspend(req);
        if (!token)
            return CELERIS_ERROR;
        celeris_req_on_close(req, closed_token, token);
        return CELERIS_SUSPENDED;
    }
    if (q.len == 5 && memcmp(q.ptr, "stall", 5) == 0) {
        if (celeris_req_on_close(req, closed, "stall") != CELERIS_OK)
            return CELERIS_ERROR;
        celeris_resp_header(req, "content-type", "text/plain");
        celeris_resp_start(req, 200);
        return celeris_resp_write(req, "partial", 7);
    }
    return celeris_resp_send(req, 200, "quick", 5);
}
/* clang-format off */
CELERIS_MODULE(hang) = {
    CELERIS_MODULE_HEADER,
    .name = "hang",
    .init = init,
    .fini = fini,
    .handle = handle,
};
/* clang-format on */
"""


@pytest.fixture(scope="module")
def srv(factory):
    d = factory.dir
    (d / "hang.c").write_text(MOD_SRC)
    build_module(d / "hang.c", d / "hang.so")
    return factory(f"""workers: 2
middleware:
  - timeout: 300ms
routes:
  - path: /hang
    module: {{ path: {d / "hang.so"} }}
  - path: /long
    middleware: [ {{ timeout: 1500ms }} ]
    module: {{ path: {d / "hang.so"} }}
  - path: /plain
    static: {{ body: "plain" }}
""")


@pytest.fixture(scope="module")
def logged(factory, srv):
    """One worker, the access log in a file: (server, log path)."""
    d = factory.dir
    log = d / "access.log"
    return factory(f"""workers: 1
log: {{ access: {{ path: {log}, format: "%H %s %D %U" }} }}
middleware:
  - timeout: 300ms
routes:
  - path: /hang
    module: {{ path: {d / "hang.so"} }}
"""), log


def closes(srv, what):
    return srv.stderr_text().count(f"hang: on_close {what}")


def wait_closes(srv, what, n):
    deadline = time.monotonic() + 10 * SCALE
    while closes(srv, what) < n:
        assert time.monotonic() < deadline, srv.stderr_text()[-3000:]
        time.sleep(0.02)


def h1(srv, path, timeout=10):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout * SCALE) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        data = b""
        start = time.monotonic()
        while b"\r\n\r\n" not in data or (b"504" in data.split(b"\r\n")[0] and
                                          not data.endswith(b"\n")):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        # after a stalled stream, the server closes: read to the end
        if b"200" in data.split(b"\r\n")[0]:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data, time.monotonic() - start


def test_never_answered_gets_504_h2(srv):
    n = closes(srv, "never")
    start = time.monotonic()
    with srv.client(timeout=10 * SCALE) as c:
        r = c.get("/hang?never")
    took = time.monotonic() - start
    assert r.status == 504
    assert took >= 0.29, took  # not before the timeout
    wait_closes(srv, "never", n + 1)


def test_never_answered_gets_504_h1(srv):
    n = closes(srv, "never")
    data, took = h1(srv, "/hang?never")
    assert data.startswith(b"HTTP/1.1 504"), data
    assert took >= 0.29, took
    wait_closes(srv, "never", n + 1)


def test_stalled_stream_is_reset_h2(srv):
    n = closes(srv, "stall")
    with srv.client(timeout=10 * SCALE) as c:
        r = c.get("/hang?stall")
        assert r.status == 200
        assert r.body == b"partial"
        assert r.reset is not None and not r.ended
        # the connection lives on
        assert c.get("/plain").body == b"plain"
    wait_closes(srv, "stall", n + 1)


def test_stalled_stream_closes_h1(srv):
    n = closes(srv, "stall")
    data, _ = h1(srv, "/hang?stall")
    assert data.startswith(b"HTTP/1.1 200")
    assert b"partial" in data and not data.endswith(b"0\r\n\r\n")  # no last chunk
    wait_closes(srv, "stall", n + 1)


def test_in_time_untouched(srv):
    with srv.client() as c:
        assert c.get("/hang").body == b"quick"
        assert c.get("/plain").body == b"plain"
    # a connection kept open past the timeout with answered requests: nothing cut
    with srv.client() as c:
        for _ in range(3):
            assert c.get("/hang").status == 200
        time.sleep(0.5)
        assert c.get("/plain").status == 200


def test_route_timeout_replaces_global(srv):
    start = time.monotonic()
    with srv.client(timeout=10 * SCALE) as c:
        r = c.get("/long?never")
    assert r.status == 504
    assert time.monotonic() - start >= 1.45


def test_many_at_once(srv):
    """Forty suspended requests on one connection: each gets its 504."""
    n = closes(srv, "never")
    with srv.client(timeout=20 * SCALE) as c:
        rs = c.many([("GET", "/hang?never")] * 40)
    assert [r.status for r in rs] == [504] * 40
    wait_closes(srv, "never", n + 40)


@pytest.mark.parametrize("yaml,line,col,words", [
    ("middleware:\n  - timeout: soon\n", 2, 14, ["timeout must be a duration"]),
    ("middleware:\n  - timeout: 0\n", 2, 14, ["between 1ms"]),
])
def test_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml + "routes:\n  - path: /a\n    static: {body: x}\n")
    expect_config_error(path, line, col, words)


@pytest.mark.parametrize("proto", ["h2", "h1"])
def test_504_logs_the_time_waited(logged, proto):
    """The 504 is answered from the timer: the worker's clock is read there,
    so the access log's duration (and the date) are the timer's, not those
    of the last connection event before it (the request's read: 0 µs)."""
    srv, log = logged
    if proto == "h2":
        with srv.client(timeout=10 * SCALE) as c:
            assert c.get("/hang?never").status == 504
    else:
        assert h1(srv, "/hang?never")[0].startswith(b"HTTP/1.1 504")
    deadline = time.monotonic() + 10 * SCALE
    want = "HTTP/2.0" if proto == "h2" else "HTTP/1.1"
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= 1 + (proto == "h1"):
            break
        assert time.monotonic() < deadline, lines
        time.sleep(0.1)
    protocol, status, us, path = lines[-1].split(" ")
    assert (protocol, status, path) == (want, "504", "/hang"), lines
    # the timer may fire up to 1 ms early (mw_timeout.c)
    assert int(us) >= 299000, lines
