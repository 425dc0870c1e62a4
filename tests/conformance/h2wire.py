"""A raw HTTP/2 wire client for the conformance suite.

No protocol state machine on the client side: tests build any frame they like
(well-formed ones with the builders of tests/lib/h2frames.py, malformed ones
byte by byte with raw_frame() there) and read back what the server sends,
parsed with hyperframe and (for field blocks) decoded with hpack.

Every read has a deadline; nothing here can hang. The expect_* functions at
the bottom encode the outcomes of RFC 9113 (stream error, connection error,
a response, a live connection) and fail the test with a description of what
the server did instead.

A connection runs over cleartext TCP (prior knowledge) or, given an
SSLContext (tls_client_context()), over TLS with ALPN "h2": the same octets
then travel inside TLS records, and the helpers see no difference (a TLS
close, clean or not, is a Closed like a TCP FIN or RST).
"""

import os
import select
import socket
import ssl
import time

import pytest
from hpack import Decoder
from hyperframe.frame import Frame

from lib.h2frames import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS,
                          INITIAL_WINDOW_SIZE, PING, PREFACE, PRIORITY, RST_STREAM, SETTINGS,
                          TYPE_NAMES, WINDOW_UPDATE, data_frame, ename, enames, encode_block,
                          headers_frame, ping_frame, settings_frame, window_update_frame)

DEFAULT_TIMEOUT = 3.0

BIG_SIZE = 100 * 1024  # the /big route of the test configuration (conftest.py)


