"""Modules as middleware (issue 15: the module ABI's middleware hooks) against
the real daemon over HTTP/1.1 and h2c. A module built here out of tree with
`pkg-config --cflags celeris-module` only has on_request (answers 401 unless a
header is present), and on_response_head (adds a field to every answer: the
handler's, a 404, another middleware's 401; removes a handler's field), in
order with `headers` middleware before and after it; the synchronous-only
rule and the field-name rules (calls refused with the codes of
celeris/module.h); config errors with file:line:column; a reload and a swap
of the .so; and a reload changing the list under h2load with 0 failures."""

import signal
import subprocess
import time

import pytest

from support import (build_module, expect_config_error, h1_exchange, reloads_under_load,
                     write_atomic)

KIT_SRC = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <celeris/module.h>

#ifndef BUILD
#define BUILD "1"
#endif

typedef struct inst {
    char auth[64], add[64], remove[64], route[128];
    int probe, badret, mw;
} inst;

/* The string value of KEY in the compact JSON of the config, or "". */
static void jstr(const char *json, const char *key, char *out, size_t cap)
{
    char pat[80];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *p = strstr(json, pat);
    out[0] = 0;
    if (!p)
        return;
    p += strlen(pat);
    size_t n = 0;
    while (p[n] && p[n] != '"' && n + 1 < cap)
        n++;
    memcpy(out, p, n);
    out[n] = 0;
}

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    inst *in = calloc(1, sizeof(*in));
    if (!in)
        return CELERIS_ERROR;
    if (strstr(args->config_json, "\"fail\"")) {
        snprintf(err, errlen, "told to fail");
        free(in);
        return CELERIS_ERROR;
    }
    jstr(args->config_json, "auth", in->auth, sizeof(in->auth));
    jstr(args->config_json, "add", in->add, sizeof(in->add));
    jstr(args->config_json, "remove", in->remove, sizeof(in->remove));
    in->probe = strstr(args->config_json, "\"probe\"") != NULL;
    in->badret = strstr(args->config_json, "\"badret\"") != NULL;
    in->mw = args->size >= offsetof(celeris_init_args, flags) + sizeof(args->flags) &&
             (args->flags & CELERIS_INIT_MIDDLEWARE);
    snprintf(in->route, sizeof(in->route), "%s", args->route);
    *instance = in;
    return CELERIS_OK;
}

static void fini(void *instance)
{
    inst *in = instance;
    celeris_log(CELERIS_LOG_WARN, "mwkit fini add=%s", in->add);
    free(in);
}

static void tick(celeris_req *req, void *arg)
{
    (void)req, (void)arg;
}

static int on_request(void *instance, celeris_req *req)
{
    inst *in = instance;
    celeris_str v;
    if (in->badret)
        return CELERIS_OK; /* a mistake: OK without an answer */
    if (in->probe) {
        int start = celeris_resp_start(req, 200);
        int timer = celeris_timer_start(req, 10, 0, tick, NULL, NULL);
        int close_ = celeris_req_on_close(req, NULL, NULL);
        int field = celeris_resp_field_set(req, "x-a", "b");
        int susp = celeris_req_suspend(req) == NULL;
        celeris_str path = celeris_req_path(req);
        celeris_resp_header(req, "content-type", "text/plain");
        return celeris_resp_printf(req, 200, "start=%d timer=%d close=%d field=%d null=%d path=%.*s",
                                   start, timer, close_, field, susp, (int)path.len, path.ptr);
    }
    if (in->auth[0] && celeris_req_header(req, in->auth, &v) != CELERIS_OK) {
        celeris_resp_header(req, "www-authenticate", "Token");
        celeris_resp_header(req, "content-type", "text/plain");
        return celeris_resp_send(req, 401, "no token\n", 9);
    }
    return CELERIS_CONTINUE;
}

