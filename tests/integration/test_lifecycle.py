"""Command line, listening, workers, signals and graceful shutdown."""

import hashlib
import os
import re
import signal
import socket
import subprocess
import time

import h2.errors
import h2.events
import pytest

from h2client import H2Client, ConnectionClosed
from support import (TIME_SCALE, curl, expect_config_error, ipv6_loopback_available,
                     run_celerisd)

BIG_SIZE = 5 * 1024 * 1024
ROUTES = """
routes:
  - path: /bench
    static: { body: "OK" }
  - path: /json
    json: { template: { message: "Hello, World!" } }
"""


def sha(b):
    return hashlib.sha256(b).hexdigest()


# -- command line ----------------------------------------------------------------------


def dpkg_upstream_version(package):
    try:
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0 or not p.stdout:
        return None
    v = p.stdout.split(":", 1)[-1]          # drop an epoch
    return re.split(r"[-+~]", v)[0]          # drop the Debian revision


def test_version():
    r = run_celerisd(["-V"])
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    lines = out.lower().splitlines()
    assert any(re.search(r"celerisd\D*\d+\.\d+", l) for l in lines), out
    for lib in ("libevent", "nghttp2", "yaml", "jansson"):
        assert any(lib in l and re.search(r"\d+\.\d+", l) for l in lines), \
            f"no version for {lib} in:\n{out}"
    # against the installed Debian packages (the daemon links the system libraries)
    for lib, pkg in (("nghttp2", "libnghttp2-14"), ("jansson", "libjansson4"),
                     ("yaml", "libyaml-0-2")):
        want = dpkg_upstream_version(pkg)
        if want:
            assert any(lib in l and want in l for l in lines), \
                f"{lib}: expected version {want} in:\n{out}"
    want = dpkg_upstream_version("libevent-2.1-7")
    if want:
        assert any("libevent" in l and want.split("-")[0] in l for l in lines), out


def test_help():
    r = run_celerisd(["-h"])
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    assert "usage" in out.lower(), out
    for opt in ("-c", "-t", "-V", "-h"):
        assert opt in out, f"{opt} missing from usage:\n{out}"


@pytest.mark.parametrize("args", [["-Z"], ["--no-such-option"], ["-c"]],
                         ids=["unknown-short", "unknown-long", "c-without-argument"])
def test_bad_option(args):
    r = run_celerisd(args)
    assert r.returncode > 0, r
    assert "usage" in r.stderr.lower(), r.stderr


def test_check_ok_message(celerisd):
    path, _ = celerisd.write_config(ROUTES)
    r = run_celerisd(["-t", "-c", str(path)])
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    assert re.search(re.escape(str(path)) + r".*\bok\b", out, re.I), out


