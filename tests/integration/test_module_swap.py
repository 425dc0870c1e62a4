"""Module hot swap: the .so file of a loaded module replaced on disk, by `cp`
over it (same inode, rewritten in place) or atomically (`install`, a new
inode), with and without SIGHUP, under load. Every load runs from a private
copy, so a rewrite never touches mapped code, and every reload runs the code
that is on disk at that moment."""

import concurrent.futures
import os
import shutil
import signal
import subprocess
import threading
import time

from support import build_module, h2load_counts, module_cflags

# Each variant answers its own body and carries a different amount of code, so
# two builds differ in their text pages, not only in a string.
VARIANT_SRC = r"""
#include <celeris/module.h>

#define STR2(x) #x
#define STR(x) STR2(x)

static volatile unsigned sink;
#define PAD1 sink += 1u;
#define PAD4 PAD1 PAD1 PAD1 PAD1
#define PAD16 PAD4 PAD4 PAD4 PAD4
#define PAD64 PAD16 PAD16 PAD16 PAD16

__attribute__((noinline)) static void pad(void)
{
    for (int i = 0; i < PADS; i++) {
        PAD64
    }
}

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    pad();
    celeris_resp_header(req, "content-type", "text/plain");
    return celeris_resp_send(req, 200, STR(BODY), sizeof(STR(BODY)) - 1);
}

CELERIS_MODULE(variant) = {
    CELERIS_MODULE_HEADER,
    .name = "variant",
    .handle = handle,
};
"""


def build_variants(tmp_path, n, *extra):
    """N modules answering v0 .. v<N-1>, built in parallel."""
    src = tmp_path / "variant.c"
    src.write_text(VARIANT_SRC)
    cflags = module_cflags()
    out = tmp_path / "builds"
    out.mkdir()

    def one(i):
        return build_module(src, out / f"v{i}.so", f"-DBODY=v{i}", f"-DPADS={1 + i % 5}",
                            *extra, cflags=cflags)

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        return list(ex.map(one, range(n)))


class Load:
    """h2load on URL, run after run, in the background until stop()."""

    def __init__(self, url):
        self.url = url
        self.stop_ev = threading.Event()
        self.runs = []
        self.thread = threading.Thread(target=self.loop)
        self.thread.start()

    def loop(self):
        while not self.stop_ev.is_set():
            p = subprocess.run(["h2load", "-n", "4000", "-c", "4", "-m", "4", self.url],
                               capture_output=True, text=True, timeout=120)
            self.runs.append(p.stdout + p.stderr)  # read in stop(): a failure there is the test's

    def stop(self):
        self.stop_ev.set()
        self.thread.join(timeout=180)
        assert not self.thread.is_alive()
        assert self.runs, "h2load never ran"
        done = 0
        for out in self.runs:
            c = h2load_counts(out)
            assert (c["failed"], c["errored"]) == (0, 0), out
            assert c["succeeded"] == c["done"] == c["total"], out
            done += c["done"]
        return done


def module_copies(pid):
    """How many private module copies (memfds) PID holds open."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:celeris-module")
        except FileNotFoundError:
            pass
    return n


def wait_generation(srv, gen, timeout=20):
    deadline = time.monotonic() + timeout
    while f"generation {gen} is serving" not in srv.stderr_text():
        assert srv.proc.poll() is None, srv.stderr_text()[-4000:]
        assert time.monotonic() < deadline, srv.stderr_text()[-4000:]
        time.sleep(0.01)


def body(srv):
    with srv.client(timeout=20) as c:
        r = c.get("/v")
        assert r.status == 200, r.status
        return r.body


def start(celerisd, so):
    return celerisd(f"""workers: 2
routes:
  - path: /v
    module: {{ path: {so} }}
