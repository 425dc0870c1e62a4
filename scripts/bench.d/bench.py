#!/usr/bin/python3
"""Benchmark driver behind scripts/bench (which installs the tools and builds
build-bench first). Runs celerisd and its peers (nginx, h2o, h2o with mruby,
nghttpd) on loopback with their own generated configs in a temp directory,
pinned with taskset, and drives them with h2load (h2c, or HTTP/2 over TLS) or
wrk (HTTP/1.1). Run `scripts/bench -h`."""

import argparse
import array
import datetime
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, 'scripts', 'bench.d')
CELERISD = os.path.join(ROOT, 'build-bench', 'celerisd')
CONF = os.path.join(ROOT, 'conf', 'bench.yaml')
HZ = os.sysconf('SC_CLK_TCK')


class Route:
    def __init__(self, name, path, body, ctype, key, status=200):
        self.name, self.path, self.body, self.ctype, self.key = name, path, body, ctype, key
        self.status = status


ROUTES = [
    Route('/bench', '/bench', b'OK', 'text/plain', 'bench'),
    Route('/json', '/json', b'{"message":"Hello, World!"}', 'application/json', 'json'),
    Route('/users/:id/posts/:postId', '/users/123/posts/456',
          b'{"user":"123","post":"456"}', 'application/json', 'users'),
    # celerisd's own: the example hello module (a .so handler), to compare with /json
    Route('/hello/:name (module)', '/hello/bench', b'Hello, bench!\n',
          'text/plain; charset=utf-8', 'hello'),
]
SERVERS = ['celerisd', 'nginx', 'h2o', 'h2o-mruby', 'nghttpd']
# --table N: N literal routes and TABLE_PARAMS param routes under /api/v1/, the
# shape of a big REST API (issue 21). Only celerisd and nginx (20,000 `location =`
# blocks, which it hashes, and regex locations for the params) take a table.
TABLE_PARAMS = 100
TABLE_SERVERS = ['celerisd', 'nginx']


def table_routes(n):
    """The four requests --table measures: the first and last literal route, the
    last param route, and a path no route matches (404)."""
    p = TABLE_PARAMS - 1
    return [Route('first', '/api/v1/resource0/items', b'OK', 'text/plain', 'first'),
            Route('last', f'/api/v1/resource{n - 1}/items', b'OK', 'text/plain', 'last'),
            Route('param', f'/api/v1/param{p}/123', b'{"id":"123"}', 'application/json', 'param'),
            Route('404', '/api/v1/nothere/items', None, None, '404', status=404)]


def table_celerisd(n):
    """Route lines for conf/bench.yaml's routes list (its last key)."""
    lines = []
    for i in range(n):
        lines.append(f'  - path: /api/v1/resource{i}/items\n'
                     f'    static: {{ body: "OK", content_type: text/plain }}')
    for j in range(TABLE_PARAMS if n else 0):
        lines.append(f'  - path: /api/v1/param{j}/:id\n    methods: [GET]\n'
                     f'    json: {{ template: {{ id: "{{{{param.id}}}}" }} }}')
    return '\n'.join(lines) + '\n' if lines else ''


def table_nginx(n):
    """The same table as nginx locations (the TABLE line of nginx.conf.in)."""
    lines = ['location / { return 404; }'] if n else []   # the 404 request
    for i in range(n):
        lines.append(f'location = /api/v1/resource{i}/items {{ default_type text/plain; '
                     f'return 200 "OK"; }}')
    for j in range(TABLE_PARAMS if n else 0):
        lines.append(f'location ~ ^/api/v1/param{j}/([^/]+)$ {{ '
                     f'default_type application/json; return 200 \'{{"id":"$1"}}\'; }}')
    return '\n'.join(lines)
RAMP_STEPS = [10, 25, 50, 100, 200, 400, 600]


class Proto:
    def __init__(self, key, title, client, servers):
        self.key, self.title, self.client, self.servers = key, title, client, servers


# What each --proto measures, with which client, against which servers.
PROTOS = {
    'h2c': Proto('h2c', 'HTTP/2 cleartext (prior knowledge)', 'h2load', SERVERS),
    'http1': Proto('http1', 'HTTP/1.1 cleartext', 'wrk',
                   [s for s in SERVERS if s != 'nghttpd']),
    'tls': Proto('tls', 'HTTP/2 over TLS', 'h2load', SERVERS),
}
NO_HTTP1 = {'nghttpd': 'nghttpd speaks only HTTP/2'}


class BenchError(Exception):
    pass


def say(msg=''):
    print(msg, flush=True)


