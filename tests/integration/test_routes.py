"""Routing, static and JSON-template responses, placeholders and common headers.

One daemon (module scope) serves a route table that covers every handler
option; the tests talk to it with Python h2 and curl.
"""

import email.utils
import json
import os
import subprocess
import time

import pytest

from support import curl, parse_curl_headers

ASSET = bytes(range(256)) * 40 + b"\x89PNG tail"

CONFIG = r"""
listen: "127.0.0.1:{port}"
workers: 2
log: { level: warn }
routes:
  - path: /bench
    static: { body: "OK", content_type: text/plain }
  - path: /json
    json: { template: { message: "Hello, World!" } }
  - path: /users/:id/posts/:postId
    methods: [GET]
    json: { template: { user: "{{param.id}}", post: "{{param.postId}}" } }
  - path: /assets/*rest
    static: { file: @ASSET@, content_type: image/png, headers: { cache-control: "max-age=60" } }
  - path: /file
    static: { file: @ASSET@ }
  - path: /wild/*rest
    json: { template: { rest: "{{param.rest}}" } }
  - path: /created
    static: { body: "made", status: 201, headers: { x-extra: "yes", cache-control: "no-store" } }
  - path: /accepted
    json: { template: { ok: true }, status: 202, headers: { x-json: "1" } }
  - path: /types
    json:
      template:
        b: 1
        a: [true, null, 2.5, "x", "7"]
        c: { z: "{{method}}", e: {}, l: [] }
  - path: /jsonstr
    json: { template: '{"a": [1, 2], "s": "{{query.s}}"}' }
  - path: /seq
    json: { template: [1, "{{query.x}}"] }
  - path: /echo/*rest
    methods: [GET, POST, PUT, DELETE]
    json:
      template:
        method: "{{method}}"
        path: "{{path}}"
        q: "{{query.q}}"
        missing: "{{query.nothere}}"
        probe: "{{header.x-probe}}"
        absent: "{{header.x-absent}}"
        mixed: "m={{method}};q={{query.q}};end"
  - path: /p/literal
    static: { body: "literal" }
  - path: /p/:x
    json: { template: { kind: "param", x: "{{param.x}}" } }
  - path: /p/*rest
    json: { template: { kind: "wild", rest: "{{param.rest}}" } }
  - path: /a/b/d
    static: { body: "abd" }
  - path: /a/:x/c
    json: { template: { x: "{{param.x}}" } }
  - path: /postonly
    methods: [POST]
    static: { body: "posted" }
  - path: /getpost
    methods: [GET, POST]
    static: { body: "gp" }
"""


@pytest.fixture(scope="module")
def srv(module_celerisd):
    asset = module_celerisd.dir / "logo.png"
    asset.write_bytes(ASSET)
    return module_celerisd(CONFIG.replace("@ASSET@", str(asset)))


@pytest.fixture
def client(srv):
    with srv.client() as c:
        yield c


def check_common_headers(r):
    """Every response carries date, server, content-type and content-length."""
    assert r.header("server", "").startswith("celerisd"), r
    assert r.header("content-type"), r
    date = r.header("date")
    assert date, r
    parsed = email.utils.parsedate_to_datetime(date)
    assert abs(parsed.timestamp() - time.time()) < 300, date
    assert date.endswith("GMT"), date
    cl = r.header("content-length")
    assert cl is not None, r
    return int(cl)


# -- the example routes ----------------------------------------------------


def test_bench_with_curl(srv):
    p = curl(["-D", "-", "-o", os.devnull, "-w", "\n%{http_version}", srv.url("/bench")])
    assert p.returncode == 0, p.stderr
    head, _, version = p.stdout.rpartition(b"\n")
    assert version == b"2"
    status, h = parse_curl_headers(head)
    assert status == 200
    assert h["content-type"][0].startswith("text/plain")
    assert h["content-length"] == ["2"]
    assert h["server"][0].startswith("celerisd")
    assert "date" in h
    body = curl([srv.url("/bench")])
    assert body.returncode == 0 and body.stdout == b"OK"


