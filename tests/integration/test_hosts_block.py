"""`hosts:` blocks and listen entries' own routes (README: Hosts) against the
real daemon: a block answers alone for its names (exact, "*." names, the
longest first, several names per key, `default`), the host read from HTTP/1.1's
Host, HTTP/2's :authority or its host field, the port, case and a trailing dot
not counting; a block's middleware after the global list, also on its 404; a
cleartext listener redirecting everything to https (redirect_https, or its own
routes) while another listener of the same daemon serves the hosts; config
errors at file:line:column; a reload changing hosts and listen routes; metrics
counted apart for blocks that share a path."""

import signal
import socket
import subprocess
import time

import pytest

from support import expect_config_error, run_celerisd, write_atomic

CONFIG = """workers: 1
listen:
  - "127.0.0.1:{port}"
  - address: "127.0.0.1:{port2}"
    redirect_https: 8443
  - address: "127.0.0.1:{port3}"
    routes:
      - path: /.well-known/acme-challenge/:token
        static: { body: "challenge" }
      - path: /*rest
        methods: [GET, HEAD, POST]
        redirect: { https: true, status: 301 }
middleware:
  - headers: { set: { x-global: "g" } }
hosts:
  "a.test, WWW.a.test":
    middleware:
      - headers: { set: { x-block: "a" } }
    routes:
      - path: /
        static: { body: "a root" }
      - path: /only-a
        methods: [GET]
        static: { body: "only a" }
  "*.b.test":
    routes:
      - path: /
        static: { body: "b wild" }
  "*.x.b.test":
    routes:
      - path: /
        static: { body: "x.b wild" }
  "exact.x.b.test.":         # a trailing dot does not count here either
    routes:
      - path: /
        static: { body: "exact" }
  "[::1]":
    routes:
      - path: /
        static: { body: "v6" }
  default:
    routes:
      - path: /
        static: { body: "default root" }
      - path: /shared
        static: { body: "shared" }
"""

# Without `default`: other hosts get the top level's routes.
NO_DEFAULT = """workers: 1
hosts:
  a.test:
    routes:
      - path: /
        static: { body: "a root" }
routes:
  - path: /
    static: { body: "top root" }
  - path: /top-only
    static: { body: "top only" }
"""

# No hosts: at all.
PLAIN = """workers: 1
routes:
  - path: /
    static: { body: "plain root" }
"""


@pytest.fixture(scope="module")
def srv(factory):
    return factory(CONFIG, ports=3)


@pytest.fixture(scope="module")
def nodefault(factory):
    return factory(NO_DEFAULT)


@pytest.fixture(scope="module")
def plain(factory):
    return factory(PLAIN)