# ---------------------------------------------------------------- helpers

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
                pm.seek(lo // 4096 * 8)
                entries = array.array('Q', pm.read((hi - lo) // 4096 * 8))
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


# ---------------------------------------------------------------- servers

class Server:
    """One server under test, with its own config and log in the temp dir."""

    def __init__(self, name, ctx, cpus, workers=1, conns=4096, callgrind_out=None, idle=False,
                 proto='h2c', table=0):
        self.name, self.ctx, self.cpus, self.workers = name, ctx, cpus, workers
        self.table = table                 # --table: routes in the generated table
        self.conns, self.callgrind_out, self.idle = conns, callgrind_out, idle
        self.proto = proto
        self.port = free_port()            # h2c: every config has it (nghttpd's tls one not)
        self.h1_port = self.port           # HTTP/1.1: the same port, but nginx needs its own
        if proto == 'http1' and name == 'nginx':
            self.h1_port = free_port()
        self.tls_port = free_port() if proto == 'tls' else None
        self.dir = os.path.join(ctx.tmp, f'{name}-{self.port}')
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, 'server.log')
        self.proc = None

    def url(self, path):
        if self.proto == 'tls':
            return f'https://127.0.0.1:{self.tls_port}{path}'
        if self.proto == 'http1':
            return f'http://127.0.0.1:{self.h1_port}{path}'
        return f'http://127.0.0.1:{self.port}{path}'

    def listen_ports(self):
        """Every port this server's config opens (start() waits for all)."""
        if self.proto == 'tls':
            return [self.tls_port] if self.name == 'nghttpd' else [self.port, self.tls_port]
        return sorted({self.port, self.h1_port})

    def extra_listen(self):
        """Lines for the EXTRALISTEN placeholder of nginx.conf.in / h2o*.yaml.in."""
        if self.proto == 'http1' and self.name == 'nginx':
            return f'listen 127.0.0.1:{self.h1_port};'
        if self.proto != 'tls':
            return ''
        cert, key = self.ctx.tls_files()
        if self.name == 'nginx':    # nginx before 1.23.4 leaves TLSv1.3 out by default
            return (f'listen 127.0.0.1:{self.tls_port} ssl http2;\n'
                    f'ssl_certificate {cert};\nssl_certificate_key {key};\n'
                    f'ssl_protocols TLSv1.2 TLSv1.3;')
        return (f'listen:\n  host: 127.0.0.1\n  port: {self.tls_port}\n  ssl:\n'
                f'    certificate-file: {cert}\n    key-file: {key}')

    def _template(self, fname, **kv):
        with open(os.path.join(HERE, fname)) as f:
            text = f.read()
        kv.setdefault('TMP', self.dir)
        kv.setdefault('DOCS', self.ctx.docs)
        kv.setdefault('PORT', str(self.port))
        kv.setdefault('WORKERS', str(self.workers))
        kv.setdefault('CONNS', str(self.conns))
        kv.setdefault('EXTRALISTEN', self.extra_listen())
        kv.setdefault('TABLE', table_nginx(self.table))
        for k, v in kv.items():
            # A placeholder alone on its line: the line goes when the value is
            # empty; a value of several lines keeps the line's indentation.
            text = re.sub(rf'(?m)^([ \t]*)@{k}@[ \t]*\n',
                          lambda m: ''.join(m.group(1) + x + '\n' for x in v.splitlines()), text)
            text = text.replace(f'@{k}@', v)
        left = re.findall(r'@[A-Z0-9_]+@', text)
        if left:
            raise BenchError(f'{fname}: unfilled placeholders {left}')
        return text

    def _write(self, fname, text):
        path = os.path.join(self.dir, fname)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def command(self):
        n = self.name
        if n == 'celerisd':
            with open(CONF) as f:
                text = f.read()
            listen = f'listen: "127.0.0.1:{self.port}"'
            if self.proto == 'tls':
                cert, key = self.ctx.tls_files()
                listen = (f'listen: ["127.0.0.1:{self.port}", '
                          f'{{address: "127.0.0.1:{self.tls_port}", '
                          f'tls: {{cert: {json.dumps(cert)}, key: {json.dumps(key)}}}}}]')
            subs = [(r'(?m)^listen:.*$', listen.replace('\\', r'\\')),
                    (r'(?m)^workers:.*$', f'workers: {self.workers}'),
                    (r'(?m)^modules_dir:.*$',
                     f'modules_dir: {os.path.join(ROOT, "build-bench", "modules")}')]
            if self.conns > 10000:
                subs.append((r'(?m)^(\s+max_connections:).*$', rf'\g<1> {self.conns}'))
            if self.idle:   # idle connections must outlive the measurement
                subs.append((r'(?m)^(\s+idle_timeout:).*$', r'\g<1> 300s'))
                subs.append((r'(?m)^(\s+header_timeout:).*$', r'\g<1> 300s'))
            for pat, rep in subs:
                text, k = re.subn(pat, rep, text)
                if k != 1:
                    raise BenchError(f'conf/bench.yaml: expected one line matching {pat!r}')
            text = text.rstrip('\n') + '\n' + table_celerisd(self.table)
            return [CELERISD, '-c', self._write('celerisd.yaml', text)]
        if n == 'nginx':
            conf = self._write('nginx.conf', self._template(
                'nginx.conf.in', MASTER='off' if self.callgrind_out else 'on',
                NOFILE=str(max(8192, 2 * self.conns + 100))))
            return ['nginx', '-p', self.dir + '/', '-e', os.path.join(self.dir, 'nginx-error.log'),
                    '-c', conf]
        if n in ('h2o', 'h2o-mruby'):
            return ['h2o', '-c', self._write(n + '.yaml', self._template(n + '.yaml.in'))]
        if n == 'nghttpd':
            if self.proto == 'tls':
                cert, key = self.ctx.tls_files()
                return ['nghttpd', '-a', '127.0.0.1', '-n', str(self.workers),
                        '-d', self.ctx.docs, str(self.tls_port), key, cert]
            if self.proto == 'http1':
                raise BenchError(f'nghttpd: {NO_HTTP1["nghttpd"]}')
            return ['nghttpd', '--no-tls', '-a', '127.0.0.1', '-n', str(self.workers),
                    '-d', self.ctx.docs, str(self.port)]
        raise BenchError(f'unknown server {n}')

    def start(self, timeout=15):
        cmd = ['taskset', '-c', self.cpus]
        if self.callgrind_out:
            cmd += ['valgrind', '--tool=callgrind', f'--callgrind-out-file={self.callgrind_out}']
            timeout = max(timeout, 120)
        if self.table:      # nginx takes seconds to load 20,000 locations; valgrind ~50x that
            timeout = max(timeout, 60 + self.table * (0.03 if self.callgrind_out else 0.003))
        cmd += self.command()
        self.cmd = cmd
        with open(self.log, 'ab') as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=self.dir)
        deadline = time.monotonic() + timeout
        for port in self.listen_ports():
            while True:
                if self.proc.poll() is not None:
                    raise BenchError(f'{self.name} exited with code {self.proc.returncode} at '
                                     f'start:\n    $ {" ".join(cmd)}\n{tail(self.log)}')
                try:
                    with socket.create_connection(('127.0.0.1', port), timeout=1):
                        pass
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise BenchError(f'{self.name} does not listen on port {port} after '
                                         f'{timeout} s\n{tail(self.log)}')
                    time.sleep(0.05)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, what):
        if not self.alive():
            raise BenchError(f'{self.name} died (exit code {self.proc.returncode}) {what}\n'
                             f'{tail(self.log)}')

    def pids(self):
        return proc_tree(self.proc.pid) if self.alive() else []

    def cpu_seconds(self):
        return sum(proc_cpu_seconds(p) for p in self.pids())

    def rss_kib(self):
        return sum(proc_rss_kib(p) for p in self.pids())

    def touched_kib(self):
        return sum(proc_touched_kib(p) for p in self.pids())

    def stop(self, timeout=15):
        """SIGTERM by PID; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        tree = self.pids()
        if self.callgrind_out:
            timeout = max(timeout, 180)
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f'  {self.name}: still running {timeout} s after SIGTERM, sending SIGKILL')
            self.proc.kill()
            self.proc.wait()
            rc = None
        for p in tree[1:]:          # leftovers of this server only (e.g. h2o's helper)
            try:
                os.kill(p, signal.SIGTERM)
            except OSError:
                pass
        return rc


# ---------------------------------------------------------------- checks

CURL_PROTO = {   # --proto -> curl options, and the HTTP version curl must report
    'h2c': (['--http2-prior-knowledge'], '2'),
    'http1': (['--http1.1'], '1.1'),
    'tls': (['--http2', '-k'], '2'),      # ALPN h2; -k: the bench's self-signed certificate
}


def check_bodies(srv, routes, ctx):
    """One curl per route (two for the params route), in the server's protocol:
    --http2-prior-knowledge (h2c), --http1.1 (http1) or https with ALPN h2 (tls)."""
    copts, want_ver = CURL_PROTO[srv.proto]
    for r in routes:
        cases = [(r.path, r.body)]
        if r.key == 'users' and srv.name != 'nghttpd':   # nghttpd serves files: one id only
            cases.append(('/users/u-7/posts/p-9', b'{"user":"u-7","post":"p-9"}'))
        for path, want in cases:
            if r.status != 200:     # --table's 404: the status alone
                p = subprocess.run(['curl'] + copts + ['-sS', '--max-time', '10', '-o', os.devnull,
                                    '-w', '%{http_code}', srv.url(path)],
                                   capture_output=True, text=True)
                if p.stdout != str(r.status):
                    raise BenchError(f'{srv.name} answers GET {srv.url(path)} with {p.stdout!r} '
                                     f'{p.stderr.strip()}; expected {r.status}')
                continue
            bodyf = os.path.join(ctx.tmp, 'curl-body')
            p = subprocess.run(['curl'] + copts + ['-sS', '--max-time', '10',
                                '-o', bodyf, '-w', '%{http_code} %{http_version} %{content_type}',
                                srv.url(path)], capture_output=True, text=True)
            got = open(bodyf, 'rb').read() if os.path.exists(bodyf) else b''
            parts = (p.stdout.split(' ', 2) + ['', '', ''])[:3]
            code, ver, ctype = parts
            if p.returncode != 0 or code != '200' or ver != want_ver or got != want:
                raise BenchError(
                    f'{srv.name} answers GET {srv.url(path)} wrongly: curl exit {p.returncode} '
                    f'{p.stderr.strip()}, HTTP/{ver} {code}, body {got[:200]!r}; '
                    f'expected HTTP/{want_ver} 200 and body {want!r}')
            if path == r.path:
                ctx.content_types[(srv.proto, srv.name, r.name)] = ctype or '(none)'
            os.unlink(bodyf)


def validate_h2load(out, rc, what, expect_n=None, want_status=200):
    m_fin = re.search(r'finished in ([\d.]+)(m?s), ([\d.]+) req/s', out)
    m_req = re.search(r'requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, '
                      r'(\d+) failed, (\d+) errored, (\d+) timeout', out)
    m_st = re.search(r'status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx', out)
    if rc != 0 or not (m_fin and m_req and m_st):
        raise BenchError(f'h2load failed ({what}), exit {rc}:\n' + '\n'.join(
            '    | ' + x for x in out.splitlines()[-15:]))
    total, started, done, ok, failed, errored, tmo = map(int, m_req.groups())
    s2, s3, s4, s5 = map(int, m_st.groups())
    problems = []
    if want_status == 404:  # --table's 404 request: h2load counts each as failed
        if errored or tmo or s2 or s3 or s5 or (expect_n is not None and s4 != expect_n):
            problems.append(f'{errored} errored, {tmo} timeout; status codes {s2} 2xx, {s3} 3xx, '
                            f'{s4} 4xx, {s5} 5xx; expected {expect_n} 404s')
        failed, ok = 0, s4
    if failed or errored or tmo:
        problems.append(f'{failed} failed, {errored} errored, {tmo} timeout')
    if (s3 or s4 or s5) and want_status != 404:
        problems.append(f'status codes {s2} 2xx, {s3} 3xx, {s4} 4xx, {s5} 5xx')
    if ok == 0:
        problems.append('no request succeeded')
    if expect_n is not None and ok != expect_n:
        problems.append(f'{ok} of {expect_n} requests succeeded')
    if problems:
        raise BenchError(f'{what}: ' + '; '.join(problems) + '\n' + '\n'.join(
            '    | ' + x for x in out.splitlines() if x.startswith(('requests:', 'status codes:',
                                                                     'finished'))))
    return {'rps': float(m_fin.group(3)), 'requests': ok}


def h2load(url, cpus, threads, conns, streams, what, duration=None, n=None, log_file=None,
           expect_n=None, want_status=200):
    threads = max(1, min(threads, conns))
    cmd = ['taskset', '-c', cpus, 'h2load', '-t', str(threads), '-c', str(conns),
           '-m', str(streams)]
    if duration is not None:
        cmd += ['-D', h2dur(duration)]
    if n is not None:
        cmd += ['-n', str(n)]
    if log_file:
        cmd += ['--log-file', log_file]
    cmd.append(url)
    with tempfile.TemporaryFile() as outf:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=outf, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        outf.seek(0)
        out = outf.read().decode(errors='replace')
    res = validate_h2load(out, p.returncode, what, expect_n, want_status)
    if url.startswith('https:'):
        tls = {k: m.group(1).strip() for k in ('TLS Protocol', 'Cipher', 'Application protocol')
               for m in [re.search(rf'(?m)^{k}: (.*)$', out)] if m}
        if tls.get('Application protocol') != 'h2':
            raise BenchError(f'{what}: h2load negotiated {tls.get("Application protocol")!r} over '
                             f'TLS, not h2')
        res['tls'] = f'{tls.get("TLS Protocol", "?")} {tls.get("Cipher", "?")}'
    res['client_cpu'] = ru.ru_utime + ru.ru_stime
    res['wall'] = wall
    return res


def wrk_duration(seconds):
    """wrk -d takes whole seconds."""
    return f'{max(1, int(round(seconds)))}s'


def validate_wrk(out, rc, what):
    m_rps = re.search(r'(?m)^Requests/sec:\s+([\d.]+)', out)
    m_req = re.search(r'(?m)^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)', out)
    if rc != 0 or not (m_rps and m_req):
        raise BenchError(f'wrk failed ({what}), exit {rc}:\n' + '\n'.join(
            '    | ' + x for x in out.splitlines()[-15:]))
    problems = [x.strip() for x in out.splitlines()
                if x.strip().startswith(('Non-2xx', 'Socket errors'))]
    ok = int(m_req.group(1))
    if ok == 0:
        problems.append('no request completed')
    if problems:
        raise BenchError(f'{what}: ' + '; '.join(problems) + '\n' + '\n'.join(
            '    | ' + x for x in out.splitlines()[-15:]))
    res = {'rps': float(m_rps.group(1)), 'requests': ok}
    unit = {'us': 1e-3, 'ms': 1.0, 's': 1e3, 'm': 6e4}
    for pct in ('50', '99'):    # from --latency
        m = re.search(rf'(?m)^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$', out)
        if m:
            res[f'p{pct}'] = float(m.group(1)) * unit[m.group(2)]
    return res


def wrk(url, cpus, threads, conns, what, duration):
    """wrk -t THREADS -c CONNS -d DURATION --latency, pinned to CPUS (HTTP/1.1, keep-alive,
    one request at a time per connection)."""
    threads = max(1, min(threads, conns))
    cmd = ['taskset', '-c', cpus, 'wrk', '-t', str(threads), '-c', str(conns),
           '-d', wrk_duration(duration), '--latency', url]
    with tempfile.TemporaryFile() as outf:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=outf, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        outf.seek(0)
        out = outf.read().decode(errors='replace')
    res = validate_wrk(out, p.returncode, what)
    res['client_cpu'] = ru.ru_utime + ru.ru_stime
    res['wall'] = wall
    return res


def load(srv, path, opts, threads, what, duration):
    """One timed load run against srv in its protocol: wrk for http1, else h2load."""
    if srv.proto == 'http1':
        return wrk(srv.url(path), opts.client_cpus, threads, opts.connections, what, duration)
    return h2load(srv.url(path), opts.client_cpus, threads, opts.connections, opts.streams,
                  what, duration=duration)


def tcp_ulp_tls():
    """Ask the kernel for the "tls" upper-layer protocol on a connected loopback
    socket, as OpenSSL does when it sets up kTLS: None if accepted, else the error."""
    with socket.socket() as lst:
        lst.bind(('127.0.0.1', 0))
        lst.listen(1)
        with socket.create_connection(lst.getsockname()) as cli:
            peer, _ = lst.accept()
            try:
                cli.setsockopt(socket.IPPROTO_TCP, 31, b'tls')    # TCP_ULP
                return None
            except OSError as e:
                return os.strerror(e.errno) if e.errno else str(e)
            finally:
                peer.close()


def ktls_facts():
    """Which output path celerisd's TLS takes (README, TLS): with kernel TLS (the
    kernel tls module) frames go to the socket with writev, else they are coalesced
    into 16 KiB records for SSL_write. Returns (path, the facts it rests on)."""
    try:
        with open('/proc/modules') as f:
            loaded = any(line.startswith('tls ') for line in f)
        mod = f'kernel tls module {"loaded" if loaded else "not loaded"} (/proc/modules)'
    except OSError:
        mod = 'no /proc/modules (a kernel without loadable modules)'
    err = tcp_ulp_tls()         # after reading /proc/modules: this may load the module
    ulp = 'TCP_ULP "tls" accepted' if err is None else f'TCP_ULP "tls" refused: {err}'
    if err is None:
        path = ('kernel TLS (kTLS) — frames go to the socket with writev as on cleartext, '
                'on each connection where OpenSSL sets kTLS up')
    else:
        path = 'SSL_write — frames coalesced into 16 KiB TLS records in user space, no kTLS'
    return path, f'{mod}; {ulp}'


# ---------------------------------------------------------------- context

class Ctx:
    def __init__(self, opts):
        self.opts = opts
        self.tmp = tempfile.mkdtemp(prefix='celerisd-bench-')
        self.docs = os.path.join(self.tmp, 'docs')
        self.content_types = {}
        self.servers = []
        self._tls = None
        files = {'bench': b'OK', 'bench.txt': b'OK',
                 'json': b'{"message":"Hello, World!"}', 'json.json': b'{"message":"Hello, World!"}',
                 'users/123/posts/456': b'{"user":"123","post":"456"}'}
        for rel, body in files.items():
            path = os.path.join(self.docs, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as f:
                f.write(body)

    def server(self, name, **kw):
        kw.setdefault('cpus', self.opts.server_cpus)
        kw.setdefault('workers', self.opts.workers)
        s = Server(name, self, **kw)
        self.servers.append(s)
        return s

    def tls_files(self):
        """One self-signed EC P-256 certificate and key for every TLS server (made once)."""
        if self._tls is None:
            cert, key = os.path.join(self.tmp, 'cert.pem'), os.path.join(self.tmp, 'key.pem')
            p = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec',
                                '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '7',
                                '-subj', '/CN=localhost',
                                '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
                                '-keyout', key, '-out', cert], capture_output=True, text=True)
            if p.returncode != 0:
                raise BenchError(f'openssl could not make a certificate:\n{p.stderr.strip()}')
            self._tls = (cert, key)
        return self._tls

    def stop_all(self):
        for s in self.servers:
            if s.alive():
                s.stop()


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


# ---------------------------------------------------------------- throughput

def client_args(opts, proto, threads):
    """The load client's command line, for the logs and the report."""
    if proto == 'http1':
        return (f'wrk -t {threads} -c {opts.connections} -d {wrk_duration(opts.duration)} '
                f'--latency')
    return f'h2load -t {threads} -c {opts.connections} -m {opts.streams} -D {opts.duration:g}s'


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