def test_bench_body(client):
    r = client.get("/bench")
    assert r.status == 200 and r.body == b"OK"
    assert check_common_headers(r) == 2
    assert r.header("content-type").startswith("text/plain")


def test_json_exact_bytes(client):
    r = client.get("/json")
    assert r.status == 200
    assert r.body == b'{"message":"Hello, World!"}'
    assert r.header("content-type").startswith("application/json")
    assert check_common_headers(r) == len(r.body)


def test_params(client):
    r = client.get("/users/1/posts/2")
    assert r.status == 200
    assert r.body == b'{"user":"1","post":"2"}'
    assert r.header("content-type").startswith("application/json")
    assert check_common_headers(r) == len(r.body)


@pytest.mark.parametrize("raw,decoded", [
    ("caf%C3%A9", "café"),
    ("a%20b", "a b"),
    ("a%2Fb", "a/b"),
    ("100%25", "100%"),
    ("plus+sign", "plus+sign"),   # '+' is only a space in query strings
])
def test_params_percent_decoded(client, raw, decoded):
    r = client.get(f"/users/{raw}/posts/2")
    assert r.status == 200, r
    assert r.json() == {"user": decoded, "post": "2"}


def test_params_curl(srv):
    p = curl([srv.url("/users/caf%C3%A9/posts/x%22y")])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"user": "café", "post": 'x"y'}


# -- common headers, 404, 405, HEAD ----------------------------------------


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/bench", 200),
    ("GET", "/json", 200),
    ("GET", "/assets/x.png", 200),
    ("GET", "/created", 201),
    ("GET", "/nope", 404),
    ("POST", "/bench", 405),
    ("GET", "/postonly", 405),
])
def test_every_response_has_common_headers(client, method, path, status):
    r = client.request(method, path)
    assert r.status == status, r
    assert r.ended, r
    assert check_common_headers(r) == len(r.body)


@pytest.mark.parametrize("path", ["/nope", "/users/1/posts", "/users/1/posts/2/extra", "/benchx",
                                  "/a/b", "/a/b/c/d"])
def test_unknown_path_404(client, path):
    r = client.get(path)
    assert r.status == 404, r


def test_unknown_path_404_other_method(client):
    assert client.request("DELETE", "/nope").status == 404


@pytest.mark.parametrize("method,path,allow", [
    ("POST", "/bench", "GET, HEAD"),
    ("PUT", "/json", "GET, HEAD"),
    ("POST", "/users/1/posts/2", "GET, HEAD"),   # methods: [GET] implies HEAD
    ("GET", "/postonly", "POST"),
    ("HEAD", "/postonly", "POST"),
])
def test_wrong_method_405_with_allow(client, method, path, allow):
    r = client.request(method, path)
    assert r.status == 405, r
    got = r.header("allow")
    assert got is not None, r
    assert {m.strip() for m in got.split(",")} == {m.strip() for m in allow.split(",")}, got


def test_405_allow_default_exact(client):
    r = client.request("POST", "/bench")
    assert r.status == 405 and r.header("allow") == "GET, HEAD"


def test_405_allow_several(client):
    r = client.request("DELETE", "/getpost")
    assert r.status == 405
    assert {m.strip() for m in r.header("allow").split(",")} == {"GET", "HEAD", "POST"}


def test_get_and_post_route(client):
    assert client.request("GET", "/getpost").body == b"gp"
    r = client.request("POST", "/getpost", body=b"x=1")
    assert r.status == 200 and r.body == b"gp"
    assert client.request("POST", "/postonly").body == b"posted"


@pytest.mark.parametrize("path", ["/bench", "/json", "/users/7/posts/8", "/assets/logo.png",
                                  "/created", "/accepted"])
def test_head_like_get_without_body(client, path):
    g = client.get(path)
    h = client.request("HEAD", path)
    assert h.status == g.status
    assert h.body == b"", h
    assert h.ended
    assert h.header("content-length") == str(len(g.body)), (g, h)
    assert h.header("content-type") == g.header("content-type")
    skip = {"date"}
    assert sorted((k, v) for k, v in h.headers if k not in skip) == \
        sorted((k, v) for k, v in g.headers if k not in skip)


