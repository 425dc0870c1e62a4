"""Placeholders in `headers:` values of static and json routes: substituted per
request over HTTP/2 and HTTP/1.1, control octets percent-encoded so that no
request can split the response head, constant values left as they were.
"""

import socket

import pytest

from support import ServerFactory

CONFIG = r"""
workers: 1
log: { level: warn }
routes:
  - path: /go/*rest
    static:
      status: 302
      body: ""
      headers:
        location: "https://example.com/{{param.rest}}"
        x-echo: "q={{query.q}} h={{header.x-in}} m={{method}} p={{path}}"
        x-const: "{ literal braces }"
  - path: /users/:id
    json:
      template: { id: "{{param.id}}" }
      headers: { x-user: "<{{param.id}}>", cache-control: "max-age=60" }
  - path: /plain
    static: { body: "plain", headers: { x-const: "k" } }
  - path: /tls/*rest
    static: { status: 308, body: "", headers: { location: "https://{{host}}/{{param.rest}}" } }
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    factory = ServerFactory(tmp_path_factory.mktemp("hdrtmpl"))
    yield factory(CONFIG)
    problems = factory.teardown()
    if problems:
        pytest.fail("\n".join(problems))


def h1_raw(srv, target, extra=b""):
    """One HTTP/1.1 request; the raw head of the answer (bytes)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + extra +
                  b"\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, _ = data.partition(b"\r\n\r\n")
    return head


def h1_fields(head):
    lines = head.split(b"\r\n")
    return lines[0], [tuple(x.strip() for x in line.split(b":", 1)) for line in lines[1:]]


def test_redirect_substituted_h2(srv):
    with srv.client() as c:
        r = c.get("/go/docs/a%20b?q=x+y&q=2", headers=[("x-in", "hello")])
        assert r.status == 302
        assert r.header("location") == "https://example.com/docs/a b"
        assert r.header("x-echo") == "q=x y h=hello m=GET p=/go/docs/a%20b"
        assert r.header("x-const") == "{ literal braces }"


def test_redirect_substituted_h1(srv):
    status, fields = h1_fields(h1_raw(srv, b"/go/x/y?q=1", b"x-in: v\r\n"))
    assert status.startswith(b"HTTP/1.1 302"), status
    assert (b"location", b"https://example.com/x/y") in fields, fields
    assert (b"x-echo", b"q=1 h=v m=GET p=/go/x/y") in fields, fields


def test_host_from_either_protocol(srv):
    """{{host}} is HTTP/2's :authority and HTTP/1.1's Host: the redirect to
    TLS works whichever protocol the client came with."""
    with srv.client() as c:
        r = c.get("/tls/a/b")
        assert r.status == 308
        assert r.header("location") == f"https://127.0.0.1:{srv.port}/a/b"
    status, fields = h1_fields(h1_raw(srv, b"/tls/a/b"))
    assert status.startswith(b"HTTP/1.1 308"), status
    assert (b"location", b"https://x/a/b") in fields, fields


def test_decoded_crlf_cannot_split_h1(srv):
    """A param and a query argument that decode to CR LF: percent-encoded back,
    so the head keeps exactly its own fields."""
    head = h1_raw(srv, b"/go/a%0d%0aset-cookie:%20evil=1%00?q=%0d%0ax-evil:%201")
    status, fields = h1_fields(head)
    assert status.startswith(b"HTTP/1.1 302"), head
    names = [f[0].lower() for f in fields]
    assert b"set-cookie" not in names and b"x-evil" not in names, head
    assert (b"location", b"https://example.com/a%0D%0Aset-cookie: evil=1%00") in fields, head
    assert (b"x-echo", b"q=%0D%0Ax-evil: 1 h= m=GET p=/go/a%0d%0aset-cookie:%20evil=1%00")\
        in fields, head
    for name, value in fields:
        assert not any(c < 0x20 or c == 0x7f for c in value), (name, value)


def test_decoded_controls_encoded_h2(srv):
    with srv.client() as c:
        r = c.get("/go/a%0d%0ab%7f%09")
        assert r.status == 302
        assert r.header("location") == "https://example.com/a%0D%0Ab%7F%09"
        assert r.header("set-cookie") is None


def test_json_route_headers(srv):
    with srv.client() as c:
        r = c.get("/users/42")
        assert r.status == 200
        assert r.json() == {"id": "42"}
        assert r.header("x-user") == "<42>"
        assert r.header("cache-control") == "max-age=60"
        r = c.get("/users/%22q%22")
        assert r.header("x-user") == '<"q">'
    status, fields = h1_fields(h1_raw(srv, b"/users/7"))
    assert (b"x-user", b"<7>") in fields, fields


def test_constant_headers_unchanged(srv):
    with srv.client() as c:
        r = c.get("/plain")
        assert r.body == b"plain"
        assert r.header("x-const") == "k"


def test_many_requests_one_connection(srv):
    """Each stream renders its own value (arena memory, not shared)."""
    with srv.client() as c:
        rs = c.many([("GET", f"/users/u{i}", ()) for i in range(50)])
        assert [r.header("x-user") for r in rs] == [f"<u{i}>" for i in range(50)]
