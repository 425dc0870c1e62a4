"""Configuration checking: `celerisd -t -c FILE` and a normal start on the same
file must both reject a bad config with `FILE:LINE:COLUMN: message`, where
LINE:COLUMN (1-based) is the offending YAML node; good configs pass -t.
"""

import socket

import pytest

from support import expect_config_error, run_celerisd

LISTEN = 'listen: "127.0.0.1:{port}"\n'


def pos(text, needle, at=0, nth=1):
    """1-based (line, column) of character AT of the NTH occurrence of NEEDLE."""
    idx = -1
    for _ in range(nth):
        idx = text.find(needle, idx + 1)
        assert idx >= 0, f"{needle!r} not in config"
    idx += at
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


# (id, yaml, (needle, at, nth), words: at least one must appear in the message)
CASES = [
    ("sendfile-not-a-boolean", LISTEN + """\
sendfile: sometimes
routes:
  - path: /a
    static: { body: "A" }
""", ("sometimes", 0, 1), ["sendfile must be true or false"]),
    # -- unknown keys: the key is reported
    ("unknown-top-level-key", LISTEN + """\
bogus_key: 1
routes:
  - path: /a
    static: { body: "A" }
""", ("bogus_key", 0, 1), ["bogus_key"]),
    ("unknown-route-key", LISTEN + """\
routes:
  - path: /a
    static: { body: "A" }
    colour: red
""", ("colour", 0, 1), ["colour"]),
    ("unknown-static-key", LISTEN + """\
routes:
  - path: /a
    static:
      body: "A"
      bodee: "B"
""", ("bodee", 0, 1), ["bodee"]),
    ("unknown-static-key-flow", LISTEN + """\
routes:
  - path: /a
    static: { body: "A", content_typo: text/html }
""", ("content_typo", 0, 1), ["content_typo"]),
    ("unknown-json-key", LISTEN + """\
routes:
  - path: /a
    json:
      template: { a: 1 }
      tempo: 3
""", ("tempo", 0, 1), ["tempo"]),
    ("unknown-limits-key", LISTEN + """\
limits:
  max_concurrent_streams: 10
  max_streams: 5
routes:
  - path: /a
    static: { body: "A" }
""", ("max_streams:", 0, 1), ["max_streams"]),
    ("unknown-log-key", LISTEN + """\
log: { level: info, colour: red }
routes:
  - path: /a
    static: { body: "A" }
""", ("colour", 0, 1), ["colour"]),
    # -- wrong types: the value is reported
    ("workers-banana", LISTEN + """\
workers: banana
routes:
  - path: /a
    static: { body: "A" }
""", ("banana", 0, 1), ["workers", "banana"]),
    ("routes-scalar", LISTEN + """\
routes: 5
""", ("routes: 5", 8, 1), ["routes"]),
    ("limits-sequence", LISTEN + """\
limits: [1, 2]
routes:
  - path: /a
    static: { body: "A" }
""", ("[1, 2]", 0, 1), ["limits"]),
    ("static-scalar", LISTEN + """\
routes:
  - path: /a
    static: "OK"
""", ('"OK"', 0, 1), ["static"]),
    ("route-not-mapping", LISTEN + """\
routes:
  - path: /a
    static: { body: "A" }
  - just a string
""", ("just a string", 0, 1), ["route", "mapping"]),
    ("headers-sequence", LISTEN + """\
routes:
  - path: /a
    static: { body: "A", headers: [x, y] }
""", ("[x, y]", 0, 1), ["headers"]),
    # -- bad values: the value is reported
    ("duration-unit", LISTEN + """\
shutdown_timeout: 10parsecs
routes:
  - path: /a
    static: { body: "A" }
""", ("10parsecs", 0, 1), ["shutdown_timeout", "10parsecs", "duration"]),
    ("size-word", LISTEN + """\
limits:
  max_request_body: huge
routes:
  - path: /a
    static: { body: "A" }
""", ("huge", 0, 1), ["max_request_body", "huge", "size"]),
    ("log-level", LISTEN + """\
log:
  level: loud
routes:
  - path: /a
    static: { body: "A" }
""", ("loud", 0, 1), ["level", "loud"]),
    ("unknown-method", LISTEN + """\
routes:
  - path: /a
    methods: [GET, FETCH]
    static: { body: "A" }
""", ("FETCH", 0, 1), ["FETCH", "method"]),
    ("status-out-of-range", LISTEN + """\
routes:
  - path: /a
    static: { body: "A", status: 42 }
""", ("status: 42", 8, 1), ["status", "42"]),
    ("path-without-slash", LISTEN + """\
routes:
  - path: nope
    static: { body: "A" }
""", ("nope", 0, 1), ["path", "nope", "/"]),
    ("wildcard-not-last", LISTEN + """\
routes:
  - path: /a/*rest/b
    static: { body: "A" }
""", ("/a/*rest/b", 0, 1), ["wildcard", "*rest", "last", "path"]),
    ("duplicate-param-name", LISTEN + """\
routes:
  - path: /a/:x/b/:x
    static: { body: "A" }
""", ("/a/:x/b/:x", 0, 1), ["x", "param"]),
    # -- placeholders: the string scalar is reported
    ("placeholder-missing-param", LISTEN + """\
routes:
  - path: /users/:id
    json:
      template:
        user: "{{param.id}}"
        other: "{{param.nope}}"
""", ('"{{param.nope}}"', 0, 1), ["nope"]),
    ("placeholder-unknown-kind", LISTEN + """\
routes:
  - path: /a
    json:
      template:
        x: "{{foo.x}}"
""", ('"{{foo.x}}"', 0, 1), ["foo"]),
    ("placeholder-in-sequence", LISTEN + """\
routes:
  - path: /a
    json: { template: { list: [1, "ok", "{{query}}"] } }
""", ('"{{query}}"', 0, 1), ["query", "placeholder"]),
    ("placeholder-whitespace", LISTEN + """\
routes:
  - path: /a
    json: { template: { m: "{{ method }}" } }
""", ('"{{ method }}"', 0, 1), ["method", "placeholder", "{{"]),
    ("placeholder-unterminated", LISTEN + """\
routes:
  - path: /a/:id
    json: { template: { m: "x {{param.id" } }
""", ('"x {{param.id"', 0, 1), ["param", "placeholder", "{{", "}}"]),
    ("placeholder-in-json-string", LISTEN + """\
routes:
  - path: /a/:id
    json:
      template: '{"a": "{{param.nope}}"}'
""", ("'{\"a\"", 0, 1), ["nope"]),
    ("header-placeholder-missing-param", LISTEN + """\
routes:
  - path: /go/:id
    static: { body: "", status: 302, headers: { location: "/to/{{param.nope}}" } }
""", ('"/to/{{param.nope}}"', 0, 1), ["nope"]),
    ("header-placeholder-unknown", LISTEN + """\
routes:
  - path: /a
    json: { template: [1], headers: { x-a: "{{nope}}" } }
""", ('"{{nope}}"', 0, 1), ["placeholder", "nope"]),
    ("header-placeholder-unterminated", LISTEN + """\
routes:
  - path: /a/:id
    static: { body: "A", headers: { x-a: "v={{param.id" } }
""", ('"v={{param.id"', 0, 1), ["unterminated", "placeholder"]),
    # -- invalid JSON in a template string: the template value is reported
    ("json-template-invalid", LISTEN + """\
routes:
  - path: /a
    json:
      template: '{"a": [1, 2}'
""", ("'{\"a\": [1, 2}'", 0, 1), ["json", "template"]),
    ("json-template-truncated", LISTEN + """\
routes:
  - path: /a
    json: { template: '{"a": 1' }
""", ("'{\"a\": 1'", 0, 1), ["json", "template"]),
    # -- colliding routes: the second route's path value is reported
    ("collision-same-literal", LISTEN + """\
routes:
  - path: /a
    static: { body: "A" }
  - path: /b
    static: { body: "B" }
  - path: /a
    static: { body: "C" }
""", ("/a", 0, 2), ["/a", "collid", "conflict", "duplicate"]),
    ("collision-param-names-differ", LISTEN + """\
routes:
  - path: /users/:id
    static: { body: "A" }
  - path: /users/:uid
    static: { body: "B" }
""", ("/users/:uid", 0, 1), ["/users", "collid", "conflict", "duplicate"]),
    ("collision-shared-method", LISTEN + """\
routes:
  - path: /m
    methods: [GET, POST]
    static: { body: "A" }
  - path: /m
    methods: [POST]
    static: { body: "B" }
""", ("/m", 0, 2), ["/m", "collid", "conflict", "duplicate"]),
    ("collision-head-implied-by-get", LISTEN + """\
routes:
  - path: /h
    methods: [GET]
    static: { body: "A" }
  - path: /h
    methods: [HEAD]
    static: { body: "B" }
""", ("/h", 0, 2), ["/h", "collid", "conflict", "duplicate"]),
    # -- missing file: the file value is reported
    ("missing-file", LISTEN + """\
routes:
  - path: /a
    static:
      file: @MISSING@
      content_type: image/png
""", ("@MISSING@", 0, 1), ["@MISSING@"]),
    # -- bad listen addresses: the listen string is reported
    ("listen-port-too-big", """\
listen: "127.0.0.1:99999"
routes:
  - path: /a
    static: { body: "A" }
""", ('"127.0.0.1:99999"', 0, 1), ["99999", "listen", "port"]),
    ("listen-nonsense", """\
listen: "nonsense"
routes:
  - path: /a
    static: { body: "A" }
""", ('"nonsense"', 0, 1), ["nonsense", "listen", "address"]),
    ("listen-bad-ip", """\
listen: "300.1.2.3:80"
routes:
  - path: /a
    static: { body: "A" }
""", ('"300.1.2.3:80"', 0, 1), ["300.1.2.3", "listen", "address"]),
    ("listen-list-second-bad", """\
listen:
  - "127.0.0.1:{port}"
  - "127.0.0.1:"
routes:
  - path: /a
    static: { body: "A" }
""", ('"127.0.0.1:"', 0, 1), ["127.0.0.1", "listen", "port"]),
    # -- an access log format that names nothing: the format value is reported
    ("access-format-misspelt", LISTEN + """\
log:
  access: { path: stderr, format: jsn }
routes:
  - path: /a
    static: { body: "A" }
""", ("jsn", 0, 1), ["jsn", "directive"]),
    ("access-format-unknown-directive", LISTEN + """\
log:
  access: { path: stderr, format: "%h %y" }
routes:
  - path: /a
    static: { body: "A" }
""", ('"%h %y"', 0, 1), ["%y", "directive"]),
    # -- a NUL or control byte in what reaches the router or the wire
    ("path-nul", LISTEN + """\
routes:
  - path: "/a\\0b"
    static: { body: "A" }
""", ('"/a', 0, 1), ["nul"]),
    ("path-control", LISTEN + """\
routes:
  - path: "/a\\x01b"
    static: { body: "A" }
""", ('"/a', 0, 1), ["control"]),
    ("header-value-nul", LISTEN + """\
routes:
  - path: /a
    static: { body: "A", headers: { x-a: "1\\0x" } }
""", ('"1\\0x"', 0, 1), ["nul"]),
    ("content-type-nul", LISTEN + """\
routes:
  - path: /a
    static: { body: "A", content_type: "text/plain\\0x" }
""", ('"text/plain', 0, 1), ["nul"]),
    ("method-nul", LISTEN + """\
routes:
  - path: /a
    methods: ["GET\\0X"]
    static: { body: "A" }
""", ('"GET', 0, 1), ["method"]),
    # -- a second document would be ignored: its start is reported
    ("second-document", LISTEN + """\
routes:
  - path: /a
    static: { body: "A" }
---
routes:
  - path: /b
    static: { body: "B" }
""", ("---", 0, 1), ["second", "document"]),
    # -- dir: each key's error at its node
    ("dir-unknown-key", LISTEN + """\
routes:
  - path: /f/*p
    dir: { root: /tmp, indx: [index.html] }
""", ("indx", 0, 1), ["indx"]),
    ("dir-needs-root", LISTEN + """\
routes:
  - path: /f/*p
    dir: { listing: true }
""", ("{ listing", 0, 1), ["root"]),
    ("dir-root-missing", LISTEN + """\
routes:
  - path: /f/*p
    dir: { root: @MISSING@ }
""", ("@MISSING@", 0, 1), ["no such file"]),
    ("dir-bad-coding", LISTEN + """\
routes:
  - path: /f/*p
    dir: { root: /tmp, precompressed: [br, deflate] }
""", ("deflate", 0, 1), ["deflate"]),
    ("dir-fallback-escapes", LISTEN + """\
routes:
  - path: /f/*p
    dir: { root: /tmp, fallback: ../index.html }
""", ("../index", 0, 1), ["fallback"]),
    ("dir-bad-max-age", LISTEN + """\
routes:
  - path: /f/*p
    dir: { root: /tmp, max_age: 1y }
""", ("1y", 0, 1), ["max_age"]),
    ("dir-index-with-slash", LISTEN + """\
routes:
  - path: /f/*p
    dir: { root: /tmp, index: [a/index.html] }
""", ("a/index", 0, 1), ["index"]),
    ("dir-listing-not-bool", LISTEN + """\
routes:
  - path: /f/*p
    dir:
      root: /tmp
      listing: maybe
""", ("maybe", 0, 1), ["listing"]),
    ("dir-mime-not-a-type", LISTEN + """\
routes:
  - path: /f/*p
    dir: { root: /tmp, mime: { .x: nonsense } }
""", ("nonsense", 0, 1), ["mime"]),
    ("dir-cache-bytes-not-a-size", LISTEN + """\
routes:
  - path: /f/*p
    dir: { root: /tmp, open_file_cache_bytes: 2x }
""", ("2x", 0, 1), ["open_file_cache_bytes"]),
    # -- YAML syntax errors: libyaml's problem position
    ("yaml-tab-indent", LISTEN + """\
routes:
\t- path: /a
\t  static: { body: "A" }
""", ("\t- path", 0, 1), ["tab"]),
    ("yaml-mapping-in-scalar", LISTEN + """\
routes:
  - path: /a: b
    static: { body: "A" }
""", ("/a: b", 2, 1), []),
    ("yaml-bad-indentation", LISTEN + """\
routes:
  - path: /a
     static: x
""", ("static: x", 6, 1), []),
]