""")


def test_cp_over_loaded_module_keeps_old_code(celerisd, tmp_path):
    """`cp new.so x.so` rewrites the file in place: the first load, too, must
    run from its own copy (before: SIGBUS under load, a segfault or the new
    string idle). SIGHUP then loads what cp wrote."""
    v = build_variants(tmp_path, 3)
    so = tmp_path / "x.so"
    shutil.copy(v[0], so)
    srv = start(celerisd, so)
    assert body(srv) == b"v0"
    load = Load(srv.url("/v"))
    try:
        time.sleep(0.3)
        shutil.copyfile(v[1], so)  # what cp does: truncate, then write
        time.sleep(0.3)
        assert srv.proc.poll() is None, srv.stderr_text()[-4000:]
        assert body(srv) == b"v0"
        srv.send_signal(signal.SIGHUP)
        wait_generation(srv, 2)
        assert body(srv) == b"v1"
        shutil.copyfile(v[2], so)
        assert body(srv) == b"v1"
        srv.send_signal(signal.SIGHUP)
        wait_generation(srv, 3)
        assert body(srv) == b"v2"
    finally:
        load.stop()
    # idle: a rewrite without SIGHUP, then a request
    shutil.copyfile(v[0], so)
    time.sleep(0.1)
    assert body(srv) == b"v2"
    assert srv.proc.poll() is None, srv.stderr_text()[-4000:]


def test_twenty_atomic_swaps_under_load(celerisd, tmp_path):
    """install -m 755 of 20 builds in a row, SIGHUP after each, h2load all the
    while: after each reload the new build answers (before: 18 of 20 kept the
    previous one while logging that the new one was loaded), 0 failed requests."""
    n = 20
    v = build_variants(tmp_path, n + 1)
    so = tmp_path / "x.so"
    shutil.copy(v[0], so)
    srv = start(celerisd, so)
    assert body(srv) == b"v0"
    load = Load(srv.url("/v"))
    seen = []
    try:
        for i in range(1, n + 1):
            p = subprocess.run(["install", "-m", "755", str(v[i]), str(so)],
                               capture_output=True, text=True, timeout=30)
            assert p.returncode == 0, p.stderr
            srv.send_signal(signal.SIGHUP)
            wait_generation(srv, i + 1)
            seen.append(body(srv).decode())
    finally:
        done = load.stop()
    assert seen == [f"v{i}" for i in range(1, n + 1)]
    assert done > 0
    # the 20 old versions are unloaded with their generations: one copy is left
    deadline = time.monotonic() + 10
    while module_copies(srv.pid) != 1:
        assert time.monotonic() < deadline, module_copies(srv.pid)
        time.sleep(0.05)
    assert srv.stderr_text().count("changed on disk: loaded the new version") == n


def test_swaps_of_modules_that_never_unload(celerisd, tmp_path):
    """A module the dynamic loader keeps after dlclose (-z nodelete, as C++
    unique symbols do) keeps its /proc/self/fd/N name after its copy's fd is
    closed and reused: the next copy must get a name nothing holds."""
    v = build_variants(tmp_path, 7, "-Wl,-z,nodelete")
    so = tmp_path / "x.so"
    shutil.copy(v[0], so)
    srv = start(celerisd, so)
    assert body(srv) == b"v0"
    for i in range(1, 7):
        shutil.copyfile(v[i], so)
        srv.send_signal(signal.SIGHUP)
        wait_generation(srv, i + 1)
        assert body(srv) == f"v{i}".encode()


def test_cp_p_keeping_size_and_mtime_is_still_a_new_version(celerisd, tmp_path):
    """`cp -p` of a build of the same size and mtime over the file: only the
    ctime tells the versions apart, and SIGHUP must load the new one."""
    src = tmp_path / "variant.c"
    src.write_text(VARIANT_SRC)
    a = build_module(src, tmp_path / "a.so", "-DBODY=va", "-DPADS=1")
    b = build_module(src, tmp_path / "b.so", "-DBODY=vb", "-DPADS=1")
    assert a.stat().st_size == b.stat().st_size
    so = tmp_path / "x.so"
    shutil.copy(a, so)
    stamp = (1_700_000_000, 1_700_000_000)
    os.utime(so, stamp)
    os.utime(b, stamp)
    srv = start(celerisd, so)
    assert body(srv) == b"va"
    time.sleep(0.05)  # a ctime the first one does not have
    p = subprocess.run(["cp", "-p", str(b), str(so)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert so.stat().st_mtime_ns == stamp[1] * 10**9
    assert body(srv) == b"va"
    srv.send_signal(signal.SIGHUP)
    wait_generation(srv, 2)
    assert body(srv) == b"vb"
