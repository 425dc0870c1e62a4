"""Reports: the Markdown header (machine, versions, commit, command), tables,
the throughput table with its ratios to celerisd, and the gnuplot chart."""

import datetime
import os
import shutil
import subprocess
import sys

from .common import CELERISD, ROOT, fmt_int, median, run_text, say
from .routes import NO_HTTP1, PROTOS
from .servers import ktls_facts
from .load import client_args


def versions():
    out = {}
    out['celerisd'] = run_text([CELERISD, '-V']).splitlines()[:1]
    out['nginx'] = run_text(['nginx', '-v']).splitlines()[:1]
    out['h2o'] = run_text(['h2o', '-v']).splitlines()[:1]
    out['nghttpd'] = run_text(['nghttpd', '--version']).splitlines()[:1]
    out['h2load'] = run_text(['h2load', '--version']).splitlines()[:1]
    out['wrk'] = [' '.join(x.split()[:2]) for x in run_text(['wrk', '-v']).splitlines()[:1]]
    out['openssl'] = run_text(['openssl', 'version']).splitlines()[:1]
    out['curl'] = run_text(['curl', '--version']).splitlines()[:1]
    return {k: (v[0].strip() if v else '?') for k, v in out.items()}


def git_rev():
    rev = run_text(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD']).strip().splitlines()
    rev = rev[0] if rev else '?'
    dirty = subprocess.run(['git', '-C', ROOT, 'status', '--porcelain', '--', 'server'],
                           capture_output=True, text=True).stdout.strip()
    return rev + ('+uncommitted changes in server/' if dirty else '')


def header_lines(opts, title, client='h2load', extra=()):
    cpu = '?'
    try:
        cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo')
                   if l.startswith('model name'))
    except Exception:
        pass
    v = versions()
    return [f'# {title}', '',
            f'- date: {datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")}',
            f'- machine: {os.cpu_count()} CPUs ({cpu}), kernel {os.uname().release}',
            f'- celerisd: {v["celerisd"]}, git {git_rev()}, build-bench (buildtype=release)',
            f'- peers: {v["nginx"]}; {v["h2o"]}; {v["nghttpd"]}; client {v[client]}',
            *[f'- {x}' for x in extra],
            f'- command: `{" ".join(["scripts/bench"] + sys.argv[1:])}`', '']


def write_md(opts, stamp, suffix, lines):
    os.makedirs(opts.out_dir, exist_ok=True)
    path = os.path.join(opts.out_dir, f'bench-{stamp}{suffix}.md')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def md_table(head, rows, align=None):
    """Markdown table with padded columns (readable on a terminal too)."""
    cols = len(head)
    align = align or ['l'] + ['r'] * (cols - 1)
    w = [max(len(str(x[i])) for x in [head] + rows) for i in range(cols)]
    w = [max(3, x) for x in w]

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            c = str(c)
            out.append(c.ljust(w[i]) if align[i] == 'l' else c.rjust(w[i]))
        return '| ' + ' | '.join(out) + ' |'
    sep = '|' + '|'.join((':' + '-' * (w[i] + 1)) if align[i] == 'l' else ('-' * (w[i] + 1) + ':')
                         for i in range(cols)) + '|'
    return [line(head), sep] + [line(r) for r in rows]


