"""HTTP/1.1 on the same port as h2c: every route kind, keep-alive, pipelining,
chunked bodies both ways, Expect: 100-continue, the h2c upgrade, the error
statuses of bad input, slow heads, and wrk under load."""

import json
import os
import pathlib
import re
import socket
import subprocess
import time

import pytest

from support import BINARY, TIME_SCALE, load_n, strace_calls

MODULES = pathlib.Path(BINARY).resolve().parent / "modules"

CONFIG = f"""workers: 2
modules_dir: {MODULES}
limits: {{ max_request_body: 64k, max_request_line: 1k, max_header_line: 2k, max_headers: 20,
          header_timeout: 1s, idle_timeout: 2s }}
routes:
  - path: /bench
    static: {{ body: "OK", content_type: text/plain }}
  - path: /big
    static: {{ body: "{'x' * 5000}" }}
  - path: /users/:id/posts/:postId
    json: {{ template: {{ user: "{{{{param.id}}}}", post: "{{{{param.postId}}}}", ua: "{{{{header.user-agent}}}}" }} }}
  - path: /greet/:name
    module: {{ name: hello }}
  - path: /echo
    methods: [POST, PUT]
    module: {{ name: echo, config: {{ chunk: 1000 }} }}
  - path: /slow
    module: {{ name: delay, config: {{ ms: 100, mode: loop }} }}
"""


@pytest.fixture(scope="module")
def srv(module_celerisd):
    return module_celerisd(CONFIG)


class Conn:
    """A raw HTTP/1.1 client: send bytes, read whole responses."""

    def __init__(self, port, timeout=5):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def response(self, head_request=False):
        """(status, {headers}, body) of the next response on the connection
        (HEAD: the framing headers announce a body that does not follow)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if head_request or status < 200 or status in (204, 304):
            return status, hdrs, b""
        if hdrs.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line, 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    return status, hdrs, body
        n = int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def closed(self, timeout=5):
        self.s.settimeout(timeout)
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


def get(path, extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def test_route_kinds(srv):
    c = Conn(srv.port)
    c.send(get("/bench"))
    st, h, body = c.response()
    assert (st, body) == (200, b"OK")
    assert h["content-type"] == "text/plain" and h["content-length"] == "2"
    assert h["server"].startswith("celerisd") and h["date"].endswith("GMT")
    c.send(get("/users/caf%C3%A9/posts/2", "User-Agent: a\"b\r\n"))
    st, h, body = c.response()
    assert st == 200 and json.loads(body) == {"user": "café", "post": "2", "ua": 'a"b'}
    c.send(get("/greet/h1"))
    assert c.response()[2] == b"Hello, h1!\n"
    c.send(get("/nope"))
    assert c.response()[0] == 404
    c.send(b"DELETE /bench HTTP/1.1\r\nHost: t\r\n\r\n")
    st, h, _ = c.response()
    assert st == 405 and h["allow"] == "GET, HEAD"
    c.send(b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n")
    st, h, body = c.response(head_request=True)
    assert st == 200 and h["content-length"] == "5000" and body == b""
    c.send(get("/big"))
    assert c.response()[2] == b"x" * 5000  # the HEAD sent no body: framing intact
    c.close()


def test_keep_alive_and_close(srv):
    c = Conn(srv.port)
    for _ in range(5):
        c.send(get("/bench"))
        st, h, _ = c.response()
        assert st == 200 and "connection" not in h
    c.send(get("/bench", "Connection: close\r\n"))
    st, h, _ = c.response()
    assert h["connection"] == "close"
    assert c.closed()


def test_http10(srv):
    c = Conn(srv.port)
    c.send(b"GET /bench HTTP/1.0\r\n\r\n")
    st, h, body = c.response()
    assert st == 200 and body == b"OK" and h.get("connection") == "close"
    assert c.closed()
    c = Conn(srv.port)
    c.send(b"GET /bench HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    st, h, _ = c.response()
    assert h.get("connection") == "keep-alive"
    c.send(b"GET /greet/ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert c.response()[2] == b"Hello, ten!\n"
    c.close()


def test_pipelining_100_in_order(srv):
    c = Conn(srv.port, timeout=10)
    # mixed sync and async handlers: answers must come in request order
    reqs = []
    for i in range(100):
        path = f"/greet/n{i}" if i % 7 else "/slow"
        reqs.append(path)
    c.send(b"".join(get(p) for p in reqs))
    for p in reqs:
        st, _, body = c.response()
        assert st == 200
        if p == "/slow":
            assert body == b"delayed 100 ms on loop\n"
        else:
            assert body == f"Hello, {p.split('/')[-1]}!\n".encode()
    c.close()


# Answers of the plain path (returned by the handler: static, JSON templates,
# errors) and through the exchange's respond (the hello module), and their
# bodies: what one pipelined batch holds, in request order.
BATCH = [
    ("/bench", b"OK"),
    ("/users/7/posts/8", {"user": "7", "post": "8", "ua": ""}),
    ("/big", b"x" * 5000),
    ("/greet/batch", b"Hello, batch!\n"),
    ("/nope", None),
]


def batch_answer_ok(want, answer):
    """Is ANSWER (status, headers, body) the one BATCH says: WANT a body, a
    JSON value, or None for a 404?"""
    st, _, body = answer
    if want is None:
        return st == 404
    return st == 200 and (json.loads(body) == want if isinstance(want, dict) else body == want)


def test_pipelined_answers_leave_together(srv):
    """The answers to requests that came in one read leave in one writev, not
    one each (returned by the handler they were written one by one): 60
    pipelined requests, sent at once, cost a few writev in all, and the
    answers come whole and in request order."""
    reqs = [BATCH[i % len(BATCH)] for i in range(60)]

    def batch():
        # connected once strace is on: idle_timeout (2 s) is shorter than its start
        c = Conn(srv.port, timeout=10 * TIME_SCALE)
        c.send(b"".join(get(p) for p, _ in reqs))
        out = [c.response() for _ in reqs]
        c.close()
        return out

    answers, calls, summary = strace_calls(srv.pid, batch)
    for (path, want), answer in zip(reqs, answers):
        assert batch_answer_ok(want, answer), (path, answer)
    writes = calls.get("writev", 0) + calls.get("write", 0) + calls.get("sendmsg", 0)
    assert 0 < writes <= len(reqs) // 10, summary


def test_lone_request_answered_at_once(srv):
    """Batching waits for nothing: a lone request, with no more input behind
    it, is answered in the loop turn that read it (in one writev), and so is
    each of a few sent one at a time on one connection."""

    def one_by_one():
        c = Conn(srv.port, timeout=10 * TIME_SCALE)
        out = []
        for path, _ in BATCH:
            c.send(get(path))
            out.append(c.response())
        c.close()
        return out

    answers, calls, summary = strace_calls(srv.pid, one_by_one)
    for (path, want), answer in zip(BATCH, answers):
        assert batch_answer_ok(want, answer), (path, answer)
    assert calls.get("writev", 0) == len(BATCH), summary


def test_pipelined_answers_wait_within_max_output_buffer(celerisd):
    """Answers wait for their flush only up to max_output_buffer: past it the
    next pipelined request waits until a flush made room. 200 requests sent
    at once, half of them for 5,000-byte answers, with a 16 KiB queue: no
    writev carries more than the queue and one answer (so at least 500,000 /
    (16 KiB + 6,000) of them), and every answer comes, whole and in order."""
    srv = celerisd(f"""workers: 1
