"""Access logs, Prometheus metrics and the status handler, against the real
daemon: lines appear for exactly the requests made, JSON lines stay valid JSON
whatever a client sends, logrotate's SIGUSR1 works, and counters move by exactly
the requests made (parsed with prometheus_client's own parser)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import REPO, curl

from h2client import H2Client


def wait_lines(path, n, timeout=5):
    """Access logs are written once a second: wait for N lines."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def cfg(log_path, fmt, extra_routes=""):
    return f"""workers: 2
log: {{ level: info, access: {{ path: {log_path}, format: '{fmt}' }} }}
routes:
  - path: /bench
    static: {{ body: "OK" }}
  - path: /health
    access_log: off
    static: {{ body: "ok" }}
  - path: /metrics
    access_log: off
    metrics: {{}}
  - path: /status
    status: {{}}
{extra_routes}"""


def test_combined_format(celerisd, tmp_path):
    log = tmp_path / "access.log"
    srv = celerisd(cfg(log, "combined"))
    p = curl(["-A", 'agent "quoted" \\ back', "-e", "http://ref/", srv.url("/bench?x=1")])
    assert p.stdout == b"OK"
    curl([srv.url("/nope")])
    curl([srv.url("/health")])
    lines = wait_lines(log, 2)
    time.sleep(1.2)
    lines = log.read_text().splitlines()
    assert len(lines) == 2, lines  # /health is not logged
    # two workers write their own buffers: lines are in order per worker only
    lines.sort(key=lambda ln: "/nope" in ln)
    m = re.fullmatch(r'127\.0\.0\.1 - - \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d) \+0000\] '
                     r'"GET /bench\?x=1 HTTP/2\.0" 200 2 "http://ref/" '
                     r'"agent \\x22quoted\\x22 \\x5C back"', lines[0])
    assert m, lines[0]
    assert abs(time.mktime(time.strptime(m.group(1), "%d/%b/%Y:%H:%M:%S")) -
               time.mktime(time.gmtime())) < 120
    assert re.fullmatch(r'127\.0\.0\.1 - - \[.*\] "GET /nope HTTP/2\.0" 404 10 "-" "curl/.*"',
                        lines[1]), lines[1]


def test_custom_format(celerisd, tmp_path):
    log = tmp_path / "access.log"
    srv = celerisd(cfg(log, "%m %U%q %s %B %{x-trace}i %v %H %D"))
    curl(["-H", "x-trace: abc123", srv.url("/bench?a=b")])
    lines = wait_lines(log, 1)
    assert re.fullmatch(rf"GET /bench\?a=b 200 2 abc123 127\.0\.0\.1:{srv.port} HTTP/2\.0 \d+",
                        lines[0]), lines


# What HTTP/2 lets through to a log: quotes, backslashes, tabs, bytes that are
# not UTF-8. (Other control bytes never get that far: nghttp2 refuses the
# request; the escaper's handling of them is unit-tested.)
HOSTILE = [
    ("user-agent", 'quote " and backslash \\ here'),
    ("referer", "tab\there {\"json\": [1]}"),
]


def test_json_lines_are_valid_json(celerisd, tmp_path):
    log = tmp_path / "access.log"
    srv = celerisd(cfg(log, "json"))
    with H2Client("127.0.0.1", srv.port) as c:
        assert c.get("/bench?q=%22x%22", headers=HOSTILE).status == 200
        # invalid UTF-8 in a header value and in the path
        sid = c.send_request("GET", "/bench", headers=[(b"user-agent", b"bad \xff utf8")])
        c.response(sid)
        c.get("/nope/\u00e9")
    lines = wait_lines(log, 3)
    assert len(lines) == 3, lines
    recs = [json.loads(ln) for ln in lines]
    # one connection, one worker: its lines keep their order
    assert recs[0]["method"] == "GET" and recs[0]["path"] == "/bench"
    assert recs[0]["query"] == "q=%22x%22"
    assert recs[0]["status"] == 200 and recs[0]["bytes"] == 2
    assert recs[0]["user_agent"] == HOSTILE[0][1]
    assert recs[0]["referer"] == HOSTILE[1][1]
    assert recs[0]["protocol"] == "HTTP/2.0" and recs[0]["remote"] == "127.0.0.1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", recs[0]["time"])
    assert isinstance(recs[0]["duration_us"], int)
    assert "\ufffd" in recs[1]["user_agent"]
    assert recs[2]["status"] == 404


