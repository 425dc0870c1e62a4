"""Fixtures for the hostile-peer tests of celerisd.

The daemon is started by the launcher every suite shares (tests/lib/daemon.py,
through tests/integration/support.py, whose servers carry the HTTP/2 client
the good client uses) from inline YAML on a free loopback port, and stopped
by PID; the attacker's frames come from tests/lib/h2frames.py (rawh2.py). Every test gets a `target`:

    def test_x(target):
        srv = target.start(limits={"idle_timeout": "2s"})   # daemon + a good client
        a = RawH2(srv.port)                                # the attacker
        ... attack ...
        target.check(a.goaway is not None, "no GOAWAY: " + a.describe())
        target.finish()     # good client ok, memory bounded, descriptors let go,
                            # alive, exits 0 on SIGTERM

target.finish() collects every problem (the attack's own checks first) and
fails once with all of them, so a failure report says everything that went
wrong. A test that does not reach finish() (it failed first, or forgot it) is
still judged at teardown: a daemon that died, exits with another code than 0
on SIGTERM or wrote a sanitizer report there is an error of the test.
"""

import os
import pathlib
import sys
import threading
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE))

from support import ServerFactory  # noqa: E402
from hostile import BIG_SIZE, SCALE, proc_fds, proc_status  # noqa: E402
import rawh2  # noqa: E402
from rawh2 import err_name  # noqa: E402

# Memory the daemon may gain (peak RSS during the test over the RSS before the
# attack). An attack that makes it buffer per frame, per stream or per
# connection without bound goes far past this.
MEMORY_BOUND_KIB = int(os.environ.get("CELERIS_ATTACK_MEM_KIB", 64 * 1024))

# Once every client has closed, the daemon must let go of each connection's
# descriptor within this long (it reads the EOF, or a write fails on the
# reset), and hold no more other descriptors than before the attack.
FD_SETTLE_S = 5.0 * SCALE

ROUTES = """
routes:
  - path: /small
    static: { body: "small" }
  - path: /big
    static: { file: big.bin }
  - path: /upload
    methods: [POST]
    static: { body: "uploaded" }
"""


def alive(srv):
    return srv.proc.poll() is None


class GoodClient:
    """A well-behaved client on its own connection: GET PATH in a loop from a
    thread, each request with a deadline; every failure is recorded."""

    def __init__(self, srv, path="/small", expect=b"small", interval=0.01, timeout=5.0):
        self.srv = srv
        self.path = path
        self.expect = expect
        self.interval = interval
        self.timeout = timeout
        self.ok = 0
        self.failures = []
        self.worst = 0.0
        self._stop = threading.Event()
        self.client = srv.client(timeout=timeout)
        self._check(lambda: self.client.get(path, timeout=timeout), "first request")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _check(self, fn, what):
        t0 = time.monotonic()
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            self.failures.append(f"{what}: {type(e).__name__}: {str(e)[:300]}")
            return False
        took = time.monotonic() - t0
        self.worst = max(self.worst, took)
        if r.status != 200 or r.body != self.expect:
            self.failures.append(f"{what}: {r!r}")
            return False
        self.ok += 1
        return True

    def _run(self):
        deadline = time.monotonic() + 120  # bounded even if stop() is never called
        while not self._stop.is_set() and time.monotonic() < deadline:
            if not self._check(lambda: self.client.get(self.path, timeout=self.timeout),
                               f"request {self.ok + len(self.failures) + 1} during the attack"):
                return  # the connection is broken: one failure says it
            self._stop.wait(self.interval)

    def stop(self):
        """Stops the loop; then one more request on the same connection and one on
        a new connection must succeed."""
        self._stop.set()
        self.thread.join(timeout=self.timeout + 5)
        if self.thread.is_alive():
            self.failures.append("the good client's request loop did not finish")
            return
        during = self.ok
        if not self.failures:
            self._check(lambda: self.client.get(self.path, timeout=self.timeout),
                        "request on the same connection after the attack")
        self.client.close()

        def fresh():
            with self.srv.client(timeout=self.timeout) as c:
                return c.get(self.path, timeout=self.timeout)

        self._check(fresh, "request on a new connection after the attack")
        return during


