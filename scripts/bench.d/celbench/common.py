"""Paths, the error type, /proc readers and small helpers every mode uses."""

import argparse
import array
import os
import re
import socket
import statistics
import subprocess


# This file is ROOT/scripts/bench.d/celbench/common.py.
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
HERE = os.path.join(ROOT, 'scripts', 'bench.d')
CELERISD = os.path.join(ROOT, 'build-bench', 'celerisd')
CONF = os.path.join(ROOT, 'conf', 'bench.yaml')
HZ = os.sysconf('SC_CLK_TCK')


class BenchError(Exception):
    pass


def say(msg=''):
    print(msg, flush=True)


def parse_duration(text):
    """'5', '5s', '500ms', '1m' -> seconds (float)."""
    m = re.fullmatch(r'\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*', str(text))
    if not m:
        raise argparse.ArgumentTypeError(f'bad duration {text!r} (use 5, 5s, 500ms, 1m)')
    v = float(m.group(1))
    return v / 1000 if m.group(2) == 'ms' else v * 60 if m.group(2) == 'm' else v


def h2dur(seconds):
    return f'{max(1, int(round(seconds * 1000)))}ms'


def cpu_list(spec):
    """'0-1,3' -> [0, 1, 3]"""
    out = []
    for part in spec.split(','):
        part = part.strip()
        if not part:
            continue
        if '-' in part:
            a, b = part.split('-', 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    if not out:
        raise argparse.ArgumentTypeError(f'empty CPU list {spec!r}')
    return sorted(set(out))


_used_ports = set()


def free_port():
    while True:
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            p = s.getsockname()[1]
        if p not in _used_ports:
            _used_ports.add(p)
            return p


def proc_children():
    kids = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(')') + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def proc_tree(pid):
    kids = proc_children()
    out, unvisited = [], [pid]
    while unvisited:
        p = unvisited.pop()
        out.append(p)
        unvisited.extend(kids.get(p, []))
    return out


def proc_cpu_seconds(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            st = f.read()
    except OSError:
        return 0.0
    fields = st[st.rindex(')') + 2:].split()
    return (int(fields[11]) + int(fields[12])) / HZ   # utime + stime


def proc_rss_kib(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_touched_kib(pid):
    """KiB of PID's private anonymous mappings that have a page table entry
    (pagemap's present bit): pages written, and pages only read, which the
    kernel may back with its shared zero page (not in VmRSS) or with pages of
    their own. The same count on every kernel; VmRSS is at most this."""
    total = 0
    try:
        with open(f'/proc/{pid}/maps') as maps, open(f'/proc/{pid}/pagemap', 'rb') as pm:
            for line in maps:
                head = line.split()
                if head[1] != 'rw-p' or head[5:] not in ([], ['[heap]']):
                    continue
                lo, hi = (int(x, 16) for x in head[0].split('-'))
                if hi - lo > 1 << 36:  # a sanitizer's shadow (terabytes reserved), not ours
                    continue
                for at in range(lo, hi, 1 << 28):  # 256 MiB of address space at a time
                    pm.seek(at // 4096 * 8)
                    entries = array.array('Q', pm.read((min(hi, at + (1 << 28)) - at) // 4096 * 8))
                    total += sum(1 for e in entries if e >> 63)
    except OSError:
        pass
    return total * 4


def system_busy_seconds():
    """Busy CPU time of the whole machine (all CPUs) from /proc/stat."""
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / HZ


def median(xs):
    return statistics.median(xs) if xs else float('nan')


def fmt_int(x):
    return f'{x:,.0f}'


def run_text(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return p.stdout + p.stderr
    except Exception:
        return ''


def tail(path, n=15):
    try:
        with open(path, errors='replace') as f:
            lines = f.read().splitlines()
        return '\n'.join('    | ' + x for x in lines[-n:])
    except OSError:
        return '    | (no log)'
