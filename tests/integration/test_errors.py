"""The `errors:` block (README: Middleware, errors) against the real daemon
over HTTP/1.1 and h2c: bodies for the server's own 404, 405, 413 and 400, a
route's 503, a module's 500, by status and by class with {{status}} and
{{path}}, a streamed error left alone, and config errors."""

import json
import socket

import pytest

from support import build_module, expect_config_error

# Answers with the status its query names (?500), whole; ?stream streams a 500.
MOD_SRC = r"""
#include <stdlib.h>
#include <string.h>
#include <celeris/module.h>
static int init(const celeris_init_args *a, void **instance, char *err, size_t errlen)
{ (void)a; (void)err; (void)errlen; *instance = NULL; return CELERIS_OK; }
static void fini(void *instance) { (void)instance; }
static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    celeris_str q = celeris_req_query(req);
    if (q.len == 6 && memcmp(q.ptr, "stream", 6) == 0) {
        celeris_resp_header(req, "content-type", "text/plain");
        celeris_resp_start(req, 500);
        celeris_resp_write(req, "module stream", 13);
        celeris_resp_end(req);
        return CELERIS_OK;
    }
    int status = 0;
    for (size_t i = 0; i < q.len && q.ptr[i] >= '0' && q.ptr[i] <= '9'; i++)
        status = status * 10 + (q.ptr[i] - '0');
    celeris_resp_header(req, "content-type", "application/x-module");
    return celeris_resp_send(req, status, "module body", 11);
}
/* clang-format off */
CELERIS_MODULE(status) = {
    CELERIS_MODULE_HEADER,
    .name = "status",
    .init = init,
    .fini = fini,
    .handle = handle,
};
/* clang-format on */
"""


@pytest.fixture(scope="module")
def srv(factory):
    d = factory.dir
    (d / "www").mkdir()
    (d / "www" / "404.html").write_text("<h1>not here</h1>\n")
    (d / "src.c").write_text(MOD_SRC)
    build_module(d / "src.c", d / "status.so")
    return factory(f"""workers: 1
limits: {{ max_request_body: 1k }}
errors:
  404: {{ file: www/404.html, content_type: text/html }}
  5xx: {{ json: {{ template: {{ error: "{{{{status}}}}", path: "{{{{path}}}}" }} }} }}
  4xx: {{ body: "client error {{{{status}}}}\\n", content_type: text/plain,
         headers: {{ x-error: "{{{{status}}}}" }} }}
  503: {{ json: {{ template: {{ down: true }}, content_type: application/problem+json }} }}
routes:
  - path: /a
    methods: [GET, POST]
    static: {{ body: "a" }}
  - path: /busy
    static: {{ status: 503, body: "busy" }}
  - path: /gone
    static: {{ status: 410, body: "gone" }}
  - path: /mod
    module: {{ path: {d / "status.so"} }}
""")


def h1(srv, raw):
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
    fields = dict(tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:])
    fields = {k.lower(): v for k, v in fields.items()}
    if fields.get("transfer-encoding") == "chunked":
        out = b""
        while True:
            size, _, body = body.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, body = out + body[:n], body[n + 2:]
        body = out
    return int(lines[0].split()[1]), fields, body


def h1_get(srv, path, method="GET", extra=""):
    return h1(srv, f"{method} {path} HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n"
              .encode())


def h2_get(srv, path, method="GET", headers=(), body=b""):
    with srv.client() as c:
        r = c.request(method, path, headers=list(headers), body=body)
        return r.status, dict(r.headers), r.body


def test_404_from_a_file(srv):
    for status, fields, body in (h1_get(srv, "/nothing"), h2_get(srv, "/nothing")):
        assert status == 404
        assert fields["content-type"] == "text/html"
        assert body == b"<h1>not here</h1>\n"
        assert fields["content-length"] == str(len(body))


def test_405_class_body_keeps_allow(srv):
    for status, fields, body in (h1_get(srv, "/a", "DELETE"), h2_get(srv, "/a", "DELETE")):
        assert status == 405
        assert body == b"client error 405\n"
        assert fields["x-error"] == "405"
        assert "GET" in fields["allow"]


def test_413_from_the_front_ends(srv):
    status, fields, body = h1(srv, b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n")
    assert status == 413 and body == b"client error 413\n", (fields, body)
    status, fields, body = h2_get(srv, "/a", "POST", [("content-length", "5000")], b"x" * 5000)
    assert status == 413 and body == b"client error 413\n"


def test_400_before_routing(srv):
    status, fields, body = h1(srv, b"GET /a b c HTTP/1.1\r\nhost: x\r\n\r\n")
    assert status == 400 and body == b"client error 400\n"


def test_status_beats_class_and_json_templates(srv):
    for status, fields, body in (h1_get(srv, "/busy"), h2_get(srv, "/busy")):
        assert status == 503
        assert fields["content-type"] == "application/problem+json"
        assert json.loads(body) == {"down": True}
    for status, fields, body in (h1_get(srv, "/gone?x=1"), h2_get(srv, "/gone?x=1")):
        assert status == 410 and body == b"client error 410\n"


def test_module_answers(srv):
    for get in (h1_get, h2_get):
        status, fields, body = get(srv, "/mod?500")
        assert status == 500 and "x-error" not in fields
        assert fields["content-type"] == "application/json"
        assert json.loads(body) == {"error": "500", "path": "/mod"}
        status, fields, body = get(srv, "/mod?502")
        assert json.loads(body) == {"error": "502", "path": "/mod"}
        status, fields, body = get(srv, "/mod?200")
        assert status == 200 and body == b"module body"
        # a streamed answer has its body under way: left as it is
        status, fields, body = get(srv, "/mod?stream")
        assert status == 500 and body == b"module stream"


def test_head_gets_the_length(srv):
    status, fields, body = h1_get(srv, "/nothing", "HEAD")
    assert status == 404 and body == b""
    assert fields["content-length"] == str(len(b"<h1>not here</h1>\n"))


def test_request_id_in_an_error_body(factory):
    """{{request_id}} in an error template is the id the request_id
    middleware gave the request: the one its response field carries."""
    srv = factory("""workers: 1
middleware:
  - request_id: {}
errors:
  404: { json: { template: { error: "{{status}}", id: "{{request_id}}" } } }
routes:
  - path: /a
    static: { body: "a" }
""")
    for status, fields, body in (h1_get(srv, "/nothing"), h2_get(srv, "/nothing")):
        assert status == 404
        doc = json.loads(body)
        assert len(fields["x-request-id"]) == 32
        assert doc == {"error": "404", "id": fields["x-request-id"]}, (doc, fields)


@pytest.mark.parametrize("yaml,line,col,words", [
    ("errors:\n  600: {body: x}\n", 2, 3, ["400-599 or a class"]),
    ("errors:\n  3xx: {body: x}\n", 2, 3, ["400-599 or a class"]),
    ("errors:\n  404: {body: x, status: 500}\n", 2, 18, ["no status"]),
    ("errors:\n  500: {json: {template: {a: \"{{nope}}\"}}}\n", 2, 30, ["nope"]),
    ("errors:\n  500: {json: {template: {a: 1}}, body: x}\n", 2, 8, ["not both"]),
    ("errors:\n  404: {file: missing.html}\n", 2, 15, ["cannot open file"]),
    ("errors:\n  404: {bdy: x}\n", 2, 9, ["unknown key \"bdy\""]),
])
def test_config_errors(tmp_path, yaml, line, col, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml + "routes:\n  - path: /a\n    static: {body: x}\n")
    expect_config_error(path, line, col, words)
