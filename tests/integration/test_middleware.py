"""Middleware (README: Configuration, Middleware) against the real daemon over
HTTP/1.1 and h2c: the global list, a route's list after it, their order, the
answers they reach (handler, 404, 405, the server's own refusals, a module's
late answer), reload, and config errors with file:line:column."""

import pathlib
import signal
import socket
import time

import pytest

from support import BINARY, expect_config_error, reloads_under_load, run_h2load

MODULES = pathlib.Path(BINARY).resolve().parent / "modules"

CONFIG = f"""workers: 1
log: {{ level: info }}
modules_dir: {MODULES}
middleware:
  - headers:
      set: {{ strict-transport-security: "max-age=31536000", x-order: global, x-over: global }}
      remove: [server]
routes:
  - path: /plain
    static: {{ body: "plain", headers: {{ x-handler: h }} }}
  - path: /route
    methods: [GET]
    middleware:
      - headers: {{ add: {{ x-order: route }}, set: {{ x-over: route }} }}
      - headers: {{ remove: [x-handler, date], add: {{ x-order: second }} }}
    static: {{ body: "route", headers: {{ x-handler: h }} }}
  - path: /server
    middleware:
      - headers: {{ set: {{ server: "front/1", content-type: "text/x-mw" }} }}
    json: {{ template: {{ a: 1 }} }}
  - path: /delay
    middleware: [ {{ headers: {{ add: {{ x-late: yes }} }} }} ]
    module: {{ name: delay, config: {{ ms: 5, mode: loop }} }}
"""


@pytest.fixture(scope="module")
def srv(factory):
    return factory(CONFIG)


def h1(srv, raw):
    """Sends RAW on one connection (the server closes it: connection: close
    or a refusal); returns (status line, [(name, value)] in order, body)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    return lines[0], [(k.lower(), v) for k, v in fields], body


def h1_get(srv, path, method="GET", host="x"):
    return h1(srv, f"{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
              .encode())


def names(fields):
    return [k for k, _ in fields]


def values(fields, name):
    return [v for k, v in fields if k == name]


def test_global_headers_h2(srv):
    with srv.client() as c:
        r = c.get("/plain")
        assert r.status == 200 and r.body == b"plain"
        assert r.header("strict-transport-security") == "max-age=31536000"
        assert r.header("server") is None, r.headers
        assert r.header("date") is not None
        assert r.header("x-handler") == "h"
        # the phase's order: date, content-type, the handler's, then middleware
        assert [k for k, _ in r.headers][:3] == ["date", "content-type", "x-handler"], r.headers


def test_global_headers_h1(srv):
    status, fields, body = h1_get(srv, "/plain")
    assert status.startswith("HTTP/1.1 200") and body == b"plain"
    assert values(fields, "strict-transport-security") == ["max-age=31536000"]
    assert "server" not in names(fields), fields
    assert values(fields, "x-order") == ["global"]
    assert names(fields)[-2:] == ["content-length", "connection"], fields


def test_route_after_global_in_order(srv):
    """Global first, then the route's list in order: add appends, set replaces
    the global value, remove takes the handler's field and date."""
    with srv.client() as c:
        r = c.get("/route")
        assert r.status == 200
        assert r.header_all("x-order") == ["global", "route", "second"]
        assert r.header_all("x-over") == ["route"]
        assert r.header("x-handler") is None and r.header("date") is None
        assert r.header("server") is None
    status, fields, _ = h1_get(srv, "/route")
    assert values(fields, "x-order") == ["global", "route", "second"]
    assert values(fields, "x-over") == ["route"]
    assert "x-handler" not in names(fields) and "date" not in names(fields)


def test_set_server_and_content_type(srv):
    with srv.client() as c:
        r = c.get("/server")
        assert r.header("server") == "front/1"
        assert r.header_all("content-type") == ["text/x-mw"]
        assert r.body == b'{"a":1}'
    _, fields, _ = h1_get(srv, "/server")
    assert values(fields, "server") == ["front/1"]
    assert values(fields, "content-type") == ["text/x-mw"]


def test_404_gets_global_only(srv):
    with srv.client() as c:
        r = c.get("/nothing")
        assert r.status == 404
        assert r.header("strict-transport-security") == "max-age=31536000"
        assert r.header_all("x-order") == ["global"]
        assert r.header("server") is None


def test_405_gets_the_paths_route_list(srv):
    with srv.client() as c:
        r = c.request("POST", "/route")
        assert r.status == 405
        assert r.header("allow") is not None
        assert r.header_all("x-order") == ["global", "route", "second"]
    status, fields, _ = h1_get(srv, "/route", method="DELETE")
    assert status.startswith("HTTP/1.1 405")
    assert values(fields, "x-order") == ["global", "route", "second"]


