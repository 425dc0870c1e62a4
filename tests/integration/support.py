"""Helpers of the celerisd integration tests (also used by tests/attack).

The daemon launcher lives in tests/lib/daemon.py, shared by every suite; it is
re-exported here under the names the integration tests import (BINARY, REPO,
TIME_SCALE, free_port, wait_port, require_binary, run_celerisd,
expect_config_error, Server, ServerFactory...), so `from support import ...`
keeps working. What is the integration suite's own: srv.client() (its HTTP/2
client, h2client.py), curl, building modules, atomic config rewrites. h2load
runs and their counts come from tests/lib/h2load.py (re-exported too)."""

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from h2client import H2Client  # noqa: E402
from lib import daemon as _daemon  # noqa: E402
from lib.daemon import (BINARY, REPO, STARTUP_TIMEOUT, STOP_TIMEOUT,  # noqa: E402,F401
                        TIME_SCALE, expect_config_error, free_port, ipv6_loopback_available,
                        require_binary, run_celerisd, wait_port)
from lib.h2load import h2load_counts, run_h2load  # noqa: E402,F401

import pytest  # noqa: E402


def load_n(default=200000):
    """Request count for h2load runs: $CELERIS_LOAD_N (a sanitizer build lowers it)."""
    return int(os.environ.get("CELERIS_LOAD_N", default))


def write_atomic(path, text):
    """Replaces PATH's content in one step (a new file renamed over it), so a
    reload that reads it meanwhile sees the old or the new text, never half."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def reload_config(srv, text, timeout=10):
    """Writes TEXT over SRV's config file, sends SIGHUP and waits until the log
    says the next generation serves. Fails the test on a reload failure, on a
    daemon that exited, or after TIMEOUT s (x TIME_SCALE) without the line.
    Returns that generation's number."""
    log = srv.stderr_text()
    serving = [int(g) for g in re.findall(r"generation (\d+) is serving", log)]
    want = max(serving, default=1) + 1
    failures = log.count("reload failed")
    write_atomic(srv.config_path, text)
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout * TIME_SCALE
    while f"generation {want} is serving" not in log:
        if log.count("reload failed") > failures or not srv.alive() \
                or time.monotonic() > deadline:
            pytest.fail(f"no `generation {want} is serving` after SIGHUP (daemon "
                        f"{'running' if srv.alive() else 'gone'}); stderr:\n{log[-3000:]}")
        time.sleep(0.02)
        log = srv.stderr_text()
    return want


