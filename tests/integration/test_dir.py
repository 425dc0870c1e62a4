"""The `dir:` handler: files under a root, over HTTP/1.1 (curl, raw sockets),
h2c (curl, Python h2) and TLS.

One daemon (module scope) serves a tree built in tmp: index files, listings,
a single-page app's fallback, precompressed siblings, symlinks in and out of
the root. The large-file and replaced-file tests start their own daemon.
"""

import gzip
import hashlib
import os
import pathlib
import re
import socket
import subprocess
import threading
import time

import hpack
import hyperframe.frame as hf
import pytest

from support import (TIME_SCALE, curl, parse_curl_headers, reload_config, self_signed,
                     strace_calls)

SECRET = b"secret outside the root\n"
APP_JS = b"console.log('app');\n" * 200          # 4,000 bytes
APP_BR = b"BR-ENCODED-" + bytes(range(256)) * 3   # fake: the bytes are what counts
APP_ZST = b"ZSTD-ENCODED-" + bytes(range(200))
MID = bytes((i * 7 + 3) & 0xFF for i in range(100_000))  # streamed (above the small-file size)
NAMES_10K = 10_000


def build_tree(base):
    www = base / "www"
    (www / "sub").mkdir(parents=True)
    (www / "noindex").mkdir()
    (www / "assets").mkdir()
    (www / "many").mkdir()
    (www / "a.txt").write_bytes(b"hello\n")
    (www / "sub" / "index.html").write_bytes(b"<h1>sub</h1>\n")
    (www / "noindex" / "x.css").write_bytes(b"body{}\n")
    (www / "mid.bin").write_bytes(MID)
    (www / "site.webmanifest").write_bytes(b"{}\n")
    (www / "data.foo").write_bytes(b"foo\n")
    (www / "assets" / "app.js").write_bytes(APP_JS)
    (www / "assets" / "app.js.br").write_bytes(APP_BR)
    (www / "assets" / "app.js.zst").write_bytes(APP_ZST)
    (www / "assets" / "app.js.gz").write_bytes(gzip.compress(APP_JS, mtime=0))
    (www / "assets" / "plain.css").write_bytes(b"p{}\n")
    (www / "assets" / "only-gz.txt").write_bytes(b"only gz\n")
    (www / "assets" / "only-gz.txt.gz").write_bytes(gzip.compress(b"only gz\n", mtime=0))
    (www / "<b>&\"x'.txt").write_bytes(b"odd name\n")
    (www / "sp ace.txt").write_bytes(b"space\n")
    (www / ".hidden").write_bytes(b"dot\n")
    for i in range(NAMES_10K):
        (www / "many" / f"f{i:05d}.txt").write_bytes(b"%d\n" % i)
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    os.symlink(outside / "secret.txt", www / "out-abs")
    os.symlink("../outside/secret.txt", www / "out-rel")
    os.symlink(outside, www / "outdir")
    os.symlink("a.txt", www / "in-link")
    spa = base / "spa"
    (spa / "static").mkdir(parents=True)
    (spa / "index.html").write_bytes(b"<div id=app></div>\n")
    (spa / "static" / "main.js").write_bytes(b"main()\n")
    return www, spa


CONFIG = """
workers: 2
log: { level: warn }
routes:
  - path: /f/*path
    dir:
      root: @WWW@
      index: [index.html]
      max_age: 1h
      headers: { x-dir: "yes" }
      mime: { .foo: application/x-foo }
  - path: /l/*path
    dir: { root: @WWW@, listing: true }
  - path: /pc/*path
    dir: { root: @WWW@, precompressed: [br, zstd, gzip] }
  - path: /gzfirst/*path
    dir: { root: @WWW@, precompressed: [gzip, br] }
  - path: /follow/*path
    dir: { root: @WWW@, follow_symlinks: true }
  - path: /nocache/*path
    dir: { root: @WWW@, open_file_cache: 0, etag: false }
  - path: /*path
    dir: { root: @SPA@, index: [index.html], fallback: index.html }
  - path: /app/*rest
    dir: { root: @SPA@, index: [index.html], fallback: /index.html }
  - path: /u/:user/:kind/*path
    dir: { root: @WWW@, index: [index.html] }
  - path: /p/:section/:name
    dir: { root: @WWW@ }
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_tree(tmp_path_factory.mktemp("dir"))


@pytest.fixture(scope="module")
def srv(module_celerisd, tree):
    www, spa = tree
    return module_celerisd(CONFIG.replace("@WWW@", str(www)).replace("@SPA@", str(spa)))


@pytest.fixture
def client(srv):
    with srv.client() as c:
        yield c


def h1(srv, target, headers=(), method="GET"):
    """One HTTP/1.1 request with the exact TARGET (no client normalising it).
    Returns (status, {name: value}, body)."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    try:
        lines = [f"{method} {target} HTTP/1.1", "Host: x", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    first, *rest = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in rest:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(first.split()[1]), hdrs, body


def curl_h1(args):
    return subprocess.run(["curl", "-sS", "--http1.1", "--max-time", "20", *args],
                          capture_output=True, timeout=30, stdin=subprocess.DEVNULL)


def status_all(srv, client, path, headers=(), method="GET"):
    """The status PATH gets from curl over HTTP/1.1, curl over h2c and Python h2
    (which must agree); returns it."""
    hargs = []
    for k, v in headers:
        hargs += ["-H", f"{k}: {v}"]
    m = ["-X", method] if method not in ("GET", "HEAD") else (["-I"] if method == "HEAD" else [])
    got = []
    for run in (curl_h1, curl):
        p = run([*m, *hargs, "--path-as-is", "-o", os.devnull, "-w", "%{http_code}",
                 srv.url(path)])
        assert p.returncode == 0, p.stderr
        got.append(int(p.stdout))
    r = client.request(method, path, headers=list(headers))
    got.append(r.status)
    assert len(set(got)) == 1, (path, got)
    return got[0]


# The ETag's base-32 digits: the characters with 7-bit HPACK Huffman codes.
ETAG_DIGITS = ":BCDEFGHIJKLMNOPQRSTUVWYjkqvwxyz"


def etag_for(st):
    """The ETag of a file that os.stat gave ST: mtime 'X' size, in quotes."""
    def number(v):
        s = ETAG_DIGITS[v & 31]
        while v >> 5:
            v >>= 5
            s = ETAG_DIGITS[v & 31] + s
        return s
    return '"%sX%s"' % (number(int(st.st_mtime) & (1 << 64) - 1), number(st.st_size))


def etag_of(client, path):
    r = client.get(path)
    assert r.status == 200
    return r.header("etag"), r.header("last-modified")


# -- statuses, with every client ----------------------------------------------


@pytest.mark.parametrize("path,status", [
    ("/f/a.txt", 200),
    ("/f/sub/", 200),
    ("/f/sub", 301),
    ("/f/noindex/", 403),
    ("/f/nope.txt", 404),
    ("/f/a.txt/", 404),
    ("/f/../x", 403),
    ("/f/%2e%2e/outside/secret.txt", 403),
    ("/f/out-abs", 403),
    ("/l/noindex/", 200),
    ("/", 200),
    ("/some/client/route", 200),
])
def test_status_with_every_client(srv, client, path, status):
    assert status_all(srv, client, path) == status


def test_status_post_is_405(srv, client):
    assert status_all(srv, client, "/f/a.txt", method="POST") == 405
    st, h, _ = h1(srv, "/f/a.txt", method="DELETE")
    assert st == 405 and h["allow"] == "GET, HEAD"


def test_conditional_statuses_with_every_client(srv, client):
    etag, lm = etag_of(client, "/f/a.txt")
    assert status_all(srv, client, "/f/a.txt", [("if-none-match", etag)]) == 304
    assert status_all(srv, client, "/f/a.txt", [("if-modified-since", lm)]) == 304
    assert status_all(srv, client, "/f/a.txt", [("if-match", '"nope"')]) == 412
    assert status_all(srv, client, "/f/a.txt", [("range", "bytes=1-2")]) == 206
    assert status_all(srv, client, "/f/a.txt", [("range", "bytes=100-")]) == 416


def test_file_headers(client, tree):
    www, _ = tree
    r = client.get("/f/a.txt")
    assert r.status == 200 and r.body == b"hello\n"
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert r.header("content-length") == "6"
    assert r.header("accept-ranges") == "bytes"
    assert r.header("cache-control") == "max-age=3600"
    assert r.header("x-dir") == "yes"
    st = os.stat(www / "a.txt")
    assert r.header("etag") == etag_for(st)
    assert r.header("last-modified") == time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                      time.gmtime(int(st.st_mtime)))
    assert client.get("/f/sub/").body == b"<h1>sub</h1>\n"