def measured_run(srv, route, opts, threads, what):
    srv_cpu0 = srv.cpu_seconds()
    busy0 = system_busy_seconds()
    res = load(srv, route.path, opts, threads, what, opts.duration)
    busy1 = system_busy_seconds()
    srv_cpu1 = srv.cpu_seconds()
    srv.check_alive(f'during {what}')
    wall = res['wall']
    srv_cpu = srv_cpu1 - srv_cpu0
    res['srv_pct'] = 100 * srv_cpu / wall
    res['cli_pct'] = 100 * res['client_cpu'] / wall
    res['us_per_req'] = 1e6 * srv_cpu / res['requests']
    res['other_pct'] = max(0.0, 100 * ((busy1 - busy0) - srv_cpu - res['client_cpu']) / wall)
    return res


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


# ---------------------------------------------------------------- callgrind

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
    check_all_bodies(opts, ctx, routes, names)
    say(f'callgrind: each server under valgrind (1 worker), h2load -n {n} -c 4 -m 10 per route, '
        f'minus an idle start+stop of the same server')
    rows, table = [], {}
    for name in names:
        def cg_run(route):
            out = os.path.join(ctx.tmp, f'callgrind.{name}.{route.key if route else "idle"}')
            srv = ctx.server(name, workers=1, callgrind_out=out, table=opts.table)
            t0 = time.monotonic()
            srv.start()
            # Listening is not the end of start-up under valgrind (celerisd sets up
            # its signal handling after listen()): settle, in both runs alike.
            time.sleep(2)
            if route:
                h2load(srv.url(route.path), opts.client_cpus, 1, 4, 10,
                       f'{name} {route.path} under callgrind', n=n, expect_n=n,
                       want_status=route.status)
                srv.check_alive(f'under callgrind on {route.path}')
            rc = srv.stop()
            if rc is None:
                raise BenchError(f'{name} under callgrind did not stop on SIGTERM')
            if not os.path.exists(out):
                raise BenchError(f'{name}: callgrind wrote no {out}\n{tail(srv.log)}')
            total = callgrind_total(out)
            clocks = callgrind_calls(out, 'clock_gettime')
            say(f'  {name:<10} {route.name if route else "(idle start+stop)":<26} '
                f'{total:>16,} Ir  {clocks:>7,} clock reads  '
                f'({time.monotonic() - t0:.1f} s, exit {rc})')
            return total, clocks
        idle, idle_clocks = cg_run(None)
        for r in routes:
            total, clocks = cg_run(r)
            ipr = (total - idle) / n
            table[(r.name, name)] = ipr
            rows.append([r.name, name, f'{total:,}', f'{idle:,}', f'{ipr:,.0f}',
                         f'{(clocks - idle_clocks) / n:.2f}'])
    out_rows = []
    for r in routes:
        base = table.get((r.name, 'celerisd'))
        for name in names:
            ipr = table[(r.name, name)]
            ratio = f'{base / ipr:.2f}' if base and name != 'celerisd' else '—'
            out_rows.append([r.name, name, f'{ipr:,.0f}', ratio])
    t = md_table(['route', 'server', 'instructions / request', 'celerisd ÷ peer'], out_rows,
                 ['l', 'l', 'r', 'r'])
    note = (f'User-space instructions (callgrind Ir, all threads) per request: (total with '
            f'h2load -n {n} -c 4 -m 10 − total of an idle start+stop) ÷ {n}. Kernel work is not '
            f'counted. nginx runs with master_process off. Ratio: celerisd ÷ peer '
            f'instructions (< 1: celerisd executes fewer).')
    say('\n' + '\n'.join(t) + '\n\n' + note)
    lines = header_lines(opts, 'celerisd instructions per request (callgrind)') + t + ['', note, '']
    lines += md_table(['route', 'server', 'total Ir', 'idle Ir', 'Ir / request',
                       'clock reads / request'], rows, ['l', 'l', 'r', 'r', 'r', 'r'])
    lines += ['', 'Clock reads: clock_gettime calls (the server\'s and its event '
              'library\'s) per request. Valgrind has no vDSO, so callgrind counts each as the '
              'few instructions of a system call; natively each costs a vDSO call (tens of ns '
              'for CLOCK_MONOTONIC, a few for CLOCK_MONOTONIC_COARSE).', '']
    if opts.table:
        t, note = table_facts(opts, ctx, routes, names, table)
        lines += ['', f'## The table of {opts.table:,} routes', ''] + t + ['', note]
    say(f'\nwrote {write_md(opts, ctx.stamp, "-callgrind", lines)}')


