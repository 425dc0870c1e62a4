"""The connection as a module sees it (celeris_req_authority, _scheme,
_protocol, _addr, _tls) against the real daemon: a module built here out of
tree echoes every value as JSON, and each is checked against what the client
used: its own address and port, the listener's, the Host or :authority it
sent, HTTP/1.1, h2c and (over TLS) h2 and http/1.1 by ALPN with the SNI name
it sent, and through a PROXY v2 header and `real_ip` the client they name.
A C++ module is built with c++ against the same header, loaded and asked."""

import json
import socket
import ssl
import subprocess

import pytest

from support import build_module, curl, module_cflags
from test_proxy_protocol import v2
from test_tls import make_cert

CONN_SRC = r"""
#include <stdio.h>
#include <string.h>
#include <celeris/module.h>

static void put(char **p, char *end, const char *key, celeris_str v, int comma)
{
    int n = snprintf(*p, (size_t)(end - *p), "%s\"%s\":\"%.*s\"", comma ? "," : "", key,
                     (int)v.len, v.ptr);
    if (n > 0 && *p + n < end)
        *p += n;
}

static void put_addr(char **p, char *end, celeris_req *req, const char *key, int which)
{
    celeris_str ip = {"", 0};
    unsigned port = 0;
    int rc = celeris_req_addr(req, which, &ip, &port);
    int n = snprintf(*p, (size_t)(end - *p), ",\"%s\":{\"rc\":%d,\"ip\":\"%.*s\",\"port\":%u}",
                     key, rc, (int)ip.len, ip.ptr, port);
    if (n > 0 && *p + n < end)
        *p += n;
}

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    char buf[4096], *p = buf, *end = buf + sizeof(buf) - 2;
    *p++ = '{';
    put(&p, end, "authority", celeris_req_authority(req), 0);
    put(&p, end, "scheme", celeris_req_scheme(req), 1);
    put(&p, end, "protocol", celeris_req_protocol(req), 1);
    put_addr(&p, end, req, "client", CELERIS_ADDR_CLIENT);
    put_addr(&p, end, req, "peer", CELERIS_ADDR_PEER);
    put_addr(&p, end, req, "local", CELERIS_ADDR_LOCAL);
    put(&p, end, "tls_version", celeris_req_tls(req, CELERIS_TLS_VERSION), 1);
    put(&p, end, "tls_cipher", celeris_req_tls(req, CELERIS_TLS_CIPHER), 1);
    put(&p, end, "tls_sni", celeris_req_tls(req, CELERIS_TLS_SNI), 1);
    put(&p, end, "tls_alpn", celeris_req_tls(req, CELERIS_TLS_ALPN), 1);
    put(&p, end, "tls_client_subject", celeris_req_tls(req, CELERIS_TLS_CLIENT_SUBJECT), 1);
    *p++ = '}';
    celeris_resp_header(req, "content-type", "application/json");
    return celeris_resp_send(req, 200, buf, (size_t)(p - buf));
}

CELERIS_MODULE(conninfo) = {
    CELERIS_MODULE_HEADER,
    .handle = handle,
};
"""

CXX_SRC = r"""
#include <celeris/module.h>
#include <string>

namespace {
int handle(void *, celeris_req *req)
{
    celeris_str proto = celeris_req_protocol(req);
    celeris_str path = celeris_req_path(req);
    std::string body = std::string("c++ ") + std::string(proto.ptr, proto.len) + " " +
                       std::string(path.ptr, path.len) + "\n";
    celeris_resp_header(req, "content-type", "text/plain");
    return celeris_resp_send(req, 200, body.data(), body.size());
}
}

CELERIS_MODULE(cxxmod) = {
    CELERIS_MODULE_HEADER,
    .name = "cxxmod",
    .handle = handle,
};
"""


