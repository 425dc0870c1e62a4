"""--many-conns N: a fleet, not a load generator. N h2c connections to each
server (one worker), each sending one request to /bench a second (h2load -c N
--rps 1) for --duration after a warm-up in which all connect; server CPU per
request and RSS over that window, against the saturated figure of the same
server measured just before (h2load -c/-m of the throughput table)."""

import resource
import subprocess
import tempfile
import threading
import time

from .common import HZ, BenchError, cpu_list, h2dur, say
from .load import h2load, validate_h2load
from .report import header_lines, md_table, write_md
from .routes import ROUTES
from .servers import check_bodies

WARMUP = 10.0  # seconds for N connections to connect (past the backlog) and settle


def user_sys(srv):
    """The server's user and system CPU seconds (its process tree)."""
    u = s = 0.0
    for pid in srv.pids():
        try:
            with open(f'/proc/{pid}/stat') as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(')') + 2:].split()
        u, s = u + int(fields[11]) / HZ, s + int(fields[12]) / HZ
    return u, s


def one_server(opts, ctx, name, n, route, threads):
    """The saturated run and the fleet against NAME: its table rows and note."""
    srv = ctx.server(name, conns=max(4096, n + 100), idle=True).start()
    check_bodies(srv, [route], ctx)
    url = srv.url(route.path)
    h2load(url, opts.client_cpus, threads, opts.connections, opts.streams, 'warm-up',
           duration=opts.warmup)
    u0, s0 = user_sys(srv)
    sat = h2load(url, opts.client_cpus, threads, opts.connections, opts.streams, 'saturated',
                 duration=opts.duration)
    u1, s1 = user_sys(srv)
    sat_user, sat_sys = (1e6 * (u1 - u0) / sat['requests'], 1e6 * (s1 - s0) / sat['requests'])
    sat_us = sat_user + sat_sys
    say(f'{name}: saturated, {sat["rps"]:,.0f} req/s, server {sat_us:.2f} µs/req')

    rss0 = srv.rss_kib()
    cmd = ['taskset', '-c', opts.client_cpus, 'h2load', '-t', str(max(1, min(threads, n))),
           '-c', str(n), '-m', '1', '--rps', '1', '--warm-up-time', h2dur(WARMUP),
           '-D', h2dur(opts.duration), url]
    samples = []
    with tempfile.TemporaryFile() as outf:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=outf, stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        # The window: from a second after the warm-up to a second before the end.
        start_at, end_at = t0 + WARMUP + 1.0, t0 + WARMUP + opts.duration - 1.0
        rss_peak = [rss0]

        def watch():
            while p.poll() is None:
                rss_peak[0] = max(rss_peak[0], srv.rss_kib())
                time.sleep(0.25)
        w = threading.Thread(target=watch, daemon=True)
        w.start()
        for at in (start_at, end_at):
            time.sleep(max(0.0, at - time.monotonic()))
            samples.append((time.monotonic(), user_sys(srv), srv.rss_kib()))
        p.wait(timeout=WARMUP + opts.duration + 120)
        w.join(5)
        outf.seek(0)
        out = outf.read().decode(errors='replace')
    srv.check_alive(f'holding {n} connections')
    res = validate_h2load(out, p.returncode, f'--many-conns {n} ({name})')
    (ta, ca, _), (tb, cb, rb) = samples
    window = tb - ta
    # h2load's req/s is over its measured duration (after the warm-up), which
    # holds the window; --rps 1 spreads each client's requests evenly.
    reqs = res['rps'] * window
    user = 1e6 * (cb[0] - ca[0]) / reqs if reqs else float('nan')
    syst = 1e6 * (cb[1] - ca[1]) / reqs if reqs else float('nan')
    us = user + syst
    srv.stop()
    say(f'{name}: {n:,} connections, {res["rps"]:,.0f} req/s, server {us:.2f} µs/req')
    rows = [[name, 'saturated', str(opts.connections), f'{sat["rps"]:,.0f}', f'{sat_us:.2f}',
             f'{sat_user:.2f}', f'{sat_sys:.2f}', '1.00', '', ''],
            [name, '1 req/s each', f'{n:,}', f'{res["rps"]:,.0f}', f'{us:.2f}', f'{user:.2f}',
             f'{syst:.2f}', f'{us / sat_us:.2f}', f'{rb:,}', f'{(rb - rss0) / n:.2f}']]
    note = (f'{name}: server CPU over {window:.1f} s of the measured time; RSS before the '
            f'fleet {rss0:,} KiB, peak {rss_peak[0]:,} KiB.')
    return rows, note


def mode_many_conns(opts, ctx, routes, names):
    n = opts.many_conns
    need = n + 1000  # h2load's N sockets here, the server's N (it inherits the limit)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard < need:
            raise BenchError(f'--many-conns {n} needs {need} open files; the hard limit is '
                             f'{hard}: ask for at most {hard - 1000}')
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    route = next(r for r in ROUTES if r.key == 'bench')
    threads = len(cpu_list(opts.client_cpus))
    rows, notes = [], []
    for name in names:
        r, note = one_server(opts, ctx, name, n, route, threads)
        rows += r
        notes.append(note)
    t = md_table(['server', 'run', 'connections', 'req/s', 'server µs/req', 'user', 'system',
                  'of saturated', 'RSS KiB (window end)', 'KiB / conn'], rows,
                 ['l', 'l'] + ['r'] * 8)
    note = (f'/bench, one worker/process on CPU {opts.server_cpus}, h2load on CPU '
            f'{opts.client_cpus}. Saturated: h2load -c {opts.connections} -m {opts.streams} -D '
            f'{opts.duration:g}s. Fleet: h2load -c {n} -m 1 --rps 1 --warm-up-time {WARMUP:g}s '
            f'-D {opts.duration:g}s; server CPU (/proc/PID/stat, user and system) over the '
            f'measured time less a second at each end, divided by h2load\'s req/s times that. '
            + ' '.join(notes))
    say('\n' + '\n'.join(t) + '\n\n' + note)
    lines = header_lines(opts, f'{n:,} connections at 1 request a second') + t + ['', note]
    say(f'\nwrote {write_md(opts, ctx.stamp, "-many", lines)}')
