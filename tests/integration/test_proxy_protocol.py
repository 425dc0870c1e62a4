"""PROXY protocol (v1 and v2) on listen entries with `proxy_protocol: true`
and `trusted`: the client address a trusted balancer announces is the one the
access log shows; a trusted peer must send a valid header (else only its own
connection is closed); an untrusted peer is served as itself and its PROXY
header is refused; the header is read without one byte too many (TLS after it
works, a header split over several segments works)."""

import socket
import ssl
import struct
import time

import pytest

from support import expect_config_error, self_signed

V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(src, dst=None, sport=40000, dport=80, cmd=1):
    dst = dst or ("::1" if ":" in src else "127.0.0.1")
    if cmd == 0:
        return V2SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    if ":" in src:
        block = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) +
                 struct.pack("!HH", sport, dport))
        fam = 0x21
    else:
        block = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
        fam = 0x11
    return V2SIG + bytes([0x21, fam]) + struct.pack("!H", len(block)) + block


def v1(src, dst=None, sport=40000, dport=80):
    dst = dst or ("::1" if ":" in src else "127.0.0.1")
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


GET = b"GET /who HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"


def config(log, trusted="[127.0.0.0/8]", tls=""):
    return f"""listen:
  - {{ address: "127.0.0.1:{{port}}", proxy_protocol: true, trusted: {trusted} {tls}}}
  - "127.0.0.1:{{port2}}"
workers: 1
log: {{ level: info, access: {{ path: {log}, format: '%h %U %s' }} }}
routes:
  - path: /who
    static: {{ body: "hello" }}
"""


