"""Command line, listening, workers, signals and graceful shutdown."""

import hashlib
import os
import re
import signal
import socket
import subprocess
import time

import h2.errors
import pytest

from h2client import H2Client, ConnectionClosed
from support import TIME_SCALE, curl, ipv6_loopback_available, run_celerisd

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