def _check(path, line, col, words, start=False, timeout=15):
    """`celerisd -t` (START: a plain start) refuses PATH at LINE:COL with a
    message that names at least one of WORDS (in any case)."""
    msg = expect_config_error(path, line, col, start=start, timeout=timeout)
    assert not words or any(w.lower() in msg.lower() for w in words), \
        f"message {msg!r} names none of {words}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_config(celerisd, tmp_path, case):
    _, text, (needle, at, nth), words = case
    missing = str(tmp_path / "no-such-dir" / "missing.png")
    text = text.replace("@MISSING@", missing)
    needle = needle.replace("@MISSING@", missing)
    words = [w.replace("@MISSING@", missing) for w in words]
    path, _ = celerisd.write_config(text)
    written = path.read_text()
    line, col = pos(written, needle, at, nth)

    _check(path, line, col, words)
    _check(path, line, col, words, start=True)


def test_missing_config_file(tmp_path):
    path = tmp_path / "does-not-exist.yaml"
    for args in (["-t", "-c", str(path)], ["-c", str(path)]):
        r = run_celerisd(args, timeout=15)
        assert r.returncode > 0, r
        assert str(path) in r.stderr, r.stderr


def test_config_directory(tmp_path):
    for args in (["-t", "-c", str(tmp_path)], ["-c", str(tmp_path)]):
        r = run_celerisd(args, timeout=15)
        assert r.returncode > 0, r
        assert f"{tmp_path}: is a directory" in r.stderr, r.stderr