def report_throughput(opts, ctx, routes, names, results, shared, threads, proto='h2c',
                      skipped=(), extra=()):
    stamp = ctx.stamp
    P = PROTOS[proto]
    client = P.client
    suffix = '' if proto == 'h2c' else f'-{proto}'
    head = ['route', 'server', 'req/s (median)', 'min–max']
    if not shared:
        head += ['server CPU %', f'{client} CPU %', 'server µs/req']
    head += ['celerisd ÷ peer req/s']
    if not shared:
        head += ['celerisd ÷ peer µs/req']
    rows = []
    client_bound = noisy_any = False
    for r in routes:
        base = results[r.name].get('celerisd')
        for name in names:
            runs = results[r.name][name]
            rps = [x['rps'] for x in runs]
            med = median(rps)
            mark = ''
            cli = median([x['cli_pct'] for x in runs])
            if not shared and cli >= 95:
                mark += ' †'
                client_bound = True
            if any(x.get('noisy') for x in runs):
                mark += ' !'
                noisy_any = True
            row = [r.name, name, fmt_int(med) + mark, f'{fmt_int(min(rps))}–{fmt_int(max(rps))}']
            us = median([x['us_per_req'] for x in runs])
            if not shared:
                row += [f'{median([x["srv_pct"] for x in runs]):.1f}', f'{cli:.1f}', f'{us:.2f}']
            if base and name != 'celerisd':
                bmed = median([x['rps'] for x in base])
                row.append(f'{bmed / med:.2f}')
                if not shared:
                    bus = median([x['us_per_req'] for x in base])
                    row.append(f'{bus / us:.2f}')
            else:
                row += ['—'] + ([] if shared else ['—'])
            rows.append(row)
    table = md_table(head, rows, ['l', 'l'] + ['r'] * (len(head) - 2))
    notes = []
    if shared:
        notes.append(f'**SHARED CORES — req/s only.** Servers ({opts.workers} workers/threads/'
                     f'processes) on CPUs {opts.server_cpus} and {client} -t {threads} on CPUs '
                     f'{opts.client_cpus}: they compete for the same cores, so CPU figures are '
                     f'meaningless and omitted.')
    else:
        notes.append(f'Server pinned to CPU {opts.server_cpus} ({opts.workers} worker), {client} '
                     f'-t {threads} to CPU {opts.client_cpus}. CPU % is utime+stime from '
                     f'/proc/PID/stat (server: whole process tree) over the {client} wall time; '
                     f'100 % = one core. µs/req = server CPU time ÷ requests completed.')
        if client_bound:
            notes.append(f'† {client} used ≥ 95 % of its core: client-bound, req/s understates '
                         'the server; compare server CPU % and µs/req.')
    if noisy_any:
        notes.append(f'! other processes used > {opts.noise_pct:g} % of a core during a run and '
                     f'it could not be re-run cleanly (median includes that run).')
    notes.append('Ratios: celerisd median ÷ peer median (req/s: > 1 is celerisd faster'
                 + ('' if shared else '; µs/req: < 1 is celerisd cheaper') + ').')
    if proto != 'h2c':
        notes.append(proto_note(opts, ctx, names, results, routes, proto, skipped, threads))
    params = (f'h2load -c {opts.connections} -m {opts.streams} -D {opts.duration:g}s, '
              if proto == 'h2c' else f'{P.title}: {client_args(opts, proto, threads)}, ')
    params += (f'warm-up {opts.warmup:g}s per server and route, {opts.repeat} interleaved '
               f'round(s); median with min–max.')
    if proto != 'h2c':
        say(f'\n--proto {proto}: {P.title}')
    say('\n' + '\n'.join(table))
    say('\n' + '\n'.join(notes))
    # markdown + chart
    title = 'celerisd throughput benchmark' + ('' if proto == 'h2c' else f' — {P.title}')
    lines = header_lines(opts, title, client, extra) + [f'- {params}', ''] + table
    lines += [''] + notes
    png = os.path.join(opts.out_dir, f'bench-{stamp}{suffix}.png')
    if chart(opts, ctx, routes, names, results, png, shared, proto, threads):
        lines += ['', f'![req/s per server and route]({os.path.basename(png)})']
    ct = sorted((k[1:], c) for k, c in ctx.content_types.items() if k[0] == proto)
    if ct:
        lines += ['', 'Content types answered (checked bodies are identical): ' + '; '.join(
            f'{s} {r}: {c}' for (s, r), c in ct)]
    lines += ['', '## Runs', '']
    rrows = []
    for r in routes:
        for name in names:
            for i, x in enumerate(results[r.name][name], 1):
                row = [r.name, name, str(i), fmt_int(x['rps']), fmt_int(x['requests'])]
                if not shared:
                    row += [f'{x["srv_pct"]:.1f}', f'{x["cli_pct"]:.1f}', f'{x["us_per_req"]:.2f}',
                            f'{x["other_pct"]:.1f}' + (' !' if x.get('noisy') else '')]
                if proto == 'http1':
                    row += [f'{x.get(k, float("nan")):.2f}' for k in ('p50', 'p99')]
                if proto == 'tls':
                    row += [x.get('tls', '?')]
                rrows.append(row)
    rhead = ['route', 'server', 'round', 'req/s', 'requests']
    if not shared:
        rhead += ['server CPU %', f'{client} CPU %', 'server µs/req', 'other CPU %']
    if proto == 'http1':
        rhead += ['p50 ms', 'p99 ms']
    if proto == 'tls':
        rhead += ['TLS']
    lines += md_table(rhead, rrows, ['l', 'l'] + ['r'] * (len(rhead) - 2))
    path = write_md(opts, stamp, suffix, lines)
    say(f'\nwrote {path}' + (f' and {png}' if os.path.exists(png) else ''))