def raw_h1(port, head):
    """Sends HEAD (the request line and fields, without the blank line) with
    connection: close; returns (status, {name: value}, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((head + "connection: close\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        fields[k.strip().lower()] = v.strip()
    return int(lines[0].split(" ")[1]), fields, body


def h1(srv, path, host, method="GET", port=None):
    hostline = f"host: {host}\r\n" if host is not None else ""
    return raw_h1(port or srv.port, f"{method} {path} HTTP/1.1\r\n{hostline}")


def h2(srv, path, host, method="GET", port=None):
    """HTTP/2 with HOST as :authority."""
    with srv.client(port=port or srv.port) as c:
        r = c.response(c.send_request(method, path, authority=host))
        return r.status, dict(r.headers), r.body


def h2_host_field(srv, path, host, method="GET", port=None):
    """HTTP/2 with no :authority, HOST in a host field (RFC 9113 8.3.1 allows it)."""
    with srv.client(port=port or srv.port) as c:
        sid = c.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "http"), (":path", path)]
        if host is not None:
            hdrs.append(("host", host))
        c.conn.send_headers(sid, hdrs, end_stream=True)
        c._flush()
        r = c.response(sid)
        return r.status, dict(r.headers), r.body


GETS = [h1, h2, h2_host_field]
GET_IDS = ["h1", "h2c-authority", "h2c-host"]


@pytest.mark.parametrize("get", GETS, ids=GET_IDS)
@pytest.mark.parametrize("path,host,status,body", [
    ("/", "a.test", 200, b"a root"),
    ("/", "www.a.test", 200, b"a root"),          # the key's second name
    ("/", "A.Test:8443", 200, b"a root"),         # port and case
    ("/", "a.test.", 200, b"a root"),             # trailing dot
    ("/only-a", "a.test", 200, b"only a"),
    ("/", "y.b.test", 200, b"b wild"),
    ("/", "deep.y.b.test:80", 200, b"b wild"),
    ("/", "q.x.b.test", 200, b"x.b wild"),        # the longer "*." name
    ("/", "exact.x.b.test", 200, b"exact"),       # an exact name before any "*."
    ("/", "[::1]:8080", 200, b"v6"),
    ("/", "b.test", 200, b"default root"),        # "*.b.test" is below b.test only
    ("/", "other.test", 200, b"default root"),
    ("/", "127.0.0.1", 200, b"default root"),
    ("/shared", "a.test", 404, None),             # a block answers alone
    ("/only-a", "other.test", 404, None),
])
def test_block_by_host(srv, get, path, host, status, body):
    st, _, b = get(srv, path, host)
    assert st == status
    if body is not None:
        assert b == body


@pytest.mark.parametrize("get", GETS, ids=GET_IDS)
def test_405_in_a_block(srv, get):
    st, fields, _ = get(srv, "/only-a", "a.test", method="POST")
    assert st == 405
    assert fields.get("allow") == "GET, HEAD"


def test_no_host_gets_the_default(srv):
    # (HTTP/1.1 without Host is a 400: RFC 9112 3.2 requires it there only)
    st, _, body = raw_h1(srv.port, "GET / HTTP/1.0\r\n")
    assert (st, body) == (200, b"default root")


def test_h2_without_authority_or_host_is_served(srv, nodefault, plain):
    """RFC 9113 8.3.1 makes neither :authority nor host mandatory: such a
    request names no host and is answered, not reset, by `default`, the top
    level's routes without it, or those of a file with no hosts: at all."""
    assert h2_host_field(srv, "/", None)[::2] == (200, b"default root")
    assert h2_host_field(srv, "/shared", None)[::2] == (200, b"shared")
    assert h2_host_field(srv, "/only-a", None)[0] == 404
    assert h2_host_field(nodefault, "/", None)[::2] == (200, b"top root")
    assert h2_host_field(plain, "/", None)[::2] == (200, b"plain root")
    assert h2_host_field(plain, "/", None, method="OPTIONS")[0] == 405


@pytest.mark.parametrize("get", [h1, h2], ids=["h1", "h2c"])
def test_block_middleware(srv, get):
    st, fields, _ = get(srv, "/", "a.test")
    assert st == 200 and fields.get("x-global") == "g" and fields.get("x-block") == "a"
    st, fields, _ = get(srv, "/nothing-here", "www.a.test")  # the block's 404 runs it too
    assert st == 404 and fields.get("x-global") == "g" and fields.get("x-block") == "a"
    st, fields, _ = get(srv, "/", "other.test")
    assert st == 200 and fields.get("x-global") == "g" and "x-block" not in fields


@pytest.mark.parametrize("get", [h1, h2], ids=["h1", "h2c"])
def test_without_default_the_top_level_serves_other_hosts(nodefault, get):
    assert get(nodefault, "/", "a.test")[::2] == (200, b"a root")
    assert get(nodefault, "/", "z.test")[::2] == (200, b"top root")
    assert get(nodefault, "/top-only", "z.test")[::2] == (200, b"top only")
    assert get(nodefault, "/top-only", "a.test")[0] == 404