def test_sigusr1_reopens_the_log(celerisd, tmp_path):
    log = tmp_path / "access.log"
    srv = celerisd(cfg(log, "common"))
    curl([srv.url("/bench")])
    assert len(wait_lines(log, 1)) == 1
    os.rename(log, tmp_path / "access.log.1")
    srv.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not log.exists():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.02)
    for _ in range(3):
        curl([srv.url("/bench")])
    assert len(wait_lines(log, 3)) == 3
    assert len((tmp_path / "access.log.1").read_text().splitlines()) == 1


def test_logrotate_without_systemd(celerisd, tmp_path):
    """packaging/celerisd.logrotate itself, run by logrotate on a daemon that
    systemd does not know: postrotate finds it by its pid file. Only the paths
    and the celerisd user are swapped for the test's own."""
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not os.path.exists(logrotate):
        pytest.skip("logrotate is not installed (scripts/deps test installs it)")
    logs, run = tmp_path / "logs", tmp_path / "run"
    logs.mkdir()
    run.mkdir()
    log, pid = logs / "access.log", run / "celerisd.pid"
    srv = celerisd(f"pid_file: {pid}\n" + cfg(log, "common"))
    deadline = time.monotonic() + 10
    while not pid.exists():  # written just after the port opens
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.02)
    conf = (REPO / "packaging" / "celerisd.logrotate").read_text()
    assert "/run/celerisd/celerisd.pid" in conf and "/var/log/celerisd/" in conf
    conf = conf.replace("/var/log/celerisd/", f"{logs}/")
    conf = conf.replace("/run/celerisd/celerisd.pid", str(pid))
    conf = re.sub(r"^\s*su .*$", "", conf, flags=re.M)
    conf = re.sub(r"^(\s*create \d+) .*$", r"\1", conf, flags=re.M)
    (tmp_path / "logrotate.conf").write_text(conf)
    curl([srv.url("/bench")])
    assert len(wait_lines(log, 1)) == 1
    r = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "state"),
                        str(tmp_path / "logrotate.conf")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    rotated = logs / "access.log.1"
    assert rotated.exists() and len(rotated.read_text().splitlines()) == 1
    for _ in range(3):
        curl([srv.url("/bench")])
    # the daemon writes to the new file, not on into the rotated one
    assert len(wait_lines(log, 3)) == 3, srv.stderr_text()
    assert len(rotated.read_text().splitlines()) == 1
    assert "log files reopened" in srv.stderr_text()


def test_bad_access_log_config(celerisd, tmp_path):
    from support import expect_config_error
    path = tmp_path / "bad.yaml"
    path.write_text("""listen: "127.0.0.1:1"
log: { access: { path: /nonexistent-dir/x.log } }
""")
    expect_config_error(path, 2, None, ["access log"])
    path.write_text("""listen: "127.0.0.1:1"
log: { access: { path: stderr, format: "%h %Z" } }
""")
    expect_config_error(path, 2, None, ["%Z"])


def scrape(srv):
    p = curl([srv.url("/metrics"), "-D", "-"])
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert b"content-type: text/plain; version=0.0.4" in head
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    return fams


def sample(fams, family, name, **labels):
    total = 0.0
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


