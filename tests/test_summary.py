#!/usr/bin/python3
"""Checks tests/summary.py against a real meson run of each way a test can end.

Sets up tests/summary_fixture/ (a project whose tests pass, skip, fail after
their subtests passed, abort, time out, and pytest suites that skip, fail, are
killed at their time limit or crash after writing their JUnit file), runs
meson test on chosen suites, and compares the line summary.py ends with, its
exit status and the failures and skips it names. Prints TAP.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUMMARY = os.path.join(HERE, "summary.py")
FIXTURE = os.path.join(HERE, "summary_fixture")
MESON = shutil.which("meson") or "meson"


def run(*args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def summary(*dirs):
    r = run(sys.executable, SUMMARY, *dirs)
    return r.stdout.splitlines(), r.returncode


def meson_test(build, *suites):
    for f in ("testlog.json", "testlog.junit.xml"):
        try:
            os.unlink(os.path.join(build, "meson-logs", f))
        except FileNotFoundError:
            pass
    args = [MESON, "test", "-C", build, "--no-rebuild"]
    for s in suites:
        args += ["--suite", s]
    run(*args)  # its own exit status is not what is checked


# name, suites, last line, exit status, lines that must be named (substrings)
CASES = [
    ("TAP test, all passed", ["tap_pass"], "2 passed, 0 failed, 0 skipped", 0, []),
    ("TAP test exits non-zero after its subtests passed (LeakSanitizer)", ["tap_leak"],
     "2 passed, 1 failed, 0 skipped", 1, ["FAILED", "tap_leak: ERROR (exit 23)"]),
    ("TAP test aborts mid-run", ["tap_abort"], "1 passed, 1 failed, 0 skipped", 1,
     ["tap_abort: ERROR"]),
    ("TAP test times out", ["tap_timeout"], "1 passed, 1 failed, 0 skipped", 1,
     ["tap_timeout: TIMEOUT"]),
    ("TAP subtest skipped", ["tap_skip"], "1 passed, 0 failed, 1 skipped", 0,
     ["SKIPPED", "tap_skip: needs_ipv6: no IPv6 loopback"]),
    ("plain test times out", ["plain_timeout"], "0 passed, 1 failed, 0 skipped", 1,
     ["plain_timeout: TIMEOUT"]),
    ("plain test crashes", ["plain_crash"], "0 passed, 1 failed, 0 skipped", 1,
     ["plain_crash: FAIL"]),
    ("plain test skipped (exit 77)", ["plain_pass", "plain_skip"],
     "1 passed, 0 failed, 1 skipped", 0, ["SKIPPED", "plain_skip"]),
    ("should_fail test that passes", ["plain_xpass"], "0 passed, 1 failed, 0 skipped", 1,
     ["plain_xpass: UNEXPECTEDPASS"]),
    ("pytest suite with a skip", ["pytest_ok"], "2 passed, 0 failed, 1 skipped", 0,
     ["SKIPPED", "test_needs_module: needs a kernel module"]),
    ("pytest suite with a failing case", ["pytest_fail"], "1 passed, 1 failed, 0 skipped", 1,
     ["test_bad"]),
    ("pytest suite killed at its time limit (stale JUnit file from an earlier run)",
     ["pytest_slow"], "0 passed, 1 failed, 0 skipped", 1, ["pytest_slow: TIMEOUT"]),
    ("pytest suite that crashes after its cases passed", ["pytest_crash"],
     "1 passed, 1 failed, 0 skipped", 1, ["pytest_crash: FAIL (exit 3) after 1 of its cases"]),
    ("the issue's demo: 2 crashing TAP tests, a time-out, a pass",
     ["tap_leak", "tap_abort", "plain_timeout", "plain_pass"],
     "4 passed, 3 failed, 0 skipped", 1, ["tap_leak", "tap_abort", "plain_timeout"]),
]

STALE_JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5" failures="0" errors="0" skipped="0">
<testcase classname="old" name="a"/><testcase classname="old" name="b"/>
<testcase classname="old" name="c"/><testcase classname="old" name="d"/>
<testcase classname="old" name="e"/></testsuite></testsuites>
"""


def main():
    tmp = tempfile.mkdtemp(prefix="celeris-summary-")
    failures = 0
    n = 0
    total = len(CASES) + 3
    print(f"1..{total}", flush=True)

    def report(ok, name, lines, rc, want_line, want_rc):
        nonlocal n, failures
        n += 1
        print(f"{'ok' if ok else 'not ok'} {n} - {name}")
        if not ok:
            failures += 1
            print(f"# wanted {want_line!r} exit {want_rc}, got exit {rc}:")
            for ln in lines:
                print(f"#   {ln}")
        sys.stdout.flush()

    try:
        build = os.path.join(tmp, "build")
        r = run(MESON, "setup", build, FIXTURE)
        if r.returncode:
            print(f"Bail out! meson setup of the fixture failed:\n# {r.stdout}")
            return 1
        for name, suites, want_line, want_rc, named in CASES:
            if "pytest_slow" in suites:
                stale = os.path.join(build, "pytest_slow.junit.xml")
                with open(stale, "w") as f:
                    f.write(STALE_JUNIT)
                old = time.time() - 3600
                os.utime(stale, (old, old))
            meson_test(build, *suites)
            lines, rc = summary(build)
            ok = (lines and lines[-1] == want_line and rc == want_rc and
                  all(any(s in ln for ln in lines[:-1]) for s in named))
            report(ok, name, lines, rc, want_line, want_rc)

        # a build that failed to compile leaves no log: it must fail the whole line
        meson_test(build, "tap_pass")
        missing = os.path.join(tmp, "build-asan")
        os.mkdir(missing)
        lines, rc = summary(build, missing)
        want = "2 passed, 1 failed, 0 skipped"
        report(lines[-1:] == [want] and rc == 1 and any("build-asan: no test log" in ln
                                                        for ln in lines),
               "a build directory with no test log (did not build)", lines, rc, want, 1)

        # a log with no test in it, and no directory at all, ran nothing
        os.makedirs(os.path.join(missing, "meson-logs"))
        open(os.path.join(missing, "meson-logs", "testlog.json"), "w").close()
        lines, rc = summary(missing)
        want = "0 passed, 1 failed, 0 skipped"
        report(lines[-1:] == [want] and rc == 1, "an empty test log", lines, rc, want, 1)

        # scripts/fuzz writes its targets in meson's format
        fuzz = os.path.join(tmp, "build-fuzz", "meson-logs")
        os.makedirs(fuzz)
        with open(os.path.join(fuzz, "testlog.json"), "w") as f:
            f.write('{"name": "fuzz / fuzz_config", "result": "OK", "returncode": 0}\n'
                    '{"name": "fuzz / fuzz_router", "result": "FAIL", "returncode": 1,'
                    ' "stdout": "crash"}\n')
        lines, rc = summary(os.path.dirname(fuzz))
        want = "1 passed, 1 failed, 0 skipped"
        report(lines[-1:] == [want] and rc == 1 and any("fuzz_router: FAIL" in ln for ln in lines),
               "scripts/fuzz's log: a crashed target", lines, rc, want, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