@pytest.mark.parametrize("get", [h1, h2, h2_host_field], ids=GET_IDS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_redirect_https_listener(srv, get, method):
    port = srv.ports[1]
    st, fields, body = get(srv, "/p/q?x=1&y=%20", f"A.test:{port}", method=method, port=port)
    assert st == 308 and body == b""
    assert fields["location"] == "https://a.test:8443/p/q?x=1&y=%20"
    # whatever the host: the listener's routes come before the hosts
    st, fields, _ = get(srv, "/", "other.test", method=method, port=port)
    assert st == 308 and fields["location"] == "https://other.test:8443/"
    # ... and the daemon's other listener still serves them
    assert get(srv, "/", f"a.test:{port}", method=method)[0] == (200 if method == "GET" else 405)


def test_redirect_https_needs_a_host(srv):
    st, _, _ = raw_h1(srv.ports[1], "GET /x HTTP/1.0\r\n")
    assert st == 400


@pytest.mark.parametrize("get", [h1, h2], ids=["h1", "h2c"])
def test_listener_routes(srv, get):
    port = srv.ports[2]
    st, _, body = get(srv, "/.well-known/acme-challenge/tok", "a.test", port=port)
    assert (st, body) == (200, b"challenge")
    st, fields, _ = get(srv, "/x/y?z=1", "www.a.test:80", port=port)
    assert st == 301 and fields["location"] == "https://www.a.test/x/y?z=1"
    assert get(srv, "/x", "a.test", method="DELETE", port=port)[0] == 405


@pytest.mark.parametrize("yaml,line,col,words", [
    ('hosts:\n  "a.test, b.test":\n    routes: []\n  "B.test":\n    routes: []\n', 4, 3,
     ['host "b.test" is given twice in hosts: (also at 2:3)']),
    ('hosts:\n  a.test:\n    routes: []\n  "*.b.test, A.test.":\n    routes: []\n', 4, 3,
     ['host "a.test" is given twice in hosts: (also at 2:3)']),
    ("hosts:\n  c.test: {routes: []}\nroutes:\n  - path: /\n    host: a.test\n"
     "    static: {body: x}\n", 5, 11, ["`host` and a `hosts:` block do not mix"]),
    ("hosts:\n  default:\n    routes: []\nroutes:\n  - path: /x\n    static: {body: x}\n", 5, 11,
     ["with a `default` hosts: block", '"/x"']),
    ("hosts:\n  a.test:\n    routes:\n      - path: /\n        host: b.test\n"
     "        static: {body: x}\n", 5, 15, ["has no `host`"]),
    ("hosts:\n  a.test:\n    routes:\n      - path: /\n        scheme: http\n"
     "        static: {body: x}\n", 5, 17, ["has no `scheme`"]),
    ('hosts:\n  "http://a.test":\n    routes: []\n', 2, 3, ["not a name like example.com"]),
    ("hosts:\n  a.test:\n    route: []\n", 3, 5, ["unknown key \"route\"", "routes, middleware"]),
    ("hosts:\n  a.test:\n    routes:\n      - path: /\n        static: {body: x}\n"
     "      - path: /\n        static: {body: y}\n", 6, 15, ["collides"]),
    ('listen:\n  - address: "127.0.0.1:1"\n    redirect_https: true\n    routes: []\n', 4, 5,
     ["routes or redirect_https, not both"]),
    ('listen:\n  - address: "127.0.0.1:1"\n    redirect_https: yes\n', 3, 21,
     ["redirect_https is true", "or the TLS port"]),
    ('listen:\n  - address: "127.0.0.1:1"\n    redirect_https: {port: 1}\n', 3, 21,
     ["redirect_https is true", "or the TLS port"]),
    ('listen:\n  - address: "127.0.0.1:1"\n    routes:\n      - path: /\n        host: a.test\n'
     "        static: {body: x}\n", 5, 15, ["has no `host`"]),
    ("routes:\n  - path: /\n    redirect: {https: true, to: /x}\n", 3, 23,
     ["`to` or `https`, not both"]),
])
def test_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml)
    expect_config_error(path, line, col, words)


def test_check_accepts_hosts(factory):
    path, _ = factory.write_config(CONFIG, ports=3)
    p = run_celerisd(["-t", "-c", str(path)])
    assert p.returncode == 0, p.stderr
    assert "configuration ok" in p.stderr + p.stdout


def reload_and_wait(srv, generation):
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = srv.stderr_text()
        if f"generation {generation} is serving" in text:
            return True
        if "reload failed" in text:
            return False
        time.sleep(0.02)
    pytest.fail(f"no reload outcome for generation {generation}; stderr:\n{srv.stderr_text()}")


