"""--files: static files from a directory, side by side (issue 14, Speed):
celerisd `dir:`, h2o `file.dir`, nginx `root` (sendfile on) and nghttpd -d on
small files (req/s, server CPU per request, callgrind instructions), 304
answers to If-None-Match beside celerisd's in-memory /bench, and a 1 GiB file
downloaded 16 at a time over h2c and HTTP/1.1 (throughput, peak RSS)."""

import os
import re
import subprocess
import threading
import time

from .common import (BenchError, CELERISD, CONF, ROOT, cpu_list, free_port, median, say,
                     system_busy_seconds, tail)
from .callgrind import callgrind_total
from .load import h2load
from .report import header_lines, md_table, write_md
from .servers import Server

# The small files: the three bench bodies and a 4 KiB and a 64 KiB file.
SMALL = [('bench.txt', b'OK'), ('json.json', b'{"message":"Hello, World!"}'),
         ('users.json', b'{"user":"123","post":"456"}'),
         ('4k.bin', bytes(range(256)) * 16), ('64k.bin', bytes(range(256)) * 256)]
BIG_NAME, BIG_SIZE, BIG_PARALLEL = 'big.bin', 1 << 30, 16
FILE_SERVERS = ['celerisd', 'h2o', 'nginx', 'nghttpd']
CALLGRIND_SERVERS = ['celerisd', 'h2o']


class FileServer(Server):
    """A server whose only job is the docroot under /f/ (celerisd keeps its
    in-memory /bench beside it, for the 304 comparison). nginx gets a plain
    HTTP/1.1 listener beside its h2c one; the others speak both on one port."""

    def __init__(self, name, ctx, root, sendfile=True, **kw):
        super().__init__(name, ctx, **kw)
        self.root = root
        self.sendfile = sendfile    # celerisd: False writes `sendfile: false`
        if name == 'nginx':
            self.h1_port = free_port()

    def url_h1(self, path):
        return f'http://127.0.0.1:{self.h1_port}{path}'

    def listen_ports(self):
        return sorted({self.port, self.h1_port})

    def command(self):
        n, f = self.name, os.path.join(self.root, 'f')
        if n == 'celerisd':
            with open(CONF) as fh:
                text = fh.read()
            text = re.sub(r'(?m)^listen:.*$', f'listen: "127.0.0.1:{self.port}"', text)
            text = re.sub(r'(?m)^workers:.*$', f'workers: {self.workers}', text)
            text = re.sub(r'(?m)^modules_dir:.*$',
                          f'modules_dir: {os.path.join(ROOT, "build-bench", "modules")}', text)
            text = text.rstrip('\n') + f'\n  - path: /f/*path\n    dir: {{ root: "{f}" }}\n'
            if not self.sendfile:
                text = 'sendfile: false\n' + text
            return [CELERISD, '-c', self._write('celerisd.yaml', text)]
        if n == 'h2o':
            return ['h2o', '-c', self._write('h2o.yaml', (
                f'user: root\nnum-threads: {self.workers}\nmax-connections: {self.conns}\n'
                f'pid-file: {self.dir}/h2o.pid\nerror-log: {self.dir}/h2o-error.log\n'
                f'http2-idle-timeout: 300\nlisten:\n  host: 127.0.0.1\n  port: {self.port}\n'
                f'hosts:\n  default:\n    paths:\n      /f:\n        file.dir: {f}\n'))]
        if n == 'nginx':
            master = 'off' if self.callgrind_out else 'on'
            conf = self._write('nginx.conf', (
                f'daemon off;\nmaster_process {master};\nworker_processes {self.workers};\n'
                f'worker_rlimit_nofile 8192;\npid {self.dir}/nginx.pid;\n'
                f'error_log {self.dir}/nginx-error.log warn;\n'
                f'events {{ worker_connections {self.conns}; }}\n'
                f'http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n'
                f'  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n'
                f'  client_body_temp_path {self.dir}/b; proxy_temp_path {self.dir}/p;\n'
                f'  fastcgi_temp_path {self.dir}/fc; uwsgi_temp_path {self.dir}/u;\n'
                f'  scgi_temp_path {self.dir}/s;\n  keepalive_requests 1000000000;\n'
                f'  keepalive_timeout 300s;\n  server {{\n'
                f'    listen 127.0.0.1:{self.port} http2;\n    listen 127.0.0.1:{self.h1_port};\n'
                f'    location /f/ {{ root {self.root}; }}\n  }}\n}}\n'))
            return ['nginx', '-p', self.dir + '/', '-e', os.path.join(self.dir, 'nginx-error.log'),
                    '-c', conf]
        if n == 'nghttpd':
            return ['nghttpd', '--no-tls', '-a', '127.0.0.1', '-n', str(self.workers),
                    '-d', self.root, str(self.port)]
        raise BenchError(f'--files: unknown server {n}')


