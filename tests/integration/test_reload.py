"""SIGHUP reload, the systemd notify protocol, socket activation and the unit
file: new generations serve new requests, requests in flight finish on the old
one, a bad config changes nothing but a log line."""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from support import (BINARY, REPO, TIME_SCALE, H2Client, curl, free_port, load_n, run_h2load,
                     write_atomic)


def body_of(srv, path, port=None):
    p = curl([srv.url(path, port=port)])
    assert p.returncode == 0, p.stderr
    return p.stdout


def reload_and_wait(srv, generation):
    """SIGHUP, then wait until the log says GENERATION is serving (or a failure)."""
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = srv.stderr_text()
        if f"generation {generation} is serving" in text:
            return True
        if text.count("reload failed") >= generation:  # caller counts failures itself
            return False
        time.sleep(0.02)
    pytest.fail(f"no reload outcome for generation {generation}; stderr:\n{srv.stderr_text()}")


def config(body, port, extra=""):
    return f"""listen: "127.0.0.1:{port}"
workers: 1
routes:
  - path: /v
    static: {{ body: "{body}" }}
{extra}"""


def test_reload_switches_routes(celerisd):
    srv = celerisd(config("one", "{port}"))
    assert body_of(srv, "/v") == b"one"
    assert curl(["-o", "/dev/null", "-w", "%{http_code}", srv.url("/new")]).stdout == b"404"
    write_atomic(srv.config_path, config("two", srv.port, """  - path: /new
    json: { template: { ok: true } }
"""))
    assert reload_and_wait(srv, 2)
    assert body_of(srv, "/v") == b"two"
    assert body_of(srv, "/new") == b'{"ok":true}'


@pytest.mark.parametrize("bad,line,col,word", [
    ("routes: [\n", 2, 1, "syntax"),
    ("routes:\n  - path: /v\n    json: { template: { a: \"{{param.x}}\" } }\n", 3, 28, "param"),
    ("routes:\n  - path: /v\n    static: { file: /nonexistent/x }\n", 3, 21, "cannot open"),
    ("routes:\n  - path: /v\n    statik: { body: x }\n", 3, 5, "statik"),
], ids=["yaml", "template", "missing-file", "unknown-key"])
def test_bad_reload_keeps_old_generation(celerisd, bad, line, col, word):
    srv = celerisd(config("old", "{port}"))
    good = srv.config_path.read_text()
    write_atomic(srv.config_path, f'listen: "127.0.0.1:{srv.port}"\n' + bad)
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload failed" not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.02)
    # the header line adds one line in front of BAD
    loc = f"{srv.config_path}:{line + 1}:{col}:"
    err = [ln for ln in srv.stderr_text().splitlines() if "reload failed" in ln][0]
    assert loc in err and word in err.lower(), err
    assert body_of(srv, "/v") == b"old"
    # a later good reload works
    write_atomic(srv.config_path, good.replace("old", "new"))
    assert reload_and_wait(srv, 2)
    assert body_of(srv, "/v") == b"new"


def test_stream_in_flight_finishes_on_old_generation(celerisd, tmp_path):
    size = 1 << 20
    a = tmp_path / "a.bin"
    b = tmp_path / "b.bin"
    a.write_bytes(b"a" * size)
    b.write_bytes(b"b" * size)
    text = """listen: "127.0.0.1:{port}"
routes:
  - path: /big
    static: {{ file: {f} }}
"""
    srv = celerisd(text.format(port="{port}", f=a))
    with srv.client(auto_ack=False, timeout=30) as c:
        sid = c.send_request("GET", "/big")
        c.wait_for(lambda: c.unacked_bytes() >= 65535, timeout=10, what="first window")
        write_atomic(srv.config_path, text.format(port=srv.port, f=b))
        assert reload_and_wait(srv, 2)
        # a new stream on the same connection sees the new generation...
        c.open_window()
        r2 = c.response(c.send_request("GET", "/big"), timeout=60)
        r1 = c.response(sid, timeout=60)
    # ...while the one that began before the reload finishes on the old one
    assert r1.body == b"a" * size
    assert r2.body == b"b" * size