RELOAD_1 = """workers: 1
listen:
  - "127.0.0.1:{port}"
  - "127.0.0.1:{port2}"
hosts:
  a.test:
    routes:
      - path: /
        static: { body: "one" }
  default:
    routes:
      - path: /
        static: { body: "default one" }
"""

RELOAD_2 = """workers: 1
listen:
  - "127.0.0.1:{port}"
  - address: "127.0.0.1:{port2}"
    redirect_https: true
hosts:
  "a.test, new.test":
    routes:
      - path: /
        static: { body: "two" }
"""


def test_reload_changes_hosts(factory):
    srv = factory(RELOAD_1, ports=2)
    assert h1(srv, "/", "a.test")[::2] == (200, b"one")
    assert h1(srv, "/", "new.test")[::2] == (200, b"default one")
    assert h1(srv, "/", "a.test", port=srv.ports[1])[::2] == (200, b"one")
    with srv.client() as c, srv.client(port=srv.ports[1]) as c2:
        assert c.response(c.send_request("GET", "/", authority="new.test")).body == b"default one"
        text = RELOAD_2.replace("{port}", str(srv.ports[0])).replace("{port2}", str(srv.ports[1]))
        write_atomic(srv.config_path, text)
        assert reload_and_wait(srv, 2)
        # connections opened before the reload see the new tables
        assert c.response(c.send_request("GET", "/", authority="new.test")).body == b"two"
        r = c2.response(c2.send_request("GET", "/p?q", authority="new.test"))
        assert r.status == 308 and r.header("location") == "https://new.test/p?q"
    assert h1(srv, "/", "A.TEST")[::2] == (200, b"two")
    assert h1(srv, "/", "gone.test")[0] == 404  # no default now, and no top-level routes
    st, fields, _ = h1(srv, "/p", "a.test", port=srv.ports[1])
    assert st == 308 and fields["location"] == "https://a.test/p"


METRICS = """workers: 2
hosts:
  "A.test, b.test":
    routes:
      - path: /api/*rest
        static: { body: "a" }
  "*.c.test":
    routes:
      - path: /api/*rest
        static: { body: "c" }
routes:
  - path: /api/*rest
    static: { body: "top" }
  - path: /metrics
    metrics: {}
"""


