"""The default mode: every server on every route, interleaved rounds, medians
and ratios (scripts/bench, --proto h2c,http1,tls)."""

import time

from .common import cpu_list, say, tail
from .routes import NO_HTTP1, PROTOS
from .servers import CURL_PROTO, check_bodies, ktls_facts
from .load import client_args, load, measured_run
from .report import report_throughput, versions


def mode_throughput(opts, ctx, routes, names, proto='h2c'):
    P = PROTOS[proto]
    client = P.client
    skipped = [n for n in names if n not in P.servers]
    names = [n for n in names if n in P.servers]
    for n in skipped:
        say(f'{n}: skipped for --proto {proto} ({NO_HTTP1.get(n, "not supported")})')
    shared = bool(set(cpu_list(opts.server_cpus)) & set(cpu_list(opts.client_cpus)))
    threads = len(cpu_list(opts.client_cpus))
    extra = []
    if proto == 'tls':
        path, detail = ktls_facts()
        extra.append(f'celerisd TLS output: {path} [{detail}]')
        say(extra[-1])
        extra.append(f'openssl: {versions()["openssl"]}')
    servers = {}
    for name in names:
        servers[name] = ctx.server(name, proto=proto).start()
        check_bodies(servers[name], routes, ctx)
    say(f'bodies checked: {", ".join(names)} answer every route correctly'
        + ('' if proto == 'h2c' else f' ({P.title}, curl {" ".join(CURL_PROTO[proto][0])})'))
    if proto == 'h2c':
        say(f'servers on CPU {opts.server_cpus} ({opts.workers} worker(s)/thread(s)/process(es)), '
            f'h2load -t {threads} on CPU {opts.client_cpus}, -c {opts.connections} '
            f'-m {opts.streams} -D {opts.duration:g}s, warm-up {opts.warmup:g}s, '
            f'{opts.repeat} round(s)' + ('   [SHARED CORES: req/s only]' if shared else ''))
    else:
        say(f'servers on CPU {opts.server_cpus} ({opts.workers} worker(s)/thread(s)/process(es)), '
            f'{client_args(opts, proto, threads)} on CPU {opts.client_cpus}, '
            f'{"https" if proto == "tls" else "http"}://, warm-up {opts.warmup:g}s, '
            f'{opts.repeat} round(s)' + ('   [SHARED CORES: req/s only]' if shared else ''))
    results = {}
    retries_left = opts.noise_retries
    for r in routes:
        say(f'\n== {r.name}  ({r.path})')
        if opts.warmup > 0:
            for name in names:
                load(servers[name], r.path, opts, threads, f'{name} {r.path} warm-up', opts.warmup)
                servers[name].check_alive(f'during the warm-up of {r.path}')
        for rnd in range(1, opts.repeat + 1):
            for name in names:
                srv = servers[name]
                for attempt in range(3):
                    res = measured_run(srv, r, opts, threads, f'{name} {r.path} round {rnd}')
                    noisy = (not shared) and res['other_pct'] > opts.noise_pct
                    res['noisy'] = noisy
                    line = (f'  {r.name:<26} {name:<10} #{rnd}  {res["rps"]:>10,.0f} req/s')
                    if not shared:
                        line += (f'  server {res["srv_pct"]:5.1f}%  {client} {res["cli_pct"]:5.1f}%'
                                 f'  {res["us_per_req"]:5.2f} µs/req'
                                 f'  other {res["other_pct"]:4.1f}%')
                    if 'p50' in res:
                        line += f'  p50 {res["p50"]:.2f} ms  p99 {res["p99"]:.2f} ms'
                    if 'tls' in res:
                        line += f'  {res["tls"]}'
                    say(line + ('  NOISY' if noisy else ''))
                    if not noisy:
                        break
                    if attempt < 2 and retries_left > 0:
                        retries_left -= 1
                        say(f'    other processes used > {opts.noise_pct:g}% of a core: run '
                            f'discarded, repeating ({retries_left} re-runs left)')
                        time.sleep(2)
                    else:
                        say('    still noisy: kept, marked ! in the table')
                        break
                results.setdefault(r.name, {}).setdefault(name, []).append(res)
    for name in names:
        rc = servers[name].stop()
        if name == 'celerisd' and rc != 0:
            say(f'NOTE: celerisd exited with code {rc} after SIGTERM (expected 0)\n'
                f'{tail(servers[name].log)}')
    report_throughput(opts, ctx, routes, names, results, shared, threads, proto, skipped, extra)
