"""curl's common forms against celerisd, as a user following the README types
them: several URLs on one cleartext HTTP/2 connection (prior knowledge and the
h2c upgrade, one after the other and with -Z), HEAD, HTTP/1.1 keep-alive,
--compressed, and an upgrade request with a body.

Debian 12's curl 7.88.1 fails every URL after the first on a reused
prior-knowledge connection with "(16) Error in the HTTP2 framing layer", against
nghttpd, nginx and h2o alike: a curl bug (curl/curl#10634, fixed in curl's
repository by pull request #10643 before curl 8.0.0) that sends nothing for the
second request.
test_prior_knowledge_several_urls checks our side of that exchange with the
real curl, test_curl_frames_then_a_second_request replays curl's frames and the
request a fixed curl sends next, and the README's workaround (--http2) is
test_upgrade_several_urls_one_connection."""

import pathlib
import re
import shutil
import socket
import subprocess
import time

import pytest
from hpack import Decoder
from hyperframe.frame import Frame

from lib.h2frames import (DATA, GOAWAY, HEADERS, PING, PREFACE, RST_STREAM,
                          SETTINGS, WINDOW_UPDATE, encode_block, headers_frame, ping_frame,
                          settings_frame, window_update_frame)
from support import BINARY, H2Client, TIME_SCALE, parse_curl_headers, require_binary

MODULES = pathlib.Path(BINARY).resolve().parent / "modules"
TEXT = "celerisd compresses this line for curl --compressed. " * 40  # 2120 octets
JSON = b'{"message":"Hello, World!"}'


def config(log):
    return f"""workers: 1
modules_dir: {MODULES}
log: {{ level: info, access: {{ path: {log}, format: "%m %U%q %s %H" }} }}
routes:
  - path: /bench
    static: {{ body: "OK", content_type: text/plain }}
  - path: /json
    json: {{ template: {{ message: "Hello, World!" }} }}
  - path: /text
    middleware: [ {{ compress: {{ encodings: [zstd, br, gzip] }} }} ]
    static: {{ body: "{TEXT}", content_type: text/plain }}
  - path: /echo
    methods: [POST]
    module: {{ name: echo }}
  - path: /marker
    static: {{ body: "M" }}
"""


@pytest.fixture(scope="module")
def srv(factory, tmp_path_factory):
    require_binary()
    if not shutil.which("curl"):  # a missing tool fails its test (README, Tests)
        pytest.fail("curl is not installed (scripts/deps test installs it)")
    log = tmp_path_factory.mktemp("curl") / "access.log"
    s = factory(config(log))
    s.access_log = log
    return s


def curl_version():
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    m = re.match(r"curl (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups())


def run_curl(args, timeout=20):
    return subprocess.run(["curl", "-sS", "--max-time", str(int(timeout * TIME_SCALE)), *args],
                          capture_output=True, timeout=timeout * TIME_SCALE + 10,
                          stdin=subprocess.DEVNULL)


_markers = iter(range(1 << 30))


def settle(srv):
    """The access log's lines once a /marker request made now is in it (its
    line last): one worker writes its lines in the order its answers end, so
    whatever an exited curl got answered is before it."""
    mark = f"GET /marker?n={next(_markers)} 200 HTTP/2.0"
    with H2Client("127.0.0.1", srv.port) as c:
        assert c.get(mark.split()[1]).status == 200
    deadline = time.monotonic() + 10 * TIME_SCALE
    while True:
        lines = srv.access_log.read_text().splitlines() if srv.access_log.exists() else []
        if mark in lines:
            assert lines[-1] == mark, lines
            return lines
        assert time.monotonic() < deadline, f"no {mark!r} in the access log: {lines}"
        time.sleep(0.02)


def curl_reuse_bug():
    """curl 7.88.x on a reused prior-knowledge connection: curl/curl#10634."""
    return curl_version()[:2] == (7, 88)


PATHS = ["/bench?n=1", "/json", "/bench?n=3"]
BODIES = [b"OK", JSON, b"OK"]


def several(srv, tmp_path, flags):
    """curl FLAGS on the PATHS, each into its own file (with -Z the bodies and
    -w lines would interleave on stdout). Returns (the process, {path: its -w
    line "http_version num_connects"}, [each body, None when not written])."""
    args = []
    for i, path in enumerate(PATHS):
        args += ["-o", str(tmp_path / f"body{i}"), srv.url(path)]
    p = run_curl([*flags, "-w", "%{url_effective} %{http_version} %{num_connects}\n", *args])
    prefix = srv.url("")  # no slash: the paths have theirs
    info = {}
    for line in p.stdout.decode().splitlines():
        url, _, rest = line.partition(" ")
        info[url[len(prefix):]] = rest
    bodies = [(tmp_path / f"body{i}").read_bytes() if (tmp_path / f"body{i}").exists() else None
              for i in range(len(PATHS))]
    return p, info, bodies


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "Z"])
def test_prior_knowledge_several_urls(srv, tmp_path, parallel):
    """curl --http2-prior-knowledge with three URLs: a working curl gets all
    three on one connection. Debian 12's curl 7.88.x gets the first and fails
    the others without sending them (curl/curl#10634; the same against nghttpd,
    nginx and h2o): then what is checked is our side of it, the first answer
    whole and nothing else asked of the server (so nothing it did made curl
    fail)."""
    before = settle(srv)
    p, info, bodies = several(srv, tmp_path,
                              ["--http2-prior-knowledge", *(["-Z"] if parallel else [])])
    served = settle(srv)[len(before):-1]
    # A Debian update that backports curl's fix makes 7.88 succeed: then the
    # full check below applies to it as to any other curl.
    if curl_reuse_bug() and p.returncode != 0:
        assert p.returncode == 16, (p.returncode, p.stdout, p.stderr)
        assert b"Error in the HTTP2 framing layer" in p.stderr, p.stderr
        # the first transfer, whole, on the one connection curl made
        assert info[PATHS[0]] == "2 1" and bodies[0] == b"OK", (info, bodies)
        assert info[PATHS[1]] == info[PATHS[2]] == "0 0", info
        assert served == ["GET /bench?n=1 200 HTTP/2.0"], served
        return
    assert p.returncode == 0, p.stderr
    assert bodies == BODIES
    assert sorted(info.values()) == ["2 0", "2 0", "2 1"], info
    assert sorted(served) == sorted(f"GET {path} 200 HTTP/2.0" for path in PATHS), served


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "Z"])
def test_upgrade_several_urls_one_connection(srv, tmp_path, parallel):
    """The README's workaround for curl 7.88's prior-knowledge bug: --http2
    (h2c upgrade on the first request, the others on streams 3 and 5 of the
    same connection)."""
    p, info, bodies = several(srv, tmp_path, ["--http2", *(["-Z"] if parallel else [])])
    assert p.returncode == 0, p.stderr
    assert bodies == BODIES
    assert info == {PATHS[0]: "2 1", PATHS[1]: "2 0", PATHS[2]: "2 0"}, info


