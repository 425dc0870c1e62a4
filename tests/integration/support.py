"""Helpers shared by the celerisd integration tests: the daemon binary, free
ports, running and stopping the daemon, curl."""

import os
import pathlib
import re
import signal
import socket
import subprocess
import time

import pytest

from h2client import H2Client

REPO = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.path.abspath(os.environ.get("CELERISD", str(REPO / "build" / "celerisd")))
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# Wall-clock and CPU upper bounds are multiplied by this: scripts/test sets
# $CELERIS_ATTACK_SCALE to 3 for the sanitizer build, whose daemon is slower.
TIME_SCALE = float(os.environ.get("CELERIS_ATTACK_SCALE", "1"))


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


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (bind port 0, read it, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def require_binary():
    if not os.path.isfile(BINARY) or not os.access(BINARY, os.X_OK):
        pytest.fail(f"celerisd binary not found at {BINARY} (set CELERISD or build it with "
                    f"`meson setup build && ninja -C build`)")


def run_celerisd(args, timeout=15, **kw):
    """Runs celerisd with ARGS to completion (for -t, -V, -h, bad configs)."""
    require_binary()
    return subprocess.run([BINARY, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def wait_port(host, port, proc, timeout, stderr_path):
    """Waits until HOST:PORT accepts TCP. Fails the test if the process dies or
    the port does not open in time."""
    deadline = time.monotonic() + timeout
    while True:
        rc = proc.poll()
        if rc is not None:
            pytest.fail(f"celerisd exited with {rc} during startup; stderr:\n"
                        f"{pathlib.Path(stderr_path).read_text(errors='replace')}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"celerisd did not accept connections on {host}:{port} within "
                        f"{timeout}s; stderr:\n"
                        f"{pathlib.Path(stderr_path).read_text(errors='replace')}")
        time.sleep(0.02)


class Server:
    def __init__(self, proc, config_path, stdout_path, stderr_path, ports, host):
        self.proc = proc
        self.pid = proc.pid
        self.config_path = config_path
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.ports = ports
        self.port = ports[0]
        self.host = host
        self.expect_exit = 0
        self.returncode = None

    def url(self, path="/", port=None, host=None):
        host = host or self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port or self.port}{path}"

    def client(self, **kw):
        return H2Client(kw.pop("host", self.host), kw.pop("port", self.port), **kw)

    def stderr_text(self):
        return pathlib.Path(self.stderr_path).read_text(errors="replace")

    def stdout_text(self):
        return pathlib.Path(self.stdout_path).read_text(errors="replace")

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    def wait(self, timeout=STOP_TIMEOUT):
        """Waits for exit; returns the exit code (negative: killed by a signal).
        Raises subprocess.TimeoutExpired when it is still running."""
        self.returncode = self.proc.wait(timeout=timeout)
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends SIG (by PID) and waits up to TIMEOUT s, then SIGKILLs. Returns
        (exit code, seconds it took); the code is None when it had to be killed."""
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            return self.returncode, 0.0
        start = time.monotonic()
        os.kill(self.pid, sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
            self.returncode = None
            return None, time.monotonic() - start
        self.returncode = rc
        return rc, time.monotonic() - start


class ServerFactory:
    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.servers = []
        self.count = 0

    def write_config(self, text, ports=1, host="127.0.0.1", name=None, hosts=None):
        """Writes TEXT (markers replaced) to a file; returns (path, ports). HOSTS
        (one per port) says where each port must be free (default: HOST)."""
        hosts = hosts or [host] * ports
        port_list = [free_port(h) for h in hosts]
        if not re.search(r"^listen\s*:", text, re.M):
            h = f"[{host}]" if ":" in host else host
            text = f'listen: "{h}:{{port}}"\n' + text
        for i, p in enumerate(port_list):
            text = text.replace("{port}" if i == 0 else f"{{port{i + 1}}}", str(p))
        self.count += 1
        path = self.dir / (name or f"celerisd-{self.count}.yaml")
        path.write_text(text)
        return path, port_list

    def __call__(self, text, ports=1, host="127.0.0.1", hosts=None, args=(),
                 startup_timeout=STARTUP_TIMEOUT):
        """Starts celerisd on TEXT and waits until it accepts connections on each
        allocated port, on HOSTS[i] (one host per port) or else on HOST."""
        require_binary()
        hosts = hosts or [host] * ports
        path, port_list = self.write_config(text, len(hosts), host, hosts=hosts)
        n = self.count
        out = self.dir / f"celerisd-{n}.stdout"
        err = self.dir / f"celerisd-{n}.stderr"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = subprocess.Popen([BINARY, *args, "-c", str(path)], stdout=fo, stderr=fe,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        srv = Server(proc, path, out, err, port_list, host)
        self.servers.append(srv)
        for h, p in zip(hosts, port_list):
            wait_port(h, p, proc, startup_timeout, err)
        return srv

    def teardown(self):
        problems = []
        for srv in self.servers:
            rc, _ = srv.stop()
            if srv.expect_exit is not None and rc != srv.expect_exit:
                problems.append(f"celerisd pid {srv.pid} exited with {rc} on SIGTERM "
                                f"(expected {srv.expect_exit}); stderr tail:\n"
                                f"{srv.stderr_text()[-4000:]}")
        return problems


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
