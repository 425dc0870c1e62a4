"""The compress middleware (README: Middleware, compress) against the real
daemon over HTTP/1.1 and h2c: round trips decoded with Python's zlib, brotli
and zstandard, negotiation with q-values, Vary, HEAD, non-200 and range
answers left alone, bodies already encoded, a module's streamed body, a
route's own settings and `compress: off`, and config errors."""

import gzip
import http.client
import os
import pathlib
import subprocess

import brotli
import pytest
import zstandard

from support import BINARY, expect_config_error, self_signed

MODULES = pathlib.Path(BINARY).resolve().parent / "modules"

TEXT = "celerisd compresses this line, again and again. " * 40  # 1960 bytes
TAIL = "x" * 100
PRE = gzip.compress(b"already gzipped " * 64)


def config(tmp):
    (tmp / "pre.gz").write_bytes(PRE)
    return f"""workers: 1
log: {{ level: info }}
modules_dir: {MODULES}
limits: {{ max_request_body: 4m }}
middleware:
  - compress: {{ encodings: [zstd, br, gzip], min_length: 256 }}
routes:
  - path: /text
    static: {{ body: "{TEXT}", content_type: "text/plain; charset=utf-8",
              headers: {{ etag: '"v1"', accept-ranges: bytes }} }}
  - path: /small
    static: {{ body: "{TAIL}", content_type: text/plain }}
  - path: /png
    static: {{ body: "{TEXT}", content_type: image/png }}
  - path: /json/:id
    json: {{ template: {{ id: "{{{{param.id}}}}", text: "{TEXT}" }} }}
  - path: /partial
    static: {{ status: 206, body: "{TEXT}", content_type: text/plain }}
  - path: /notmod
    static: {{ status: 304, body: "", content_type: text/plain }}
  - path: /pre
    static: {{ file: pre.gz, content_type: text/plain, headers: {{ content-encoding: gzip }} }}
  - path: /varied
    static: {{ body: "{TEXT}", content_type: text/plain, headers: {{ vary: "Origin, Accept-Encoding" }} }}
  - path: /off
    middleware: [ {{ compress: off }} ]
    static: {{ body: "{TEXT}", content_type: text/plain }}
  - path: /gzip-only
    middleware: [ {{ compress: {{ encodings: [gzip], min_length: 10 }} }} ]
    static: {{ body: "{TAIL}", content_type: text/plain }}
  - path: /echo
    methods: [POST]
    module: {{ name: echo }}
"""


@pytest.fixture(scope="module")
def srv(factory):
    return factory(config(factory.dir))


def decode(enc, body):
    if enc == "gzip":
        return gzip.decompress(body)
    if enc == "br":
        return brotli.decompress(body)
    if enc == "zstd":
        # streamed frames carry no content size: decode as a stream
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    assert enc is None, enc
    return body


class R:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        v = [x for k, x in self.headers if k == name]
        return v[0] if v else None

    def header_all(self, name):
        return [x for k, x in self.headers if k == name]