def read_frames(sock, buf, until, timeout=5.0):
    """Reads frames from SOCK (BUF: octets already read) until UNTIL(frame)
    holds; returns (frames, rest of BUF). Fails on close or timeout."""
    frames = []
    deadline = time.monotonic() + timeout * TIME_SCALE
    while True:
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            n = 9 + int.from_bytes(buf[:3], "big")
            f, _ = Frame.parse_frame_header(memoryview(buf[:9]))
            f.parse_body(memoryview(buf[9:n]))
            buf = buf[n:]
            frames.append(f)
            if until(f):
                return frames, buf
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; frames so far: {frames}"
        sock.settimeout(left)
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection; frames so far: {frames}"
        buf += chunk


# What curl's nghttp2 (1.52) refuses in a response (nghttp2_http_on_header,
# RFC 9113 8.2.2 and 8.3.2): connection-specific fields, names not in lower
# case or with other octets than a token's, a field value with CR, LF or NUL
# or white space at either end, pseudo-fields other than one :status, first.
CONNECTION_SPECIFIC = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                       "upgrade"}


def check_response_fields(fields):
    assert fields[0][0] == b":status" and re.fullmatch(rb"[1-5]\d\d", fields[0][1]), fields
    for name, value in fields[1:]:
        assert re.fullmatch(rb"[!#$%&'*+.^_`|~0-9a-z-]+", name), f"bad field name {name!r}"
        assert name.decode() not in CONNECTION_SPECIFIC, f"connection-specific {name!r}"
        assert not re.search(rb"[\r\n\0]", value) and value == value.strip(b" \t"), \
            f"bad value of {name!r}: {value!r}"


def check_stream(frames, sid, decoder):
    """The response on SID in FRAMES: HEADERS whose fields curl accepts, DATA
    adding up to content-length, END_STREAM on the last frame and nothing after
    it. Returns (fields, body)."""
    mine = [f for f in frames if f.stream_id == sid]
    assert mine and mine[0].type == HEADERS, mine
    assert "END_HEADERS" in mine[0].flags, mine
    fields = decoder.decode(bytes(mine[0].data), raw=True)
    check_response_fields(fields)
    body = b"".join(bytes(f.data) for f in mine[1:] if f.type == DATA)
    assert all(f.type == DATA for f in mine[1:]), mine
    ends = [i for i, f in enumerate(mine) if "END_STREAM" in f.flags]
    assert ends == [len(mine) - 1], f"END_STREAM must end the stream's last frame: {mine}"
    clen = [v for k, v in fields if k == b"content-length"]
    assert clen == [str(len(body)).encode()], (fields, len(body))
    return fields, body


