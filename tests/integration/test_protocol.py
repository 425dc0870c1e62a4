"""HTTP/2 protocol behaviour: flow control, concurrency, request bodies,
HTTP/1.1 refusal, settings and connection timeouts."""

import hashlib
import os
import pathlib
import socket
import subprocess
import sys
import time

import h2.errors
import h2.events
import h2.settings
import hpack
import hyperframe.frame as hf
import pytest

from h2client import ConnectionClosed, H2Client
from support import curl

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts" / "bench.d"))
from relay import Relay  # noqa: E402  (the delaying relay scripts/bench uses)

BIG_SIZE = 5 * 1024 * 1024
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.bin"
    data = os.urandom(BIG_SIZE)
    path.write_bytes(data)
    return path, data


PROTO_CONFIG = """
log: { level: warn }
limits: { max_request_body: 50000 }
routes:
  - path: /big
    static: { file: @BIG@ }
  - path: /json
    json: { template: { message: "Hello, World!" } }
  - path: /bench
    static: { body: "OK" }
  - path: /users/:id/posts/:postId
    json: { template: { user: "{{param.id}}", post: "{{param.postId}}" } }
  - path: /upload
    methods: [POST]
    json: { template: { got: "{{method}}", ct: "{{header.content-type}}" } }
"""


@pytest.fixture(scope="module")
def srv(module_celerisd, big):
    return module_celerisd(PROTO_CONFIG.replace("@BIG@", str(big[0])))


# -- flow control ----------------------------------------------------------------------


def test_big_file_default_window_python_h2(srv, big):
    _, data = big
    with srv.client(timeout=60) as c:
        assert c.conn.local_settings.initial_window_size == 65535
        assert c.conn.inbound_flow_control_window == 65535
        r = c.get("/big", timeout=60)
    assert r.status == 200 and r.reset is None
    assert int(r.header("content-length")) == BIG_SIZE
    assert r.header("content-type") == "application/octet-stream"
    assert len(r.body) == BIG_SIZE
    assert sha(r.body) == sha(data)


@pytest.mark.parametrize("window", [4096, 16384])
def test_big_file_small_stream_window(srv, big, window):
    _, data = big
    with srv.client(timeout=60, initial_window_size=window) as c:
        r = c.get("/big", timeout=90)
    assert r.status == 200 and len(r.body) == BIG_SIZE
    assert sha(r.body) == sha(data)


def test_big_file_large_windows(srv, big):
    _, data = big
    with srv.client(timeout=60, initial_window_size=(1 << 31) - 1,
                    connection_window=(1 << 31) - 1, max_frame_size=(1 << 24) - 1) as c:
        r = c.get("/big", timeout=60)
    assert r.status == 200 and sha(r.body) == sha(data)


@pytest.mark.parametrize("args", [["-w", "16"], ["-w", "16", "-W", "16"]],
                         ids=["w16", "w16-W16"])
