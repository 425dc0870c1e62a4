"""--ramp: clients added stepwise until p95 latency passes a threshold."""

import os

from .common import BenchError, cpu_list, fmt_int, say
from .servers import check_bodies
from .load import h2load
from .report import header_lines, md_table, write_md


RAMP_STEPS = [10, 25, 50, 100, 200, 400, 600]


def latency_percentiles(log_file):
    durs, failed = [], 0
    with open(log_file) as f:
        for line in f:
            parts = line.split('\t')
            if len(parts) < 3:
                continue
            if parts[1].strip() == '-1':
                failed += 1
                continue
            durs.append(int(parts[2]))
    if failed:
        raise BenchError(f'{failed} failed streams in {log_file}')
    durs.sort()

    def pct(p):
        return durs[max(0, -(-len(durs) * p // 100) - 1)] / 1000 if durs else float('nan')
    return pct(50), pct(95), pct(99)


def mode_ramp(opts, ctx, routes, names):
    steps = opts.ramp_steps
    threads = len(cpu_list(opts.client_cpus))
    streams = opts.ramp_streams
    servers = {}
    for name in names:
        servers[name] = ctx.server(name, conns=max(4096, max(steps) + 100)).start()
        check_bodies(servers[name], routes, ctx)
    say(f'bodies checked: {", ".join(names)} answer every route correctly')
    say(f'ramp: clients {", ".join(map(str, steps))}, -m {streams} each, {opts.ramp_duration:g} s '
        f'per step, p95 threshold {opts.p95_ms:g} ms; server CPU {opts.server_cpus}, '
        f'h2load -t {threads} on CPU {opts.client_cpus}')
    summary, detail = [], []
    for r in routes:
        for name in names:
            srv = servers[name]
            say(f'\n== {r.name}  {name}')
            if opts.warmup > 0:
                h2load(srv.url(r.path), opts.client_cpus, threads, steps[0], streams,
                       f'{name} {r.path} warm-up', duration=opts.warmup)
            best, best_c, knee = 0.0, None, None
            for c in steps:
                log = os.path.join(ctx.tmp, f'ramp-{name}-{r.key}-{c}.log')
                cpu0 = srv.cpu_seconds()
                res = h2load(srv.url(r.path), opts.client_cpus, threads, c, streams,
                             f'{name} {r.path} ramp c={c}', duration=opts.ramp_duration,
                             log_file=log)
                srv_pct = 100 * (srv.cpu_seconds() - cpu0) / res['wall']
                cli_pct = 100 * res['client_cpu'] / res['wall']
                srv.check_alive(f'during the ramp at {c} clients')
                p50, p95, p99 = latency_percentiles(log)
                os.unlink(log)
                flag = ''
                if knee is None and p95 > opts.p95_ms:
                    knee = c
                    flag = f'  <- p95 > {opts.p95_ms:g} ms'
                if res['rps'] > best:
                    best, best_c = res['rps'], c
                say(f'  clients {c:>4}  {res["rps"]:>10,.0f} req/s  p50 {p50:7.2f} ms  '
                    f'p95 {p95:7.2f} ms  p99 {p99:7.2f} ms  server {srv_pct:5.1f}%  '
                    f'h2load {cli_pct:5.1f}%{" †" if cli_pct >= 95 else ""}{flag}')
                detail.append([r.name, name, str(c), fmt_int(res['rps']), f'{p50:.2f}',
                               f'{p95:.2f}', f'{p99:.2f}', f'{srv_pct:.1f}',
                               f'{cli_pct:.1f}' + (' †' if cli_pct >= 95 else '')])
            summary.append([r.name, name, fmt_int(best), str(best_c),
                            str(knee) if knee else f'not reached (≤ {steps[-1]})'])
    for name in names:
        servers[name].stop()
    t = md_table(['route', 'server', 'max req/s', 'at clients', f'p95 > {opts.p95_ms:g} ms from'],
                 summary, ['l', 'l', 'r', 'r', 'r'])
    note = (f'Clients = h2load connections with -m {streams} stream(s) each, {opts.ramp_duration:g} s '
            f'per step; p50/p95/p99 computed from h2load --log-file (per-request times). '
            f'† h2load used ≥ 95 % of its CPU: that step is client-bound.')
    say('\n' + '\n'.join(t) + '\n\n' + note)
    lines = header_lines(opts, 'celerisd ramp (clients vs latency)') + t + ['', note, '']
    lines += md_table(['route', 'server', 'clients', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms',
                       'server CPU %', 'h2load CPU %'], detail, ['l', 'l'] + ['r'] * 7)
    say(f'\nwrote {write_md(opts, ctx.stamp, "-ramp", lines)}')