def test_reload_adds_and_removes_listeners(celerisd):
    srv = celerisd(config("x", "{port}"))
    port2 = free_port()
    with srv.client() as held:
        assert held.get("/v").body == b"x"
        write_atomic(srv.config_path, f"""listen: ["127.0.0.1:{srv.port}", "127.0.0.1:{port2}"]
workers: 2
routes:
  - path: /v
    static: {{ body: "y" }}
""")
        assert reload_and_wait(srv, 2)
        assert body_of(srv, "/v", port=port2) == b"y"
        assert body_of(srv, "/v") == b"y"
        # the connection made before the reload is still served
        assert held.get("/v").body == b"y"
        write_atomic(srv.config_path, config("z", port2))
        assert reload_and_wait(srv, 3)
        assert body_of(srv, "/v", port=port2) == b"z"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        # the old listener is gone, but its established connection lives on
        assert held.get("/v").body == b"z"


def gen_config(port, g, files):
    """Generation G's config: /v answers `gen-G`, /big is FILES[G] (1 MiB of
    one letter per generation), so an answer names the generation that served it."""
    return f"""listen: "127.0.0.1:{port}"
workers: 2
routes:
  - path: /v
    static: {{ body: "gen-{g}" }}
  - path: /big
    static: {{ file: {files[g]} }}
  - path: /status
    status: {{}}
"""


class Checker(threading.Thread):
    """A client that asks /v over and over, one request at a time, on a new
    connection every 10 requests (so that both workers serve it), and checks
    each answer against the reloads around it: a request started after the
    reload-done signal of generation C (CONFIRMED[0] = C when it starts) and
    answered before the SIGHUP of generation S+1 (SENT[0] = S once the answer
    is in) must come from a generation in C..S; with C == S, exactly C."""

    def __init__(self, port, sent, confirmed, stop):
        super().__init__(daemon=True)
        self.port, self.sent, self.confirmed, self.stop = port, sent, confirmed, stop
        self.exact = {}      # generation -> answers checked against it alone
        self.problems = []
        self.requests = 0

    def run(self):
        client = None
        try:
            while not self.stop.is_set():
                if self.requests % 10 == 0:
                    if client:
                        client.close()
                    client = H2Client("127.0.0.1", self.port, timeout=30)
                lo = self.confirmed[0]
                r = client.get("/v")
                hi = self.sent[0]
                self.requests += 1
                m = re.fullmatch(rb"gen-(\d+)", r.body)
                if r.status != 200 or not m or not lo <= int(m.group(1)) <= hi:
                    self.problems.append(f"generations {lo}..{hi} allowed, got {r!r}")
                    return
                if lo == hi:
                    self.exact[lo] = self.exact.get(lo, 0) + 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.problems.append(f"after {self.requests} requests: {e!r}")
        finally:
            if client:
                client.close()