def exchange(port, *chunks, pause=0.0, timeout=10):
    """Sends CHUNKS (pausing between them), returns all the bytes until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for i, c in enumerate(chunks):
            if i and pause:
                time.sleep(pause)
            s.sendall(c)
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except ConnectionResetError:
            pass
        return out


def log_lines(log, n, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    return log.read_text().splitlines() if log.exists() else []


def test_v1_and_v2_addresses_reach_the_access_log(celerisd, tmp_path):
    log = tmp_path / "access.log"
    srv = celerisd(config(log), ports=2)
    port = srv.ports[0]
    assert exchange(port, v1("192.0.2.7") + GET).startswith(b"HTTP/1.1 200")
    assert exchange(port, v2("198.51.100.9") + GET).startswith(b"HTTP/1.1 200")
    assert exchange(port, v2("2001:db8::42") + GET).startswith(b"HTTP/1.1 200")
    assert exchange(port, v1("2001:db8::43") + GET).startswith(b"HTTP/1.1 200")
    # LOCAL (HAProxy's own health checks): the socket's address stands.
    assert exchange(port, v2("", cmd=0) + GET).startswith(b"HTTP/1.1 200")
    # The header cut in pieces that arrive apart, the request in the same
    # segment as its end.
    h = v2("203.0.113.5")
    assert exchange(port, h[:5], h[5:14], h[14:] + GET, pause=0.15).startswith(b"HTTP/1.1 200")
    h = v1("203.0.113.6")
    assert exchange(port, h[:3], h[3:20], h[20:], GET, pause=0.15).startswith(b"HTTP/1.1 200")
    lines = log_lines(log, 7)
    assert lines == ["192.0.2.7 /who 200", "198.51.100.9 /who 200", "2001:db8::42 /who 200",
                     "2001:db8::43 /who 200", "127.0.0.1 /who 200", "203.0.113.5 /who 200",
                     "203.0.113.6 /who 200"], lines


def test_h2_after_the_header(celerisd, tmp_path):
    """HTTP/2 prior knowledge after a v2 header: the preface is sniffed after it."""
    h2 = pytest.importorskip("h2.connection")
    import h2.config
    import h2.events
    log = tmp_path / "access.log"
    srv = celerisd(config(log), ports=2)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/who"), (":scheme", "http"),
                          (":authority", "x")], end_stream=True)
    with socket.create_connection(("127.0.0.1", srv.ports[0]), timeout=10) as s:
        s.sendall(v2("192.0.2.99") + conn.data_to_send())
        status, body, done = None, b"", False
        while not done:
            data = s.recv(65536)
            assert data, "connection closed before the response"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                elif isinstance(ev, h2.events.StreamEnded):
                    done = True
            s.sendall(conn.data_to_send())
    assert (status, body) == (b"200", b"hello")
    assert log_lines(log, 1) == ["192.0.2.99 /who 200"]


@pytest.mark.parametrize("bad", [
    b"",                                                   # no header at all
    b"PROXY TCP4 192.0.2.7 127.0.0.1 99999 80\r\n",        # port out of range
    b"PROXY TCP4 192.0.2.7\r\n",                           # too short
    V2SIG + bytes([0x21, 0x11, 0, 4]) + b"\x01\x02\x03\x04",  # address block too short
    b"PROXY " + b"1" * 200,                                # no CRLF within 107 bytes
])
def test_bad_or_missing_header_from_trusted_peer_closes_that_connection(celerisd, tmp_path, bad):
    log = tmp_path / "access.log"
    srv = celerisd(config(log), ports=2)
    port = srv.ports[0]
    # A good connection open meanwhile is not disturbed.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as keep:
        keep.sendall(v2("192.0.2.1") + b"GET /who HTTP/1.1\r\nhost: x\r\n\r\n")
        assert keep.recv(65536).startswith(b"HTTP/1.1 200")
        assert exchange(port, bad + GET) == b""
        keep.sendall(b"GET /who HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert keep.recv(65536).startswith(b"HTTP/1.1 200")
    assert log_lines(log, 2) == ["192.0.2.1 /who 200", "192.0.2.1 /who 200"]
    assert srv.proc.poll() is None


def test_untrusted_peer_is_itself_and_its_header_is_refused(celerisd, tmp_path):
    log = tmp_path / "access.log"
    srv = celerisd(config(log, trusted="[10.0.0.0/8, \"2001:db8::/32\"]"), ports=2)
    port = srv.ports[0]
    # Served as what it is: 127.0.0.1.
    assert exchange(port, GET).startswith(b"HTTP/1.1 200")
    # A PROXY header from it is no request: no answer that serves /who.
    for hdr in (v1("192.0.2.66"), v2("192.0.2.67")):
        out = exchange(port, hdr + GET)
        assert b"200" not in out.split(b"\r\n", 1)[0] and b"hello" not in out, out
    # The listener without proxy_protocol never reads one either.
    out = exchange(srv.ports[1], v1("192.0.2.68") + GET)
    assert b"hello" not in out, out
    time.sleep(1.2)
    lines = log_lines(log, 1)
    assert lines[0] == "127.0.0.1 /who 200"
    assert not any("192.0.2.6" in ln for ln in lines), lines


def test_tls_after_the_header(celerisd, tmp_path):
    """The header is taken byte-exact from the socket: the ClientHello right
    behind it (same segment) reaches OpenSSL whole."""
    crt, key = self_signed(tmp_path)
    log = tmp_path / "access.log"
    srv = celerisd(config(log, tls=f", tls: {{ cert: {crt}, key: {key} }}"), ports=2)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", srv.ports[0]), timeout=10)
    # Header and ClientHello in one write: MSG_MORE keeps them in one segment.
    raw.send(v2("192.0.2.200"), socket.MSG_MORE)
    with ctx.wrap_socket(raw) as s:
        s.sendall(GET)
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    assert out.startswith(b"HTTP/1.1 200"), out
    assert log_lines(log, 1) == ["192.0.2.200 /who 200"]


@pytest.mark.parametrize("entry, line, col, msg", [
    ('{ address: "127.0.0.1:1", proxy_protocol: true }', 2, 5, "proxy_protocol and trusted go together"),
    ('{ address: "127.0.0.1:1", proxy_protocol: yes, trusted: [10.0.0.0/8] }', 2, 47,
     "proxy_protocol must be true or false"),
    ('{ address: "127.0.0.1:1", proxy_protocol: true, trusted: [10.0.0.0/8, 10.0.0.1/8] }', 2, 75,
     'bad address range "10.0.0.1/8"'),
    ('{ address: "127.0.0.1:1", proxy_protocol: true, trusted: [] }', 2, 62,
     "trusted must list at least one address range"),
])
def test_config_errors(tmp_path, entry, line, col, msg):
    path = tmp_path / "c.yaml"
    path.write_text(f"listen:\n  - {entry}\nroutes: []\n")
    got = expect_config_error(path, line, col)
    assert got.startswith(msg), got