def test_h1_refusal_passes_the_head_phase(srv):
    """A request refused before routing (a bad request line: 400) still gets
    the global middleware, and no server field."""
    status, fields, _ = h1(srv, b"GET /a b c HTTP/1.1\r\nhost: x\r\n\r\n")
    assert status.startswith("HTTP/1.1 400"), status
    assert values(fields, "strict-transport-security") == ["max-age=31536000"]
    assert "server" not in names(fields)
    assert values(fields, "connection") == ["close"]


def test_h2_early_answer_passes_the_head_phase(srv):
    """An HTTP/2 413 answered from content-length before the body."""
    with srv.client() as c:
        sid = c.send_request("POST", "/plain", headers=[("content-length", str(1 << 30))],
                             end_stream=False)
        r = c.response(sid)
        assert r.status == 413
        assert r.header("strict-transport-security") == "max-age=31536000"
        assert r.header("server") is None


def test_module_late_answer(srv):
    """A module answering from a timer (after handle returned) gets the lists."""
    with srv.client() as c:
        r = c.get("/delay")
        assert r.status == 200
        assert r.header("x-late") == "yes"
        assert r.header_all("x-order") == ["global"]
        assert r.header("server") is None
    _, fields, _ = h1_get(srv, "/delay")
    assert values(fields, "x-late") == ["yes"]


def test_reload_swaps_the_list(factory):
    text = "workers: 1\nlog: { level: info }\n%s\nroutes:\n  - path: /a\n    static: { body: a }\n"
    srv = factory(text % "middleware: [ { headers: { set: { x-gen: one } } } ]")
    with srv.client() as c:
        assert c.get("/a").header("x-gen") == "one"
    path = srv.config_path
    body = path.read_text().replace("x-gen: one", "x-gen: two")
    path.write_text(body)
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "generation 2 is serving" not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.02)
    with srv.client() as c:
        r = c.get("/a")
        assert r.header("x-gen") == "two"
        assert r.header("server") is not None  # no remove here: the default stays
    _, fields, _ = h1_get(srv, "/a")
    assert values(fields, "x-gen") == ["two"]


@pytest.mark.parametrize("yaml,line,col,words", [
    ("middleware:\n  - headers: {set: {a: b}, sett: {}}\n", 2, 28,
     ["unknown key \"sett\" in headers", "set, add, remove"]),
    ("middleware:\n  - hedaers: {}\n", 2, 5, ["unknown key \"hedaers\"", "headers"]),
    ("middleware:\n  - headers: {remove: [transfer-encoding]}\n", 2, 24,
     ["cannot be set here"]),
    ("routes:\n  - path: /a\n    middleware: [{headers: {add: {x: [1]}}}]\n"
     "    static: {body: x}\n", 3, 38, ["header value for \"x\" must be a string"]),
    ("middleware:\n  - request_id: {trust_incoming: maybe}\n", 2, 34,
     ["trust_incoming must be true or false"]),
    ("middleware:\n  - request_id: {headr: x}\n", 2, 18,
     ["unknown key \"headr\" in request_id", "header, trust_incoming"]),
    ("middleware:\n  - request_id: {header: \"a b\"}\n", 2, 26, ["not allowed in a name"]),
    ("middleware:\n  - request_id: {format: base64}\n", 2, 26,
     ["format must be hex or base64url, not \"base64\""]),
])
def test_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml)
    expect_config_error(path, line, col, words)


# ---- request_id ----

HEX32 = __import__("re").compile(r"^[0-9a-f]{32}$")


def wait_log(path, count, timeout=10):
    """The first COUNT lines of the access log (workers write it once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@pytest.fixture(scope="module")
def rid(factory, tmp_path_factory):
    d = tmp_path_factory.mktemp("rid")
    text = f"""workers: 2
log:
  access: {{ path: {d}/access.log, format: "%s %U %{{request_id}} %{{x-request-id}}i" }}
middleware:
  - request_id: {{}}
routes:
  - path: /a
    static: {{ body: a }}
  - path: /trust
    middleware: [ {{ request_id: {{ header: X-Trace, trust_incoming: true }} }} ]
    static: {{ body: t }}
