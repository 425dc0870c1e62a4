"""scripts/bench --relay-delay MS: a 4 MiB upload over h2c through a relay
that delays each direction by MS milliseconds (relay.py; these kernels have no
netem), to the echo module (the body comes back through the relay too) and to
a static route (upload only). celerisd runs twice, with the protocol's 65,535
octet windows (what it advertised before the window knobs: body_window and
connection_window at 65535) and with its defaults, alternating, curl as the client. Prints seconds and MB/s of the
upload (median of --repeat runs) and the ratio."""

import os
import statistics
import subprocess

from relay import Relay  # scripts/bench.d/relay.py (the tests use it too)

from .common import BenchError, CELERISD, ROOT, free_port, say
from .report import header_lines, md_table, write_md
from .via_haproxy import start, stop, wait_listen

SIZE = 4 << 20

CELERISD_YAML = """listen: "127.0.0.1:{port}"
workers: 1
log: {{ level: warn }}
modules_dir: {modules}
limits: {{ max_request_body: 8m{limits} }}
routes:
  - path: /echo
    methods: [POST]
    module: {{ name: echo }}
  - path: /up
    methods: [POST]
    static: {{ body: "OK" }}
"""

SETUPS = [('65,535 windows', ', body_window: 65535, connection_window: 65535'),
          ('defaults (body 4m, connection 16m)', '')]


def upload(url, body_path):
    p = subprocess.run(['curl', '-sS', '--http2-prior-knowledge', '-o', '/dev/null',
                        '-w', '%{http_code} %{time_total} %{size_upload} %{size_download}',
                        '--max-time', '120', '--data-binary', f'@{body_path}', url],
                       capture_output=True, text=True, timeout=150)
    parts = p.stdout.split()
    if p.returncode != 0 or len(parts) != 4 or parts[0] != '200' or int(parts[2]) != SIZE:
        raise BenchError(f'upload to {url} failed: {p.stdout} {p.stderr.strip()}')
    return float(parts[1])


def mode_relay_upload(opts, ctx):
    delay = opts.relay_delay / 1000
    body_path = os.path.join(ctx.tmp, 'upload.bin')
    with open(body_path, 'wb') as f:
        f.write(os.urandom(SIZE))
    procs, relays, ports = [], [], []
    try:
        for i, (_, limits) in enumerate(SETUPS):
            port = free_port()
            cfg = os.path.join(ctx.tmp, f'celerisd-relay{i}.yaml')
            with open(cfg, 'w') as f:
                f.write(CELERISD_YAML.format(
                    port=port, limits=limits,
                    modules=os.path.join(ROOT, 'build-bench', 'modules')))
            log = os.path.join(ctx.tmp, f'celerisd-relay{i}.log')
            procs.append(start([CELERISD, '-c', cfg], opts.server_cpus, log, ctx.tmp))
            wait_listen(procs[-1], port, 'celerisd', log)
            relays.append(Relay(port, delay).start())
            ports.append(relays[-1].port)
        say(f'--relay-delay {opts.relay_delay:g}: a {SIZE >> 20} MiB upload through a relay '
              f'adding {opts.relay_delay:g} ms each way (round trip {2 * opts.relay_delay:g} ms), '
              f'curl, {opts.repeat} runs each, alternating')
        times = {(s, p): [] for s in range(len(SETUPS)) for p in ('/echo', '/up')}
        for _ in range(opts.repeat):
            for s in range(len(SETUPS)):
                for path in ('/echo', '/up'):
                    times[(s, path)].append(
                        upload(f'http://127.0.0.1:{ports[s]}{path}', body_path))
        rows = []
        for path in ('/echo', '/up'):
            base = statistics.median(times[(0, path)])
            for s, (what, _) in enumerate(SETUPS):
                t = statistics.median(times[(s, path)])
                rows.append([path, what, f'{t:.3f}', f'{SIZE / t / 1e6:.2f}',
                             ', '.join(f'{x:.2f}' for x in times[(s, path)]),
                             f'{base / t:.1f}x'])
        t = md_table(['route', 'windows', 's (median)', 'MB/s', 'runs (s)', 'speed-up'],
                       rows, ['l', 'l', 'r', 'r', 'l', 'r'])
        note = (f'{SIZE >> 20} MiB request body, h2c, through scripts/bench.d/relay.py '
                f'({opts.relay_delay:g} ms each way, loopback otherwise); /echo streams the body '
                f'back through the relay, /up answers "OK". The server\'s windows: '
                f'limits.body_window (a buffered upload\'s stream) and limits.connection_window.')
        say('\n' + '\n'.join(t) + '\n\n' + note)
        lines = header_lines(opts, 'celerisd uploads over a delayed path', client='curl') + \
            t + ['', note]
        say(f'\nwrote {write_md(opts, ctx.stamp, "-relay", lines)}')
    finally:
        for r in relays:
            r.stop()
        for p in procs:
            stop(p)
