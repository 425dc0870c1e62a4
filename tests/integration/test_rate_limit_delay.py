"""rate_limit without nodelay (README: Middleware, rate_limit) against the real
daemon over HTTP/1.1 and h2c: requests within the burst are held and leave at
the rate, past it refused at once; `delay: N` serves N at once; a held request
whose client goes away, and one held across a reload; config errors with
file:line:column.

Timing checks are lower bounds only (a loaded machine delays answers, it does
not bring them closer than the daemon spaced them, beyond a little jitter)."""

import selectors
import signal
import socket
import time

import pytest

from support import TIME_SCALE, expect_config_error, run_celerisd

CONFIG = """workers: 1
routes:
  - path: /d
    middleware: [ { rate_limit: { key: header.x-k, rate: 10/s, burst: 5, nodelay: false } } ]
    static: { body: "d" }
  - path: /dl
    middleware: [ { rate_limit: { key: header.x-k, rate: 1/s, burst: 2, delay: 1 } } ]
    static: { body: "dl" }
  - path: /nd
    middleware: [ { rate_limit: { key: header.x-k, rate: 10/s, burst: 5 } } ]
    static: { body: "nd" }
"""

INTERVAL = 0.1  # rate 10/s
INTERVAL = 0.1  # rate 10/s: the daemon releases held requests 100 ms apart
# How early an answer may seem against that schedule, as the client sees it:
# the daemon releases each held request at its slot (first + k * 100 ms), so a
# late answer makes the next gap short (seen: 137, 132, 31, 100 ms on a loaded
# CI machine). Only the first answer being late makes a later one seem early.
SLACK = 0.05
WAIT = 10 * TIME_SCALE


@pytest.fixture(scope="module")
def srv(factory):
    return factory(CONFIG)


def h2_burst(c, path, key, n, on_first=None, each=None):
    """N concurrent requests with x-k: KEY on client C; returns [(status,
    headers, monotonic time the answer ended)] in request order. ON_FIRST
    runs once the first answer is in, EACH after every read."""
    sids = [c.send_request("GET", path, [("x-k", key)]) for _ in range(n)]
    done = {}
    deadline = time.monotonic() + WAIT
    while len(done) < n:
        assert c.pump(deadline), "server closed the connection"
        t = time.monotonic()
        for s in sids:
            if s not in done and c.responses[s].done:
                done[s] = t
                if on_first and len(done) == 1:
                    on_first()
        if each:
            each()
    return [(c.responses[s].status, c.responses[s].headers, done[s]) for s in sids]