def h1(srv, path, headers=(), method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        c.request(method, path, body=body, headers=dict(headers))
        r = c.getresponse()
        data = r.read()
        return R(r.status, [(k.lower(), v) for k, v in r.getheaders()], data)
    finally:
        c.close()


def h2(srv, path, headers=(), method="GET", body=b""):
    with srv.client() as c:
        r = c.request(method, path, headers=list(headers), body=body, timeout=30)
        return R(r.status, r.headers, r.body)


BOTH = pytest.mark.parametrize("get", [h1, h2], ids=["h1", "h2c"])


@BOTH
@pytest.mark.parametrize("enc", ["gzip", "br", "zstd"])
def test_constant_body_round_trip(srv, get, enc):
    r = get(srv, "/text", [("accept-encoding", enc)])
    assert r.status == 200
    assert r.header("content-encoding") == enc
    assert r.header_all("vary") == ["accept-encoding"]
    assert len(r.body) < len(TEXT) // 4
    assert decode(enc, r.body) == TEXT.encode()
    # compressed on the fly: the tag is weak, ranges are not offered
    assert r.header("etag") == 'W/"v1"'
    assert r.header("accept-ranges") is None


@BOTH
def test_templated_json_compressed_per_request(srv, get):
    r = get(srv, "/json/42", [("accept-encoding", "gzip")])
    assert r.header("content-encoding") == "gzip"
    assert decode("gzip", r.body) == ('{"id":"42","text":"%s"}' % TEXT).encode()


@BOTH
@pytest.mark.parametrize("accept,want", [
    ("gzip, br;q=0.9", "gzip"),
    ("gzip;q=0.5, br;q=0.8, zstd;q=0.1", "br"),
    ("gzip, br, zstd", "zstd"),           # a tie: the configured order
    ("GZIP;Q=1.0, Br; q=1", "br"),
    ("*;q=0.5, zstd;q=0", "br"),          # zstd refused, the rest by "*"
    ("zstd;q=0, br;q=0, gzip;q=0", None),
    ("identity", None),
    ("deflate, compress", None),
    ("", None),
    ("x-gzip", "gzip"),
    ("gzip;q=0.2, br ; q=0.1", "gzip"),
    ("zstd;foo=bar;q=0.1,gzip;q=0.25", "gzip"),
    ("br;q=0.001, gzip;q=0.000", "br"),
])
def test_negotiation(srv, get, accept, want):
    r = get(srv, "/text", [("accept-encoding", accept)])
    assert r.status == 200
    assert r.header("content-encoding") == want
    assert r.header_all("vary") == ["accept-encoding"]  # compressed or not
    assert decode(want, r.body) == TEXT.encode()
    if want is None:
        assert r.header("etag") == '"v1"' and r.header("accept-ranges") == "bytes"


@BOTH
def test_no_accept_encoding_still_varies(srv, get):
    r = get(srv, "/text")
    assert r.header("content-encoding") is None
    assert r.header_all("vary") == ["accept-encoding"]
    assert r.body == TEXT.encode()


@BOTH
def test_head_is_not_compressed(srv, get):
    r = get(srv, "/text", [("accept-encoding", "gzip, br, zstd")], method="HEAD")
    assert r.status == 200 and r.body == b""
    assert r.header("content-encoding") is None
    assert r.header("content-length") == str(len(TEXT))
    assert r.header_all("vary") == ["accept-encoding"]


@BOTH
def test_range_request_is_not_compressed(srv, get):
    r = get(srv, "/text", [("accept-encoding", "gzip"), ("range", "bytes=0-9")])
    assert r.header("content-encoding") is None and r.body == TEXT.encode()


@BOTH
@pytest.mark.parametrize("path,status", [("/partial", 206), ("/notmod", 304)])
def test_non_200_untouched(srv, get, path, status):
    r = get(srv, path, [("accept-encoding", "gzip, br, zstd")])
    assert r.status == status
    assert r.header("content-encoding") is None
    if status == 206:
        assert r.body == TEXT.encode()
        assert r.header("vary") is None
    else:
        assert r.body == b""
        assert r.header_all("vary") == ["accept-encoding"]


@BOTH
def test_below_min_length_and_other_types(srv, get):
    r = get(srv, "/small", [("accept-encoding", "gzip")])
    assert r.header("content-encoding") is None and r.body == TAIL.encode()
    assert r.header_all("vary") == ["accept-encoding"]
    r = get(srv, "/png", [("accept-encoding", "gzip")])
    assert r.header("content-encoding") is None and r.body == TEXT.encode()
    assert r.header("vary") is None


@BOTH
def test_vary_named_once(srv, get):
    r = get(srv, "/varied", [("accept-encoding", "gzip")])
    assert r.header("content-encoding") == "gzip"
    assert r.header_all("vary") == ["Origin, Accept-Encoding"]


@BOTH
def test_never_twice(srv, get):
    r = get(srv, "/pre", [("accept-encoding", "br, gzip, zstd")])
    assert r.header_all("content-encoding") == ["gzip"]
    assert r.body == PRE


@BOTH
def test_route_off_and_route_settings(srv, get):
    r = get(srv, "/off", [("accept-encoding", "gzip, br, zstd")])
    assert r.header("content-encoding") is None and r.body == TEXT.encode()
    assert r.header("vary") is None
    # the route's compress replaces the global one: gzip only, min_length 10
    r = get(srv, "/gzip-only", [("accept-encoding", "zstd, br, gzip")])
    assert r.header("content-encoding") == "gzip"
    assert r.header_all("vary") == ["accept-encoding"]
    assert decode("gzip", r.body) == TAIL.encode()
    r = get(srv, "/gzip-only", [("accept-encoding", "zstd, br")])
    assert r.header("content-encoding") is None and r.body == TAIL.encode()


@BOTH
@pytest.mark.parametrize("enc", ["gzip", "br", "zstd"])
def test_streamed_module_body(srv, get, enc):
    """The echo module streams 1 MiB back in 16 KiB writes: encoded as it
    streams, decoded whole here."""
    line = b"".join(b"%08d streamed through the body filter\n" % i for i in range(26000))
    body = line[: 1 << 20]
    r = get(srv, "/echo", [("accept-encoding", enc), ("content-type", "text/plain")],
            method="POST", body=body)
    assert r.status == 200
    assert r.header("content-encoding") == enc
    assert r.header("content-length") is None
    assert len(r.body) < len(body) // 3
    assert decode(enc, r.body) == body
    # a type not listed streams as it is
    r = get(srv, "/echo", [("accept-encoding", enc), ("content-type", "image/png")],
            method="POST", body=body)
    assert r.header("content-encoding") is None and r.body == body


def test_streamed_body_cut_midway(srv):
    """A client that stops reading a compressed stream and resets it midway:
    the codec is let go (ASan's leak check at the daemon's exit, in the
    factory's teardown) and the server keeps serving."""
    body = os.urandom(400000).hex().encode()  # compresses to about half: more than a window
    for enc in ("gzip", "br", "zstd"):
        with srv.client(auto_ack=False) as c:
            sid = c.send_request("POST", "/echo", headers=[("accept-encoding", enc),
                                                           ("content-type", "text/plain")],
                                 body=body)
            r = c.responses[sid]
            c.wait_for(lambda: len(r.body) >= 60000, what="the first window of the body")
            assert r.header("content-encoding") == enc and not r.done
            c.reset_stream(sid)
        r = h2(srv, "/text", [("accept-encoding", enc)])
        assert decode(enc, r.body) == TEXT.encode()


@pytest.mark.parametrize("yaml,line,col,words", [
    ("middleware:\n  - compress: {encodings: [gzip, lzma]}\n", 2, 34,
     ["unknown encoding \"lzma\""]),
    ("middleware:\n  - compress: {encodings: [gzip, gzip]}\n", 2, 34, ["listed twice"]),
    ("middleware:\n  - compress: {encodings: []}\n", 2, 27, ["encodings needs one of"]),
    ("middleware:\n  - compress: {level: {br: 12}}\n", 2, 28, ["level.br", "0 and 11"]),
    ("middleware:\n  - compress: {level: {lz4: 1}}\n", 2, 24, ["unknown encoding \"lz4\""]),
    ("middleware:\n  - compress: {types: [text]}\n", 2, 24, ["not a media type"]),
    ("middleware:\n  - compress: {min_length: -1}\n", 2, 28, ["min_length"]),
    ("middleware:\n  - compress: {minlength: 1}\n", 2, 16,
     ["unknown key \"minlength\" in compress", "encodings, min_length, types, level"]),
    ("middleware:\n  - compress: maybe\n", 2, 15, ["compress is `off`, `on` or a mapping"]),
])
def test_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml + "routes:\n  - path: /a\n    static: {body: x}\n")
    expect_config_error(path, line, col, words)


