#!/usr/bin/python3
"""Sums test cases over every suite of the given meson build directories.

    tests/summary.py BUILD_DIR...

Each test's outcome is the one meson's JSON log (meson-logs/testlog.json) gives
it: OK, SKIP, EXPECTEDFAIL pass or skip; FAIL, ERROR, TIMEOUT, UNEXPECTEDPASS,
INTERRUPT fail. A test's cases are counted one by one when they are known:

  - a TAP test (protocol "tap" in meson-info/intro-tests.json, the cmocka unit
    tests): its "ok" / "not ok" lines in the logged stdout;
  - a test whose command has --junitxml=FILE (a pytest suite): FILE, when it
    was written by this run (not older than the test's start).

A test that failed although its cases did not (a program that passed its
subtests and then exited non-zero on a LeakSanitizer report or an abort, a
pytest suite that crashed in teardown, a suite killed at its time limit, which
writes no JUnit file) adds one failure of its own. A directory without a JSON
log (a build that failed, a test run that never started) is one failure, and so
is a log with no test in it. Every failure and every skip is named on its own
line; the last line is "N passed, N failed, N skipped". Exits 1 when anything
failed or nothing passed.

scripts/fuzz --json writes the same log format for its targets.
"""
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

GOOD = {"OK", "EXPECTEDFAIL"}
SKIP = {"SKIP"}

TAP_LINE = re.compile(r"^(not )?ok\b\s*(\d+)?\s*(?:-\s*)?([^#]*?)\s*(?:#\s*(\w+)\s*(.*))?$")


def tap_cases(stdout):
    """(name, outcome, reason) for each TAP result line; outcome is pass/fail/skip."""
    cases = []
    for line in stdout.splitlines():
        m = TAP_LINE.match(line.strip())
        if not m:
            continue
        bad, num, name, directive, reason = m.groups()
        directive = (directive or "").upper()
        name = name or f"subtest {num}"
        if directive == "SKIP":
            cases.append((name, "skip", reason))
        elif directive == "TODO":  # an expected failure; an unexpected pass fails
            cases.append((name, "fail" if not bad else "pass", "TODO passed" if not bad else ""))
        else:
            cases.append((name, "fail" if bad else "pass", ""))
    return cases


def junit_cases(path):
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = "::".join(x for x in (case.get("classname", ""), case.get("name", "")) if x)
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skipped = case.find("skipped")
        if bad is not None:
            cases.append((name, "fail", ((bad.get("message") or "").splitlines() or [""])[0]))
        elif skipped is not None:
            cases.append((name, "skip", skipped.get("message") or ""))
        else:
            cases.append((name, "pass", ""))
    return cases


def junit_arg(command):
    for a in command or []:
        if a.startswith("--junitxml="):
            return a.split("=", 1)[1]
    return None


def protocols(build):
    try:
        with open(os.path.join(build, "meson-info", "intro-tests.json")) as f:
            tests = json.load(f)
    except (OSError, ValueError):
        return {}
    return {f"{t['suite'][0]} / {t['name']}" if t.get("suite") else t["name"]: t.get("protocol")
            for t in tests}


def test_cases(build, t, proto):
    """The test's cases, or None when they are not known, and why."""
    if proto == "tap":
        return tap_cases(t.get("stdout") or ""), ""
    path = junit_arg(t.get("command"))
    if path is None:
        return None, ""
    try:
        fresh = os.stat(path).st_mtime >= float(t.get("starttime") or 0) - 1
    except OSError:
        return None, f"it wrote no {path}"
    if not fresh:
        return None, f"{path} is older than this run"
    try:
        return junit_cases(path), ""
    except ET.ParseError as e:
        return None, f"{path} does not parse ({e})"


def summarize(dirs, out=sys.stdout):
    passed = failed = skipped = 0
    for d in dirs:
        log = os.path.join(d, "meson-logs", "testlog.json")
        try:
            with open(log) as f:
                tests = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError) as e:
            print(f"FAILED {d}: no test log ({log}: {e}); its build or test run did not finish",
                  file=out)
            failed += 1
            continue
        if not tests:
            print(f"FAILED {d}: {log} holds no test", file=out)
            failed += 1
            continue
        proto = protocols(d)
        for t in tests:
            name, result = t.get("name", "?"), t.get("result", "?")
            cases, why = test_cases(d, t, proto.get(name))
            rc = t.get("returncode")
            if not cases:
                if result in GOOD:
                    if why:  # a suite that claims success but left no record of its cases
                        print(f"FAILED {d}: {name}: {result} but {why}", file=out)
                        failed += 1
                    else:
                        passed += 1
                elif result in SKIP:
                    print(f"SKIPPED {d}: {name}", file=out)
                    skipped += 1
                else:
                    extra = f"; {why}" if why else ""
                    print(f"FAILED {d}: {name}: {result} (exit {rc}){extra}", file=out)
                    failed += 1
                continue
            p = sum(1 for c in cases if c[1] == "pass")
            f_ = [c for c in cases if c[1] == "fail"]
            s = [c for c in cases if c[1] == "skip"]
            passed += p
            skipped += len(s)
            failed += len(f_)
            for c in f_:
                print(f"FAILED {d}: {name}: {c[0]}" + (f": {c[2]}" if c[2] else ""), file=out)
            for c in s:
                print(f"SKIPPED {d}: {name}: {c[0]}" + (f": {c[2]}" if c[2] else ""), file=out)
            if result not in GOOD | SKIP and not f_:
                print(f"FAILED {d}: {name}: {result} (exit {rc}) after {p} of its cases "
                      f"passed, {len(s)} skipped", file=out)
                failed += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped", file=out)
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(summarize(sys.argv[1:]))
