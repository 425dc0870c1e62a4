"""A big route table (issue 21): 20,000 literal routes and 100 param routes
under one prefix, as a large REST API has. The config loads, every kind of
request is answered by the right route. What a lookup costs among 20,000
siblings is measured by `scripts/bench --callgrind --table 20000`, not here."""

import os
import time

from support import run_celerisd

N = 20000
PARAMS = 100
SCALE = float(os.environ.get("CELERIS_ATTACK_SCALE", "1"))


def table_config(port="{port}"):
    out = [f'listen: "127.0.0.1:{port}"', "workers: 1", "log: { level: warn }", "routes:"]
    for i in range(N):
        out.append(f"  - path: /api/v1/resource{i}/items\n"
                   f'    static: {{ body: "r{i}", content_type: text/plain }}')
    for j in range(PARAMS):
        out.append(f"  - path: /api/v1/param{j}/:id\n    methods: [GET]\n"
                   f'    json: {{ template: {{ p: "{j}", id: "{{{{param.id}}}}" }} }}')
    return "\n".join(out) + "\n"


def test_check_big_table(tmp_path):
    """-t on the table: loading used to compare each new literal with every
    sibling (quadratic). The bound is generous: seconds are a fault, not a figure."""
    path = tmp_path / "table.yaml"
    path.write_text(table_config(port=1))
    t0 = time.monotonic()
    p = run_celerisd(["-t", "-c", str(path)], timeout=60 * SCALE)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert f"({N + PARAMS} routes" in p.stderr + p.stdout
    assert took < 10 * SCALE, f"celerisd -t took {took:.1f} s on {N + PARAMS} routes"


def test_big_table_answers(celerisd):
    srv = celerisd(table_config())
    with srv.client() as c:
        for i in (0, 1, 8, 9, N // 2, N - 1):
            r = c.get(f"/api/v1/resource{i}/items")
            assert (r.status, r.body) == (200, f"r{i}".encode()), (i, r)
        r = c.get("/api/v1/%72esource1%32/items")     # percent-encoded: resource12
        assert (r.status, r.body) == (200, b"r12"), r
        r = c.get(f"/api/v1/param{PARAMS - 1}/abc")
        assert (r.status, r.body) == (200, b'{"p":"%d","id":"abc"}' % (PARAMS - 1)), r
        r = c.get("/api/v1/param0/x%20y")
        assert (r.status, r.body) == (200, b'{"p":"0","id":"x y"}'), r
        for path in ("/api/v1/nothere/items", f"/api/v1/resource{N}/items",
                     "/api/v1/resource0/items/more", "/api/v1/param0/", "/api/v2/resource0/items"):
            r = c.get(path)
            assert r.status == 404, (path, r)
        r = c.request("POST", "/api/v1/resource5/items")
        assert r.status == 405, r
        assert r.header("allow") == "GET, HEAD", r