def test_deep_nesting_fails_fast(celerisd):
    """A million nested flow lists (2 MB) once kept -t busy for minutes before
    the depth limit applied; parsing now stops at the limit. The bound is
    generous (a sanitizer build on a loaded machine); the old code needed well
    over a minute on 100,000 levels."""
    depth = 1_000_000
    path, _ = celerisd.write_config(LISTEN + "routes: " + "[" * depth + "]" * depth + "\n")
    line, col = pos(path.read_text(), "[", 99)
    for start in (False, True):
        _check(path, line, col, ["depth limit"], start, timeout=30)


def test_error_position_counts_lines_after_comments_and_blank_lines(celerisd):
    text = LISTEN + """\
# a comment

# another comment
routes:
  - path: /a   # trailing comment
    static: { body: "A" }

    extra_key: 1
"""
    path, _ = celerisd.write_config(text)
    line, col = pos(path.read_text(), "extra_key")
    assert (line, col) == (9, 5)
    _check(path, line, col, ["extra_key"])


GOOD_CONFIGS = [
    ("minimal", LISTEN + """\
routes:
  - path: /bench
    static: { body: "OK" }
"""),
    ("spec-example", LISTEN + """\
workers: auto
shutdown_timeout: 10s
limits: { max_concurrent_streams: 128, max_header_list_size: 65536, max_request_body: 1m,
          max_connections: 10000, idle_timeout: 60s, header_timeout: 10s, write_timeout: 30s }
log: { level: info }
routes:
  - path: /bench
    static: { body: "OK", content_type: text/plain }
  - path: /json
    json: { template: { message: "Hello, World!" } }
  - path: /users/:id/posts/:postId
    methods: [GET]
    json: { template: { user: "{{param.id}}", post: "{{param.postId}}" } }
  - path: /assets/*rest
    static: { file: @FILE@, content_type: image/png, headers: { cache-control: "max-age=60" } }
"""),
    ("durations-and-sizes", LISTEN + """\
workers: 2
shutdown_timeout: 500ms
limits:
  max_request_body: 64k
  max_header_list_size: 16384
  idle_timeout: 2m
  header_timeout: 5
  write_timeout: 1500ms
log: { level: debug }
routes:
  - path: /a
    static: { body: "A" }
"""),
    ("workers-cpu-list", LISTEN + """\
workers: [0]
log: { level: error }
routes:
  - path: /a
    static: { body: "A" }
"""),
    ("listen-list-and-ipv6", """\
listen: ["127.0.0.1:{port}", "[::1]:{port}"]
log: { level: warn }
routes:
  - path: /a
    static: { body: "A" }
"""),
    ("templates-all-placeholders", LISTEN + """\
routes:
  - path: /t/:id/*rest
    methods: [GET, POST, PUT, DELETE, PATCH, OPTIONS]
    json:
      status: 201
      headers: { x-a: "1" }
      template:
        id: "{{param.id}}"
        rest: "{{param.rest}}"
        q: "{{query.q}}"
        h: "{{header.user-agent}}"
        m: "{{method}}"
        p: "{{path}}"
        nested: [{ deep: "pre {{method}} post" }, 1, 2.5, true, null]
  - path: /s
    json: { template: '{"a": [1, 2], "b": "{{query.b}}"}' }
"""),
    ("same-path-disjoint-methods", LISTEN + """\
routes:
  - path: /r
    methods: [GET]
    static: { body: "get" }
  - path: /r
    methods: [POST]
    static: { body: "post" }
"""),
]