def test_metrics_count_exactly(celerisd, tmp_path):
    srv = celerisd(cfg(tmp_path / "a.log", "combined"))
    before = scrape(srv)
    base = sample(before, "celerisd_requests", "celerisd_requests_total", route="/bench",
                  method="GET", code="2xx")
    with H2Client("127.0.0.1", srv.port) as c:
        for _ in range(25):
            assert c.get("/bench").status == 200
        for _ in range(7):
            assert c.get("/missing").status == 404
        assert c.request("POST", "/bench").status == 405
        assert c.request("HEAD", "/bench").status == 200
        assert c.request("OPTIONS", "/bench").status == 405
        assert c.request("TRACE", "/bench").status == 405
        assert c.request("BREW", "/bench").status == 405
    after = scrape(srv)
    assert sample(after, "celerisd_requests", "celerisd_requests_total", route="/bench",
                  method="GET", code="2xx") - base == 25
    assert sample(after, "celerisd_requests", "celerisd_requests_total", route="(unmatched)",
                  method="GET", code="4xx") == 7
    # a method the route does not take (405) counts under the path's route
    assert sample(after, "celerisd_requests", "celerisd_requests_total", route="/bench",
                  method="POST", code="4xx") == 1
    assert sample(after, "celerisd_requests", "celerisd_requests_total", route="/bench",
                  method="HEAD", code="2xx") == 1
    # OPTIONS by name; TRACE and a method celerisd does not know as "other"
    assert sample(after, "celerisd_requests", "celerisd_requests_total", route="/bench",
                  method="OPTIONS", code="4xx") == 1
    assert sample(after, "celerisd_requests", "celerisd_requests_total", route="/bench",
                  method="other", code="4xx") == 2
    assert sample(after, "celerisd_requests", "celerisd_requests_total", route="(unmatched)",
                  code="4xx") == 7
    # the histogram counts every answered request, the scrapes included, by route
    count = sample(after, "celerisd_request_duration_seconds",
                   "celerisd_request_duration_seconds_count")
    total = sum(s.value for s in after["celerisd_requests"].samples
                if s.name == "celerisd_requests_total")
    assert count == total
    inf = sample(after, "celerisd_request_duration_seconds",
                 "celerisd_request_duration_seconds_bucket", le="+Inf")
    assert inf == count
    assert sample(after, "celerisd_request_duration_seconds",
                  "celerisd_request_duration_seconds_count", route="/bench") == 25 + 5 + base
    assert sample(after, "celerisd_request_duration_seconds",
                  "celerisd_request_duration_seconds_count", route="(unmatched)") == 7
    assert sample(after, "celerisd_workers", "celerisd_workers") == 2
    assert sample(after, "celerisd_config_generation", "celerisd_config_generation") == 1
    assert sample(after, "celerisd_uptime_seconds", "celerisd_uptime_seconds") > 0
    sent = sample(after, "celerisd_sent_bytes", "celerisd_sent_bytes_total") - \
        sample(before, "celerisd_sent_bytes", "celerisd_sent_bytes_total")
    # 25 x "OK", 7 x "Not Found\n", 1 x "Method Not Allowed\n" (HEAD sends none)
    # plus the first scrape's body
    assert sent >= 25 * 2 + 7 * 10 + 19
    assert sample(after, "celerisd_connections", "celerisd_connections_total") >= 3


def test_metrics_gauges_and_reloads(celerisd, tmp_path):
    srv = celerisd(cfg(tmp_path / "a.log", "combined"))
    with H2Client("127.0.0.1", srv.port) as c1, H2Client("127.0.0.1", srv.port) as c2:
        c1.get("/bench")
        c2.get("/bench")
        fams = scrape(srv)
        # the two held connections plus curl's
        assert sample(fams, "celerisd_connections_open", "celerisd_connections_open") == 3
        assert sample(fams, "celerisd_streams_open", "celerisd_streams_open") == 1
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "generation 2 is serving" not in srv.stderr_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    fams = scrape(srv)
    assert sample(fams, "celerisd_reloads", "celerisd_reloads_total", result="ok") == 1
    assert sample(fams, "celerisd_config_generation", "celerisd_config_generation") == 2
    # a route's counters survive the reload
    assert sample(fams, "celerisd_requests", "celerisd_requests_total", route="/bench",
                  method="GET", code="2xx") == 2


def test_status_handler(celerisd, tmp_path):
    srv = celerisd(cfg(tmp_path / "a.log", "combined"))
    with H2Client("127.0.0.1", srv.port) as c:
        r = c.get("/status")
    assert r.status == 200 and r.header("content-type") == "application/json"
    st = r.json()
    assert st["status"] == "ok" and st["version"] == "0.3.0"
    assert st["generation"] == 1 and st["workers"] == 2 and st["connections"] >= 1