"""
    srv = factory(text)
    srv.log = d / "access.log"
    return srv


def test_request_id_h2_and_h1(rid):
    with rid.client() as c:
        ids = [c.get("/a").header("x-request-id") for _ in range(20)]
        r = c.get("/nothing")
        assert r.status == 404 and HEX32.match(r.header("x-request-id") or "")
    _, fields, _ = h1_get(rid, "/a")
    ids += values(fields, "x-request-id")
    assert len(ids) == 21 and all(HEX32.match(i or "") for i in ids), ids
    assert len(set(ids)) == 21


def test_request_id_incoming_ignored_unless_trusted(rid):
    with rid.client() as c:
        r = c.get("/a", headers=[("x-request-id", "from-client")])
        assert HEX32.match(r.header("x-request-id")), r.headers
        # the route's own request_id trusts x-trace; a request has one id, so
        # the global one's field carries it too
        r = c.get("/trust", headers=[("x-trace", "abc-123")])
        assert r.header("x-trace") == "abc-123"
        assert r.header("x-request-id") == "abc-123"
        for bad in ["a b", "x" * 129, ""]:
            r = c.get("/trust", headers=[("x-trace", bad)])
            assert HEX32.match(r.header("x-trace")), (bad, r.headers)
    _, fields, _ = h1(rid, b"GET /trust HTTP/1.1\r\nhost: x\r\nx-trace: h1-id\r\n"
                            b"connection: close\r\n\r\n")
    assert values(fields, "x-trace") == ["h1-id"]


def test_request_id_in_access_log(rid):
    with rid.client() as c:
        sent = c.get("/a?log=1").header("x-request-id")
    _, fields, _ = h1_get(rid, "/a?log=2")
    sent_h1 = values(fields, "x-request-id")[0]
    status, fields, _ = h1(rid, b"GET /a b c HTTP/1.1\r\nhost: x\r\n\r\n")
    assert status.startswith("HTTP/1.1 400")
    refused = values(fields, "x-request-id")
    assert len(refused) == 1 and HEX32.match(refused[0])
    # each worker writes its lines once a second: earlier tests' lines may
    # still come in after these requests, so wait for these ids themselves
    # (unique) rather than for a count of lines
    def logged(lines):
        return (f"200 /a {sent} -" in lines and f"200 /a {sent_h1} -" in lines
                and any(line.startswith("400 ") and refused[0] in line for line in lines))

    deadline = time.monotonic() + 10
    while not logged(lines := wait_log(rid.log, 0, timeout=0)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"200 /a {sent} -" in lines, lines
    assert f"200 /a {sent_h1} -" in lines, lines
    assert any(line.startswith("400 ") and refused[0] in line for line in lines), lines


# ---- cors ----

APP = "https://app.example.com"


@pytest.fixture(scope="module")
def cors(factory):
    return factory("""workers: 1
routes:
  - path: /api
    methods: [GET, POST]
    middleware:
      - cors:
          origins: ["https://App.example.com", "http://localhost:3000"]
          methods: [GET, POST]
          headers: [Content-Type, x-token]
          expose: [x-total]
          credentials: true
          max_age: 10m
    static: { body: "api", headers: { vary: accept-encoding } }
  - path: /get-only
    methods: [GET]
    middleware: [ { cors: { origins: "*", headers: "*" } } ]
    static: { body: "g" }
  - path: /guarded
    middleware:
      - cors: { origins: "*" }
      - access: { allow: [203.0.113.0/24], deny: [all] }
    static: { body: "guarded" }
