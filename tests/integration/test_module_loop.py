"""Timers and file descriptor watches on the worker's loop (celeris_timer_*,
celeris_watch_*): a module built out of tree with nothing but pkg-config's
flags answers from one-shot and repeating timers and from pipe watches, over
HTTP/1.1 and h2c; a timer or watch never calls back once its request ended;
a request left with nothing to wait for gets a 500, not a hang; and a module
that uses neither needs no libevent (the .pc requires nothing)."""

import os
import socket
import subprocess
import time

import pytest

from support import BINARY, build_module, curl, module_cflags

SCALE = float(os.environ.get("CELERIS_ATTACK_SCALE", "1"))

# One route, what it does chosen by ?do=. Jobs live in a static ring (one
# worker), so one the daemon wrongly called back after on_close is counted
# in `late` instead of being freed memory.
LOOP_SRC = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <celeris/module.h>

typedef struct job {
    celeris_req *req;
    int closed, answered, ticks, n;
    int rfd, wfd;
    uint64_t t0;
    char buf[64];
    size_t len;
    celeris_timer *a, *b, *c;
    celeris_watch *rw, *ww;
} job;

static job ring[64];
static unsigned next_job;
static unsigned late, closes;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static long arg(celeris_req *req, const char *name, long def)
{
    celeris_str v;
    char tmp[32];
    if (celeris_req_query_arg(req, name, &v) != CELERIS_OK || v.len >= sizeof(tmp))
        return def;
    memcpy(tmp, v.ptr, v.len);
    tmp[v.len] = 0;
    return strtol(tmp, NULL, 10);
}

static void on_close(void *p, int finished)
{
    job *j = p;
    (void)finished;
    j->closed = 1;
    closes++;
    if (j->rw)
        celeris_watch_cancel(j->rw);
    if (j->ww)
        celeris_watch_cancel(j->ww);
    if (j->rfd >= 0)
        close(j->rfd);
    if (j->wfd >= 0)
        close(j->wfd);
    j->rfd = j->wfd = -1;
}

static int alive(job *j, celeris_req *req)
{
    if (j->closed || req != j->req) {
        late++;
        return 0;
    }
    return 1;
}

static void once(celeris_req *req, void *p)
{
    job *j = p;
    if (!alive(j, req))
        return;
    celeris_resp_printf(req, 200, "once after %llu ms\n", (unsigned long long)(now_ms() - j->t0));
}

static void tick(celeris_req *req, void *p)
{
    job *j = p;
    if (!alive(j, req))
        return;
    char line[32];
    int n = snprintf(line, sizeof(line), "tick %d\n", ++j->ticks);
    celeris_resp_write(req, line, (size_t)n);
    if (j->ticks == j->n) {
        celeris_timer_cancel(j->a); /* from its own function */
        celeris_resp_end(req);
    }
}

static void answer(celeris_req *req, job *j, const char *what)
{
    if (!j->answered) {
        j->answered = 1;
        celeris_resp_printf(req, 200, "%s\n", what);
    }
}

static void fire_a(celeris_req *req, void *p)
{
    if (alive(p, req))
        answer(req, p, "A");
}

static void fire_b(celeris_req *req, void *p)
{
    if (alive(p, req))
        answer(req, p, "B");
}

static void fire_c(celeris_req *req, void *p)
{
    if (alive(p, req))
        answer(req, p, "C");
}

static void nothing(celeris_req *req, void *p)
{
    (void)alive(p, req);
}

static void readable(celeris_req *req, int fd, unsigned events, void *p)
{
    job *j = p;
    if (!alive(j, req))
        return;
    if (!(events & CELERIS_WATCH_READ) || fd != j->rfd) {
        celeris_resp_send(req, 500, "bad events\n", 11);
        return;
    }
    ssize_t n = read(fd, j->buf + j->len, sizeof(j->buf) - j->len);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n > 0) {
        j->len += (size_t)n;
        return;
    }
    celeris_watch_cancel(j->rw);
    j->rw = NULL;
    close(j->rfd);
    j->rfd = -1;
    celeris_resp_send(req, 200, j->buf, j->len);
}