def table_facts(opts, ctx, routes, names, table):
    """--table's other figures: each route's cost over the first's, the CPU time
    of a config check (-t) and of start-up, and RSS per route."""
    rows = []
    for name in names:
        first = table[('first', name)]
        ratios = ', '.join(f'{r.name} {table[(r.name, name)] / first:.2f}' for r in routes[1:])
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


def check_all_bodies(opts, ctx, routes, names):
    for name in names:
        srv = ctx.server(name, table=opts.table).start()
        check_bodies(srv, routes, ctx)
        srv.stop()
    say(f'bodies checked: {", ".join(names)} answer every route correctly')


# ---------------------------------------------------------------- in-process

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


# ---------------------------------------------------------------- idle connections

PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
SETTINGS_EMPTY = b'\x00\x00\x00\x04\x00\x00\x00\x00\x00'
SETTINGS_ACK = b'\x00\x00\x00\x04\x01\x00\x00\x00\x00'


class IdleConn:
    def __init__(self, sock):
        self.sock, self.buf = sock, b''
        self.settings = self.acked = self.closed = self.goaway = False

    def feed(self, data):
        self.buf += data
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], 'big')
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            payload = self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            if ftype == 4:                      # SETTINGS
                if flags & 1:
                    self.acked = True
                else:
                    self.settings = True
                    self.sock.send(SETTINGS_ACK)
            elif ftype == 6 and not flags & 1:  # PING
                self.sock.send(b'\x00\x00\x08\x06\x01\x00\x00\x00\x00' + payload)
            elif ftype == 7:                    # GOAWAY
                self.goaway = True


