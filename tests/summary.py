#!/usr/bin/python3
"""Sums test cases over every suite of the given meson build directories.

In meson's JUnit log a TAP test (the cmocka unit tests) is a testsuite with a
case per subtest, and a plain test (a pytest suite) is one testcase. A pytest
suite writes its own JUnit file, tests/<name>.junit.xml in the build directory;
its cases replace meson's single case. Prints one line
"N passed, N failed, N skipped" and exits 1 when anything failed or nothing ran.
"""
import os
import sys
import xml.etree.ElementTree as ET


def suite_counts(suite):
    total = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def case_outcome(case):
    if case.find("failure") is not None or case.find("error") is not None:
        return 0, 1, 0
    if case.find("skipped") is not None:
        return 0, 0, 1
    return 1, 0, 0


def main(dirs):
    totals = [0, 0, 0]

    def add(counts):
        for i, n in enumerate(counts):
            totals[i] += n

    for d in dirs:
        log = os.path.join(d, "meson-logs", "testlog.junit.xml")
        if not os.path.exists(log):
            print(f"summary: {log} is missing: no tests ran in {d}")
            totals[1] += 1
            continue
        for suite in ET.parse(log).getroot().iter("testsuite"):
            if " / " in suite.get("name", ""):  # a TAP test: one case per subtest
                add(suite_counts(suite))
                continue
            for case in suite.iter("testcase"):
                name = case.get("name", "").split(" / ")[-1]
                own = os.path.join(d, "tests", f"{name}.junit.xml")
                outcome = case_outcome(case)
                if os.path.exists(own):
                    for s in ET.parse(own).getroot().iter("testsuite"):
                        add(suite_counts(s))
                    # pytest that passed its cases but still failed (a crash in
                    # teardown, a collection error) must not vanish
                    if outcome[1] and not any(int(s.get("failures", 0)) + int(s.get("errors", 0))
                                              for s in ET.parse(own).getroot().iter("testsuite")):
                        totals[1] += 1
                else:
                    add(outcome)
    passed, failed, skipped = totals
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