def test_journal_priorities(tmp_path):
    """Under systemd ($JOURNAL_STREAM names stderr), lines carry <N> priority
    prefixes so journald keeps severities: info <6>, errors <3>."""
    import subprocess
    from support import BINARY, free_port
    port = free_port()
    cfg = tmp_path / "j.yaml"
    cfg.write_text(f'listen: "127.0.0.1:{port}"\nworkers: 1\nroutes:\n'
                   f'  - path: /a\n    static: {{ body: "A" }}\n')
    r, w = os.pipe()
    st = os.fstat(w)
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    p = subprocess.Popen([BINARY, "-c", str(cfg)], stderr=w, stdout=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, env=env)
    os.close(w)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        cfg.write_text("routes: 5\n")
        p.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 0
    out = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        out += chunk
    os.close(r)
    lines = out.decode().splitlines()
    assert any(ln.startswith("<6>listening on 127.0.0.1:") for ln in lines), lines
    assert any(ln.startswith("<3>reload failed") for ln in lines), lines
    assert all(re.match(r"<[0-7]>", ln) for ln in lines if ln), lines


def test_durations_span_asynchronous_answers(celerisd, tmp_path):
    """Request times come from the worker's clock, read once per connection
    event: a response a module holds back for 80 ms (on the loop, and from a
    pool thread) still logs about that long, over HTTP/2 and HTTP/1.1. A loop
    timer runs on libevent's coarse clock (a kernel tick, at most 10 ms) and
    can fire up to a tick before its time; a pool thread's sleep cannot."""
    from test_modules import MODULES
    log = tmp_path / "access.log"
    srv = celerisd(f"""workers: 1
modules_dir: {MODULES}
log: {{ level: info, access: {{ path: {log}, format: json }} }}
routes:
  - path: /loop
    module: {{ name: delay, config: {{ ms: 80, mode: loop }} }}
  - path: /thread
    module: {{ name: delay, config: {{ ms: 80, mode: thread, threads: 2 }} }}
""")
    for path in ("/loop", "/thread"):
        assert curl([srv.url(path)]).returncode == 0
        assert curl(["--http1.1", srv.url(path)]).returncode == 0
    recs = [json.loads(ln) for ln in wait_lines(log, 4)]
    assert [(r["path"], r["protocol"]) for r in recs] == [
        ("/loop", "HTTP/2.0"), ("/loop", "HTTP/1.1"),
        ("/thread", "HTTP/2.0"), ("/thread", "HTTP/1.1")], recs
    for r in recs:
        assert r["status"] == 200, r
        assert r["duration_us"] >= (70000 if r["path"] == "/loop" else 80000), r


def raw_http1(port, data, timeout=10):
    """Sends DATA on a new connection and reads until the server closes it;
    returns the status of the first answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", got)
    assert m, got[:200]
    return int(m.group(1))


REJECTED_H1 = [
    # (what is sent, status, method, path as logged)
    (b"GET /a HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "GET", "/a"),
    (b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413, "POST", "/up"),
    (b"GET /" + b"t" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "GET", "/" + "t" * 2000),
    (b"GET /h?q=1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 2000 + b"\r\n\r\n", 431, "GET", "/h"),
    (b"GET /v HTTP/1.7\r\nHost: x\r\n\r\n", 505, "GET", "/v"),
    # refused in the body, after the head was taken
    (b"POST /bench HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
     "POST", "/bench"),
]


def test_rejected_requests_are_logged_and_counted(celerisd, tmp_path):
    """HTTP/1.1 requests refused before routing (400, 413, 414, 431, 505) and
    an HTTP/2 request reset as malformed get an access log line with the
    client's address, and count under route="(rejected)"."""
    log = tmp_path / "access.log"
    srv = celerisd(f"""workers: 1
limits: {{ max_request_body: 1k, max_request_line: 1k, max_header_line: 1k }}
log: {{ level: info, access: {{ path: {log}, format: json }} }}
routes:
  - path: /bench
    static: {{ body: "OK" }}
  - path: /metrics
    access_log: off
    metrics: {{}}
""")
    for data, status, _, _ in REJECTED_H1:
        assert raw_http1(srv.port, data) == status
    with H2Client("127.0.0.1", srv.port) as c:
        # RFC 9113 8.2.1: an uppercase field name makes the request malformed
        sid = c.send_request("GET", "/upper?x=1", headers=[("X-Upper", "1")])
        r = c.response(sid)
        assert r.status is None and r.reset == 1, r  # RST_STREAM PROTOCOL_ERROR
        assert c.get("/bench").status == 200  # the connection goes on
    recs = [json.loads(ln) for ln in wait_lines(log, len(REJECTED_H1) + 2)]
    assert len(recs) == len(REJECTED_H1) + 2, recs
    for rec, (_, status, method, path) in zip(recs, REJECTED_H1):
        assert rec["remote"] == "127.0.0.1", rec
        assert rec["protocol"] == "HTTP/1.1", rec
        assert (rec["status"], rec["method"], rec["path"]) == (status, method, path), rec
        assert rec["bytes"] > 0, rec  # the reason phrase went out as the body
    assert recs[3]["query"] == "q=1"
    h2rec = recs[len(REJECTED_H1)]
    assert (h2rec["remote"], h2rec["protocol"], h2rec["status"], h2rec["method"],
            h2rec["path"], h2rec["bytes"]) == ("127.0.0.1", "HTTP/2.0", 400, "GET", "/upper", 0)
    assert recs[-1]["path"] == "/bench" and recs[-1]["status"] == 200

    fams = scrape(srv)
    rej = {(s.labels["method"], s.labels["code"]): s.value
           for s in fams["celerisd_requests"].samples
           if s.name == "celerisd_requests_total" and s.labels["route"] == "(rejected)"}
    assert rej == {("GET", "4xx"): 4, ("POST", "4xx"): 2, ("GET", "5xx"): 1}, rej
    assert sample(fams, "celerisd_request_duration_seconds",
                  "celerisd_request_duration_seconds_count", route="(rejected)") == 7
    # the chunked body was refused at /bench, but it is not the route's request
    assert sample(fams, "celerisd_requests", "celerisd_requests_total", route="/bench") == 1