def response_blocks(port, paths):
    """The HEADERS frames' header blocks (as sent, HPACK-coded) of GETs of
    PATHS on one raw HTTP/2 connection, in order."""
    enc = hpack.Encoder()
    out = hf.SettingsFrame(0).serialize()
    for i, path in enumerate(paths):
        frame = hf.HeadersFrame(1 + 2 * i)
        frame.data = enc.encode([(":method", "GET"), (":scheme", "http"),
                                 (":authority", "x"), (":path", path)])
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        out += frame.serialize()
    blocks = {}
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + out)
        data = b""
        while len(blocks) < len(paths):
            while len(data) < 9 or len(data) < 9 + int.from_bytes(data[:3], "big"):
                chunk = s.recv(1 << 16)
                assert chunk, "connection closed before the answers"
                data += chunk
            frame, n = hf.Frame.parse_frame_header(memoryview(data[:9]))
            frame.parse_body(memoryview(data[9:9 + n]))
            data = data[9 + n:]
            if isinstance(frame, hf.HeadersFrame):
                assert "END_HEADERS" in frame.flags   # no CONTINUATION for these
                blocks[frame.stream_id] = frame.data
    return [blocks[1 + 2 * i] for i in range(len(paths))]


def test_etag_sent_without_huffman_coding(srv, tree):
    """The ETag's digits make its Huffman code no shorter than its text (up to
    a size of 1 MiB), so the daemon's HPACK encoder (nghttp2, which never
    indexes an etag) sends it as it is on every answer, sparing the Huffman
    pass on both sides: its length octet (H bit clear) and text appear in the
    header block as they are."""
    www, _ = tree
    names = ["a.txt", "assets/app.js", "mid.bin"]    # 6, 4,000 and 100,000 bytes
    for name, block in zip(names, response_blocks(srv.port, ["/f/" + n for n in names])):
        etag = etag_for(os.stat(www / name)).encode()
        assert bytes([len(etag)]) + etag in block, (name, etag, block)


def test_mime_types(client):
    assert client.get("/f/site.webmanifest").header("content-type") == "application/manifest+json"
    assert client.get("/f/data.foo").header("content-type") == "application/x-foo"
    assert client.get("/f/assets/app.js").header("content-type").startswith("text/javascript")
    assert client.get("/f/mid.bin").header("content-type") == "application/octet-stream"


def test_redirect_keeps_query_and_never_leaves_the_site(srv):
    st, h, _ = h1(srv, "/f/sub?x=1")
    assert st == 301 and h["location"] == "/f/sub/?x=1"


def test_spa_fallback(client, tree):
    _, spa = tree
    index = (spa / "index.html").read_bytes()
    for path in ("/", "/deep/link/7", "/app/", "/app/x/y"):
        r = client.get(path)
        assert r.status == 200 and r.body == index, path
    assert client.get("/static/main.js").body == b"main()\n"
    # a refused path is not a missing file: no fallback for it
    assert client.get("/%2e%2e/x").status == 403


def test_nocache_route_without_etag(client):
    r = client.get("/nocache/a.txt")
    assert r.status == 200 and r.body == b"hello\n"
    assert r.header("etag") is None and r.header("last-modified")


# -- paths that try to leave the root -----------------------------------------


@pytest.mark.parametrize("target", [
    "/f/../outside/secret.txt",
    "/f/%2e%2e/outside/secret.txt",
    "/f/%2E%2E/outside/secret.txt",
    "/f/.%2e/outside/secret.txt",
    "/f/sub/../../outside/secret.txt",
    "/f/sub/..%2f..%2foutside/secret.txt",
    "/f/..%5coutside%5csecret.txt",
    "/f/..\\outside\\secret.txt",
    "/f/a.txt%00.png",
    "/f/%00",
    "/f/out-abs",
    "/f/out-rel",
    "/f/outdir/secret.txt",
    "/f/%252e%252e/outside/secret.txt",
    "/f/%2",
    "/f/%zz",
])
def test_escapes_refused(srv, client, target):
    st, _, body = h1(srv, target)
    assert st in (403, 404), (target, st)
    assert SECRET not in body
    r = client.get(target)
    assert r.status == st and SECRET not in r.body


@pytest.mark.parametrize("path,body", [
    ("/f/site.web%6Danifest", b"{}\n"),      # the escape past the first eight octets
    ("/f/site.webmanifes%74", b"{}\n"),      # in the last, overlapping word only
    ("/f/sp%20ace.txt", b"space\n"),
    ("/f/assets/plain.css", b"p{}\n"),       # a '/' in a long path: the octet loop
    ("/f/assets//plain.css", b"p{}\n"),
])
def test_long_paths_decoded_not_taken_as_plain(client, path, body):
    """Paths over eight octets are checked a word at a time (cel_fspath_plain):
    a '%' or '/' anywhere in them still goes to the decoding pass."""
    r = client.get(path)
    assert (r.status, r.body) == (200, body), path


def test_symlink_inside_root_is_served(client):
    r = client.get("/f/in-link")
    assert r.status == 200 and r.body == b"hello\n"


def test_follow_symlinks_true_leaves_the_root(client):
    r = client.get("/follow/out-abs")
    assert r.status == 200 and r.body == SECRET
    assert client.get("/follow/%2e%2e/outside/secret.txt").status == 403


# -- directories ----------------------------------------------------------------


def test_listing_escapes_names(client):
    r = client.get("/l/")
    assert r.status == 200 and r.header("content-type").startswith("text/html")
    page = r.body.decode()
    assert "&lt;b&gt;&amp;&quot;x&#39;.txt" in page
    assert "<b>" not in page.replace("<body>", "")
    assert 'href="%3Cb%3E%26%22x%27.txt"' in page
    assert 'href="sp%20ace.txt"' in page
    assert 'href="sub/"' in page
    assert ".hidden" not in page
    assert client.get("/l/sp%20ace.txt").body == b"space\n"
    assert client.get("/f/noindex/").status == 403


def test_directory_of_10000_files(client):
    r = client.get("/l/many/")
    assert r.status == 200
    names = re.findall(rb'href="(f\d{5}\.txt)"', r.body)
    assert len(names) == NAMES_10K
    assert names == sorted(names)
    r = client.get("/f/many/f04321.txt")
    assert r.status == 200 and r.body == b"4321\n"
    assert client.get("/f/many/f10000.txt").status == 404


# -- HEAD, ranges ---------------------------------------------------------------


def test_head(srv, client):
    for path, size in (("/f/a.txt", 6), ("/f/mid.bin", len(MID))):
        r = client.request("HEAD", path)
        assert r.status == 200 and r.body == b"" and r.header("content-length") == str(size)
        p = curl_h1(["-I", srv.url(path)])
        st, h = parse_curl_headers(p.stdout)
        assert st == 200 and h["content-length"] == [str(size)]
        assert h["accept-ranges"] == ["bytes"]
    # HEAD ignores Range (RFC 9110 14.2)
    r = client.request("HEAD", "/f/mid.bin", headers=[("range", "bytes=0-9")])
    assert r.status == 200 and r.header("content-length") == str(len(MID))


def parse_multipart(ctype, body):
    m = re.match(r"multipart/byteranges; boundary=(\S+)$", ctype)
    assert m, ctype
    b = m.group(1).encode()
    assert body.endswith(b"\r\n--" + b + b"--\r\n")
    parts = []
    for chunk in body.split(b"\r\n--" + b)[1:-1]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        hdrs = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        parts.append((hdrs, data))
    return parts


@pytest.mark.parametrize("path,data", [("/f/mid.bin", MID), ("/f/assets/app.js", APP_JS)])
def test_multi_range_byte_for_byte(srv, client, path, data):
    n = len(data)
    spec = "bytes=0-9, 100-199, -50, 3000-"
    want = [(0, 10), (100, 100), (n - 50, 50), (3000, n - 3000)]
    r = client.get(path, headers=[("range", spec)])
    assert r.status == 206
    assert int(r.header("content-length")) == len(r.body)
    parts = parse_multipart(r.header("content-type"), r.body)
    assert len(parts) == len(want)
    for (hdrs, got), (off, ln) in zip(parts, want):
        assert hdrs[b"content-range"] == b"bytes %d-%d/%d" % (off, off + ln - 1, n)
        assert got == data[off:off + ln]
    # the same over HTTP/1.1
    st, h, body = h1(srv, path, [("Range", spec)])
    assert st == 206 and int(h["content-length"]) == len(body)
    assert [d for _, d in parse_multipart(h["content-type"], body)] == \
           [data[o:o + ln] for o, ln in want]


def test_single_ranges(client):
    n = len(MID)
    for spec, off, ln in (("bytes=5-", 5, n - 5), ("bytes=-1", n - 1, 1),
                          ("bytes=70000-70009", 70000, 10), ("bytes=0-999999", 0, n),
                          ("bytes=99999-99999, 200000-", 99999, 1)):
        r = client.get("/f/mid.bin", headers=[("range", spec)])
        assert r.status == 206, spec
        assert r.header("content-range") == f"bytes {off}-{off + ln - 1}/{n}", spec
        assert r.body == MID[off:off + ln], spec


