"""The servers under test: each one's generated config (celerisd from
conf/bench.yaml, the peers from the *.in templates beside this package), start
and stop by PID, CPU and RSS from /proc, the body checks with curl, and the run's
context (temp dir, document root, TLS certificate)."""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

from .common import (BenchError, CELERISD, CONF, HERE, ROOT, free_port, proc_cpu_seconds,
                     proc_rss_kib, proc_touched_kib, proc_tree, say, tail)
from .routes import NO_HTTP1, TABLE_PARAMS


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


class Server:
    """One server under test, with its own config and log in the temp dir."""

    def __init__(self, name, ctx, cpus, workers=1, conns=4096, callgrind_out=None, idle=False,
                 proto='h2c', table=0, middleware=None):
        self.name, self.ctx, self.cpus, self.workers = name, ctx, cpus, workers
        self.table = table                 # --table: routes in the generated table
        self.middleware = middleware       # --middleware: one global item (celerisd)
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
            if self.middleware:   # the global list, before the routes
                subs.append((r'(?m)^routes:$',
                             f'middleware:\n  - {self.middleware}\nroutes:'.replace('\\', r'\\')))
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


def check_all_bodies(opts, ctx, routes, names, proto='h2c'):
    for name in names:
        srv = ctx.server(name, table=opts.table, proto=proto).start()
        check_bodies(srv, routes, ctx)
        srv.stop()
    say(f'bodies checked: {", ".join(names)} answer every route correctly')


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
