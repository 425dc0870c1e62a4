"""TLS listeners: ALPN h2 and http/1.1, SNI among several certificates,
session resumption, certificates re-read on SIGHUP (a bad one keeps the old),
h2load over TLS, and handshakes that stall or send garbage."""

import os
import pathlib
import re
import signal
import socket
import subprocess
import time

import pytest

from support import TIME_SCALE, run_h2load, self_signed


def make_cert(d, name, cn, sans):
    return self_signed(d, cn, sans, key=f"{name}.key", crt=f"{name}.crt")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    (d / "big.bin").write_bytes(os.urandom(3 << 20))
    return {
        "local": make_cert(d, "local", "localhost", ["DNS:localhost", "IP:127.0.0.1"]),
        "other": make_cert(d, "other", "other.test", ["DNS:other.test"]),
        "new": make_cert(d, "new", "renewed.localhost", ["DNS:localhost", "IP:127.0.0.1"]),
        "dir": d,
    }


def tls_config(certs, cert="local"):
    crt, key = certs[cert]
    ocrt, okey = certs["other"]
    return f"""listen:
  - "127.0.0.1:{{port}}"
  - address: "127.0.0.1:{{port2}}"
    tls:
      cert: {crt}
      key: {key}
      certificates:
        - {{ cert: {ocrt}, key: {okey} }}
workers: 2
limits: {{ header_timeout: 1s }}
routes:
  - path: /bench
    static: {{ body: "OK" }}
  - path: /big
    static: {{ file: {certs["dir"] / "big.bin"} }}
  - path: /json
    json: {{ template: {{ scheme: "{{{{header.x-scheme}}}}", path: "{{{{path}}}}" }} }}
"""


@pytest.fixture
def tsrv(celerisd, certs):
    return celerisd(tls_config(certs), ports=2)


def https(srv, path="/bench"):
    return f"https://127.0.0.1:{srv.ports[1]}{path}"


def curl_tls(args, timeout=15):
    return subprocess.run(["curl", "-sS", "-k", "--max-time", "10", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("flag,version", [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_over_tls(tsrv, flag, version):
    p = curl_tls([flag, "-w", " %{http_version}", https(tsrv)])
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"OK {version}"


def test_cleartext_listener_still_plain(tsrv):
    p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "5",
                        f"http://127.0.0.1:{tsrv.port}/bench"], capture_output=True, text=True,
                       timeout=15)
    assert p.stdout == "OK", p.stderr


def s_client(port, *args, stdin=b"", timeout=20):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                          input=stdin, capture_output=True, timeout=timeout)


@pytest.mark.parametrize("alpn,expect", [("h2", "h2"), ("http/1.1", "http/1.1"),
                                          ("h2,http/1.1", "h2"), ("spdy/3", None)])
def test_alpn(tsrv, alpn, expect):
    p = s_client(tsrv.ports[1], "-alpn", alpn)
    out = (p.stdout + p.stderr).decode(errors="replace")
    if expect:
        assert f"ALPN protocol: {expect}" in out, out
    else:
        assert "No ALPN negotiated" in out, out
    assert re.search(r"^New, TLSv1\.3", out, re.M), out


def subject_cn(out):
    m = re.search(r"subject=.*?CN\s*=\s*([^\s,/]+)", out)
    return m and m.group(1)


def test_sni_chooses_the_certificate(tsrv):
    p = s_client(tsrv.ports[1], "-servername", "other.test")
    assert subject_cn(p.stdout.decode(errors="replace")) == "other.test"
    p = s_client(tsrv.ports[1], "-servername", "localhost")
    assert subject_cn(p.stdout.decode(errors="replace")) == "localhost"
    p = s_client(tsrv.ports[1], "-noservername")
    assert subject_cn(p.stdout.decode(errors="replace")) == "localhost"  # the default


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_session_resumption(tsrv, tmp_path, version):
    sess = tmp_path / "sess.pem"
    req = b"GET /bench HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    # reading an answer gives TLS 1.3 time to deliver its session ticket
    p1 = s_client(tsrv.ports[1], version, "-alpn", "http/1.1", "-sess_out", str(sess),
                  "-ign_eof", stdin=req)
    assert sess.exists() and sess.stat().st_size > 0, p1.stderr
    p2 = s_client(tsrv.ports[1], version, "-alpn", "http/1.1", "-sess_in", str(sess),
                  "-ign_eof", stdin=req)
    out = p2.stdout.decode(errors="replace")
    assert re.search(r"^Reused, TLSv1\.[23]", out, re.M), out


def test_h2load_over_tls(tsrv):
    from support import load_n
    n = max(load_n() // 10, 5000)
    counts, out = run_h2load("-n", n, "-c", 20, "-m", 10, https(tsrv), timeout=180)
    got = [counts[k] for k in ("total", "started", "done", "succeeded", "failed", "errored")]
    assert got == [n, n, n, n, 0, 0], out
    assert "Application protocol: h2" in out, out


def test_garbage_and_stalled_handshakes_cost_one_connection(tsrv):
    port = tsrv.ports[1]
    bad = socket.create_connection(("127.0.0.1", port), timeout=5)
    bad.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plaintext at a TLS port
    stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
    stalled.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, then nothing
    start = time.monotonic()
    bound = 1 + 3 * TIME_SCALE  # the stall ends at header_timeout (1 s)
    assert curl_tls(["--http2", https(tsrv)]).stdout == "OK"  # everyone else is served
    for s in (bad, stalled):
        s.settimeout(bound + 1)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        s.close()
    assert time.monotonic() - start < bound


def read_to_eof(s):
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("request_line", [b"GET /bench HTTP/1.1", b"POST /x HTTP/1.0"])
def test_plain_http_on_the_tls_port_gets_400(tsrv, request_line):
    """As nginx does: a readable 400 saying the port speaks TLS, not a reset."""
    with socket.create_connection(("127.0.0.1", tsrv.ports[1]), timeout=10) as s:
        s.sendall(request_line + b"\r\nHost: x\r\n\r\n")
        data = read_to_eof(s)  # a reset raises here
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 400 Bad Request", data
    fields = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    assert fields["connection"] == "close" and fields["content-type"] == "text/plain"
    assert int(fields["content-length"]) == len(body) and "date" in fields
    assert b"TLS" in body and b"https://" in body
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}",
                        f"http://127.0.0.1:{tsrv.ports[1]}/bench"], capture_output=True,
                       text=True, timeout=20)
    assert p.stdout.endswith("\n400") and "https://" in p.stdout, p.stdout + p.stderr
    assert curl_tls([https(tsrv)]).stdout == "OK"  # TLS on the same port as before