def test_unsatisfiable_and_ignored_ranges(client):
    n = len(MID)
    r = client.get("/f/mid.bin", headers=[("range", "bytes=100000-")])
    assert r.status == 416 and r.header("content-range") == f"bytes */{n}"
    for spec in ("bytes=5-2", "items=0-1", "bytes=x-", "bytes=" + ",".join(["0-0"] * 40)):
        r = client.get("/f/mid.bin", headers=[("range", spec)])
        assert r.status == 200 and r.body == MID, spec


def test_if_range(client):
    etag, lm = etag_of(client, "/f/mid.bin")
    r = client.get("/f/mid.bin", headers=[("range", "bytes=0-3"), ("if-range", etag)])
    assert r.status == 206 and r.body == MID[:4]
    r = client.get("/f/mid.bin", headers=[("range", "bytes=0-3"), ("if-range", lm)])
    assert r.status == 206
    r = client.get("/f/mid.bin", headers=[("range", "bytes=0-3"), ("if-range", '"other"')])
    assert r.status == 200 and r.body == MID
    r = client.get("/f/mid.bin", headers=[("range", "bytes=0-3"),
                                          ("if-range", "Thu, 01 Jan 1970 00:00:00 GMT")])
    assert r.status == 200 and len(r.body) == len(MID)


def test_path_is_the_right_param_among_several(client):
    """The path under the root is the route's wildcard (else its last
    :param), picked by its place among the route's params: each of these
    answers differently when another param is taken."""
    r = client.get("/u/a.txt/sub/sub/index.html")     # user a.txt, kind sub
    assert r.status == 200 and r.body == b"<h1>sub</h1>\n"
    assert client.get("/u/sub/a.txt/a.txt").body == b"hello\n"
    assert client.get("/u/x/y/sub/").body == b"<h1>sub</h1>\n"
    r = client.get("/p/sub/a.txt")                     # section sub, name a.txt
    assert r.status == 200 and r.body == b"hello\n"
    assert client.get("/p/a.txt/nope").status == 404


# -- conditional requests --------------------------------------------------------


def test_conditionals(client):
    etag, lm = etag_of(client, "/f/a.txt")
    r = client.get("/f/a.txt", headers=[("if-none-match", etag)])
    assert r.status == 304 and r.body == b""
    assert r.header("etag") == etag and r.header("cache-control") == "max-age=3600"
    r = client.get("/f/a.txt", headers=[("if-none-match", f'"x", W/{etag}')])
    assert r.status == 304
    assert client.get("/f/a.txt", headers=[("if-none-match", "*")]).status == 304
    assert client.get("/f/a.txt", headers=[("if-none-match", '"x"')]).status == 200
    assert client.get("/f/a.txt", headers=[("if-modified-since", lm)]).status == 304
    old = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert client.get("/f/a.txt", headers=[("if-modified-since", old)]).status == 200
    assert client.get("/f/a.txt", headers=[("if-modified-since", "garbage")]).status == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
    assert client.get("/f/a.txt", headers=[("if-none-match", '"x"'),
                                           ("if-modified-since", lm)]).status == 200
    assert client.get("/f/a.txt", headers=[("if-match", etag)]).status == 200
    assert client.get("/f/a.txt", headers=[("if-match", "*")]).status == 200
    assert client.get("/f/a.txt", headers=[("if-match", f"W/{etag}")]).status == 412
    assert client.get("/f/a.txt", headers=[("if-unmodified-since", old)]).status == 412
    assert client.get("/f/a.txt", headers=[("if-unmodified-since", lm)]).status == 200
    # the obsolete date forms parse too
    asctime = time.strftime("%a %b %e %H:%M:%S %Y", time.strptime(lm, "%a, %d %b %Y %H:%M:%S GMT"))
    assert client.get("/f/a.txt", headers=[("if-modified-since", asctime)]).status == 304


def test_304_leaves_out_last_modified_beside_an_etag(srv, client):
    """RFC 9110 15.4.5: a 304 repeats the ETag, Vary and Cache-Control the 200
    would have had, but not Last-Modified while there is an ETag (as h2o);
    without an ETag (etag: false) Last-Modified is the validator and stays."""
    etag, lm = etag_of(client, "/f/a.txt")
    for cond in (("if-none-match", etag), ("if-modified-since", lm)):
        r = client.get("/f/a.txt", headers=[cond])
        assert r.status == 304 and r.header("etag") == etag, cond
        assert r.header("last-modified") is None, cond
        assert r.header("cache-control") == "max-age=3600" and r.header("x-dir") == "yes"
    st, h, body = h1(srv, "/f/a.txt", [("if-none-match", etag)])
    assert st == 304 and h["etag"] == etag and "last-modified" not in h and body == b""
    pc = client.get("/pc/assets/app.js").header("etag")
    r = client.get("/pc/assets/app.js", headers=[("if-none-match", pc)])
    assert r.status == 304 and r.header("vary") == "accept-encoding"
    assert r.header("etag") == pc and r.header("last-modified") is None
    r = client.get("/nocache/a.txt", headers=[("if-modified-since", lm)])
    assert r.status == 304 and r.header("etag") is None and r.header("last-modified") == lm


def test_validators_again_and_again_on_one_connection(client):
    """Per-resource fields (If-None-Match, If-Modified-Since) come fresh on
    every request; after the first few the daemon takes them by a short path
    (on_fresh), which must check and copy them as the long one does: both
    names in turn, a bad octet resets that stream only."""
    etag, lm = etag_of(client, "/f/a.txt")
    for _ in range(4):
        assert client.get("/f/a.txt", headers=[("if-none-match", etag)]).status == 304
        assert client.get("/f/a.txt", headers=[("if-modified-since", lm)]).status == 304
        r = client.get("/f/a.txt", headers=[("if-none-match", '"x"'), ("if-modified-since", lm)])
        assert r.status == 200 and r.body == b"hello\n"
        r = client.get("/f/a.txt", headers=[("if-modified-since", lm), ("if-none-match", etag)])
        assert r.status == 304
    for bad in (etag + "\x01", " " + etag, etag + "\t"):
        r = client.get("/f/a.txt", headers=[("if-none-match", bad)])
        assert r.status is None and r.reset == 1, (bad, r)   # PROTOCOL_ERROR
        assert client.get("/f/a.txt", headers=[("if-none-match", etag)]).status == 304


# -- precompressed siblings -------------------------------------------------------


@pytest.mark.parametrize("ae,enc,body", [
    ("br", "br", APP_BR),
    ("gzip, br", "br", APP_BR),
    ("gzip, br;q=0.5", "gzip", None),
    ("zstd;q=0.9, br;q=0.8, gzip;q=0.1", "zstd", APP_ZST),
    ("zstd, br", "br", APP_BR),         # equal q: the route's order
    ("br;q=0, gzip", "gzip", None),
    ("*", "br", APP_BR),
    ("*;q=0.5, gzip", "gzip", None),
    ("identity", None, APP_JS),
    ("br;q=0, zstd;q=0, gzip;q=0", None, APP_JS),
    ("", None, APP_JS),
])
def test_precompressed_by_q_value(client, tree, ae, enc, body):
    www, _ = tree
    if body is None:
        body = (www / "assets" / "app.js.gz").read_bytes()
    headers = [("accept-encoding", ae)] if ae else []
    r = client.get("/pc/assets/app.js", headers=headers)
    assert r.status == 200
    assert r.header("content-encoding") == enc
    assert r.header("vary") == "accept-encoding"
    assert r.body == body
    assert r.header("content-type").startswith("text/javascript")
    assert r.header("content-length") == str(len(body))