def make_docroot(ctx):
    os.chmod(ctx.tmp, 0o755)    # nginx's workers drop root for nobody
    root = os.path.join(ctx.tmp, 'files')
    os.makedirs(os.path.join(root, 'f'))
    for name, body in SMALL:
        with open(os.path.join(root, 'f', name), 'wb') as fh:
            fh.write(body)
    return root


def make_big(root):
    """A sparse 1 GiB file: no disk blocks, and reads of it come from the zero page."""
    path = os.path.join(root, 'f', BIG_NAME)
    with open(path, 'wb') as fh:
        fh.truncate(BIG_SIZE)
    return path


def curl(args):
    p = subprocess.run(['curl', '-sS', '--max-time', '60'] + args, capture_output=True)
    return p


def check_small(srv):
    for name, body in SMALL:
        for copt, ver, url in (('--http2-prior-knowledge', '2', srv.url(f'/f/{name}')),
                               ('--http1.1', '1.1', srv.url_h1(f'/f/{name}'))):
            if srv.name == 'nghttpd' and ver == '1.1':
                continue
            p = curl([copt, '-o', '-', '-w', '\n%{http_code} %{http_version}', url])
            got, _, tailw = p.stdout.rpartition(b'\n')
            if p.returncode or tailw.decode() != f'200 {ver}' or got != body:
                raise BenchError(f'{srv.name} answers GET {url} wrongly: {tailw!r} '
                                 f'{p.stderr.decode().strip()}, body {got[:80]!r}')


def etag_of(srv, path):
    p = curl(['--http2-prior-knowledge', '-o', os.devnull, '-D', '-', srv.url(path)])
    m = re.search(rb'(?mi)^etag:\s*(.+?)\s*$', p.stdout)
    return m.group(1).decode() if m else None


def timed(srv, url, opts, threads, what, extra=(), want=200):
    cpu0, busy0 = srv.cpu_seconds(), system_busy_seconds()
    res = h2load(url, opts.client_cpus, threads, opts.connections, opts.streams, what,
                 duration=opts.duration, extra=extra, want_status=want)
    busy1, cpu1 = system_busy_seconds(), srv.cpu_seconds()
    srv.check_alive(f'during {what}')
    cpu = cpu1 - cpu0
    res['us_per_req'] = 1e6 * cpu / res['requests']
    res['srv_pct'] = 100 * cpu / res['wall']
    res['other_pct'] = max(0.0, 100 * ((busy1 - busy0) - cpu - res['client_cpu']) / res['wall'])
    return res


def small_runs(opts, ctx, root, names, threads):
    servers = {n: FileServer(n, ctx, root, cpus=opts.server_cpus, workers=opts.workers).start()
               for n in names}
    ctx.servers.extend(servers.values())
    for s in servers.values():
        check_small(s)
    say(f'bodies checked: {", ".join(names)} answer every file over h2c (and HTTP/1.1)')
    cases = [(f'/f/{n}', n, (), 200) for n, _ in SMALL]
    for n, s in servers.items():
        tag = etag_of(s, '/f/bench.txt')
        if tag:
            s.etag = tag
    cases.append(('/f/bench.txt', '304 bench.txt', 'etag', 304))
    cases.append(('/bench', '/bench (in memory)', (), 200))
    results = {}
    for path, label, extra, want in cases:
        say(f'\n== {label}')
        for rnd in range(1, opts.repeat + 1):
            for n, s in servers.items():
                if extra == 'etag':
                    if not getattr(s, 'etag', None):
                        continue
                    ex = ['-H', f'if-none-match: {s.etag}']
                else:
                    ex = ()
                if path == '/bench' and n != 'celerisd':
                    continue
                if rnd == 1 and opts.warmup > 0:
                    h2load(s.url(path), opts.client_cpus, threads, opts.connections, opts.streams,
                           f'{n} {label} warm-up', duration=opts.warmup, extra=ex,
                           want_status=want)
                r = timed(s, s.url(path), opts, threads, f'{n} {label} #{rnd}', ex, want)
                say(f'  {label:<20} {n:<9} #{rnd} {r["rps"]:>10,.0f} req/s  server '
                    f'{r["srv_pct"]:5.1f}%  {r["us_per_req"]:6.2f} µs/req  other '
                    f'{r["other_pct"]:4.1f}%')
                results.setdefault(label, {}).setdefault(n, []).append(r)
    for s in servers.values():
        s.stop()
    rows = []
    for label in results:
        base = results[label].get('celerisd')
        for n, runs in results[label].items():
            rps, us = median([x['rps'] for x in runs]), median([x['us_per_req'] for x in runs])
            ratio = '—'
            if base and n != 'celerisd':
                ratio = (f'{median([x["rps"] for x in base]) / rps:.2f} / '
                         f'{median([x["us_per_req"] for x in base]) / us:.2f}')
            rows.append([label, n, f'{rps:,.0f}',
                         f'{min(x["rps"] for x in runs):,.0f}–{max(x["rps"] for x in runs):,.0f}',
                         f'{us:.2f}', f'{median([x["other_pct"] for x in runs]):.0f}', ratio])
    return md_table(['file', 'server', 'req/s (median)', 'min–max', 'server µs/req',
                     'other CPU %', 'celerisd ÷ peer (req/s / µs)'], rows,
                    ['l', 'l', 'r', 'r', 'r', 'r', 'r'])