def test_check_creates_no_file(celerisd, tmp_path):
    """`celerisd -t` (run as root by ExecStartPre, or by hand) must not create
    the access log: a root-owned file would keep the service user from opening
    it on the next start. It checks that the file could be opened instead."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "access.log"
    path, _ = celerisd.write_config(f"log: {{ access: {{ path: {log} }} }}\n" + ROUTES)
    r = run_celerisd(["-t", "-c", str(path)])
    assert r.returncode == 0, r.stderr
    assert list(logs.iterdir()) == []
    log.write_text("kept\n")
    r = run_celerisd(["-t", "-c", str(path)])
    assert r.returncode == 0, r.stderr
    assert log.read_text() == "kept\n"
    log.unlink()
    # what the check cannot create is still an error, with the key's place
    gone = tmp_path / "no-such-dir" / "access.log"
    path.write_text(path.read_text().replace(str(log), str(gone)))
    expect_config_error(path, 2, None, ["access log"])
    if os.geteuid() != 0:  # root may write anywhere
        logs.chmod(0o500)
        path.write_text(path.read_text().replace(str(gone), str(log)))
        r = run_celerisd(["-t", "-c", str(path)])
        logs.chmod(0o700)
        assert r.returncode == 1 and "Permission denied" in r.stderr, r.stderr
    assert list(logs.iterdir()) == []


def test_pid_file(celerisd, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pid = run / "celerisd.pid"
    text = f"pid_file: {pid}\n" + ROUTES
    path, _ = celerisd.write_config(text)
    assert run_celerisd(["-t", "-c", str(path)]).returncode == 0
    assert not pid.exists(), "celerisd -t wrote the pid file"
    srv = celerisd(text)
    # written after the sockets are bound: it may trail the port opening a little
    deadline = time.monotonic() + 10
    while not pid.exists():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.02)
    assert pid.read_text() == f"{srv.pid}\n"
    assert pid.stat().st_mode & 0o777 == 0o644
    assert list(run.iterdir()) == [pid], "a temporary file was left beside it"
    # a reload that names another file moves it
    moved = run / "moved.pid"
    srv.config_path.write_text(srv.config_path.read_text().replace(str(pid), str(moved)))
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while pid.exists() or not moved.exists():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.02)
    assert moved.read_text() == f"{srv.pid}\n"
    rc, _ = srv.stop()
    assert rc == 0, srv.stderr_text()
    assert list(run.iterdir()) == [], "the pid file outlived the daemon"


def test_pid_file_that_cannot_be_written_fails_the_start(celerisd, tmp_path):
    path, _ = celerisd.write_config(f"pid_file: {tmp_path}/no-such-dir/x.pid\n" + ROUTES)
    r = run_celerisd(["-c", str(path)], timeout=15)
    assert r.returncode == 1 and "pid file" in r.stderr, r.stderr


def test_runs_in_foreground_and_stops_on_sigterm(celerisd):
    srv = celerisd(ROUTES)
    assert srv.proc.poll() is None            # the process we started is the daemon
    with srv.client() as c:
        assert c.get("/bench").body == b"OK"
    rc, took = srv.stop(signal.SIGTERM)
    assert rc == 0, srv.stderr_text()
    assert took < 5 * TIME_SCALE
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_sigint_idle_exits_zero(celerisd):
    srv = celerisd(ROUTES)
    with srv.client() as c:
        assert c.get("/json").status == 200
    rc, took = srv.stop(signal.SIGINT)
    assert rc == 0, srv.stderr_text()
    assert took < 5 * TIME_SCALE


def test_sigterm_with_idle_connection_exits_promptly(celerisd):
    """Idle connections do not hold the daemon for shutdown_timeout: they get a
    GOAWAY and are closed."""
    srv = celerisd('shutdown_timeout: 30s\n' + ROUTES)
    with srv.client() as c:
        assert c.get("/bench").body == b"OK"
        start = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        c.wait_closed(timeout=10 * TIME_SCALE)
        assert c.goaway is not None, "connection closed without GOAWAY"
        assert c.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        assert srv.wait(timeout=10 * TIME_SCALE) == 0
        assert time.monotonic() - start < 5 * TIME_SCALE  # shutdown_timeout is 30 s


def test_log_goes_to_stderr_not_stdout(celerisd):
    srv = celerisd('log: { level: debug }\n' + ROUTES)
    with srv.client() as c:
        assert c.get("/bench").body == b"OK"
    rc, _ = srv.stop()
    assert rc == 0
    assert srv.stderr_text().strip(), "nothing logged at level debug"
    assert srv.stdout_text() == ""


# -- listening -----------------------------------------------------------------------


def test_two_listen_addresses(celerisd):
    srv = celerisd('listen: ["127.0.0.1:{port}", "127.0.0.1:{port2}"]\n' + ROUTES, ports=2)
    for port in srv.ports:
        with H2Client("127.0.0.1", port) as c:
            assert c.get("/bench").body == b"OK"
        p = curl([srv.url("/json", port=port)])
        assert p.returncode == 0 and p.stdout == b'{"message":"Hello, World!"}', p


def test_listen_other_loopback_address(celerisd):
    srv = celerisd('listen: ["127.0.0.1:{port}", "127.0.0.2:{port2}"]\n' + ROUTES,
                   hosts=["127.0.0.1", "127.0.0.2"])
    with H2Client("127.0.0.2", srv.ports[1]) as c:
        assert c.get("/bench").body == b"OK"
    # bound to 127.0.0.2 only: 127.0.0.1 on that port is not served
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.ports[1]), timeout=2).close()


def test_listen_ipv6(celerisd):
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    srv = celerisd('listen: "[::1]:{port}"\n' + ROUTES, host="::1")
    with H2Client("::1", srv.port) as c:
        r = c.get("/json")
        assert r.status == 200 and r.body == b'{"message":"Hello, World!"}'
    p = curl(["-g", srv.url("/bench")])
    assert p.returncode == 0 and p.stdout == b"OK", p
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_listen_address_in_use_fails(celerisd):
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        path, _ = celerisd.write_config(f'listen: "127.0.0.1:{port}"\n' + ROUTES)
        try:
            r = run_celerisd(["-c", str(path)], timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("celerisd kept running although its listen address was taken")
        assert r.returncode > 0
        assert str(port) in r.stderr, r.stderr


def second_daemon(path):
    try:
        return run_celerisd(["-c", str(path)], timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("a second celerisd started on an address the first one serves")


@pytest.mark.parametrize("second", ["127.0.0.1", "*"])
def test_second_daemon_on_the_same_address_is_refused(celerisd, tmp_path, second):
    """SO_REUSEPORT lets sockets of one user share a port: without a check, a
    second celerisd (a unit started twice, a test run beside the service)
    would quietly take half the connections. It is refused, like nginx and
    h2o refuse, while the first keeps serving, reloads and keeps its pid file."""
    pid = tmp_path / "first.pid"
    srv = celerisd(f"pid_file: {pid}\nworkers: 2\n" + ROUTES)
    deadline = time.monotonic() + 10
    while not pid.exists():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.02)
    path, _ = celerisd.write_config(f'listen: "{second}:{srv.port}"\npid_file: {pid}\n'
                                    + ROUTES.replace('"OK"', '"second"'))
    r = second_daemon(path)
    assert r.returncode == 1, r.stderr
    assert f"{path}:1:" in r.stderr and "address already in use" in r.stderr, r.stderr
    assert pid.read_text() == f"{srv.pid}\n"
    # its own sockets are no obstacle to its reload (two more workers open
    # new sockets on the address it holds)
    srv.config_path.write_text(srv.config_path.read_text().replace("workers: 2",
                                                                 "workers: 4"))
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "workers: 2 -> 4" not in srv.stderr_text():
        assert time.monotonic() < deadline and "reload failed" not in srv.stderr_text(), \
            srv.stderr_text()
        time.sleep(0.02)
    for _ in range(16):  # every new connection reaches the first daemon
        with H2Client("127.0.0.1", srv.port) as c:
            assert c.get("/bench").body == b"OK"


def test_reload_onto_another_daemons_address_fails(celerisd):
    first = celerisd(ROUTES)
    srv = celerisd(ROUTES.replace('"OK"', '"second"'))
    text = srv.config_path.read_text()
    srv.config_path.write_text(text.replace(f'listen: "127.0.0.1:{srv.port}"',
                                            f'listen: ["127.0.0.1:{srv.port}", '
                                            f'"127.0.0.1:{first.port}"]'))
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload failed" not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.02)
    assert "address already in use" in srv.stderr_text()
    for _ in range(16):
        with H2Client("127.0.0.1", first.port) as c:
            assert c.get("/bench").body == b"OK"


@pytest.mark.parametrize("workers", ["1", "2", "auto", "[0]", "[0, 1]"])
def test_workers_setting(celerisd, workers):
    if workers == "[0, 1]" and os.cpu_count() < 2:
        pytest.skip("needs 2 CPUs")
    srv = celerisd(f"workers: {workers}\n" + ROUTES)
    clients = [srv.client() for _ in range(8)]
    try:
        for c in clients:
            rs = c.many(["/bench", "/json"] * 5)
            assert all(r.status == 200 for r in rs)
    finally:
        for c in clients:
            c.close()


# -- graceful shutdown ------------------------------------------------------------------


def new_connection_refused(host, port):
    """After the shutdown began: a new connection is refused, reset or closed
    without an answer; being served, or left hanging, is wrong. Returns a
    description of what happened (for assertion messages)."""
    try:
        c = H2Client(host, port, timeout=3, wait_settings=False)
    except ConnectionRefusedError:
        return "refused"
    try:
        r = c.request("GET", "/bench", timeout=3)
    except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
        return "closed"
    except TimeoutError:
        return "HUNG: connection accepted but neither served nor closed within 3 s"
    finally:
        c.close()
    if r.status == 200:
        return "SERVED"
    return f"answered {r.status} reset={r.reset}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_shutdown_completes_slow_stream(celerisd, tmp_path, sig):
    data = os.urandom(BIG_SIZE)
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    srv = celerisd(f"""
shutdown_timeout: 30s
routes:
  - path: /big
    static: {{ file: {big} }}
  - path: /bench
    static: {{ body: "OK" }}
