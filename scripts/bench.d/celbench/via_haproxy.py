"""scripts/bench --via haproxy: one celerisd (build-bench) measured straight
and through HAProxy on the same server CPUs (HAProxy with one thread pinned
there beside the worker), h2load on the client CPUs, alternating rounds.
HAProxy speaks h2c to celerisd with PROXY protocol v2, as
packaging/haproxy/haproxy.cfg does. Prints req/s for both and the overhead."""

import os
import shutil
import socket
import subprocess
import time

from .common import BenchError, CELERISD, free_port, median, say
from .load import h2load


CELERISD_YAML = """listen:
  - "127.0.0.1:{direct}"
  - {{ address: "127.0.0.1:{proxied}", proxy_protocol: true, trusted: [127.0.0.1/32] }}
workers: {workers}
limits: {{ max_concurrent_streams: 256 }}
routes:
  - path: /bench
    static: {{ body: "OK" }}
"""

HAPROXY_CFG = """global
    nbthread {threads}
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe_proxy
    bind 127.0.0.1:{front}
    default_backend be_proxy
frontend fe_plain
    bind 127.0.0.1:{front2}
    default_backend be_plain
backend be_proxy
    server s1 127.0.0.1:{proxied} proto h2 send-proxy-v2
backend be_plain
    server s1 127.0.0.1:{direct} proto h2
"""


def wait_listen(proc, port, name, log, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f'{name} exited with {proc.returncode}:\n{open(log).read()[-2000:]}')
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f'{name} does not listen on {port}')
            time.sleep(0.05)


def start(cmd, cpus, log, cwd):
    with open(log, 'ab') as f:
        return subprocess.Popen(['taskset', '-c', cpus] + cmd, stdin=subprocess.DEVNULL,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=cwd)


def stop(proc):
    if proc and proc.poll() is None:
        os.kill(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            proc.wait()


def mode_via_haproxy(opts, ctx):
    haproxy = shutil.which('haproxy') or '/usr/sbin/haproxy'
    if not os.access(haproxy, os.X_OK):
        raise BenchError('haproxy is not installed (apt-get install haproxy)')
    direct, proxied, front, front2 = (free_port() for _ in range(4))
    cfg = os.path.join(ctx.tmp, 'celerisd-via.yaml')
    with open(cfg, 'w') as f:
        f.write(CELERISD_YAML.format(direct=direct, proxied=proxied, workers=opts.workers))
    hcfg = os.path.join(ctx.tmp, 'haproxy.cfg')
    with open(hcfg, 'w') as f:
        f.write(HAPROXY_CFG.format(threads=opts.workers, front=front, front2=front2,
                                    proxied=proxied, direct=direct))
    cel = hp = None
    try:
        cel = start([CELERISD, '-c', cfg], opts.server_cpus, os.path.join(ctx.tmp, 'celerisd.log'),
                    ctx.tmp)
        wait_listen(cel, direct, 'celerisd', os.path.join(ctx.tmp, 'celerisd.log'))
        hp = start([haproxy, '-db', '-f', hcfg], opts.server_cpus,
                   os.path.join(ctx.tmp, 'haproxy.log'), ctx.tmp)
        wait_listen(hp, front, 'haproxy', os.path.join(ctx.tmp, 'haproxy.log'))
        say(f'--via haproxy: celerisd ({opts.workers} worker(s)) and haproxy (nbthread '
            f'{opts.workers}) on CPUs {opts.server_cpus}, h2load on {opts.client_cpus}; '
            f'-c {opts.connections} -m {opts.streams}, {opts.duration:g} s x {opts.repeat}')
        threads = max(1, len(opts.client_cpus.split(',')))
        paths = [('direct h2c', direct), ('haproxy, h2c + PROXY v2', front),
                 ('haproxy, h2c, no PROXY', front2)]
        runs = {what: [] for what, _ in paths}
        for what, port in paths:   # warm-up
            h2load(f'http://127.0.0.1:{port}/bench', opts.client_cpus, threads, opts.connections,
                     opts.streams, f'warm-up {what}', duration=opts.warmup)
        for _ in range(opts.repeat):
            for what, port in paths:
                r = h2load(f'http://127.0.0.1:{port}/bench', opts.client_cpus, threads,
                             opts.connections, opts.streams, what, duration=opts.duration)
                runs[what].append(r['rps'])
        d = median(runs['direct h2c'])
        say(f'| path | req/s (median of {opts.repeat}) | runs | of direct |')
        say('|---|---|---|---|')
        for what, _ in paths:
            v = median(runs[what])
            say(f'| {what} | {v:,.0f} | {", ".join(f"{x:,.0f}" for x in runs[what])} | '
                  f'{v / d * 100:.0f}% |')
        say('(a PROXY header binds a backend connection to one client connection: HAProxy '
              'cannot share it between clients)')
    finally:
        stop(hp)
        stop(cel)
