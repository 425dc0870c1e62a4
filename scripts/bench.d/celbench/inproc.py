"""--inproc: instructions per request in one process without sockets
(tests/perf/inproc.c), nghttp2 alone (the floors) beside celerisd's path."""

import os
import re
import subprocess
import time

from .common import BenchError, ROOT, say
from .routes import ROUTES
from .report import header_lines, md_table, write_md
from .callgrind import callgrind_total


INPROC = os.path.join(ROOT, 'build-bench', 'tests', 'perf', 'celeris-inproc-bench')
INPROC_STREAMS = 10     # requests per round, as h2load -m 10 in --callgrind
FLOORS = [('floor-malloc', 'nghttp2 alone, glibc malloc'),
          ('floor-pool', 'nghttp2 alone, cel_pool (the allocator celerisd uses)'),
          ('floor-nohttp', 'nghttp2 alone, malloc, no_http_messaging'),
          ('floor-both', 'nghttp2 alone, cel_pool, no_http_messaging'),
          ('floor-nopri', 'floor-both, RFC 7540 priorities off (as celerisd runs nghttp2)')]
ALLOC_N = 100000


def inproc_cmd(mode, route, n):
    return [INPROC, '--mode', mode, '--route', route.path, '-n', str(n),
            '-m', str(INPROC_STREAMS)]


def inproc_checked(p, what, n):
    """The program exits 0 and prints 'MODE PATH: N requests, every response checked'."""
    if p.returncode != 0 or f': {n} requests, every response checked' not in p.stdout:
        raise BenchError(f'{what}: exit {p.returncode}\n{(p.stdout + p.stderr)[-1500:]}')


def inproc_ns(p):
    m = re.search(r'([0-9]+) ns/request server side', p.stdout)
    return int(m.group(1)) if m else float('nan')


def mode_inproc(opts, ctx, routes, names):
    if not os.access(INPROC, os.X_OK):
        raise BenchError(f'{INPROC} missing (scripts/bench builds it in build-bench)')
    if any(r.key == 'hello' for r in routes):
        raise BenchError('--inproc: the daemon mode serves /bench, /json and /users only')
    n = opts.requests
    by_key = {r.key: r for r in ROUTES}
    runs = [(mode, by_key['bench'], desc) for mode, desc in FLOORS]
    runs += [('daemon', r, 'celerisd: h2.c, router, handler, output queue') for r in routes]
    say(f'inproc: celeris-inproc-bench -n {n} -m {INPROC_STREAMS} (after 100 warm-up rounds), '
        f'server side only: callgrind --toggle-collect=server_round; wall clock pinned to CPU '
        f'{opts.server_cpus}')
    results = []
    for mode, route, desc in runs:
        what = f'{mode} {route.path}'
        out = os.path.join(ctx.tmp, f'callgrind.inproc.{mode}.{route.key}')
        t0 = time.monotonic()
        p = subprocess.run(['valgrind', '--tool=callgrind', '--collect-atstart=no',
                            '--toggle-collect=server_round', f'--callgrind-out-file={out}']
                           + inproc_cmd(mode, route, n), capture_output=True, text=True)
        inproc_checked(p, f'{what} under callgrind', n)
        total = callgrind_total(out)
        if total == 0:
            raise BenchError(f'{what}: callgrind counted nothing in server_round (renamed?)')
        ns = float('inf')
        for _ in range(3):      # the best of three: wall clock is noisy
            p = subprocess.run(['taskset', '-c', opts.server_cpus] + inproc_cmd(mode, route, n),
                               capture_output=True, text=True)
            inproc_checked(p, what, n)
            ns = min(ns, inproc_ns(p))
        allocs = '—'
        if mode == 'daemon':
            # libc allocator calls over 100,000 warm requests (the program
            # counts them inside server_round; --no-alloc stops the clock, see
            # tests/perf/inproc.c)
            p = subprocess.run(inproc_cmd(mode, route, ALLOC_N) + ['--no-alloc'],
                               capture_output=True, text=True)
            m = re.search(r'([0-9]+) libc allocations', p.stdout)
            if not m:
                raise BenchError(f'{what}: no allocation count\n{(p.stdout + p.stderr)[-800:]}')
            allocs = m.group(1)
        say(f'{what}: {n} requests, {total / n:,.0f} instructions/request '
            f'({total:,} Ir, {time.monotonic() - t0:.1f} s); {ns} ns/request wall clock (noisy)'
            + (f'; {allocs} libc allocations in {ALLOC_N:,} requests' if allocs != '—' else ''))
        results.append((mode, route, desc, total / n, ns, allocs))
    ipr = {(m, r.key): x for m, r, _, x, _, _ in results}
    pool, both = ipr[('floor-pool', 'bench')], ipr[('floor-both', 'bench')]
    nopri = ipr[('floor-nopri', 'bench')]
    rows = [[f'{m} {r.path}', desc, f'{x:,.0f}', f'{x / pool:.2f}', f'{x / both:.2f}',
             f'{x / nopri:.2f}', f'{ns:,}', a]
            for m, r, desc, x, ns, a in results]
    t = md_table(['mode route', 'server side', 'instructions / request', '÷ floor-pool',
                  '÷ floor-both', '÷ floor-nopri', 'ns / request (noisy)',
                  f'libc allocs / {ALLOC_N:,} req'],
                 rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'])
    note = (f'In one process, no sockets: an nghttp2 client session sends h2load\'s requests '
            f'(-m {INPROC_STREAMS} per round) and checks every response (status, content-type, '
            f'content-length, body). Instructions: callgrind Ir of the server side only '
            f'(server_round, measured rounds only) ÷ {n}. floor-*: a bare nghttp2 server session '
            f'answering with the same headers and body as celerisd (on /bench); floor-nopri '
            f'is nghttp2 as celerisd configures it (cel_pool, no HTTP messaging, '
            f'SETTINGS_NO_RFC7540_PRIORITIES); daemon: '
            f'celerisd\'s request path from cel_h2_recv to the flushed output queue, routes of '
            f'conf/bench.yaml; the event loop, sockets and the kernel are not counted. '
            f'ns / request: wall clock of the same server side without valgrind, the best of '
            f'three runs: noisy. libc allocs: malloc/calloc/realloc calls from the server side '
            f'over {ALLOC_N:,} requests after the warm-up (clock stopped, see '
            f'tests/perf/inproc.c); the target is 0.')
    say('\n' + '\n'.join(t) + '\n\n' + note)
    lines = header_lines(opts, 'celerisd in-process instructions per request (no sockets)',
                         extra=[f'celeris-inproc-bench: build-bench/tests/perf, -n {n} '
                                f'-m {INPROC_STREAMS}']) + t + ['', note]
    say(f'\nwrote {write_md(opts, ctx.stamp, "-inproc", lines)}')
