"""Request bodies as a stream (celeris_init_body_stream,
celeris_req_body_on_data, celeris_req_body_resume) and the per-route
max_request_body, against the real daemon over HTTP/1.1 and h2c: an upload
is written to a file piece by piece, whole and in order; a module that holds
back keeps the client from sending (HTTP/2: the stream's window stays shut
while the connection's stays open for other streams; HTTP/1.1: the socket is
not read), and letting go resumes it; a body over the route's limit is a 413
either way; the same module code reads a buffered body."""

import hashlib
import os
import socket
import subprocess
import time

import pytest

from support import build_module

SCALE = float(os.environ.get("CELERIS_ATTACK_SCALE", "1"))
MIB = 1024 * 1024

# POST /up/:name stores the body in DIR/NAME (through NAME.part, renamed at
# the end) and answers "stored N sha256"; ?hold=1 takes nothing until a
# request to /up/release (same worker) resumes every held upload;
# ?early=1 answers 400 at the first piece. on_close removes a .part left.
UPLOAD_SRC = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <celeris/module.h>

typedef struct up {
    celeris_req *req;
    int fd, hold, early, done, echo, blocked;
    size_t bytes;
    SHA256_CTX sha;
    char part[512], path[512];
} up;

static char dir[400];
static up *held[64];
static int nheld;

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    json_error_t je;
    const char *d = NULL;
    int buffered = 0;
    json_t *cfg = json_loadb(args->config_json, args->config_len, 0, &je);
    if (!cfg || json_unpack_ex(cfg, &je, JSON_STRICT, "{s:s,s?b}", "dir", &d, "buffered",
                               &buffered)) {
        snprintf(err, errlen, "%s", je.text);
        json_decref(cfg);
        return CELERIS_ERROR;
    }
    snprintf(dir, sizeof(dir), "%s", d);
    json_decref(cfg);
    if (!buffered && celeris_init_body_stream(args) != CELERIS_OK) {
        snprintf(err, errlen, "celeris_init_body_stream refused");
        return CELERIS_ERROR;
    }
    *instance = NULL;
    return CELERIS_OK;
}

static void on_close(void *arg, int finished)
{
    up *u = arg;
    (void)finished;
    if (u->fd >= 0) {
        close(u->fd);
        unlink(u->part);
    }
    for (int i = 0; i < nheld; i++)
        if (held[i] == u)
            held[i] = held[--nheld];
    free(u);
}

static void unblock(celeris_req *req, void *arg)
{
    up *u = arg;
    u->blocked = 0;
    celeris_req_body_resume(req);
}

static size_t on_data(celeris_req *req, const void *data, size_t len, int end, void *arg)
{
    up *u = arg;
    if (u->echo) { /* the answer streams while the upload goes on */
        if (u->blocked && len)
            return 0; /* held; an end without bytes cannot be (0 takes it) */
        if (len && celeris_resp_write(req, data, len) == CELERIS_AGAIN) {
            u->blocked = 1;
            celeris_resp_on_writable(req, unblock, u);
        }
        if (end)
            celeris_resp_end(req);
        return len;
    }
    if (u->early) {
        celeris_resp_send(req, 400, "early\n", 6);
        return len;
    }
    if (u->hold) {
        if (nheld < 64)
            held[nheld++] = u;
        return 0;
    }
    /* at most 64 KiB a call: the rest comes again at once */
    size_t n = len > 65536 ? 65536 : len;
    if (n && write(u->fd, data, n) != (ssize_t)n) {
        celeris_resp_send(req, 500, "write failed\n", 13);
        return len;
    }
    SHA256_Update(&u->sha, data, n);
    u->bytes += n;
    if (n < len) {
        celeris_req_body_resume(req);
        return n;
    }
    if (end) {
        unsigned char md[32];
        char hex[65];
        SHA256_Final(md, &u->sha);
        for (int i = 0; i < 32; i++)
            sprintf(hex + 2 * i, "%02x", md[i]);
        close(u->fd);
        u->fd = -1;
        rename(u->part, u->path);
        celeris_resp_printf(req, 201, "stored %zu %s streamed=%d\n", u->bytes, hex,
                            celeris_req_body_streamed(req));
    }
    return n;
}

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    celeris_str name, v;
    if (celeris_req_param(req, "name", &name) != CELERIS_OK)
        return CELERIS_ERROR;
    if (name.len == 7 && memcmp(name.ptr, "release", 7) == 0) {
        int n = nheld;
        while (nheld) {
            up *u = held[--nheld];
            u->hold = 0;
            celeris_req_body_resume(u->req);
        }
        return celeris_resp_printf(req, 200, "released %d state=%d\n", n,
                                   celeris_init_body_stream(NULL));
    }
    up *u = calloc(1, sizeof(*u));
    if (!u)
        return CELERIS_ERROR;
    u->req = req;
    u->hold = celeris_req_query_arg(req, "hold", &v) == CELERIS_OK;
    u->early = celeris_req_query_arg(req, "early", &v) == CELERIS_OK;
    u->echo = celeris_req_query_arg(req, "echo", &v) == CELERIS_OK;
    if (u->echo && celeris_resp_start(req, 200) != CELERIS_OK) {
        free(u);
        return CELERIS_ERROR;
    }
    snprintf(u->part, sizeof(u->part), "%s/%.*s.part", dir, (int)name.len, name.ptr);
    snprintf(u->path, sizeof(u->path), "%s/%.*s", dir, (int)name.len, name.ptr);
    SHA256_Init(&u->sha);
    u->fd = open(u->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (u->fd < 0 || celeris_req_on_close(req, on_close, u) != CELERIS_OK) {
        if (u->fd >= 0)
            close(u->fd);
        free(u);
        return CELERIS_ERROR;
    }
    if (celeris_req_body_on_data(req, on_data, u) != CELERIS_OK)
        return CELERIS_ERROR;
    return CELERIS_SUSPENDED;
}