class IdleClient:
    """N idle HTTP/2 connections: preface + empty SETTINGS, ACK the server's
    SETTINGS, answer PINGs, send nothing else."""

    def __init__(self, port, n):
        self.sel = selectors.DefaultSelector()
        self.conns = []
        for i in range(n):
            s = socket.create_connection(('127.0.0.1', port), timeout=10)
            s.sendall(PREFACE + SETTINGS_EMPTY)
            s.setblocking(False)
            c = IdleConn(s)
            self.conns.append(c)
            self.sel.register(s, selectors.EVENT_READ, c)
            if i % 64 == 63:
                self.pump(0)

    def pump(self, seconds):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            for key, _ in self.sel.select(max(0, left)):
                c = key.data
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b''
                if not data:
                    c.closed = True
                    self.sel.unregister(c.sock)
                    continue
                c.feed(data)
            if time.monotonic() >= end:
                return

    def ready(self):
        return all((c.settings and c.acked) or c.closed for c in self.conns)

    def counts(self):
        up = sum(1 for c in self.conns if not c.closed and not c.goaway)
        return up, sum(c.closed for c in self.conns), sum(c.goaway for c in self.conns)

    def close(self):
        for c in self.conns:
            try:
                c.sock.close()
            except OSError:
                pass


def mode_idle(opts, ctx, routes, names):
    n = opts.idle_conns
    # This process holds the N client sockets and the server (which inherits
    # the limit) the N accepted ones: each needs N and some slack.
    need = n + 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
        except (ValueError, OSError) as e:
            raise BenchError(f'cannot raise the open-files limit to {need}: {e}')
    check_all_bodies(opts, ctx, routes, names)
    rows = []
    for name in names:
        srv = ctx.server(name, conns=max(4096, 2 * n + 100), idle=True).start()
        time.sleep(0.5)
        before = srv.rss_kib()
        touched_before = srv.touched_kib()
        t0 = time.monotonic()
        client = IdleClient(srv.port, n)
        deadline = time.monotonic() + 30 + n / 500
        while not client.ready() and time.monotonic() < deadline:
            client.pump(0.2)
        client.pump(1.0)
        after = srv.rss_kib()
        touched = (srv.touched_kib() - touched_before) / n
        up, closed, goaway = client.counts()
        srv.check_alive(f'holding {n} idle connections')
        kib = (after - before) / n
        say(f'  {name:<10} RSS {before:,} KiB -> {after:,} KiB with {n} idle connections: '
            f'{kib:.2f} KiB/conn, {touched:.2f} touched  (open {up}, closed by server {closed}, '
            f'GOAWAY {goaway}; {time.monotonic() - t0:.1f} s)')
        if up != n:
            say(f'  WARNING: {name} did not keep all {n} connections open')
        rows.append([name, str(n), f'{before:,}', f'{after:,}', f'{kib:.2f}', f'{touched:.2f}',
                     str(up)])
        client.close()
        srv.stop()
    t = md_table(['server', 'connections', 'RSS before KiB', 'RSS after KiB', 'KiB / idle conn',
                  'touched KiB / conn', 'still open'], rows, ['l'] + ['r'] * 6)
    note = ('Idle HTTP/2 connections (preface, empty SETTINGS, SETTINGS ACK, nothing else); '
            'VmRSS of the server process tree before and after; kernel socket buffers are not in '
            'RSS. "Touched" counts the private anonymous pages with a page table entry '
            '(/proc/PID/pagemap), pages only read included: the same on every kernel, where VmRSS '
            'leaves out read pages the kernel backs with its shared zero page.')
    say('\n' + '\n'.join(t) + '\n\n' + note)
    lines = header_lines(opts, 'celerisd memory per idle connection') + t + ['', note]
    say(f'\nwrote {write_md(opts, ctx.stamp, "-idle", lines)}')