static void writable(celeris_req *req, int fd, unsigned events, void *p)
{
    job *j = p;
    if (!alive(j, req))
        return;
    if (!(events & CELERIS_WATCH_WRITE) || fd != j->wfd)
        return;
    if (write(fd, "through a pipe\n", 15) != 15)
        return;
    celeris_watch_cancel(j->ww);
    j->ww = NULL;
    close(j->wfd);
    j->wfd = -1;
}

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    celeris_str what;
    if (celeris_req_query_arg(req, "do", &what) != CELERIS_OK)
        return CELERIS_ERROR;
#define IS(s) (what.len == sizeof(s) - 1 && memcmp(what.ptr, s, what.len) == 0)
    if (IS("stats"))
        return celeris_resp_printf(req, 200, "late=%u closes=%u\n", late, closes);
    job *j = &ring[next_job++ % 64];
    memset(j, 0, sizeof(*j));
    j->req = req;
    j->rfd = j->wfd = -1;
    j->t0 = now_ms();
    long ms = arg(req, "ms", 10);
    if (celeris_req_on_close(req, on_close, j) != CELERIS_OK)
        return CELERIS_ERROR;
    if (IS("once") || IS("leave")) {
        if (celeris_timer_start(req, (uint64_t)ms, 0, once, j, NULL) != CELERIS_OK)
            return CELERIS_ERROR;
        if (IS("leave")) { /* and a watch that never becomes ready */
            int fds[2];
            if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
                return CELERIS_ERROR;
            j->rfd = fds[0];
            j->wfd = fds[1];
            if (celeris_watch_start(req, j->rfd, CELERIS_WATCH_READ, readable, j, &j->rw))
                return CELERIS_ERROR;
        }
        return CELERIS_SUSPENDED;
    }
    if (IS("tick")) {
        j->n = (int)arg(req, "n", 3);
        celeris_resp_header(req, "content-type", "text/plain");
        if (celeris_resp_start(req, 200) != CELERIS_OK)
            return CELERIS_ERROR;
        if (celeris_timer_start(req, (uint64_t)ms, CELERIS_TIMER_REPEAT, tick, j, &j->a))
            return CELERIS_ERROR;
        return CELERIS_OK;
    }
    if (IS("cancel")) {
        if (celeris_timer_start(req, 5, 0, fire_a, j, &j->a) ||
            celeris_timer_start(req, 400, 0, fire_b, j, &j->b) ||
            celeris_timer_start(req, 60000, 0, fire_c, j, &j->c))
            return CELERIS_ERROR;
        celeris_timer_cancel(j->a);
        celeris_timer_cancel(j->a); /* twice is harmless */
        celeris_timer_restart(j->c, 30);
        return CELERIS_SUSPENDED;
    }
    if (IS("idle")) {
        if (celeris_timer_start(req, 5, 0, nothing, j, NULL))
            return CELERIS_ERROR;
        return CELERIS_SUSPENDED;
    }
    if (IS("pipe")) {
        int fds[2];
        if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
            return CELERIS_ERROR;
        j->rfd = fds[0];
        j->wfd = fds[1];
        if (celeris_watch_start(req, j->rfd, CELERIS_WATCH_READ, readable, j, &j->rw) ||
            celeris_watch_start(req, j->wfd, 0, writable, j, &j->ww))
            return CELERIS_ERROR;
        /* paused, then switched on: celeris_watch_set */
        if (celeris_watch_set(j->ww, CELERIS_WATCH_WRITE))
            return CELERIS_ERROR;
        return CELERIS_SUSPENDED;
    }
    if (IS("refused")) {
        int bad = celeris_timer_start(req, 0, CELERIS_TIMER_REPEAT, once, j, NULL);
        int bad2 = celeris_watch_start(req, -1, CELERIS_WATCH_READ, readable, j, NULL);
        return celeris_resp_printf(req, 200, "%d %d\n", bad, bad2);
    }
    return CELERIS_ERROR;
}

CELERIS_MODULE(loop) = { CELERIS_MODULE_HEADER, .name = "loop", .handle = handle };
"""


@pytest.fixture(scope="module")
def loop_so(tmp_path_factory):
    d = tmp_path_factory.mktemp("loopmod")
    src = d / "loop.c"
    src.write_text(LOOP_SRC)
    return build_module(src, d / "loop.so")


@pytest.fixture
def srv(celerisd, loop_so):
    return celerisd(f"""workers: 1
