"""The module ABI's binding: a module that calls a celeris_* function this
daemon does not export is refused before it is loaded, with an error that
names the function, the route and both versions (not the loader's bare
"undefined symbol"), at -t, at start and at reload (which keeps the old
configuration serving); modules built against the header as it was before the
descriptor grew still load."""

import pathlib
import re
import signal
import subprocess
import time

import pytest

from support import BINARY, REPO, build_module, curl, module_cflags, run_celerisd

MODULES = pathlib.Path(BINARY).resolve().parent / "modules"

# Declares a function no celerisd has, as a newer celeris/module.h would.
NEEDS_NEWER_SRC = r"""
#include <celeris/module.h>

int celeris_resp_from_the_future(celeris_req *req, int status);
int celeris_req_also_missing(celeris_req *req);

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    if (celeris_req_also_missing(req))
        return CELERIS_ERROR;
    return celeris_resp_from_the_future(req, 200);
}

CELERIS_MODULE(newer) = {
    CELERIS_MODULE_HEADER,
    .name = "newer",
    .handle = handle,
};
"""

# The same function declared weak: the module tests for it and carries on.
WEAK_SRC = r"""
#include <celeris/module.h>

int celeris_resp_from_the_future(celeris_req *req, int status);
#pragma weak celeris_resp_from_the_future

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    if (celeris_resp_from_the_future)
        return celeris_resp_from_the_future(req, 200);
    celeris_resp_header(req, "connection", "close"); /* refused, and logged */
    return celeris_resp_send(req, 200, "fallback\n", 9);
}

CELERIS_MODULE(weakling) = {
    CELERIS_MODULE_HEADER,
    .handle = handle,
};
"""

OLD_SRC = r"""
#include <celeris/module.h>

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    return celeris_resp_send(req, 200, "old header\n", 11);
}

CELERIS_MODULE(old) = {
    CELERIS_MODULE_HEADER,
    .name = "old",
    .handle = handle,
};
"""

VERSION = re.search(r"version\s*:\s*'([^']+)'", (REPO / "meson.build").read_text()).group(1)


def config(moddir, port, route="/x", module="newer"):
    return f"""listen: "127.0.0.1:{port}"
modules_dir: {moddir}
routes:
  - path: /hello
    module: {{ name: hello }}
  - path: {route}
    module: {{ name: {module} }}
"""


def expect_binding_error(text, moddir, route="/x", built=VERSION,
                         why=", which does not declare it either"):
    """The error names the module, the route, a missing function (either: the
    symbol table's order decides), this celerisd's version and ABI, and the
    header the module was built with."""
    path = moddir / "newer.so"
    want = (re.escape(f'module "{path}" (route "{route}") needs ')
            + "(celeris_req_also_missing|celeris_resp_from_the_future)"
            + re.escape(f" (and 1 more celeris_* function), which this celerisd {VERSION} "
                        f"(module ABI 1) does not have: the module was built against the "
                        f"celeris/module.h of celerisd {built}{why}"))
    assert re.search(want, text), text
    assert "undefined symbol" not in text, text


@pytest.fixture
def moddir(tmp_path):
    d = tmp_path / "mods"
    d.mkdir()
    (d / "hello.so").write_bytes((MODULES / "hello.so").read_bytes())
    return d


@pytest.mark.parametrize("bind", ["lazy", "now"])
def test_check_names_missing_function_and_versions(tmp_path, moddir, bind):
    src = tmp_path / "newer.c"
    src.write_text(NEEDS_NEWER_SRC)
    extra = ["-Wl,-z,now"] if bind == "now" else ["-Wl,-z,lazy"]
    build_module(src, moddir / "newer.so", *extra)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config(moddir, 1))
    p = run_celerisd(["-t", "-c", str(cfg)])
    assert p.returncode != 0, p.stdout + p.stderr
    expect_binding_error(p.stdout + p.stderr, moddir)
    assert f"{cfg}:" in p.stdout + p.stderr  # a config error, placed in the file


