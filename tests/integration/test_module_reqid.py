"""celeris_req_id (issue 15: the request id to modules) against the real daemon
over h2c and HTTP/1.1: a module built here out of tree with `pkg-config
--cflags celeris-module` answers with the id it reads, which must be the one
the response's field carries (a fresh one, or a trusted incoming one that a
route's request_id gave); as middleware it sees the id only after the
request_id item of its chain (also on the head of a refusal given before
routing); and with no request_id configured the id is empty, its pointer not
NULL."""

import re

import pytest

from support import build_module, h1_exchange

HEX32 = re.compile(r"^[0-9a-f]{32}$")
# 128 bits: 21 characters of 6 bits and one of 2
B64 = re.compile(r"^[A-Za-z0-9_-]{21}[A-D]$")

KIT_SRC = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <celeris/module.h>

typedef struct inst {
    char tag[32];
} inst;

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    inst *in = calloc(1, sizeof(*in));
    const char *t = strstr(args->config_json, "\"tag\":\"");
    (void)err, (void)errlen;
    if (!in)
        return CELERIS_ERROR;
    if (t)
        sscanf(t + 7, "%31[a-z]", in->tag);
    *instance = in;
    return CELERIS_OK;
}

static void fini(void *instance)
{
    free(instance);
}

/* "[ID] LEN NULL": the id between brackets, its length, and whether its
 * pointer was NULL. */
static int describe(celeris_req *req, char *buf, size_t cap)
{
    celeris_str id = celeris_req_id(req);
    return snprintf(buf, cap, "[%.*s] %zu %d", (int)id.len, id.ptr ? id.ptr : "", id.len,
                    id.ptr == NULL);
}

static int handle(void *instance, celeris_req *req)
{
    char buf[300];
    (void)instance;
    describe(req, buf, sizeof(buf));
    celeris_resp_header(req, "content-type", "text/plain");
    return celeris_resp_printf(req, 200, "%s", buf);
}

/* A middleware item answers a request that asks it to (x-probe: TAG) with
 * what it sees of the id in on_request. */
static int on_request(void *instance, celeris_req *req)
{
    inst *in = instance;
    celeris_str v;
    char buf[300];
    if (celeris_req_header(req, "x-probe", &v) != CELERIS_OK || v.len != strlen(in->tag) ||
        memcmp(v.ptr, in->tag, v.len) != 0)
        return CELERIS_CONTINUE;
    describe(req, buf, sizeof(buf));
    celeris_resp_header(req, "content-type", "text/plain");
    return celeris_resp_printf(req, 200, "%s", buf);
}

static void on_response_head(void *instance, celeris_req *req, int status)
{
    inst *in = instance;
    char name[64], buf[300];
    (void)status;
    describe(req, buf, sizeof(buf));
    snprintf(name, sizeof(name), "x-seen-%s", in->tag);
    celeris_resp_field_set(req, name, buf);
}

CELERIS_MODULE(ridkit) = {
    CELERIS_MODULE_HEADER,
    .init = init,
    .fini = fini,
    .handle = handle,
    .on_request = on_request,
    .on_response_head = on_response_head,
};
"""


@pytest.fixture(scope="module")
def mods(tmp_path_factory):
    d = tmp_path_factory.mktemp("ridmods")
    (d / "ridkit.c").write_text(KIT_SRC)
    build_module(d / "ridkit.c", d / "ridkit.so")
    return d


@pytest.fixture(scope="module")
def srv(factory, mods):
    return factory(f"""workers: 2
modules_dir: {mods}
middleware:
  - module: {{ name: ridkit, config: {{ tag: before }} }}
  - request_id: {{}}
  - module: {{ name: ridkit, config: {{ tag: after }} }}
routes:
  - path: /id
    module: {{ name: ridkit }}
  - path: /trust
    middleware: [ {{ request_id: {{ header: X-Trace, trust_incoming: true }} }} ]
    module: {{ name: ridkit }}
  - path: /b64
    middleware: [ {{ request_id: {{ format: base64url }} }} ]
    module: {{ name: ridkit }}
  - path: /fields
    static: {{ body: f, headers: {{ x-robots-tag: none, x-request-id: handler, X-Request-Id: again }} }}
""")


@pytest.fixture(scope="module")
def bare(factory, mods):
    return factory(f"""workers: 1
modules_dir: {mods}
routes:
  - path: /id
    module: {{ name: ridkit }}