class Target:
    def __init__(self, tmp_path):
        self.factory = ServerFactory(tmp_path)
        self.dir = pathlib.Path(tmp_path)
        self.srv = None
        self.good = None
        self.problems = []
        self.rss_before = None
        self.fds_before = None
        self.t_attack = None
        self.finished = False
        self.exit_checked = False  # the daemon was stopped and its exit judged
        (self.dir / "big.bin").write_bytes(bytes(range(256)) * (BIG_SIZE // 256))

    def start(self, limits=None, workers=1, good=True, log_level="warn"):
        lim = {"idle_timeout": "30s", "header_timeout": "30s", "write_timeout": "30s"}
        lim.update(limits or {})
        text = f"workers: {workers}\nlog: {{ level: {log_level} }}\nlimits:\n"
        text += "".join(f"  {k}: {v}\n" for k, v in lim.items())
        text += ROUTES
        self.srv = self.factory(text)
        if good:
            self.good = GoodClient(self.srv)
        # Settle, then take the baseline with the good client running.
        time.sleep(0.05)
        self.rss_before = proc_status(self.srv.pid, "VmRSS")
        fds = proc_fds(self.srv.pid, self.srv.port)
        self.fds_before = fds[1] if fds else None
        self.t_attack = time.monotonic()
        return self.srv

    def check(self, cond, message):
        if not cond:
            self.problems.append(message)
        return bool(cond)

    def expect_goaway(self, a, codes, t0, within, closed_within=3.0 * SCALE):
        """(a) for a connection-level defence: a GOAWAY with one of CODES arrives
        at most WITHIN s after T0, and the connection is then closed. Returns
        True when all holds (problems are recorded otherwise)."""
        a.read_until(lambda: a.goaway is not None, max(0.0, t0 + within - time.monotonic()))
        names = "/".join(err_name(c) for c in codes)
        if a.goaway is None:
            return self.check(False, f"expected GOAWAY {names} within {within} s; got none "
                                     f"after {time.monotonic() - t0:.1f} s: {a.describe()}")
        took = a.goaway_at - t0
        ok = self.check(a.goaway[1] in codes,
                        f"expected GOAWAY {names}; got {err_name(a.goaway[1])} after {took:.2f} s: "
                        f"{a.describe()}")
        ok &= self.check(took <= within, f"GOAWAY after {took:.2f} s, bound {within} s")
        if a.wait_closed(closed_within) is None:
            ok &= self.check(False, f"connection still open {closed_within} s after GOAWAY: "
                                    f"{a.describe()}")
        print(f"attacker: GOAWAY after {took:.3f} s: {a.describe()}")
        return ok

    def expect_closed(self, a, t0, within, what):
        """(a) for a timeout defence: the server ends the TCP connection at most
        WITHIN s after T0 (reading, and answering SETTINGS, meanwhile)."""
        a.read_until(lambda: False, max(0.0, t0 + within - time.monotonic()))
        if not a.closed:
            return self.check(False, f"{what}: connection still open {time.monotonic() - t0:.1f} s "
                                     f"after the start, bound {within} s: {a.describe()}")
        print(f"attacker: closed after {a.closed_at - t0:.3f} s: {a.describe()}")
        return a.closed_at - t0

    def finish(self):
        """(b) the good client, (c) memory, (d) alive and exit 0 on SIGTERM; then
        fails with every problem found, the attack's own first."""
        self.finished = True
        srv = self.srv
        was_alive = alive(srv)
        if not was_alive:
            self.problems.append(f"the daemon died during the attack: exit code "
                                 f"{srv.proc.returncode}; stderr tail:\n{srv.stderr_text()[-2000:]}")
        hwm = proc_status(srv.pid, "VmHWM")
        rss = proc_status(srv.pid, "VmRSS")
        if self.good is not None:
            during = self.good.stop()
            print(f"good client: {during} requests during the attack, worst {self.good.worst:.3f} s")
            if self.good.failures:
                self.problems.append("the good client failed: " + "; ".join(self.good.failures[:3]))
            elif during is not None and during < 1:
                self.problems.append("the good client completed no request during the attack")
        print(f"daemon memory: VmRSS {self.rss_before} kB before, VmHWM {hwm} kB, "
              f"VmRSS {rss} kB after")
        if hwm is not None and self.rss_before is not None:
            grew = hwm - self.rss_before
            self.check(grew < MEMORY_BOUND_KIB,
                       f"memory: VmHWM {hwm} kB vs VmRSS {self.rss_before} kB before the attack "
                       f"(+{grew} kB, bound +{MEMORY_BOUND_KIB} kB); VmRSS now {rss} kB")
        if was_alive:
            self.check_descriptors()
            self.problems += self.stop_daemon()
        else:
            self.exit_checked = True
            self.problems += sanitizer_report(srv)
        if self.problems:
            pytest.fail("\n".join(self.problems), pytrace=False)

    def check_descriptors(self):
        """(e) with every attacker and the good client closed, the daemon ends
        up holding no connection's descriptor and no more other descriptors
        than before the attack: a connection it forgot to close, or a file it
        forgot, stays open for the life of the process."""
        for a in list(rawh2.OPEN):
            a.close()
        srv = self.srv
        deadline = time.monotonic() + FD_SETTLE_S
        while True:
            fds = proc_fds(srv.pid, srv.port)
            if fds is None:
                return  # gone: judged by the exit
            conns, others = fds
            settled = not conns and (self.fds_before is None or others <= self.fds_before)
            if settled or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        print(f"daemon descriptors: {others} other than connections, {self.fds_before} "
              f"before the attack; {len(conns)} connections left")
        self.check(not conns, f"descriptors: {len(conns)} connection(s) still open "
                              f"{FD_SETTLE_S:.0f} s after every client closed "
                              f"(TCP state, inode): {conns[:10]}")
        if self.fds_before is not None:
            self.check(others <= self.fds_before,
                       f"descriptors: {others} other than live connections after the attack, "
                       f"{self.fds_before} before (a socket the peer reset, left open, "
                       f"counts here: it has left the TCP table)")

    def stop_daemon(self):
        """Stops the daemon by SIGTERM; the problems its exit shows: a code other
        than 0, a sanitizer's report on stderr."""
        srv = self.srv
        self.exit_checked = True
        rc, took = srv.stop()
        problems = sanitizer_report(srv)
        if rc != 0:
            problems.insert(0, f"exit code {rc} on SIGTERM (after {took:.1f} s); stderr tail:\n"
                               f"{srv.stderr_text()[-2000:]}")
        return problems

    def teardown(self):
        """Stops what the test left running and fails it (an error at teardown)
        with what it finds there: a test that did not reach finish(), because
        it failed first or never called it, still reports a daemon that died,
        exits with another code than 0 on SIGTERM or wrote a sanitizer report,
        and so does any other daemon it started through the factory."""
        problems = []
        if self.good is not None and not self.finished:
            self.good._stop.set()
            self.good.thread.join(timeout=10)
            self.good.client.close()
        if self.srv is not None and not self.exit_checked:
            if not alive(self.srv):
                self.exit_checked = True
                problems.append(f"the daemon died during the test: exit code "
                                f"{self.srv.proc.returncode}; stderr tail:\n"
                                f"{self.srv.stderr_text()[-2000:]}")
                problems += sanitizer_report(self.srv)
            else:
                problems += self.stop_daemon()
        if self.srv is not None:
            self.srv.expect_exit = None  # judged above, or by finish()
        problems += self.factory.teardown()
        if problems:
            pytest.fail("at teardown:\n" + "\n".join(problems), pytrace=False)


def sanitizer_report(srv):
    """A problem when the daemon's stderr holds an AddressSanitizer, LeakSanitizer
    or UndefinedBehaviorSanitizer report (with halt_on_error=0 the exit code
    does not say so)."""
    err = srv.stderr_text()
    if "Sanitizer" in err or "runtime error:" in err:
        return [f"sanitizer report on stderr:\n{err[-4000:]}"]
    return []


@pytest.fixture
def target(tmp_path):
    t = Target(tmp_path)
    yield t
    t.teardown()