def test_start_fails_with_the_binding_error(tmp_path, moddir):
    """Built against a newer header (this one with its minor version raised)."""
    inc = tmp_path / "newinc"
    (inc / "celeris").mkdir(parents=True)
    header = (REPO / "server" / "include" / "celeris" / "module.h").read_text()
    newer, n = re.subn(r"#define CELERIS_VERSION_MINOR \d+", "#define CELERIS_VERSION_MINOR 99",
                       header)
    assert n == 1
    (inc / "celeris" / "module.h").write_text(newer)
    src = tmp_path / "newer.c"
    src.write_text(NEEDS_NEWER_SRC)
    build_module(src, moddir / "newer.so", cflags=["-I" + str(inc)])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config(moddir, 1, route="/future/:id"))
    p = subprocess.run([BINARY, "-c", str(cfg)], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert p.returncode != 0, p.stdout + p.stderr
    major = VERSION.split(".")[0]
    expect_binding_error(p.stdout + p.stderr, moddir, route="/future/:id",
                         built=f"{major}.99.0", why=": run it on that release or a later one")


def test_reload_with_it_keeps_the_old_config_serving(celerisd, tmp_path, moddir):
    src = tmp_path / "newer.c"
    src.write_text(NEEDS_NEWER_SRC)
    build_module(src, moddir / "newer.so")
    srv = celerisd(f"""modules_dir: {moddir}
routes:
  - path: /hello
    module: {{ name: hello }}
""")
    p = curl([srv.url("/hello")])
    assert p.returncode == 0 and p.stdout, p.stderr
    before = p.stdout
    srv.config_path.write_text(config(moddir, srv.port))
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while "reload failed" not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.05)
    expect_binding_error(srv.stderr_text(), moddir)
    assert "generation 2 is serving" not in srv.stderr_text()
    p = curl([srv.url("/hello")])
    assert p.returncode == 0 and p.stdout == before, p.stderr
    p = curl(["-o", "/dev/null", "-w", "%{http_code}", srv.url("/x")])
    assert p.stdout == b"404", p.stdout


def test_weak_reference_to_a_missing_function_loads(celerisd, tmp_path, moddir):
    src = tmp_path / "weak.c"
    src.write_text(WEAK_SRC)
    build_module(src, moddir / "weakling.so")
    srv = celerisd(f"""modules_dir: {moddir}
routes:
  - path: /w
    module: {{ name: weakling }}
""")
    p = curl([srv.url("/w")])
    assert p.returncode == 0 and p.stdout == b"fallback\n", p.stderr
    # no .name: the log names the module by what CELERIS_MODULE was given
    deadline = time.monotonic() + 10
    while 'module weakling on route "/w": celeris_resp_header refused' not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.05)


def test_module_name_must_be_an_identifier(tmp_path):
    src = tmp_path / "bad.c"
    src.write_text(OLD_SRC.replace("CELERIS_MODULE(old)", 'CELERIS_MODULE("old")'))
    p = subprocess.run(["cc", "-shared", "-fPIC", *module_cflags(), "-o", str(tmp_path / "b.so"),
                        str(src)], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0, "CELERIS_MODULE took a string"


def test_examples_and_modules_built_with_the_old_header_still_load(celerisd, tmp_path):
    """The examples (built with this header) and a module built against the
    header before the descriptor gained declared_name and header_version (a
    smaller `size`): both still load and serve."""
    old_inc = tmp_path / "oldinc"
    (old_inc / "celeris").mkdir(parents=True)
    old = subprocess.run(["git", "-C", str(REPO), "show",
                          "f0c2f5f:server/include/celeris/module.h"],
                         capture_output=True, text=True, timeout=30)
    if old.returncode != 0:
        pytest.skip("no git history for the old header: " + old.stderr)
    assert "declared_name" not in old.stdout
    (old_inc / "celeris" / "module.h").write_text(old.stdout)
    src = tmp_path / "old.c"
    src.write_text(OLD_SRC)
    moddir = tmp_path / "mods2"
    moddir.mkdir()
    build_module(src, moddir / "old.so", cflags=["-I" + str(old_inc)])
    for name in ("hello", "echo", "counter", "delay"):
        (moddir / f"{name}.so").write_bytes((MODULES / f"{name}.so").read_bytes())
    srv = celerisd(f"""modules_dir: {moddir}
routes:
  - path: /old
    module: {{ name: old }}
  - path: /hello
    module: {{ name: hello }}
  - path: /echo
    module: {{ name: echo }}
  - path: /counter
    module: {{ name: counter }}
  - path: /delay
    module: {{ name: delay, config: {{ ms: 1 }} }}
""")
    p = curl([srv.url("/old")])
    assert p.returncode == 0 and p.stdout == b"old header\n", p.stderr
    for path in ("/hello", "/counter", "/delay"):
        p = curl(["-o", "/dev/null", "-w", "%{http_code}", srv.url(path)])
        assert p.stdout == b"200", (path, p.stdout)
