"""celerisd behind HAProxy 2.6 (tests/scaleout): three backends over h2c with
PROXY protocol v2, health-checked on their readiness route; h2load through
HAProxy (HTTP/2 and HTTP/1.1 clients) while backends are killed, drained and
restarted, and reloaded with a new route table."""

import signal
import time

from cluster import Load, access_lines, h2load, http_get, wait_access
from support import TIME_SCALE


def test_smoke_and_balance(cluster):
    hp = cluster.haproxy
    seen = {http_get(hp.port, "/who")[1] for _ in range(12)}
    assert seen == {b"b1", b"b2", b"b3"}
    for h1 in (False, True):
        r = h2load(hp.port, 600, h1=h1)
        assert r["failed"] == 0, r["out"]


def test_kill_9_one_backend(cluster, capsys):
    hp = cluster.haproxy
    victim = cluster.backends[1]
    with Load(hp.port) as load:
        load.wait_rounds(2)
        victim.send(signal.SIGKILL)
        victim.proc.wait(timeout=5)
        down_after = hp.wait_status(victim.name, "DOWN")
        load.wait_rounds(load.rounds + 2)
    with capsys.disabled():
        print(f"\n[scaleout] kill -9 of one backend: {load.failed} failed of {load.total} "
              f"requests ({load.rounds} h2load rounds); HAProxy marked it DOWN after "
              f"{down_after:.2f}s")
    # HAProxy retries what failed before a response began (retry-on,
    # redispatch): an idempotent GET that was in flight on the killed backend
    # is sent again to another one.
    assert load.failed == 0, "\n".join(load.outputs[:2])
    # Restarted, it gets traffic again once its health check passes.
    before = len(access_lines(victim.log))
    victim.start()
    hp.wait_status(victim.name, "UP")
    r = h2load(hp.port, 300)
    assert r["failed"] == 0, r["out"]
    lines = wait_access(victim.log, lambda ls: len(ls) > before + 30)
    assert len(lines) > before + 30, f"{len(lines) - before} requests reached the restarted backend"


def test_rolling_restart(cluster):
    hp = cluster.haproxy
    with Load(hp.port) as load:
        load.wait_rounds(1)
        for b in cluster.backends:
            # drain: the balancer first (no new requests), then the daemon's
            # readiness says 503 for its drain_time before it stops.
            hp.api(f"set server be/{b.name} state drain")
            assert b.stop() == 0
            assert "draining for 300 ms" in b.stderr.read_text()
            b.start()
            hp.api(f"set server be/{b.name} state ready")
            hp.wait_status(b.name, "UP")
            load.wait_rounds(load.rounds + 1)
    assert load.rounds >= 4
    assert load.failed == 0, f"{load.failed} of {load.total} failed:\n" + "\n".join(load.outputs[:2])


def test_rolling_restart_by_sigterm_alone(cluster):
    """No runtime API: SIGTERM makes readiness 503 for drain_time; HAProxy's
    check (every 200 ms, fall 2) marks the backend DOWN while it still runs,
    before its GOAWAY."""
    hp = cluster.haproxy
    drain = 2 * TIME_SCALE
    for b in cluster.backends:
        b.stop()  # again with a drain time long enough for two failed checks
        b.drain = f"{drain}s"
        b.write_config("v1")
        b.start()
        hp.wait_status(b.name, "UP")
    with Load(hp.port) as load:
        load.wait_rounds(1)
        for b in cluster.backends:
            b.send(signal.SIGTERM)
            took = hp.wait_status(b.name, "DOWN")
            assert b.proc.poll() is None, f"{b.name} exited before HAProxy took it out"
            assert took < drain
            assert b.proc.wait(timeout=drain + 10 * TIME_SCALE) == 0
            b.start()
            hp.wait_status(b.name, "UP")
            load.wait_rounds(load.rounds + 1)
    assert load.failed == 0, f"{load.failed} of {load.total} failed:\n" + "\n".join(load.outputs[:2])


def test_rolling_reload_new_route_table(cluster):
    hp = cluster.haproxy
    assert http_get(hp.port, "/v")[1] == b"v1"
    with Load(hp.port, path="/v") as load:
        load.wait_rounds(1)
        for b in cluster.backends:
            b.write_config("v2")
            b.send(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while b.get("/v")[1] != b"v2" and time.monotonic() < deadline:
                time.sleep(0.02)
            assert b.get("/v")[1] == b"v2", b.stderr.read_text()
            load.wait_rounds(load.rounds + 1)
    assert load.failed == 0, f"{load.failed} of {load.total} failed:\n" + "\n".join(load.outputs[:2])
    bodies = [http_get(hp.port, "/v")[1] for _ in range(30)]
    assert set(bodies) == {b"v2"}, bodies


def test_client_address_through_proxy_v2(cluster):
    """The client connects from 127.0.0.2; HAProxy (from 127.0.0.1, trusted)
    passes it in PROXY v2: the backend's access log says 127.0.0.2. A forged
    X-Forwarded-For changes nothing."""
    hp = cluster.haproxy
    for _ in range(6):
        st, body = http_get(hp.port, "/who", headers=[("x-forwarded-for", "203.0.113.66")],
                            source="127.0.0.2")
        assert st == 200
    for b in cluster.backends:
        lines = wait_access(b.log, lambda ls: len(ls) >= 2)
        assert lines and all(ln == "127.0.0.2 /who 200" for ln in lines), (b.name, lines)
    # Straight to a backend's PROXY listener from 127.0.0.2 (not trusted): it
    # is served as itself, and a PROXY header it sends is refused.
    b = cluster.backends[0]
    st, _ = http_get(b.port, "/who", source="127.0.0.2")
    assert st == 200
    lines = wait_access(b.log, lambda ls: len(ls) >= 3)
    assert lines[-1] == "127.0.0.2 /who 200", lines


def test_shipped_examples_are_valid(tmp_path):
    """packaging/haproxy/: haproxy -c accepts haproxy.cfg (machine-specific
    paths swapped for temporary ones) and celerisd -t the YAML."""
    import re
    import subprocess

    from cluster import HAPROXY
    from support import REPO, run_celerisd

    src = REPO / "packaging" / "haproxy"
    cfg = (src / "haproxy.cfg").read_text()
    cert = tmp_path / "certs"
    cert.mkdir()
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=x",
                        "-keyout", str(cert / "x.pem"), "-out", str(tmp_path / "c.pem")],
                       capture_output=True, timeout=60)
    assert p.returncode == 0
    (cert / "x.pem").write_bytes((tmp_path / "c.pem").read_bytes() + (cert / "x.pem").read_bytes())
    cfg = cfg.replace("/etc/haproxy/certs/", f"{cert}/")
    cfg = cfg.replace("/run/haproxy/admin.sock", str(tmp_path / "admin.sock"))
    cfg = re.sub(r"(?m)^\s+(user|group) haproxy$", "", cfg)
    (tmp_path / "haproxy.cfg").write_text(cfg)
    p = subprocess.run([HAPROXY, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    yaml = (src / "celerisd.yaml").read_text().replace("/var/log/celerisd/", f"{tmp_path}/")
    yaml = yaml.replace("/run/celerisd/", f"{tmp_path}/")
    (tmp_path / "celerisd.yaml").write_text(yaml)
    p = run_celerisd(["-t", "-c", str(tmp_path / "celerisd.yaml")])
    assert p.returncode == 0, p.stderr