def big_body():
    """The body of /big: a pattern that makes misplaced or lost octets visible."""
    return bytes((i * 7 + i // 251) % 256 for i in range(BIG_SIZE))


def request_headers(port, method="GET", path="/bench", extra=(), scheme="http", authority=None):
    return [(":method", method), (":scheme", scheme),
            (":authority", authority or f"127.0.0.1:{port}"), (":path", path), *extra]


# ---------------------------------------------------------------------------
# Received frames


class Closed(Exception):
    """The server closed the connection."""


class Received:
    """One frame from the server: type, flags, stream id, raw payload, plus the
    hyperframe object and (HEADERS) the decoded field list."""

    def __init__(self, ftype, flags, sid, payload, frame):
        self.type = ftype
        self.flags = flags
        self.sid = sid
        self.payload = payload
        self.frame = frame
        self.headers = None      # list of (str, str) for a complete HEADERS block
        self.block = None        # the raw field block (HEADERS + CONTINUATIONs)

    @property
    def end_stream(self):
        return self.type in (DATA, HEADERS) and bool(self.flags & END_STREAM)

    @property
    def error_code(self):
        return getattr(self.frame, "error_code", None)

    def status(self):
        for k, v in self.headers or ():
            if k == ":status":
                return int(v)
        return None

    def __repr__(self):
        name = TYPE_NAMES.get(self.type, f"type=0x{self.type:x}")
        extra = ""
        if self.type in (RST_STREAM, GOAWAY):
            extra = f" {ename(self.error_code)}"
            if self.type == GOAWAY:
                extra += f" last_stream_id={self.frame.last_stream_id}"
                if self.frame.additional_data:
                    extra += f" debug={bytes(self.frame.additional_data)[:80]!r}"
        elif self.type == HEADERS:
            extra = f" {self.headers}"
        elif self.type == DATA:
            extra = f" len={len(self.payload)}"
        elif self.type == SETTINGS:
            extra = " ACK" if self.flags & ACK else f" {dict(self.frame.settings)}"
        return f"<{name} stream={self.sid} flags=0x{self.flags:x}{extra}>"


class Response:
    def __init__(self, sid):
        self.sid = sid
        self.headers = None
        self.trailers = None
        self.data_frames = []

    @property
    def status(self):
        for k, v in self.headers or ():
            if k == ":status":
                return int(v)
        return None

    @property
    def body(self):
        return b"".join(self.data_frames)

    def header(self, name):
        for k, v in self.headers or ():
            if k == name:
                return v
        return None

    def __repr__(self):
        return f"<Response stream={self.sid} {self.headers} body={self.body[:100]!r}>"


# ---------------------------------------------------------------------------
# The connection

# What ends a TLS connection from the client's point of view: the peer's
# close_notify (SSLZeroReturnError), a TCP FIN without one (SSLEOFError), a
# reset, or a write into a connection the peer has already closed.
_TLS_CLOSED = (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError,
               ConnectionAbortedError, BrokenPipeError)


def tls_client_context(cafile=None):
    """A client context for the TLS transport: ALPN offers "h2" only. CAFILE
    (the suite's self-signed certificate) is trusted and verified; without it
    nothing is verified. Host names are not checked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    return ctx


class H2Conn:
    """One connection to the server speaking raw HTTP/2 frames: cleartext TCP
    (prior knowledge), or TLS when TLS is an SSLContext (the handshake is
    done here, bounded by TIMEOUT, and ALPN must have selected "h2")."""

    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT, tls=None):
        self.port = port
        self.host = host
        self.timeout = timeout
        self.tls = tls is not None
        self.scheme = "https" if self.tls else "http"  # the default :scheme
        self.tls_error = None  # a TLS failure that ended the connection
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=host)
            except (ssl.SSLError, OSError) as e:
                sock.close()
                pytest.fail(f"TLS handshake with {host}:{port} failed: {type(e).__name__}: {e}")
            alpn, version = sock.selected_alpn_protocol(), sock.version()
            if alpn != "h2":
                sock.close()
                pytest.fail(f"TLS connection to {host}:{port} ({version}): ALPN selected "
                            f"{alpn!r}, not 'h2'")
        self.sock = sock
        self.buf = bytearray()
        self.closed = False
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.server_settings = None
        self.frames = []          # everything received, in order (for messages)
        self._pending_block = None  # (first Received, bytearray) while CONTINUATIONs come
        self.auto_ack_settings = True
        self.next_sid = 1
        # Our send windows, as the server's SETTINGS and WINDOW_UPDATEs make
        # them (only upload() spends them; raw DATA frames are not counted).
        self.conn_send_window = 65535
        self.stream_send_windows = {}

    # -- plumbing --

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def closed_note(self):
        """For failure messages: how a TLS connection ended, when not cleanly."""
        if self.tls_error is None:
            return ""
        return f" (TLS: {type(self.tls_error).__name__}: {self.tls_error})"

    def send(self, data):
        """Sends bytes; a peer that has already closed is not an error here
        (the test then sees the close when it reads)."""
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
        except _TLS_CLOSED:
            pass
        except ssl.SSLError as e:
            # Over TLS: the session is unusable (e.g. the peer's close_notify
            # came first); the next read reports the close.
            self.tls_error = self.tls_error or e

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError from None
        except ssl.SSLWantReadError:
            # A TLS record is incomplete (only possible without a timeout,
            # but harmless): wait for more octets, within the deadline.
            select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            return
        except _TLS_CLOSED:
            chunk = b""
        except ssl.SSLError as e:
            # Any other TLS failure (an alert, a bad record) ends the
            # connection too; kept for the failure message.
            self.tls_error = self.tls_error or e
            chunk = b""
        if not chunk:
            self.closed = True
            raise Closed
        self.buf += chunk

    def read_frame(self, timeout=None):
        """Returns the next frame (a Received). Raises TimeoutError when none
        arrives in time and Closed when the server closes the connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if self.closed and len(self.buf) < 9:
                raise Closed
            while len(self.buf) < 9:
                self._fill(deadline)
            length = int.from_bytes(self.buf[:3], "big")
            while len(self.buf) < 9 + length:
                self._fill(deadline)
            head = bytes(self.buf[:9])
            payload = bytes(self.buf[9:9 + length])
            del self.buf[:9 + length]
            frame, _ = Frame.parse_frame_header(memoryview(head))
            frame.parse_body(memoryview(payload))
            r = Received(head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7fffffff,
                         payload, frame)
            self.frames.append(r)
            self._after_receive(r)
            return r

    def _after_receive(self, r):
        if r.type == WINDOW_UPDATE:
            inc = r.frame.window_increment
            if r.sid == 0:
                self.conn_send_window += inc
            elif r.sid in self.stream_send_windows:
                self.stream_send_windows[r.sid] += inc
        if r.type == SETTINGS and not r.flags & ACK:
            if self.server_settings is None:
                self.server_settings = dict(r.frame.settings)
            else:
                self.server_settings.update(r.frame.settings)
            if self.auto_ack_settings:
                self.send(settings_frame(ack=True))
        elif r.type == HEADERS:
            if r.flags & END_HEADERS:
                r.block = bytes(r.frame.data)
                r.headers = self._decode(r.block)
            else:
                self._pending_block = (r, bytearray(r.frame.data))
        elif r.type == CONTINUATION and self._pending_block is not None:
            first, acc = self._pending_block
            acc += r.frame.data
            if r.flags & END_HEADERS:
                self._pending_block = None
                first.block = bytes(acc)
                first.headers = self._decode(first.block)
                # Present the completed block on the CONTINUATION too.
                r.headers = first.headers
                r.block = first.block

    def _decode(self, block):
        try:
            fields = self.decoder.decode(block, raw=True)
        except Exception as e:  # hpack raises several kinds of HPACKError
            pytest.fail(f"the server sent a field block our HPACK decoder rejects "
                        f"({type(e).__name__}: {e}): {block!r}")
        return [(k.decode("latin-1") if isinstance(k, bytes) else k,
                 v.decode("latin-1") if isinstance(v, bytes) else v)
                for k, v in fields]

    # -- connection setup --

    def send_preface(self, settings=()):
        self.send(PREFACE + settings_frame(settings))

    def handshake(self, settings=(), connection_window=None):
        """Sends the preface with SETTINGS, reads the server's SETTINGS (which
        must be its first frame), acknowledges it and waits for the ACK of
        ours. Returns the server's settings."""
        self.send_preface(settings)
        if connection_window:
            self.send(window_update_frame(0, connection_window))
        first = self.read_frame()
        assert first.type == SETTINGS and not first.flags & ACK and first.sid == 0, \
            f"the server's first frame must be a (non-ACK) SETTINGS frame on stream 0, got {first}"
        self.wait_for(lambda f: f.type == SETTINGS and f.flags & ACK, what="SETTINGS ACK")
        return self.server_settings

    def wait_for(self, pred, what="frame", timeout=None):
        """Reads until a frame satisfies PRED; returns (frame, frames skipped).
        Fails the test on timeout or close."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        seen = []
        while True:
            try:
                f = self.read_frame(max(0.0, deadline - time.monotonic()) or 0.001)
            except TimeoutError:
                pytest.fail(f"timed out waiting for {what}; received meanwhile: {seen}")
            except Closed:
                pytest.fail(f"connection closed{self.closed_note()} while waiting for {what}; "
                            f"received: {seen}")
            if pred(f):
                return f
            seen.append(f)

    # -- sending requests --

    def new_sid(self):
        sid = self.next_sid
        self.next_sid += 2
        return sid

    def req_headers(self, method="GET", path="/bench", extra=(), **kw):
        kw.setdefault("scheme", self.scheme)
        return request_headers(self.port, method, path, extra, **kw)

    def request(self, method="GET", path="/bench", extra=(), body=None, sid=None,
                end_stream=True):
        """Sends a request (HEADERS, then one DATA when BODY is given). Returns
        the stream id."""
        sid = sid or self.new_sid()
        block = encode_block(self.req_headers(method, path, extra))
        if body is None:
            self.send(headers_frame(sid, block, end_stream=end_stream))
        else:
            self.send(headers_frame(sid, block, end_stream=False)
                      + data_frame(sid, body, end_stream=end_stream))
        return sid

    def upload(self, sid, body, end_stream=True, timeout=None):
        """Sends BODY on SID within the server's flow-control windows, reading
        its WINDOW_UPDATEs as needed. Fails the test when the windows stay
        shut until the deadline (a server that never credits data back)."""
        iws = (self.server_settings or {}).get(INITIAL_WINDOW_SIZE, 65535)
        self.stream_send_windows.setdefault(sid, iws)
        deadline = time.monotonic() + (timeout or self.timeout)
        off = 0
        while off < len(body):
            n = min(self.conn_send_window, self.stream_send_windows[sid], 16384, len(body) - off)
            if n <= 0:
                try:
                    f = self.read_frame(max(0.001, deadline - time.monotonic()))
                except TimeoutError:
                    pytest.fail(f"upload stalled after {off} of {len(body)} octets: the server "
                                f"sent no WINDOW_UPDATE (connection window "
                                f"{self.conn_send_window}, stream window "
                                f"{self.stream_send_windows[sid]})")
                except Closed:
                    pytest.fail(f"connection closed{self.closed_note()} during the upload "
                                f"({off} octets sent)")
                if f.type in (RST_STREAM, GOAWAY) and f.sid in (0, sid):
                    pytest.fail(f"upload interrupted by {f}")
                continue
            self.conn_send_window -= n
            self.stream_send_windows[sid] -= n
            last = end_stream and off + n == len(body)
            self.send(data_frame(sid, body[off:off + n], end_stream=last))
            off += n
        if end_stream and not body:
            self.send(data_frame(sid, b"", end_stream=True))

    def send_headers(self, sid, headers, end_stream=True, **kw):
        self.send(headers_frame(sid, encode_block(headers), end_stream=end_stream, **kw))


# ---------------------------------------------------------------------------
# Expected outcomes


def _fail(what_expected, got, frames):
    pytest.fail(f"expected {what_expected}; got {got}\nframes received: {frames}")


def expect_connection_error(c, *codes, allow_bare_close=False, stream=None):
    """RFC 9113 5.4.1: a GOAWAY carrying one of CODES, then the server closes
    the TCP connection. A RST_STREAM first, or a response on STREAM, fails.
    ALLOW_BARE_CLOSE: the RFC lets this case omit the GOAWAY (3.4). Returns
    the GOAWAY frame (or None after a bare close)."""
    want = f"connection error {enames(codes)} (GOAWAY, then close)"
    seen = []
    deadline = time.monotonic() + c.timeout
    while True:
        try:
            f = c.read_frame(max(0.001, deadline - time.monotonic()))
        except TimeoutError:
            _fail(want, "no GOAWAY and no close before the timeout (the connection stayed open)",
                  seen)
        except Closed:
            if c.buf:
                _fail(want, f"{len(c.buf)} octets that are not an HTTP/2 frame, then the close: "
                      f"{bytes(c.buf[:80])!r}", seen)
            if allow_bare_close:
                return None
            _fail(want, f"the connection was closed{c.closed_note()} without a GOAWAY frame", seen)
        seen.append(f)
        if f.type == RST_STREAM:
            _fail(want, f"a stream error instead: {f}", seen)
        if f.type == HEADERS and stream is not None and f.sid == stream and f.status() \
                and 200 <= f.status() < 300:
            _fail(want, f"a successful response on stream {stream}: {f}", seen)
        if f.type == GOAWAY:
            goaway = f
            break
    assert goaway.error_code in codes, \
        f"expected GOAWAY with {enames(codes)}, got {goaway}; frames: {seen}"
    # After a GOAWAY for an error the server MUST close the connection.
    try:
        while True:
            f = c.read_frame()
            seen.append(f)
            assert f.type != HEADERS or f.sid != stream, \
                f"response on stream {stream} after GOAWAY: {f}"
    except Closed:
        pass
    except TimeoutError:
        pytest.fail(f"server sent {goaway} but did not close the connection within "
                    f"{c.timeout}s (RFC 9113 5.4.1: it MUST close it)")
    return goaway


def expect_stream_error(c, sid, *codes, allow_response=False):
    """RFC 9113 5.4.2: RST_STREAM on SID with one of CODES, and the connection
    stays usable (checked with a PING round trip). A GOAWAY or close fails.
    ALLOW_RESPONSE: a non-2xx response may come first (8.1.1 lets a server
    answer a malformed request before resetting it); a 2xx always fails."""
    want = f"stream error {enames(codes)} (RST_STREAM on stream {sid})"
    seen = []
    deadline = time.monotonic() + c.timeout
    while True:
        try:
            f = c.read_frame(max(0.001, deadline - time.monotonic()))
        except TimeoutError:
            _fail(want, "nothing before the timeout", seen)
        except Closed:
            _fail(want, f"the connection was closed{c.closed_note()}", seen)
        seen.append(f)
        if f.type == GOAWAY:
            _fail(want, f"a connection error instead: {f} (RFC 9113 5.4.1 lets an endpoint "
                  f"escalate a stream error to a connection error; a case where the server "
                  f"does so says it and expects the connection error)", seen)
        if f.type == HEADERS and f.sid == sid and f.headers is not None:
            st = f.status()
            if st is not None and (not allow_response or 200 <= st < 300):
                _fail(want, f"a response with :status {st}", seen)
        if f.type == RST_STREAM and f.sid == sid:
            assert f.error_code in codes, f"expected RST_STREAM {enames(codes)}, got {f}"
            break
    expect_alive(c)
    return f


def expect_alive(c, payload=None):
    """Sends a PING and waits for its ACK (same payload). Fails on GOAWAY,
    close or timeout. Returns the frames that arrived before the ACK."""
    payload = payload or os.urandom(8)
    c.send(ping_frame(payload))
    seen = []
    deadline = time.monotonic() + c.timeout
    while True:
        try:
            f = c.read_frame(max(0.001, deadline - time.monotonic()))
        except TimeoutError:
            _fail("a PING ACK (connection alive)", "no PING ACK before the timeout", seen)
        except Closed:
            _fail("a PING ACK (connection alive)", f"the connection was closed{c.closed_note()}",
                  seen)
        if f.type == GOAWAY:
            _fail("a PING ACK (connection alive)", f"GOAWAY: {f}", seen)
        if f.type == PING and f.flags & ACK and f.payload == payload:
            return seen
        seen.append(f)


def expect_response(c, sid, window_updates=True, timeout=None):
    """Reads until stream SID ends; returns a Response. Frames of SID that
    were already read (while waiting for another stream) count too. Fails on
    RST_STREAM for SID, GOAWAY, close or timeout. WINDOW_UPDATES: give back
    the window for every DATA frame (stream and connection) so large bodies
    flow."""
    r = Response(sid)
    seen = []
    deadline = time.monotonic() + (timeout or c.timeout)
    backlog = [f for f in c.frames if f.sid == sid]
    while True:
        if backlog:
            f = backlog.pop(0)
        else:
            try:
                f = c.read_frame(max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                _fail(f"a complete response on stream {sid}", "timeout", seen)
            except Closed:
                _fail(f"a complete response on stream {sid}",
                      f"the connection was closed{c.closed_note()}",
                      seen)
        seen.append(f)
        if f.type == GOAWAY:
            _fail(f"a response on stream {sid}", f"GOAWAY {f}", seen)
        if f.sid != sid:
            continue
        if f.type == RST_STREAM:
            _fail(f"a response on stream {sid}", f"RST_STREAM {f}", seen)
        if f.type in (HEADERS, CONTINUATION) and f.headers is not None:
            if r.headers is None:
                r.headers = f.headers
            else:
                r.trailers = f.headers
        if f.type == DATA:
            r.data_frames.append(bytes(f.frame.data))
            if window_updates and len(f.payload):
                c.send(window_update_frame(sid, len(f.payload))
                       + window_update_frame(0, len(f.payload)))
        # END_STREAM on a HEADERS counts once its block is complete.
        if f.type == DATA and f.end_stream:
            return r
        if f.type in (HEADERS, CONTINUATION) and f.headers is not None:
            first = f if f.type == HEADERS else _block_start(c, f)
            if first is not None and first.flags & END_STREAM:
                return r


def _block_start(c, cont):
    i = c.frames.index(cont)
    for f in reversed(c.frames[:i]):
        if f.type == HEADERS and f.sid == cont.sid:
            return f
    return None


def expect_no_frames_on(c, sid):
    """PING round trip; fails if any frame other than PRIORITY/WINDOW_UPDATE
    arrived on SID meanwhile."""
    seen = expect_alive(c)
    bad = [f for f in seen if f.sid == sid and f.type not in (PRIORITY, WINDOW_UPDATE)]
    assert not bad, f"server sent frames on stream {sid}: {bad}"
    return seen


# ---------------------------------------------------------------------------
# Stream set-ups shared by several files


def open_stream(c, path="/post", method="POST", extra=()):
    """Opens a stream that stays "open": request HEADERS without END_STREAM
    (the server waits for the body). Returns the stream id."""
    sid = c.new_sid()
    c.send_headers(sid, c.req_headers(method, path, extra), end_stream=False)
    return sid


def half_closed_remote(server, path="/big"):
    """A connection (from SERVER.connect(), see conftest.py) whose stream 1 is
    "half-closed (remote)" on the server: the request is complete, the
    client's stream window is 0, so the server has sent the response HEADERS
    and waits to send DATA. Returns (conn, 1)."""
    c = server.connect()
    c.handshake([(INITIAL_WINDOW_SIZE, 0)])
    sid = c.request(path=path)
    c.wait_for(lambda f: f.type == HEADERS and f.sid == sid, what=f"response HEADERS on {sid}")
    return c, sid


def closed_stream(c, path="/bench"):
    """Runs one complete request on C; the stream is then "closed". Returns its id."""
    sid = c.request(path=path)
    expect_response(c, sid)
    return sid