def test_big_file_nghttp_small_window(srv, big, args):
    _, data = big
    p = subprocess.run(["nghttp", *args, srv.url("/big")], capture_output=True, timeout=90,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert len(p.stdout) == BIG_SIZE
    assert sha(p.stdout) == sha(data)


def test_big_file_curl(srv, big, tmp_path):
    _, data = big
    out = tmp_path / "out.bin"
    p = curl(["-o", str(out), srv.url("/big")], timeout=60)
    assert p.returncode == 0, p.stderr
    assert sha(out.read_bytes()) == sha(data)


UPLOAD_WINDOWS_CONFIG = """
workers: 1
log: { level: warn }
limits: { max_request_body: 8m@LIMITS@ }
routes:
  - path: /up
    methods: [POST]
    static: { body: "OK" }
"""


def _upload_stalls(port, body):
    """Uploads BODY to /up through a relay that delays each direction by 50 ms;
    returns (stalls, response, windows): a stall is a read the client had to
    make because the server's windows had no room left, so each is a round
    trip spent waiting for a WINDOW_UPDATE (counted, not timed); the windows
    are the SETTINGS stream window, the connection window once the handshake
    is over, and the first WINDOW_UPDATE the server sent on the upload's
    stream (0 for none)."""
    with Relay(port, 0.05) as relay, H2Client("127.0.0.1", relay.port, timeout=60) as c:
        c.wait_for(lambda: c.settings_acked, what="the server's SETTINGS ACK")
        windows = [c.conn.remote_settings.initial_window_size,
                   c.conn.outbound_flow_control_window]
        stalls = 0
        pump = c.pump

        def counted(deadline):
            nonlocal stalls
            stalls += 1
            return pump(deadline)

        sid = c.send_request("POST", "/up", CT, end_stream=False)
        c.pump = counted
        assert c.send_body(sid, body, timeout=60)
        c.pump = pump
        r = c.response(sid, timeout=60)
        ups = [e.delta for e in c.events
               if isinstance(e, h2.events.WindowUpdated) and e.stream_id == sid]
        return stalls, r, windows + [ups[0] if ups else 0]


def test_upload_windows_fill_a_long_path(celerisd):
    """Issue #21 item 4: the server opens the connection window to 16 MiB (a
    WINDOW_UPDATE on stream 0 beside its SETTINGS) and a buffered upload's
    stream to 4 MiB (a WINDOW_UPDATE as its HEADERS arrive), so a 4 MiB upload
    through a 50 ms relay waits for a WINDOW_UPDATE only a few times. Streams
    start at the protocol's 65,535 (what a streamed body may have waiting for
    its handler). With 65,535 windows throughout (before, and with the knobs
    set so) each round trip lets at most 64 KiB through: 63 stalls at least."""
    body = os.urandom(4 << 20)
    srv = celerisd(UPLOAD_WINDOWS_CONFIG.replace("@LIMITS@", ""))
    stalls, r, windows = _upload_stalls(srv.port, body)
    assert r.status == 200 and r.body == b"OK", r
    assert windows == [65535, 16 << 20, (4 << 20) - 65535], windows
    print(f"4 MiB upload, 50 ms each way: {stalls} stalls with the default windows")
    assert stalls <= 4, stalls
    old = celerisd(UPLOAD_WINDOWS_CONFIG.replace(
        "@LIMITS@", ", body_window: 65535, connection_window: 65535"))
    stalls, r, windows = _upload_stalls(old.port, body)
    assert r.status == 200 and r.body == b"OK", r
    assert windows[:2] == [65535, 65535], windows
    print(f"{stalls} stalls with 65,535-octet windows")
    assert stalls >= 63, stalls


def test_small_upload_needs_no_window_update(celerisd):
    """A body the stream's first 65,535 octets hold (content-length says so)
    gets no WINDOW_UPDATE of its own: a 1 KiB POST costs no extra frame."""
    srv = celerisd(UPLOAD_WINDOWS_CONFIG.replace("@LIMITS@", ""))
    with srv.client() as c:
        r = c.request("POST", "/up", CT + [("content-length", "1024")], b"x" * 1024)
        assert r.status == 200 and r.body == b"OK", r
        assert not [e for e in c.events
                    if isinstance(e, h2.events.WindowUpdated) and e.stream_id == r.stream_id]


def test_server_respects_stream_window(srv):
    """With a stream window of 1000 bytes and nothing acknowledged, the server
    sends exactly 1000 bytes and then waits (h2 raises on any excess)."""
    with srv.client(initial_window_size=1000, auto_ack=False) as c:
        sid = c.send_request("GET", "/big")
        c.wait_for(lambda: c.unacked_bytes() >= 1000, timeout=10, what="1000 bytes")
        # give the server the chance to (wrongly) send more: a PING round trip
        c.conn.ping(b"flowctl1")
        c._flush()
        c.wait_for(lambda: any(isinstance(e, h2.events.PingAckReceived) for e in c.events),
                   timeout=10, what="PING ack")
        assert len(c.responses[sid].body) == 1000
        assert not c.responses[sid].done
        c.open_window()
        r = c.response(sid, timeout=60)
        assert len(r.body) == BIG_SIZE


def test_concurrent_big_streams_interleave(srv, big):
    _, data = big
    with srv.client(timeout=60) as c:
        rs = c.many(["/big"] * 6, timeout=120)
    for r in rs:
        assert r.status == 200 and r.reset is None
        assert sha(r.body) == sha(data)


# -- concurrency -----------------------------------------------------------------------


def test_100_concurrent_streams(srv):
    reqs = []
    expect = []
    for i in range(100):
        if i % 3 == 0:
            reqs.append(f"/users/u{i}/posts/{i * 7}")
            expect.append(f'{{"user":"u{i}","post":"{i * 7}"}}'.encode())
        elif i % 3 == 1:
            reqs.append("/json")
            expect.append(b'{"message":"Hello, World!"}')
        else:
            reqs.append("/bench")
            expect.append(b"OK")
    with srv.client() as c:
        assert c.remote_setting(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS) >= 100
        rs = c.many(reqs, timeout=30)
        assert len({r.stream_id for r in rs}) == 100
        for req, r, body in zip(reqs, rs, expect):
            assert r.status == 200, (req, r)
            assert r.body == body, (req, r)
            assert r.header("content-length") == str(len(body))
        # the connection is still good afterwards
        assert c.get("/bench").body == b"OK"


def test_many_connections_at_once(srv):
    clients = [srv.client() for _ in range(30)]
    try:
        sids = [(c, c.send_request("GET", f"/users/{i}/posts/x")) for i, c in enumerate(clients)]
        for i, (c, sid) in enumerate(sids):
            r = c.response(sid)
            assert r.status == 200 and r.json() == {"user": str(i), "post": "x"}
    finally:
        for c in clients:
            c.close()


def test_client_reset_mid_transfer_keeps_connection(srv):
    with srv.client(auto_ack=False) as c:
        sid = c.send_request("GET", "/big")
        # read the whole first window, so no DATA for the stream is in flight
        # (h2 drops DATA after a reset without giving it back to the window)
        c.wait_for(lambda: c.unacked_bytes() >= 65535, what="first window of DATA")
        c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        c.open_window()
        r = c.get("/json")
        assert r.status == 200 and r.body == b'{"message":"Hello, World!"}'


def test_ping(srv):
    with srv.client() as c:
        c.conn.ping(b"celeris!")
        c._flush()
        c.wait_for(lambda: any(isinstance(e, h2.events.PingAckReceived) for e in c.events),
                   what="PING ack")
        ack = [e for e in c.events if isinstance(e, h2.events.PingAckReceived)][0]
        assert ack.ping_data == b"celeris!"


# -- request bodies ----------------------------------------------------------------------


UPLOAD_OK = b'{"got":"POST","ct":"application/octet-stream"}'
CT = [("content-type", "application/octet-stream")]


def test_post_body_at_limit_with_content_length(srv):
    body = os.urandom(50000)
    with srv.client() as c:
        r = c.request("POST", "/upload", CT + [("content-length", str(len(body)))], body)
        assert r.status == 200, r
        assert r.body == UPLOAD_OK


def test_post_content_length_with_leading_zeros(srv):
    """1*DIGIT (RFC 9110 8.6): leading zeros are no reason to reset the stream,
    however many (nghttp2's own checks take them too)."""
    body = b"hello"
    with srv.client() as c:
        r = c.request("POST", "/upload", CT + [("content-length", "0" * 30 + "5")], body)
        assert r.status == 200, r
        assert r.body == UPLOAD_OK


def test_post_body_at_limit_without_content_length(srv):
    body = os.urandom(50000)
    with srv.client() as c:
        r = c.request("POST", "/upload", CT, body)
        assert r.status == 200, r
        assert r.body == UPLOAD_OK


def test_post_small_body_curl(srv):
    p = curl(["-H", "content-type: application/octet-stream", "--data-binary", "hello",
              srv.url("/upload")])
    assert p.returncode == 0, p.stderr
    assert p.stdout == UPLOAD_OK


def test_post_empty_body(srv):
    with srv.client() as c:
        r = c.request("POST", "/upload", CT)
        assert r.status == 200 and r.body == UPLOAD_OK


def test_post_too_large_with_content_length_413(srv):
    body = os.urandom(50001)
    with srv.client() as c:
        r = c.request("POST", "/upload", CT + [("content-length", str(len(body)))], body)
        assert r.status == 413, r
        # the connection keeps serving other streams
        r2 = c.get("/json")
        assert r2.status == 200 and r2.body == b'{"message":"Hello, World!"}'
        r3 = c.request("POST", "/upload", CT, b"small")
        assert r3.status == 200 and r3.body == UPLOAD_OK


def test_post_too_large_without_content_length_413(srv):
    body = os.urandom(300000)
    with srv.client() as c:
        r = c.request("POST", "/upload", CT, body)
        assert r.status == 413, r
        r2 = c.get("/bench")
        assert r2.status == 200 and r2.body == b"OK"
        r3 = c.request("POST", "/upload", CT, os.urandom(1000))
        assert r3.status == 200 and r3.body == UPLOAD_OK


def test_post_too_large_curl(srv):
    p = curl(["-o", os.devnull, "-w", "%{http_code}", "--data-binary", "@-", srv.url("/upload")],
             timeout=20)
    # curl with @- and no stdin sends an empty body: 200
    assert p.stdout == b"200", p
    big_body = b"x" * 100000
    p = subprocess.run(["curl", "--http2-prior-knowledge", "-sS", "--max-time", "20", "-o",
                        os.devnull, "-w", "%{http_code}", "--data-binary", "@-",
                        srv.url("/upload")], input=big_body, capture_output=True, timeout=30)
    assert p.stdout == b"413", p


def test_body_limit_parses_size_suffix(celerisd):
    s = celerisd("""
limits: { max_request_body: 64k }
routes:
  - path: /up
    methods: [POST]
    static: { body: "ok" }
""")
    with s.client() as c:
        assert c.request("POST", "/up", body=b"a" * 60000).status == 200
        assert c.request("POST", "/up", body=b"a" * 70000).status == 413
        assert c.request("POST", "/up", body=b"a" * 10).body == b"ok"


def keep_sending(c, sid, total, chunk=16384):
    """Sends TOTAL more octets of DATA on SID (never ending it) as the windows
    allow, after its 413: stops early if the stream is reset. Then waits two
    PING round trips, so a reset the server made for those octets has come.
    Returns the octets sent."""
    r = c.responses[sid]
    sent = 0
    deadline = time.monotonic() + 60
    while sent < total and r.reset is None:
        n = min(chunk, c.conn.local_flow_control_window(sid), total - sent)
        if n <= 0:
            c.pump(deadline)
            continue
        c.conn.send_data(sid, b"x" * n)
        c._flush()
        sent += n
    for data in (b"discard1", b"discard2"):
        c.conn.ping(data)
        c._flush()
        c.wait_for(lambda: any(isinstance(e, h2.events.PingAckReceived) and e.ping_data == data
                               for e in c.events), what="PING ACK")
    return sent


@pytest.mark.parametrize("limits,route,budget", [
    ("4m", "512k", 2 << 20),    # the route's 4 x 512k, not the limits' 16 MiB
    ("64k", "1m", 4 << 20),     # the route's 4 x 1m, not the 1 MiB floor of 4 x 64k
])
def test_discard_budget_is_the_routes(celerisd, limits, route, budget):
    """README (limits.max_request_body): after a 413 the rest of the body is
    read and dropped, and the stream reset with NO_ERROR once more than 4x
    the request's limit (its route's own here) has come."""
    s = celerisd(f"""
limits: {{ max_request_body: {limits} }}
routes:
  - path: /up
    methods: [POST]
    max_request_body: {route}
    static: {{ body: "ok" }}
""")
    with s.client() as c:
        sid = c.send_request("POST", "/up", [("content-length", str(64 << 20))], end_stream=False)
        r = c.response(sid)  # answered at once from content-length
        assert r.status == 413 and r.reset is None, r
        sent = keep_sending(c, sid, budget - (256 << 10))
        assert r.reset is None, f"reset after {sent} octets, under the budget {budget}"
        keep_sending(c, sid, 512 << 10)
        assert r.reset == h2.errors.ErrorCodes.NO_ERROR, r
        assert c.get("/nothing").status == 404  # the connection serves on


def test_concurrent_uploads_one_too_large(srv):
    with srv.client() as c:
        ok1 = c.send_request("POST", "/upload", CT, end_stream=False)
        bad = c.send_request("POST", "/upload", CT, end_stream=False)
        ok2 = c.send_request("POST", "/upload", CT, end_stream=False)
        for _ in range(4):
            c.send_body(ok1, b"1" * 10000, end_stream=False)
            c.send_body(bad, b"2" * 20000, end_stream=False)
            c.send_body(ok2, b"3" * 10000, end_stream=False)
        c.send_body(ok1, b"", end_stream=True)
        c.send_body(ok2, b"", end_stream=True)
        c.send_body(bad, b"", end_stream=True)
        r1, rb, r2 = c.response(ok1), c.response(bad), c.response(ok2)
        assert r1.status == 200 and r1.body == UPLOAD_OK
        assert r2.status == 200 and r2.body == UPLOAD_OK
        assert rb.status == 413, rb


# -- HTTP/1.1 clients ----------------------------------------------------------------


def read_until_eof(sock, timeout):
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data, False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def test_garbage_instead_of_preface_closed(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40)   # a TLS hello
        _, closed = read_until_eof(s, 5)
    assert closed
    with srv.client() as c:
        assert c.get("/bench").body == b"OK"


# -- settings and limits ---------------------------------------------------------------


def test_settings_advertise_limits(celerisd):
    s = celerisd("""
limits: { max_concurrent_streams: 10, max_header_list_size: 8192 }
routes:
  - path: /bench
    static: { body: "OK" }
""")
    with s.client() as c:
        codes = h2.settings.SettingCodes
        assert c.remote_setting(codes.MAX_CONCURRENT_STREAMS) == 10
        assert c.remote_setting(codes.MAX_HEADER_LIST_SIZE) == 8192
        rs = c.many(["/bench"] * 10)
        assert all(r.status == 200 and r.body == b"OK" for r in rs)


def test_oversized_header_list_not_served(celerisd):
    """A header list over max_header_list_size (20,000 octets at 8,192, less
    than the 4x that counts as an HPACK bomb) is answered 431 (README,
    limits) and the connection goes on."""
    s = celerisd("""
limits: { max_header_list_size: 8192 }
routes:
  - path: /bench
    static: { body: "OK" }
""")
    with s.client() as c:
        r = c.request("GET", "/bench", [("x-big", "v" * 20000)], timeout=5)
        assert r.status == 431 and r.body != b"OK", r
        assert c.get("/bench").body == b"OK"   # the same connection


def test_too_many_streams_refused(celerisd):
    """Opening more streams than max_concurrent_streams at once (12 at a limit
    of 4, h2's own check bypassed like a misbehaving client): a connection
    error, as tests/conformance/test_streams.py expects it (RFC 9113 5.1.2 and
    5.4.1; nghttp2 raises it once its SETTINGS are acknowledged): GOAWAY
    PROTOCOL_ERROR whose last stream id keeps exactly the 4 streams within the
    limit, no stream past it answered, and the daemon serves the next
    connection."""
    s = celerisd("""
limits: { max_concurrent_streams: 4 }
routes:
  - path: /bench
    static: { body: "OK" }
""")
    with s.client() as c:
        assert c.remote_setting(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS) == 4
        # bypass h2's own limit check to behave like a misbehaving client
        c.conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 100
        c.conn.remote_settings.acknowledge()
        with pytest.raises(ConnectionClosed):
            c.many(["/bench"] * 12, timeout=10)
        assert c.goaway is not None, c.events
        assert c.goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR, c.goaway
        assert c.goaway.last_stream_id == 7, c.goaway
        answered = [r for sid, r in c.responses.items() if sid > 7 and r.status is not None]
        assert not answered, answered
    with s.client() as c:      # the daemon is fine
        assert c.get("/bench").body == b"OK"


def connect_h2_raw(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(PREFACE + hf.SettingsFrame(0).serialize())
    return s


def test_silent_connection_closed_by_timeouts(celerisd):
    s = celerisd("""
limits: { header_timeout: 1s, idle_timeout: 1s }
routes:
  - path: /bench
    static: { body: "OK" }
""")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        start = time.monotonic()
        _, closed = read_until_eof(sock, 8)
        elapsed = time.monotonic() - start
    assert closed, "a connection that sends nothing was kept open for 8 s"
    assert elapsed >= 0.5, elapsed


def test_incomplete_headers_closed_by_header_timeout(celerisd):
    s = celerisd("""
limits: { header_timeout: 1s, idle_timeout: 60s }
routes:
  - path: /bench
    static: { body: "OK" }
""")
    block = hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"),
                                    (":authority", "x"), (":path", "/bench")])
    headers = hf.HeadersFrame(1)
    headers.data = block[:3]          # the block goes on in a CONTINUATION never sent
    headers.flags.add("END_STREAM")
    with connect_h2_raw(s.port) as sock:
        sock.sendall(headers.serialize())
        start = time.monotonic()
        _, closed = read_until_eof(sock, 8)
        elapsed = time.monotonic() - start
    assert closed, "a connection stuck in the middle of a header block stayed open 8 s"
    assert elapsed >= 0.5, elapsed