""")


PREFLIGHT = [("origin", APP), ("access-control-request-method", "POST"),
             ("access-control-request-headers", "content-type,x-token")]


def test_cors_preflight_h2(cors):
    with cors.client() as c:
        r = c.request("OPTIONS", "/api", headers=PREFLIGHT)
        assert r.status == 204 and r.body == b"", r
        assert r.header("access-control-allow-origin") == APP
        assert r.header("access-control-allow-credentials") == "true"
        assert r.header("access-control-allow-methods") == "GET, POST"
        assert r.header("access-control-allow-headers") == "content-type, x-token"
        assert r.header("access-control-max-age") == "600"
        assert "origin" in ", ".join(r.header_all("vary"))
        assert r.header("content-length") in (None, "0")


def test_cors_preflight_h1(cors):
    raw = ("OPTIONS /api HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" +
           "".join(f"{k}: {v}\r\n" for k, v in PREFLIGHT) + "\r\n").encode()
    status, fields, body = h1(cors, raw)
    assert status.startswith("HTTP/1.1 204"), status
    assert values(fields, "access-control-allow-origin") == [APP]
    assert values(fields, "access-control-allow-methods") == ["GET, POST"]
    assert body == b""


@pytest.mark.parametrize("change", [
    ("origin", "https://evil.example.com"),
    ("access-control-request-method", "PUT"),
    ("access-control-request-headers", "content-type,x-other"),
])
def test_cors_preflight_refused(cors, change):
    hdrs = [(k, change[1] if k == change[0] else v) for k, v in PREFLIGHT]
    with cors.client() as c:
        r = c.request("OPTIONS", "/api", headers=hdrs)
        assert r.status == 403
        assert r.header("access-control-allow-origin") is None
        assert r.header("access-control-allow-methods") is None


def test_cors_skips_only_its_own_request_phase(cors):
    """cors' request phase has work for OPTIONS alone, so dispatch skips it
    for other methods; a later member's request phase still runs for every
    method (one with no method bit included), and a preflight is still
    answered by cors before it."""
    with cors.client() as c:
        for method in ("GET", "POST", "PROPFIND"):
            r = c.request(method, "/guarded", headers=[("origin", "https://x.test")])
            assert r.status == 403, (method, r)
            assert r.header("access-control-allow-origin") == "*"
        r = c.request("OPTIONS", "/guarded", headers=[
            ("origin", "https://x.test"), ("access-control-request-method", "GET")])
        assert r.status == 204, r
        assert r.header("access-control-allow-origin") == "*"


def test_cors_preflight_on_a_get_only_route(cors):
    """OPTIONS is not one of the route's methods (405 otherwise): the preflight
    is still answered, with any origin and the headers asked for."""
    with cors.client() as c:
        r = c.request("OPTIONS", "/get-only", headers=[
            ("origin", "https://x.test"), ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-anything")])
        assert r.status == 204
        assert r.header("access-control-allow-origin") == "*"
        assert r.header("access-control-allow-headers") == "x-anything"
        # an OPTIONS that is no preflight is the route's business: 405
        r = c.request("OPTIONS", "/get-only", headers=[("origin", "https://x.test")])
        assert r.status == 405
        assert r.header("access-control-allow-origin") == "*"


def test_cors_actual_request(cors):
    with cors.client() as c:
        r = c.get("/api", headers=[("origin", APP)])
        assert r.status == 200 and r.body == b"api"
        assert r.header("access-control-allow-origin") == APP
        assert r.header("access-control-allow-credentials") == "true"
        assert r.header("access-control-expose-headers") == "x-total"
        assert r.header_all("vary") == ["accept-encoding", "origin"]
        r = c.get("/api", headers=[("origin", "https://evil.example.com")])
        assert r.status == 200
        assert r.header("access-control-allow-origin") is None
        assert r.header_all("vary") == ["accept-encoding", "origin"]
        r = c.get("/api")
        assert r.header("access-control-allow-origin") is None
        r = c.get("/get-only", headers=[("origin", "https://x.test")])
        assert r.header("access-control-allow-origin") == "*"
        assert r.header("vary") is None
    _, fields, _ = h1(cors, b"GET /api HTTP/1.1\r\nhost: x\r\norigin: http://localhost:3000\r\n"
                            b"connection: close\r\n\r\n")
    assert values(fields, "access-control-allow-origin") == ["http://localhost:3000"]


@pytest.mark.parametrize("yaml,line,col,words", [
    ("middleware:\n  - cors: {methods: [GET]}\n", 2, 11, ["cors needs origins"]),
    ("middleware:\n  - cors: {origins: \"*\", credentials: true}\n", 2, 21,
     ["with credentials: true"]),
    ("middleware:\n  - cors: {origins: [\"https://a.test/app\"]}\n", 2, 22,
     ["is not scheme://host[:port]"]),
    ("middleware:\n  - cors: {origins: [\"https://a.test\"], max_agee: 1}\n", 2, 41,
     ["unknown key \"max_agee\" in cors", "origins, methods, headers, expose"]),
    ("middleware:\n  - cors: {origins: [\"*\", \"https://a.test\"]}\n", 2, 22,
     ["stands alone"]),
])
def test_cors_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml)
    expect_config_error(path, line, col, words)


# ---- access ----

ACCESS_ROUTES = """
real_ip: { header: x-forwarded-for, trusted: [127.0.0.1] }
routes:
  - path: /local
    middleware: [ { access: { allow: [127.0.0.0/8], deny: [all] } } ]
    static: { body: "local" }
  - path: /not-local
    middleware: [ { access: { deny: [127.0.0.1, "::1"] } } ]
    static: { body: "open" }
  - path: /v6
    middleware: [ { access: { allow: ["::1/128"] } } ]
    static: { body: "v6" }
  - path: /office
    middleware: [ { access: { allow: [203.0.113.0/24, "2001:db8::/32"], deny: [all] } } ]
    static: { body: "office" }
"""


@pytest.fixture(scope="module")
def acc(factory):
    return factory("""listen:
  - "127.0.0.1:{port}"
  - { address: "127.0.0.1:{port2}", proxy_protocol: true, trusted: [127.0.0.1] }
workers: 1
""" + ACCESS_ROUTES, ports=2)


def status_h2(srv, path, headers=()):
    with srv.client() as c:
        return c.get(path, headers=list(headers)).status


def status_h1(port, path, extra=b"", prefix=b""):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(prefix + f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".encode() +
                  extra + b"\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_access_by_peer(acc):
    for path, want in [("/local", 200), ("/not-local", 403), ("/v6", 403), ("/office", 403)]:
        assert status_h2(acc, path) == want, path
        assert status_h1(acc.port, path) == want, path


def test_access_real_ip_header(acc):
    """Behind a trusted balancer (real_ip), the address that counts is the
    client's from x-forwarded-for, IPv6 included."""
    for xff, want in [("203.0.113.5", 200), ("198.51.100.1", 403),
                      ("2001:db8::7", 200), ("2001:db9::7", 403), ("203.0.113.5, 10.9.9.9", 403)]:
        assert status_h2(acc, "/office", [("x-forwarded-for", xff)]) == want, xff
        assert status_h1(acc.port, "/office", f"x-forwarded-for: {xff}\r\n".encode()) == want, xff
    # the client's own address is no longer the one that counts: /local denies it
    assert status_h2(acc, "/local", [("x-forwarded-for", "198.51.100.1")]) == 403


