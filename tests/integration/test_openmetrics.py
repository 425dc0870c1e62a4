"""The metrics route in OpenMetrics 1.0 text (issue 15), against the real
daemon: the format follows the request's accept by q-value (Prometheus's own
accept gets OpenMetrics, anything else the 0.0.4 text as before), the text
passes prometheus_client's OpenMetrics parser and a stricter line check of
our own, and with request_id each duration bucket's exemplar is the id of the
last request that landed in it (escaped as a label value, never a torn mix of
two ids while workers write), and none without request_id."""

import re
import socket
import threading
import time

from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families as prom_families

from support import build_module, curl

OM_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# what Prometheus 2.x sends
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
                     "application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")

SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "info": ("_info",),
            "histogram": ("_bucket", "_count", "_sum", "_created"), "unknown": ("",)}
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
# a sample line: name, labels (quoted values with \\ \" \n escapes), value, and
# an optional exemplar of the same label syntax
LABELS = r'\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,(?=[a-zA-Z_]))?)*\}'
NUMBER = r"(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Inf|NaN)"
SAMPLE = re.compile(rf"^({NAME})({LABELS})? ({NUMBER})(?: # ({LABELS}) ({NUMBER})(?: ({NUMBER}))?)?$")


def strict_check(text):
    """OpenMetrics rules prometheus_client's parser lets through: one # EOF,
    last; no blank line; metadata before its family's samples; a counter's
    family without _total and its samples with it; UNIT a suffix of the name;
    sample names of the family's type only; exemplars only on buckets and
    counters. Returns {sample line: exemplar labels text} for exemplars."""
    assert text.endswith("# EOF\n"), text[-200:]
    lines = text[:-1].split("\n")
    assert lines.count("# EOF") == 1 and lines[-1] == "# EOF"
    family, typ, seen, exemplars = None, None, set(), {}
    for line in lines[:-1]:
        assert line, "blank line"
        if line.startswith("#"):
            m = re.fullmatch(rf"# (HELP|TYPE|UNIT) ({NAME}) (.*)", line)
            assert m, line
            kind, name, rest = m.groups()
            if name != family:
                assert name not in seen, f"family {name} twice"
                seen.add(name)
                family, typ, samples = name, "unknown", 0
            assert samples == 0, f"metadata after samples: {line}"
            if kind == "TYPE":
                assert rest in SUFFIXES, line
                typ = rest
                if typ == "counter":
                    assert not name.endswith("_total"), line
            elif kind == "UNIT":
                assert name.endswith("_" + rest), line
            elif kind == "HELP":
                assert not re.search(r'(?<!\\)(?:\\\\)*\\[^\\"n]', rest), line
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name = m.group(1)
        assert family and name in [family + s for s in SUFFIXES[typ]], (family, typ, line)
        samples += 1
        if m.group(4):
            assert (typ == "histogram" and name.endswith("_bucket")) or \
                (typ == "counter" and name.endswith("_total")), line
            exemplars[line] = m.group(4)
    return exemplars


def scrape(srv, accept=None, path="/metrics"):
    """(content-type, body) of the metrics route."""
    args = [srv.url(path), "-D", "-"]
    if accept is not None:
        args += ["-H", f"accept: {accept}"]
    p = curl(args)
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    ctype = re.search(rb"(?im)^content-type: *([^\r\n]*)", head).group(1).decode()
    vary = re.search(rb"(?im)^vary: *([^\r\n]*)", head)
    assert vary and vary.group(1).lower() == b"accept", head
    return ctype, body.decode()


def openmetrics(srv, path="/metrics"):
    """Families (by name) of an OpenMetrics scrape, checked both ways."""
    ctype, body = scrape(srv, PROMETHEUS_ACCEPT, path)
    assert ctype == OM_TYPE, ctype
    strict_check(body)
    return {f.name: f for f in om_families(body)}, body


def bucket_exemplars(fams, route):
    """{le: exemplar} of ROUTE's duration buckets that have one."""
    return {s.labels["le"]: s.exemplar
            for s in fams["celerisd_request_duration_seconds"].samples
            if s.name.endswith("_bucket") and s.labels["route"] == route and s.exemplar}