@pytest.mark.parametrize("case", GOOD_CONFIGS, ids=[c[0] for c in GOOD_CONFIGS])
def test_good_config_passes_check(celerisd, tmp_path, case):
    _, text = case
    f = tmp_path / "asset.bin"
    f.write_bytes(b"\x89PNG...")
    path, _ = celerisd.write_config(text.replace("@FILE@", str(f)))
    r = run_celerisd(["-t", "-c", str(path)], timeout=15)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "ok" in out.lower(), out
    assert str(path) in out, out


def test_check_does_not_bind(celerisd):
    """-t only checks: it neither listens nor stays running."""
    path, ports = celerisd.write_config(LISTEN + """\
routes:
  - path: /a
    static: { body: "A" }
""")
    r = run_celerisd(["-t", "-c", str(path)], timeout=15)
    assert r.returncode == 0, r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))     # would fail if -t had left a listener


def test_disjoint_methods_same_path_served(celerisd):
    srv = celerisd("""\
routes:
  - path: /r
    methods: [GET]
    static: { body: "get" }
  - path: /r
    methods: [POST]
    static: { body: "post" }
""")
    with srv.client() as c:
        assert c.get("/r").body == b"get"
        assert c.request("HEAD", "/r").status == 200
        assert c.request("POST", "/r").body == b"post"
        r = c.request("PUT", "/r")
        assert r.status == 405
        assert {m.strip() for m in r.header("allow").split(",")} == {"GET", "HEAD", "POST"}