def test_access_proxy_protocol(acc):
    port = acc.ports[1]
    ok = b"PROXY TCP4 203.0.113.9 127.0.0.1 5000 80\r\n"
    bad = b"PROXY TCP4 198.51.100.9 127.0.0.1 5000 80\r\n"
    v6 = b"PROXY TCP6 ::1 ::1 5000 80\r\n"
    assert status_h1(port, "/office", prefix=ok) == 200
    assert status_h1(port, "/office", prefix=bad) == 403
    assert status_h1(port, "/local", prefix=ok) == 403
    assert status_h1(port, "/v6", prefix=v6) == 200


@pytest.fixture(scope="module")
def acc_plain(factory):
    """The same routes without real_ip: the connection's address decides,
    taken in binary when the connection was accepted (or its PROXY header
    read), not parsed from its text per request."""
    routes = ACCESS_ROUTES.replace(
        "real_ip: { header: x-forwarded-for, trusted: [127.0.0.1] }\n", "")
    assert "real_ip" not in routes
    return factory("""listen:
  - "127.0.0.1:{port}"
  - { address: "127.0.0.1:{port2}", proxy_protocol: true, trusted: [127.0.0.1] }
workers: 1
""" + routes, ports=2)


def test_access_by_the_connections_address(acc_plain):
    for path, want in [("/local", 200), ("/not-local", 403), ("/v6", 403), ("/office", 403)]:
        assert status_h2(acc_plain, path) == want, path
        assert status_h1(acc_plain.port, path) == want, path
    # without real_ip a forwarded-for field counts for nothing
    assert status_h1(acc_plain.port, "/office", b"x-forwarded-for: 203.0.113.5\r\n") == 403
    port = acc_plain.ports[1]
    for prefix, path, want in [
            (b"PROXY TCP4 203.0.113.9 127.0.0.1 5000 80\r\n", "/office", 200),
            (b"PROXY TCP4 198.51.100.9 127.0.0.1 5000 80\r\n", "/office", 403),
            (b"PROXY TCP4 203.0.113.9 127.0.0.1 5000 80\r\n", "/local", 403),
            (b"PROXY TCP6 2001:db8::9 ::1 5000 80\r\n", "/office", 200),
            (b"PROXY TCP6 2001:db9::9 ::1 5000 80\r\n", "/office", 403),
            (b"PROXY TCP6 ::1 ::1 5000 80\r\n", "/v6", 200),
            (b"PROXY TCP6 ::1 ::1 5000 80\r\n", "/not-local", 403),
            (b"PROXY UNKNOWN\r\n", "/local", 200)]:  # keeps the socket's address
        assert status_h1(port, path, prefix=prefix) == want, (prefix, path)


@pytest.mark.parametrize("yaml,line,col,words", [
    ("middleware:\n  - access: {allow: [10.0.0.1/8]}\n", 2, 22, ["is not an address range"]),
    ("middleware:\n  - access: {deny: [\"::1/129\"]}\n", 2, 21, ["is not an address range"]),
    ("middleware:\n  - access: {}\n", 2, 13, ["access needs allow or deny"]),
    ("middleware:\n  - access: {allow: [all], dney: [all]}\n", 2, 28,
     ["unknown key \"dney\" in access", "allow, deny"]),
])
def test_access_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml)
    expect_config_error(path, line, col, words)


# ---- redirect (a handler) ----

@pytest.fixture(scope="module")
def redir(factory):
    return factory("""workers: 1
middleware: [ { headers: { set: { x-mw: yes } } } ]
routes:
  - path: /old/*rest
    redirect: { to: "/new/{{param.rest}}", status: 301 }
  - path: /search
    redirect: { to: "https://example.com/find?q={{query.q}}&m={{method}}", status: 308 }
  - path: /c
    redirect: { to: "https://example.com/" }
  - path: /u/:id
    redirect: { to: "https://{{header.x-host}}/users/{{param.id}}", status: 303 }
  - path: /h/*rest
    redirect: { to: "https://{{host}}/{{param.rest}}", status: 308 }
""")


@pytest.mark.parametrize("target,status,location", [
    ("/old/a/b", 301, "/new/a/b"),
    ("/old/a/b%20c", 301, "/new/a/b%20c"),
    ("/old/x%0d%0aset-cookie:%20y", 301, "/new/x%0D%0Aset-cookie%3A%20y"),
    ("/old/a%3Fq=1%23frag", 301, "/new/a%3Fq%3D1%23frag"),
    ("/old/", 301, "/new/"),
    ("/search?q=x%26y%3Dz", 308, "https://example.com/find?q=x%26y%3Dz&m=GET"),
    ("/search?q=a+b&q=c", 308, "https://example.com/find?q=a%20b&m=GET"),
    ("/search", 308, "https://example.com/find?q=&m=GET"),
    ("/c", 302, "https://example.com/"),
])
def test_redirect(redir, target, status, location):
    with redir.client() as c:
        r = c.get(target)
        assert r.status == status
        assert r.header("location") == location
        assert r.body == b""
        assert r.header("x-mw") == "yes"
    st, fields, body = h1_get(redir, target)
    assert st.startswith(f"HTTP/1.1 {status}"), st
    assert values(fields, "location") == [location]
    assert body == b""