def test_idle_connection_closed_after_idle_timeout(celerisd):
    s = celerisd("""
limits: { idle_timeout: 1s, header_timeout: 60s }
routes:
  - path: /bench
    static: { body: "OK" }
""")
    with s.client() as c:
        assert c.get("/bench").body == b"OK"
        took = c.wait_closed(timeout=8)
        assert took >= 0.5, took
        if c.goaway is not None:
            assert c.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR


def test_active_connection_not_closed_by_idle_timeout(celerisd):
    s = celerisd("""
limits: { idle_timeout: 1s }
routes:
  - path: /bench
    static: { body: "OK" }
""")
    with s.client() as c:
        end = time.monotonic() + 2.5
        n = 0
        while time.monotonic() < end:
            assert c.get("/bench").body == b"OK"
            n += 1
            time.sleep(0.2)       # pacing the requests, not synchronisation
        assert n >= 10
        assert not c.eof


def test_stalled_reader_closed_by_write_timeout(celerisd, big):
    """A client that opens its windows wide and then stops reading the socket:
    the daemon's writes stall, and after write_timeout it drops the connection."""
    s = celerisd(f"""
limits: {{ write_timeout: 1s, idle_timeout: 60s }}
routes:
  - path: /big
    static: {{ file: {big[0]} }}
  - path: /bench
    static: {{ body: "OK" }}
""")
    with s.client(initial_window_size=(1 << 31) - 1, connection_window=(1 << 31) - 1,
                  timeout=30) as c:
        sids = [c.send_request("GET", "/big") for _ in range(8)]   # 40 MiB: more than
        # the socket buffers hold, so the server cannot finish while we do not read.
        # The stalled client is what is under test, not a wait for it. What it
        # acknowledged (its socket buffer's fill) counts for up to four
        # write_timeouts (README: min_send_rate), so the close comes within five.
        time.sleep(6)
        try:
            c.wait_closed(timeout=10)
        except TimeoutError:
            pytest.fail("connection still open: the stalled writer was not timed out")
        assert not all(c.responses[sid].ended for sid in sids)
    with s.client() as c:
        assert c.get("/bench").body == b"OK"