# Request lines the parser could not read, and what the access log shows of
# them: the method and the target as far as the parser read them, never the
# bytes that stopped it (a NUL in the method reached the JSON log as
# "GET\u0000", a line of binary as a method and a path of garbage). Each
# comes second on its connection: as the first bytes, the lines that do not
# begin with an upper-case method and a space are taken for a broken HTTP/2
# preface (GOAWAY, nothing logged).
MALFORMED_H1 = [
    # (what is sent, method, path as logged)
    (b"GET\x00 /a HTTP/1.1\r\nHost: x\r\n\r\n", "", ""),
    (b"\x01\x02\xff \x7f/x\xfe HTTP/1.1\r\n\r\n", "", ""),
    (b"GET /a\x01b?q=\x00 HTTP/1.1\r\nHost: x\r\n\r\n", "GET", ""),
    (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", "GET", ""),
    (b"GET /ok?a=1 HTTP/1.1\x00\r\nHost: x\r\n\r\n", "GET", "/ok"),
]


@pytest.mark.parametrize("fmt", ["json", "%m|%U|%q|%s|%r"])
def test_malformed_request_lines_logged_as_far_as_read(celerisd, tmp_path, fmt):
    """A request line the parser refuses (400) is logged with the 400 the
    client got and with what the parser read of it: nothing of a method that
    is no token, no target with a byte a target may not hold; in text formats
    an empty method or path is "-"."""
    log = tmp_path / "access.log"
    srv = celerisd(f"""workers: 1
log: {{ level: info, access: {{ path: {log}, format: '{fmt}' }} }}
routes:
  - path: /first
    access_log: off
    static: {{ body: "OK" }}
""")
    for data, _, _ in MALFORMED_H1:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + data)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        assert re.findall(rb"HTTP/1\.1 (\d{3}) ", got) == [b"200", b"400"], (data, got)
    lines = wait_lines(log, len(MALFORMED_H1))
    assert len(lines) == len(MALFORMED_H1), lines
    for line, (data, method, path) in zip(lines, MALFORMED_H1):
        if fmt == "json":
            rec = json.loads(line)
            assert (rec["method"], rec["path"], rec["status"]) == (method, path, 400), (data, rec)
            assert rec["query"] == ("a=1" if path else ""), (data, rec)
            assert rec["remote"] == "127.0.0.1" and rec["protocol"] == "HTTP/1.1", rec
            assert not any(c < " " for v in rec.values() if isinstance(v, str) for c in v), rec
        else:
            q = "?a=1" if path else ""
            m, p = method or "-", path or "-"
            assert line == f"{m}|{p}|{q}|400|{m} {p}{q} HTTP/1.1", (data, line)


