#!/usr/bin/env python3
"""Fails on a cycle in the include graph of a C source tree.

A unit is a header and the .c files that implement it: the .c file of the
same name (config.h + config.c), one that extends the name with "_"
(handler_module.c implements handler.h), and any .c file that defines a
function the header declares (a .c file that implements two headers joins
both units). A private header X_internal.h, beside X.h, is part of X's unit:
it holds what X's own files share (h2_internal.h for h2.c, h2_stream.c...);
with no X.h, X_internal.h is part of X.c's unit (handler_module_internal.h:
the unit of handler.h, which handler_module.c implements).
Unit A depends on unit B when a file of A has `#include "B.h"`.
DESIGN.md asks for dependencies that point one way; a cycle between units is
what this check refuses. Headers under an -I directory are the public module
ABI: implemented for modules, they make no unit of their implementer.

  check_includes.py DIR [-I INCDIR]...     exit 1 and print every cycle found
  check_includes.py --expect-cycle DIR     the inverse: exit 1 if DIR has none
                                           (proves the check can fail)

Only `#include "..."` lines count; a name that resolves to no file under DIR
or an -I directory (a generated header, a system header) is a leaf.
"""

import argparse
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
COMMENT_OR_STRING = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
                               re.DOTALL)
CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")


def top_level(text):
    """TEXT without comments, strings, preprocessor lines and anything inside
    braces: what is left is declarations and definition heads."""
    text = COMMENT_OR_STRING.sub(" ", text)
    text = re.sub(r"^\s*#(?:[^\n]*\\\n)*[^\n]*", " ", text, flags=re.MULTILINE)
    out, depth = [], 0
    for ch in text:
        if ch == "{":
            depth += 1
            out.append(" {")
        elif ch == "}":
            depth -= 1
            out.append("} ")
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def declared(text):
    """Names of the functions a header declares (or defines inline)."""
    return {m.group(1) for m in CALL.finditer(top_level(text))}


def defined(text):
    """Names of the non-static functions a .c file defines."""
    names = set()
    for part in re.split(r"[;}]", top_level(text)):
        head = part.split("{", 1)
        if len(head) < 2 or "static" in head[0].split():
            continue
        m = CALL.search(head[0])
        if m and head[0].rstrip().endswith(")"):
            names.add(m.group(1))
    return names


def unit_of(path, headers):
    """A header's unit (X_internal.h: X's, or X.c's when there is no X.h); for a .c file, the header it
    implements: its own name (config.c: config.h) or the longest header name it
    extends with "_" (handler_module.c: handler.h, conf_handlers.c: conf.h)."""
    stem = os.path.splitext(path)[0]
    if path.endswith(".h") and stem.endswith("_internal"):
        base = stem[:-len("_internal")]
        # beside X.h: X's unit; with no X.h, the unit of X.c (handler_module.c: handler)
        return base if base in headers else unit_of(base + ".c", headers)
    if path.endswith(".h") or stem in headers:
        return stem
    best = stem
    for h in headers:
        if stem.startswith(h + "_") and (best == stem or len(h) > len(best)):
            best = h
    return best


def build_graph(root, incdirs):
    files = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith((".c", ".h")):
                files.append(os.path.join(dirpath, name))
    known = {os.path.normpath(f) for f in files}
    headers = {os.path.splitext(os.path.relpath(f, root))[0] for f in files if f.endswith(".h")}
    public = [os.path.normpath(d) + os.sep for d in incdirs]
    texts = {}
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            texts[f] = fh.read()
    declarer = {}  # function name -> units whose header declares it
    for f in files:
        if f.endswith(".h") and not any(os.path.normpath(f).startswith(p) for p in public):
            for name in declared(texts[f]):
                declarer.setdefault(name, set()).add(unit_of(os.path.relpath(f, root), headers))
    graph = {}
    for f in sorted(files):
        units = {unit_of(os.path.relpath(f, root), headers)}
        if f.endswith(".c"):
            for name in defined(texts[f]):
                units |= declarer.get(name, set())
        for src in units:
            graph.setdefault(src, set())
        for inc in INCLUDE.findall(texts[f]):
            for base in [os.path.dirname(f), root] + incdirs:
                target = os.path.normpath(os.path.join(base, inc))
                if target in known:
                    dst = unit_of(os.path.relpath(target, root), headers)
                    for src in units:
                        if dst != src:
                            graph[src].add(dst)
                    break
    return graph


def cycles(graph):
    """One concrete cycle per strongly connected component of more than one unit."""
    index, low, on_stack, stack, sccs = {}, {}, set(), [], []
    counter = [0]

    def connect(v):
        # Iterative Tarjan: the graph is small, but recursion depth is not ours to pick.
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    advanced = True
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    sccs.append(set(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    found = []
    for comp in sccs:
        start = min(comp)
        # Shortest path back to start inside the component: a cycle a reader can follow.
        prev, frontier, seen = {}, [start], {start}
        path = None
        while frontier and path is None:
            nxt = []
            for u in frontier:
                for w in sorted(graph[u] & comp):
                    if w == start:
                        path = [u]
                        while path[-1] != start:
                            path.append(prev[path[-1]])
                        path.reverse()
                        path.append(start)
                        break
                    if w not in seen:
                        seen.add(w)
                        prev[w] = u
                        nxt.append(w)
                if path:
                    break
            frontier = nxt
        found.append((sorted(comp), path))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("-I", dest="incdirs", action="append", default=[])
    ap.add_argument("--expect-cycle", action="store_true")
    args = ap.parse_args()
    if not os.path.isdir(args.root):
        print(f"{args.root}: not a directory", file=sys.stderr)
        return 2
    graph = build_graph(args.root, args.incdirs)
    found = cycles(graph)
    for comp, path in found:
        print("include cycle: " + " -> ".join(path)
              + f"  (units in the cycle: {', '.join(comp)})")
    if args.expect_cycle:
        if not found:
            print(f"{args.root}: expected an include cycle, found none")
            return 1
        return 0
    if found:
        return 1
    print(f"{args.root}: {len(graph)} units, no include cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