def test_max_connections(celerisd):
    """With max_connections: 2 (one worker), a third connection is not served
    while two are open, and is (or a fresh one is) once one of them closes."""
    s = celerisd("""
workers: 1
limits: { max_connections: 2 }
routes:
  - path: /bench
    static: { body: "OK" }
""")
    first = [s.client() for _ in range(2)]
    try:
        for c in first:
            assert c.get("/bench").body == b"OK"
        third_served = False
        third = None
        try:
            third = H2Client("127.0.0.1", s.port, timeout=5, wait_settings=False)
            sid = third.send_request("GET", "/bench")
            try:
                r = third.response(sid, timeout=1.5)
                third_served = r.status == 200
            except (TimeoutError, ConnectionClosed):
                pass
        except (ConnectionRefusedError, ConnectionResetError):
            third = None
        assert not third_served, "a third connection was served with max_connections: 2"

        first.pop().close()
        if third is not None and not third.eof:
            r = third.response(sid, timeout=5)      # it was waiting to be accepted
            assert r.status == 200 and r.body == b"OK"
        else:
            with s.client(timeout=5) as c:
                assert c.get("/bench").body == b"OK"
        if third is not None:
            third.close()
    finally:
        for c in first:
            c.close()


def _dates_in_table(c):
    return [v for n, v in c.conn.decoder.header_table.dynamic_entries if n == b"date"]


