"""Load as a test: h2load against the three benchmark routes. Every request
must succeed with a 2xx; $CELERIS_LOAD_N sets the request count."""

import array
import pathlib
import re
import socket
import ssl
import sys
import subprocess
import time

import pytest

from support import BINARY, curl, h2load_counts, load_n

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from lib.h2frames import hp_literal  # noqa: E402  (RFC 7541 encoding, shared by the suites)

pytestmark = pytest.mark.load

CONFIG = """
workers: auto
log: { level: warn }
routes:
  - path: /bench
    static: { body: "OK", content_type: text/plain }
  - path: /json
    json: { template: { message: "Hello, World!" } }
  - path: /users/:id/posts/:postId
    methods: [GET]
    json: { template: { user: "{{param.id}}", post: "{{param.postId}}" } }
"""

EXPECT = {
    "/bench": b"OK",
    "/json": b'{"message":"Hello, World!"}',
    "/users/1/posts/2": b'{"user":"1","post":"2"}',
}


@pytest.fixture(scope="module")
def srv(module_celerisd):
    return module_celerisd(CONFIG)


@pytest.mark.parametrize("path", list(EXPECT))
def test_h2load(srv, path):
    n = load_n()
    clients = min(100, n)
    timeout = max(120, n // 1000)
    cmd = ["h2load", "-n", str(n), "-c", str(clients), "-m", "10", srv.url(path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert re.search(r"Application protocol: h2c", out), out
    res = h2load_counts(out)
    assert res["total"] == n, res
    assert res["failed"] == 0 and res["errored"] == 0 and res["timeout"] == 0, res
    assert res["done"] == n and res["succeeded"] == n, res
    assert res["2xx"] == n, res
    assert res["3xx"] == res["4xx"] == res["5xx"] == 0, res
    assert srv.proc.poll() is None, "daemon died under load:\n" + srv.stderr_text()[-4000:]
    # still answering correctly afterwards
    with srv.client() as c:
        r = c.get(path)
        assert r.status == 200 and r.body == EXPECT[path]


def test_h2load_mixed_paths_many_streams(srv):
    """One h2load run over all three routes with deeper multiplexing."""
    n = max(load_n() // 4, 300)
    n -= n % 3
    clients = min(50, n)
    uris = [srv.url(p) for p in EXPECT]
    p = subprocess.run(["h2load", "-n", str(n), "-c", str(clients), "-m", "100", *uris],
                       capture_output=True, text=True, timeout=max(120, n // 1000),
                       stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    res = h2load_counts(out)
    assert res["succeeded"] == n and res["2xx"] == n, res
    assert res["failed"] == res["errored"] == res["timeout"] == 0, res


def test_soak_600_clients_ramping(srv):
    """The load the reference design held: 600 concurrent clients, added 40 a
    second over 15 s, each making requests until the run ends. Every request
    must succeed; no client may see a protocol error."""
    n = max(load_n() * 3, 60000)
    cmd = ["h2load", "-c", "600", "-r", "40", "--rate-period", "1s", "-n", str(n), "-m", "4",
           "-T", "30", "-N", "30", srv.url("/users/1/posts/2")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                       stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    res = h2load_counts(out)
    assert res["succeeded"] == res["done"] == n, out
    assert res["failed"] == res["errored"] == res["timeout"] == 0, out
    assert res["2xx"] == n, out
    # 600 clients at 40 a second: the last one starts after 14 rate periods,
    # so a shorter run means the ramp (and so the 600) did not happen
    m = re.search(r"^finished in ([\d.]+)(m?s)", out, re.M)
    assert m, out
    seconds = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    assert seconds >= 13.5, out


def _sanitized():
    out = subprocess.run(["ldd", BINARY], capture_output=True, text=True).stdout
    return "libasan" in out


def _vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def _connections(srv, n, first):
    """N sockets to SRV, each having sent FIRST."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(first)
        socks.append(s)
    return socks


def _settled_rss_kib(pid, timeout=10.0):
    """VmRSS once the daemon has stopped growing (two readings 0.2 s apart
    agree), so a worker still answering the last connections is not caught
    half way."""
    last = _vmrss_kib(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = _vmrss_kib(pid)
        if now == last:
            return now
        last = now
    return last


def _smaps(pid):
    """{mapping: (Rss KiB, AnonHugePages KiB)} from /proc/PID/smaps."""
    out, cur = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                cur = " ".join([head[0]] + head[5:6])
                out[cur] = [0, 0]
            elif head[0] == "Rss:":
                out[cur][0] = int(head[1])
            elif head[0] == "AnonHugePages:":
                out[cur][1] = int(head[1])
    return out


def _touched_kib(pid):
    """KiB of the daemon's private writable mappings that have a page table
    entry (/proc/PID/pagemap's present bit): every page it wrote, and every
    page it only read, which a kernel may back with its shared zero page (not
    in VmRSS) or with a page of its own (in VmRSS). What VmRSS can grow to on
    any kernel, counted the same on all of them."""
    total = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pm:
        for line in maps:
            head = line.split()
            if head[1] != "rw-p" or head[5:] not in ([], ["[heap]"]):  # anonymous, private
                continue
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            if hi - lo > 1 << 36:  # a sanitizer's shadow (terabytes reserved), not ours
                continue
            for at in range(lo, hi, 1 << 28):  # 256 MiB of address space at a time
                pm.seek(at // 4096 * 8)
                entries = array.array("Q", pm.read((min(hi, at + (1 << 28)) - at) // 4096 * 8))
                total += sum(1 for e in entries if e >> 63)
    return total * 4


def _status_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1]
    return None


def test_idle_connection_memory(celerisd):
    """Issue #6's memory goal, issue #20 item 15: what an idle HTTP/2
    connection (preface and SETTINGS exchanged, nothing else) costs, over
    2,000 of them, counted two ways. Pages touched (pagemap, _touched_kib) is
    the same on every kernel: 14.7 KiB a connection on 6.18.44, of which
    6.7 is the worker's glibc arena (nghttp2's session, its two HPACK tables,
    our connection) and two pages of the pool's span: the one page of
    nghttp2's 16 KiB frame buffer that small frames write, and its 4 KiB
    stream map, which nghttp2 1.52 reads during the SETTINGS exchange but
    never writes (pagemap shows the kernel's zero page there). VmRSS counts that read page only where
    the kernel backs it with a page of its own: 10.7 here, where the shared
    zero page stands in, 14.7 on the machine of issue #20's report. So the
    bounds: touched at most 16 (14.7 and a margin of 9 %), and VmRSS no more
    than touched (plus a quarter KiB for the daemon's first use of code and
    file pages). Not counted, on any kernel: kernel socket buffers and page
    tables. The daemon turns transparent huge pages off for itself, so a
    kernel with THP "always" or mTHP sizes enabled cannot fault whole folios
    into the pool's sparse span (30 KiB a connection when it did): the test
    checks that and that no huge page grew. On failure it names the mappings
    that grew. (A sanitizer build keeps libc's blocks with their redzones;
    there the bound is only a sanity check.)"""
    n = 2000
    srv = celerisd("workers: 1\nlog: { level: warn }\nlimits: { max_connections: 4000 }\n"
                   "routes:\n  - path: /bench\n    static: { body: \"OK\" }\n")
    assert _status_field(srv.pid, "THP_enabled") == "0", "the daemon left THP on"
    # warm the worker (pools, first connection's one-off costs) before measuring
    assert curl([srv.url("/bench")]).returncode == 0
    before = _settled_rss_kib(srv.pid)
    touched_before = _touched_kib(srv.pid)
    maps_before = _smaps(srv.pid)
    socks = []
    try:
        socks = _connections(srv, n, PREFACE)
        for s in socks:
            buf = b""
            while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                chunk = s.recv(4096)
                assert chunk, "the server closed an idle connection"
                buf += chunk
            assert buf[3] == 4 and not buf[4] & 1, buf[:9]  # its SETTINGS first
            s.sendall(SETTINGS_ACK)
        after = _settled_rss_kib(srv.pid)
        touched = (_touched_kib(srv.pid) - touched_before) / n
        maps_after = _smaps(srv.pid)
        per_conn = (after - before) / n
        grew = sorted(((rss - maps_before.get(m, (0, 0))[0], m, huge)
                       for m, (rss, huge) in maps_after.items()), reverse=True)
        detail = "; ".join(f"{m}: +{d} KiB ({d / n:.2f} KiB/conn)" for d, m, _ in grew[:4])
        print(f"VmRSS {before} -> {after} KiB: {per_conn:.2f} KiB per idle connection, "
              f"{touched:.2f} KiB touched ({detail})")
        huge = sum(h for _, _, h in grew) - sum(h for _, h in maps_before.values())
        assert huge <= 0, f"huge pages grew by {huge} KiB: {detail}"
        assert touched <= (64 if _sanitized() else 16), f"{touched:.2f} KiB touched: {detail}"
        # (a sanitizer's shadow memory is in VmRSS, not in the touched count)
        assert _sanitized() or per_conn <= touched + 0.25, (per_conn, touched)
        # and they are still served
        socks[0].setblocking(False)
        with pytest.raises(BlockingIOError):
            socks[0].recv(1)  # no GOAWAY, no close
    finally:
        for s in socks:
            s.close()


def test_idle_tls_connection_memory(celerisd, tmp_path):
    """An HTTP/2 connection over TLS that has answered a request and gone idle
    keeps no output buffer (issue #20 item 15): OpenSSL gives its record
    buffers back when idle (SSL_MODE_RELEASE_BUFFERS) and so does the daemon
    its own 16 KiB record of output that SSL_write has not taken yet (without
    kernel TLS), as the output queue does with its chunks. 300 connections,
    each answered a 32 KiB body and then idle: 47.3 KiB touched a connection
    (pages, as _touched_kib counts them) on 6.18.44 while each kept its
    record, 31.3 with it given back (23.8 of it the worker's glibc arena,
    mostly OpenSSL's connection state; 8 the pool's span: the stream map,
    written once a stream was, and a page of the frame buffer); the bound is
    39, halfway. Where the kernel does TLS (kTLS), no record is kept either
    way. (With sanitizers the bound is only a sanity check.)"""
    from test_tls import make_cert
    crt, key = make_cert(tmp_path, "idle", "localhost", ["IP:127.0.0.1"])
    (tmp_path / "32k.bin").write_bytes(b"x" * 32768)
    n = 300
    srv = celerisd(f"""listen:
  - address: "127.0.0.1:{{port}}"
    tls: {{ cert: {crt}, key: {key} }}
workers: 1
log: {{ level: warn }}
routes:
  - path: /32k
    static: {{ file: {tmp_path / "32k.bin"} }}
""")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    block = (b"\x82\x87"  # GET, https
             + hp_literal(None, b"/32k", "without", name_index=4)
             + hp_literal(None, b"127.0.0.1", "without", name_index=1))
    request = (PREFACE + SETTINGS_ACK + len(block).to_bytes(3, "big") + b"\x01\x05"
               + (1).to_bytes(4, "big") + block)

    def serve(count):
        socks = []
        for _ in range(count):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
            assert s.selected_alpn_protocol() == "h2"
            s.sendall(request)
            buf, body = b"", 0
            while True:
                while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                    chunk = s.recv(65536)
                    assert chunk, "the server closed the connection"
                    buf += chunk
                length, ftype, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
                assert ftype not in (3, 7), f"RST_STREAM or GOAWAY: {buf[:9 + length]!r}"
                body += length if ftype == 0 else 0
                buf = buf[9 + length:]
                if ftype == 0 and flags & 1:
                    break
            assert body == 32768
            socks.append(s)
        return socks

    socks = serve(3)  # the worker's first connections' one-off costs
    try:
        before = _settled_rss_kib(srv.pid)
        touched_before = _touched_kib(srv.pid)
        maps_before = _smaps(srv.pid)
        socks += serve(n)
        after = _settled_rss_kib(srv.pid)
        touched = (_touched_kib(srv.pid) - touched_before) / n
        grew = sorted(((rss - maps_before.get(m, (0, 0))[0], m)
                       for m, (rss, _) in _smaps(srv.pid).items()), reverse=True)
        detail = "; ".join(f"{m}: +{d / n:.2f} KiB/conn" for d, m in grew[:3])
        per_conn = (after - before) / n
        print(f"TLS: VmRSS {before} -> {after} KiB: {per_conn:.2f} KiB per idle connection, "
              f"{touched:.2f} KiB touched ({detail})")
        # (with sanitizers, OpenSSL's freed blocks wait in ASan's quarantine)
        assert touched <= (1024 if _sanitized() else 39), f"{touched:.2f} KiB: {detail}"
        assert _sanitized() or per_conn <= touched + 0.25, (per_conn, touched)
    finally:
        for s in socks:
            s.close()


def test_repeated_field_verdicts_memory_bounded(celerisd):
    """celerisd keeps its verdict on fields a client's HPACK table repeats, with
    references on their buffers that outlive the client's table: what those
    hold is bounded to 4 KiB of names and values a connection (as much as a
    default HPACK table). Each of 300 connections sends one request with 32
    indexed fields of a 200-octet name and a 250-octet value: the client's
    table keeps 9 of them, the verdict table has room for 32. Measured: 30.2 KiB
    of RSS a connection with the bound, 35.4 without it, 23.8 with nothing
    kept; 30.11 on kernel 6.18, three runs alike (the daemon runs without
    transparent huge pages, so the kernel's THP defaults do not move it). The
    test allows 34: 13 % above what is measured, and still below the 35.4 the
    unbounded table costs, so that regression fails it."""
    n = 300
    srv = celerisd("workers: 1\nlog: { level: warn }\n"
                   "limits: { max_connections: 1000, max_header_list_size: 65536 }\n"
                   "routes:\n  - path: /bench\n    static: { body: \"OK\" }\n")
    port = str(srv.port).encode()
    block = (b"\x82\x86\x84"  # GET, http, /
             + hp_literal(None, b"127.0.0.1:" + port, "without", name_index=1)
             + b"".join(hp_literal(b"x-f%02d-" % i + b"n" * 194, bytes([97 + i % 26]) * 250,
                                   "incremental")
                        for i in range(32)))
    assert len(block) < 16384
    headers = len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block
    assert curl([srv.url("/bench")]).returncode == 0
    before = _settled_rss_kib(srv.pid)
    socks = []
    try:
        socks = _connections(srv, n, PREFACE + SETTINGS_ACK + headers)
        for s in socks:  # read to the end of the response (a DATA frame ending stream 1)
            buf = b""
            while True:
                while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
                    chunk = s.recv(65536)
                    assert chunk, "the server closed the connection"
                    buf += chunk
                length, ftype, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
                assert ftype != 3 and ftype != 7, f"RST_STREAM or GOAWAY: {buf[:9 + length]!r}"
                buf = buf[9 + length:]
                if ftype == 0 and flags & 1:
                    break
        after = _settled_rss_kib(srv.pid)
        per_conn = (after - before) / n
        print(f"VmRSS {before} -> {after} KiB: {per_conn:.2f} KiB per connection")
        assert per_conn <= (128 if _sanitized() else 34), per_conn
    finally:
        for s in socks:
            s.close()