CONFIG = """workers: 2
routes:
  - path: /traced
    middleware:
      - request_id: { trust_incoming: true }
    static: { body: "T" }
  - path: /slow
    methods: [POST]
    middleware:
      - request_id: {}
    static: { body: "S" }
  - path: /plain
    static: { body: "P" }
  - path: /metrics
    metrics: {}
"""


def test_prometheus_accept_gets_openmetrics(celerisd):
    srv = celerisd(CONFIG)
    curl([srv.url("/plain")])
    fams, body = openmetrics(srv)
    assert fams["celerisd_requests"].type == "counter"
    assert [s.name for s in fams["celerisd_requests"].samples] == \
        ["celerisd_requests_total"] * len(fams["celerisd_requests"].samples)
    assert any(s.labels["route"] == "/plain" and s.value == 1
               for s in fams["celerisd_requests"].samples)
    assert fams["celerisd_build"].type == "info"
    assert fams["celerisd_build"].samples[0].name == "celerisd_build_info"
    assert fams["celerisd_request_duration_seconds"].unit == "seconds"
    assert fams["celerisd_received_bytes"].unit == "bytes"
    assert fams["process_cpu_seconds"].type == "counter"
    # the 0.0.4 text without accept, as before: no OpenMetrics in it
    ctype, text = scrape(srv)
    assert ctype == PROM_TYPE
    assert "# EOF" not in text and "# UNIT" not in text and " # {" not in text
    assert "# TYPE celerisd_requests_total counter" in text
    assert "celerisd_build_info" in {f.name for f in prom_families(text)}


# (accept, OpenMetrics?)
NEGOTIATION = [
    (None, False),
    ("text/plain", False),
    ("text/plain;version=0.0.4", False),
    ("*/*", False),
    ("application/json", False),
    ("application/openmetrics-text", True),
    ("Application/OpenMetrics-Text; Version=1.0.0", True),
    (PROMETHEUS_ACCEPT, True),
    ("application/openmetrics-text;q=0.3, text/plain;q=0.7", False),
    ("text/plain;q=0.3, application/openmetrics-text;q=0.7", True),
    ("text/plain;version=0.0.4;q=0.5 , application/openmetrics-text ; version=\"1.0.0\" ; q=0.6",
     True),
    ("application/openmetrics-text;q=0", False),
    ("application/openmetrics-text;version=0.0.1", False),  # a version we do not write
    ("application/openmetrics-text;version=0.0.1,text/plain;q=0.2", False),
    ("application/openmetrics-text, */*", True),    # the more specific range wins a tie
    ("application/*;q=0.9, text/plain;q=0.8", True),
    ("*/*;q=0.9, text/*;q=0.8", True),  # text/* rates text/plain, */* the other
    ("text/*;q=0.5, */*;q=0.5", False),
    ("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;q=0.5", False),
    ("text/plain;q=0.5,application/openmetrics-text;version=1.0.0;q=0.5", True),
    ("text/plain;q=1.0,application/openmetrics-text;q=0.999", False),
]


def test_negotiation_by_q_value(celerisd):
    srv = celerisd(CONFIG)
    wrong = []
    for accept, om in NEGOTIATION:
        ctype, body = scrape(srv, accept)
        if ctype != (OM_TYPE if om else PROM_TYPE):
            wrong.append((accept, ctype))
        elif om:
            strict_check(body)
            list(om_families(body))
        else:
            assert not body.endswith("# EOF\n")
            list(prom_families(body))
    assert not wrong, wrong
    # several accept fields count together
    p = curl([srv.url("/metrics"), "-D", "-", "-H", "accept: text/plain;q=0.1",
              "-H", "accept: application/openmetrics-text;q=0.2"])
    assert re.search(rb"(?im)^content-type: application/openmetrics-text", p.stdout)


def sent_id(p):
    m = re.search(rb"(?im)^x-request-id: *([^\r\n]+)", p.stdout)
    assert m, p.stdout
    return m.group(1).decode()