def _date_fields(c, rs):
    """The date fields of responses RS as the client decoded them (an hpack
    NeverIndexedHeaderTuple when one came as a never-indexed literal), in the
    order their heads arrived: the order of the HPACK table's changes."""
    sids = {r.stream_id for r in rs}
    out = [next(f for f in ev.headers if f[0] == "date") for ev in c.events
           if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id in sids]
    assert len(out) == len(sids), (sids, out)
    return out


def test_date_indexed_only_when_its_second_repeats(srv):
    """A connection asking once a second gets each date as a never-indexed
    literal, so its HPACK table does not fill with old dates; a second response
    within the same second indexes it, and later ones reuse that entry.

    The daemon's second is its event loop's time at the read, so on a loaded
    machine (the sanitizer build) a request sent after the client's clock moved
    on can still get the old second, and three requests one after the other
    can straddle a second (or, slow enough, never fit in one). So the three
    that must share a second go out in one write, read at once; an attempt
    whose dates still did not come out as it needs proves nothing and is made
    again (bounded). What each response must be follows from its date and the
    one before it on the connection, so every response is checked field by
    field, whatever the timing was."""
    never = hpack.NeverIndexedHeaderTuple
    for _ in range(5):
        with srv.client() as c:
            seen = []
            for _ in range(3):
                r = c.get("/bench")
                assert r.status == 200
                seen += _date_fields(c, [r])
                while time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()) == seen[-1][1]:
                    time.sleep(0.05)   # until the daemon's second has surely changed
                time.sleep(0.1)
            # a date that repeats its predecessor's second is indexed; one that
            # starts a second never is
            for i, f in enumerate(seen):
                first = i == 0 or f[1] != seen[i - 1][1]
                assert isinstance(f, never) == first, (i, seen)
            if len({f[1] for f in seen}) < 3:
                continue   # the daemon answered two in one second: again
            assert _dates_in_table(c) == []
            for _ in range(5):   # three in one read, so in one second (bounded retry all the same)
                rs = c.many(["/bench"] * 3)
                assert [r.status for r in rs] == [200] * 3
                dates = _date_fields(c, rs)
                prev = seen[-1]
                for f in dates:
                    assert isinstance(f, never) == (f[1] != prev[1]), (prev, dates)
                    prev = f
                seen += dates
                if len({f[1] for f in dates}) == 1:
                    break
            assert len({f[1] for f in dates}) == 1, dates
            table = _dates_in_table(c)
            assert table[:1] == [dates[0][1].encode()] and table.count(table[0]) == 1, table
            return
    pytest.fail(f"five connections each got two of three requests a second apart within "
                f"one second of the daemon: {seen}")