# ---------------------------------------------------------------- ramp

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


# ---------------------------------------------------------------- main

USAGE = '''scripts/bench [options]            throughput table, celerisd vs peers
       scripts/bench --proto http1,tls  the same over HTTP/1.1 (wrk) and HTTP/2+TLS
       scripts/bench --callgrind [...]  instructions per request (valgrind)
       scripts/bench --callgrind --table N   the same on a table of N routes
       scripts/bench --inproc [...]     the same in one process, no sockets: nghttp2
                                        alone (the floor) beside celerisd's request path
       scripts/bench --idle-conns N     KiB of RSS per idle HTTP/2 connection
       scripts/bench --ramp [...]       add clients stepwise: max req/s, p95 knee'''

EPILOG = '''Servers: celerisd (build-bench, conf/bench.yaml), nginx, h2o (file.file +
mruby for params), h2o-mruby (all routes mruby), nghttpd (files). All get their
own configs in a temp dir (scripts/bench.d/*.in); nothing touches /etc or
/var/log. Routes (names or paths): /bench, /json, /users (= /users/:id/posts/:postId,
requested as /users/123/posts/456).

Protocols (--proto, throughput table only; one table each):
  h2c    HTTP/2 with prior knowledge on cleartext, h2load (the default)
  http1  HTTP/1.1 cleartext with keep-alive, wrk -t T -c C -d D --latency
         (T = client CPU count; -m does not apply; -d in whole seconds). celerisd,
         h2o and h2o-mruby on the same port as h2c, nginx on an added plain
         listener; nghttpd (HTTP/2 only) is skipped.
  tls    HTTP/2 over TLS (ALPN h2), h2load on https://. Every server gets a TLS
         listener with one self-signed EC P-256 certificate made with openssl in
         the temp dir; prints whether celerisd can use kernel TLS (tls module).
--callgrind, --idle-conns, --ramp and --relay-delay measure h2c only.

--relay-delay MS (celerisd only, scripts/bench.d/upload_relay.py) uploads 4 MiB
through scripts/bench.d/relay.py, a TCP relay delaying each direction by MS ms
(these kernels have no netem), to the echo module and to a static route, with
65,535-octet windows and with the defaults; seconds, MB/s, bench-...-relay.md.

--table N (with --callgrind; celerisd and nginx only) adds N literal routes
/api/v1/resource{i}/items and 100 param routes /api/v1/param{j}/:id to each
server's config (nginx: `location =` blocks and regex locations) and measures
four requests instead of --routes: the first and the last literal route, the
last param route (/api/v1/param99/123) and a 404. It then reports each one's
instructions over the first's, the CPU time of a config check (-t) and of
start-up (until the server listens), and RSS per route (freed heap included).
nginx needs seconds of CPU to load 20,000 locations, ~50 times that under
valgrind.

--inproc runs build-bench/tests/perf/celeris-inproc-bench (tests/perf/inproc.c)
under callgrind, counting only its server side: four floors (a bare nghttp2
server session with malloc or cel_pool, with or without no_http_messaging) on
/bench and celerisd's request path on each --routes route; -n requests (default
20000) 10 at a time; no servers start, --servers does not apply. Table: Ir per
request and its ratio to floor-pool and floor-both; bench-...-inproc.md.

A default run (3 routes x 5 servers x 3 rounds x 5 s) takes about 5 minutes
per protocol. Results go to bench-results/bench-YYYYmmdd-HHMMSS.md (+ .png
chart); --proto http1 and tls write bench-...-http1.md and bench-...-tls.md.
Any failed/errored request, non-2xx status or wrong body aborts the run (wrk:
any "Non-2xx" or "Socket errors" line).'''


