"""Draining for a load balancer: SIGUSR2 (and `celerisd drain`, through the
pid_file) makes `status` and `readiness` answer 503 while every other route
keeps serving; with `drain_time`, SIGTERM does the same for that long before
the GOAWAY, and a second SIGTERM does not wait for the rest of it."""

import signal
import time

from support import TIME_SCALE, expect_config_error, run_celerisd

CONFIG = """workers: 2
{extra}
routes:
  - path: /a
    static: {{ body: "A" }}
  - path: /ready
    readiness: {{}}
  - path: /status
    status: {{}}
"""


def wait_status(srv, path, want, timeout=10):
    deadline = time.monotonic() + timeout * TIME_SCALE
    while True:
        with srv.client() as c:
            r = c.get(path)
        if r.status == want or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_sigusr2_drains_readiness_and_status_only(celerisd):
    srv = celerisd(CONFIG.format(extra=""))
    with srv.client() as c:
        assert (c.get("/ready").status, c.get("/ready").body) == (200, b"ready\n")
        st = c.get("/status")
        assert st.status == 200 and st.json()["status"] == "ok"
    srv.send_signal(signal.SIGUSR2)
    r = wait_status(srv, "/ready", 503)
    assert (r.status, r.body) == (503, b"draining\n")
    with srv.client() as c:
        st = c.get("/status")
        assert st.status == 503 and st.json()["status"] == "draining", st
        for _ in range(20):  # both workers
            assert c.get("/a").body == b"A"
    # A reload keeps it draining; the daemon keeps running until told to stop.
    srv.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert srv.proc.poll() is None
    with srv.client() as c:
        assert c.get("/ready").status == 503 and c.get("/a").status == 200
    assert "draining" in srv.stderr_text()


def test_drain_command_uses_the_pid_file(celerisd, tmp_path):
    srv = celerisd(CONFIG.format(extra=f"pid_file: {tmp_path}/c.pid"))
    p = run_celerisd(["-c", str(srv.config_path), "drain"])
    assert p.returncode == 0, p.stderr
    assert f"pid {srv.pid} is draining" in p.stdout
    assert wait_status(srv, "/ready", 503).status == 503
    with srv.client() as c:
        assert c.get("/a").status == 200


def test_drain_command_without_pid_file(celerisd):
    srv = celerisd(CONFIG.format(extra=""))
    p = run_celerisd(["-c", str(srv.config_path), "drain"])
    assert p.returncode == 1 and "sets no pid_file" in p.stderr, p.stderr
    with srv.client() as c:
        assert c.get("/ready").status == 200


def test_sigterm_drains_for_drain_time_before_the_goaway(celerisd):
    drain = 3.0
    srv = celerisd(CONFIG.format(extra=f"drain_time: {drain}"))
    kept = srv.client()
    assert kept.get("/a").status == 200
    start = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    assert wait_status(srv, "/ready", 503).status == 503
    # Within the drain time: new connections and the open one are served,
    # and no GOAWAY came.
    with srv.client() as c:
        assert c.get("/a").body == b"A"
        assert c.get("/status").status == 503
    assert kept.get("/a").body == b"A"
    assert kept.goaway is None
    assert srv.proc.poll() is None
    elapsed = time.monotonic() - start
    assert elapsed < drain, f"the checks took {elapsed:.1f}s, longer than the drain time"
    kept.wait_for(lambda: kept.goaway is not None, timeout=drain + 10 * TIME_SCALE,
                  what="GOAWAY after the drain time")
    assert time.monotonic() - start >= drain * 0.9
    kept.close()
    assert srv.wait(timeout=10 * TIME_SCALE) == 0
    assert "draining for 3000 ms" in srv.stderr_text()


def test_second_sigterm_cuts_the_drain_short(celerisd):
    srv = celerisd(CONFIG.format(extra="drain_time: 60"))
    srv.send_signal(signal.SIGTERM)
    assert wait_status(srv, "/ready", 503).status == 503
    srv.send_signal(signal.SIGTERM)
    assert srv.wait(timeout=10 * TIME_SCALE) == 0


def test_config_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("drain_time: 0\nroutes: []\n")
    p = run_celerisd(["-t", "-c", str(path)])
    assert p.returncode == 0, p.stderr
    path.write_text("drain_time: soon\nroutes: []\n")
    expect_config_error(path, 1, 13, ["drain_time"])
    path.write_text("routes:\n  - path: /r\n    readiness: { x: 1 }\n")
    expect_config_error(path, 3, 18, ["unknown key"])
