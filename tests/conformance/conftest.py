"""HTTP/2 conformance suite for celerisd (RFC 9113 sections 3-8, RFC 7541).

Run from the repository root, after `ninja -C build`:

    /usr/bin/python3 -m pytest tests/conformance            # everything (about 10 s)
    /usr/bin/python3 -m pytest tests/conformance -k hpack   # one group
    /usr/bin/python3 -m pytest tests/conformance -k tls     # one transport
    CELERISD=/path/to/celerisd /usr/bin/python3 -m pytest tests/conformance

The binary is $CELERISD, else <repo>/build/celerisd. Debian's python3-pytest,
python3-hyperframe, python3-hpack and the openssl CLI are all it needs (the
h2 state machine is
deliberately not used: the client in h2wire.py sends whatever octets a case
needs, malformed ones included, built with tests/lib/h2frames.py, and parses
what comes back with hyperframe).

How it works:
  * Every case runs twice, once per transport (test ids carry it:
    test_x[tcp], test_y[tls-4]): the session-scoped `transport` fixture is
    parametrized with "tcp" (cleartext, prior knowledge) and "tls" (TLS with
    ALPN h2, the same frames inside TLS records; every connection asserts
    that ALPN selected h2). `server`, `tight_server` and the connection
    fixtures depend on it, so pytest runs the whole suite over cleartext,
    then over TLS.
  * `server` starts one daemon (per configuration, shared by the session and
    both transports) with two listeners on free loopback ports from the
    inline YAML below: a cleartext one, and one with `tls:` carrying a
    self-signed EC certificate made once per session with the openssl CLI.
    tests/lib/daemon.py starts it, and stops it with SIGTERM by PID at the
    end. The fixture is an Endpoint:
    `.port` is the listener of the transport under test and `.connect()`
    opens an H2Conn to it (cases that need their own connection use that,
    never H2Conn(port) directly, so they run over both transports). An
    autouse check fails the test during which the daemon died (a crash on a
    malformed frame is a conformance failure too).
  * `tight_server` is a second daemon with small limits (2 concurrent streams,
    a 4 KiB stream window) for the concurrency and receive-window cases.
  * Each case opens its own connection (`conn` fixture: handshake done;
    `raw`: nothing sent yet) and asserts the exact outcome the RFC
    prescribes with the expect_* helpers of h2wire.py: a stream error
    (RST_STREAM with the code, connection still answering PING), a
    connection error (GOAWAY with the code, then the close), or a response.
    Where the RFC allows several outcomes the test says so and accepts
    exactly those.
  * Every socket read has a deadline (3 s), so no case can hang; over TLS
    the handshake too. Requests carry :scheme "https" over TLS.
  * RFC 9113 5.4.1 lets an endpoint turn any stream error into a connection
    error. The suite asks for the stream error the section prescribes; each
    case where the server (nghttp2) escalates says so, cites the section and
    expects exactly that GOAWAY. Where the RFC gives a choice (two sections
    that disagree, a MAY) the case names it and asserts the one the server
    makes, so that a change of behaviour shows.

Files: h2wire.py (the raw client, expect_*; frame and HPACK builders come
from tests/lib/h2frames.py),
test_preface.py (3.4), test_frames.py (4.1, 4.2, 5.5, padding, stream-0
rules of section 6), test_streams.py (5.1, 5.1.1, 5.1.2), test_settings.py
(6.5), test_ping_goaway.py (6.4, 6.7, 6.8, 7), test_flow_control.py (5.2,
6.9), test_continuation.py (4.3, 6.10), test_priority.py (5.3, 6.3),
test_http_semantics.py (8.1-8.5, 10.5.1), test_hpack.py (RFC 7541, 4.3.1).
"""

import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from h2wire import H2Conn, big_body, tls_client_context  # noqa: E402
from lib.daemon import ServerFactory, require_binary  # noqa: E402

BASE_CONFIG = """\
listen:
  - "127.0.0.1:{port}"
  - address: "127.0.0.1:{port2}"
    tls: { cert: "{cert}", key: "{key}" }
workers: 1
shutdown_timeout: 2s
log: { level: error }
limits:
LIMITS
routes:
  - path: /bench
    static: { body: "OK", content_type: text/plain }
  - path: /post
    methods: [POST, PUT]
    static: { body: "posted", content_type: text/plain }
  - path: /big
    static: { file: big.bin }
  - path: /echo
    methods: [GET, POST]
    json:
      template:
        method: "{{method}}"
        path: "{{path}}"
        a: "{{header.x-a}}"
        b: "{{header.x-b}}"
        c: "{{header.x-c}}"
        cookie: "{{header.cookie}}"
        host: "{{header.host}}"
        ua: "{{header.user-agent}}"
        accept: "{{header.accept}}"
  - path: /query/*rest
    json: { template: { rest: "{{param.rest}}", q: "{{query.q}}" } }
"""

DEFAULT_LIMITS = {"idle_timeout": "30s", "header_timeout": "30s"}
# body_window: a buffered upload's stream keeps the advertised 4,096 (not
# opened wider by WINDOW_UPDATE), so the flow-control cases test that window.
TIGHT_LIMITS = {"idle_timeout": "30s", "header_timeout": "30s",
                "max_concurrent_streams": 2, "initial_window_size": 4096,
                "body_window": 4096, "max_header_list_size": 2048}


