#!/usr/bin/python3
"""What the compress middleware costs on a streamed body: MB/s per core for
each coding and level. Starts build-bench/celerisd (one worker) with the echo
module behind one route per coding and level, posts a 1 MiB text body N times
to each over HTTP/1.1 (echo streams it back in 16 KiB writes, compressed as it
streams) and divides the megabytes by the daemon's CPU seconds
(/proc/PID/stat utime + stime, 10 ms ticks: keep N at 100 or more). The
uncompressed route is the baseline the others include.

    /usr/bin/python3 scripts/bench.d/compress_rate.py [N]
"""

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, 'build-bench', 'celerisd')
LEVELS = {'gzip': [1, 6, 9], 'br': [1, 4, 6], 'zstd': [1, 3, 9]}


def cpu(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    conf = [f'workers: 1\nlisten: "127.0.0.1:{port}"\n'
            f'modules_dir: {os.path.join(ROOT, "build-bench", "modules")}\n'
            'limits: { max_request_body: 4m }\nroutes:\n'
            '  - path: /identity\n    methods: [POST]\n    module: { name: echo }\n']
    for enc, levels in LEVELS.items():
        for lv in levels:
            conf.append(f'  - path: /{enc}-{lv}\n    methods: [POST]\n'
                        f'    middleware: [ {{ compress: {{ encodings: [{enc}], '
                        f'level: {{ {enc}: {lv} }} }} }} ]\n    module: {{ name: echo }}\n')
    body = b''.join(b'2026-12-03T13:%02d:%02dZ GET /api/items/%d 200 %d bytes\n'
                    % (i // 60 % 60, i % 60, i, i * 7 % 9999) for i in range(30000))[:1 << 20]
    with tempfile.NamedTemporaryFile('w', suffix='.yaml') as f:
        f.write(''.join(conf))
        f.flush()
        p = subprocess.Popen([BIN, '-c', f.name], stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(('127.0.0.1', port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
            print(f'{n} x 1 MiB streamed through echo, daemon CPU per route:')
            routes = ['identity'] + [f'{e}-{lv}' for e, ls in LEVELS.items() for lv in ls]
            for r in routes:
                c0, size = cpu(p.pid), 0
                for _ in range(n):
                    c.request('POST', '/' + r, body=body,
                              headers={'accept-encoding': r.split('-')[0],
                                       'content-type': 'text/plain'})
                    size = len(c.getresponse().read())
                t = max(cpu(p.pid) - c0, 0.01)
                print(f'  {r:9s} {t:6.2f} s  {n * len(body) / 1e6 / t:6.0f} MB/s  '
                      f'1 MiB -> {size} bytes')
        finally:
            p.terminate()
            p.wait(timeout=10)


if __name__ == '__main__':
    main()