def test_certificate_reload(celerisd, certs):
    srv = celerisd(tls_config(certs), ports=2)
    text = srv.config_path.read_text()
    p = s_client(srv.ports[1], "-servername", "localhost")
    assert subject_cn(p.stdout.decode(errors="replace")) == "localhost"
    # a renewed certificate at a new path: the reload serves it
    srv.config_path.write_text(text.replace(str(certs["local"][0]), str(certs["new"][0]))
                               .replace(str(certs["local"][1]), str(certs["new"][1])))
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "generation 2 is serving" not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.05)
    p = s_client(srv.ports[1], "-servername", "localhost")
    assert subject_cn(p.stdout.decode(errors="replace")) == "renewed.localhost"
    # a broken certificate: the reload fails and the renewed one keeps serving
    broken = certs["dir"] / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    srv.config_path.write_text(text.replace(str(certs["local"][0]), str(broken)))
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload failed" not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.05)
    err = [ln for ln in srv.stderr_text().splitlines() if "reload failed" in ln][0]
    assert "broken.crt" in err and re.search(r":\d+:\d+: ", err), err
    p = s_client(srv.ports[1], "-servername", "localhost")
    assert subject_cn(p.stdout.decode(errors="replace")) == "renewed.localhost"


def kernel_tls_available():
    """Whether this kernel offers TLS offload (the "tls" TCP upper-layer protocol)."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    try:
        cli.setsockopt(socket.SOL_TCP, 31, b"tls")  # TCP_ULP
        return True
    except OSError:
        return False
    finally:
        for s in (cli, srv, lst):
            s.close()


def test_kernel_tls_or_records_reported(tsrv, capsys):
    """Which output path the TLS tests ran: kernel TLS (writev to the socket)
    when the kernel offers it and OpenSSL sets it up, else OpenSSL records.
    Both must carry a large body intact."""
    with capsys.disabled():
        print(f"\n[tls] kernel TLS offload available: {kernel_tls_available()} "
              "(else the tests ran the OpenSSL record path)")
    p = curl_tls(["--http2", "-H", "x-scheme: " + "x" * 10, https(tsrv, "/json")])
    assert p.returncode == 0 and '"scheme":"xxxxxxxxxx"' in p.stdout, p.stderr
    import hashlib
    body = pathlib.Path(re.search(r"file: (\S+big\.bin)", tsrv.config_path.read_text())
                        .group(1)).read_bytes()
    for flag in ("--http2", "--http1.1"):
        p = subprocess.run(["curl", "-sS", "-k", "--max-time", "20", flag, https(tsrv, "/big")],
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert hashlib.sha256(p.stdout).digest() == hashlib.sha256(body).digest(), flag


def resumed(port, sess, out_file=None, version="-tls1_3"):
    req = b"GET /bench HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    args = [version, "-alpn", "http/1.1", "-sess_in", str(sess), "-ign_eof"]
    if out_file:
        args += ["-sess_out", str(out_file)]
    p = s_client(port, *args, stdin=req)
    return re.search(r"^Reused, TLSv1\.[23]", p.stdout.decode(errors="replace"), re.M) is not None


def fresh_ticket(port, sess, version="-tls1_3"):
    req = b"GET /bench HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    s_client(port, version, "-alpn", "http/1.1", "-sess_out", str(sess), "-ign_eof", stdin=req)
    assert sess.exists() and sess.stat().st_size > 0


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_tickets_survive_reload(celerisd, certs, tmp_path, version):
    srv = celerisd(tls_config(certs), ports=2)
    sess = tmp_path / "t.pem"
    fresh_ticket(srv.ports[1], sess, version)
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "generation 2 is serving" not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.05)
    # the new generation's contexts share the process's ticket keys
    assert resumed(srv.ports[1], sess, version=version)


def test_tls12_session_ids_survive_reload(celerisd, certs, tmp_path):
    """A TLS 1.2 client without tickets resumes by session ID: the cache is
    the process's, not the reloaded generation's."""
    srv = celerisd(tls_config(certs), ports=2)
    sess = tmp_path / "id.pem"
    req = b"GET /bench HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    s_client(srv.ports[1], "-tls1_2", "-no_ticket", "-alpn", "http/1.1", "-sess_out",
             str(sess), "-ign_eof", stdin=req)
    assert sess.exists() and sess.stat().st_size > 0
    text = subprocess.run(["openssl", "sess_id", "-in", str(sess), "-text", "-noout"],
                          capture_output=True, text=True, timeout=20).stdout
    assert re.search(r"Session-ID: [0-9A-F]{16,}", text), text   # an ID, not a ticket
    assert "TLS session ticket:" not in text, text
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "generation 2 is serving" not in srv.stderr_text():
        assert time.monotonic() < deadline, srv.stderr_text()
        time.sleep(0.05)
    p = s_client(srv.ports[1], "-tls1_2", "-no_ticket", "-alpn", "http/1.1", "-sess_in",
                 str(sess), "-ign_eof", stdin=req)
    out = p.stdout.decode(errors="replace")
    assert re.search(r"^Reused, TLSv1\.2", out, re.M), out
    assert "\r\n\r\nOK" in out


def test_ticket_keys_rotate(celerisd, certs, tmp_path):
    srv = celerisd("tls_ticket_rotation: 1s\n" + tls_config(certs), ports=2)
    sess = tmp_path / "t.pem"
    fresh_ticket(srv.ports[1], sess, "-tls1_2")
    time.sleep(1.2)
    # one rotation later the old key still opens its tickets
    assert resumed(srv.ports[1], sess, version="-tls1_2")
    # three keys on the ring: after four rotations the ticket is refused
    for _ in range(4):
        time.sleep(1.1)
        fresh_ticket(srv.ports[1], tmp_path / "other.pem", "-tls1_2")  # drives rotation
    assert not resumed(srv.ports[1], sess, version="-tls1_2")


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_ocsp_stapling(celerisd, tmp_path):
    """A listener with `ocsp:` staples that response: a CA, a server
    certificate it signed, and an OCSP response for it, made offline."""
    d = tmp_path
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Test CA", "-keyout", "ca.key",
            "-out", "ca.crt", cwd=d)
    openssl("req", *ec, "-subj", "/CN=localhost", "-keyout", "srv.key", "-out", "srv.csr", cwd=d)
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "srv.crt", cwd=d)
    serial = openssl("x509", "-in", "srv.crt", "-noout", "-serial", cwd=d).strip().split("=")[1]
    expiry = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() + 2 * 86400))
    (d / "index.txt").write_text(f"V\t{expiry}\t\t{serial}\tunknown\t/CN=localhost\n")
    openssl("ocsp", "-issuer", "ca.crt", "-cert", "srv.crt", "-no_nonce", "-reqout", "req.der",
            cwd=d)
    openssl("ocsp", "-index", "index.txt", "-rsigner", "ca.crt", "-rkey", "ca.key", "-CA",
            "ca.crt", "-reqin", "req.der", "-respout", "resp.der", "-ndays", "1", cwd=d)
    srv = celerisd(f"""listen:
  - "127.0.0.1:{{port}}"
  - {{ address: "127.0.0.1:{{port2}}", tls: {{ cert: {d / 'srv.crt'}, key: {d / 'srv.key'}, ocsp: {d / 'resp.der'} }} }}
routes:
  - path: /bench
    static: {{ body: "OK" }}
""", ports=2)
    p = s_client(srv.ports[1], "-status", "-servername", "localhost")
    out = p.stdout.decode(errors="replace")
    assert "OCSP Response Status: successful" in out, out
    assert "Cert Status: good" in out, out
    # without -status nothing is stapled
    p = s_client(srv.ports[1], "-servername", "localhost")
    assert "OCSP response: no response sent" in p.stdout.decode(errors="replace") or \
        "OCSP Response Status" not in p.stdout.decode(errors="replace")