CELERIS_MODULE(upload) = { CELERIS_MODULE_HEADER, .name = "upload", .handle = handle, .init = init };
"""


@pytest.fixture(scope="module")
def upload_so(tmp_path_factory):
    d = tmp_path_factory.mktemp("upmod")
    src = d / "upload.c"
    src.write_text(UPLOAD_SRC.replace("#define _GNU_SOURCE\n", "#define _GNU_SOURCE\n"
                                      "#define OPENSSL_API_COMPAT 0x10100000L\n"))
    return build_module(src, d / "upload.so", "-Wno-deprecated-declarations", "-ljansson",
                        "-lcrypto")


@pytest.fixture
def store(tmp_path):
    d = tmp_path / "store"
    d.mkdir()
    return d


def config(so, store, extra=""):
    return f"""workers: 1
limits: {{ max_request_body: 1m }}
routes:
  - path: /up/:name
    methods: [POST, PUT]
    max_request_body: 64m
    module: {{ path: {so}, config: {{ dir: "{store}" }} }}
  - path: /small/:name
    methods: [POST]
    max_request_body: 100k
    module: {{ path: {so}, config: {{ dir: "{store}" }} }}
  - path: /buffered/:name
    methods: [POST]
    max_request_body: 4m
    module: {{ path: {so}, config: {{ dir: "{store}", buffered: true }} }}
  - path: /tiny
    methods: [POST]
    max_request_body: 1k
    static: {{ body: "ok" }}
{extra}"""


def h1_request(port, method, path, body, chunked=False, timeout=30):
    """A raw HTTP/1.1 request; returns (status, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout * SCALE) as s:
        if chunked:
            head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            s.sendall(head.encode())
            for i in range(0, len(body), 100000):
                piece = body[i:i + 100000]
                s.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        else:
            head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            try:
                s.sendall(head.encode() + body)
            except (BrokenPipeError, ConnectionResetError):
                pass
        return read_h1_response(s)


def read_h1_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest[:length]


def h2_request(srv, method, path, body, content_length=True):
    with srv.client(timeout=30 * SCALE) as c:
        headers = [("content-length", str(len(body)))] if content_length else []
        sid = c.send_request(method, path, headers=headers, body=body)
        r = c.response(sid)
        return r.status, r.body


def expect_stored(store, name, data, answer):
    digest = hashlib.sha256(data).hexdigest()
    assert answer.startswith(f"stored {len(data)} {digest}".encode()), answer
    assert (store / name).read_bytes() == data
    assert not (store / f"{name}.part").exists()


@pytest.mark.parametrize("proto", ["http1.1", "h2c"])
def test_upload_streams_to_a_file(celerisd, upload_so, store, proto):
    """3 MiB, above the global 1m limit and within the route's 64m: stored
    whole and in order, taken 64 KiB a call; chunked / no content-length too."""
    srv = celerisd(config(upload_so, store))
    data = os.urandom(3 * MIB + 12345)
    if proto == "http1.1":
        status, body = h1_request(srv.port, "POST", "/up/a", data)
        status2, body2 = h1_request(srv.port, "PUT", "/up/b", data, chunked=True)
    else:
        status, body = h2_request(srv, "POST", "/up/a", data)
        status2, body2 = h2_request(srv, "PUT", "/up/b", data, content_length=False)
    assert status == 201, body
    expect_stored(store, "a", data, body)
    assert body.endswith(b"streamed=1\n"), body
    assert status2 == 201, body2
    expect_stored(store, "b", data, body2)