def test_exemplars_are_the_last_request_ids(celerisd):
    srv = celerisd(CONFIG)
    ids = []
    for i in range(6):  # HTTP/2 and HTTP/1.1, new connections: both workers
        args = ["-D", "-", "-o", "/dev/null", srv.url("/traced")]
        p = curl(args if i % 2 else ["--http1.1", *args[:-1],
                                     f"http://127.0.0.1:{srv.port}/traced"])
        assert p.returncode == 0, p.stderr
        ids.append(sent_id(p))
    fams, _ = openmetrics(srv)
    ex = bucket_exemplars(fams, "/traced")
    # answered within the event that read them: all took 0, in the first bucket
    assert list(ex) == ["0.0001"], ex
    assert ex["0.0001"].labels == {"request_id": ids[-1]}
    assert ex["0.0001"].value == 0
    assert abs(float(ex["0.0001"].timestamp) - time.time()) < 600
    # an incoming id (trust_incoming) keeps its quote and backslash, escaped
    # (no brace: prometheus_client 0.16 ends an exemplar's labels at the first)
    odd = 'a"b\\c#,=x'
    with srv.client() as c:
        r = c.get("/traced", headers=[("x-request-id", odd)])
        assert r.status == 200 and r.header("x-request-id") == odd
    fams, body = openmetrics(srv)
    assert bucket_exemplars(fams, "/traced")["0.0001"].labels == {"request_id": odd}
    assert '{request_id="a\\"b\\\\c#,=x"}' in body
    # one of 128 characters is too long for OpenMetrics' exemplar labels (128
    # in all, "request_id" included): the bucket keeps the previous id
    long_id = "L" * 128
    with srv.client() as c:
        assert c.get("/traced", headers=[("x-request-id", long_id)]).header(
            "x-request-id") == long_id
        fams, _ = openmetrics(srv)
        assert bucket_exemplars(fams, "/traced")["0.0001"].labels == {"request_id": odd}
        ok_id = "M" * 118
        assert c.get("/traced", headers=[("x-request-id", ok_id)]).status == 200
    fams, _ = openmetrics(srv)
    assert bucket_exemplars(fams, "/traced")["0.0001"].labels == {"request_id": ok_id}


def test_exemplar_of_a_request_that_waited(celerisd):
    """A body that comes in two reads 50 ms apart: the request takes the time
    between them (about 50 ms), and its id is the exemplar of the bucket that
    holds it, with its duration as the value."""
    srv = celerisd(CONFIG)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n"
                  b"connection: close\r\n\r\nab")
        time.sleep(0.05)
        s.sendall(b"cd")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    rid = re.search(rb"(?im)^x-request-id: *([0-9a-f]{32})\r$", data).group(1).decode()
    fams, _ = openmetrics(srv)
    ex = bucket_exemplars(fams, "/slow")
    assert len(ex) == 1, ex
    (le, e), = ex.items()
    assert e.labels == {"request_id": rid}
    # the only request of the route: its duration is the histogram's sum (a
    # loaded machine may read both parts at once; the bucket then is the first)
    total = [s.value for s in fams["celerisd_request_duration_seconds"].samples
             if s.name.endswith("_sum") and s.labels["route"] == "/slow"]
    assert total == [e.value]
    les = [s.labels["le"] for s in fams["celerisd_request_duration_seconds"].samples
           if s.name.endswith("_bucket") and s.labels["route"] == "/slow"]
    i = les.index(le)
    assert e.value <= float(le) and (i == 0 or e.value > float(les[i - 1])), (le, e)
    # the bucket counts it; the one below does not
    counts = {s.labels["le"]: s.value for s in fams["celerisd_request_duration_seconds"].samples
              if s.name.endswith("_bucket") and s.labels["route"] == "/slow"}
    assert counts[le] == 1 and (i == 0 or counts[les[i - 1]] == 0)


def test_no_exemplars_without_request_id(celerisd):
    srv = celerisd(CONFIG)
    for _ in range(3):
        assert curl([srv.url("/plain")]).stdout == b"P"
    p = curl(["-D", "-", srv.url("/traced")])
    assert sent_id(p)
    fams, body = openmetrics(srv)
    assert not bucket_exemplars(fams, "/plain")
    assert not bucket_exemplars(fams, "/metrics")
    assert bucket_exemplars(fams, "/traced")
    assert not [ln for ln in body.splitlines()
                if " # {" in ln and 'route="/traced"' not in ln]
    # and none at all on a daemon without request_id
    srv2 = celerisd(CONFIG.replace("request_id: { trust_incoming: true }",
                                   "headers: { set: { x-a: b } }")
                    .replace("request_id: {}", "headers: { set: { x-a: b } }"))
    curl([srv2.url("/traced")])
    fams, body = openmetrics(srv2)
    assert " # {" not in body
    assert not any(s.exemplar for f in fams.values() for s in f.samples)