def test_reload_under_load(celerisd, tmp_path, monkeypatch):
    """Five reloads while h2load and four body-checking clients keep both
    workers busy. Each generation G answers /v with `gen-G` and /big with its
    own file, so every answer says which generation served it:
    - a /big stream opened before the SIGHUP (held by flow control across the
      reload) finishes with the old generation's file, whole;
    - the reload-done signal is READY=1 on the notify socket, sent by the PID
      the test started (the daemon reloads in place), after `generation G is
      serving` in the log; /status then names generation G;
    - every request started after that signal gets `gen-G` (the clients check
      each one; see Checker), a new stream on the held connection included;
    - nothing fails: no h2load failure or error, only 2xx, no reload failure.
    A SIGHUP that changes nothing fails the first wait for RELOADING=1; a
    reload that the workers never pick up fails the body checks; a stream
    switched to the new generation mid-flight would end with the wrong file."""
    reloads = 5
    letters = {g: bytes([ord("a") + g]) * (1 << 20) for g in range(1, reloads + 2)}
    files = {}
    for g, data in letters.items():
        files[g] = tmp_path / f"big-{g}.bin"
        files[g].write_bytes(data)
    ns = NotifySocket(tmp_path / "notify.sock", creds=True)
    monkeypatch.setenv("NOTIFY_SOCKET", ns.path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    sent, confirmed = [1], [1]  # generation last signalled / last confirmed serving
    stop = threading.Event()
    checkers, h2load_runs, h2load_failures = [], [], []
    load = None
    try:
        srv = celerisd(gen_config("{port}", 1, files))
        ready, pid = ns.next_with_pid()
        assert ready.splitlines()[0] == "READY=1" and pid == srv.pid, (ready, pid, srv.pid)
        url = srv.url("/v")

        def h2load_loop():
            # back-to-back bounded runs until the reloads are done: load on
            # both workers during every reload, however slow the machine
            try:
                while not stop.is_set():
                    h2load_runs.append(run_h2load("-n", max(1000, load_n() // 20), "-c", 8,
                                                  "-m", 10, "-t", 1, url, timeout=300))
            except BaseException as e:  # noqa: BLE001 - reported by the test
                h2load_failures.append(repr(e))

        load = threading.Thread(target=h2load_loop, daemon=True)
        load.start()
        checkers = [Checker(srv.port, sent, confirmed, stop) for _ in range(4)]
        for c in checkers:
            c.start()

        def wait_exact(g, n=20):
            """Until every checker has N answers checked as generation G's alone."""
            deadline = time.monotonic() + 60 * TIME_SCALE
            while not all(c.exact.get(g, 0) >= n or not c.is_alive() for c in checkers):
                assert time.monotonic() < deadline, [(c.exact, c.problems) for c in checkers]
                time.sleep(0.01)
            problems = [p for c in checkers for p in c.problems]
            assert not problems, problems

        for g in range(2, reloads + 2):
            wait_exact(g - 1)
            with H2Client("127.0.0.1", srv.port, auto_ack=False, timeout=60) as held:
                sid = held.send_request("GET", "/big")
                held.wait_for(lambda: held.unacked_bytes() >= 65535, timeout=10,
                              what="first window of /big")
                write_atomic(srv.config_path, gen_config(srv.port, g, files))
                sent[0] = g
                srv.send_signal(signal.SIGHUP)
                reloading, pid = ns.next_with_pid()
                assert reloading.startswith("RELOADING=1\n") and pid == srv.pid, (reloading, pid)
                done, pid = ns.next_with_pid()
                assert done == "READY=1", (done, srv.stderr_text())
                assert pid == srv.pid and srv.alive(), (pid, srv.pid)
                assert f"generation {g} is serving" in srv.stderr_text(), srv.stderr_text()
                confirmed[0] = g
                status = json.loads(body_of(srv, "/status"))
                assert status["generation"] == g, status
                # a new stream on the held connection (its window opened so
                # that both can be sent) gets the new generation...
                held.open_window()
                assert held.get("/v").body == f"gen-{g}".encode()
                # ...while the stream opened before the SIGHUP ends on the old one
                r = held.response(sid)
                assert r.status == 200 and r.body == letters[g - 1], (r.status, len(r.body))
        wait_exact(reloads + 1)
    finally:
        stop.set()
        for c in checkers:
            c.join(timeout=60)
        if load:
            load.join(timeout=330)
        ns.close()
    assert not h2load_failures, h2load_failures
    assert h2load_runs
    for n, out in h2load_runs:
        assert (n["failed"], n["errored"], n["timeout"]) == (0, 0, 0), out
        assert n["succeeded"] == n["done"] == n["total"] == n["2xx"], out
    assert "reload failed" not in srv.stderr_text()
    assert srv.alive()


def vm_rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_many_reloads_do_not_leak(celerisd, monkeypatch):
    # Under AddressSanitizer freed memory sits in a quarantine that RSS would
    # count; keep it small so RSS still says something (LeakSanitizer checks
    # the rest at exit).
    if "ASAN_OPTIONS" in os.environ:
        monkeypatch.setenv("ASAN_OPTIONS", os.environ["ASAN_OPTIONS"] + ":quarantine_size_mb=1")
    srv = celerisd(config("one", "{port}", """  - path: /j/:id
    json: { template: { id: "{{param.id}}", list: [1, 2, 3] } }
"""))
    a = srv.config_path.read_text()
    b = a.replace("one", "two")

    def cycle(n, first_generation):
        for i in range(n):
            write_atomic(srv.config_path, b if i % 2 == 0 else a)
            assert reload_and_wait(srv, first_generation + i)
            if i % 20 == 0:
                assert body_of(srv, "/j/7") == b'{"id":"7","list":[1,2,3]}'

    cycle(20, 2)  # warm up allocator caches before the baseline
    before = vm_rss_kib(srv.pid)
    cycle(200, 22)
    after = vm_rss_kib(srv.pid)
    # a leak of one generation per reload would be ~200 x (router + handlers)
    assert after - before < max(2048, before // 10), (before, after)


class NotifySocket:
    """A unix datagram socket playing systemd's side of sd_notify. CREDS: the
    kernel tells the sender's PID of each message (SO_PASSCRED)."""

    def __init__(self, path, creds=False):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if creds:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)

    def next_with_pid(self, skip_status=True):
        """The next message and the PID that sent it (None without CREDS),
        skipping the periodic STATUS-only ones. Raises TimeoutError when none
        came in 10 s (the STATUS lines, once a second, do not extend it)."""
        deadline = time.monotonic() + 10 * TIME_SCALE
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message but STATUS= on the notify socket")
            self.sock.settimeout(left)
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except TimeoutError:
                raise TimeoutError("no message but STATUS= on the notify socket") from None
            msg = data.decode()
            if skip_status and all(ln.startswith("STATUS=") for ln in msg.splitlines()):
                continue
            pid = None
            for level, kind, cred in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cred[:12])[0]
            return msg, pid

    def next(self, skip_status=True):
        """The next message, skipping the periodic STATUS-only ones."""
        return self.next_with_pid(skip_status)[0]

    def close(self):
        self.sock.close()


def test_notify_protocol_sequence(celerisd, tmp_path, monkeypatch):
    ns = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", ns.path)
    try:
        srv = celerisd(config("one", "{port}"))
        ready = ns.next()
        assert ready.splitlines()[0] == "READY=1", ready
        assert f"MAINPID={srv.pid}" in ready.splitlines(), ready
        status = ns.next(skip_status=False)
        assert re.match(r"STATUS=generation 1, 1 workers, \d+ connections", status), status

        good = srv.config_path.read_text()
        write_atomic(srv.config_path, good.replace("one", "two"))
        srv.send_signal(signal.SIGHUP)
        reloading = ns.next()
        assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reloading), reloading
        usec = int(reloading.split("=")[-1])
        assert abs(usec / 1e6 - time.monotonic()) < 60
        assert ns.next() == "READY=1"
        status = ns.next(skip_status=False)
        assert status.startswith("STATUS=generation 2,"), status

        write_atomic(srv.config_path, "routes: 5\n")
        srv.send_signal(signal.SIGHUP)
        assert ns.next().startswith("RELOADING=1\n")
        assert ns.next() == "READY=1\nERRNO=22"
        status = ns.next(skip_status=False)
        assert status.startswith("STATUS=generation 2,"), status
        assert f"last reload failed: {srv.config_path}:1:9:" in status, status

        rc, _ = srv.stop()
        assert rc == 0
        stopping = ns.next()
        assert stopping.startswith("STOPPING=1\n"), stopping
    finally:
        ns.close()


