"""The command line: options, their checks, and the dispatch to one mode."""

import argparse
import datetime
import os
import shutil
import time

from .common import BenchError, CELERISD, ROOT, cpu_list, parse_duration, say
from .routes import PROTOS, ROUTES, SERVERS, TABLE_SERVERS, table_routes
from .servers import Ctx
from .throughput import mode_throughput
from .callgrind import mode_callgrind, mode_callgrind_middleware
from .inproc import mode_inproc
from .idle import mode_idle
from .ramp import RAMP_STEPS, mode_ramp
from .scaling import mode_scaling
from .many_conns import mode_many_conns
from .upload_relay import mode_relay_upload
from .via_haproxy import mode_via_haproxy
from .files import mode_files


USAGE = '''scripts/bench [options]            throughput table, celerisd vs peers
       scripts/bench --proto http1,tls  the same over HTTP/1.1 (wrk) and HTTP/2+TLS
       scripts/bench --callgrind [...]  instructions per request (valgrind)
       scripts/bench --callgrind --table N   the same on a table of N routes
       scripts/bench --callgrind --browser   the same, bare and with a browser's fields
       scripts/bench --callgrind --middleware --routes /bench   celerisd with each
                                        global middleware item (callgrind.py MIDDLEWARE)
       scripts/bench --inproc [...]     the same in one process, no sockets: nghttp2
                                        alone (the floor) beside celerisd's request path
       scripts/bench --idle-conns N     KiB of RSS per idle HTTP/2 connection
       scripts/bench --ramp [...]       add clients stepwise: max req/s, p95 knee
       scripts/bench --scaling [...]    1, 2, 4 ... N/2 workers: req/s, efficiency per core
       scripts/bench --files [...]      static files from a directory: small files, 304,
                                        16 x 1 GiB downloads (celbench/files.py)
       scripts/bench --files --downloads --repeat 2   the downloads alone, medians'''
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
--idle-conns, --ramp, --relay-delay and --many-conns measure h2c only;
--callgrind h2c, or HTTP/1.1 with --proto http1: h2load --h1 -c 4 keep-alive,
pipelined (-m 10) and with connection: close, each server's instructions per
request for each.

--many-conns N (/bench, celbench/many_conns.py), per server: first a saturated
run (-c, -m, -D), then N connections each sending one request a second
(h2load --rps 1) for -D after a 10 s warm-up; server CPU per request over the
measured time beside the saturated figure, and RSS. The open-files hard limit
bounds N (about the limit minus 1000).

--relay-delay MS (celerisd only, celbench/upload_relay.py) uploads 4 MiB through
scripts/bench.d/relay.py, a TCP relay delaying each direction by MS ms (these
kernels have no netem), to the echo module and to a static route, with
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

--middleware (with --callgrind; celerisd only, h2c) measures each route once
without middleware and once with each item of callgrind.py's MIDDLEWARE as the
config's one global middleware (headers, request_id in both formats, cors,
rate_limit never refusing, access): Ir per request and the rise over none,
in bench-...-callgrind-middleware.md.

--browser (with --callgrind) runs each route twice per server, with
h2load -c 200 -n 20000 -m 10 (each connection's HPACK table built afresh every
100 requests): bare, and with the 15 fields a browser sends (user-agent,
accept, accept-language, accept-encoding, sec-ch-ua*, sec-fetch-*,
upgrade-insecure-requests, cache-control, referer, a 1 KiB cookie; the text is
in celbench/browser.py); reports both, their ratio and the difference.

