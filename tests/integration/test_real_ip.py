"""`real_ip: { header, trusted }`: behind a balancer that adds X-Forwarded-For
instead of speaking the PROXY protocol, the access log shows the right-most
address of the header that is not trusted; a peer that is not trusted is
itself whatever the header says."""

import socket
import time

import pytest

from support import expect_config_error


def config(log):
    return f"""real_ip: {{ header: X-Forwarded-For, trusted: [127.0.0.1/32, 10.0.0.0/8, "2001:db8::/32"] }}
workers: 1
log: {{ level: info, access: {{ path: {log}, format: '%h %U' }} }}
routes:
  - path: /r
    static: {{ body: "R" }}
"""


def get(port, headers, source=None):
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0) if source else None) as s:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        s.sendall(f"GET /r HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n".encode())
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                return out
            out += d


CASES = [
    ([("x-forwarded-for", "203.0.113.1, 10.0.0.5")], "203.0.113.1"),
    ([("x-forwarded-for", "6.6.6.6, 198.51.100.2")], "198.51.100.2"),   # forged left part
    ([("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2, 10.1.1.1")], "2.2.2.2"),
    ([("x-forwarded-for", "10.0.0.1,10.0.0.2")], "10.0.0.1"),           # all trusted
    ([("x-forwarded-for", "unknown, 10.0.0.3")], "10.0.0.3"),           # not an address
    ([("x-forwarded-for", "2001:db8::9, 2001:db9::1 ")], "2001:db9::1"),
    ([("x-forwarded-for", "garbage")], "127.0.0.1"),
    ([("x-real-ip", "192.0.2.1")], "127.0.0.1"),                       # another header
    ([], "127.0.0.1"),
]


def test_right_most_untrusted(celerisd, tmp_path):
    log = tmp_path / "access.log"
    srv = celerisd(config(log))
    for headers, _ in CASES:
        assert get(srv.port, headers).startswith(b"HTTP/1.1 200")
    # An untrusted peer (127.0.0.2) is itself.
    assert get(srv.port, [("x-forwarded-for", "192.0.2.77")], source="127.0.0.2").startswith(
        b"HTTP/1.1 200")
    want = [f"{ip} /r" for _, ip in CASES] + ["127.0.0.2 /r"]
    deadline = time.monotonic() + 10
    lines = []
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= len(want):
            break
        time.sleep(0.05)
    assert lines == want


@pytest.mark.parametrize("text, msg", [
    ("real_ip: { header: x-forwarded-for }", "real_ip needs header and trusted"),
    ("real_ip: { header: 'x forwarded', trusted: [10.0.0.0/8] }", "must be a header name"),
    ("real_ip: { header: xff, trusted: [10.0.0.0/33] }", 'bad address range'),
    ("real_ip: { header: xff, trusted: [10.0.0.0/8], x: 1 }", "unknown key"),
])
def test_config_errors(tmp_path, text, msg):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\nroutes: []\n")
    expect_config_error(path, 1, None, [msg])
