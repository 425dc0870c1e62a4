"""The Debian packages, end to end.

Builds celerisd and celerisd-dev with scripts/package, installs both with
dpkg -i, checks and runs what they installed (as the celerisd user, on a free
port, without systemd), then purges them and checks that nothing is left.
The packages are purged even when a test fails.

    /usr/bin/python3 -m pytest tests/package

Needs root (it installs packages); skips otherwise, and skips on a machine
that already has a celerisd package or user, which it would clobber.
"""
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["celerisd-dev", "celerisd"]
SBIN = Path("/usr/sbin/celerisd")
CONF = Path("/etc/celerisd/celerisd.yaml")
LOGDIR = Path("/var/log/celerisd")
UNIT_PATHS = [Path("/lib/systemd/system/celerisd.service"),
              Path("/usr/lib/systemd/system/celerisd.service")]
EXAMPLE_MODULES = ["hello.so", "echo.so", "counter.so", "delay.so", "notes.so"]

# The module of the README, built against the installed header.
GREET_C = r"""
#include <celeris/module.h>

static int handle(void *instance, celeris_req *req)
{
    celeris_str name;
    (void)instance;
    celeris_req_param(req, "name", &name);
    celeris_resp_header(req, "content-type", "text/plain");
    return celeris_resp_printf(req, 200, "Hello, %.*s!\n", (int)name.len, name.ptr);
}

CELERIS_MODULE(greet) = { CELERIS_MODULE_HEADER, .name = "greet", .handle = handle };
"""


def run(*cmd, check=True, timeout=120, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {r.returncode}\n"
                    f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}")
    return r


def dpkg_state(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    return run("getent", "group", name, check=False).returncode == 0


def purge():
    subprocess.run(["dpkg", "--purge", *PACKAGES], capture_output=True, text=True,
                   timeout=300)


if os.geteuid() != 0:
    pytest.skip("installs packages: needs root", allow_module_level=True)
if not shutil.which("dpkg"):
    pytest.skip("not a Debian system", allow_module_level=True)
for _pkg in PACKAGES:
    if dpkg_state(_pkg) not in ("", "un"):
        pytest.skip(f"package {_pkg} is already on this machine ({dpkg_state(_pkg)}); "
                    "not replacing it", allow_module_level=True)
if user_exists("celerisd") or group_exists("celerisd"):
    pytest.skip("a celerisd user or group exists already; not touching it",
                allow_module_level=True)


@pytest.fixture(scope="module")
def debs():
    r = run(ROOT / "scripts" / "package", timeout=900)
    paths = [Path(line) for line in r.stdout.split() if line.endswith(".deb")]
    found = {}
    for pkg in PACKAGES:
        match = [p for p in paths if p.name.startswith(pkg + "_")]
        assert len(match) == 1, f"scripts/package printed no {pkg} .deb: {r.stdout}"
        found[pkg] = match[0]
    return found


@pytest.fixture(scope="module")
def installed(debs):
    try:
        run("dpkg", "-i", debs["celerisd"], debs["celerisd-dev"], timeout=300)
        yield debs
    finally:
        purge()


@pytest.fixture(scope="module")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="celerisd-pkgtest."))
    d.chmod(0o755)  # the daemon runs as celerisd and reads its config here
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def greet_so(installed, workdir):
    """The README's module, built out of tree with pkg-config."""
    src = workdir / "greet.c"
    src.write_text(GREET_C)
    cflags = run("pkg-config", "--cflags", "celeris-module").stdout.split()
    out = workdir / "greet.so"
    run("cc", "-shared", "-fPIC", "-Wall", "-Werror", *cflags, "-o", out, src)
    out.chmod(0o755)
    return out


def as_celerisd():
    pw = pwd.getpwnam("celerisd")
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl(port, path):
    r = run("curl", "-sS", "--http2-prior-knowledge", "--max-time", "10",
            "-o", "-", "-w", "\n%{http_code} %{http_version}",
            f"http://127.0.0.1:{port}{path}")
    body, _, tail = r.stdout.rpartition("\n")
    code, version = tail.split()
    assert version == "2", f"{path}: HTTP version {version}"
    return int(code), body


# ---- what the packages installed ----


def test_files_and_conffiles(installed):
    assert SBIN.is_file() and os.access(SBIN, os.X_OK)
    assert CONF.is_file()
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "celerisd").stdout
    for f in (CONF, "/etc/celerisd/www/logo.svg", "/etc/logrotate.d/celerisd"):
        assert f"{f} " in conffiles, conffiles
    assert Path("/usr/share/doc/celerisd/README.md").is_file()
    unit = UNIT_PATHS[0].read_text()
    assert re.search(r"^User=celerisd$", unit, re.M), unit
    assert not re.search(r"^DynamicUser=yes", unit, re.M), unit


def test_version(installed):
    out = run(SBIN, "-V").stdout.splitlines()
    version = run("dpkg-query", "-W", "-f=${Version}", "celerisd").stdout
    assert out[0] == f"celerisd {version}"
    assert [line.split()[0] for line in out[1:]] == ["libevent", "nghttp2", "libyaml",
                                                     "jansson"]


def test_shipped_config_is_valid(installed):
    # The default path, as root, and explicitly, as the service user.
    r = run(SBIN, "-t")
    assert "configuration ok" in r.stdout
    r = run(*as_celerisd(), SBIN, "-t", "-c", CONF)
    assert "configuration ok" in r.stdout


def test_user_and_log_dir(installed):
    pw = pwd.getpwnam("celerisd")
    assert pw.pw_uid < 1000, "not a system user"
    assert pw.pw_dir == "/nonexistent" and not Path(pw.pw_dir).exists()
    assert pw.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
    assert group_exists("celerisd")
    st = LOGDIR.stat()
    assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o750


