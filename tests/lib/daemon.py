"""Starting and stopping celerisd, for every test suite.

    factory = ServerFactory(tmp_path)
    srv = factory('routes: [...]')           # {port}, {port2}... filled in
    srv.port, srv.url("/a"), srv.pid, srv.stderr_text()
    srv.stop()                               # SIGTERM by PID, then SIGKILL
    problems = factory.teardown()            # every daemon stopped; exit codes
    expect_config_error(path, 2, 14, ["timeout"])   # -t refuses it, placed

start() is the step under it (an existing config file, the addresses to wait
for), for suites that manage their own config files (tests/scaleout).
Nothing here waits without a deadline.
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BINARY = os.path.abspath(os.environ.get("CELERISD", str(REPO / "build" / "celerisd")))
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# Wall-clock and CPU upper bounds are multiplied by this: scripts/test sets
# $CELERIS_ATTACK_SCALE to 3 for the sanitizer build, whose daemon is slower.
TIME_SCALE = float(os.environ.get("CELERIS_ATTACK_SCALE", "1"))


# Ports free_port has handed out in this process: the kernel may give the
# port it just gave again once the probing socket is closed, and two ports
# asked for in a row (one daemon's two listeners) then came out the same
# (seen: 'listen address "127.0.0.1:59299" is given twice').
_handed_out = set()


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (bind port 0, read it, close),
    and never one this process was given before."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def require_binary(wait=0.0):
    """Fails the test when BINARY is not an executable file, after waiting up to
    WAIT s for it (a build may be relinking it)."""
    deadline = time.monotonic() + wait
    while not (os.path.isfile(BINARY) and os.access(BINARY, os.X_OK)):
        if time.monotonic() >= deadline:
            pytest.fail(f"celerisd binary not found at {BINARY} (set CELERISD or build it with "
                        f"`meson setup build && ninja -C build`)")
        time.sleep(0.5)


def run_celerisd(args, timeout=15, **kw):
    """Runs celerisd with ARGS to completion (for -t, -V, -h, bad configs)."""
    require_binary()
    return subprocess.run([BINARY, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def expect_config_error(path, line, col=None, words=(), start=False, timeout=15):
    """Runs `celerisd -t -c PATH` (START: a plain start on PATH instead) and
    fails the test unless it refuses the file as a config error: exit code 1
    (not 0, not a signal, not still running after TIMEOUT s) and a line
    `PATH:LINE:COL: MESSAGE` on stderr whose MESSAGE holds every one of WORDS
    (case-sensitive). COL None: any column. Returns MESSAGE."""
    args = ["-c", str(path)] if start else ["-t", "-c", str(path)]
    how = "celerisd " + " ".join(args[:-1])
    try:
        r = run_celerisd(args, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{how} still running after {timeout} s on a config it must refuse")
    at = re.escape(f"{path}:{line}:") + (r"\d+" if col is None else str(col))
    m = re.search(at + r": (\S.*)$", r.stderr, re.M)
    assert r.returncode == 1 and m, \
        (f"{how}: expected exit 1 and `{path}:{line}:{'COL' if col is None else col}: "
         f"message`, got exit {r.returncode}; stderr:\n{r.stderr}")
    # a sanitizer's report (its exit code may be 1 as well) is no config error
    assert "Sanitizer" not in r.stderr and "runtime error:" not in r.stderr, r.stderr
    for w in words:
        assert w in m.group(1), f"{how}: {w!r} not in the message {m.group(1)!r}"
    return m.group(1)


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
    """A running daemon: PROC, its config, where its output goes, its ports."""

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

    def alive(self):
        return self.proc.poll() is None

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


def start(config_path, stdout_path, stderr_path, listen, args=(),
          startup_timeout=STARTUP_TIMEOUT, server_class=Server, started=None):
    """Starts BINARY on CONFIG_PATH in its own session and waits until every
    (host, port) of LISTEN accepts connections. STDOUT_PATH None: discarded.
    STARTED(srv) is called before the wait, so that the caller can stop a
    daemon that fails it. Returns a SERVER_CLASS (host and port of LISTEN's
    first entry)."""
    require_binary()
    with open(stdout_path or os.devnull, "wb") as fo, open(stderr_path, "wb") as fe:
        proc = subprocess.Popen([BINARY, *args, "-c", str(config_path)], stdout=fo, stderr=fe,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    srv = server_class(proc, config_path, stdout_path, stderr_path, [p for _, p in listen],
                       listen[0][0])
    if started:
        started(srv)
    for h, p in listen:
        wait_port(h, p, proc, startup_timeout, stderr_path)
    return srv


class ServerFactory:
    """Daemons from inline YAML in DIRECTORY. The text may contain {port} (and
    {port2}, {port3}... for more listen addresses: ask with ports=N); without a
    `listen:` key, a listen line for HOST:{port} is put in front. Only these
    markers are replaced (plain string replacement, so YAML flow mappings and
    {{placeholders}} are untouched)."""

    server_class = Server

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
        def started(srv):
            srv.host = host
            self.servers.append(srv)

        return start(path, self.dir / f"celerisd-{n}.stdout", self.dir / f"celerisd-{n}.stderr",
                     list(zip(hosts, port_list)), args, startup_timeout, self.server_class,
                     started)

    def teardown(self):
        """Stops every daemon; returns a problem per one that did not exit with
        its expect_exit (0 unless the test said otherwise; None: any)."""
        problems = []
        for srv in self.servers:
            rc, _ = srv.stop()
            if srv.expect_exit is not None and rc != srv.expect_exit:
                problems.append(f"celerisd pid {srv.pid} exited with {rc} on SIGTERM "
                                f"(expected {srv.expect_exit}); stderr tail:\n"
                                f"{srv.stderr_text()[-4000:]}")
        return problems