def test_curl_frames_then_a_second_request(srv):
    """curl 7.88.1's first flight (its SETTINGS and connection-window
    WINDOW_UPDATE octet for octet, stream 1's HEADERS with curl's fields in
    curl's order, though not its HPACK choices), then, once stream 1 has ended, the request a fixed curl sends on the same
    connection (stream 3). Both answers must be what curl's nghttp2 accepts, and
    the connection stays open: no GOAWAY, no RST_STREAM, PING answered."""
    auth = f"127.0.0.1:{srv.port}"

    def req(path):
        return encode_block([(":method", "GET"), (":path", path), (":scheme", "http"),
                             (":authority", auth), ("user-agent", "curl/7.88.1"),
                             ("accept", "*/*")])

    decoder = Decoder()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        # SETTINGS_MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 32 MiB,
        # ENABLE_PUSH 0; the connection window to 32 MiB
        s.sendall(PREFACE + settings_frame([(3, 100), (4, 33554432), (2, 0)])
                  + window_update_frame(0, 33554432 - 65535)
                  + headers_frame(1, req("/bench"), end_stream=True))
        frames, buf = read_frames(s, b"", lambda f: f.stream_id == 1 and "END_STREAM" in f.flags)
        assert frames[0].type == SETTINGS and "ACK" not in frames[0].flags, frames
        settings = frames[0].settings
        # RFC 9113 6.5.2: the ranges, and a server's ENABLE_PUSH is 0 if sent
        assert settings.get(2, 0) == 0 and settings.get(4, 65535) <= 2 ** 31 - 1, settings
        assert 16384 <= settings.get(5, 16384) < 2 ** 24, settings
        assert all(settings.get(k, 0) in (0, 1) for k in (8, 9)), settings
        s.sendall(settings_frame(ack=True))
        assert [f for f in frames if f.type in (GOAWAY, RST_STREAM)] == [], frames
        assert [f for f in frames if f.type == SETTINGS and "ACK" in f.flags], frames
        assert all(f.window_increment > 0 for f in frames if f.type == WINDOW_UPDATE), frames
        fields, body = check_stream(frames, 1, decoder)
        assert (fields[0][1], body) == (b"200", b"OK")

        s.sendall(headers_frame(3, req("/json"), end_stream=True))
        more, buf = read_frames(s, buf, lambda f: f.stream_id == 3 and "END_STREAM" in f.flags)
        assert [f for f in more if f.type in (GOAWAY, RST_STREAM)] == [], more
        fields, body = check_stream(more, 3, decoder)
        assert (fields[0][1], body) == (b"200", JSON)

        s.sendall(ping_frame(b"curl7881"))
        last, _ = read_frames(s, buf, lambda f: f.type == PING and "ACK" in f.flags)
        assert [f for f in last if f.type in (GOAWAY, RST_STREAM)] == [], last
        assert bytes(last[-1].opaque_data) == b"curl7881"


@pytest.mark.parametrize("flag", ["--http2-prior-knowledge", "--http2"])
def test_head(srv, flag):
    """curl -I over h2c, with prior knowledge and through the upgrade (whose
    stream 1 nghttp2 is told is a HEAD): the head, content-length as for GET,
    no body."""
    p = run_curl(["-I", flag, "-w", "|%{http_version} %{size_download}", srv.url("/json")])
    assert p.returncode == 0, p.stderr
    head, _, tail = p.stdout.rpartition(b"|")
    assert tail == b"2 0", p.stdout
    if flag == "--http2":
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head
    status, fields = parse_curl_headers(head)
    assert status == 200 and fields["content-length"] == [str(len(JSON))], head


def test_http11_keep_alive_two_urls(srv):
    p = run_curl(["--http1.1", "-w", "|%{http_version} %{num_connects}\n", srv.url("/bench"),
                  srv.url("/json")])
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().splitlines() == ["OK|1.1 1", '{"message":"Hello, World!"}|1.1 0']


@pytest.mark.parametrize("flag", ["--http2-prior-knowledge", "--http2", "--http1.1"])
def test_compressed(srv, flag):
    """--compressed (curl 7.88 asks for deflate, gzip, br, zstd, those it was
    built with): the first of the route's codings curl takes, decoded by curl
    to the body as configured."""
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    features = re.search(r"^Features:(.*)$", out, re.M).group(1).split()
    coding = next(c for c, f in (("zstd", "zstd"), ("br", "brotli"), ("gzip", "libz"))
                  if f in features)
    p = run_curl(["--compressed", flag, "-D", "-", "-w", "|%{http_version}", srv.url("/text")])
    assert p.returncode == 0, p.stderr
    out, _, version = p.stdout.rpartition(b"|")
    head, _, body = out.partition(b"\r\n\r\n")
    if flag == "--http2":
        head, _, body = body.partition(b"\r\n\r\n")  # past the 101
    status, fields = parse_curl_headers(head + b"\r\n\r\n")
    assert status == 200 and fields["content-encoding"] == [coding], head
    assert body == TEXT.encode()
    assert version == (b"1.1" if flag == "--http1.1" else b"2")


def test_upgrade_request_with_a_body_answered_over_http11(srv):
    """curl --http2 -d sends Upgrade: h2c with its body; RFC 7540 3.2 lets a
    server ignore the upgrade, and celerisd does for a request with a body:
    the answer comes over HTTP/1.1 and is the whole answer."""
    p = run_curl(["--http2", "-v", "-d", "hello upgrade", "-w", "|%{http_version}",
                  srv.url("/echo")])
    assert p.returncode == 0, p.stderr
    assert b"Upgrade: h2c" in p.stderr and b"HTTP/1.1 101" not in p.stderr, p.stderr
    assert p.stdout == b"hello upgrade|1.1"