@pytest.fixture(scope="module")
def srv(module_celerisd, tmp_path_factory):
    d = tmp_path_factory.mktemp("conninfo")
    mods = d / "mods"
    mods.mkdir()
    src = d / "conninfo.c"
    src.write_text(CONN_SRC)
    build_module(src, mods / "conninfo.so")
    cxx = d / "cxxmod.cc"
    cxx.write_text(CXX_SRC)
    p = subprocess.run(["c++", "-std=c++20", "-shared", "-fPIC", "-O1", "-Wall", "-Werror",
                        *module_cflags(), "-o", str(mods / "cxxmod.so"), str(cxx)],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    crt, key = make_cert(d, "local", "localhost", ["DNS:localhost", "IP:127.0.0.1"])
    s = module_celerisd(f"""listen:
  - "127.0.0.1:{{port}}"
  - {{ address: "127.0.0.1:{{port2}}", tls: {{ cert: {crt}, key: {key} }} }}
  - {{ address: "127.0.0.1:{{port3}}", proxy_protocol: true, trusted: [127.0.0.0/8] }}
  - "unix:{d / 'c.sock'}"
workers: 2
modules_dir: {mods}
real_ip: {{ header: x-forwarded-for, trusted: [127.0.0.0/8] }}
routes:
  - path: /conn
    module: {{ name: conninfo }}
  - path: /cxx
    module: {{ name: cxxmod }}
""", ports=3)
    s.unix = d / "c.sock"
    return s


def http1(sock, host="example.test:8080", extra=b""):
    sock.sendall(b"GET /conn HTTP/1.1\r\nhost: " + host.encode() +
                 b"\r\nconnection: close\r\n" + extra + b"\r\n")
    data = b""
    while True:
        b = sock.recv(65536)
        if not b:
            break
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return json.loads(body)


NO_TLS = {"tls_version": "", "tls_cipher": "", "tls_sni": "", "tls_alpn": "",
          "tls_client_subject": ""}


def test_http1_cleartext(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        me = s.getsockname()
        v = http1(s)
    assert v["authority"] == "example.test:8080" and v["scheme"] == "http", v
    assert v["protocol"] == "HTTP/1.1", v
    assert v["client"] == {"rc": 0, "ip": "127.0.0.1", "port": me[1]}, v
    assert v["peer"] == v["client"], v
    assert v["local"] == {"rc": 0, "ip": "127.0.0.1", "port": srv.port}, v
    assert {k: v[k] for k in NO_TLS} == NO_TLS, v


def test_h2c(srv):
    with srv.client(authority="h2.example.test") as c:
        me = c.sock.getsockname()
        r = c.get("/conn")
    assert r.status == 200
    v = json.loads(r.body)
    assert v["authority"] == "h2.example.test" and v["scheme"] == "http", v
    assert v["protocol"] == "h2c", v
    assert v["client"] == {"rc": 0, "ip": "127.0.0.1", "port": me[1]}, v
    assert v["local"]["port"] == srv.port, v
    assert {k: v[k] for k in NO_TLS} == NO_TLS, v


def test_h2c_by_upgrade(srv):
    p = curl(["--http2", "-w", "\n%{http_version} %{local_port}", srv.url("/conn")])
    body, _, tail = p.stdout.decode().rpartition("\n")
    assert p.returncode == 0 and tail.split()[0] == "2", (p.stdout, p.stderr)
    v = json.loads(body)
    assert v["protocol"] == "h2c" and v["scheme"] == "http", v
    assert v["authority"] == f"127.0.0.1:{srv.port}", v
    assert v["client"]["port"] == int(tail.split()[1]), v


def test_tls_http1_by_alpn(srv):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", srv.ports[1]), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            me = s.getsockname()
            version, cipher = s.version(), s.cipher()[0]
            assert s.selected_alpn_protocol() == "http/1.1"
            v = http1(s, host="localhost")
    assert v["protocol"] == "HTTP/1.1" and v["scheme"] == "https", v
    assert v["authority"] == "localhost", v
    assert v["tls_version"] == version and v["tls_cipher"] == cipher, (v, version, cipher)
    assert v["tls_sni"] == "localhost" and v["tls_alpn"] == "http/1.1", v
    assert v["tls_client_subject"] == "", v
    assert v["client"] == {"rc": 0, "ip": "127.0.0.1", "port": me[1]}, v
    assert v["local"]["port"] == srv.ports[1], v


def test_tls_h2_by_alpn_without_sni(srv):
    """h2 by ALPN; an address in the URL sends no SNI."""
    p = curl(["-k", "--http2", "-w", "\n%{http_version} %{local_port}",
              f"https://127.0.0.1:{srv.ports[1]}/conn"])
    body, _, tail = p.stdout.decode().rpartition("\n")
    assert p.returncode == 0 and tail.split()[0] == "2", (p.stdout, p.stderr)
    v = json.loads(body)
    assert v["protocol"] == "h2" and v["scheme"] == "https", v
    assert v["authority"] == f"127.0.0.1:{srv.ports[1]}", v
    assert v["tls_alpn"] == "h2" and v["tls_sni"] == "", v
    assert v["tls_version"].startswith("TLSv1.") and v["tls_cipher"], v
    assert v["client"]["port"] == int(tail.split()[1]), v


def test_tls_h2_sni(srv):
    port = srv.ports[1]
    p = curl(["-k", "--http2", "--tlsv1.2", "--tls-max", "1.2", "--resolve",
              f"localhost:{port}:127.0.0.1", "-w", "\n%{http_version}",
              f"https://localhost:{port}/conn"])
    body, _, tail = p.stdout.decode().rpartition("\n")
    assert p.returncode == 0 and tail == "2", (p.stdout, p.stderr)
    v = json.loads(body)
    assert v["tls_sni"] == "localhost" and v["authority"] == f"localhost:{port}", v
    assert v["tls_version"] == "TLSv1.2" and v["protocol"] == "h2", v


def test_proxy_v2_client_is_the_headers(srv):
    with socket.create_connection(("127.0.0.1", srv.ports[2]), timeout=10) as s:
        me = s.getsockname()
        s.sendall(v2("203.0.113.7", sport=41234, dport=443))
        v = http1(s)
    assert v["client"] == {"rc": 0, "ip": "203.0.113.7", "port": 41234}, v
    assert v["peer"] == {"rc": 0, "ip": "127.0.0.1", "port": me[1]}, v
    assert v["local"]["port"] == srv.ports[2], v


def test_real_ip_header_names_the_client(srv):
    """What the access log shows: real_ip's address (with no port) when the
    peer is trusted; the socket's peer stays available."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        me = s.getsockname()
        v = http1(s, extra=b"x-forwarded-for: 198.51.100.9\r\n")
    assert v["client"] == {"rc": 0, "ip": "198.51.100.9", "port": 0}, v
    assert v["peer"] == {"rc": 0, "ip": "127.0.0.1", "port": me[1]}, v


def test_unix_socket_has_no_addresses(srv):
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", str(srv.unix),
                        "--http1.1", "http://u.test/conn"], capture_output=True, timeout=20)
    assert p.returncode == 0, p.stderr
    v = json.loads(p.stdout)
    none = {"rc": -2, "ip": "", "port": 0}
    assert v["client"] == none and v["peer"] == none and v["local"] == none, v
    assert v["authority"] == "u.test" and v["protocol"] == "HTTP/1.1", v


def test_cxx_module(srv):
    with srv.client() as c:
        r = c.get("/cxx")
    assert r.status == 200 and r.body == b"c++ h2c /cxx\n", (r.status, r.body)
    p = curl(["--http1.1", srv.url("/cxx")])
    assert p.returncode == 0 and p.stdout == b"c++ HTTP/1.1 /cxx\n", (p.stdout, p.stderr)
