"""--scaling: celerisd, h2o and nginx with 1, 2, 4 ... N/2 workers (threads,
processes) on one half of the machine's CPUs and h2load on the other half:
req/s and efficiency per core at each step (issue 21). The same code runs the
one step a 2-core machine allows and the four of a 16-core one."""

import copy
import os

from .common import BenchError, fmt_int, median, say
from .load import measured_run
from .report import header_lines, md_table, write_md
from .servers import check_bodies

SERVERS = ['celerisd', 'h2o', 'nginx']


def cpu_halves():
    """The CPUs this process may use, sorted: (client half, server half). An odd
    CPU out goes to neither."""
    cpus = sorted(os.sched_getaffinity(0))
    half = len(cpus) // 2
    if half < 1:
        raise BenchError('--scaling needs at least 2 CPUs (h2load on one half, servers on the '
                         'other)')
    return cpus[:half], cpus[half:2 * half]


def steps(half):
    """1, 2, 4 ... up to HALF, and HALF itself when it is not a power of two."""
    out, w = [], 1
    while w <= half:
        out.append(w)
        w *= 2
    if out[-1] != half:
        out.append(half)
    return out


def spec(cpus):
    return ','.join(map(str, cpus))


def mode_scaling(opts, ctx, routes, names):
    client, server = cpu_halves()
    names = [n for n in names if n in SERVERS]
    if not names:
        raise BenchError(f'--scaling compares {", ".join(SERVERS)}: give some of them')
    counts = steps(len(server))
    threads = len(client)
    say(f'scaling: {len(client) + len(server)} CPUs; servers on CPUs {spec(server)} (the first w '
        f'of them for w workers), h2load -t {threads} on CPUs {spec(client)}; workers '
        f'{", ".join(map(str, counts))}; -c {opts.connections} per worker, -m {opts.streams}, '
        f'{opts.duration:g} s x {opts.repeat} round(s)')
    results = {}
    for w in counts:
        o = copy.copy(opts)
        o.client_cpus = spec(client)
        o.connections = max(opts.connections * w, threads)
        servers = {}
        for name in names:
            servers[name] = ctx.server(name, cpus=spec(server[:w]), workers=w,
                                       conns=max(4096, 2 * o.connections)).start()
            check_bodies(servers[name], routes, ctx)
        for r in routes:
            say(f'\n== {w} worker(s), {r.name}  ({r.path})')
            if opts.warmup > 0:
                warm = copy.copy(o)
                warm.duration = opts.warmup
                for name in names:
                    measured_run(servers[name], r, warm, threads, f'{name} warm-up')
            for rnd in range(1, opts.repeat + 1):
                for name in names:
                    res = measured_run(servers[name], r, o, threads,
                                       f'{name} {r.path} {w} worker(s) round {rnd}')
                    res['noisy'] = res['other_pct'] > opts.noise_pct
                    say(f'  {name:<10} #{rnd}  {res["rps"]:>10,.0f} req/s  server '
                        f'{res["srv_pct"]:6.1f}%  h2load {res["cli_pct"]:6.1f}%  '
                        f'{res["us_per_req"]:5.2f} µs/req  other {res["other_pct"]:5.1f}%'
                        + ('  NOISY' if res['noisy'] else ''))
                    results.setdefault((r.name, name, w), []).append(res)
        for name in names:
            servers[name].stop()
    rows = []
    client_bound = noisy = False
    for r in routes:
        for name in names:
            one = median([x['rps'] for x in results[(r.name, name, 1)]])
            for w in counts:
                runs = results[(r.name, name, w)]
                rps = median([x['rps'] for x in runs])
                cli = median([x['cli_pct'] for x in runs])
                mark = ''
                if cli >= 95 * threads:
                    mark += ' †'
                    client_bound = True
                if any(x['noisy'] for x in runs):
                    mark += ' !'
                    noisy = True
                rows.append([r.name, name, str(w), fmt_int(rps) + mark, fmt_int(rps / w),
                             f'{rps / (w * one):.2f}',
                             f'{median([x["srv_pct"] for x in runs]):.0f}', f'{cli:.0f}',
                             f'{median([x["us_per_req"] for x in runs]):.2f}'])
    t = md_table(['route', 'server', 'workers', 'req/s (median)', 'req/s per worker',
                  'efficiency', 'server CPU %', 'h2load CPU %', 'server µs/req'], rows,
                 ['l', 'l'] + ['r'] * 7)
    notes = [f'w workers (celerisd workers, h2o num-threads, nginx worker_processes) on the '
             f'first w of CPUs {spec(server)}; h2load -t {threads} on CPUs {spec(client)}, '
             f'-c {opts.connections}×w -m {opts.streams}; medians of {opts.repeat} round(s) of '
             f'{opts.duration:g} s. Efficiency: req/s ÷ (w × req/s with 1 worker), 1.00 is '
             f'linear. CPU %: 100 = one core.']
    if len(counts) == 1:
        notes.append(f'This machine has {len(client) + len(server)} usable CPUs: only the '
                     f'1-worker step runs (efficiency 1.00 by definition).')
    if client_bound:
        notes.append('† h2load used ≥ 95 % of its CPUs: client-bound, req/s understates the '
                     'server; compare server µs/req.')
    if noisy:
        notes.append(f'! other processes used > {opts.noise_pct:g} % of a core during a run.')
    say('\n' + '\n'.join(t) + '\n\n' + '\n'.join(notes))
    lines = header_lines(opts, 'celerisd scaling with workers') + t + [''] + notes
    say(f'\nwrote {write_md(opts, ctx.stamp, "-scaling", lines)}')