def test_head_with_curl(srv):
    p = curl(["-I", srv.url("/json")])
    assert p.returncode == 0, p.stderr
    status, h = parse_curl_headers(p.stdout)
    assert status == 200
    assert h["content-length"] == [str(len(b'{"message":"Hello, World!"}'))]
    assert h["content-type"][0].startswith("application/json")


# -- static options ----------------------------------------------------------


def test_static_file_and_headers(client):
    r = client.get("/assets/img/logo.png")
    assert r.status == 200
    assert r.body == ASSET
    assert r.header("content-type") == "image/png"
    assert r.header("cache-control") == "max-age=60"
    assert int(r.header("content-length")) == len(ASSET)


def test_static_file_default_content_type(client):
    r = client.get("/file")
    assert r.status == 200 and r.body == ASSET
    assert r.header("content-type") == "application/octet-stream"


def test_static_status_and_headers(client):
    r = client.get("/created")
    assert r.status == 201
    assert r.body == b"made"
    assert r.header("x-extra") == "yes"
    assert r.header("cache-control") == "no-store"
    assert r.header("content-type").startswith("text/plain")


def test_json_status_and_headers(client):
    r = client.get("/accepted")
    assert r.status == 202
    assert r.body == b'{"ok":true}'
    assert r.header("x-json") == "1"
    assert r.header("content-type").startswith("application/json")


def test_static_with_curl_headers(srv):
    p = curl(["-D", "-", "-o", os.devnull, srv.url("/assets/a.png")])
    assert p.returncode == 0, p.stderr
    status, h = parse_curl_headers(p.stdout)
    assert status == 200
    assert h["cache-control"] == ["max-age=60"]
    assert h["content-type"] == ["image/png"]


# -- JSON templates ------------------------------------------------------------


def test_json_types_and_order(client):
    r = client.get("/types")
    assert r.status == 200
    assert r.body == b'{"b":1,"a":[true,null,2.5,"x","7"],"c":{"z":"GET","e":{},"l":[]}}'


def test_json_string_template(client):
    r = client.get("/jsonstr?s=hi")
    assert r.status == 200
    assert r.body == b'{"a":[1,2],"s":"hi"}'


def test_json_string_template_keeps_key_order(celerisd):
    srv = celerisd("""
routes:
  - path: /o
    json: { template: '{"z": 1, "a": {"y": [], "b": "{{method}}"}, "m": null}' }
""")
    with srv.client() as c:
        assert c.get("/o").body == b'{"z":1,"a":{"y":[],"b":"GET"},"m":null}'


def test_static_file_read_at_load(celerisd, tmp_path):
    f = tmp_path / "page.html"
    f.write_bytes(b"<h1>original</h1>")
    srv = celerisd(f"""
routes:
  - path: /page
    static: {{ file: {f}, content_type: text/html }}
""")
    f.write_bytes(b"<h1>changed after start, and longer</h1>")
    with srv.client() as c:
        r = c.get("/page")
        assert r.body == b"<h1>original</h1>"
        f.unlink()
        r = c.get("/page")
        assert r.status == 200 and r.body == b"<h1>original</h1>"
        assert r.header("content-type") == "text/html"


def test_sequence_template(client):
    r = client.get("/seq?x=5")
    assert r.status == 200
    assert r.body == b'[1,"5"]'


def test_method_path_query_header_placeholders(client):
    r = client.get("/echo/a%20b/c?q=x+y%21&q=second&z=1", headers=[("x-probe", "probe value")])
    assert r.status == 200, r
    assert r.json() == {
        "method": "GET",
        "path": "/echo/a%20b/c",      # {{path}} is the raw path without the query
        "q": "x y!",                  # percent-decoded, '+' is a space, first one wins
        "missing": "",
        "probe": "probe value",
        "absent": "",
        "mixed": "m=GET;q=x y!;end",
    }


def test_method_placeholder_other_methods(client):
    for m in ("POST", "PUT", "DELETE"):
        r = client.request(m, "/echo/x")
        assert r.status == 200, r
        assert r.json()["method"] == m