@pytest.fixture(scope="module")
def tls_srv(factory):
    d = factory.dir
    self_signed(d)
    text = config(d).replace("workers: 1\n", f"""workers: 1
listen:
  - address: "127.0.0.1:{{port}}"
    tls: {{ cert: {d / "c.pem"}, key: {d / "k.pem"} }}
""")
    return factory(text)


@pytest.mark.parametrize("flag", ["--http2", "--http1.1"])
@pytest.mark.parametrize("enc", ["gzip", "br", "zstd"])
def test_over_tls(tls_srv, tmp_path, flag, enc):
    body = b"".join(b"%08d over TLS\n" % i for i in range(40000))
    (tmp_path / "in").write_bytes(body)
    for path, want, extra in [("/text", TEXT.encode(), []),
                              ("/echo", body, ["-H", "content-type: text/plain",
                                               "--data-binary", f"@{tmp_path / 'in'}"])]:
        out = tmp_path / "out"
        p = subprocess.run(["curl", "-sS", "-k", flag, "--max-time", "20", "-D", "-", "-o",
                            str(out), "-H", f"accept-encoding: {enc}", *extra,
                            f"https://127.0.0.1:{tls_srv.port}{path}"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert f"content-encoding: {enc}" in p.stdout.lower(), p.stdout
        assert decode(enc, out.read_bytes()) == want


# ---- the worker's codec contexts, reused across requests (server/codecs.h) ----

LEVELS_CONFIG = f"""workers: 1
modules_dir: {MODULES}
limits: {{ max_request_body: 4m }}
middleware:
  - compress: {{ encodings: [zstd, br, gzip], min_length: 256 }}
routes:
  - path: /json/:id
    json: {{ template: {{ id: "{{{{param.id}}}}", text: "{TEXT}" }} }}
  - path: /other/:id
    middleware: [ {{ compress: {{ level: {{ gzip: 1, br: 9, zstd: 1 }} }} }} ]
    json: {{ template: {{ id: "{{{{param.id}}}}", n: [1, 2, 3], text: "{TAIL} {TEXT[::-1]}" }} }}
  - path: /echo
    methods: [POST]
    module: {{ name: echo }}
"""

BODY_A = b"".join(b"%06d the first streamed body\n" % i for i in range(3000))
BODY_B = os.urandom(80000).hex().encode() + b"a different one, longer " * 2000


def _raw(srv, enc, kind, which):
    """One answer's encoded bytes, as sent: KIND "whole" (a JSON template with
    a placeholder) or "stream" (the echo module, 16 KiB writes)."""
    if kind == "whole":
        path, method, body, headers = f"/{which}", "GET", None, []
    else:
        path, method, body = "/echo", "POST", which
        headers = [("content-type", "text/plain")]
    r = h1(srv, path, [("accept-encoding", enc), *headers], method=method, body=body)
    assert r.status == 200 and r.header("content-encoding") == enc
    return r.body


@pytest.mark.parametrize("enc", ["gzip", "br", "zstd"])
def test_reused_context_same_output_as_fresh(factory, enc):
    """A codec context taken again from the worker's cache encodes exactly as
    a new one does: the same bytes for the same body on a daemon that has not
    compressed anything yet and on one whose contexts have just encoded other
    bodies, streamed and whole, at other levels (a route of its own), some
    cut short by a reset."""
    whole = factory(LEVELS_CONFIG)
    stream = factory(LEVELS_CONFIG)
    fresh = {("whole", "json/7"): _raw(whole, enc, "whole", "json/7"),
             ("stream", BODY_A): _raw(stream, enc, "stream", BODY_A)}
    busy = factory(LEVELS_CONFIG)
    for _ in range(2):
        _raw(busy, enc, "whole", "other/12345")
        _raw(busy, enc, "stream", BODY_B)
        with busy.client(auto_ack=False) as c:
            sid = c.send_request("POST", "/echo", headers=[("accept-encoding", enc),
                                                           ("content-type", "text/plain")],
                                 body=BODY_B)
            r = c.responses[sid]
            c.wait_for(lambda: len(r.body) >= 20000, what="part of the body")
            c.reset_stream(sid)
        _raw(busy, enc, "whole", "json/8")
        for (kind, which), want in fresh.items():
            got = _raw(busy, enc, kind, which)
            assert got == want, (kind, len(got), len(want))
    assert decode(enc, fresh[("stream", BODY_A)]) == BODY_A
    assert decode(enc, fresh[("whole", "json/7")]) == (
        '{"id":"7","text":"%s"}' % TEXT).encode()


@pytest.mark.parametrize("enc", ["gzip", "br", "zstd"])
def test_concurrent_streams_each_their_own_context(factory, enc):
    """More streams at once on one worker than the cache keeps idle (2): each
    gets a context of its own, and each body decodes to what was sent."""
    srv = factory(LEVELS_CONFIG)
    bodies = [b"%d " % k + (BODY_A if k % 2 else BODY_B)[k * 1000:] for k in range(7)]
    for _ in range(2):
        with srv.client() as c:
            sids = [c.send_request("POST", "/echo", headers=[("accept-encoding", enc),
                                                             ("content-type", "text/plain")],
                                   body=b) for b in bodies]
            for sid, b in zip(sids, bodies):
                r = c.responses[sid]
                c.wait_for(lambda: r.done, what="the whole answer")
                assert r.header("content-encoding") == enc
                assert decode(enc, r.body) == b


SHIM = pathlib.Path(BINARY).resolve().parent / "tests" / "libmalloc_count.so"


@pytest.mark.skipif(not SHIM.exists(), reason="no tests/libmalloc_count.so (a sanitizer build "
                    "intercepts malloc itself)")
@pytest.mark.parametrize("enc", ["gzip", "br", "zstd"])
def test_no_heap_call_per_compressed_request(factory, monkeypatch, enc):
    """Steady state: an answer compressed per request (a JSON template with a
    placeholder, and a module's streamed body) makes no more heap calls than
    the same answer sent uncompressed. The daemon runs with
    tests/malloc_count.c preloaded, which counts every malloc, calloc,
    realloc and aligned allocation of the process, the codec libraries'
    included (before the per-worker contexts: 5 for each gzip answer, more
    for brotli, 1-2 for zstd)."""
    counts = factory.dir / f"malloc-{enc}.counts"
    monkeypatch.setenv("LD_PRELOAD", str(SHIM))
    monkeypatch.setenv("CEL_MALLOC_COUNT_FILE", str(counts))
    srv = factory(LEVELS_CONFIG)
    monkeypatch.delenv("LD_PRELOAD")

    def allocs():
        return int.from_bytes(counts.read_bytes()[:8], "little")

    assert allocs() > 0, "the shim counts nothing"
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    n = 200

    def run(path, accept, count, body=None):
        for i in range(count):
            headers = {"accept-encoding": accept} if accept else {}
            if body is None:
                conn.request("GET", f"{path}{i}", headers=headers)
            else:
                headers["content-type"] = "text/plain"
                conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            assert r.status == 200 and r.getheader("content-encoding") == accept
            if accept and i == 0:
                want = body if body is not None else b'{"id":"0","text":"%s"}' % TEXT.encode()
                assert decode(accept, data) == want

    try:
        for path, body in [("/json/", None), ("/echo", BODY_A)]:
            run(path, enc, 20, body)  # the worker's contexts and buffers are made
            run(path, None, 20, body)
            a0 = allocs()
            run(path, None, n, body)
            a1 = allocs()
            run(path, enc, n, body)
            a2 = allocs()
            plain, compressed = a1 - a0, a2 - a1
            # a tenth of a call a request: the odd growth of some buffer,
            # never one a request
            assert compressed - plain <= n // 10, (path, plain, compressed)
    finally:
        conn.close()