def proto_note(opts, ctx, names, results, routes, proto, skipped, threads):
    """What the http1 / tls table measured, for the notes under it."""
    if proto == 'http1':
        note = (f'HTTP/1.1 cleartext with keep-alive, one request at a time per connection '
                f'(wrk: no pipelining; -m does not apply), {client_args(opts, proto, threads)}; '
                f'celerisd, h2o and h2o-mruby on their h2c port (the first bytes decide), nginx '
                f'on a second plain listen in the same server block. wrk rounds -d to whole '
                f'seconds; p50/p99 from wrk --latency are in the run lines and the Markdown\'s '
                f'runs table.')
    else:
        path, detail = ktls_facts()
        seen = sorted({f'{n} {x["tls"]}' for r in routes for n in names
                       for x in results[r.name][n] if 'tls' in x})
        note = (f'HTTP/2 over TLS (ALPN h2, checked), {client_args(opts, proto, threads)} on '
                f'https://; one self-signed EC P-256 certificate for every server; each server\'s '
                f'default TLS settings but nginx\'s ssl_protocols (TLSv1.2 TLSv1.3: 1.22 leaves '
                f'TLSv1.3 out); h2load reuses its connections, so handshakes are a negligible '
                f'share. Negotiated: {"; ".join(seen) or "?"}. celerisd TLS output: {path} '
                f'[{detail}].')
    for n in skipped:
        note += f' {n}: skipped ({NO_HTTP1.get(n, "not supported")}).'
    return note


def chart(opts, ctx, routes, names, results, png, shared, proto='h2c', threads=1):
    if not shutil.which('gnuplot'):
        say('gnuplot not found: no chart')
        return False
    data = os.path.join(ctx.tmp, 'chart.dat')
    with open(data, 'w') as f:
        for r in routes:
            cells = [f'"{r.name}"']
            for name in names:
                rps = [x['rps'] for x in results[r.name][name]]
                cells += [f'{median(rps):.0f}', f'{min(rps):.0f}', f'{max(rps):.0f}']
            f.write('\t'.join(cells) + '\n')
    if proto == 'h2c':
        title = (f'req/s, median and min–max: h2load -c {opts.connections} -m {opts.streams} '
                 f'-D {opts.duration:g}s; server CPU {opts.server_cpus}, h2load CPU '
                 f'{opts.client_cpus}' + (' (SHARED CORES)' if shared else ''))
    else:
        title = (f'{PROTOS[proto].title} req/s, median and min–max: '
                 f'{client_args(opts, proto, threads)}; server CPU {opts.server_cpus}, '
                 f'{PROTOS[proto].client} CPU {opts.client_cpus}'
                 + (' (SHARED CORES)' if shared else ''))
    script = f'''
set terminal pngcairo size 1100,600 font "sans,10"
set output "{png}"
set title "{title}"
set datafile separator "\\t"
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set ylabel "requests / s"
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set format y "%.0f"
set grid ytics
set key outside right top
names = "{' '.join(names)}"
plot for [i=0:{len(names) - 1}] "{data}" using (column(2+3*i)):(column(3+3*i)):(column(4+3*i)):xtic(1) title word(names, i+1)
'''
    os.makedirs(os.path.dirname(png), exist_ok=True)
    p = subprocess.run(['gnuplot'], input=script.encode(), capture_output=True)
    if p.returncode != 0 or not os.path.exists(png):
        say(f'gnuplot failed: {p.stderr.decode(errors="replace").strip()}')
        return False
    return True