def parse_args(argv):
    ap = argparse.ArgumentParser(prog='scripts/bench', usage=USAGE, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--proto', default='h2c',
                    help='h2c, http1, tls or a comma list of them, run one after the other, '
                         'each with its own table (default h2c)')
    ap.add_argument('--servers', default=','.join(SERVERS),
                    help=f'comma-separated subset of {",".join(SERVERS)} (default: all)')
    ap.add_argument('--routes', default='/bench,/json,/users',
                    help='comma-separated subset of /bench,/json,/users (default: all)')
    ap.add_argument('-c', '--connections', type=int, default=64,
                    help='connections, h2load/wrk -c (default 64)')
    ap.add_argument('-m', '--streams', type=int, default=16,
                    help='h2load -m (default 16; not for --proto http1)')
    ap.add_argument('-d', '--duration', type=parse_duration, default=None,
                    help='measured time per run, h2load -D / wrk -d (default 5s; --quick 2s)')
    ap.add_argument('--warmup', type=parse_duration, default=1.0,
                    help='warm-up run per server and route (default 1s; 0 = none)')
    ap.add_argument('--repeat', type=int, default=None,
                    help='interleaved rounds A B C D A B C D ... (default 3; --quick 1)')
    ap.add_argument('--workers', type=int, default=1,
                    help='workers/threads/processes per server (default 1). With more than 1 '
                         'and no CPU options, servers and h2load share all CPUs (req/s only)')
    ap.add_argument('--server-cpus', default=None, help='taskset CPU list for servers (default 1)')
    ap.add_argument('--client-cpus', default=None,
                    help='taskset CPU list for h2load/wrk (default 0); their -t = its CPU count')
    ap.add_argument('--noise-pct', type=float, default=10.0,
                    help='a run during which other processes used more than this %% of a core '
                         'is noisy: re-run it (default 10)')
    ap.add_argument('--noise-retries', type=int, default=10,
                    help='re-runs of noisy runs allowed in total (default 10; bounds the run time)')
    ap.add_argument('--quick', action='store_true', help='smoke test: 1 round of 2 s runs')
    ap.add_argument('--callgrind', action='store_true',
                    help='instructions per request under valgrind --tool=callgrind (h2c only)')
    ap.add_argument('-n', '--requests', type=int, default=20000,
                    help='requests per server and route in --callgrind, per mode and route in '
                         '--inproc (default 20000)')
    ap.add_argument('--table', type=int, metavar='N', default=0,
                    help='with --callgrind: a table of N literal routes and 100 param routes '
                         '(celerisd, nginx); measures its first, last and param route and a 404, '
                         'then -t and start-up CPU time and RSS per route')
    ap.add_argument('--idle-conns', type=int, metavar='N',
                    help='open N idle h2 connections per server, report KiB RSS per connection')
    ap.add_argument('--inproc', action='store_true',
                    help='instructions per request in one process without sockets: nghttp2 '
                         'alone (4 floors) and celerisd\'s request path, under callgrind')
    ap.add_argument('--ramp', action='store_true',
                    help='add clients stepwise; report max req/s and where p95 passes --p95-ms')
    ap.add_argument('--ramp-steps', default=','.join(map(str, RAMP_STEPS)),
                    help=f'client counts (default {",".join(map(str, RAMP_STEPS))})')
    ap.add_argument('--ramp-duration', type=parse_duration, default=None,
                    help='seconds per ramp step (default 3s; --quick 1s)')
    ap.add_argument('--ramp-streams', type=int, default=1,
                    help='streams per client in --ramp (default 1: a client = one request at a time)')
    ap.add_argument('--p95-ms', type=float, default=10.0, help='p95 threshold for --ramp (default 10)')
    ap.add_argument('--out-dir', default=os.path.join(ROOT, 'bench-results'),
                    help='where the Markdown and PNG go (default bench-results/)')
    ap.add_argument('--keep-tmp', action='store_true', help='keep the temp dir (configs, logs)')
    ap.add_argument('--relay-delay', type=float, metavar='MS', default=None,
                    help='a 4 MiB upload (celerisd, h2c) through a relay delaying each '
                         'direction by MS ms: 65,535-octet windows against the defaults')
    ap.add_argument('--via', choices=['haproxy'], default=None,
                    help='celerisd straight and through HAProxy (h2c, PROXY v2) on the same '
                         'server CPUs: req/s of both and the overhead (/bench)')
    opts = ap.parse_args(argv)

    modes = [m for m in ('callgrind', 'idle_conns', 'ramp', 'inproc', 'via', 'relay_delay')
             if getattr(opts, m) is not None and getattr(opts, m) is not False]
    if len(modes) > 1:
        ap.error('choose one of --callgrind, --idle-conns, --ramp, --inproc, --via, '
                 '--relay-delay')
    if opts.relay_delay is not None and opts.relay_delay < 0:
        ap.error('--relay-delay needs MS >= 0')
    opts.mode = modes[0] if modes else 'throughput'
    protos = [p.strip() for p in opts.proto.split(',') if p.strip()]
    for p in protos:
        if p not in PROTOS:
            ap.error(f'unknown --proto {p!r} (known: {", ".join(PROTOS)})')
    if not protos:
        ap.error('--proto: give h2c, http1, tls or a comma list of them')
    opts.protos = list(dict.fromkeys(protos))
    if opts.mode != 'throughput' and opts.protos != ['h2c']:
        ap.error(f'--{opts.mode.replace("_", "-")} measures h2c only (--proto h2c)')
    if opts.duration is None:
        opts.duration = 2.0 if opts.quick else 5.0
    if opts.repeat is None:
        opts.repeat = 1 if opts.quick else 3
    if opts.ramp_duration is None:
        opts.ramp_duration = 1.0 if opts.quick else 3.0
    if opts.quick:
        opts.warmup = min(opts.warmup, 1.0)
    ncpu = os.cpu_count() or 1
    allcpus = f'0-{ncpu - 1}' if ncpu > 1 else '0'
    if opts.workers > 1 and opts.server_cpus is None and opts.client_cpus is None:
        opts.server_cpus = opts.client_cpus = allcpus
    if opts.server_cpus is None:
        opts.server_cpus = '1' if ncpu > 1 else '0'
    if opts.client_cpus is None:
        opts.client_cpus = '0'
    for spec in (opts.server_cpus, opts.client_cpus):
        try:
            bad = [c for c in cpu_list(spec) if c >= ncpu]
        except (ValueError, argparse.ArgumentTypeError):
            ap.error(f'bad CPU list {spec!r}')
        if bad:
            ap.error(f'CPU list {spec!r}: this machine has CPUs 0-{ncpu - 1}')
    if opts.idle_conns is not None and opts.idle_conns < 1:
        ap.error('--idle-conns needs N >= 1')
    if opts.repeat < 1 or opts.connections < 1 or opts.streams < 1 or opts.workers < 1:
        ap.error('--repeat, -c, -m and --workers must be >= 1')
    names = [s.strip() for s in opts.servers.split(',') if s.strip()]
    for s in names:
        if s not in SERVERS:
            ap.error(f'unknown server {s!r} (known: {", ".join(SERVERS)})')
    opts.names = list(dict.fromkeys(names))
    for p in opts.protos:
        if not [s for s in opts.names if s in PROTOS[p].servers]:
            ap.error(f'--proto {p}: none of the servers {", ".join(opts.names)} speaks it')
    routes = []
    for tok in opts.routes.split(','):
        key = tok.strip().strip('/').split('/')[0]
        key = {'params': 'users'}.get(key, key)
        match = [r for r in ROUTES if r.key == key]
        if not tok.strip():
            continue
        if not match:
            ap.error(f'unknown route {tok!r} (known: /bench, /json, /users)')
        if match[0].key == 'hello' and set(opts.servers.split(',')) - {'celerisd'}:
            raise SystemExit('scripts/bench: /hello is a celerisd module route: use it with '
                             '--servers celerisd')
        if match[0] not in routes:
            routes.append(match[0])
    opts.route_list = routes
    if opts.table:
        if opts.mode != 'callgrind' or opts.table < 1:
            ap.error('--table N: N >= 1, with --callgrind')
        opts.names = [s for s in opts.names if s in TABLE_SERVERS]
        if not opts.names:
            ap.error(f'--table: only {", ".join(TABLE_SERVERS)} take a table')
        opts.route_list = table_routes(opts.table)
    try:
        opts.ramp_steps = [int(x) for x in opts.ramp_steps.split(',') if x.strip()]
    except ValueError:
        ap.error('--ramp-steps: comma-separated integers')
    return opts