def test_redirect_header_cannot_change_host_shape(redir):
    """An inserted header value is percent-encoded too: no '@', ':' or '/'
    smuggled into the authority."""
    with redir.client() as c:
        r = c.get("/u/7", headers=[("x-host", "good.example@evil.example:81/x")])
        assert r.status == 303
        assert r.header("location") == "https://good.example%40evil.example%3A81/x/users/7"


@pytest.mark.parametrize("host,location", [
    ("example.com:8443", "https://example.com:8443/a/b"),
    ("[2001:db8::1]:8443", "https://[2001:db8::1]:8443/a/b"),
    ("example.com", "https://example.com/a/b"),
])
def test_redirect_host_keeps_its_port(redir, host, location):
    """{{host}} in a redirect names the host the request came with, port and
    IPv6 brackets included (it used to come out as example.com%3A8443)."""
    with redir.client(authority=host) as c:
        r = c.get("/h/a/b")
        assert r.status == 308
        assert r.header("location") == location
    st, fields, _ = h1_get(redir, "/h/a/b", host=host)
    assert st.startswith("HTTP/1.1 308"), st
    assert values(fields, "location") == [location]


def test_redirect_host_cannot_add_a_path_or_userinfo(redir):
    """What the host may not hold is still encoded: '/' and '@'."""
    st, fields, _ = h1_get(redir, "/h/x", host="a@b")
    if st.startswith("HTTP/1.1 308"):
        assert values(fields, "location") == ["https://a%40b/x"]
    else:
        assert st.startswith("HTTP/1.1 400"), st


@pytest.mark.parametrize("yaml,line,col,words", [
    ("routes:\n  - path: /a\n    redirect: {to: /b, status: 300}\n", 3, 32,
     ["must be between 301 and 308"]),
    ("routes:\n  - path: /a\n    redirect: {to: /b, status: 305}\n", 3, 32,
     ["301, 302, 303, 307 or 308"]),
    ("routes:\n  - path: /a\n    redirect: {status: 301}\n", 3, 15, ["redirect needs to"]),
    ("routes:\n  - path: /a/:id\n    redirect: {to: \"/b/{{param.nope}}\"}\n", 3, 20,
     ["names no param"]),
    ("routes:\n  - path: /a\n    redirect: {to: /b, code: 301}\n", 3, 24,
     ["unknown key \"code\" in redirect", "to, status"]),
])
def test_redirect_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml)
    expect_config_error(path, line, col, words)


# ---- rate_limit ----

@pytest.fixture(scope="module")
def rl(factory):
    return factory("""workers: 1
routes:
  - path: /k
    middleware: [ { rate_limit: { key: header.X-Api-Key, rate: 1/m, burst: 2 } } ]
    static: { body: "k" }
  - path: /lru
    middleware: [ { rate_limit: { key: header.x-k, rate: 1/h, burst: 0, max_keys: 2, status: 503 } } ]
    static: { body: "l" }
""")


def test_rate_limit_per_key(rl):
    with rl.client() as c:
        got = [c.get("/k", headers=[("x-api-key", "a")]).status for _ in range(5)]
        assert got == [200, 200, 200, 429, 429], got
        r = c.get("/k", headers=[("x-api-key", "a")])
        assert r.status == 429
        assert 55 <= int(r.header("retry-after")) <= 60, r.headers
        assert r.header("ratelimit-remaining") == "0"
        assert r.header("ratelimit-limit") == "1"
        assert r.header("ratelimit-policy") == "1;w=1;burst=2"
        assert c.get("/k", headers=[("x-api-key", "b")]).status == 200
        # no key: not limited
        assert [c.get("/k").status for _ in range(5)] == [200] * 5
    status, fields, _ = h1(rl, b"GET /k HTTP/1.1\r\nhost: x\r\nx-api-key: a\r\n"
                               b"connection: close\r\n\r\n")
    assert status.startswith("HTTP/1.1 429") and values(fields, "retry-after")


def test_rate_limit_lru_eviction(rl):
    """Two keys remembered: a third evicts the least recently seen, which then
    starts afresh; the answer past the limit is the configured status."""
    with rl.client() as c:
        def get(k):
            return c.get("/lru", headers=[("x-k", k)]).status
        assert [get("a"), get("a")] == [200, 503]
        assert [get("b"), get("b")] == [200, 503]
        assert get("c") == 200          # evicts a (b was seen last)
        assert get("b") == 503          # b is still remembered
        assert get("a") == 200          # a forgotten: a new bucket


