"""The connection timeouts of README's Limits measured against the real daemon:
what counts as progress for write_timeout (bytes the client acknowledged, at
least min_send_rate), what idle_timeout counts (only time the client owes us
something), what a timed-out client is told before the close (GOAWAY,
RST_STREAM, 408), and how an accept loop out of descriptors logs."""

import os
import resource
import socket
import time

import h2.config
import h2.connection
import h2.errors
import h2.settings
import pytest

from support import BINARY

SCALE = float(os.environ.get("CELERIS_ATTACK_SCALE", "1"))
MODULES = os.path.join(os.path.dirname(os.path.realpath(BINARY)), "modules")
BIG = 8 << 20


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("timeouts") / "big.bin"
    path.write_bytes(os.urandom(BIG))
    return path


def slow_socket(port):
    """A client socket that takes data the way a slow mobile link does: a small
    receive buffer, and segments of a WAN size (on loopback the MSS is 64 KiB,
    and a receiver opens its window by at least one MSS at a time)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1200)
    s.connect(("127.0.0.1", port))
    return s


def h2_request_bytes(path):
    """Preface, SETTINGS with the widest windows, and one GET: the body is then
    limited by the socket alone."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
    conn.increment_flow_control_window((1 << 31) - 1 - 65535)
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"),
                          (":authority", "x"), (":path", path)], end_stream=True)
    return conn.data_to_send()


def read_slowly(s, seconds, rate=1024, step=0.25):
    """Reads at RATE bytes/s for SECONDS. Returns (bytes read, whether the
    server ended the connection meanwhile)."""
    got = 0
    start = time.monotonic()
    while time.monotonic() < start + seconds:
        time.sleep(step)
        due = int(rate * (time.monotonic() - start)) - got
        if due <= 0:
            continue
        s.settimeout(step)
        try:
            data = s.recv(due)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return got, True
        if not data:
            return got, True
        got += len(data)
    return got, False


def drain(s, timeout, limit=None):
    """Reads until the end of the connection (or LIMIT bytes). Returns (bytes,
    ended)."""
    got = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (limit is None or got < limit):
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(1 << 20 if limit is None else min(1 << 20, limit - got))
        except socket.timeout:
            return got, False
        except ConnectionResetError:
            return got, True
        if not data:
            return got, True
        got += len(data)
    return got, False


@pytest.mark.parametrize("proto", ["http/1.1", "h2"])
def test_slow_reader_keeps_its_download(celerisd, big, proto):
    """Issue 18.3: a client reading 1 KiB/s of a large body outlives
    write_timeout (the socket never turns writable for it: Linux waits for half
    a send buffer to drain), because what it acknowledges is progress. Once it
    stops reading altogether it is closed."""
    srv = celerisd(f"""workers: 1
limits: {{ write_timeout: 2s, idle_timeout: 60s }}
routes:
  - path: /big
    static: {{ file: {big} }}
""")
    s = slow_socket(srv.port)
    if proto == "h2":
        s.sendall(h2_request_bytes("/big"))
    else:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    got, ended = read_slowly(s, 8.0)       # four write_timeouts
    assert not ended, f"closed after {got} bytes while the client was reading 1 KiB/s"
    assert got >= 4096, f"only {got} bytes in 8 s"
    # A connection the server closed meanwhile still delivers what its socket
    # buffer held (about 100 KiB here), so read on at full speed: only a live
    # connection has a mebibyte more to give.
    more, ended = drain(s, 10, limit=1 << 20)
    assert more >= 1 << 20, (f"the connection had ended during the slow reading: {more} bytes "
                             f"were left after {got}")
    # Now it stalls: the rate is averaged over four write_timeouts, so after
    # five of them the fast reading above has left the average.
    time.sleep(5 * 2 + 2 * SCALE)
    rest, ended = drain(s, 10)
    s.close()
    assert ended, "a stalled reader was not closed by write_timeout"
    assert got + more + rest < BIG, "the whole body went out to a stalled reader"


def test_idle_timeout_spares_a_request_the_server_holds(celerisd):
    """Issue 18.4: a request suspended in a module for longer than idle_timeout
    is answered; the client waiting for it is not idle."""
    srv = celerisd(f"""workers: 1
modules_dir: {MODULES}
limits: {{ idle_timeout: 1s }}
routes:
  - path: /slow
    module: {{ name: delay, config: {{ ms: 2500, mode: loop }} }}
""")
    with srv.client(timeout=20) as c:
        r = c.get("/slow", timeout=20)
        assert r.status == 200 and r.body == b"delayed 2500 ms on loop\n"
        # and once nothing is in flight the idle timer runs again
        c.wait_closed(timeout=1 + 3 * SCALE)
        assert c.goaway is not None