static void on_response_head(void *instance, celeris_req *req, int status)
{
    inst *in = instance;
    char buf[256];
    celeris_str v;
    if (in->add[0]) {
        celeris_resp_field_add(req, "X-Mod", in->add);
        snprintf(buf, sizeof(buf), "%d %s", status, in->mw ? "mw" : "?");
        celeris_resp_field_set(req, "x-mod-status", buf);
        snprintf(buf, sizeof(buf), "[%s]", in->route);
        celeris_resp_field_set(req, "x-mod-route", buf);
        celeris_resp_field_set(req, "x-mod-build", BUILD);
        celeris_resp_field_set(req, "x-over", "module");
        if (celeris_resp_field_get(req, "x-before", &v) == CELERIS_OK)
            celeris_resp_field_set(req, "x-saw", "before");
        if (celeris_resp_field_get(req, "x-after", &v) == CELERIS_OK)
            celeris_resp_field_set(req, "x-saw", "after");
    }
    if (in->remove[0])
        celeris_resp_field_remove(req, in->remove);
    if (in->probe) {
        celeris_str n, first;
        size_t count = celeris_resp_field_count(req);
        int at = celeris_resp_field_at(req, 0, &n, &first);
        snprintf(buf, sizeof(buf),
                 "cl=%d te=%d name=%d crlf=%d send=%d hdr=%d rm=%d past=%d first=%.*s n=%d",
                 celeris_resp_field_set(req, "Content-Length", "1"),
                 celeris_resp_field_add(req, "transfer-encoding", "x"),
                 celeris_resp_field_add(req, "bad name", "x"),
                 celeris_resp_field_add(req, "x-a", "a\r\nb"),
                 celeris_resp_send(req, 200, "", 0),
                 celeris_resp_header(req, "x-b", "c"),
                 celeris_resp_field_remove(req, "x-absent"),
                 celeris_resp_field_at(req, 999, &n, &v),
                 at == CELERIS_OK ? (int)n.len : 0, at == CELERIS_OK ? n.ptr : "",
                 count > 2);
        celeris_resp_field_set(req, "x-probe", buf);
    }
}

CELERIS_MODULE(mwkit) = {
    CELERIS_MODULE_HEADER,
    .init = init,
    .fini = fini,
    .on_request = on_request,
    .on_response_head = on_response_head,
};
"""

# A handler module with no middleware functions.
PLAIN_SRC = r"""
#include <celeris/module.h>
static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    return celeris_resp_send(req, 200, "plain", 5);
}
CELERIS_MODULE(plain) = {
    CELERIS_MODULE_HEADER,
    .handle = handle,
};
"""


@pytest.fixture(scope="module")
def mods(tmp_path_factory):
    d = tmp_path_factory.mktemp("mwmods")
    (d / "mwkit.c").write_text(KIT_SRC)
    (d / "plain.c").write_text(PLAIN_SRC)
    build_module(d / "mwkit.c", d / "mwkit.so")
    build_module(d / "plain.c", d / "plain.so")
    return d


def config(mods, extra_global=""):
    return f"""workers: 2
log: {{ level: info }}
modules_dir: {mods}
middleware:
  - headers: {{ set: {{ x-before: h, x-over: before }} }}
  - module: {{ name: mwkit, config: {{ add: g1 }} }}
  - headers: {{ add: {{ x-after: h }} }}
{extra_global}routes:
  - path: /open
    static: {{ body: open, headers: {{ x-handler: h, x-keep: k }} }}
  - path: /secret/:id
    middleware:
      - module: {{ name: mwkit, config: {{ auth: x-token }} }}
      - module: {{ name: mwkit, config: {{ remove: x-handler }} }}
    static: {{ body: secret, headers: {{ x-handler: h, x-keep: k }} }}
  - path: /probe
    middleware: [ {{ module: {{ name: mwkit, config: {{ probe: 1 }} }} }} ]
    static: {{ body: never }}
  - path: /badret
    middleware: [ {{ module: {{ name: mwkit, config: {{ badret: 1 }} }} }} ]
    static: {{ body: never }}
  - path: /late
    middleware:
      - headers: {{ set: {{ x-over: late }} }}
    static: {{ body: late }}