def h1_burst(port, path, key, n):
    """The same over N HTTP/1.1 connections, one request each."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        socks.append(s)
    for s in socks:
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nx-k: {key}\r\n"
                  f"connection: close\r\n\r\n".encode())
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    out = {}
    deadline = time.monotonic() + WAIT
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"{n - len(out)} answers missing"
        for k, _ in sel.select(left):
            data = k.fileobj.recv(65536)
            if data:
                k.data.extend(data)
                continue
            t = time.monotonic()
            sel.unregister(k.fileobj)
            k.fileobj.close()
            head = bytes(k.data).split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            fields = [tuple(x.strip() for x in line.split(":", 1)) for line in head[1:]]
            out[k.fileobj] = (int(head[0].split()[1]), [(a.lower(), b) for a, b in fields], t)
    return [out[s] for s in socks]


def check_spaced(results, n_ok, n_refused):
    ok = sorted(t for st, _, t in results if st == 200)
    refused = [h for st, h, _ in results if st == 429]
    assert len(ok) == n_ok and len(refused) == n_refused, [(st, t) for st, _, t in results]
    for h in refused:
        names = dict(h)
        assert int(names["retry-after"]) >= 1, h
        assert names["ratelimit-remaining"] == "0", h
    gaps = [b - a for a, b in zip(ok, ok[1:])]
    since_first = [t - ok[0] for t in ok]
    assert all(s >= k * INTERVAL - SLACK for k, s in enumerate(since_first)), gaps
    return gaps


def test_h2_held_within_burst_leave_at_the_rate(srv):
    """rate 10/s, burst 5, nodelay: false: 6 answered 200, one per 100 ms;
    the 7th and 8th refused."""
    with srv.client() as c:
        check_spaced(h2_burst(c, "/d", "h2-spacing", 8), 6, 2)


def test_h1_held_within_burst_leave_at_the_rate(srv):
    check_spaced(h1_burst(srv.port, "/d", "h1-spacing", 7), 6, 1)


def test_nodelay_default_serves_the_burst_at_once(srv):
    """The default stays nodelay: the 6 are not held (all answered before the
    time the held ones would need); the 7th refused."""
    with srv.client() as c:
        start = time.monotonic()
        res = h2_burst(c, "/nd", "nodelay", 7)
    assert sorted(st for st, _, _ in res) == [200] * 6 + [429]
    # held, the last would end 500 ms after the first arrived
    assert max(t for _, _, t in res) - start < 5 * INTERVAL * TIME_SCALE, res


def test_delay_serves_that_many_at_once(srv):
    """rate 1/s, burst 2, delay 1: two at once, the third a second later."""
    with srv.client() as c:
        res = h2_burst(c, "/dl", "delay", 4)
    ok = sorted(t for st, _, t in res if st == 200)
    assert len(ok) == 3 and [st for st, _, _ in res].count(429) == 1, res
    assert ok[2] - ok[1] >= 0.6, ok
    # the second was not held a second (its turn would be 1 s after the first)
    assert ok[1] - ok[0] < 0.5 * TIME_SCALE, ok


def test_h2_held_stream_reset_and_connection_closed(srv):
    """A held stream the client resets is dropped: the others on the
    connection still leave at the rate; a connection closed with held streams
    leaves nothing behind (the daemon serves on, and exits cleanly at the
    end, which the fixture checks: an ASan build aborts on a use after
    free)."""
    with srv.client() as c:
        sids = [c.send_request("GET", "/d", [("x-k", "reset")]) for _ in range(4)]
        c.reset_stream(sids[2])
        deadline = time.monotonic() + WAIT
        want = [sids[0], sids[1], sids[3]]
        c.wait_for(lambda: all(c.responses[s].done for s in want), WAIT, "held streams")
        assert [c.responses[s].status for s in want] == [200, 200, 200]
        assert c.responses[sids[2]].status is None
        assert c.get("/d", [("x-k", "other")]).status == 200
        assert time.monotonic() < deadline
    c = srv.client()
    for _ in range(5):
        c.send_request("GET", "/d", [("x-k", "gone")])
    c.close()  # with four of them held
    time.sleep(6 * INTERVAL)  # past their turns: no timer may fire for them
    with srv.client() as c:
        assert c.get("/d", [("x-k", "after")]).status == 200


def test_h1_held_connection_closed(srv):
    s0 = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
    held = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
        held.append(s)
    for s in [s0] + held:
        s.sendall(b"GET /d HTTP/1.1\r\nhost: x\r\nx-k: h1gone\r\n\r\n")
    assert s0.recv(65536).startswith(b"HTTP/1.1 200")
    for s in held:
        s.close()
    s0.close()
    time.sleep(4 * INTERVAL)
    st = h1_burst(srv.port, "/d", "h1-after", 1)
    assert st[0][0] == 200


def test_reload_keeps_held_requests(factory):
    """A reload while requests are held: every one is answered, at the rate."""
    srv = factory(CONFIG.replace("rate: 10/s, burst: 5, nodelay: false",
                                 "rate: 4/s, burst: 5, nodelay: false")
                  .replace('body: "d"', 'body: "d", headers: { x-gen: one }'))
    seen = {}

    def reload():
        srv.config_path.write_text(srv.config_path.read_text().replace("x-gen: one", "x-gen: two"))
        srv.send_signal(signal.SIGHUP)

    def note_reload():
        if "reloaded" not in seen and "generation 2 is serving" in srv.stderr_text():
            seen["reloaded"] = time.monotonic()

    with srv.client() as c:
        # held for up to 1.25 s: the reload is done while some still wait
        res = h2_burst(c, "/d", "reload", 6, on_first=reload, each=note_reload)
        check_spaced(res, 6, 0)
        deadline = time.monotonic() + WAIT
        while "reloaded" not in seen:
            assert time.monotonic() < deadline, srv.stderr_text()
            time.sleep(0.02)
            note_reload()
        after = c.get("/d", [("x-k", "reload")])
    assert seen["reloaded"] < max(t for _, _, t in res), "the reload came after every answer"
    # held ones answered by the generation they came on; the new one serves next
    assert [dict(h).get("x-gen") for _, h, _ in res] == ["one"] * 6
    assert after.status == 200 and after.header("x-gen") == "two"


def test_config_accepts_nodelay_false_and_delay(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("middleware:\n"
                    "  - rate_limit: {rate: 1/s, burst: 3, nodelay: false}\n"
                    "  - rate_limit: {rate: 1/s, burst: 3, delay: 2}\n"
                    "  - rate_limit: {rate: 1/s, burst: 3, nodelay: false, delay: 3}\n"
                    "routes:\n  - path: /\n    static: { body: x }\n")
    p = run_celerisd(["-t", "-c", str(path)])
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("line2,at,words", [
    ("  - rate_limit: {rate: 1/s, nodelay: maybe}\n", "maybe",
     ["nodelay must be true or false"]),
    ("  - rate_limit: {rate: 1/s, burst: 2, delay: 3}\n", "3}",
     ["delay (3) must not exceed burst (2)"]),
    ("  - rate_limit: {rate: 1/s, delay: -1}\n", "-1", ["delay"]),
    ("  - rate_limit: {rate: 1/s, burst: 4, nodelay: true, delay: 1}\n", "true",
     ["with delay, leave nodelay out"]),
])
def test_config_errors(tmp_path, line2, at, words):
    path = tmp_path / "bad.yaml"
    path.write_text("middleware:\n" + line2)
    expect_config_error(path, 2, line2.index(at) + 1, words)


@pytest.fixture(scope="module")
def upload_so(tmp_path_factory):
    from test_module_body_stream import UPLOAD_SRC
    from support import build_module
    d = tmp_path_factory.mktemp("upmod")
    src = d / "upload.c"
    src.write_text(UPLOAD_SRC.replace("#define _GNU_SOURCE\n", "#define _GNU_SOURCE\n"
                                      "#define OPENSSL_API_COMPAT 0x10100000L\n"))
    return build_module(src, d / "upload.so", "-Wno-deprecated-declarations", "-ljansson",
                        "-lcrypto")


@pytest.mark.parametrize("proto", ["http1.1", "h2c"])
def test_held_streamed_upload(factory, upload_so, tmp_path, proto):
    """A module taking its body as a stream, behind a delaying rate_limit: the
    body that comes while the request is held waits (flow control), and
    reaches the module whole once its turn comes."""
    import hashlib
    import os
    from test_module_body_stream import h1_request
    store = tmp_path / "store"
    store.mkdir()
    srv = factory(f"""workers: 1
