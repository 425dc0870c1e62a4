#!/usr/bin/python3
"""Sums test cases over every suite of the given meson build directories.

meson's JUnit log has one testsuite per TAP (unit) test with a case per
subtest; the integration suite writes its own pytest JUnit file. Prints one
line "N passed, N failed, N skipped" and exits 1 when anything failed or no
test ran at all.
"""
import os
import sys
import xml.etree.ElementTree as ET


def counts(suite):
    total = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def main(dirs):
    passed = failed = skipped = 0
    for d in dirs:
        log = os.path.join(d, "meson-logs", "testlog.junit.xml")
        if not os.path.exists(log):
            print(f"summary: {log} is missing: no tests ran in {d}")
            failed += 1
            continue
        for suite in ET.parse(log).getroot().iter("testsuite"):
            name = suite.get("name", "")
            if name.endswith("/ integration"):
                # The pytest cases replace meson's single case for the suite; a
                # pytest that died before writing its log counts as one failure.
                pytest_log = os.path.join(d, "tests", "integration.junit.xml")
                if os.path.exists(pytest_log):
                    for s in ET.parse(pytest_log).getroot().iter("testsuite"):
                        p, f, k = counts(s)
                        passed, failed, skipped = passed + p, failed + f, skipped + k
                    continue
            p, f, k = counts(suite)
            passed, failed, skipped = passed + p, failed + f, skipped + k
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
