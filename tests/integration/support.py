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
import socket
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from h2client import H2Client  # noqa: E402
from lib import daemon as _daemon  # noqa: E402
from lib.daemon import (BINARY, REPO, STARTUP_TIMEOUT, STOP_TIMEOUT,  # noqa: E402,F401
                        TIME_SCALE, expect_config_error, free_port, ipv6_loopback_available,
                        require_binary, run_celerisd, wait_port)
from lib.h2load import h2load_counts, run_h2load  # noqa: E402,F401


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