def test_watchdog_is_fed(celerisd, tmp_path, monkeypatch):
    ns = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", ns.path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)  # unset: any pid may feed it
    try:
        celerisd(config("one", "{port}"))
        seen = 0
        deadline = time.monotonic() + 8
        while seen < 3 and time.monotonic() < deadline:
            if ns.next() == "WATCHDOG=1":
                seen += 1
        assert seen == 3
    finally:
        ns.close()


def test_without_notify_socket_nothing_changes(celerisd, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    srv = celerisd(config("one", "{port}"))
    assert body_of(srv, "/v") == b"one"


def test_socket_activation(tmp_path):
    assert shutil.which("systemd-socket-activate"), "needs systemd (scripts/deps test)"
    port = free_port()
    cfg = tmp_path / "sa.yaml"
    cfg.write_text(config("activated", port).replace("workers: 1", "workers: 2"))
    err = tmp_path / "sa.stderr"
    with open(err, "wb") as fe:
        proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}",
                                 BINARY, "-c", str(cfg)], stderr=fe, stdout=fe,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        # the socket exists before celerisd runs: the first connection starts it
        deadline = time.monotonic() + 10
        while True:
            p = curl([f"http://127.0.0.1:{port}/v"], timeout=5)
            if p.returncode == 0:
                break
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)
        assert p.stdout == b"activated"
        for _ in range(20):
            assert curl([f"http://127.0.0.1:{port}/v"]).stdout == b"activated"
        assert "socket from systemd" in err.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
    assert rc == 0, err.read_text()