routes:
  - path: /up/:name
    methods: [POST]
    max_request_body: 8m
    middleware: [ {{ rate_limit: {{ key: client_ip, rate: 2/s, burst: 3, nodelay: false }} }} ]
    module: {{ path: {upload_so}, config: {{ dir: "{store}" }} }}
""")
    data = os.urandom(1024 * 1024 + 7)
    ends = []
    first = time.monotonic()
    for name in ("a", "b"):
        if proto == "http1.1":
            status, body = h1_request(srv.port, "POST", f"/up/{name}", data)
        else:
            with srv.client(timeout=WAIT) as c:
                r = c.response(c.send_request("POST", f"/up/{name}", body=data,
                                              headers=[("content-length", str(len(data)))]))
                status, body = r.status, r.body
        ends.append(time.monotonic() - first)
        assert status == 201, body
        assert body.startswith(f"stored {len(data)} {hashlib.sha256(data).hexdigest()}".encode())
        assert (store / name).read_bytes() == data
    # the second's turn is 500 ms after the first came, however fast it came
    assert ends[1] >= 0.4, ends


def test_timeout_answers_a_held_request(factory):
    """`timeout` before the rate_limit bounds the hold too: a request held
    past it gets 504 and its hold is dropped (no timer fires for it)."""
    srv = factory("""workers: 1
routes:
  - path: /t
    middleware:
      - timeout: 300ms
      - rate_limit: { key: header.x-k, rate: 1/s, burst: 3, nodelay: false }
    static: { body: "t" }
""")
    with srv.client() as c:
        res = h2_burst(c, "/t", "a", 3)
    assert [st for st, _, _ in res] == [200, 504, 504], res
    time.sleep(2.2)  # past the turns they had (still taken from a's bucket, as in nginx)
    with srv.client() as c:
        assert c.get("/t", [("x-k", "b")]).status == 200


def test_shutdown_with_held_requests(factory):
    """SIGTERM while requests are held longer than shutdown_timeout: the
    daemon cuts them and exits 0 (their timers go with them)."""
    srv = factory("""workers: 1
shutdown_timeout: 500ms
routes:
  - path: /s
    middleware: [ { rate_limit: { key: client_ip, rate: 1/s, burst: 5, nodelay: false } } ]
    static: { body: "s" }
""")
    c = srv.client()
    sids = [c.send_request("GET", "/s") for _ in range(4)]
    c.wait_for(lambda: c.responses[sids[0]].done, WAIT, "the first answer")
    rc, _ = srv.stop()
    c.close()
    assert rc == 0, srv.stderr_text()[-3000:]
    assert c.responses[sids[3]].status is None  # held 3 s: cut, not answered