limits: {{ max_output_buffer: 16k }}
routes:
  - path: /big
    static: {{ body: "{'x' * 5000}" }}
  - path: /n/:n
    json: {{ template: {{ n: "{{{{param.n}}}}" }} }}
""")
    paths = ["/big" if i % 2 else f"/n/{i}" for i in range(200)]
    c = Conn(srv.port, timeout=10 * TIME_SCALE)
    c.send(get("/big"))
    assert c.response()[2] == b"x" * 5000

    def batch():
        c.send(b"".join(get(p) for p in paths))
        return [c.response() for _ in paths]

    answers, calls, summary = strace_calls(srv.pid, batch)
    for path, (st, _, body) in zip(paths, answers):
        assert st == 200, path
        if path == "/big":
            assert body == b"x" * 5000
        else:
            assert json.loads(body) == {"n": path.split("/")[-1]}
    assert calls.get("writev", 0) >= 100 * 5000 // (16384 + 6000), summary
    c.close()


@pytest.mark.parametrize("size", [0, 1, 5000, 60000])
def test_bodies_content_length_and_chunked(srv, size):
    body = os.urandom(size)
    c = Conn(srv.port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: app/x\r\n"
           + f"Content-Length: {size}\r\n\r\n".encode() + body)
    st, h, got = c.response()
    assert st == 200 and got == body and h["content-type"] == "app/x"
    assert h.get("transfer-encoding") == "chunked"  # a streamed answer
    # the same body, sent chunked in uneven pieces, with an extension and a trailer
    chunks = b""
    i = 0
    for n in (1, 10, 4096, 300):
        piece = body[i:i + n]
        i += n
        if piece:
            chunks += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
    if body[i:]:
        chunks += f"{len(body[i:]):x}\r\n".encode() + body[i:] + b"\r\n"
    chunks += b"0\r\nX-Trailer: yes\r\n\r\n"
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    st, h, got = c.response()
    assert st == 200 and got == body
    c.close()


def test_expect_100_continue(srv):
    c = Conn(srv.port)
    c.send(b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    st, _, _ = c.response()
    assert st == 100
    c.send(b"hello")
    st, _, body = c.response()
    assert st == 200 and body == b"hello"
    c.close()


def test_h2c_upgrade(srv):
    p = subprocess.run(["curl", "-sS", "--http2", "-v", "--max-time", "5", srv.url("/greet/up")],
                       capture_output=True, timeout=15)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"Hello, up!\n"
    err = p.stderr.decode()
    assert "HTTP/1.1 101 Switching Protocols" in err and "< HTTP/2 200" in err


def test_h2c_upgrade_pipelined(srv):
    """An h2c upgrade that arrives in the same read as a request before it: the
    first is answered over HTTP/1.1, the second with 101 and then over HTTP/2
    on stream 1. The upgrade happens when the first answer is finished, from the
    connection's send and not its recv, and the connection only switched to the
    new session after a recv: the client got 101, then the close (found by
    fuzz_h1_input, tests/fuzz/crashes/fuzz_h1_input-upgrade-behind-pipelined)."""
    import h2.config
    import h2.connection
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = client.initiate_upgrade_connection()  # base64url already
    c = Conn(srv.port)
    c.send(get("/bench") + b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
    assert c.response()[:3:2] == (200, b"OK")
    st, h, _ = c.response()
    assert st == 101 and h.get("upgrade") == "h2c"
    c.send(client.data_to_send())
    status, body, ended = None, b"", False
    data, c.buf = c.buf, b""
    while not ended:
        for ev in client.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == 1:
                status = dict(ev.headers)[b":status"]
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == 1:
                body += ev.data
                client.acknowledge_received_data(ev.flow_controlled_length, 1)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == 1:
                ended = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                pytest.fail(f"GOAWAY {ev.error_code} instead of the answer on stream 1")
        c.send(client.data_to_send())
        if not ended:
            try:
                data = c.s.recv(65536)
            except (socket.timeout, TimeoutError):
                pytest.fail("no HTTP/2 answer on stream 1 after 101")
            assert data, "closed after 101 without an HTTP/2 answer on stream 1"
    assert status == b"200" and body == b"x" * 5000
    c.close()


def test_h2c_upgrade_bytes_after_request(srv):
    """What a client sends behind the upgrading request in the same write (here
    its preface, SETTINGS and 400 PINGs: 6.8 KiB) all reaches the HTTP/2
    session. conn.c used to hand it over through a 4 KiB copy and drop the
    rest, so the session read the next bytes from the middle of a frame."""
    import h2.config
    import h2.connection
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = client.initiate_upgrade_connection()  # base64url already
    c = Conn(srv.port)
    for i in range(400):
        client.ping(b"%08d" % i)
    c.send(b"GET /bench HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n" + client.data_to_send())
    acks, ended = set(), False
    data = b""
    c.s.settimeout(5)
    while b"\r\n\r\n" not in data:
        chunk = c.s.recv(65536)
        assert chunk, "closed before 101"
        data += chunk
    head, data = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101 ")
    while not (ended and len(acks) == 400):
        for ev in client.receive_data(data):
            if isinstance(ev, h2.events.PingAckReceived):
                acks.add(ev.ping_data)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == 1:
                ended = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                pytest.fail(f"GOAWAY {ev.error_code} after {len(acks)} PING ACKs")
        c.send(client.data_to_send())
        if not (ended and len(acks) == 400):
            data = c.s.recv(65536)
            assert data, f"closed after {len(acks)} PING ACKs"
    c.close()


def test_h2c_upgrade_settings_refused(srv):
    """HTTP2-Settings with more entries than max_settings_entries (32) is
    refused by nghttp2: no upgrade, the request is answered over HTTP/1.1 on a
    connection that stays open. The 101 used to go out before the session was
    made, so the client got 101 and then the close (found by fuzz_h1_input,
    tests/fuzz/crashes/fuzz_h1_input-upgrade-settings-refused)."""
    import base64

    settings = base64.urlsafe_b64encode(b"\x00\xff\x00\x00\x00\x01" * 33).rstrip(b"=")
    c = Conn(srv.port)
    c.send(b"GET /bench HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
    st, _, body = c.response()
    assert (st, body) == (200, b"OK")
    c.send(get("/bench"))
    assert c.response()[:3:2] == (200, b"OK")
    c.close()


@pytest.mark.parametrize("tail", [b"A", b"="])
def test_h2c_upgrade_settings_not_base64url(srv, tail):
    """HTTP2-Settings is base64url without padding (RFC 7540 3.2.1), and the
    settings python-h2 sends with one more character (six bits of no octet)
    or with a '=' are not: no upgrade, the request is answered over HTTP/1.1.
    The character past the whole groups of four used to be dropped and the
    upgrade made (101). A padded value can never be whole 6-octet settings
    (those encode to groups of four characters), so padding is not taken."""
    import h2.config
    import h2.connection

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = client.initiate_upgrade_connection()
    assert len(settings) % 4 == 0
    c = Conn(srv.port)
    c.send(b"GET /bench HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + tail + b"\r\n\r\n")
    st, _, body = c.response()
    assert (st, body) == (200, b"OK")
    c.send(get("/bench"))
    assert c.response()[:3:2] == (200, b"OK")
    c.close()


def test_curl_plain(srv):
    p = subprocess.run(["curl", "-sS", "--max-time", "5", "-w", " %{http_version}",
                        srv.url("/users/1/posts/2")], capture_output=True, timeout=15)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith(b" 1.1")
    assert json.loads(p.stdout[:-4])["user"] == "1"


@pytest.mark.parametrize("raw,status", [
    (b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET /bench HTTP/1.1\r\n\r\n", 400),                       # no Host
    (b"GET /bench HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 999999\r\n\r\n", 413),
    (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    (b"GET /bench HTTP/1.1\r\nHost: t\r\nX-Long: " + b"v" * 3000 + b"\r\n\r\n", 431),
    (b"GET /bench HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(30))
     + b"\r\n", 431),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET /bench HTTP/3.0\r\nHost: t\r\n\r\n", 505),
], ids=["bad-request-line", "no-host", "bad-header", "cl-and-te", "too-large", "long-target",
        "long-header", "many-headers", "unknown-coding", "bad-version"])
def test_bad_input_statuses(srv, raw, status):
    c = Conn(srv.port)
    c.send(raw)
    st, h, _ = c.response()
    assert st == status
    assert h.get("connection") == "close"
    assert c.closed()


def test_chunked_body_too_large(srv):
    c = Conn(srv.port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           + (b"4000\r\n" + b"z" * 0x4000 + b"\r\n") * 5)
    st, h, _ = c.response()
    assert st == 413 and h.get("connection") == "close"


def test_slow_head_is_cut(srv):
    """header_timeout (1 s) cuts a head that keeps dribbling, a byte every
    0.1 s, so that idle_timeout (2 s) never fires: without the header timeout
    the connection would stay open as long as the bytes come. The bound only
    leaves a slow machine room."""
    c = Conn(srv.port)
    start = time.monotonic()
    bound = 1 + 4 * TIME_SCALE
    cut = False
    try:
        c.send(b"GET /bench HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        while not cut and time.monotonic() - start < bound:
            c.send(b"1")
            cut = c.closed(timeout=0.1)
    except (BrokenPipeError, ConnectionResetError):
        cut = True  # cut while dribbling
    assert cut, f"still open {time.monotonic() - start:.1f} s into a dribbled head"


def test_idle_keep_alive_closed(srv):
    c = Conn(srv.port)
    c.send(get("/bench"))
    assert c.response()[0] == 200
    start = time.monotonic()
    bound = 2 + 3 * TIME_SCALE  # idle_timeout 2 s
    assert c.closed(timeout=bound + 1)
    assert 1.5 < time.monotonic() - start < bound


def test_both_protocols_on_one_port(srv):
    from h2client import H2Client
    with H2Client("127.0.0.1", srv.port) as h2:
        assert h2.get("/bench").body == b"OK"
        c = Conn(srv.port)
        c.send(get("/bench"))
        assert c.response()[2] == b"OK"
        assert h2.get("/greet/two").body == b"Hello, two!\n"
        c.close()


@pytest.mark.load
def test_wrk_load(srv):
    """wrk keeps 50 HTTP/1.1 connections busy; every response must be a 2xx
    (wrk counts non-2xx and socket errors) and the request count must reach
    the target."""
    n = load_n()
    p = subprocess.run(["wrk", "-t", "1", "-c", "50", "-d", "30s", "--timeout", "5s",
                        "-s", "/dev/stdin", srv.url("/bench")],
                       input=f"""local n = 0
request = function()
  n = n + 1
  if n > {n // 50 + 10} then wrk.thread:stop() end
  return wrk.format()
end
""", capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    m = re.search(r"(\d+) requests in", out)
    assert m, out
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    assert int(m.group(1)) >= n * 0.95, out