def test_rate_limit_across_two_workers(factory):
    """Each of 2 workers holds half the rate and half the burst, with no lock:
    a flood from 16 connections (spread over both by the kernel) gets
    burst + 1 per worker = 102 answers, the rest 429."""
    srv = factory("""workers: 2
routes:
  - path: /r
    middleware: [ { rate_limit: { key: client_ip, rate: 1/m, burst: 100 } } ]
    static: { body: "r" }
""")
    counts, out = run_h2load("-n", 2000, "-c", 16, "-m", 4, srv.url("/r"))
    assert counts["2xx"] + counts["4xx"] == 2000, out
    assert abs(counts["2xx"] - 102) <= 5, out



RELOAD_LISTS = [
    "middleware:\n  - headers: { set: { x-gen: one } }\n  - request_id: {}\n",
    "middleware:\n  - cors: { origins: [\"https://a.example\"] }\n"
    "  - headers: { set: { x-gen: two } }\n"
    "  - rate_limit: { key: client_ip, rate: 1000000/s, burst: 1000000 }\n",
]


def test_reload_changes_the_list_under_load(factory):
    """The issue's reload case: the middleware list swapped back and forth by
    six SIGHUPs while h2load keeps 2 workers busy; no request fails, every
    answer is a 2xx, and after each reload new requests get the list just
    written (x-gen, and x-request-id only from the first list)."""
    base = "workers: 2\nroutes:\n  - path: /m\n    static: { body: m }\n"
    srv = factory(RELOAD_LISTS[0] + base)
    texts = [srv.config_path.read_text()]  # with the listen line the factory put in
    texts.append(texts[0].replace(RELOAD_LISTS[0], RELOAD_LISTS[1]))

    def verify(i):
        want = ("one", "two")[i]
        for _ in range(4):  # new connections: on either worker
            with srv.client() as c:
                r = c.get("/m")
            assert r.status == 200 and r.header("x-gen") == want, (want, r.headers)
            assert (r.header("x-request-id") is not None) == (want == "one"), r.headers

    reloads_under_load(srv, texts, verify, srv.url("/m"), ("-c", 8, "-m", 8))


@pytest.mark.parametrize("yaml,line,col,words", [
    ("middleware:\n  - rate_limit: {burst: 5}\n", 2, 17, ["rate_limit needs rate"]),
    ("middleware:\n  - rate_limit: {rate: 10/d}\n", 2, 24, ["rate must be a number"]),
    ("middleware:\n  - rate_limit: {rate: 1/s, key: cookie.x}\n", 2, 34,
     ["key must be client_ip or header.NAME"]),
    ("middleware:\n  - rate_limit: {rate: 1/s, status: 200}\n", 2, 37, ["status must be"]),
    ("middleware:\n  - rate_limit: {rate: 1/s, bursts: 2}\n", 2, 29,
     ["unknown key \"bursts\" in rate_limit", "key, rate, burst, nodelay, delay, status, max_keys"]),
])
def test_rate_limit_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml)
    expect_config_error(path, line, col, words)


# ---- basic_auth ----

# made with Python's crypt (libxcrypt): bcrypt cost 4 for "s3cret", sha512-crypt for "pa:ss"
USERS = """# htpasswd -B style
alice:$2b$04$rnHCgFSE5Ece5bMuxIIIT.em9owNXk.9YskSc9kcnSOjtmAmRMG3e

bob:$6$sJ3aotg2ycbzXtAE$JFdO5tIGq/Nu9LgbDWKRIfvCVl8SH3NMYIb/9CxFEtuz9QHmOwg56TDUAHsp2bwmGijkySmsDFEd3yHFtJFM7/
"""


def basic(user, password):
    import base64
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def auth(factory):
    (factory.dir / "htpasswd").write_text(USERS)
    return factory("""workers: 1
routes:
  - path: /admin
    middleware: [ { basic_auth: { realm: admin, users_file: htpasswd } } ]
    static: { body: "secret" }
  - path: /open
    static: { body: "open" }
""")


CHALLENGE = 'Basic realm="admin", charset="UTF-8"'


def test_basic_auth_h2(auth):
    with auth.client() as c:
        r = c.get("/admin")
        assert r.status == 401 and r.header("www-authenticate") == CHALLENGE
        for _ in range(2):  # the second is served from the worker's cache
            r = c.get("/admin", headers=[("authorization", basic("alice", "s3cret"))])
            assert r.status == 200 and r.body == b"secret"
        assert c.get("/admin", headers=[("authorization", basic("bob", "pa:ss"))]).status == 200
        assert c.get("/admin", headers=[("authorization", basic("alice", "wrong"))]).status == 401
        assert c.get("/admin", headers=[("authorization", basic("bob", "s3cret"))]).status == 401
        assert c.get("/admin", headers=[("authorization", basic("eve", "s3cret"))]).status == 401
        assert c.get("/open").status == 200


def test_basic_auth_h1(auth):
    status, fields, _ = h1_get(auth, "/admin")
    assert status.startswith("HTTP/1.1 401") and values(fields, "www-authenticate") == [CHALLENGE]
    status, _, body = h1(auth, ("GET /admin HTTP/1.1\r\nhost: x\r\nauthorization: " +
                                basic("alice", "s3cret") + "\r\nconnection: close\r\n\r\n").encode())
    assert status.startswith("HTTP/1.1 200") and body == b"secret"