def callgrind_runs(opts, ctx, root, names):
    n = opts.requests
    rows = []
    for name in [x for x in names if x in CALLGRIND_SERVERS]:
        def run(path, label, extra=()):
            out = os.path.join(ctx.tmp, f'callgrind.files.{name}.{label.replace("/", "_")}')
            srv = FileServer(name, ctx, root, cpus=opts.server_cpus, workers=1,
                             callgrind_out=out)
            ctx.servers.append(srv)
            srv.start()
            time.sleep(2)
            ex = extra
            if extra == 'etag':
                ex = ['-H', f'if-none-match: {etag_of(srv, path)}']
            if path:
                h2load(srv.url(path), opts.client_cpus, 1, 4, 10, f'{name} {label} callgrind',
                       n=n, expect_n=n, extra=ex, want_status=304 if extra == 'etag' else 200)
            rc = srv.stop()
            if rc is None or not os.path.exists(out):
                raise BenchError(f'{name} under callgrind: exit {rc}\n{tail(srv.log)}')
            total = callgrind_total(out)
            say(f'  {name:<9} {label:<22} {total:>16,} Ir')
            return total
        idle = run(None, 'idle')
        # etag_of adds one request to the 304 run: a 200 of bench.txt, counted in n's noise.
        cases = [(f'/f/{f}', f, ()) for f, _ in SMALL] + [('/f/bench.txt', '304 bench.txt', 'etag')]
        if name == 'celerisd':
            cases.append(('/bench', '/bench (in memory)', ()))
        for path, label, extra in cases:
            ipr = (run(path, label, extra) - idle) / n
            rows.append([label, name, f'{ipr:,.0f}'])
    return md_table(['file', 'server', 'instructions / request'], rows, ['l', 'l', 'r'])


def rss_sampler(srv, stop, peak):
    while not stop.is_set():
        peak[0] = max(peak[0], srv.rss_kib())
        time.sleep(0.05)


def big_once(srv, name, proto):
    """One run of BIG_PARALLEL downloads: (seconds, MB/s, server CPU s, RSS before, peak RSS)."""
    url = srv.url(f'/f/{BIG_NAME}') if proto == 'h2c' else srv.url_h1(f'/f/{BIG_NAME}')
    extra = ['--h1'] if proto == 'http1' else []
    rss0 = srv.rss_kib()
    stop, peak = threading.Event(), [rss0]
    th = threading.Thread(target=rss_sampler, args=(srv, stop, peak))
    th.start()
    cpu0 = srv.cpu_seconds()
    try:
        res = h2load(url, srv.client_cpus, len(cpu_list(srv.client_cpus)), BIG_PARALLEL, 1,
                     f'{name} {BIG_NAME} {proto}', n=BIG_PARALLEL, expect_n=BIG_PARALLEL,
                     extra=extra)
    finally:
        stop.set()
        th.join()
    cpu = srv.cpu_seconds() - cpu0
    srv.check_alive(f'during {name} {BIG_NAME} {proto}')
    return res['wall'], BIG_PARALLEL * BIG_SIZE / res['wall'] / 1e6, cpu, rss0, peak[0]


