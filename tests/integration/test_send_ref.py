"""celeris_resp_send_ref against the real daemon: a module (built here from
source) answers with a 1 MiB body it owns and lends to celerisd. The body must
arrive intact over HTTP/2 (many flow-control windows, so celerisd holds it
across many writes) and HTTP/1.1; its release callback must run exactly once
per response, on the worker that answered, also when the client resets the
stream or closes the connection before the body is out. The release callback
overwrites the body before freeing it, so a byte sent after the release shows
(and under AddressSanitizer, so does any later read)."""

import json
import pathlib
import subprocess
import time

import pytest

from support import BINARY, REPO, curl

MODULES = pathlib.Path(BINARY).resolve().parent / "modules"
HEADER_DIR = REPO / "server" / "include"
SIZE = 1 << 20
BODY = bytes(ord("a") + i % 26 for i in range(SIZE))

REF_SRC = r"""
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <celeris/module.h>

#define SIZE (1u << 20)

typedef struct lent {
    pthread_t worker;
    unsigned char body[SIZE];
} lent;

static atomic_ulong sent, released, wrong_thread;

static void release(void *arg)
{
    lent *l = arg;
    if (!pthread_equal(l->worker, pthread_self()))
        atomic_fetch_add(&wrong_thread, 1);
    memset(l->body, 'X', SIZE);
    free(l);
    atomic_fetch_add(&released, 1);
}

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    celeris_str p = celeris_req_path(req);
    if (p.len == 10 && !memcmp(p.ptr, "/ref/count", 10)) {
        celeris_resp_header(req, "content-type", "application/json");
        return celeris_resp_printf(req, 200, "{\"sent\":%lu,\"released\":%lu,\"wrong_thread\":%lu}",
                                   atomic_load(&sent), atomic_load(&released),
                                   atomic_load(&wrong_thread));
    }
    lent *l = malloc(sizeof(*l));
    if (!l)
        return CELERIS_NOMEM;
    l->worker = pthread_self();
    for (unsigned i = 0; i < SIZE; i++)
        l->body[i] = (unsigned char)('a' + i % 26);
    atomic_fetch_add(&sent, 1);
    return celeris_resp_send_ref(req, 200, l->body, SIZE, release, l);
}

CELERIS_MODULE(lend) = {
    CELERIS_MODULE_HEADER,
    .name = "lend",
    .handle = handle,
};
"""


@pytest.fixture(scope="module")
def srv(module_celerisd, tmp_path_factory):
    d = tmp_path_factory.mktemp("lend")
    src = d / "lend.c"
    src.write_text(REF_SRC)
    mods = d / "mods"
    mods.mkdir()
    p = subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", f"-I{HEADER_DIR}",
                        "-o", str(mods / "lend.so"), str(src), "-lpthread"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return module_celerisd(f"""workers: 2
modules_dir: {mods}
routes:
  - path: /ref/:what
    module: {{ name: lend }}
""")


def counts(srv):
    with srv.client() as c:
        return json.loads(c.get("/ref/count").body)


def settle(srv, timeout=10):
    """The counts once every lent body is released (or the deadline passes)."""
    deadline = time.monotonic() + timeout
    while True:
        n = counts(srv)
        if n["released"] == n["sent"] or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def test_send_ref_body_over_h2_and_http1(srv, tmp_path):
    before = settle(srv)
    with srv.client(timeout=30) as c:
        rs = c.many([("GET", "/ref/body")] * 4, timeout=60)
    assert all(r.status == 200 and r.body == BODY for r in rs), \
        [(r.status, len(r.body), r.body.count(b"X")) for r in rs]
    out = tmp_path / "body"
    p = curl(["--http1.1", "-o", str(out), "-w", "%{http_version}", srv.url("/ref/body")],
             timeout=60)
    assert p.returncode == 0 and p.stdout == b"1.1", (p.returncode, p.stdout, p.stderr)
    assert out.read_bytes() == BODY
    after = settle(srv)
    assert after["sent"] - before["sent"] == 5, (before, after)
    assert after["released"] == after["sent"] and after["wrong_thread"] == 0, after


def test_send_ref_released_when_aborted(srv):
    """Streams reset, and a connection closed, while their bodies wait for a
    window the client never opens: every body is still released, once."""
    before = settle(srv)
    with srv.client(auto_ack=False, timeout=30) as c:
        sids = [c.send_request("GET", "/ref/body") for _ in range(3)]
        c.wait_for(lambda: c.unacked_bytes() >= 65535, timeout=10, what="first window")
        for sid in sids:
            c.reset_stream(sid)
    c = srv.client(auto_ack=False, timeout=30)
    for _ in range(3):
        c.send_request("GET", "/ref/body")
    c.wait_for(lambda: c.unacked_bytes() >= 65535, timeout=10, what="first window")
    c.close()
    after = settle(srv)
    assert after["sent"] - before["sent"] == 6, (before, after)
    assert after["released"] == after["sent"] and after["wrong_thread"] == 0, after