@pytest.mark.parametrize("value", [
    "Basic", "Basic  x", "Basic !!!!", "Bearer abc", "basic " + basic("a", "b")[6:] + "=x",
    "Basic " + __import__("base64").b64encode(b"nocolon").decode(),
    "Basic " + __import__("base64").b64encode(b"alice:s3\x00cret").decode(),
    "Basic " + __import__("base64").b64encode(b"alice:" + b"x" * 5000).decode(),
    "Basic " + "A" * 20000,
])
def test_basic_auth_malformed(auth, value):
    with auth.client() as c:
        r = c.get("/admin", headers=[("authorization", value)])
        assert r.status == 401, value
        assert r.header("www-authenticate") == CHALLENGE
        assert c.get("/open").status == 200  # still serving


def test_basic_auth_lowercase_scheme(auth):
    with auth.client() as c:
        v = "basic " + basic("alice", "s3cret")[6:]
        assert c.get("/admin", headers=[("authorization", v)]).status == 200


@pytest.mark.parametrize("users,words", [
    ("alice:notahash\n", ["htpasswd:1: the hash of \"alice\" is not one libcrypt accepts"]),
    ("# c\nbob\n", ["htpasswd:2: not a \"user:hash\" line"]),
    ("# nobody\n\n", ["has no user"]),
])
def test_basic_auth_users_file_errors(tmp_path, users, words):
    (tmp_path / "htpasswd").write_text(users)
    path = tmp_path / "bad.yaml"
    path.write_text("middleware:\n  - basic_auth: {users_file: htpasswd}\n")
    expect_config_error(path, 2, 30, words)


@pytest.mark.parametrize("yaml,line,col,words", [
    ("middleware:\n  - basic_auth: {realm: x}\n", 2, 17, ["basic_auth needs users_file"]),
    ("middleware:\n  - basic_auth: {users_file: /nonexistent/h}\n", 2, 30, ["cannot read it"]),
    ("middleware:\n  - basic_auth: {realm: 'a\"b', users_file: h}\n", 2, 25, ["realm must not"]),
    ("middleware:\n  - basic_auth: {user_file: h}\n", 2, 18,
     ["unknown key \"user_file\" in basic_auth", "realm, users_file, cache"]),
])
def test_basic_auth_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml)
    expect_config_error(path, line, col, words)


# ---- cors in a real browser ----

CORS_PAGE = """<!doctype html><html><body><p id="a">pending</p><p id="b">pending</p>
<script>
function show(id, p) {
  p.then(function (t) { document.getElementById(id).textContent = t; },
         function (e) { document.getElementById(id).textContent = "failed: " + e; });
}
var api = "http://127.0.0.1:" + new URLSearchParams(location.search).get("api");
show("a", fetch(api + "/api", {method: "POST", credentials: "include", body: "{}",
                               headers: {"x-token": "t", "content-type": "application/json"}})
  .then(function (r) { return r.text().then(function (b) {
    return "status=" + r.status + " body=" + b + " total=" + r.headers.get("x-total"); }); }));
show("b", fetch(api + "/denied", {headers: {"x-token": "t"}})
  .then(function (r) { return "status=" + r.status; }));
</script></body></html>"""


def test_cors_in_chromium(factory, tmp_path):
    """Headless Chromium on one origin fetch()es another: a credentialed POST
    with a custom header (a preflight first) succeeds; the same from an origin
    the route does not allow fails in the browser."""
    import shutil
    from test_browser import element_text, run_browser
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("needs the Debian package chromium (scripts/deps test installs it)")
    (factory.dir / "cors.html").write_text(CORS_PAGE)
    srv = factory(f"""listen: ["127.0.0.1:{{port}}", "127.0.0.1:{{port2}}"]
workers: 1
routes:
  - path: /page
    static: {{ file: cors.html, content_type: text/html }}
  - path: /api
    methods: [POST]
    middleware:
      - cors: {{ origins: ["http://127.0.0.1:{{port}}"], methods: [POST], headers: [x-token, content-type], expose: [x-total], credentials: true }}
    static: {{ body: "posted", headers: {{ x-total: "3" }} }}
  - path: /denied
    middleware: [ {{ cors: {{ origins: ["https://elsewhere.example"], headers: [x-token] }} }} ]
    static: {{ body: "no" }}
""", ports=2)
    home = tmp_path / "home"
    home.mkdir()
    rc, dom, err = run_browser(chromium, home, tmp_path / "profile",
                               f"http://127.0.0.1:{srv.ports[0]}/page?api={srv.ports[1]}",
                               tmp_path / "dom.html",
                               tmp_path / "chromium.stderr")
    a, b = element_text(dom, "a"), element_text(dom, "b")
    assert a == "status=200 body=posted total=3", (a, dom, err[-2000:])
    assert b and b.startswith("failed: "), (b, dom)