def test_precompressed_order_and_missing_siblings(client, tree):
    www, _ = tree
    r = client.get("/gzfirst/assets/app.js", headers=[("accept-encoding", "br, gzip")])
    assert r.header("content-encoding") == "gzip"
    r = client.get("/pc/assets/only-gz.txt", headers=[("accept-encoding", "br, zstd, gzip")])
    assert r.header("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == b"only gz\n"
    r = client.get("/pc/assets/plain.css", headers=[("accept-encoding", "br, gzip")])
    assert r.header("content-encoding") is None and r.body == b"p{}\n"
    # ranges apply to the encoded bytes, and each variant has its own ETag
    r = client.get("/pc/assets/app.js", headers=[("accept-encoding", "br"),
                                                 ("range", "bytes=0-9, 20-29")])
    assert r.status == 206
    assert [d for _, d in parse_multipart(r.header("content-type"), r.body)] == \
           [APP_BR[0:10], APP_BR[20:30]]
    plain = client.get("/pc/assets/app.js").header("etag")
    br = client.get("/pc/assets/app.js", headers=[("accept-encoding", "br")]).header("etag")
    assert plain != br
    r = client.get("/pc/assets/app.js", headers=[("accept-encoding", "br"),
                                                 ("if-none-match", br)])
    assert r.status == 304


def test_precompressed_with_curl_compressed(srv):
    p = curl(["--compressed", "-D", "-", srv.url("/pc/assets/only-gz.txt")])
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith(b"only gz\n")
    assert b"content-encoding: gzip" in p.stdout


# -- the open-file cache: a changed file is served new within a second --------------


def test_changed_file_served_new(client, tree):
    www, _ = tree
    f = www / "changing.txt"
    assert client.get("/f/changing.txt").status == 404
    f.write_bytes(b"one\n")
    deadline = time.monotonic() + 5 * TIME_SCALE
    while client.get("/f/changing.txt").status != 200:
        assert time.monotonic() < deadline, "new file not seen"
        time.sleep(0.1)
    first = client.get("/f/changing.txt")
    assert first.body == b"one\n"
    tmp = www / "changing.tmp"
    tmp.write_bytes(b"two, longer\n")
    os.utime(tmp, (time.time() + 10, time.time() + 10))
    os.rename(tmp, f)
    t0 = time.monotonic()
    while True:
        r = client.get("/f/changing.txt")
        if r.body == b"two, longer\n":
            break
        assert r.body == b"one\n" and r.header("etag") == first.header("etag")
        assert time.monotonic() - t0 < 5 * TIME_SCALE, "stale after 5 s"
        time.sleep(0.05)
    assert r.header("etag") != first.header("etag")
    # seen within a second or so (revalidated once a second): generous bound
    assert time.monotonic() - t0 < 3 * TIME_SCALE


def rchar(pid):
    """Bytes the daemon has read so far (files and sockets alike)."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar")


KEPT = bytes((i * 13 + 5) & 0xFF for i in range(12_000))  # under the 16 KiB kept at most
ASKS = 200


def test_small_file_bytes_kept_not_read_per_request(celerisd, tmp_path):
    """A hot small file's bytes come from the open-file cache: answering it
    200 times reads it a few times (twice a second at most: once answered
    from the file, then kept), not 200 times. The route without kept bytes
    shows what the measure sees when every answer reads the file."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "k.bin").write_bytes(KEPT)
    srv = celerisd(f"""
workers: 1
log: {{ level: warn }}
routes:
  - path: /k/*path
    dir: {{ root: "{tmp_path / 'www'}" }}
  - path: /nok/*path
    dir: {{ root: "{tmp_path / 'www'}", open_file_cache_bytes: 0 }}
""")
    read = {}
    with srv.client() as c:
        for route in ("/nok/", "/k/"):
            before = rchar(srv.pid)
            for _ in range(ASKS):
                r = c.get(route + "k.bin")
                assert r.status == 200 and r.body == KEPT
            read[route] = rchar(srv.pid) - before
    assert read["/nok/"] >= ASKS * len(KEPT), read
    assert read["/k/"] < ASKS * len(KEPT) // 4, read


def test_kept_bytes_follow_a_rewrite_that_keeps_size_and_mtime(client, tree):
    """Kept bytes are read again when the slot is looked up again (once a
    second): a file rewritten in place, same size, its mtime put back, is
    served new within a second or so all the same."""
    www, _ = tree
    f = www / "same.txt"
    f.write_bytes(b"version-1\n")
    deadline = time.monotonic() + 5 * TIME_SCALE
    while client.get("/f/same.txt").status != 200:
        assert time.monotonic() < deadline, "new file not seen"
        time.sleep(0.1)
    for _ in range(5):  # answered again and again: its bytes are kept
        assert client.get("/f/same.txt").body == b"version-1\n"
    st = os.stat(f)
    with open(f, "r+b") as fh:
        fh.write(b"version-2\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    t0 = time.monotonic()
    while client.get("/f/same.txt").body != b"version-2\n":
        assert time.monotonic() - t0 < 3 * TIME_SCALE, "stale bytes after 3 s"
        time.sleep(0.05)


KEPT_V1, KEPT_V2 = b"1" * 4096, b"2" * 4096  # kept, and answered from the cache's block


def test_kept_bytes_an_answer_still_sends_are_not_overwritten(celerisd, tmp_path):
    """Kept bytes of 1 KiB and more are sent from the cache's own block, by
    reference. Answers that wait on a shut flow-control window still point
    into it when the file is rewritten (same size and mtime) and its slot is
    read again a second later: those answers keep the old bytes, the new ones
    get the new bytes (the slot reads into a block of its own)."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    (tmp_path / "www").mkdir()
    f = tmp_path / "www" / "v.bin"
    f.write_bytes(KEPT_V1)
    srv = celerisd(f"""
workers: 1
log: {{ level: warn }}
routes:
  - path: /k/*path
    dir: {{ root: "{tmp_path / 'www'}" }}
""")
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20 * TIME_SCALE)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    hdrs = [(":method", "GET"), (":path", "/k/v.bin"), (":scheme", "http"),
            (":authority", "x")]
    ids = []
    for _ in range(3):  # in one read: the second and third answers are kept bytes
        ids.append(conn.get_next_available_stream_id())
        conn.send_headers(ids[-1], hdrs, end_stream=True)
    s.sendall(conn.data_to_send())
    bodies, heads, ended = {i: b"" for i in ids}, set(), set()

    def pump(until):
        deadline = time.monotonic() + 10 * TIME_SCALE
        while not until():
            assert time.monotonic() < deadline, (bodies, ended)
            data = s.recv(1 << 16)
            assert data, "connection closed"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    heads.add(ev.stream_id)
                elif isinstance(ev, h2.events.DataReceived):
                    bodies[ev.stream_id] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended.add(ev.stream_id)
            s.sendall(conn.data_to_send())

    pump(lambda: len(heads) == len(ids))  # answered; their bodies wait on the window
    assert not any(bodies.values())
    st = os.stat(f)
    with open(f, "r+b") as fh:
        fh.write(KEPT_V2)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(1.2)  # the slot is looked up again in a later second
    with srv.client() as c:
        t0 = time.monotonic()
        while True:  # read from the file, then kept: into the block the waiting answers hold?
            got = [c.get("/k/v.bin").body for _ in range(3)]
            if got == [KEPT_V2] * 3:
                break
            assert time.monotonic() - t0 < 5 * TIME_SCALE, "new bytes not served"
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
    s.sendall(conn.data_to_send())
    pump(lambda: len(ended) == len(ids))
    s.close()
    assert [bodies[i] for i in ids] == [KEPT_V1] * 3


# -- the open-file cache's descriptors ------------------------------------------------

MEDIUM = bytes((i * 11 + 1) & 0xFF for i in range(64 * 1024))  # streamed: above the small-file size
REPEAT = 100
DESCRIPTOR_CALLS = ("open", "openat", "openat2", "dup", "dup2", "dup3", "fcntl", "close")


@pytest.fixture(scope="module")
def fdsrv(module_celerisd, tmp_path_factory):
    """One worker, a route with the default cache and routes whose cache has
    one slot (every lookup takes the slot of the one before)."""
    www = tmp_path_factory.mktemp("fd") / "www"
    (www / "dir").mkdir(parents=True)
    (www / "m.bin").write_bytes(MEDIUM)
    (www / "s.txt").write_bytes(b"small\n" * 100)
    (www / "dir" / "x.css").write_bytes(b"x{}\n")
    srv = module_celerisd(f"""
workers: 1
log: {{ level: warn }}
routes:
  - path: /d/*path
    dir: {{ root: {www} }}
  - path: /one/*path
    dir: {{ root: {www}, precompressed: [br, gzip], open_file_cache: 1 }}
  - path: /onel/*path
    dir: {{ root: {www}, index: [index.html], listing: true, open_file_cache: 1 }}
""")
    srv.www = www
    return srv


def open_fds_of(pid, path):
    """How many of PID's descriptors are PATH."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
        except FileNotFoundError:
            pass
    return n


def answers(srv, proto, path):
    """REPEAT answers to GET PATH on one connection (h2c: Python h2; h1:
    curl, which keeps its connection): their bodies."""
    from h2client import H2Client
    if proto == "h2c":
        with H2Client("127.0.0.1", srv.port, timeout=30 * TIME_SCALE) as c:
            return [c.get(path).body for _ in range(REPEAT)]
    p = subprocess.run(["curl", "-sS", "--http1.1", "--max-time", str(int(60 * TIME_SCALE)),
                        "-w", "\\n--cut--\\n"] + [srv.url(path)] * REPEAT,
                       capture_output=True, timeout=90 * TIME_SCALE)
    assert p.returncode == 0, p.stderr
    return p.stdout.split(b"\n--cut--\n")[:-1]


@pytest.mark.parametrize("proto", ["h2c", "h1"])
def test_file_served_from_the_cache_costs_no_descriptor_calls(fdsrv, proto):
    """A cached file above the small-file size is streamed from the cache's
    own descriptor: the download and the front end hold references on it, so
    answering it makes no dup, fcntl or close (where each answer cost a dup,
    an F_DUPFD and two closes). What is left over N answers on one connection
    is the cache looking the file up again once a second (open, close)."""
    with fdsrv.client() as c:
        assert c.get("/d/m.bin").body == MEDIUM   # cached before counting
    bodies, calls, summary = strace_calls(fdsrv.pid, lambda: answers(fdsrv, proto, "/d/m.bin"))
    assert bodies == [MEDIUM] * REPEAT
    fd_calls = sum(calls.get(c, 0) for c in DESCRIPTOR_CALLS)
    assert fd_calls < REPEAT // 4, summary


def test_h2c_file_read_in_one_pread_from_its_first_frame(fdsrv):
    """Over h2c a non-incremental stream (RFC 9218's default) reads its file
    ahead from its first DATA frame: the 64 KiB file (four frames) costs one
    read per answer, where reading ahead from the second frame cost two."""
    with fdsrv.client() as c:
        assert c.get("/d/m.bin").body == MEDIUM
    bodies, calls, summary = strace_calls(fdsrv.pid, lambda: answers(fdsrv, "h2c", "/d/m.bin"))
    assert bodies == [MEDIUM] * REPEAT
    reads = calls.get("pread64", 0) + calls.get("preadv", 0)
    assert REPEAT <= reads < REPEAT * 5 // 4, summary


def test_forgotten_slot_closes_its_descriptor(fdsrv):
    """A file cut short in place between two answers in one second makes the
    answer read less than the cache said, which forgets the slot; the slot's
    descriptor is closed when the slot is filled again. Again and again, the
    daemon holds at most the one descriptor of the file (the slot's), where
    each forgotten slot used to leak its descriptor."""
    f = fdsrv.www / "shrinks.txt"
    long, short = b"L" * 2000, b"S" * 1000
    with fdsrv.client() as c:
        for _ in range(30):
            f.write_bytes(long)
            r = c.get("/d/shrinks.txt")
            assert r.status == 200
            with open(f, "r+b") as fh:   # in place: the cached descriptor sees it
                fh.write(short)
                fh.truncate(len(short))
            r = c.get("/d/shrinks.txt")   # what the slot says for the second
            assert r.status == 200 and len(r.body) <= len(long)
        t0 = time.monotonic()
        while c.get("/d/shrinks.txt").body != short:
            assert time.monotonic() - t0 < 3 * TIME_SCALE, "stale after 3 s"
            time.sleep(0.05)
    assert open_fds_of(fdsrv.pid, f) <= 1


@pytest.mark.parametrize("path,size", [("/one/s.txt", 600), ("/one/m.bin", len(MEDIUM))])
def test_sibling_lookup_in_the_same_slot_leaves_the_file_open(fdsrv, path, size):
    """With one slot, looking up x.br and x.gz (absent) for a client that
    accepts them takes the slot of x while x is being answered: x's
    descriptor stays open for its answer (a reference), so the answer is x
    whole, small (read at once) or streamed (an empty 200, or a 503, when
    the slot closed it)."""
    want = (fdsrv.www / path.split("/")[-1]).read_bytes()
    assert len(want) == size
    for flag in ("--http2-prior-knowledge", "--http1.1"):
        for _ in range(3):
            p = curl([flag, "-H", "accept-encoding: br, gzip", "-w", "\n%{http_code}",
                      fdsrv.url(path)])
            body, _, code = p.stdout.rpartition(b"\n")
            assert (code, body) == (b"200", want), (flag, code, len(body))


def test_index_lookup_in_the_same_slot_leaves_the_directory_open(fdsrv):
    """With one slot, the index file's lookup takes the directory's slot
    before the directory is listed: the listing still reads it."""
    r = curl(["--http2-prior-knowledge", "-w", "\n%{http_code}", fdsrv.url("/onel/dir/")])
    body, _, code = r.stdout.rpartition(b"\n")
    assert code == b"200" and b"x.css" in body, (code, body[:200])


# -- TLS -----------------------------------------------------------------------------


def test_over_tls(celerisd, tree, tmp_path):
    www, _ = tree
    crt, key = self_signed(tmp_path)
    srv = celerisd(f"""listen:
  - address: "127.0.0.1:{{port}}"
    tls: {{ cert: {crt}, key: {key} }}
routes:
  - path: /f/*path
    dir: {{ root: {www}, precompressed: [br] }}
""")
    url = f"https://127.0.0.1:{srv.port}"
    for flag in ("--http2", "--http1.1"):
        p = subprocess.run(["curl", "-sSk", flag, "--max-time", "20", "-r", "0-9,99990-",
                            f"{url}/f/mid.bin", "-D", "-", "-o", str(tmp_path / "mr")],
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        st, h = parse_curl_headers(p.stdout)
        assert st == 206
        parts = parse_multipart(h["content-type"][0], (tmp_path / "mr").read_bytes())
        assert [d for _, d in parts] == [MID[:10], MID[99990:]]
        p = subprocess.run(["curl", "-sSk", flag, "--max-time", "20", f"{url}/f/mid.bin"],
                           capture_output=True, timeout=30)
        assert p.stdout == MID
        p = subprocess.run(["curl", "-sSk", flag, "--max-time", "20", "-o", os.devnull, "-w",
                            "%{http_code}", f"{url}/f/%2e%2e/outside/secret.txt"],
                           capture_output=True, timeout=30)
        assert p.stdout == b"403"


def ktls_skip_reason():
    """Why kernel TLS cannot be tried here, or None: the "tls" upper-layer
    protocol must be accepted on a connected TCP socket."""
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        with socket.create_connection(lst.getsockname()) as cli:
            try:
                cli.setsockopt(socket.IPPROTO_TCP, 31, b"tls")   # TCP_ULP
            except OSError as e:
                return (f"the kernel has no TLS upper-layer protocol ({e.strerror}; "
                        f"/proc/sys/net/ipv4/tcp_available_ulp lists none): kTLS untestable")
    return None


def tls_tx_count():
    try:
        with open("/proc/net/tls_stat") as f:
            for line in f:
                kv = line.split()
                if len(kv) == 2 and kv[0] in ("TlsTxSw", "TlsTxDevice"):
                    yield int(kv[1])
    except FileNotFoundError:
        return


def test_http1_over_ktls_sends_files_with_sendfile(celerisd, tmp_path):
    """Where OpenSSL hands the connection's send side to the kernel (kTLS),
    HTTP/1.1 file bodies go out by sendfile as on cleartext: a 16 MiB body
    with far fewer read-type system calls than its 1,024 preads of 16 KiB.
    Skipped, with the reason, where the kernel has no TLS ULP or OpenSSL does
    not set kTLS up."""
    reason = ktls_skip_reason()
    if reason:
        pytest.skip(reason)
    www = tmp_path / "www"
    www.mkdir()
    data = hashlib.sha256(b"ktls").digest() * (1 << 19)    # 16 MiB
    (www / "k.bin").write_bytes(data)
    crt, key = self_signed(tmp_path)
    srv = celerisd(f"""listen:
  - address: "127.0.0.1:{{port}}"
    tls: {{ cert: {crt}, key: {key} }}
workers: 1
routes:
  - path: /f/*path
    dir: {{ root: {www} }}
""")
    tx0 = sum(tls_tx_count())
    before = syscr(srv.pid)
    p = subprocess.run(["curl", "-sSk", "--http1.1", "--tls-max", "1.2", "--ciphers",
                        "ECDHE-ECDSA-AES128-GCM-SHA256", "--max-time", str(int(60 * TIME_SCALE)),
                        f"https://127.0.0.1:{srv.port}/f/k.bin"],
                       capture_output=True, timeout=90 * TIME_SCALE)
    calls = syscr(srv.pid) - before
    assert p.returncode == 0, p.stderr
    assert p.stdout == data
    if sum(tls_tx_count()) == tx0:
        pytest.skip("OpenSSL did not set up kTLS on the daemon's connection "
                    "(/proc/net/tls_stat counted no TLS transmit socket)")
    assert calls < 512, f"{calls} read-type system calls for 16 MiB over kTLS"


# -- streaming: files replaced or cut during a download, large files, slow readers ----


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def bigsrv(module_celerisd, tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    www = d / "www"
    www.mkdir()
    block = hashlib.sha256(b"seed").digest() * 2048      # 64 KiB, incompressible enough
    with open(www / "big.bin", "wb") as f:
        for i in range(1024):                              # 64 MiB
            f.write(i.to_bytes(4, "big") + block[4:])
    srv = module_celerisd(f"""
workers: 1
log: {{ level: warn }}
routes:
  - path: /d/*path
    dir: {{ root: {www} }}
  - path: /bench
    static: {{ body: "OK" }}
""")
    srv.www = www
    return srv


def big_digest(www):
    h = hashlib.sha256()
    with open(www / "big.bin", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class RssWatch:
    """Samples the daemon's RSS in a thread until stopped; keeps the peak."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop_ = pid, 0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def stop(self):
        self.stop_.set()
        self.t.join()
        return self.peak


# Streaming keeps at most the exchange's high-water mark (64 KiB) plus one
# 16 KiB chunk per download; a front end that held the file would grow by
# 64 MiB. 24 MiB covers the allocator's slack, the pool and the sanitizers.
RSS_GROWTH_BOUND_KIB = 24 * 1024


def test_large_file_slow_reader_h1_bounded_rss(bigsrv):
    digest = big_digest(bigsrv.www)
    base = rss_kib(bigsrv.pid)
    watch = RssWatch(bigsrv.pid)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.connect(("127.0.0.1", bigsrv.port))
    s.settimeout(30 * TIME_SCALE)
    s.sendall(b"GET /d/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    data = bytearray()
    reads = 0
    while True:
        chunk = s.recv(256 * 1024)
        assert chunk, "connection closed early"
        data += chunk
        reads += 1
        if reads % 64 == 0:
            time.sleep(0.01)  # a slow reader: the daemon must wait, not buffer
        head, sep, body = bytes(data[:4096]).partition(b"\r\n\r\n")
        if sep:
            m = re.search(rb"content-length: (\d+)", head, re.I)
            total = len(head) + 4 + int(m.group(1))
            if len(data) >= total:
                break
    s.close()
    peak = watch.stop()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) == 64 << 20
    assert hashlib.sha256(body).hexdigest() == digest
    assert peak - base < RSS_GROWTH_BOUND_KIB, (base, peak)


def test_large_file_slow_reader_h2_bounded_rss(bigsrv):
    from h2client import H2Client
    digest = big_digest(bigsrv.www)
    base = rss_kib(bigsrv.pid)
    watch = RssWatch(bigsrv.pid)
    with H2Client("127.0.0.1", bigsrv.port, timeout=60 * TIME_SCALE, auto_ack=False,
                  initial_window_size=1 << 20, connection_window=1 << 20) as c:
        sid = c.send_request("GET", "/d/big.bin")
        r = c._response(sid)
        deadline = time.monotonic() + 120 * TIME_SCALE
        while not r.done:
            c.pump(deadline)
            if c.unacked_bytes() >= 512 * 1024:
                time.sleep(0.005)   # the reader takes its time before opening the window
                pending, c._unacked = c._unacked, []
                for s_id, n in pending:
                    c.conn.acknowledge_received_data(n, s_id)
                c._flush()
        assert r.status == 200 and r.ended and r.reset is None
        assert hashlib.sha256(r.body).hexdigest() == digest
        # the connection serves on
        assert c.get("/bench").body == b"OK"
    peak = watch.stop()
    assert peak - base < RSS_GROWTH_BOUND_KIB, (base, peak)


def syscr(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("syscr:"):
                return int(line.split()[1])
    raise AssertionError("no syscr")


def test_http1_cleartext_sends_files_with_sendfile(bigsrv):
    """Over cleartext HTTP/1.1 the 64 MiB body goes out by sendfile, not by
    16 KiB preads (which would be 4,096 read system calls at least): the
    daemon's read-type system calls (sendfile counts as one each) stay far
    below that."""
    digest = big_digest(bigsrv.www)
    before = syscr(bigsrv.pid)
    p = subprocess.run(["curl", "-sS", "--http1.1", "--max-time", str(int(60 * TIME_SCALE)),
                        bigsrv.url("/d/big.bin")], capture_output=True, timeout=90 * TIME_SCALE)
    calls = syscr(bigsrv.pid) - before
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(p.stdout).hexdigest() == digest
    assert calls < 2048, f"{calls} read-type system calls for one 64 MiB file"


def test_h2c_reads_file_frames_ahead_in_blocks(bigsrv):
    """Over cleartext HTTP/2 a file's DATA payloads are read into user space
    several frames at a time (64 KiB reads, the frames queued by reference
    into them) and many frames leave in one writev: the 64 MiB body (4,096
    frames of 16 KiB) costs the daemon at most one read for two frames and
    fewer system calls than frames in all, where a read a frame cost more
    than one a frame and sendfile three (fstat, the header by sendmsg, the
    payload by sendfile)."""
    digest = big_digest(bigsrv.www)
    p, calls, summary = strace_calls(
        bigsrv.pid, ["curl", "-sS", "--http2-prior-knowledge", "--max-time",
                     str(int(60 * TIME_SCALE)), bigsrv.url("/d/big.bin")])
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(p.stdout).hexdigest() == digest
    frames = (64 << 20) // 16384
    reads = calls.get("preadv", 0) + calls.get("pread64", 0)
    assert 0 < reads <= frames // 2, summary
    assert "sendfile" not in calls, summary
    assert sum(calls.values()) < frames, summary


def test_http1_download_keeps_its_write_event(bigsrv):
    """While a download waits for the socket, the connection's write event
    stays in epoll: a 64 MiB body read at a limited rate (many wake-ups, a
    sendfile each) costs a few epoll_ctl in all, where a one-shot event cost
    two a wake-up (libevent's removal as it fired, the re-add)."""
    digest = big_digest(bigsrv.www)
    p, calls, summary = strace_calls(
        bigsrv.pid, ["curl", "-sS", "--http1.1", "--limit-rate", "32M", "--max-time",
                     str(int(60 * TIME_SCALE)), bigsrv.url("/d/big.bin")])
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(p.stdout).hexdigest() == digest
    wakeups = calls.get("sendfile", 0)
    assert wakeups >= 64, summary   # the reader's pauses made it wait, often
    assert calls.get("epoll_ctl", 0) <= 16, summary


def test_sendfile_false_reads_and_writes_http1_files(celerisd, bigsrv):
    """`sendfile: false`: over cleartext HTTP/1.1 a file's bytes are read into
    the output queue (preadv, 64 KiB at a time) and written, never sendfile'd; the
    body and a range of it are byte for byte the file's. (With the default,
    the same download is all sendfile: test_http1_download_keeps_its_write_event.)"""
    srv = celerisd(f"""
sendfile: false
workers: 1
log: {{ level: warn }}
routes:
  - path: /d/*path
    dir: {{ root: {bigsrv.www} }}
""")
    digest = big_digest(bigsrv.www)
    p, calls, summary = strace_calls(
        srv.pid, ["curl", "-sS", "--http1.1", "--max-time", str(int(60 * TIME_SCALE)),
                  srv.url("/d/big.bin")])
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(p.stdout).hexdigest() == digest
    assert "sendfile" not in calls, summary
    reads = calls.get("pread64", 0) + calls.get("preadv", 0)
    assert (64 << 20) // (64 << 10) <= reads <= 2 * (64 << 20) // (64 << 10), summary
    r = subprocess.run(["curl", "-sS", "--http1.1", "-r", "1000000-3000000",
                        srv.url("/d/big.bin")], capture_output=True, timeout=60 * TIME_SCALE)
    with open(bigsrv.www / "big.bin", "rb") as f:
        f.seek(1000000)
        assert r.stdout == f.read(2000001)


def test_sendfile_key_applies_to_connections_after_a_reload(celerisd, bigsrv):
    """A reload from `sendfile: false` to the default: the next connection's
    download goes by sendfile (and byte for byte), where the first config
    read it."""
    text = f"""
workers: 1
log: {{ level: info }}   # reload_config waits for the info line
routes:
  - path: /d/*path
    dir: {{ root: {bigsrv.www} }}
"""
    srv = celerisd("sendfile: false\n" + text)
    digest = big_digest(bigsrv.www)
    get = ["curl", "-sS", "--http1.1", "--max-time", str(int(60 * TIME_SCALE)),
           srv.url("/d/big.bin")]
    p, calls, summary = strace_calls(srv.pid, get)
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(p.stdout).hexdigest() == digest
    assert "sendfile" not in calls, summary
    first = pathlib.Path(srv.config_path).read_text()   # with the listen address it got
    reload_config(srv, first.replace("sendfile: false", "sendfile: true"))
    p, calls, summary = strace_calls(srv.pid, get)
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(p.stdout).hexdigest() == digest
    assert calls.get("sendfile", 0) > 0, summary
    assert calls.get("preadv", 0) == 0, summary


def server_send_queue(port, client_port):
    """Send-Q of the daemon's side of a loopback connection (/proc/net/tcp
    tx_queue: bytes written and not yet acknowledged). A reader that stopped
    with its receive buffer full has acknowledged all it holds, so this is
    what waits unsent in the daemon's socket."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == port and \
                    int(remote.split(":")[1], 16) == client_port:
                return int(fields[4].split(":")[0], 16)
    raise AssertionError(f"no socket 127.0.0.1:{port} -> :{client_port}")


def settled_send_queue(port, client_port):
    """The daemon's Send-Q once it stops moving (the reader has stopped)."""
    last, deadline = None, time.monotonic() + 10 * TIME_SCALE
    while time.monotonic() < deadline:
        time.sleep(0.2)
        q = server_send_queue(port, client_port)
        if q == last:
            return q
        last = q
    return last


def take(s, n):
    """Reads N octets of an answer from S, then stops reading."""
    got = 0
    while got < n:
        chunk = s.recv(1 << 20)
        assert chunk, "connection closed early"
        got += len(chunk)


# limits.tcp_notsent_lowat's default (128 KiB) bounds what waits unsent; the
# kernel may pass it by one packet's worth (64 KiB on loopback) and a file
# range by a page or so. Without the option the socket queued ~3 MiB here.
UNSENT_BOUND = 128 * 1024 + 192 * 1024


def test_download_keeps_little_unsent_in_the_socket_h1(bigsrv):
    """A reader that takes 8 MiB of a 64 MiB file and stops: the daemon's
    socket holds at most about tcp_notsent_lowat unsent (TCP_NOTSENT_LOWAT),
    not megabytes behind the reader's window."""
    s = socket.create_connection(("127.0.0.1", bigsrv.port), timeout=30 * TIME_SCALE)
    try:
        s.sendall(b"GET /d/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        take(s, 8 << 20)
        q = settled_send_queue(bigsrv.port, s.getsockname()[1])
        assert 0 < q <= UNSENT_BOUND, q
    finally:
        s.close()
    assert curl(["--http1.1", bigsrv.url("/bench")]).stdout == b"OK"


def test_download_keeps_little_unsent_in_the_socket_h2c(bigsrv):
    """The same over h2c with both windows wide open: the socket holds at most
    about tcp_notsent_lowat unsent; the frames beyond wait in the daemon's
    output queue (max_output_buffer)."""
    from h2client import H2Client
    wide = (1 << 31) - 1
    with H2Client("127.0.0.1", bigsrv.port, timeout=30 * TIME_SCALE,
                  initial_window_size=wide, connection_window=wide) as c:
        sid = c.send_request("GET", "/d/big.bin")
        r = c._response(sid)
        c.wait_for(lambda: len(r.body) >= 8 << 20 or r.done, what="8 MiB of the file")
        assert r.status == 200 and not r.done
        q = settled_send_queue(bigsrv.port, c.sock.getsockname()[1])
        assert 0 < q <= UNSENT_BOUND, q


def test_notsent_lowat_zero_leaves_the_kernel_setting(celerisd, tmp_path):
    """limits.tcp_notsent_lowat: 0 sets nothing: with the kernel's default
    (no bound) the socket queues past the default bound."""
    with open("/proc/sys/net/ipv4/tcp_notsent_lowat") as f:
        if int(f.read()) < 4 << 20:
            pytest.skip("net.ipv4.tcp_notsent_lowat bounds every socket here")
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        if int(f.read().split()[2]) < 2 << 20:
            pytest.skip("net.ipv4.tcp_wmem keeps send buffers small here")
    www = tmp_path / "www"
    www.mkdir()
    with open(www / "z.bin", "wb") as f:
        f.truncate(64 << 20)
    srv = celerisd(f"""
workers: 1
log: {{ level: warn }}
limits: {{ tcp_notsent_lowat: 0 }}
routes:
  - path: /d/*path
    dir: {{ root: {www} }}
""")
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30 * TIME_SCALE)
    try:
        s.sendall(b"GET /d/z.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        take(s, 8 << 20)
        q = settled_send_queue(srv.port, s.getsockname()[1])
        assert q > UNSENT_BOUND, q
    finally:
        s.close()


def test_h2_file_cut_with_frames_queued_ends_that_stream_only(bigsrv):
    """A file cut while frames of it wait in the daemon's output queue (the
    reader stopped reading, the windows wide open): the frames already queued
    carry the bytes they were read with, the next one finds the file short
    and resets that stream only, and the connection serves on. With the
    payload sent by sendfile, the queued frames could no longer be sent and
    the whole connection was closed."""
    from h2client import H2Client
    www = bigsrv.www
    data = bytes(range(256)) * 4096 * 24   # 24 MiB: more than loopback buffers
    (www / "cutq.bin").write_bytes(data)
    wide = (1 << 31) - 1
    with H2Client("127.0.0.1", bigsrv.port, timeout=30 * TIME_SCALE,
                  initial_window_size=wide, connection_window=wide) as c:
        sid = c.send_request("GET", "/d/cutq.bin")
        r = c._response(sid)
        c.wait_for(lambda: len(r.body) >= 65536 or r.done, what="some of the file")
        assert r.status == 200 and not r.done
        time.sleep(1.0 * TIME_SCALE)   # the daemon fills the socket, then its queue
        os.truncate(www / "cutq.bin", 100_000)
        c.wait_for(lambda: r.done, what="the end of the cut download")
        assert r.reset is not None and len(r.body) < len(data)
        assert r.body == data[:len(r.body)]
        assert c.get("/bench").body == b"OK"


def test_multipart_parts_go_as_file_ranges(bigsrv):
    """A multipart/byteranges answer of big parts, byte for byte over HTTP/1.1
    and HTTP/2 (parts of several frames, part headers between them). Over
    cleartext HTTP/1.1 each part goes out by sendfile: the daemon's read-type
    system calls stay far below the 16 KiB preads (3,072 for 48 MiB) that
    reading the parts through the handler took."""
    from h2client import H2Client
    www = bigsrv.www
    with open(www / "big.bin", "rb") as f:
        data = f.read()
    n = len(data)
    want = [(1, 24 << 20), (40 << 20, 5), (n - (24 << 20) + 3, (24 << 20) - 3)]
    spec = "bytes=" + ", ".join(f"{o}-{o + ln - 1}" for o, ln in want)

    def check(ctype, clen, body):
        assert int(clen) == len(body)
        parts = parse_multipart(ctype, body)
        assert [h[b"content-range"] for h, _ in parts] == \
            [b"bytes %d-%d/%d" % (o, o + ln - 1, n) for o, ln in want]
        assert [d for _, d in parts] == [data[o:o + ln] for o, ln in want]

    before = syscr(bigsrv.pid)
    p = subprocess.run(["curl", "-sS", "--http1.1", "--max-time", str(int(60 * TIME_SCALE)),
                        "-H", f"range: {spec}", "-D", "-", bigsrv.url("/d/big.bin")],
                       capture_output=True, timeout=90 * TIME_SCALE)
    calls = syscr(bigsrv.pid) - before
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206")
    hdrs = {k.lower(): v for k, _, v in (ln.partition(b": ") for ln in head.split(b"\r\n")[1:])}
    check(hdrs[b"content-type"].decode(), hdrs[b"content-length"], body)
    assert calls < 1536, f"{calls} read-type system calls for 48 MiB of parts"
    with H2Client("127.0.0.1", bigsrv.port, timeout=60 * TIME_SCALE,
                  initial_window_size=(1 << 31) - 1, connection_window=(1 << 31) - 1) as c:
        r = c.get("/d/big.bin", headers=[("range", spec)], timeout=60 * TIME_SCALE)
        assert r.status == 206 and r.ended and r.reset is None
        check(r.header("content-type"), r.header("content-length"), r.body)
        assert c.get("/bench").body == b"OK"


def test_h2c_file_reset_or_closed_mid_download_releases_it(celerisd, tmp_path):
    """Downloads over h2c cut short by the client, one by RST_STREAM and one by
    closing the connection, while frames of the file wait in the daemon: every
    descriptor of the file is closed again (the download's reference on the
    cache's descriptor, which outlives the slot's, is let go; the sanitizer
    builds see no leak at teardown), and the daemon serves on."""
    from h2client import H2Client
    www = tmp_path / "www"
    www.mkdir()
    data = bytes(range(256)) * 4096 * 8   # 8 MiB
    (www / "f.bin").write_bytes(data)
    srv = celerisd(f"""
workers: 1
log: {{ level: warn }}
routes:
  - path: /d/*path
    dir: {{ root: {www} }}
""")

    def open_fds():   # the daemon's descriptors of the file
        fds = f"/proc/{srv.pid}/fd"
        n = 0
        for fd in os.listdir(fds):
            try:
                n += os.readlink(f"{fds}/{fd}") == str(www / "f.bin")
            except FileNotFoundError:
                pass
        return n

    def settle(base):
        deadline = time.monotonic() + 10 * TIME_SCALE
        while open_fds() > base and time.monotonic() < deadline:
            time.sleep(0.05)
        return open_fds()

    with H2Client("127.0.0.1", srv.port, timeout=30 * TIME_SCALE) as c:
        assert c.get("/d/f.bin").body == data
    base = open_fds()   # the worker's open-file cache may keep one
    for how in ("reset", "close"):
        c = H2Client("127.0.0.1", srv.port, auto_ack=False, timeout=30 * TIME_SCALE,
                     initial_window_size=1 << 20, connection_window=1 << 22)
        sid = c.send_request("GET", "/d/f.bin")
        r = c._response(sid)
        c.wait_for(lambda: len(r.body) >= 256 * 1024 or r.done, what="some of the file")
        assert r.status == 200 and not r.done
        # the download holds the cache's descriptor: looked up again a second
        # later, the slot opens the file anew and lets go of it, still open
        time.sleep(1.1)
        with H2Client("127.0.0.1", srv.port, timeout=30 * TIME_SCALE) as other:
            assert other.get("/d/f.bin", headers=[("range", "bytes=0-9")]).body == data[:10]
        assert open_fds() > base
        if how == "reset":
            c.reset_stream(sid)
            assert c.get("/d/f.bin", headers=[("range", "bytes=0-9")]).body == data[:10]
        c.close()
        assert settle(base) <= base, how
    with H2Client("127.0.0.1", srv.port, timeout=30 * TIME_SCALE) as c:
        assert c.get("/d/f.bin").body == data


def test_file_replaced_during_download_keeps_its_bytes(bigsrv):
    """A new file renamed over the one being sent: the download finishes with
    the bytes it started with (the descriptor keeps the old file)."""
    from h2client import H2Client
    www = bigsrv.www
    old = bytes(range(256)) * 4096   # 1 MiB
    (www / "swap.bin").write_bytes(old)
    with H2Client("127.0.0.1", bigsrv.port, auto_ack=False, timeout=30 * TIME_SCALE) as c:
        sid = c.send_request("GET", "/d/swap.bin")
        r = c._response(sid)
        c.wait_for(lambda: len(r.body) >= 65535 or r.done, what="first window")
        (www / "swap.tmp").write_bytes(b"new" * 1000)
        os.rename(www / "swap.tmp", www / "swap.bin")
        c.open_window()
        c.wait_for(lambda: r.done, what="the end of the download")
        assert r.status == 200 and r.reset is None and r.body == old


@pytest.mark.parametrize("proto", ["h2", "h1"])
def test_file_cut_during_download_ends_that_stream_only(bigsrv, proto):
    """The file is truncated under a download: that stream ends early (an
    HTTP/2 reset, an HTTP/1.1 connection closed short of Content-Length), and
    the daemon serves on (the other streams on the same connection too)."""
    from h2client import H2Client
    www = bigsrv.www
    # larger than what the kernel buffers on loopback (send and receive
    # buffers), so that most of it is still to be read when the file is cut
    data = bytes(range(256)) * 4096 * 24   # 24 MiB
    name = f"cut-{proto}.bin"
    (www / name).write_bytes(data)
    if proto == "h2":
        with H2Client("127.0.0.1", bigsrv.port, auto_ack=False, timeout=30 * TIME_SCALE) as c:
            sid = c.send_request("GET", f"/d/{name}")
            r = c._response(sid)
            c.wait_for(lambda: len(r.body) >= 65535 or r.done, what="first window")
            assert r.status == 200 and r.header("content-length") == str(len(data))
            os.truncate(www / name, 100_000)
            c.open_window()
            c.wait_for(lambda: r.done, what="the end of the cut download")
            assert r.reset is not None and len(r.body) < len(data)
            assert r.body == data[:len(r.body)]
            assert c.get("/bench").body == b"OK"
    else:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        s.connect(("127.0.0.1", bigsrv.port))
        s.settimeout(30 * TIME_SCALE)
        s.sendall(f"GET /d/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = s.recv(16384)
        assert got.startswith(b"HTTP/1.1 200")
        os.truncate(www / name, 100_000)
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        s.close()
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"content-length: %d" % len(data) in head.lower()
        # sendfile: what the socket had queued past the cut reads as the
        # file now is (zeros), so only the bytes before it are checked
        assert len(body) < len(data) and body[:100_000] == data[:100_000]
    with bigsrv.client() as c:
        assert c.get("/bench").body == b"OK"


# -- static: { file: } routes naming one file share its bytes -----------------------


def test_static_file_bytes_shared_between_routes(celerisd, tmp_path):
    """Four routes name one 24 MiB file: the daemon holds it once. Before, each
    route read its own copy (4 x 24 MiB)."""
    big = tmp_path / "shared.bin"
    big.write_bytes(os.urandom(24 << 20))
    one = celerisd(f"""
workers: 1
routes:
  - path: /a
    static: {{ file: {big} }}
""")
    four = celerisd(f"""
workers: 1
routes:
  - path: /a
    static: {{ file: {big} }}
  - path: /b
    static: {{ file: {big} }}
  - path: /c
    static: {{ file: {tmp_path}/./shared.bin }}
  - path: /d
    static: {{ file: {big}, content_type: image/png }}
""")
    grown = rss_kib(four.pid) - rss_kib(one.pid)
    assert grown < 12 * 1024, f"four routes cost {grown} KiB more than one"
    want = hashlib.sha256(big.read_bytes()).hexdigest()
    with four.client() as c:
        for path in ("/a", "/b", "/c", "/d"):
            r = c.get(path)
            assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == want, path
    # a reload that keeps the routes keeps one copy (the old generation lets go)
    four.send_signal(__import__("signal").SIGHUP)
    time.sleep(1.5 * TIME_SCALE)
    with four.client() as c:
        assert hashlib.sha256(c.get("/c").body).hexdigest() == want
    assert rss_kib(four.pid) - rss_kib(one.pid) < 12 * 1024


def test_pipelined_http1_after_a_streamed_file(srv):
    """HTTP/1.1 pipelining: a streamed file, a small one, then an HTTP/1.0
    request (content-length, then close) on one connection, in order."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    s.sendall(b"GET /f/mid.bin HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /f/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /f/mid.bin HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    s.close()
    bodies = []
    for _ in range(3):
        head, _, data = data.partition(b"\r\n\r\n")
        assert head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")), head
        n = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        bodies.append(data[:n])
        data = data[n:]
    assert bodies == [MID, b"hello\n", MID] and data == b""


# -- a browser loads a site from a dir route over TLS ----------------------------------

SITE_HTML = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>loading</title>
<link rel="stylesheet" href="css/site.css"></head>
<body><p id="css">x</p><p id="js">pending</p><p id="img">pending</p>
<img id="pic" src="img/dot.png">
<script src="js/app.js"></script>
</body></html>
"""
SITE_CSS = b"#css { width: 123px; }\n"
SITE_JS = b"""addEventListener("load", function () {
  var w = getComputedStyle(document.getElementById("css")).width;
  var pic = document.getElementById("pic");
  document.getElementById("js").textContent = "ran css=" + w;
  document.getElementById("img").textContent = "w=" + pic.naturalWidth;
  document.title = performance.getEntries()[0].nextHopProtocol;
});
"""


def tiny_png():
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 3 for _ in range(2))  # 3x2 red
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_chromium_loads_a_site_from_a_dir_route_over_tls(celerisd, tmp_path):
    import shutil

    import test_browser as tb
    chromium, certutil = shutil.which("chromium"), shutil.which("certutil")
    if not chromium or not certutil:
        pytest.fail("needs Debian packages chromium and libnss3-tools (scripts/deps test)")
    site = tmp_path / "site"
    for sub in ("css", "js", "img"):
        (site / sub).mkdir(parents=True)
    (site / "index.html").write_bytes(SITE_HTML)
    (site / "css" / "site.css").write_bytes(SITE_CSS)
    (site / "css" / "site.css.gz").write_bytes(gzip.compress(SITE_CSS))
    (site / "js" / "app.js").write_bytes(SITE_JS)
    (site / "img" / "dot.png").write_bytes(tiny_png())
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_pem, crt, key = tb.make_ca_and_server_cert(certs)
    home = tmp_path / "home"
    home.mkdir()
    tb.trust_ca_in_nss(home, ca_pem, certutil)
    access_log = tmp_path / "access.log"
    srv = celerisd(f"""listen:
  - address: "127.0.0.1:{{port}}"
    tls: {{ cert: {crt}, key: {key} }}
log:
  access: {{ path: {access_log}, format: "%H %s %U" }}
routes:
  - path: /site/*path
    dir: {{ root: {site}, index: [index.html], precompressed: [gzip] }}
""")
    rc, dom, err = tb.run_browser(chromium, home, tmp_path / "profile",
                                  f"https://localhost:{srv.port}/site/", tmp_path / "dom.html",
                                  tmp_path / "chromium.stderr")
    detail = f"\nDOM:\n{dom}\nstderr tail:\n{err[-2000:]}"
    assert rc is not None and "<html" in dom, detail
    assert tb.element_text(dom, "js") == "ran css=123px", detail
    assert tb.element_text(dom, "img") == "w=3", detail
    assert "<title>h2</title>" in dom, detail
    rc, _ = srv.stop()
    assert rc == 0
    lines = access_log.read_text().splitlines()
    for path in ("/site/", "/site/css/site.css", "/site/js/app.js", "/site/img/dot.png"):
        assert f"HTTP/2.0 200 {path}" in lines, lines


def test_many_dir_routes_cost_little(celerisd, tree):
    """300 dir routes on 2 workers: /etc/mime.types is parsed once for all of
    them, and a route's open-file cache is made at its first request on a
    worker. Before, each route parsed its own table and each worker made each
    route's cache at start: 142 MB of RSS for this config."""
    www, _ = tree
    routes = "".join(f"  - path: /d{i}/*p\n    dir: {{ root: {www} }}\n" for i in range(300))
    srv = celerisd("workers: 2\nroutes:\n" + routes)
    with srv.client() as c:
        for i in (0, 150, 299):
            r = c.get(f"/d{i}/assets/app.js")
            assert r.status == 200 and r.header("content-type").startswith("text/javascript")
    rss = rss_kib(srv.pid)
    assert rss < 40 * 1024, f"{rss} KiB for 300 dir routes"
