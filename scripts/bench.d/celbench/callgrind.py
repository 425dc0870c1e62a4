"""--callgrind: instructions per request under valgrind, minus an idle start
and stop; with --table, the big route table's figures."""

import os
import re
import subprocess
import time

from . import browser
from .common import BenchError, CELERISD, median, say, tail
from .routes import TABLE_PARAMS
from .servers import check_all_bodies
from .load import h2load
from .report import header_lines, md_table, write_md


def callgrind_total(path):
    p = subprocess.run(['callgrind_annotate', path], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if 'PROGRAM TOTALS' in line:
            return int(line.split()[0].replace(',', ''))
    raise BenchError(f'callgrind_annotate {path}: no PROGRAM TOTALS line\n{p.stderr[-500:]}')


def callgrind_calls(path, name):
    """Calls to functions whose name contains NAME, from a callgrind output
    file (names are given once, then referred to by their (id))."""
    ids, calls, target = {}, 0, False
    with open(path, errors='replace') as f:
        for line in f:
            if line.startswith(('fn=', 'cfn=')):
                m = re.match(r'c?fn=\((\d+)\)(?: (.*))?', line.rstrip('\n'))
                if m and m.group(2):
                    ids[m.group(1)] = m.group(2)
                target = bool(m) and line.startswith('cfn=') and name in ids.get(m.group(1), '')
            elif line.startswith('calls='):
                if target:
                    calls += int(line[6:].split()[0])
                target = False
    return calls


def mode_callgrind(opts, ctx, routes, names):
    n = opts.requests
    proto = opts.protos[0]
    check_all_bodies(opts, ctx, routes, names, proto)
    if proto == 'http1':
        say(f'callgrind: each server under valgrind (1 worker), per route h2load --h1 -n {n} '
            f'-c 4: keep-alive (-m 1), pipelined (-m 10) and connection: close (-m 1, a new '
            f'connection per request), minus an idle start+stop of the same server')
    elif opts.browser:
        say(f'callgrind: each server under valgrind (1 worker), per route h2load -n {n} '
            f'-c {browser.CONNS} -m 10 bare and with a browser\'s fields '
            f'({browser.describe()}), minus an idle start+stop of the same server')
    else:
        say(f'callgrind: each server under valgrind (1 worker), h2load -n {n} -c 4 -m 10 per '
            f'route, minus an idle start+stop of the same server')
    # (label, h2load -c, -m, extra h2load arguments) for each run of a route
    if proto == 'http1':
        shapes = [('keep-alive', 4, 1, ['--h1']), ('pipelined', 4, 10, ['--h1']),
                  ('close', 4, 1, ['--h1', '-H', 'connection: close'])]
    elif opts.browser:
        shapes = [('bare', browser.CONNS, 10, ()),
                  ('browser', browser.CONNS, 10, browser.h2load_args())]
    else:
        shapes = [('', 4, 10, ())]
    rows, table = [], {}
    for name in names:
        def cg_run(route, shape=('', 4, 10, ())):
            return cg_once(opts, ctx, name, proto, route, shape)
        idle, idle_clocks = cg_run(None)
        for r in routes:
            for shape in shapes:
                total, clocks = cg_run(r, shape)
                ipr = (total - idle) / n
                table[(r.name, name, shape[0])] = ipr
                rows.append([r.name + (f' {shape[0]}' if shape[0] else ''), name, f'{total:,}',
                             f'{idle:,}', f'{ipr:,.0f}', f'{(clocks - idle_clocks) / n:.2f}'])
    out_rows = []
    for r in routes:
        for name in names:
            if opts.browser:
                bare, full = table[(r.name, name, 'bare')], table[(r.name, name, 'browser')]
                base = table.get((r.name, 'celerisd', 'browser'))
                ratio = f'{base / full:.2f}' if base and name != 'celerisd' else '—'
                out_rows.append([r.name, name, f'{bare:,.0f}', f'{full:,.0f}',
                                 f'{full / bare:.2f}', f'{full - bare:,.0f}', ratio])
            elif proto == 'http1':
                row = [r.name, name]
                ratios = []
                for label, *_ in shapes:
                    ipr = table[(r.name, name, label)]
                    base = table.get((r.name, 'celerisd', label))
                    row.append(f'{ipr:,.0f}')
                    ratios.append(f'{base / ipr:.2f}' if base and name != 'celerisd' else '—')
                out_rows.append(row + [' / '.join(ratios)])
            else:
                ipr = table[(r.name, name, '')]
                base = table.get((r.name, 'celerisd', ''))
                ratio = f'{base / ipr:.2f}' if base and name != 'celerisd' else '—'
                out_rows.append([r.name, name, f'{ipr:,.0f}', ratio])
    if opts.browser:
        t = md_table(['route', 'server', 'bare Ir / request', 'browser Ir / request',
                      'browser ÷ bare', 'browser − bare', 'celerisd ÷ peer (browser)'], out_rows,
                     ['l', 'l', 'r', 'r', 'r', 'r', 'r'])
        note = (f'User-space instructions (callgrind Ir, all threads) per request: (total with '
                f'h2load -n {n} -c {browser.CONNS} -m 10 − total of an idle start+stop) ÷ {n}; '
                f'each connection makes {n // browser.CONNS} requests, so its HPACK table is '
                f'built afresh that often. bare: h2load\'s own fields; browser: with '
                f'{browser.describe()}, every request alike. Kernel work is not counted. nginx '
                f'runs with master_process off.')
    elif proto == 'http1':
        t = md_table(['route', 'server', 'keep-alive Ir / request', 'pipelined ×10',
                      'connection: close', 'celerisd ÷ peer (each)'], out_rows,
                     ['l', 'l', 'r', 'r', 'r', 'r'])
        note = (f'HTTP/1.1 cleartext. User-space instructions (callgrind Ir, all threads) per '
                f'request: (total with h2load --h1 -n {n} -c 4 − total of an idle start+stop) '
                f'÷ {n}. keep-alive: one request at a time per connection; pipelined: 10 in '
                f'flight per connection (-m 10); connection: close: every request on a new '
                f'connection (the accept and close included). Kernel work is not counted. nginx '
                f'runs with master_process off and a plain listener beside its h2c one. Ratio: '
                f'celerisd ÷ peer instructions for each shape (< 1: celerisd executes fewer).')
    else:
        t = md_table(['route', 'server', 'instructions / request', 'celerisd ÷ peer'], out_rows,
                     ['l', 'l', 'r', 'r'])
        note = (f'User-space instructions (callgrind Ir, all threads) per request: (total with '
                f'h2load -n {n} -c 4 -m 10 − total of an idle start+stop) ÷ {n}. Kernel work is '
                f'not counted. nginx runs with master_process off. Ratio: celerisd ÷ peer '
                f'instructions (< 1: celerisd executes fewer).')
    say('\n' + '\n'.join(t) + '\n\n' + note)
    title = 'celerisd instructions per request (callgrind)'
    if opts.browser:
        title += ', bare and with browser fields'
    if proto == 'http1':
        title += ', HTTP/1.1'
    lines = header_lines(opts, title) + t + ['', note, '']
    lines += md_table(['route', 'server', 'total Ir', 'idle Ir', 'Ir / request',
                       'clock reads / request'], rows, ['l', 'l', 'r', 'r', 'r', 'r'])
    lines += ['', 'Clock reads: clock_gettime calls (the server\'s and its event '
              'library\'s) per request. Valgrind has no vDSO, so callgrind counts each as the '
              'few instructions of a system call; natively each costs a vDSO call (tens of ns '
              'for CLOCK_MONOTONIC, a few for CLOCK_MONOTONIC_COARSE).', '']
    if opts.table:
        t, note = table_facts(opts, ctx, routes, names, table)
        lines += ['', f'## The table of {opts.table:,} routes', ''] + t + ['', note]
    suffix = '-callgrind' + ('-browser' if opts.browser else '') + ('-http1' if proto == 'http1' else '')
    say(f'\nwrote {write_md(opts, ctx.stamp, suffix, lines)}')


def cg_once(opts, ctx, name, proto, route, shape=('', 4, 10, ()), middleware=None, tag=''):
    """One server NAME under callgrind (1 worker): started, settled, ROUTE
    requested -n times in SHAPE (label, -c, -m, extra h2load arguments; no
    ROUTE: the idle start+stop), stopped. MIDDLEWARE: celerisd's one global
    item. Returns (total Ir, clock_gettime calls)."""
    n = opts.requests
    label, conns, streams, extra = shape
    key = (route.key + (f'-{label}' if label else '')) if route else 'idle'
    out = os.path.join(ctx.tmp, f'callgrind.{name}{tag}.{key}')
    srv = ctx.server(name, workers=1, callgrind_out=out, table=opts.table, proto=proto,
                     middleware=middleware)
    t0 = time.monotonic()
    srv.start()
    # Listening is not the end of start-up under valgrind (celerisd sets up
    # its signal handling after listen()): settle, in both runs alike.
    time.sleep(2)
    if route:
        h2load(srv.url(route.path), opts.client_cpus, 1, conns, streams,
               f'{name} {route.path} {label} under callgrind', n=n, expect_n=n,
               want_status=route.status, extra=extra)
        srv.check_alive(f'under callgrind on {route.path}')
    rc = srv.stop()
    if rc is None:
        raise BenchError(f'{name} under callgrind did not stop on SIGTERM')
    if not os.path.exists(out):
        raise BenchError(f'{name}: callgrind wrote no {out}\n{tail(srv.log)}')
    total = callgrind_total(out)
    clocks = callgrind_calls(out, 'clock_gettime')
    what = (route.name + (f' {label}' if label else '')) if route else '(idle start+stop)'
    say(f'  {name:<10} {what:<34} {total:>16,} Ir  {clocks:>7,} clock reads  '
        f'({time.monotonic() - t0:.1f} s, exit {rc})')
    return total, clocks


# --middleware: celerisd with one global middleware item per row (README,
# Performance: the middleware table); (label, the item's YAML or None).
MIDDLEWARE = [
    ('none', None),
    ('headers (hsts)', 'headers: { set: { strict-transport-security: "max-age=63072000" } }'),
    ('request_id', 'request_id: {}'),
    ('request_id base64url', 'request_id: { format: base64url }'),
    ('cors (no origin)', 'cors: { origins: ["https://a.example"] }'),
    ('rate_limit client_ip', 'rate_limit: { key: client_ip, rate: 1000000/s, burst: 1000000 }'),
    ('access', 'access: { allow: [127.0.0.0/8], deny: [all] }'),
]


def mode_callgrind_middleware(opts, ctx, routes):
    """--callgrind --middleware: celerisd's instructions per request on each
    route with each MIDDLEWARE item as its one global middleware, and the rise
    over none."""
    n = opts.requests
    say(f'callgrind --middleware: celerisd under valgrind (1 worker), h2load -n {n} -c 4 -m 10 '
        f'per route and global middleware item, minus an idle start+stop of the same config')
    rows, none = [], {}
    for i, (label, item) in enumerate(MIDDLEWARE):
        say(f'middleware: {item or "(none)"}')
        tag = f'.mw{i}'
        idle, _ = cg_once(opts, ctx, 'celerisd', 'h2c', None, middleware=item, tag=tag)
        for r in routes:
            total, _ = cg_once(opts, ctx, 'celerisd', 'h2c', r, middleware=item, tag=tag)
            ipr = (total - idle) / n
            if item is None:
                none[r.name] = ipr
            rise = '—' if item is None else f'{ipr - none[r.name]:+,.0f}'
            rows.append([label, f'`{item}`' if item else '—', r.name, f'{ipr:,.0f}', rise])
    t = md_table(['middleware', 'global item', 'route', 'Ir / request', 'over none'], rows,
                 ['l', 'l', 'l', 'r', 'r'])
    note = (f'User-space instructions (callgrind Ir, all threads) per request: (total with '
            f'h2load -n {n} -c 4 -m 10 − total of an idle start+stop of the same config) ÷ {n}; '
            f'the item is the config\'s one global middleware. Kernel work is not counted.')
    say('\n' + '\n'.join(t) + '\n\n' + note)
    lines = header_lines(opts, 'celerisd instructions per request with middleware '
                               '(callgrind)') + t + ['', note, '']
    say(f'\nwrote {write_md(opts, ctx.stamp, "-callgrind-middleware", lines)}')


def table_facts(opts, ctx, routes, names, table):
    """--table's other figures: each route's cost over the first's, the CPU time
    of a config check (-t) and of start-up, and RSS per route."""
    rows = []
    for name in names:
        first = table[('first', name, '')]
        ratios = ', '.join(f'{r.name} {table[(r.name, name, "")] / first:.2f}' for r in routes[1:])
        if name == 'celerisd':
            check = [CELERISD, '-t', '-c', None]
        else:
            check = ['nginx', '-t', '-p', None, '-c', None]
        cpu, start, rss = [], [], {}
        for size in (0, opts.table):
            for _ in range(3 if size else 1):
                srv = ctx.server(name, workers=1, table=size)
                cmd = srv.command()
                if size:
                    c = [x if x is not None else cmd[cmd.index('-c') + 1] for x in check]
                    if name == 'nginx':
                        c[3] = srv.dir + '/'
                    t0 = os.times()
                    p = subprocess.run(c, capture_output=True, text=True)
                    t1 = os.times()
                    if p.returncode != 0:
                        raise BenchError(f'{" ".join(c)} failed:\n{p.stdout}{p.stderr}')
                    cpu.append(t1.children_user + t1.children_system
                               - t0.children_user - t0.children_system)
                srv.start()
                if size:
                    start.append(srv.cpu_seconds())
                rss[size] = srv.rss_kib()
                srv.stop()
        per_route = (rss[opts.table] - rss[0]) * 1024 / (opts.table + TABLE_PARAMS)
        rows.append([name, ratios, f'{median(cpu):.2f}', f'{median(start):.2f}',
                     f'{rss[0]:,}', f'{rss[opts.table]:,}', f'{per_route:,.0f}'])
    t = md_table(['server', 'Ir / request ÷ first', '-t CPU s', 'start-up CPU s',
                  'RSS KiB, no table', 'RSS KiB, table', 'RSS B / route'], rows,
                 ['l', 'l'] + ['r'] * 5)
    note = (f'{opts.table:,} literal routes /api/v1/resource{{i}}/items and {TABLE_PARAMS} param '
            f'routes /api/v1/param{{j}}/:id next to conf/bench.yaml\'s (nginx: `location =` '
            f'blocks and regex locations). -t CPU s: user+system time of a config check '
            f'(`celerisd -t`, `nginx -t`), median of 3; start-up CPU s: the server\'s user+system '
            f'time once it listens, median of 3 (one worker); RSS per route: (VmRSS with the table '
            f'− without) ÷ routes, after start-up.')
    say('\n' + '\n'.join(t) + '\n\n' + note)
    return t, note