def test_systemd_unit_verifies(tmp_path):
    assert shutil.which("systemd-analyze"), "needs systemd (scripts/deps test)"
    unit = (REPO / "packaging" / "celerisd.service").read_text()
    for key in ("Type=notify", "ExecReload=", "NoNewPrivileges=yes", "ProtectSystem=strict",
                "ProtectHome=yes", "PrivateTmp=yes", "LimitNOFILE=", "Restart=on-failure"):
        assert key in unit, key
    # verify checks that the binaries and man pages exist: point it at the
    # binary built here, and leave the man pages to the package test
    local = unit.replace("/usr/sbin/celerisd", BINARY)
    local = "\n".join(ln for ln in local.splitlines() if not ln.startswith("Documentation=man:"))
    path = tmp_path / "celerisd.service"
    path.write_text(local)
    p = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                       text=True, timeout=60)
    problems = [ln for ln in p.stderr.splitlines() if "celerisd.service" in ln]
    assert p.returncode == 0 and not problems, p.stderr


def test_reload_changes_workers(celerisd):
    """A SIGHUP that changes `workers` (1 -> 3 -> 1): the status route reports
    the new count, new connections are spread over all three workers (each
    worker has its own listening socket; 40 connections miss one of three only
    with odds of 3 x (2/3)^40), and after lowering it again only one worker
    takes them."""
    mods = pathlib.Path(BINARY).resolve().parent / "modules"
    text = f"""listen: "127.0.0.1:{{port}}"
workers: WORKERS
modules_dir: {mods}
routes:
  - path: /count
    module: {{ name: counter }}
  - path: /status
    status: {{}}
"""
    srv = celerisd(text.replace("WORKERS", "1"))

    def workers_seen(n=40):
        seen = set()
        for _ in range(n):
            p = curl([srv.url("/count")])
            assert p.returncode == 0, p.stderr
            seen.add(json.loads(p.stdout)["worker"])
        return seen

    def status_workers():
        return json.loads(curl([srv.url("/status")]).stdout)["workers"]

    assert status_workers() == 1 and workers_seen() == {0}
    write_atomic(srv.config_path, text.replace("{port}", str(srv.port)).replace("WORKERS", "3"))
    assert reload_and_wait(srv, 2)
    assert status_workers() == 3
    assert len(workers_seen()) == 3
    write_atomic(srv.config_path, text.replace("{port}", str(srv.port)).replace("WORKERS", "1"))
    assert reload_and_wait(srv, 3)
    assert status_workers() == 1
    assert len(workers_seen()) == 1