@pytest.mark.parametrize("proto", ["http1.1", "h2c"])
def test_same_code_reads_a_buffered_body(celerisd, upload_so, store, proto):
    srv = celerisd(config(upload_so, store))
    data = os.urandom(300000)
    if proto == "http1.1":
        status, body = h1_request(srv.port, "POST", "/buffered/c", data)
    else:
        status, body = h2_request(srv, "POST", "/buffered/c", data)
    assert status == 201, body
    expect_stored(store, "c", data, body)
    assert body.endswith(b"streamed=0\n"), body


@pytest.mark.parametrize("proto", ["http1.1", "h2c"])
def test_route_limits(celerisd, upload_so, store, proto):
    """Each route's max_request_body overrides the global 1m: 413 above it,
    announced (content-length) or not (chunked, or HTTP/2 without one);
    below it, served, also above the global limit."""
    srv = celerisd(config(upload_so, store))
    for path, size, want in [("/tiny", 2000, 413), ("/tiny", 1000, 200),
                             ("/small/d", 150000, 413), ("/small/d", 90000, 201),
                             ("/buffered/e", 3 * MIB, 201), ("/buffered/e", 5 * MIB, 413)]:
        data = os.urandom(size)
        for announced in (True, False):
            if proto == "http1.1":
                status, body = h1_request(srv.port, "POST", path, data, chunked=not announced)
            else:
                status, body = h2_request(srv, "POST", path, data, content_length=announced)
            assert status == want, (path, size, announced, status, body[:200])
    # the streamed upload cut by its limit left no file behind (on_close ran)
    assert not (store / "d.part").exists()
    assert (store / "d").stat().st_size == 90000


def test_h2_held_upload_keeps_its_window_shut(celerisd, upload_so, store):
    """The module takes nothing: the client can send the stream's window and
    no more (no WINDOW_UPDATE for it), while another stream on the same
    connection is served (the connection's window is not held). Released, the
    upload completes."""
    srv = celerisd(config(upload_so, store))
    with srv.client(timeout=30 * SCALE, connection_window=16 * MIB) as c:
        sid = c.send_request("POST", "/up/h?hold=1", end_stream=False)
        window = c.conn.local_flow_control_window(sid)
        # a streamed body's window is the one the server's SETTINGS announced
        # (limits.initial_window_size; body_window opens buffered bodies only),
        # and all of it may be sent unasked
        assert window == c.conn.remote_settings.initial_window_size == 65535
        data = os.urandom(window + 1 * MIB)
        for off in range(0, window, 16384):
            c.conn.send_data(sid, data[off:min(off + 16384, window)])
        c._flush()
        deadline = time.monotonic() + 1.0 * SCALE
        while time.monotonic() < deadline:
            try:
                c.pump(time.monotonic() + 0.1)
            except TimeoutError:
                pass  # nothing from the server: what a shut window looks like
        assert c.conn.local_flow_control_window(sid) == 0  # no WINDOW_UPDATE came
        r = c.request("POST", "/up/release", body=b"")
        assert r.status == 200 and r.body.startswith(b"released 1 state=-4"), r.body
        assert c.send_body(sid, data[window:], end_stream=True)
        r = c.response(sid)
        assert r.status == 201, r.body
    expect_stored(store, "h", data, r.body)


