#!/usr/bin/python3
"""Adds a field to the HTTP/2 stream (struct stream in server/h2_internal.h)
where stream_new would leave it set (before the part it clears, or after it)
and checks that server/h2_stream.c, which holds stream_new and the static
asserts on the layout, stops building with the assert that says so; the files
as they are must still compile. The compiler and flags are h2_stream.c's own,
from BUILD/compile_commands.json. Prints TAP. Usage: test_layout.py BUILD_DIR
"""
import json
import os
import shlex
import subprocess
import sys
import tempfile

CASES = [
    ("h2_stream.c as it is compiles", None, None, None),
    ("a field added before stream.x stops the build",
     "    uint64_t start_us; /* env->now_us of the first header */\n",
     "    uint32_t added;\n", "a field before stream.x"),
    ("a field added between stream.match and clen_txt stops the build",
     "    cel_route_match match;\n", "    int added;\n", "a field after stream.match"),
    ("a field added after inline_arena stops the build",
     "    char inline_arena[INLINE_ARENA];\n", "    char added;\n",
     "a field after stream.match"),
]


SOURCE = "h2_stream.c"     # stream_new and the static asserts
HEADER = "h2_internal.h"   # struct stream


def h2_command(build):
    with open(os.path.join(build, "compile_commands.json")) as f:
        for e in json.load(f):
            if e["file"].endswith(os.path.join("server", SOURCE)):
                return e
    raise SystemExit(f"Bail out! no server/{SOURCE} in {build}/compile_commands.json")


def compile_with(entry, src_path, header_text):
    args = shlex.split(entry["command"])
    out, skip = [], 0
    for a in args:
        if skip:
            skip -= 1
            continue
        if a in ("-o", "-MQ", "-MF"):
            skip = 1
            continue
        if a in ("-c", "-MD") or a.endswith(os.path.join("server", SOURCE)):
            continue
        out.append(a)
    with tempfile.TemporaryDirectory() as d:
        # a "..." include looks in the including file's directory first: the
        # source is copied beside the changed header, and its own directory
        # stays on the path (-iquote) for the rest
        path = os.path.join(d, SOURCE)
        with open(src_path) as f, open(path, "w") as out_f:
            out_f.write(f.read())
        with open(os.path.join(d, HEADER), "w") as f:
            f.write(header_text)
        out += ["-iquote", os.path.dirname(src_path), "-fsyntax-only", path]
        return subprocess.run(out, cwd=entry["directory"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)


def main():
    entry = h2_command(sys.argv[1])
    src = os.path.normpath(os.path.join(entry["directory"], entry["file"]))
    with open(os.path.join(os.path.dirname(src), HEADER)) as f:
        orig = f.read()
    print(f"1..{len(CASES)}", flush=True)
    failed = 0
    for n, (name, anchor, field, want) in enumerate(CASES, 1):
        text = orig
        if anchor:
            if text.count(anchor) != 1:
                print(f"not ok {n} - {name}\n# anchor {anchor!r} not found once in {HEADER}")
                failed += 1
                continue
            text = text.replace(anchor, anchor + field)
        r = compile_with(entry, src, text)
        ok = r.returncode == 0 if want is None else (r.returncode != 0 and want in r.stdout)
        print(f"{'ok' if ok else 'not ok'} {n} - {name}")
        if not ok:
            failed += 1
            for line in r.stdout.splitlines()[-15:]:
                print(f"# {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