"""


@pytest.fixture(scope="module")
def srv(factory, mods):
    return factory(config(mods))


def h1(srv, path, headers=""):
    raw = f"GET {path} HTTP/1.1\r\nhost: x\r\n{headers}connection: close\r\n\r\n".encode()
    return h1_exchange(srv.port, raw)


def vals(fields, name):
    return [v for k, v in fields if k == name]


def both(srv, path, headers=()):
    """(status, [(name, value)], body) over h2c and over HTTP/1.1."""
    with srv.client() as c:
        r = c.get(path, headers=list(headers))
        h2 = (r.status, [(k, v) for k, v in r.headers], r.body)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return [("h2c", h2), ("http/1.1", h1(srv, path, extra))]


def test_adds_to_the_handlers_answer_in_order(srv):
    for proto, (status, f, body) in both(srv, "/open"):
        assert status == 200 and body == b"open", proto
        assert vals(f, "x-mod") == ["g1"], (proto, f)
        assert vals(f, "x-mod-status") == ["200 mw"], (proto, f)
        assert vals(f, "x-mod-route") == ["[]"], (proto, f)  # the global list's instance
        # headers before it: the module saw x-before; headers after it: x-after not yet
        assert vals(f, "x-saw") == ["before"], (proto, f)
        assert vals(f, "x-over") == ["module"], (proto, f)  # set after `headers` set it
        order = [k for k, _ in f]
        assert order.index("x-before") < order.index("x-mod") < order.index("x-after"), order
        assert vals(f, "x-handler") == ["h"], (proto, f)


def test_a_later_headers_middleware_overrides_the_module(srv):
    for proto, (status, f, _) in both(srv, "/late"):
        assert status == 200
        assert vals(f, "x-over") == ["late"], (proto, f)
        assert vals(f, "x-mod") == ["g1"], (proto, f)


def test_404_gets_the_field(srv):
    for proto, (status, f, _) in both(srv, "/nothing/here"):
        assert status == 404, proto
        assert vals(f, "x-mod") == ["g1"], (proto, f)
        assert vals(f, "x-mod-status") == ["404 mw"], (proto, f)


def test_401_unless_the_header_and_the_field_on_that_answer(srv):
    for proto, (status, f, body) in both(srv, "/secret/7"):
        assert status == 401 and body == b"no token\n", (proto, status, body)
        assert vals(f, "www-authenticate") == ["Token"], (proto, f)
        assert vals(f, "content-type") == ["text/plain"], (proto, f)
        # another middleware's answer passes the whole chain's head phase
        assert vals(f, "x-mod") == ["g1"] and vals(f, "x-mod-status") == ["401 mw"], (proto, f)
        assert vals(f, "x-before") == ["h"] and vals(f, "x-after") == ["h"], (proto, f)
        assert vals(f, "x-handler") == [], (proto, f)


def test_token_lets_through_and_a_handlers_field_is_removed(srv):
    for proto, (status, f, body) in both(srv, "/secret/7", [("x-token", "t")]):
        assert status == 200 and body == b"secret", (proto, status, body)
        assert vals(f, "x-handler") == [], (proto, f)  # removed by the route's module
        assert vals(f, "x-keep") == ["k"], (proto, f)
        assert vals(f, "x-mod") == ["g1"], (proto, f)


def test_async_refused_and_field_rules(srv):
    """on_request answers synchronously only (CELERIS_STATE, -4, for start,
    timers, on_close, fields; suspend gives NULL); on_response_head refuses
    framing fields, bad names and CR/LF (CELERIS_ERROR, -1) and answers
    (CELERIS_STATE)."""
    for proto, (status, f, body) in both(srv, "/probe"):
        assert status == 200, proto
        assert body == b"start=-4 timer=-4 close=-4 field=-4 null=1 path=/probe", (proto, body)
        assert vals(f, "x-probe") == [
            "cl=-1 te=-1 name=-1 crlf=-1 send=-4 hdr=-4 rm=-2 past=-2 first=server n=1"], (proto, f)
        assert len(vals(f, "content-length")) <= 1 and vals(f, "transfer-encoding") == [], f
        assert vals(f, "x-a") == [], (proto, f)
    text = srv.stderr_text()
    assert "middleware module mwkit on route \"/probe\"" in text, text
    assert "middleware answers synchronously" in text, text


def test_ok_without_an_answer_is_a_500(srv):
    for proto, (status, f, _) in both(srv, "/badret"):
        assert status == 500, proto
        assert vals(f, "x-mod-status") == ["500 mw"], (proto, f)
    assert "on_request returned this without answering" in srv.stderr_text()


@pytest.mark.parametrize("item,words", [
    ("module: {name: nosuch}", ["cannot open module", "nosuch.so"]),
    ("module: {name: plain}", ["has no middleware functions"]),
    ("module: {name: mwkit, config: {fail: 1}}", ["init failed: told to fail",
                                                 "middleware module mwkit (global)"]),
])
def test_config_errors(tmp_path, mods, item, words):
    path = tmp_path / "bad.yaml"
    path.write_text(f"modules_dir: {mods}\nmiddleware:\n  - {item}\n"
                    "routes:\n  - path: /a\n    static: {body: a}\n")
    expect_config_error(path, 3, None, words)


def test_route_list_error_and_middleware_module_as_handler(tmp_path, mods):
    path = tmp_path / "bad.yaml"
    path.write_text(f"routes:\n  - path: /a\n    middleware:\n"
                    f"      - module: {{ path: {mods}/plain.so }}\n    static: {{body: a}}\n")
    expect_config_error(path, 4, 25, ["has no middleware functions"])
    path.write_text(f"modules_dir: {mods}\nroutes:\n  - path: /a\n    module: {{ name: mwkit }}\n")
    expect_config_error(path, 4, 21, ["has no handle function: it is middleware only"])


def wait_generation(srv, n):
    deadline = time.monotonic() + 20
    while f"generation {n} is serving" not in srv.stderr_text():
        assert "reload failed" not in srv.stderr_text(), srv.stderr_text()
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.02)


def test_reload_and_swap_of_the_so(factory, tmp_path):
    d = tmp_path / "mods"
    d.mkdir()
    (d / "mwkit.c").write_text(KIT_SRC)
    build_module(d / "mwkit.c", d / "mwkit.so")
    srv = factory(config(d))
    with srv.client() as c:
        r = c.get("/open")
        assert r.header("x-mod-build") == "1" and r.header("x-mod") == "g1"
    # a new build over the file in place, and the list's config changed
    build_module(d / "mwkit.c", d / "new.so", "-DBUILD=\"2\"")
    subprocess.run(["cp", str(d / "new.so"), str(d / "mwkit.so")], check=True)
    write_atomic(srv.config_path, srv.config_path.read_text().replace("add: g1", "add: g2"))
    srv.send_signal(signal.SIGHUP)
    wait_generation(srv, 2)
    for proto, (status, f, _) in both(srv, "/open"):
        assert vals(f, "x-mod-build") == ["2"] and vals(f, "x-mod") == ["g2"], (proto, f)
    # the old generation's instances ran fini
    deadline = time.monotonic() + 10
    while "mwkit fini add=g1" not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.05)


def test_reload_changing_the_list_under_load(factory, mods):
    """The global mwkit module taken out of the list and put back by six
    SIGHUPs while h2load keeps asking a route behind two more mwkit
    instances: no request fails, every answer is a 2xx, and after each
    reload new requests show the list just written (x-mod: g1, or none)."""
    srv = factory(config(mods))
    a = srv.config_path.read_text()
    b = a.replace("  - module: { name: mwkit, config: { add: g1 } }\n", "")
    assert b != a

    def verify(i):
        for _ in range(4):  # new connections: on either worker
            with srv.client() as c:
                r = c.get("/secret/1", headers=[("x-token", "t")])
            assert r.status == 200 and r.body == b"secret", r
            assert r.header_all("x-mod") == (["g1"] if i == 0 else []), (i, r.headers)

    reloads_under_load(srv, [a, b], verify, srv.url("/secret/1"),
                       ("-c", 4, "-m", 10, "-H", "x-token: t"))
    assert "reload failed" not in srv.stderr_text()