def test_man_pages(installed):
    assert run("man", "-w", "celerisd").stdout.strip().endswith("/man8/celerisd.8.gz")
    assert run("man", "-w", "celerisd.yaml").stdout.strip().endswith(
        "/man5/celerisd.yaml.5.gz")
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="100")
    page = run("man", "5", "celerisd.yaml", env=env).stdout
    modules_dir = run("pkg-config", "--variable=modulesdir", "celeris-module").stdout.strip()
    assert "max_request_body" in page and modules_dir in page
    assert "@" not in page  # every placeholder was filled in
    page = run("man", "8", "celerisd", env=env).stdout
    assert "EXIT STATUS" in page and "SIGHUP" in page


def test_logrotate_config(installed):
    assert shutil.which("logrotate") or Path("/usr/sbin/logrotate").exists(), \
        "needs logrotate (scripts/deps test)"
    # -d: parse and say what would be done, change nothing.
    r = run("logrotate", "-d", "/etc/logrotate.d/celerisd")
    assert "error" not in r.stderr.lower(), r.stderr


def test_module_dev_files(installed, greet_so):
    assert Path("/usr/include/celeris/module.h").is_file()
    modules_dir = Path(run("pkg-config", "--variable=modulesdir",
                           "celeris-module").stdout.strip())
    for m in EXAMPLE_MODULES:
        assert (modules_dir / m).is_file(), f"{m} not in {modules_dir}"
    owner = run("dpkg", "-S", modules_dir / "hello.so").stdout
    assert owner.startswith("celerisd:"), owner
    assert greet_so.is_file()


# ---- the installed daemon serves ----


def test_installed_daemon_serves(installed, workdir, greet_so):
    port = free_port()
    conf = CONF.read_text()
    conf, n = re.subn(r"^listen:.*$", f'listen: "127.0.0.1:{port}"', conf, flags=re.M)
    assert n == 1, "the shipped config has no top-level listen line"
    assert re.findall(r"^(\w+):", conf, re.M)[-1] == "routes", "routes is not last"
    # The pid file logrotate's postrotate reads; /run/celerisd is the unit's
    # RuntimeDirectory, so here (no systemd) a directory of the service user's.
    assert re.search(r"^pid_file: /run/celerisd/celerisd\.pid$", conf, re.M), conf
    assert re.search(r"^RuntimeDirectory=celerisd$", UNIT_PATHS[0].read_text(), re.M)
    rundir = workdir / "run"
    rundir.mkdir()
    pw = pwd.getpwnam("celerisd")
    os.chown(rundir, pw.pw_uid, pw.pw_gid)
    pid_file = rundir / "celerisd.pid"
    conf = conf.replace("/run/celerisd/celerisd.pid", str(pid_file))
    conf += ("  - path: /greet/:name\n"
             '    module: { name: hello, config: { greeting: "Hi" } }\n'
             "  - path: /built/:name\n"
             f"    module: {{ path: {greet_so} }}\n")
    cfg = workdir / "celerisd.yaml"
    cfg.write_text(conf)
    cfg.chmod(0o644)
    shutil.copytree(CONF.parent / "www", workdir / "www", dirs_exist_ok=True)

    errlog = open(workdir / "stderr.log", "w+")
    proc = subprocess.Popen([*as_celerisd(), str(SBIN), "-c", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=errlog)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"celerisd exited {proc.returncode}: " + \
                (workdir / "stderr.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "celerisd is not listening"
                time.sleep(0.05)

        uid = [line.split()[1] for line in Path(f"/proc/{proc.pid}/status").read_text()
               .splitlines() if line.startswith("Uid:")][0]
        assert int(uid) == pwd.getpwnam("celerisd").pw_uid
        while not pid_file.exists():  # written just after the port opens
            assert time.monotonic() < deadline, (workdir / "stderr.log").read_text()
            time.sleep(0.05)
        assert pid_file.read_text() == f"{proc.pid}\n"

        assert curl(port, "/json") == (200, '{"message":"Hello, World!"}')
        assert curl(port, "/users/7/posts/9") == (200, '{"user":"7","post":"9"}')
        code, body = curl(port, "/assets/logo.svg")
        assert (code, body) == (200, (CONF.parent / "www" / "logo.svg").read_text())
        assert curl(port, "/greet/debian") == (200, "Hi, debian!\n")
        assert curl(port, "/built/debian") == (200, "Hello, debian!\n")
        assert curl(port, "/nope")[0] == 404

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not pid_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errlog.close()


# ---- and purging leaves nothing (keep this last) ----


def test_purge_leaves_nothing(installed):
    run("dpkg", "--purge", *PACKAGES, timeout=300)
    for pkg in PACKAGES:
        assert dpkg_state(pkg) in ("", "un"), f"{pkg}: {dpkg_state(pkg)}"
    leftovers = [p for p in [Path("/etc/celerisd"), SBIN, LOGDIR, *UNIT_PATHS,
                             Path("/etc/logrotate.d/celerisd"),
                             Path("/usr/include/celeris"),
                             Path("/usr/share/doc/celerisd"),
                             Path("/etc/systemd/system/multi-user.target.wants/"
                                  "celerisd.service")]
                 if p.exists() or p.is_symlink()]
    assert leftovers == []
    state = Path("/var/lib/systemd/deb-systemd-helper-enabled")
    assert not list(state.rglob("celerisd*")) if state.exists() else True
    assert not user_exists("celerisd"), "the celerisd user is left"
    assert not group_exists("celerisd"), "the celerisd group is left"
    assert run("man", "-w", "celerisd", check=False).returncode != 0
    assert run("pkg-config", "--exists", "celeris-module", check=False).returncode != 0