def test_exemplars_never_torn_under_load(celerisd):
    """Two workers keep writing the same bucket's exemplar with ids of many
    lengths while scrapes read it: each exemplar shown is an id that was sent,
    whole. (A torn copy would mix two of them.)"""
    srv = celerisd(CONFIG)
    sent, stop, errors = set(), threading.Event(), []

    def load(k):
        try:
            n = 0
            while not stop.is_set() and n < 3000:
                with srv.client() as c:
                    batch = []
                    for _ in range(50):
                        n += 1
                        ch = "abcdefghijklmnopqrstuvwxyz"[(k * 7 + n) % 26]
                        rid = f"{k}-{n}-" + ch * (1 + (n * 37) % 100)
                        sent.add(rid)
                        batch.append(("GET", "/traced", [("x-request-id", rid)]))
                    for r in c.many(batch):
                        if r.status != 200:
                            errors.append(r.status)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=load, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    shown = set()
    try:
        for _ in range(40):
            fams, _ = openmetrics(srv)
            for e in bucket_exemplars(fams, "/traced").values():
                shown.add(e.labels["request_id"])
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors[:5]
    assert shown, "no exemplar seen"
    assert shown <= sent, sorted(shown - sent)[:5]


MOD_SRC = r"""
#include <celeris/module.h>

static celeris_metric *hits, *done, *temp, *delta;

static int init(const celeris_init_args *args, void **instance, char *err, size_t errlen)
{
    static const double bounds[] = {-1, 0, 1};
    (void)err, (void)errlen;
    hits = celeris_metric_declare(args, CELERIS_METRIC_COUNTER, "hits", "Hits \"quoted\".",
                                  NULL, 0);
    done = celeris_metric_declare(args, CELERIS_METRIC_COUNTER, "done_total", NULL, NULL, 0);
    temp = celeris_metric_declare(args, CELERIS_METRIC_GAUGE, "level", NULL, NULL, 0);
    delta = celeris_metric_declare(args, CELERIS_METRIC_HISTOGRAM, "delta", NULL, bounds, 3);
    *instance = NULL;
    return hits && done && temp && delta ? CELERIS_OK : CELERIS_ERROR;
}

static int handle(void *instance, celeris_req *req)
{
    (void)instance;
    celeris_metric_add(hits, 1);
    celeris_metric_add(done, 2);
    celeris_metric_add(temp, -3);
    celeris_metric_observe(delta, -0.5);
    return celeris_resp_send(req, 200, "m\n", 2);
}

CELERIS_MODULE(om_mod) = {
    CELERIS_MODULE_HEADER,
    .init = init,
    .handle = handle,
};
"""


def test_module_metrics_in_openmetrics(celerisd, tmp_path):
    src = tmp_path / "om_mod.c"
    src.write_text(MOD_SRC)
    (tmp_path / "mods").mkdir()
    build_module(src, tmp_path / "mods" / "om_mod.so")
    srv = celerisd(f"""modules_dir: {tmp_path / "mods"}
routes:
  - path: /m
    module: {{ name: om_mod }}
  - path: /metrics
    metrics: {{}}
""")
    for _ in range(2):
        assert curl([srv.url("/m")]).stdout == b"m\n"
    fams, body = openmetrics(srv)
    # a counter declared without _total: its samples get it in OpenMetrics
    assert [(s.name, s.value) for s in fams["om_mod_hits"].samples] == [("om_mod_hits_total", 2)]
    assert fams["om_mod_hits"].documentation == 'Hits "quoted".'
    assert [(s.name, s.value) for s in fams["om_mod_done"].samples] == [("om_mod_done_total", 4)]
    assert fams["om_mod_level"].samples[0].value == -6
    # buckets below 0: no _sum (nor _count) in OpenMetrics
    names = {s.name for s in fams["om_mod_delta"].samples}
    assert names == {"om_mod_delta_bucket"}, names
    # the 0.0.4 text keeps the names as declared, _sum included
    _, text = scrape(srv)
    assert "\nom_mod_hits{route=\"/m\"} 2\n" in text
    assert "\nom_mod_delta_sum{route=\"/m\"} -1\n" in text