def api_counts(srv):
    """celerisd_requests_total and the histogram's count of /api/*rest, by the
    host label (None: none), parsed with prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families
    st, _, body = h1(srv, "/metrics", "metrics.test")
    assert st == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.labels.get("route") != "/api/*rest":
                continue
            key = (s.name, s.labels.get("host"))
            if s.name == "celerisd_requests_total":
                assert s.labels["method"] == "GET" and s.labels["code"] == "2xx", s
            if s.name in ("celerisd_requests_total", "celerisd_request_duration_seconds_count"):
                out[key] = out.get(key, 0) + s.value
    return out


def test_metrics_by_block(factory):
    """Blocks sharing a path pattern count apart, under host= the block's
    first name; the top level's row has no host label; rows stay across a
    reload (before: one series for all three)."""
    srv = factory(METRICS)
    for host, n, body in [("a.test", 3, b"a"), ("x.c.test", 4, b"c"), ("other.test", 1, b"top")]:
        for _ in range(n):
            assert h1(srv, "/api/x", host)[::2] == (200, body)
    for _ in range(2):
        assert h2(srv, "/api/y", "b.test")[::2] == (200, b"a")  # a.test's block
    want = {"a.test": 5, "*.c.test": 4, None: 1}
    counts = api_counts(srv)
    for name in ("celerisd_requests_total", "celerisd_request_duration_seconds_count"):
        assert {h: v for (nm, h), v in counts.items() if nm == name} == want, counts
    write_atomic(srv.config_path, srv.config_path.read_text())
    assert reload_and_wait(srv, 2)
    assert h1(srv, "/api/z", "y.c.test")[::2] == (200, b"c")
    counts = api_counts(srv)
    assert {h: v for (nm, h), v in counts.items() if nm == "celerisd_requests_total"} == \
        {"a.test": 5, "*.c.test": 5, None: 1}, counts


METRICS_OWN = """workers: 2
listen:
  - "127.0.0.1:{port}"
  - address: "127.0.0.1:{port2}"
    routes:
      - path: /api/*rest
        static: { body: "listen" }
  - address: "127.0.0.1:{port3}"
    redirect_https: true
routes:
  - path: /api/*rest
    host: [A.test, a2.test]
    static: { body: "a" }
  - path: /api/*rest
    host: b.test
    static: { body: "b" }
  - path: /api/*rest
    static: { body: "top" }
  - path: /metrics
    metrics: {}
"""


def series(srv, route):
    """celerisd_requests_total and the histogram's count of ROUTE by (sample
    name, host label, listen label, code label), None for a label not there."""
    from prometheus_client.parser import text_string_to_metric_families
    st, _, body = h1(srv, "/metrics", "metrics.test")
    assert st == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.labels.get("route") != route or s.name not in (
                    "celerisd_requests_total", "celerisd_request_duration_seconds_count"):
                continue
            key = (s.name, s.labels.get("host"), s.labels.get("listen"), s.labels.get("code"))
            out[key] = out.get(key, 0) + s.value
    return out


def test_metrics_by_route_host_and_listen(factory):
    """A top-level route's `host:` counts apart under host= its first name, a
    listen entry's own routes (its `routes` or `redirect_https`) under listen=
    the entry's address as written; the top level's row has neither (before:
    one series for every /api/*rest, the listen entry's included)."""
    srv = factory(METRICS_OWN, ports=3)
    p2, p3 = srv.ports[1], srv.ports[2]
    for host, n, body in [("a.test", 2, b"a"), ("A2.test", 1, b"a"), ("b.test", 3, b"b"),
                          ("other.test", 1, b"top")]:
        for _ in range(n):
            assert h1(srv, "/api/x", host)[::2] == (200, body)
    for host in ("a.test", "other.test"):  # the listen entry's routes answer every host
        assert h2(srv, "/api/y", host, port=p2)[::2] == (200, b"listen")
    st, fields, _ = h1(srv, "/x", "a.test", port=p3)
    assert st == 308 and fields["location"] == "https://a.test/x"
    listen2 = f"127.0.0.1:{p2}"
    want = {("a.test", None): 3, ("b.test", None): 3, (None, None): 1, (None, listen2): 2}
    got = series(srv, "/api/*rest")
    for name in ("celerisd_requests_total", "celerisd_request_duration_seconds_count"):
        assert {(h, ls): v for (nm, h, ls, _), v in got.items() if nm == name} == want, got
    assert series(srv, "/*rest") == {
        ("celerisd_requests_total", None, f"127.0.0.1:{p3}", "3xx"): 1,
        ("celerisd_request_duration_seconds_count", None, f"127.0.0.1:{p3}", None): 1}


def test_metrics_listen_label_of_long_unix_paths(factory, tmp_path):
    """Two unix listeners whose paths share their first 63 octets count apart,
    each under its whole address (before: the label was the address cut to 63
    octets, and both entries' routes one series)."""
    d = tmp_path / ("d" * max(1, 90 - len(str(tmp_path))))
    d.mkdir()
    socks = [d / "a.sock", d / "b.sock"]
    assert len(f"unix:{socks[0]}") > 64 and len(str(socks[0])) < 108
    own = "".join(f"""  - address: "unix:{s}"
    routes:
      - path: /api/*rest
        static: {{ body: "{s.name}" }}
""" for s in socks)
    srv = factory(f"""workers: 1
listen:
  - "127.0.0.1:{{port}}"
{own}routes:
  - path: /metrics
    metrics: {{}}
""")
    for i, s in enumerate(socks):
        for _ in range(i + 1):
            p = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", str(s),
                                "http://x/api/x"], capture_output=True, timeout=20)
            assert p.stdout == s.name.encode(), p
    got = series(srv, "/api/*rest")
    assert {ls: v for (nm, _, ls, _), v in got.items() if nm == "celerisd_requests_total"} == {
        f"unix:{socks[0]}": 1, f"unix:{socks[1]}": 2}, got
