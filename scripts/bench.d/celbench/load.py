"""Load generation: h2load (h2c, HTTP/2 over TLS) and wrk (HTTP/1.1), each run
checked (any failed request or wrong status aborts), and one measured run with
the server's and the machine's CPU around it."""

import os
import re
import subprocess
import tempfile
import time

from .common import BenchError, h2dur, system_busy_seconds


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
    if want_status == 304:  # --files' If-None-Match requests: every one a 3xx
        if s2 or s4 or s5:
            problems.append(f'status codes {s2} 2xx, {s3} 3xx, {s4} 4xx, {s5} 5xx; expected 304s')
        ok = s3
    if failed or errored or tmo:
        problems.append(f'{failed} failed, {errored} errored, {tmo} timeout')
    if (s3 or s4 or s5) and want_status not in (404, 304):
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
           expect_n=None, want_status=200, extra=()):
    """EXTRA: more h2load arguments (--browser's -H fields)."""
    threads = max(1, min(threads, conns))
    cmd = ['taskset', '-c', cpus, 'h2load', '-t', str(threads), '-c', str(conns),
           '-m', str(streams)]
    if duration is not None:
        cmd += ['-D', h2dur(duration)]
    if n is not None:
        cmd += ['-n', str(n)]
    if log_file:
        cmd += ['--log-file', log_file]
    cmd += list(extra)
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


def client_args(opts, proto, threads):
    """The load client's command line, for the logs and the report."""
    if proto == 'http1':
        return (f'wrk -t {threads} -c {opts.connections} -d {wrk_duration(opts.duration)} '
                f'--latency')
    return f'h2load -t {threads} -c {opts.connections} -m {opts.streams} -D {opts.duration:g}s'


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