def test_durations_resolve_microseconds(celerisd, tmp_path):
    """A response a module holds back for 2 ms (sleeping in a pool thread)
    takes at least that long in the access log and in the route's histogram,
    measured in microseconds (libevent's cached loop time moves a kernel tick
    at a time, 1-10 ms: it said 0 or 4000)."""
    from test_modules import MODULES
    log = tmp_path / "access.log"
    srv = celerisd(f"""workers: 1
modules_dir: {MODULES}
log: {{ level: info, access: {{ path: {log}, format: json }} }}
routes:
  - path: /d
    module: {{ name: delay, config: {{ ms: 2, mode: thread, threads: 2 }} }}
  - path: /metrics
    access_log: off
    metrics: {{}}
""")
    n = 8
    with H2Client("127.0.0.1", srv.port) as c:
        for _ in range(n // 2):
            assert c.get("/d").status == 200
    for _ in range(n // 2):
        assert curl(["--http1.1", srv.url("/d")]).returncode == 0
    durations = [json.loads(ln)["duration_us"] for ln in wait_lines(log, n)]
    assert len(durations) == n
    assert all(d >= 2000 for d in durations), durations
    # a tick-resolution clock gives only multiples of its tick
    assert any(d % 1000 for d in durations), durations
    fams = scrape(srv)
    assert sample(fams, "celerisd_request_duration_seconds",
                  "celerisd_request_duration_seconds_count", route="/d") == n
    total = sample(fams, "celerisd_request_duration_seconds",
                   "celerisd_request_duration_seconds_sum", route="/d")
    assert total == pytest.approx(sum(durations) / 1e6, abs=1e-5)
    assert sample(fams, "celerisd_request_duration_seconds",
                  "celerisd_request_duration_seconds_bucket", route="/d", le="0.001") == 0


def proc_cpu_seconds(pid):
    """utime + stime of PID (every thread) from /proc/PID/stat, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_process_metrics(celerisd, tmp_path):
    """process_* as every Prometheus exporter has them, read from /proc when
    scraped: open descriptors follow the connections held."""
    srv = celerisd(cfg(tmp_path / "a.log", "combined"))
    fams = scrape(srv)
    rss = sample(fams, "process_resident_memory_bytes", "process_resident_memory_bytes")
    vsz = sample(fams, "process_virtual_memory_bytes", "process_virtual_memory_bytes")
    assert 1 << 20 < rss < vsz
    fds = sample(fams, "process_open_fds", "process_open_fds")
    assert 3 < fds < sample(fams, "process_max_fds", "process_max_fds")
    started = sample(fams, "process_start_time_seconds", "process_start_time_seconds")
    assert abs(started - time.time()) < 60
    # the CPU time the kernel counts for the process (every thread, in clock
    # ticks), read before and after a scrape; work until it counts some
    deadline = time.monotonic() + 30
    with srv.client() as c:
        while proc_cpu_seconds(srv.pid) == 0:
            assert time.monotonic() < deadline, "the daemon used no CPU time in 30 s"
            assert all(r.status == 200 for r in c.many(["/bench"] * 100))
    before = proc_cpu_seconds(srv.pid)
    cpu = sample(scrape(srv), "process_cpu_seconds", "process_cpu_seconds_total")
    after = proc_cpu_seconds(srv.pid)
    assert 0 < before <= cpu <= after, (before, cpu, after)
    held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(10)]
    try:
        deadline = time.monotonic() + 10
        while True:
            now = sample(scrape(srv), "process_open_fds", "process_open_fds")
            if now >= fds + 10 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert now >= fds + 10, (fds, now)
    finally:
        for s in held:
            s.close()
    # a counter: the scrapes above cost CPU time, and it never goes back
    assert sample(scrape(srv), "process_cpu_seconds", "process_cpu_seconds_total") >= cpu


@pytest.mark.parametrize("source", ["127.0.0.1", "127.10.200.3", "127.255.0.99"])
def test_remote_address_written_for_each_octet(celerisd, tmp_path, source):
    """The peer's IPv4 address as the access log shows it, octets of one, two
    and three digits and zeros among them (written without inet_ntop, which
    costs a sprintf a connection)."""
    log = tmp_path / "access.log"
    srv = celerisd(cfg(log, "json"))
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(b"GET /bench HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = b""
        while chunk := s.recv(4096):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got
    recs = [json.loads(ln) for ln in wait_lines(log, 1)]
    assert [r["remote"] for r in recs] == [source], recs