--scaling splits the usable CPUs in two: h2load on the first half (-t = its
CPU count), celerisd, h2o and nginx (as --servers allows) on the second with 1,
2, 4 ... workers up to its CPU count, pinned to the first w of them, -c C×w;
reports req/s, req/s per worker and efficiency (req/s ÷ w × the 1-worker
figure). On 2 CPUs that is the 1-worker step only; the same command runs
every step on a larger machine.

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
    ap.add_argument('--middleware', action='store_true',
                    help='with --callgrind: celerisd alone, each route bare and with each '
                         'global middleware item')
    ap.add_argument('--browser', action='store_true',
                    help='with --callgrind: each route bare and with a browser\'s 15 fields '
                         '(a 1 KiB cookie among them), h2load -c 200')
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
    ap.add_argument('--scaling', action='store_true',
                    help='celerisd, h2o, nginx with 1, 2, 4 ... N/2 workers against h2load on the '
                         'other half of the CPUs: req/s and efficiency per core')
    ap.add_argument('--many-conns', type=int, metavar='N', default=None,
                    help='N connections at one request a second each (celerisd, /bench): '
                         'server CPU per request and RSS against the saturated figure')
    ap.add_argument('--relay-delay', type=float, metavar='MS', default=None,
                    help='a 4 MiB upload (celerisd, h2c) through a relay delaying each '
                         'direction by MS ms: 65,535-octet windows against the defaults')
    ap.add_argument('--via', choices=['haproxy'], default=None,
                    help='celerisd straight and through HAProxy (h2c, PROXY v2) on the same '
                         'server CPUs: req/s of both and the overhead (/bench)')
    ap.add_argument('--files', action='store_true',
                    help='static files from a directory (celerisd dir:, h2o file.dir, nginx root, '
                         'nghttpd -d): small files, 304, callgrind, 16 x 1 GiB downloads')
    ap.add_argument('--downloads', action='store_true',
                    help='with --files: only the 16 x 1 GiB downloads, in --repeat interleaved '
                         'rounds (medians)')
    opts = ap.parse_args(argv)

    modes = [m for m in ('callgrind', 'idle_conns', 'ramp', 'inproc', 'via', 'scaling',
                         'relay_delay', 'many_conns', 'files') if getattr(opts, m) not in (None, False)]
    if len(modes) > 1:
        ap.error('choose one of --callgrind, --idle-conns, --ramp, --inproc, --via, --scaling, '
                 '--relay-delay, --many-conns, --files')
    if opts.many_conns is not None and opts.many_conns < 1:
        ap.error('--many-conns needs N >= 1')
    if opts.relay_delay is not None and opts.relay_delay < 0:
        ap.error('--relay-delay needs MS >= 0')
    opts.mode = modes[0] if modes else 'throughput'
    if opts.downloads and opts.mode != 'files':
        ap.error('--downloads goes with --files')
    protos = [p.strip() for p in opts.proto.split(',') if p.strip()]
    for p in protos:
        if p not in PROTOS:
            ap.error(f'unknown --proto {p!r} (known: {", ".join(PROTOS)})')
    if not protos:
        ap.error('--proto: give h2c, http1, tls or a comma list of them')
    opts.protos = list(dict.fromkeys(protos))
    if opts.mode == 'callgrind' and opts.protos == ['http1']:
        if opts.browser or opts.table:
            ap.error('--callgrind --proto http1 takes neither --browser nor --table')
    elif opts.mode != 'throughput' and opts.protos != ['h2c']:
        ap.error(f'--{opts.mode.replace("_", "-")} measures h2c only (--proto h2c; --callgrind '
                 f'also http1)')
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
    if opts.mode == 'callgrind' and opts.protos == ['http1']:
        opts.names = [s for s in opts.names if s in PROTOS['http1'].servers]
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
    if opts.middleware:
        if opts.mode != 'callgrind' or opts.table or opts.browser or opts.protos != ['h2c']:
            ap.error('--middleware goes with --callgrind alone (h2c, no --table or --browser)')
        opts.names = ['celerisd']
        if [r for r in opts.route_list if r.key == 'hello']:
            ap.error('--middleware: the routes /bench, /json, /users')
    if opts.browser and (opts.mode != 'callgrind' or opts.table):
        ap.error('--browser goes with --callgrind (and not --table)')
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
            mode_via_haproxy(opts, ctx)
        elif opts.mode == 'relay_delay':
            mode_relay_upload(opts, ctx)
        elif opts.mode == 'many_conns':
            mode_many_conns(opts, ctx, opts.route_list, opts.names)
        elif opts.mode == 'callgrind' and opts.middleware:
            mode_callgrind_middleware(opts, ctx, opts.route_list)
        else:
            {'callgrind': mode_callgrind, 'idle_conns': mode_idle, 'ramp': mode_ramp,
             'files': mode_files,
             'inproc': mode_inproc, 'scaling': mode_scaling}[opts.mode](opts, ctx, opts.route_list, opts.names)
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
