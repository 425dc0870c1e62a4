"""Unix-socket listeners (`listen: unix:/path`, with `mode` and `owner`): for a
balancer on the same machine. Served by every worker (HTTP/2 and HTTP/1.1); a
stale socket file is replaced, a live one or a non-socket refused; the file
goes away at stop and when a reload drops it."""

import os
import signal
import socket
import stat
import subprocess
import time

import pytest

from support import BINARY, expect_config_error

ROUTES = """workers: 2
routes:
  - path: /a
    static: { body: "A" }
"""


def ucurl(path, *args):
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "--unix-socket", str(path), *args,
                        "http://x/a"], capture_output=True, timeout=20)
    return p.stdout


def test_served_with_mode_and_removed_at_stop(celerisd, tmp_path):
    sock = tmp_path / "h2.sock"
    srv = celerisd(f"""listen:
  - "127.0.0.1:{{port}}"
  - {{ address: "unix:{sock}", mode: "0660" }}
{ROUTES}""")
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    for _ in range(10):  # both workers accept on it
        assert ucurl(sock, "--http2-prior-knowledge") == b"A"
        assert ucurl(sock, "--http1.1") == b"A"
    rc, _ = srv.stop()
    assert rc == 0
    assert not sock.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner(celerisd, tmp_path):
    import grp
    import pwd
    sock = tmp_path / "o.sock"
    group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    celerisd(f"""listen:
  - "127.0.0.1:{{port}}"
  - {{ address: "unix:{sock}", owner: "nobody:{group}" }}
{ROUTES}""")
    st = os.stat(sock)
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid
    assert st.st_gid == grp.getgrnam(group).gr_gid


def test_stale_socket_replaced_live_one_refused(celerisd, tmp_path):
    sock = tmp_path / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.close()  # the file stays: a daemon that died
    celerisd(f'listen: ["127.0.0.1:{{port}}", "unix:{sock}"]\n' + ROUTES)
    assert ucurl(sock, "--http2-prior-knowledge") == b"A"
    # A second daemon on the same path: refused, the first one keeps it.
    cfg = tmp_path / "second.yaml"
    cfg.write_text(f'listen: "unix:{sock}"\n' + ROUTES)
    p = subprocess.run([BINARY, "-c", str(cfg)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1 and "address already in use" in p.stderr, p.stderr
    assert ucurl(sock, "--http2-prior-knowledge") == b"A"


def test_not_a_socket_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'listen: "unix:{path}"\n' + ROUTES)
    p = subprocess.run([BINARY, "-c", str(cfg)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1 and "is not a socket" in p.stderr, p.stderr
    assert path.read_text() == "x"


def test_reload_adds_and_drops(celerisd, tmp_path):
    sock = tmp_path / "r.sock"
    srv = celerisd('listen: "127.0.0.1:{port}"\n' + ROUTES)
    text = srv.config_path.read_text()
    srv.config_path.write_text(text.replace(
        f'listen: "127.0.0.1:{srv.port}"',
        f'listen: ["127.0.0.1:{srv.port}", "unix:{sock}"]'))
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ucurl(sock, "--http2-prior-knowledge") == b"A"
    srv.config_path.write_text(text)
    srv.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sock.exists()
    assert "no longer listening on unix:" in srv.stderr_text()


@pytest.mark.parametrize("entry, msg", [
    ('{ address: "127.0.0.1:1", mode: "0660" }', "mode and owner apply to unix: sockets only"),
    ('{ address: "unix:/tmp/x.sock", mode: "0999" }', "mode must be octal permissions"),
    ('{ address: "unix:/tmp/x.sock", owner: "no-such-user-celeris" }', 'owner: no user'),
    ('{ address: "unix:/tmp/x.sock", owner: "root:no-such-group-celeris" }', 'owner: no group'),
    ('"unix:relative.sock"', "bad unix socket address"),
])
def test_config_errors(tmp_path, entry, msg):
    path = tmp_path / "c.yaml"
    path.write_text(f"listen:\n  - {entry}\nroutes: []\n")
    expect_config_error(path, 2, None, [msg])