def test_header_placeholder_case_insensitive_name(client):
    # HTTP/2 header names are lowercase on the wire; the template names x-probe
    r = client.get("/echo/", headers=[("x-probe", "Mixed Case Value")])
    assert r.json()["probe"] == "Mixed Case Value"


@pytest.mark.parametrize("value", [
    'he said "hi"',
    'back\\slash \\" \\\\ end',
    'tab\there "and" \\ both',          # HT is the one control byte HTTP/2 allows in a value
    '}"]}, {"injected": true',
    "caf\u00e9 \u2603 snow",
])
def test_header_placeholder_escaping(client, value):
    r = client.get("/echo/x", headers=[("x-probe", value)])
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc["probe"] == value
    assert set(doc) == {"method", "path", "q", "missing", "probe", "absent", "mixed"}


def test_header_placeholder_invalid_utf8_still_json(client):
    r = client.get("/echo/x", headers=[(b"x-probe", b'pre \xff\xfe "q" post')])
    assert r.status == 200, r
    doc = json.loads(r.body)          # raises if the body is not valid UTF-8 JSON
    assert doc["probe"].startswith("pre ")
    assert doc["probe"].endswith(' "q" post')


@pytest.mark.parametrize("raw,decoded", [
    ("%22%5C%01%0A%1F%7F", '"\\\x01\n\x1f\x7f'),   # quote, backslash, control bytes
    ("a%00b", "a\x00b"),
    ("%E2%9C%93+ok", "\u2713 ok"),
    ("", ""),
])
def test_query_placeholder_escaping(client, raw, decoded):
    r = client.get(f"/echo/x?q={raw}")
    assert r.status == 200, r
    assert r.json()["q"] == decoded


def test_query_placeholder_in_json_string_template(client):
    r = client.get("/jsonstr?s=%22%7D")
    assert r.status == 200
    assert json.loads(r.body) == {"a": [1, 2], "s": '"}'}


# -- wildcard and precedence -------------------------------------------------------------


@pytest.mark.parametrize("path,rest", [
    ("/wild/a", "a"),
    ("/wild/a/b/c.txt", "a/b/c.txt"),
    ("/wild/", ""),
])
def test_wildcard_rest(client, path, rest):
    r = client.get(path)
    assert r.status == 200, r
    assert r.json() == {"rest": rest}


def test_wildcard_static_empty_rest(client):
    r = client.get("/assets/")
    assert r.status == 200 and r.body == ASSET


@pytest.mark.parametrize("path,expect", [
    ("/p/literal", "literal"),
    ("/p/other", {"kind": "param", "x": "other"}),
    ("/p/literalx", {"kind": "param", "x": "literalx"}),
    ("/p/a/b", {"kind": "wild", "rest": "a/b"}),
    ("/p/literal/more", {"kind": "wild", "rest": "literal/more"}),
    ("/p/", {"kind": "wild", "rest": ""}),
    ("/a/b/d", "abd"),
    ("/a/b/c", {"x": "b"}),           # backtracks from the literal b to the param
    ("/a/z/c", {"x": "z"}),
])
def test_precedence(client, path, expect):
    r = client.get(path)
    assert r.status == 200, r
    if isinstance(expect, str):
        assert r.body == expect.encode()
    else:
        assert r.json() == expect


def test_precedence_no_match(client):
    assert client.get("/a/b/e").status == 404


def test_concurrent_curl_clients(srv):
    """Several curl processes at once, each on its own connection. (curl 7.88
    fails to reuse a prior-knowledge connection for a second transfer, with
    any server, so each URL gets its own curl.)"""
    expect = {"/bench": b"OK", "/json": b'{"message":"Hello, World!"}',
              "/users/3/posts/4": b'{"user":"3","post":"4"}',
              "/p/q": b'{"kind":"param","x":"q"}'}
    procs = {p: subprocess.Popen(["curl", "--http2-prior-knowledge", "-sS", "--max-time", "10",
                                  srv.url(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL)
             for p in expect}
    for path, proc in procs.items():
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert out == expect[path]