def test_h1_held_upload_stops_reading(celerisd, upload_so, store):
    """The module takes nothing: the daemon stops reading the socket, so a
    client that sends 48 MiB gets stuck after what the kernel's buffers hold
    (before: the whole body was read into memory). Released from another
    connection, the upload completes."""
    srv = celerisd(config(upload_so, store))
    size = 48 * MIB
    data = os.urandom(1 * MIB) * 48
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    s.sendall(f"POST /up/g?hold=1 HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
    s.setblocking(False)
    sent = 0
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 1.0 * SCALE and sent < size:
        try:
            n = s.send(data[sent:sent + 65536])
            sent += n
            quiet_since = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    assert sent < 24 * MIB, sent  # stuck: the kernel's buffers, not the body
    status, body = h1_request(srv.port, "GET", "/up/release", b"")
    assert status == 405  # the route takes POST and PUT only
    with srv.client() as c:
        r = c.request("POST", "/up/release", body=b"")
        assert r.status == 200 and r.body.startswith(b"released 1"), r.body
    s.setblocking(True)
    s.settimeout(60 * SCALE)
    s.sendall(data[sent:])
    status, body = read_h1_response(s)
    s.close()
    assert status == 201, body
    expect_stored(store, "g", data, body)


@pytest.mark.parametrize("proto", ["http1.1", "h2c"])
def test_early_answer_drops_the_rest(celerisd, upload_so, store, proto):
    """A module that answers at the first piece: the client gets the answer
    and the rest of the body is dropped (HTTP/2: the connection serves on;
    HTTP/1.1: the connection closes after the answer)."""
    srv = celerisd(config(upload_so, store))
    data = os.urandom(2 * MIB)
    if proto == "http1.1":
        status, body = h1_request(srv.port, "POST", "/up/x?early=1", data)
        assert (status, body) == (400, b"early\n")
    else:
        with srv.client(timeout=30 * SCALE) as c:
            sid = c.send_request("POST", "/up/x?early=1", body=data)
            r = c.response(sid)
            assert (r.status, r.body) == (400, b"early\n")
            assert c.get("/up/release").status == 405
            r = c.request("POST", "/up/y", body=b"after")
            assert r.status == 201, r.body
    # on_close ran (HTTP/2: once the connection ended the stream)
    deadline = time.monotonic() + 10 * SCALE
    while (store / "x.part").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (store / "x.part").exists()


@pytest.mark.parametrize("case", ["answered", "failed"])
def test_h1_answer_at_dispatch_never_reads_the_body_as_requests(celerisd, upload_so, store,
                                                                 case):
    """HTTP/1.1: a streamed-body handler that answers as it is called (a 200
    from /up/release, a 500 when it cannot open its file) leaves the body
    unread. Pipelined answers are finished at dispatch, so the loop goes on
    at once: the body, which here holds a request line, must never be parsed
    as a request, nor the request after it answered over a desynchronised
    stream. The answer comes, then the connection closes."""
    smuggle = "  - path: /smuggled\n    static: { body: \"smuggled\" }\n"
    srv = celerisd(config(upload_so, store, smuggle))
    name = "release" if case == "answered" else "n" * 300  # open(): ENAMETOOLONG
    inner = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n" * 4
    wire = (f"POST /up/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(inner)}\r\n\r\n"
            .encode() + inner + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10 * SCALE) as s:
        s.sendall(wire)
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    want = b"HTTP/1.1 200 " if case == "answered" else b"HTTP/1.1 500 "
    assert got.startswith(want), got
    assert got.count(b"HTTP/1.1 ") == 1, got
    assert b"smuggled" not in got, got
    # the worker serves on
    status, body = h1_request(srv.port, "POST", "/tiny", b"x")
    assert (status, body) == (200, b"ok")


@pytest.mark.parametrize("proto", ["http1.1", "h2c"])
def test_answer_streams_while_the_upload_goes_on(celerisd, upload_so, store, tmp_path, proto):
    """The module starts its answer at the headers and writes each piece of
    the body back as it takes it (holding the upload while the client does
    not read): 8 MiB come back whole and in order."""
    srv = celerisd(config(upload_so, store))
    data = os.urandom(8 * MIB)
    if proto == "http1.1":
        src = tmp_path / "up.bin"
        src.write_bytes(data)
        p = subprocess.run(["curl", "--http1.1", "-sS", "--max-time", str(int(60 * SCALE)),
                            "--data-binary", f"@{src}", "-H", "content-type: x/y",
                            srv.url("/up/e?echo=1")], capture_output=True,
                           timeout=int(60 * SCALE) + 5, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        body = p.stdout
    else:
        with srv.client(timeout=60 * SCALE) as c:
            r = c.request("POST", "/up/e?echo=1", body=data)
            assert r.status == 200
            body = r.body
    assert len(body) == len(data) and body == data


def test_an_end_without_bytes_reaches_a_module_that_holds_back(celerisd, upload_so, store):
    """HTTP/2 gives the end of a body as a call of its own, with no bytes, when
    it comes after the last DATA was taken. Here the last bytes taken make a
    window's worth wait (celeris_resp_write: CELERIS_AGAIN), so the module is
    holding back when the end comes: it must still finish its answer (a
    return of 0 takes an end without bytes). Seen on a loaded CI machine, where
    the 8 MiB echo above came back whole and never ended."""
    srv = celerisd(config(upload_so, store))
    first, rest = os.urandom(65535), os.urandom(65537)
    with srv.client(timeout=20 * SCALE, auto_ack=False) as c:
        sid = c.send_request("POST", "/up/e?echo=1", body=first, end_stream=False)
        r = c.responses[sid]
        c.wait_for(lambda: len(r.body) == 65535, what="the first window of the answer")
        # the client's window is closed: everything from now on waits in
        # celerisd, and only the last byte makes more than 64 KiB wait
        assert c.send_body(sid, rest, end_stream=False)
        c.conn.end_stream(sid)
        c._flush()
        time.sleep(0.2 * SCALE)
        assert not r.done, "answered before the client read it"
        c.open_window()
        r = c.response(sid)
    assert r.status == 200 and r.ended and r.reset is None
    assert r.body == first + rest