TRANSPORTS = ["tcp", "tls"]


class TLSFiles:
    """A self-signed EC (P-256) certificate for 127.0.0.1 and its key, made
    with the openssl CLI in DIRECTORY."""

    def __init__(self, directory):
        d = pathlib.Path(directory)
        self.cert, self.key = d / "cert.pem", d / "key.pem"
        cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
               "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(self.key),
               "-out", str(self.cert), "-days", "7", "-subj", "/CN=127.0.0.1",
               "-addext", "subjectAltName=IP:127.0.0.1"]
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.fail(f"cannot run the openssl CLI to make the test certificate: {e}")
        if p.returncode != 0:
            pytest.fail(f"openssl failed to make the test certificate:\n"
                        f"{p.stderr.decode(errors='replace')}")
        self.context = tls_client_context(str(self.cert))


class Daemon:
    """A daemon on BASE_CONFIG with LIMITS: a cleartext listener (port) and
    a TLS one (tls_port), started by tests/lib/daemon.py."""

    def __init__(self, directory, limits, tls):
        require_binary(wait=30)  # the binary may be mid-relink
        self.dir = pathlib.Path(directory)
        self.limits = limits
        self.tls = tls
        (self.dir / "big.bin").write_bytes(big_body())
        lim = "\n".join(f"  {k}: {v}" for k, v in limits.items())
        text = (BASE_CONFIG.replace("LIMITS", lim)
                .replace("{cert}", str(tls.cert)).replace("{key}", str(tls.key)))
        self.srv = ServerFactory(self.dir)(text, ports=2)
        self.proc = self.srv.proc
        self.port, self.tls_port = self.srv.ports

    def stderr(self):
        try:
            return self.srv.stderr_text()[-4000:]
        except OSError:
            return ""

    def alive(self):
        return self.srv.alive()

    def stop(self):
        return self.srv.stop()[0]


class Endpoint:
    """One daemon seen through one transport: PORT is the listener of that
    transport; connect() opens an H2Conn to it (over TLS when TRANSPORT is
    "tls", with the handshake and the ALPN check done)."""

    def __init__(self, daemon, transport):
        self.daemon = daemon
        self.transport = transport
        self.tls = transport == "tls"
        self.port = daemon.tls_port if self.tls else daemon.port

    def connect(self, **kw):
        return H2Conn(self.port, tls=self.daemon.tls.context if self.tls else None, **kw)

    def __repr__(self):
        return f"<celerisd {self.transport} 127.0.0.1:{self.port}>"


_daemons = {}


@pytest.fixture(scope="session")
def _tls_files(tmp_path_factory):
    return TLSFiles(tmp_path_factory.mktemp("celerisd-tls"))


@pytest.fixture(scope="session", params=TRANSPORTS)
def transport(request):
    """"tcp" or "tls": every case that talks to a daemon runs over both."""
    return request.param


@pytest.fixture(scope="session")
def _daemon_registry(tmp_path_factory, _tls_files):
    def get(name, limits):
        d = _daemons.get(name)
        if d is None:
            d = _daemons[name] = Daemon(tmp_path_factory.mktemp(f"celerisd-{name}"), limits,
                                        _tls_files)
        return d
    yield get
    problems = []
    for name, d in _daemons.items():
        rc = d.stop()
        if rc != 0:
            problems.append(f"celerisd ({name}) exited with {rc} on SIGTERM:\n{d.stderr()}")
    _daemons.clear()
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture(scope="session")
def server(_daemon_registry, transport):
    """The daemon with default limits (128 streams, 64 KiB windows), as an
    Endpoint of the transport under test."""
    return Endpoint(_daemon_registry("default", DEFAULT_LIMITS), transport)


@pytest.fixture(scope="session")
def tight_server(_daemon_registry, transport):
    """The daemon with max_concurrent_streams 2 and initial_window_size 4096 (body_window too),
    as an Endpoint of the transport under test."""
    return Endpoint(_daemon_registry("tight", TIGHT_LIMITS), transport)


@pytest.fixture(autouse=True)
def _daemon_survives():
    """Fails the test during which a daemon died."""
    before = [d for d in _daemons.values() if d.alive()]
    yield
    for d in before:
        if not d.alive():
            pytest.fail(f"celerisd died during this test (exit {d.proc.returncode}):\n"
                        f"{d.stderr()}")


@pytest.fixture
def raw(server):
    """A connected socket (over TLS: handshake done), nothing sent yet."""
    c = server.connect()
    yield c
    c.close()


@pytest.fixture
def conn(server):
    """A connection with the preface and SETTINGS exchanged."""
    c = server.connect()
    c.handshake()
    yield c
    c.close()


@pytest.fixture
def tight_conn(tight_server):
    c = tight_server.connect()
    c.handshake()
    yield c
    c.close()


@pytest.fixture
def hc_remote(server):
    """(conn, sid): stream SID is half-closed (remote) on the server."""
    from h2wire import half_closed_remote
    c, sid = half_closed_remote(server)
    yield c, sid
    c.close()
