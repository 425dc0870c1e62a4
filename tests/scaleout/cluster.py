"""Three celerisd backends behind an HAProxy started from a generated config
(tests/scaleout). Everything binds 127.0.0.1 ports picked free; HAProxy's
runtime API is a stats socket in the test's temporary directory; every
process is stopped by PID."""

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from lib import daemon  # noqa: E402 (tests/ is on sys.path: conftest.py)
from lib.daemon import TIME_SCALE, free_port, wait_port  # noqa: E402
from lib.h2load import h2load_counts  # noqa: E402
from support import write_atomic  # noqa: E402

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
H2LOAD = shutil.which("h2load")

BACKEND = """listen:
  - {{ address: "127.0.0.1:{port}", proxy_protocol: true, trusted: [127.0.0.1/32] }}
  - "127.0.0.1:{direct}"
workers: 1
drain_time: {drain}
shutdown_timeout: 5s
log: {{ level: info, access: {{ path: {log}, format: '%h %U %s' }} }}
routes:
  - path: /ready
    access_log: off
    readiness: {{}}
  - path: /who
    static: {{ body: "{name}" }}
  - path: /v
    access_log: off
    static: {{ body: "{version}" }}
  - path: /bench
    access_log: off
    static: {{ body: "OK" }}
"""

HAPROXY_CFG = """global
    stats socket {sock} mode 600 level admin
    maxconn 2000

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    retries 3
    option redispatch 1
    retry-on all-retryable-errors

frontend fe
    bind 127.0.0.1:{port}
    http-request disable-l7-retry unless METH_GET || METH_HEAD
    # An HTTP/2 answer has no reason phrase, and HAProxy relays it to an
    # HTTP/1.1 client as "HTTP/1.1 200 " (valid); h2load --h1 takes the
    # status from the reason phrase and counts such answers as failed.
    http-response set-status 200 reason OK if {{ status 200 }}
    default_backend be

backend be
    balance roundrobin
    option httpchk
    http-check send meth GET uri /ready ver HTTP/1.1 hdr host backend
    http-check expect status 200
{servers}
"""

SERVER = ("    server {name} 127.0.0.1:{port} proto h2 send-proxy-v2 check check-send-proxy "
          "inter 200ms fastinter 100ms downinter 200ms fall 2 rise 2\n")


class Backend:
    def __init__(self, directory, name, drain="300ms"):
        self.dir = pathlib.Path(directory)
        self.name = name
        self.port = free_port()
        self.direct = free_port()
        self.log = self.dir / f"{name}.access.log"
        self.cfg = self.dir / f"{name}.yaml"
        self.drain = drain
        self.srv = self.proc = None
        self.starts = 0
        self.write_config("v1")

    def write_config(self, version):
        write_atomic(self.cfg, BACKEND.format(port=self.port, direct=self.direct, log=self.log,
                                              name=self.name, version=version, drain=self.drain))

    def start(self):
        """Starts the backend on its config (tests/lib/daemon.py), waited for
        on its direct listener."""
        self.starts += 1
        self.stderr = self.dir / f"{self.name}.{self.starts}.stderr"

        def started(srv):
            self.srv, self.proc = srv, srv.proc

        daemon.start(self.cfg, None, self.stderr, [("127.0.0.1", self.direct)],
                     startup_timeout=10 * TIME_SCALE, started=started)

    def send(self, sig):
        self.srv.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return None
        return self.srv.stop(sig, timeout * TIME_SCALE)[0]

    def get(self, path):
        """GET PATH on the backend's own (non-PROXY) listener: (status, body)."""
        return http_get(self.direct, path)


