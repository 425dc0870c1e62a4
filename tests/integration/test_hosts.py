"""Routes chosen by host and scheme (README: Routes, `host`, `scheme`) against
the real daemon over HTTP/1.1 (Host) and h2c (:authority): a host's routes
before the routes without `host:`, the port and case ignored, "*.domain"
names, the default for other hosts, a 405 of a host's path; a cleartext
listener redirecting everything to its TLS twin; and config errors."""

import socket
import subprocess

import pytest

from support import ServerFactory, expect_config_error, self_signed

CONFIG = """workers: 1
routes:
  - path: /
    host: a.test
    static: { body: "a root" }
  - path: /only-a
    host: [a.test, A2.test]
    methods: [GET]
    static: { body: "only a" }
  - path: /
    host: "*.b.test"
    static: { body: "b root" }
  - path: /
    host: x.b.test
    static: { body: "x.b root" }
  - path: /
    static: { body: "default root" }
  - path: /shared
    static: { body: "shared" }
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    f = ServerFactory(tmp_path_factory.mktemp("hosts"))
    yield f(CONFIG)
    problems = f.teardown()
    if problems:
        pytest.fail("\n".join(problems))


def h1(srv, path, host, method="GET"):
    head = f"{method} {path} HTTP/1.1\r\n" + (f"host: {host}\r\n" if host is not None else "")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall((head + "connection: close\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def h2(srv, path, host, method="GET"):
    with srv.client() as c:
        sid = c.send_request(method, path, authority=host)
        r = c.response(sid)
        return r.status, r.body


@pytest.mark.parametrize("get", [h1, h2], ids=["h1", "h2c"])
@pytest.mark.parametrize("path,host,status,body", [
    ("/", "a.test", 200, b"a root"),
    ("/", "A.Test:8443", 200, b"a root"),
    ("/", "a.test.", 200, b"a root"),
    ("/only-a", "a2.test", 200, b"only a"),
    ("/", "y.b.test", 200, b"b root"),
    ("/", "deep.y.b.test", 200, b"b root"),
    ("/", "x.b.test", 200, b"x.b root"),        # an exact name beats "*."
    ("/", "b.test", 200, b"default root"),      # "*.b.test" is below b.test only
    ("/", "other.test", 200, b"default root"),
    ("/", "127.0.0.1:80", 200, b"default root"),
    ("/shared", "a.test", 200, b"shared"),      # the host has no such path: the default's
    ("/only-a", "other.test", 404, None),
])
def test_host_routes(srv, get, path, host, status, body):
    st, b = get(srv, path, host)
    assert st == status
    if body is not None:
        assert b == body


@pytest.mark.parametrize("get", [h1, h2], ids=["h1", "h2c"])
def test_405_of_a_hosts_path(srv, get):
    st, _ = get(srv, "/only-a", "a.test", method="POST")
    assert st == 405


def test_h1_without_host_gets_the_default(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200"), data
    assert data.endswith(b"default root")


@pytest.mark.parametrize("yaml,line,col,words", [
    ("  - path: /\n    host: \"http://a.test\"\n    static: {body: x}\n", 5, 11,
     ["not a name like example.com"]),
    ("  - path: /\n    host: []\n    static: {body: x}\n", 5, 11, ["non-empty list"]),
    ("  - path: /\n    scheme: ftp\n    static: {body: x}\n", 5, 13, ["scheme is http"]),
    ("  - path: /\n    host: a.test\n    scheme: http\n    static: {body: x}\n", 6, 13,
     ["`scheme` or `host`, not both"]),
    ("  - path: /\n    host: a.test\n    static: {body: x}\n"
     "  - path: /\n    host: A.TEST\n    static: {body: y}\n", 7, 11, ["collides"]),
])
def test_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text("routes:\n  - path: /\n    static: {body: d}\n" + yaml)
    expect_config_error(path, line, col, words)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    d = tmp_path_factory.mktemp("scheme")
    self_signed(d)
    f = ServerFactory(d)
    yield f(f"""workers: 1
listen:
  - "127.0.0.1:{{port}}"
  - address: "127.0.0.1:{{port2}}"
    tls: {{ cert: {d / "c.pem"}, key: {d / "k.pem"} }}
routes:
  - path: /*rest
    scheme: http
    static: {{ status: 308, body: "", headers: {{ location: "https://{{{{header.host}}}}/{{{{param.rest}}}}" }} }}
  - path: /.well-known/acme-challenge/:token
    scheme: http
    static: {{ body: "challenge" }}
  - path: /page
    static: {{ body: "page" }}
""", ports=2)
    problems = f.teardown()
    if problems:
        pytest.fail("\n".join(problems))


def test_cleartext_redirects_everything(both):
    with socket.create_connection(("127.0.0.1", both.ports[0]), timeout=10) as s:
        s.sendall(b"GET /page?x=1 HTTP/1.1\r\nhost: example.test\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 308"), data
    assert b"\r\nlocation: https://example.test/page\r\n" in data, data
    st, body = h1(both, "/.well-known/acme-challenge/abc", "example.test")
    assert st == 200 and body == b"challenge"
    with both.client() as c:  # h2c is cleartext too
        assert c.get("/page").status == 308


@pytest.mark.parametrize("flag", ["--http2", "--http1.1"])
def test_tls_serves_the_rest(both, flag):
    p = subprocess.run(["curl", "-sS", "-k", flag, "--max-time", "10", "-w", "%{http_code}",
                        f"https://127.0.0.1:{both.ports[1]}/page"],
                       capture_output=True, text=True, timeout=20)
    assert p.stdout == "page200", (p.stdout, p.stderr)
    p = subprocess.run(["curl", "-sS", "-k", flag, "--max-time", "10", "-w", "%{http_code}",
                        "-o", "/dev/null", f"https://127.0.0.1:{both.ports[1]}/other"],
                       capture_output=True, text=True, timeout=20)
    assert p.stdout == "404"