def main(argv):
    opts = parse_args(argv)
    if not os.access(CELERISD, os.X_OK):
        raise SystemExit(f'bench: {CELERISD} missing (scripts/bench builds it)')
    ctx = Ctx(opts)
    ctx.stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    ok = False
    t0 = time.monotonic()
    try:
        if opts.mode == 'throughput':
            for i, proto in enumerate(opts.protos):
                if opts.protos != ['h2c']:
                    say(f'{chr(10) if i else ""}=== --proto {proto}: {PROTOS[proto].title}, '
                        f'{PROTOS[proto].client}')
                mode_throughput(opts, ctx, opts.route_list, opts.names, proto)
        elif opts.mode == 'via':
            from via_haproxy import mode_via_haproxy
            mode_via_haproxy(opts, ctx, sys.modules[__name__])
        elif opts.mode == 'relay_delay':
            from upload_relay import mode_relay_upload
            mode_relay_upload(opts, ctx, sys.modules[__name__])
        else:
            {'callgrind': mode_callgrind, 'idle_conns': mode_idle, 'ramp': mode_ramp,
             'inproc': mode_inproc}[opts.mode](opts, ctx, opts.route_list, opts.names)
        ok = True
    except BenchError as e:
        say(f'\nbench: ABORTED: {e}')
    except KeyboardInterrupt:
        say('\nbench: interrupted')
    finally:
        ctx.stop_all()
        if ok and not opts.keep_tmp:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
        else:
            say(f'bench: configs and server logs kept in {ctx.tmp}')
    say(f'bench: {"done" if ok else "FAILED"} in {time.monotonic() - t0:.0f} s')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