def test_idle_timeout_spares_a_request_the_server_holds_h1(celerisd):
    srv = celerisd(f"""workers: 1
modules_dir: {MODULES}
limits: {{ idle_timeout: 1s }}
routes:
  - path: /slow
    module: {{ name: delay, config: {{ ms: 2500, mode: loop }} }}
""")
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    s.settimeout(20)
    while b"delayed 2500 ms on loop\n" not in buf:
        data = s.recv(4096)
        assert data, f"closed before the answer: {buf!r}"
        buf += data
    assert buf.startswith(b"HTTP/1.1 200 ")
    s.close()


def test_idle_timeout_counts_from_the_last_request(celerisd):
    """The idle timer is not moved on each request: it fires when first set,
    finds the connection active since, and waits out the rest (conn.c,
    on_timer). So a connection that asked now and then is spared while it
    asks, and closed once idle_timeout has passed since its last answer:
    not earlier, and not left open."""
    srv = celerisd("""workers: 1
limits: { idle_timeout: 1s, header_timeout: 60s }
routes:
  - path: /bench
    static: { body: "OK" }
""")
    with srv.client(timeout=10) as c:
        end = time.monotonic() + 2.6
        n = 0
        while time.monotonic() < end:
            # each answer must come on this connection: an idle timer that
            # counted from when it was set would have closed it after 1 s
            assert c.get("/bench").body == b"OK"
            n += 1
            time.sleep(0.3)  # pacing the requests, not synchronisation
        assert n >= 5
        assert c.get("/bench").body == b"OK"
        # a timer that found activity and was not set again would leave the
        # connection open: wait_closed raises TimeoutError past the bound
        took = c.wait_closed(timeout=1 + 3 * SCALE)
        assert took >= 0.7, f"closed {took:.2f} s after the last answer (idle_timeout 1 s)"
        assert c.goaway is not None


def test_header_timeout_after_preface_sends_goaway(celerisd):
    """Issue 18.5: an HTTP/2 client that sent its preface and nothing else gets
    a GOAWAY before header_timeout closes the connection."""
    srv = celerisd("limits: { header_timeout: 1s }\nroutes:\n  - path: /\n"
                   "    static: { body: ok }\n")
    with srv.client(timeout=20) as c:
        c.wait_closed(timeout=1 + 3 * SCALE)
        assert c.goaway is not None, "closed without a GOAWAY"
        assert c.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR


def test_header_timeout_answers_408_to_slowloris(celerisd):
    """Issue 18.5: an HTTP/1.1 request head that never ends gets 408 before the
    close."""
    srv = celerisd("limits: { header_timeout: 1s }\nroutes:\n  - path: /\n"
                   "    static: { body: ok }\n")
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: 1\r\n")
    buf = b""
    s.settimeout(1 + 3 * SCALE)
    while True:
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            break
        if not data:
            break
        buf += data
    s.close()
    assert buf.startswith(b"HTTP/1.1 408 "), buf
    assert b"\r\nconnection: close\r\n" in buf.lower()


def test_idle_timeout_with_stalled_stream_resets_and_goes_away(celerisd):
    """Issue 18.5: a POST whose body never comes: at idle_timeout the stream is
    reset and a GOAWAY sent before the close."""
    srv = celerisd("limits: { idle_timeout: 1s }\nroutes:\n  - path: /up\n"
                   "    methods: [POST]\n    static: { body: ok }\n")
    with srv.client(timeout=20) as c:
        sid = c.send_request("POST", "/up", end_stream=False)
        c.wait_closed(timeout=1 + 3 * SCALE)
        assert c.responses[sid].reset == h2.errors.ErrorCodes.CANCEL, c.responses[sid]
        assert c.goaway is not None, "closed without a GOAWAY"


def test_out_of_descriptors_logs_once(celerisd):
    """Issue 18.6: at the descriptor limit the daemon pauses accepting and
    retries ten times a second; it logs the first failure, not every retry."""
    srv = celerisd("workers: 1\nroutes:\n  - path: /\n    static: { body: ok }\n")
    used = len(os.listdir(f"/proc/{srv.pid}/fd"))
    soft, hard = resource.prlimit(srv.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (used + 4, hard))
    socks = []
    try:
        for _ in range(12):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        deadline = time.monotonic() + 10
        while "cannot accept" not in srv.stderr_text():
            assert time.monotonic() < deadline, "the limit was never reached"
            time.sleep(0.05)
        time.sleep(3)
        lines = [l for l in srv.stderr_text().splitlines() if "cannot accept" in l]
        assert len(lines) <= 2, f"{len(lines)} lines in 3 s:\n" + "\n".join(lines[:5])
    finally:
        for s in socks:
            s.close()
        resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (soft, hard))
    with srv.client() as c:
        assert c.get("/").body == b"ok"