""")


def h1(srv, raw):
    """RAW on one connection the server closes: (status, [(name, value)], body)."""
    return h1_exchange(srv.port, raw)


def both(srv, path, headers=()):
    """[(protocol, (status, [(name, value)], body))] over h2c and HTTP/1.1."""
    with srv.client() as c:
        r = c.get(path, headers=list(headers))
        h2 = (r.status, [(k, v) for k, v in r.headers], r.body)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    raw = f"GET {path} HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n".encode()
    return [("h2c", h2), ("http/1.1", h1(srv, raw))]


def vals(fields, name):
    return [v for k, v in fields if k == name]


def seen(rid):
    return f"[{rid}] {len(rid)} 0"


def test_handler_gets_the_id_of_the_response_field(srv):
    ids = []
    for proto, (status, f, body) in both(srv, "/id") + both(srv, "/id"):
        rid = vals(f, "x-request-id")
        assert status == 200 and len(rid) == 1 and HEX32.match(rid[0]), (proto, f)
        assert body.decode() == seen(rid[0]), (proto, body, f)
        ids.append(rid[0])
    assert len(set(ids)) == len(ids), ids


def test_trusted_incoming_id_of_a_routes_request_id(srv):
    for proto, (status, f, body) in both(srv, "/trust", [("x-trace", "abc-123.x")]):
        assert status == 200 and vals(f, "x-trace") == ["abc-123.x"], (proto, f)
        assert body.decode() == seen("abc-123.x"), (proto, body)
    # refused incoming value: a fresh id, the same in the field and the module
    for proto, (status, f, body) in both(srv, "/trust", [("x-trace", "x" * 129)]):
        rid = vals(f, "x-trace")
        assert len(rid) == 1 and HEX32.match(rid[0]), (proto, f)
        assert body.decode() == seen(rid[0]), (proto, body)


def test_middleware_sees_the_id_after_request_id(srv):
    for proto, (status, f, body) in both(srv, "/id", [("x-probe", "before")]):
        # answered before request_id's request phase: no id yet; its answer
        # still passes request_id's head phase, which gives it one
        assert status == 200 and body.decode() == "[] 0 0", (proto, body)
        rid = vals(f, "x-request-id")
        assert len(rid) == 1 and HEX32.match(rid[0]), (proto, f)
    for proto, (status, f, body) in both(srv, "/id", [("x-probe", "after")]):
        rid = vals(f, "x-request-id")
        assert status == 200 and len(rid) == 1, (proto, f)
        assert body.decode() == seen(rid[0]), (proto, body, f)
        # both heads run after the request phase: both see the id
        assert vals(f, "x-seen-before") == [seen(rid[0])], (proto, f)
        assert vals(f, "x-seen-after") == [seen(rid[0])], (proto, f)


def test_refusal_before_routing_id_after_request_ids_head(srv):
    status, f, _ = h1(srv, b"GET /id b c HTTP/1.1\r\nhost: x\r\n\r\n")
    rid = vals(f, "x-request-id")
    assert status == 400 and len(rid) == 1 and HEX32.match(rid[0]), f
    assert vals(f, "x-seen-before") == ["[] 0 0"], f
    assert vals(f, "x-seen-after") == [seen(rid[0])], f


def test_base64url_format(srv):
    """format: base64url on the route's request_id: 22 characters, the same
    in the field (the global request_id's too: one id) and in the module."""
    ids = []
    for proto, (status, f, body) in both(srv, "/b64") + both(srv, "/b64"):
        rid = vals(f, "x-request-id")
        assert status == 200 and len(rid) == 1 and B64.match(rid[0]), (proto, f)
        assert body.decode() == seen(rid[0]), (proto, body, f)
        ids.append(rid[0])
    assert len(set(ids)) == len(ids), ids
    # every character of the alphabet turns up, in every position but the last
    with srv.client() as c:
        many = [c.get("/b64").header("x-request-id") for _ in range(200)]
    assert all(B64.match(i) for i in many), many
    assert set("".join(i[:21] for i in many)) == set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(set(i[21] for i in many)) == 4


def test_handlers_field_of_that_name_replaced(srv):
    """The head phase's fast path appends the field; a field of the same name
    (the handler's, twice) is replaced by the one id, and one of the same
    length and first letter (x-robots-tag) stays."""
    for proto, (status, f, body) in both(srv, "/fields"):
        rid = vals(f, "x-request-id")
        assert status == 200 and len(rid) == 1 and HEX32.match(rid[0]), (proto, f)
        assert vals(f, "x-robots-tag") == ["none"], (proto, f)
        assert vals(f, "x-seen-after") == [seen(rid[0])], (proto, f)


def test_no_request_id_middleware_empty_not_null(bare):
    for proto, (status, f, body) in both(bare, "/id"):
        assert status == 200 and body == b"[] 0 0", (proto, body)
        assert not vals(f, "x-request-id"), (proto, f)