def reloads_under_load(srv, texts, verify, url, h2load_args=(), rounds=6):
    """ROUNDS reloads of SRV, cycling through the config TEXTS (TEXTS[0] must be
    the one serving now; the first reload writes TEXTS[1]), while h2load runs
    back to back on URL with H2LOAD_ARGS (-c/-m/-H...), a whole run between
    two reloads. VERIFY(i) is called first with 0, then after each reload,
    once the log says it serves, with the index of the text written: it must
    check, with requests started now, that TEXTS[i] answers (so a reload that
    changes nothing fails). The daemon must stay the same process throughout,
    and every h2load request must succeed with a 2xx. Returns the counts of
    every h2load run."""
    assert len(set(texts)) == len(texts) >= 2
    verify(0)
    stop = threading.Event()
    runs, errors = [], []

    def load():
        try:
            while not stop.is_set():
                runs.append(run_h2load("-n", max(1000, load_n() // 50), "-t", 1, *h2load_args,
                                       url, timeout=300))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    t = threading.Thread(target=load, daemon=True)
    t.start()
    pid = srv.pid
    try:
        for r in range(1, rounds + 1):
            # a whole h2load run between two reloads (the next one starts at
            # once): the load goes on across every reload, however slow
            # the machine, with no timing assumed
            done, deadline = len(runs), time.monotonic() + 120 * TIME_SCALE
            while len(runs) == done and not errors:
                assert time.monotonic() < deadline, "no h2load run ended in 120 s"
                time.sleep(0.01)
            reload_config(srv, texts[r % len(texts)])
            assert srv.alive() and srv.pid == pid
            verify(r % len(texts))
    finally:
        stop.set()
        t.join(timeout=330)
    assert not errors, errors
    assert runs
    for n, out in runs:
        assert (n["failed"], n["errored"], n["timeout"]) == (0, 0, 0), out
        assert n["succeeded"] == n["done"] == n["total"] == n["2xx"], out
    return runs


class Server(_daemon.Server):
    """lib.daemon's Server with the integration suite's HTTP/2 client."""

    def client(self, **kw):
        return H2Client(kw.pop("host", self.host), kw.pop("port", self.port), **kw)


class ServerFactory(_daemon.ServerFactory):
    """lib.daemon's ServerFactory; its daemons are Servers with client()."""

    server_class = Server


def curl(args, timeout=20):
    """Runs curl with HTTP/2 prior knowledge; returns CompletedProcess (bytes)."""
    return subprocess.run(["curl", "--http2-prior-knowledge", "-sS", "--max-time", str(timeout),
                           *args], capture_output=True, timeout=timeout + 5,
                          stdin=subprocess.DEVNULL)


def parse_curl_headers(raw):
    """Parses `curl -D -` output: returns (status, {name: [values]}) of the last
    response block."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    blocks = [b for b in re.split(r"\r?\n\r?\n", text) if b.strip()]
    lines = blocks[-1].splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return status, headers


def h1_exchange(port, raw, timeout=10):
    """Sends RAW (bytes: one or more HTTP/1.1 requests, the last with
    connection: close) on a new connection and reads until the server closes
    it: (status, [(lowercase name, value)], body) of the first answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    return int(lines[0].split()[1]), [(k.lower(), v) for k, v in fields], body


def self_signed(d, cn="localhost", sans=("IP:127.0.0.1",), key="k.pem", crt="c.pem"):
    """A P-256 certificate for CN and SANS signed by its own key, written to
    D/CRT and D/KEY (two days valid). Returns (crt path, key path)."""
    k, c = pathlib.Path(d) / key, pathlib.Path(d) / crt
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
                        "-addext", "subjectAltName=" + ",".join(sans), "-keyout", str(k),
                        "-out", str(c)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return c, k


def module_cflags():
    """`pkg-config --cflags celeris-module` with the .pc meson generated,
    pointed at the header in this tree (no install needed)."""
    pc_dir = pathlib.Path(BINARY).resolve().parent / "meson-private"
    header_dir = REPO / "server" / "include"
    p = subprocess.run(["pkg-config", f"--define-variable=includedir={header_dir}", "--cflags",
                        "celeris-module"], env=dict(os.environ, PKG_CONFIG_PATH=str(pc_dir)),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert str(header_dir) in p.stdout, p.stdout
    return p.stdout.split()


def build_module(src, out, *extra, cflags=None):
    """Builds module source file SRC into OUT as a module author would."""
    cmd = ["cc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", *(cflags or module_cflags()),
           *extra, "-o", str(out), str(src)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return out


def strace_calls(pid, client):
    """Runs CLIENT (a command, or a function) while strace -c -f counts the
    system calls of every thread of PID: (the command's CompletedProcess or
    the function's result, {call: count}, strace's summary)."""
    args = ["strace", "-c", "-f"]
    for t in os.listdir(f"/proc/{pid}/task"):
        args += ["-p", t]
    tr = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0 * TIME_SCALE)   # strace attaches to every thread
        p = (client() if callable(client) else
             subprocess.run(client, capture_output=True, timeout=90 * TIME_SCALE))
    finally:
        tr.send_signal(signal.SIGINT)
        _, summary = tr.communicate(timeout=30 * TIME_SCALE)
    calls = {m.group(2): int(m.group(1))
             for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$",
                                  summary, re.M)}
    calls.pop("total", None)
    return p, calls, summary
