#!/usr/bin/python3
"""Fails when a C file of the tree is not laid out as .clang-format says.

Runs `clang-format --dry-run -Werror` on every .c and .h file under server/,
modules/ and tests/ (the summary fixture aside) and prints the files that
differ with the first lines clang-format would change. Fix with
`clang-format -i FILE`.
"""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRS = ("server", "modules", "tests")


def sources():
    for top in DIRS:
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = sorted(d for d in dirnames if d not in ("corpus", "crashes"))
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    yield os.path.join(dirpath, f)


def main():
    tool = shutil.which("clang-format")
    if not tool:
        print("check_format: clang-format is not installed (scripts/deps test installs it)")
        return 1
    files = list(sources())
    bad = []
    for f in files:
        r = subprocess.run([tool, "--dry-run", "-Werror", "--style=file", f],
                           capture_output=True, text=True)
        if r.returncode:
            bad.append(f)
            print("\n".join(r.stderr.splitlines()[:6]))
    print(f"check_format: {len(files)} files, {len(bad)} not formatted")
    return 1 if bad or not files else 0


if __name__ == "__main__":
    sys.exit(main())