routes:
  - path: /l
    module: {{ path: {loop_so} }}
""")


def h1(srv, path, timeout=20):
    return subprocess.run(["curl", "--http1.1", "-sS", "-w", "\n%{http_code}", "--max-time",
                           str(timeout), srv.url(path)], capture_output=True, timeout=timeout + 5,
                          stdin=subprocess.DEVNULL)


def h2(srv, path, timeout=20):
    return curl(["-w", "\n%{http_code}", srv.url(path)], timeout=timeout)


def split(p):
    assert p.returncode == 0, p.stderr
    body, _, code = p.stdout.rpartition(b"\n")
    return int(code), body


@pytest.mark.parametrize("client", [h1, h2], ids=["http1.1", "h2c"])
def test_timers_answer_without_token(srv, client):
    code, body = split(client(srv, "/l?do=once&ms=80"))
    assert code == 200, body
    assert body.startswith(b"once after "), body
    assert int(body.split()[2]) >= 80, body  # never early
    code, body = split(client(srv, "/l?do=tick&ms=20&n=4"))
    assert (code, body) == (200, b"tick 1\ntick 2\ntick 3\ntick 4\n")
    # A cancelled (twice), C restarted from 60 s to 30 ms and answering before B
    code, body = split(client(srv, "/l?do=cancel"))
    assert (code, body) == (200, b"C\n")
    code, body = split(client(srv, "/l?do=pipe"))
    assert (code, body) == (200, b"through a pipe\n")
    code, body = split(client(srv, "/l?do=refused"))
    assert (code, body) == (200, b"-1 -1\n")  # CELERIS_ERROR for repeat-0 and fd -1
    code, _ = split(client(srv, "/l?do=stats"))
    assert code == 200


@pytest.mark.parametrize("client", [h1, h2], ids=["http1.1", "h2c"])
def test_nothing_left_to_wait_for_is_a_500(srv, client):
    code, _ = split(client(srv, "/l?do=idle"))
    assert code == 500
    assert "function left the request unanswered with nothing to wait for" in srv.stderr_text()


def test_no_callback_after_the_request_ended(srv):
    """Clients leave while a timer and a pipe watch are pending (HTTP/1.1:
    the connection closes; HTTP/2: RST_STREAM): on_close runs, and neither
    calls back afterwards, though the timer's time passes."""
    ms = 300
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(f"GET /l?do=leave&ms={ms} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            time.sleep(0.05)
    with srv.client() as c:
        sids = [c.send_request("GET", f"/l?do=leave&ms={ms}") for _ in range(3)]
        time.sleep(0.05)
        for sid in sids:
            c.reset_stream(sid)
        # the same connection goes on serving
        assert c.get("/l?do=once&ms=1").status == 200
    time.sleep(ms / 1000 * 2 + 0.3 * SCALE)
    code, body = split(h1(srv, "/l?do=stats"))
    assert code == 200
    late, closes = [int(kv.split(b"=")[1]) for kv in body.split()]
    assert late == 0, body
    assert closes >= 7, body  # six that left, one answered (and this one: not yet)
    assert srv.proc.poll() is None


def test_a_module_without_libevent_needs_none(loop_so):
    """The .pc requires nothing, names the libevent package for those who use
    the raw base, and the module built with its flags alone links no libevent."""
    pc_dir = os.path.join(os.path.dirname(os.path.realpath(BINARY)), "meson-private")
    env = dict(os.environ, PKG_CONFIG_PATH=pc_dir)

    def pc(*args):
        p = subprocess.run(["pkg-config", *args, "celeris-module"], env=env, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    assert pc("--print-requires") == ""
    assert "event" not in pc("--libs") and "event" not in " ".join(module_cflags())
    assert pc("--variable=libevent") == "libevent_core"
    needed = subprocess.run(["readelf", "-d", str(loop_so)], capture_output=True, text=True,
                            timeout=30).stdout
    assert "NEEDED" in needed and "libevent" not in needed, needed