def http_get(port, path, headers=(), source=None, timeout=5):
    """One HTTP/1.1 GET on a fresh connection: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as s:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n"
                  .encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3})", head)
    return (int(m.group(1)) if m else None), body


class HAProxy:
    def __init__(self, directory, backends):
        self.dir = pathlib.Path(directory)
        self.port = free_port()
        self.sock = self.dir / "haproxy.sock"
        self.cfg = self.dir / "haproxy.cfg"
        servers = "".join(SERVER.format(name=b.name, port=b.port) for b in backends)
        self.cfg.write_text(HAPROXY_CFG.format(sock=self.sock, port=self.port, servers=servers))
        self.proc = None

    def start(self):
        chk = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True,
                             text=True, timeout=30)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        self.err = self.dir / "haproxy.stderr"
        with open(self.err, "wb") as fe:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)],
                                         stdout=fe, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        wait_port("127.0.0.1", self.port, self.proc, 10 * TIME_SCALE, self.err)
        # The stats socket is bound under a temporary name and renamed, not
        # always before the frontend port accepts; and a port that accepts
        # may be somebody else's: the runtime API is only there once HAProxy
        # itself is up.
        deadline = time.monotonic() + 10 * TIME_SCALE
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"haproxy: no stats socket {self.sock} (exit "
                            f"{self.proc.poll()}); output:\n{self.err.read_text(errors='replace')}")
            time.sleep(0.02)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)

    def api(self, command):
        """One runtime-API command over the stats socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.sock))
            s.sendall(command.encode() + b"\n")
            out = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        return out.decode(errors="replace")

    def status(self, server):
        """The server's status column in `show stat` (UP, DOWN, DRAIN, MAINT, ...)."""
        lines = self.api("show stat").splitlines()
        cols = lines[0].lstrip("# ").split(",")
        for ln in lines[1:]:
            f = ln.split(",")
            if len(f) == len(cols) and f[0] == "be" and f[1] == server:
                return f[cols.index("status")]
        return None

    def wait_status(self, server, want, timeout=15):
        """Waits until SERVER's status starts with WANT; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout * TIME_SCALE
        while True:
            st = self.status(server) or ""
            if st.startswith(want):
                return time.monotonic() - start
            if time.monotonic() > deadline:
                pytest.fail(f"haproxy: {server} is {st!r}, not {want} after {timeout}s")
            time.sleep(0.02)


RPS_LINE = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")


def h2load(port, n, clients=4, streams=4, h1=False, path="/who", timeout=120):
    """Runs h2load; returns dict(total, ok, failed, rps, out). `failed` counts
    every request that did not end in a 2xx (not sent, errored, or non-2xx)."""
    args = [H2LOAD, "-n", str(n), "-c", str(clients), "-m", str(1 if h1 else streams)]
    if h1:
        args.append("--h1")
    args.append(f"http://127.0.0.1:{port}{path}")
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout * TIME_SCALE)
    c, r = h2load_counts(p.stdout + p.stderr), RPS_LINE.search(p.stdout)
    return {"total": c["total"], "ok": c["2xx"], "failed": c["total"] - c["2xx"],
            "rps": float(r.group(1)) if r else 0.0, "out": p.stdout}


class Load:
    """h2load in rounds (-n ROUND each, alternating HTTP/2 and HTTP/1.1
    clients) in a thread until stopped: bounded, and continuous while a
    scenario runs. Sums requests and failures."""

    def __init__(self, port, round_n=100, path="/who", max_rounds=100):
        self.port, self.round_n, self.path, self.max_rounds = port, round_n, path, max_rounds
        self.total = self.failed = self.rounds = 0
        self.outputs = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set() and self.rounds < self.max_rounds:
            r = h2load(self.port, self.round_n, clients=2, h1=self.rounds % 2 == 1,
                       path=self.path)
            self.total += r["total"]
            self.failed += r["failed"]
            if r["failed"]:
                self.outputs.append(r["out"])
            self.rounds += 1

    def __enter__(self):
        self._thread.start()
        return self

    def wait_rounds(self, n, timeout=60):
        deadline = time.monotonic() + timeout * TIME_SCALE
        while self.rounds < n and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=180 * TIME_SCALE)


def access_lines(path):
    return path.read_text().splitlines() if path.exists() else []


def wait_access(path, pred, timeout=10):
    deadline = time.monotonic() + timeout * TIME_SCALE
    while True:
        lines = access_lines(path)
        if pred(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)