def big_runs(opts, ctx, root, names, rounds=1):
    """ROUNDS interleaved rounds (every server, then again); medians per server
    and protocol, with the spread of MB/s when more than one round."""
    make_big(root)
    servers = {}
    # celerisd twice: its default (sendfile for HTTP/1.1 files) and
    # `sendfile: false` (read and written, as h2o does), side by side.
    variants = [(n, n, True) for n in names]
    if 'celerisd' in names:
        variants.insert(names.index('celerisd') + 1, ('celerisd sendfile:false', 'celerisd', False))
    for name, kind, sendfile in variants:
        srv = FileServer(kind, ctx, root, sendfile=sendfile, cpus=opts.server_cpus,
                         workers=opts.workers).start()
        srv.client_cpus = opts.client_cpus
        ctx.servers.append(srv)
        p = curl(['--http2-prior-knowledge', '-o', '/dev/null', '-w', '%{size_download}',
                  srv.url(f'/f/{BIG_NAME}')])
        if p.stdout.decode() != str(BIG_SIZE):
            raise BenchError(f'{name}: GET /f/{BIG_NAME} gave {p.stdout!r} octets '
                             f'{p.stderr.decode().strip()}')
        servers[name] = srv
    runs = {}
    for rnd in range(1, rounds + 1):
        for proto in ('h2c', 'http1'):
            for name, srv in servers.items():
                if proto == 'http1' and name == 'nghttpd':
                    continue
                if proto == 'h2c' and not srv.sendfile:
                    continue    # HTTP/2 reads file payloads either way
                r = big_once(srv, name, proto)
                say(f'  {name:<9} {proto:<6} #{rnd} {BIG_PARALLEL} x 1 GiB in {r[0]:6.2f} s  '
                    f'{r[1]:8,.0f} MB/s  server CPU {r[2]:6.2f} s  RSS {r[3]:,} -> peak '
                    f'{r[4]:,} KiB')
                runs.setdefault((proto, name), []).append(r)
    for srv in servers.values():
        srv.stop()
    rows = []
    for (proto, name), rs in runs.items():
        mbs = [r[1] for r in rs]
        spread = f'{min(mbs):,.0f}–{max(mbs):,.0f}' if len(rs) > 1 else ''
        rows.append([proto, name, f'{median([r[0] for r in rs]):.2f}', f'{median(mbs):,.0f}',
                     spread, f'{median([r[2] for r in rs]):.2f}',
                     f'{median([r[3] for r in rs]):,.0f}', f'{max(r[4] for r in rs):,}'])
    return md_table(['protocol', 'server', 'seconds', 'MB/s', 'min–max', 'server CPU s',
                     'RSS KiB before', 'peak RSS KiB'], rows, ['l', 'l'] + ['r'] * 6)


def mode_files(opts, ctx, routes, names):
    names = [n for n in names if n in FILE_SERVERS]
    if not names:
        raise BenchError(f'--files: --servers takes some of {", ".join(FILE_SERVERS)}')
    threads = len(cpu_list(opts.client_cpus))
    root = make_docroot(ctx)
    say(f'--files: docroot {root}/f: {", ".join(n for n, _ in SMALL)}; servers '
        f'{", ".join(names)} on CPU {opts.server_cpus}, h2load -t {threads} -c '
        f'{opts.connections} -m {opts.streams} -D {opts.duration:g}s on CPU {opts.client_cpus}, '
        f'{opts.repeat} round(s)')
    if opts.downloads:
        say(f'--files --downloads: {BIG_PARALLEL} parallel downloads of a sparse 1 GiB file '
            f'(h2load -n {BIG_PARALLEL} -c {BIG_PARALLEL} -m 1; --h1 for HTTP/1.1), servers '
            f'{", ".join(names)} on CPU {opts.server_cpus}, h2load on CPU {opts.client_cpus}, '
            f'{opts.repeat} round(s)')
        big = big_runs(opts, ctx, root, names, opts.repeat)
        say('\n' + '\n'.join(big))
        lines = header_lines(opts, 'Large static files (--files --downloads)')
        lines += [f'## {BIG_PARALLEL} × 1 GiB (sparse) in parallel, median of {opts.repeat}', '']
        lines += big + ['', 'peak RSS: VmRSS of the process tree sampled every 50 ms during '
                        'the runs (the highest of them).', '']
        say(f'\nwrote {write_md(opts, ctx.stamp, "-downloads", lines)}')
        return
    small = small_runs(opts, ctx, root, names, threads)
    say('\n' + '\n'.join(small))
    say(f'\n== callgrind: h2load -n {opts.requests} -c 4 -m 10 per file, minus an idle start+stop')
    cg = callgrind_runs(opts, ctx, root, names)
    say('\n' + '\n'.join(cg))
    say(f'\n== {BIG_PARALLEL} parallel downloads of a sparse 1 GiB file '
        f'(h2load -n {BIG_PARALLEL} -c {BIG_PARALLEL} -m 1; --h1 for HTTP/1.1)')
    big = big_runs(opts, ctx, root, names)
    say('\n' + '\n'.join(big))
    lines = header_lines(opts, 'Static files from a directory (--files)')
    lines += ['## Small files and 304, h2c', ''] + small + [
        '', 'server µs/req: utime+stime of the server\'s process tree ÷ requests; 304: '
        'GET with if-none-match set to the ETag the server gave (nghttpd sends none).', '',
        '## Instructions per request (callgrind)', ''] + cg + [
        '', f'(total − idle start+stop) ÷ {opts.requests}, h2load -c 4 -m 10.', '',
        f'## {BIG_PARALLEL} × 1 GiB (sparse) in parallel', ''] + big + [
        '', 'peak RSS: VmRSS of the process tree sampled every 50 ms during the run.', '']
    say(f'\nwrote {write_md(opts, ctx.stamp, "-files", lines)}')