""")
    with srv.client(auto_ack=False, timeout=30) as c:
        sid = c.send_request("GET", "/big")
        # the server fills the 65,535-byte window and must then wait for us
        c.wait_for(lambda: c.unacked_bytes() >= 65535, timeout=10, what="first window")
        assert len(c.responses[sid].body) == 65535
        assert c.responses[sid].status == 200

        srv.send_signal(sig)
        c.wait_for(lambda: c.goaway is not None, timeout=10, what="GOAWAY")
        assert c.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        assert c.goaway.last_stream_id >= sid
        assert not c.responses[sid].done
        assert srv.proc.poll() is None, "daemon exited with a stream in flight"

        outcome = new_connection_refused("127.0.0.1", srv.port)
        assert outcome in ("refused", "closed") or outcome.startswith("answered"), outcome

        c.open_window()
        r = c.response(sid, timeout=60)
        assert r.ended and r.reset is None, r
        assert len(r.body) == BIG_SIZE
        assert sha(r.body) == sha(data)
        # the last GOAWAY (a server may send a notice first) still covers our stream
        assert c.goaway.last_stream_id >= sid
    rc = srv.wait(timeout=10)
    assert rc == 0, srv.stderr_text()


def test_graceful_shutdown_two_streams_two_connections(celerisd, tmp_path):
    data = os.urandom(1024 * 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    srv = celerisd("shutdown_timeout: 30s\nroutes:\n  - path: /big\n    static: { file: "
                   + str(big) + " }\n")
    clients = [srv.client(auto_ack=False, timeout=30) for _ in range(2)]
    try:
        sids = []
        for c in clients:
            sids.append(c.send_request("GET", "/big"))
        for c in clients:
            c.wait_for(lambda c=c: c.unacked_bytes() >= 65535, what="first window")
        srv.send_signal(signal.SIGTERM)
        for c in clients:
            c.wait_for(lambda c=c: c.goaway is not None, timeout=10, what="GOAWAY")
        for c, sid in zip(clients, sids):
            c.open_window()
            r = c.response(sid, timeout=60)
            assert r.ended and sha(r.body) == sha(data)
    finally:
        for c in clients:
            c.close()
    assert srv.wait(timeout=10) == 0, srv.stderr_text()


def test_shutdown_timeout_bounds_a_stuck_client(celerisd, tmp_path):
    data = os.urandom(BIG_SIZE)
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    srv = celerisd("shutdown_timeout: 1s\nroutes:\n  - path: /big\n    static: { file: "
                   + str(big) + " }\n")
    srv.expect_exit = None
    with srv.client(auto_ack=False, timeout=30) as c:
        sid = c.send_request("GET", "/big")
        c.wait_for(lambda: c.unacked_bytes() >= 65535, what="first window")
        start = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        try:
            rc = srv.wait(timeout=8)
        except subprocess.TimeoutExpired:
            pytest.fail("daemon still running 8 s after SIGTERM with shutdown_timeout 1s")
        took = time.monotonic() - start
        assert rc >= 0, f"killed by signal {-rc}"
        assert took >= 0.5, f"exited after {took:.2f}s, before shutdown_timeout"
        assert not c.responses[sid].ended


def test_shutdown_resets_spend_no_reset_budget(celerisd):
    """The CANCELs that end the streams still open at shutdown_timeout are the
    server's own resets: more of them than reset_burst still end the connection
    with GOAWAY NO_ERROR alone (before: the budget ran dry on them and a GOAWAY
    ENHANCE_YOUR_CALM followed, as if the client had flooded)."""
    n, burst = 20, 5
    srv = celerisd(f"shutdown_timeout: 1s\nlimits: {{ reset_burst: {burst}, reset_rate: 1 }}\n"
                   + ROUTES)
    srv.expect_exit = None
    with srv.client(timeout=30 * TIME_SCALE) as c:
        # requests whose bodies never end: open until the shutdown expires
        sids = [c.send_request("POST", "/json", end_stream=False) for _ in range(n)]
        assert c.get("/bench").body == b"OK"  # the server has read them all
        srv.send_signal(signal.SIGTERM)
        c.wait_closed(timeout=20 * TIME_SCALE)
    codes = [int(ev.error_code) for ev in c.events
             if isinstance(ev, h2.events.ConnectionTerminated)]
    assert codes and set(codes) == {h2.errors.ErrorCodes.NO_ERROR}, codes
    assert [c.responses[s].reset for s in sids] == [h2.errors.ErrorCodes.CANCEL] * n, \
        [c.responses[s] for s in sids]
