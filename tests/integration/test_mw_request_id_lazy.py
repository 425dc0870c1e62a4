"""request_id made on first use (issue 15, its cost): a chain whose request
phase does not run (request_id alone, or beside cors for a GET) leaves the id
to whoever reads it first: a module handler (celeris_req_id), a template
({{request_id}} in a json body, a header value, a redirect's target), the
head phase. Against the real daemon over h2c and HTTP/1.1, every reader of a
request must see one id, the one its response field and its access log line
carry, in the format of the chain's last request_id (a route's after the
global one), a trusted incoming one as it came, and a new one per request;
with a request phase that runs (rate_limit) the same."""

import re
import time

import pytest

from support import build_module, h1_exchange

HEX32 = re.compile(r"^[0-9a-f]{32}$")
B64 = re.compile(r"^[A-Za-z0-9_-]{21}[A-D]$")

MOD_SRC = r"""
#include <stdio.h>
#include <celeris/module.h>

/* Answers with the id it reads, between brackets. */
static int handle(void *instance, celeris_req *req)
{
    celeris_str id = celeris_req_id(req);
    (void)instance;
    celeris_resp_header(req, "content-type", "text/plain");
    return celeris_resp_printf(req, 200, "[%.*s]", (int)id.len, id.ptr ? id.ptr : "(null)");
}

CELERIS_MODULE(idecho) = {
    CELERIS_MODULE_HEADER,
    .handle = handle,
};
"""


@pytest.fixture(scope="module")
def srv(factory, tmp_path_factory):
    d = tmp_path_factory.mktemp("ridlazy")
    (d / "idecho.c").write_text(MOD_SRC)
    build_module(d / "idecho.c", d / "idecho.so")
    srv = factory(f"""workers: 2
modules_dir: {d}
log:
  access: {{ path: {d}/access.log, format: "%s %U %{{request_id}}" }}
middleware:
  - request_id: {{}}
routes:
  - path: /mod
    module: {{ name: idecho }}
  - path: /json
    json: {{ template: {{ id: "{{{{request_id}}}}" }} }}
  - path: /hdr
    static: {{ body: h, headers: {{ x-echo: "{{{{request_id}}}}" }} }}
  - path: /go
    redirect: {{ to: "/to/{{{{request_id}}}}", status: 302 }}
  - path: /b64
    middleware: [ {{ request_id: {{ format: base64url }} }} ]
    module: {{ name: idecho }}
  - path: /trust
    middleware: [ {{ request_id: {{ header: x-trace, trust_incoming: true }} }} ]
    module: {{ name: idecho }}
  - path: /cors
    middleware: [ {{ cors: {{ origins: ["https://a.example"] }} }} ]
    module: {{ name: idecho }}
  - path: /limited
    middleware: [ {{ rate_limit: {{ key: client_ip, rate: 10000/s, burst: 10000 }} }} ]
    module: {{ name: idecho }}
""")
    srv.log = d / "access.log"
    return srv


def h1(srv, path, headers=()):
    """GET PATH over HTTP/1.1 on a connection the server closes: (status,
    [(name, value)], body)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    raw = f"GET {path} HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n".encode()
    return h1_exchange(srv.port, raw)


def get_both(srv, path, headers=()):
    """The same GET over h2c and HTTP/1.1: [(status, [(name, value)], body)]."""
    with srv.client() as c:
        r = c.get(path, headers=list(headers))
        out = [(r.status, [(k, v) for k, v in r.headers], r.body)]
    return out + [h1(srv, path, headers)]


def vals(fields, name):
    return [v for k, v in fields if k == name]


def seen_by_reader(path, fields, body):
    """What the route's reader of the id saw: the module's answer, the json
    body, the templated field or the redirect's target."""
    if path.startswith("/json"):
        return __import__("json").loads(body)["id"]
    if path.startswith("/hdr"):
        return vals(fields, "x-echo")[0]
    if path.startswith("/go"):
        loc = vals(fields, "location")[0]
        assert loc.startswith("/to/"), fields
        return loc[len("/to/"):]
    m = re.fullmatch(rb"\[(.*)\]", body)
    assert m, body
    return m.group(1).decode()


def logged_ids(srv, paths_ids, timeout=10):
    """Waits until each (path, id) is in the access log (workers write it once
    a second); returns the log's lines."""
    deadline = time.monotonic() + timeout
    while True:
        lines = srv.log.read_text().splitlines() if srv.log.exists() else []
        if all(f"{p} {i}" in " ".join(lines) for p, i in paths_ids) or time.monotonic() > deadline:
            return lines


@pytest.mark.parametrize("path,field,form", [
    ("/mod", "x-request-id", HEX32),
    ("/json", "x-request-id", HEX32),
    ("/hdr", "x-request-id", HEX32),
    ("/go", "x-request-id", HEX32),
    # a route's request_id after the global one: one id, in the last one's format
    ("/b64", "x-request-id", B64),
    ("/cors", "x-request-id", HEX32),
    ("/limited", "x-request-id", HEX32),
])
def test_every_reader_sees_the_field_and_log_id(srv, path, field, form):
    got = []
    for i in range(3):
        for status, fields, body in get_both(srv, f"{path}?n={i}"):
            ids = vals(fields, field)
            assert status in (200, 302) and len(ids) == 1 and form.match(ids[0]), (path, fields)
            assert seen_by_reader(path, fields, body) == ids[0], (path, fields, body)
            got.append(ids[0])
    assert len(set(got)) == len(got), got
    lines = logged_ids(srv, [(path, i) for i in got])
    for i in got:
        assert any(line.split()[2:] == [i] and line.split()[1] == path for line in lines), (i, lines)


def test_b64_route_fields_both_carry_the_one_id(srv):
    for status, fields, body in get_both(srv, "/b64"):
        rid = vals(fields, "x-request-id")
        assert rid and all(v == rid[0] for v in rid) and B64.match(rid[0]), fields
        assert body.decode() == f"[{rid[0]}]"


def test_trusted_incoming_id_read_first_by_the_module(srv):
    for status, fields, body in get_both(srv, "/trust?t=1", [("x-trace", "abc-123.x")]):
        assert vals(fields, "x-trace") == ["abc-123.x"], fields
        assert vals(fields, "x-request-id") == ["abc-123.x"], fields
        assert body == b"[abc-123.x]"
    got = []
    for status, fields, body in get_both(srv, "/trust?t=2", [("x-trace", "x" * 129)]):
        rid = vals(fields, "x-trace")
        assert len(rid) == 1 and HEX32.match(rid[0]) and body.decode() == f"[{rid[0]}]", fields
        got.append(rid[0])
    for status, fields, body in get_both(srv, "/trust?t=3"):
        rid = vals(fields, "x-trace")
        assert len(rid) == 1 and HEX32.match(rid[0]) and body.decode() == f"[{rid[0]}]", fields
        got.append(rid[0])
    assert len(set(got)) == len(got), got
    lines = logged_ids(srv, [("/trust", "abc-123.x")] + [("/trust", i) for i in got])
    for i in ["abc-123.x"] + got:
        assert any(line.endswith(f" /trust {i}") for line in lines), (i, lines)
