"""A small blocking HTTP/2 client (h2c, prior knowledge) for the integration tests.

Built on Python h2 (Debian's python3-h2 4.1). One socket, no threads: every
call sends what h2 queued and then reads from the socket until the condition it
waits for holds, or raises TimeoutError when its deadline passes.

    with H2Client("127.0.0.1", port) as c:
        r = c.request("GET", "/json")
        assert r.status == 200 and r.json() == {...}
        rs = c.many([("GET", "/a"), ("GET", "/b")])   # concurrent streams

Slow readers: H2Client(..., auto_ack=False) never acknowledges received DATA,
so the server's send window is not widened; open_window() acknowledges
everything read so far and switches to acknowledging as data arrives.
"""

import json
import socket
import time

import h2.config
import h2.errors
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import ConnectionState
from h2.settings import SettingCodes

DEFAULT_TIMEOUT = 10.0


class ConnectionClosed(Exception):
    """The server closed the TCP connection while we were still waiting."""


class Response:
    """What one stream brought back."""

    def __init__(self, stream_id):
        self.stream_id = stream_id
        self.status = None          # int, from the final :status
        self.headers = []           # [(name, value)] without pseudo-headers, in order
        self.informational = []     # header lists of 1xx responses
        self.trailers = None
        self.body_parts = []
        self.ended = False          # END_STREAM seen
        self.reset = None           # error code (int) when the server sent RST_STREAM

    @property
    def body(self):
        return b"".join(self.body_parts)

    @property
    def done(self):
        return self.ended or self.reset is not None

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        body = self.body
        shown = body[:200] + (b"..." if len(body) > 200 else b"")
        return (f"<Response stream={self.stream_id} status={self.status} ended={self.ended} "
                f"reset={self.reset} headers={self.headers} body({len(body)})={shown!r}>")


class _Connection(h2.connection.H2Connection):
    """H2Connection that keeps working after a GOAWAY.

    h2 4.1 moves the whole connection to CLOSED on a received GOAWAY and then
    rejects any further frame, but RFC 9113 section 6.8 lets streams up to the
    GOAWAY's last_stream_id run to completion. Graceful-shutdown tests need
    exactly that, so the connection state is put back after the GOAWAY event
    has been generated.
    """

    def _receive_goaway_frame(self, frame):
        before = self.state_machine.state
        frames, events = super()._receive_goaway_frame(frame)
        if before in (ConnectionState.CLIENT_OPEN, ConnectionState.IDLE):
            self.state_machine.state = before
        return frames, events


class H2Client:
    def __init__(self, host, port, *, timeout=DEFAULT_TIMEOUT, initial_window_size=None,
                 connection_window=None, auto_ack=True, max_frame_size=None,
                 authority=None, wait_settings=True):
        """Connects, sends the preface and SETTINGS and (by default) waits for the
        server's SETTINGS.

        initial_window_size: SETTINGS_INITIAL_WINDOW_SIZE we announce (per stream),
            default 65,535 as in the protocol.
        connection_window: widen the connection-level window to this size with a
            WINDOW_UPDATE on stream 0 (default: leave it at 65,535).
        auto_ack: acknowledge DATA as it arrives (widening the windows again).
        """
        self.host = host
        self.port = port
        self.timeout = timeout
        self.auto_ack = auto_ack
        self.authority = authority or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        self.responses = {}
        self.goaway = None              # h2.events.ConnectionTerminated once received
        self.goaway_at = None           # time.monotonic() when it arrived
        self.eof = False                # the server closed the TCP connection
        self.remote_settings_received = False
        self.settings_acked = False
        self.events = []                # every h2 event, in order (for debugging)
        self._unacked = []              # (stream_id, flow-controlled length) not acked yet

        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding="utf-8",
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = _Connection(config=config)
        initial = {
            SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 20,
        }
        if initial_window_size is not None:
            initial[SettingCodes.INITIAL_WINDOW_SIZE] = initial_window_size
        if max_frame_size is not None:
            initial[SettingCodes.MAX_FRAME_SIZE] = max_frame_size
        # Given as initial values, so they are in force for our own bookkeeping
        # from the first stream on (an update_settings() would only apply after
        # the server's ACK).
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values=initial)
        self.conn.max_inbound_frame_size = self.conn.local_settings.max_frame_size
        self.conn.initiate_connection()
        if connection_window is not None and connection_window > 65535:
            self.conn.increment_flow_control_window(connection_window - 65535)
        self._flush()
        if wait_settings:
            self.wait_for(lambda: self.remote_settings_received, what="server SETTINGS")

    # -- plumbing ---------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            if not self.eof:
                self.conn.close_connection()
                self._flush()
        except Exception:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _flush(self):
        data = self.conn.data_to_send()
        if data and not self.eof:
            try:
                self.sock.settimeout(self.timeout)
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                self.eof = True

    def _response(self, stream_id):
        r = self.responses.get(stream_id)
        if r is None:
            r = self.responses[stream_id] = Response(stream_id)
        return r

    def _handle(self, ev):
        self.events.append(ev)
        if isinstance(ev, h2.events.ResponseReceived):
            r = self._response(ev.stream_id)
            for k, v in ev.headers:
                if k == ":status":
                    r.status = int(v)
                elif not k.startswith(":"):
                    r.headers.append((k, v))
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            self._response(ev.stream_id).informational.append(list(ev.headers))
        elif isinstance(ev, h2.events.DataReceived):
            self._response(ev.stream_id).body_parts.append(ev.data)
            if self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            else:
                self._unacked.append((ev.stream_id, ev.flow_controlled_length))
        elif isinstance(ev, h2.events.TrailersReceived):
            self._response(ev.stream_id).trailers = list(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            self._response(ev.stream_id).ended = True
        elif isinstance(ev, h2.events.StreamReset):
            self._response(ev.stream_id).reset = int(ev.error_code)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            if self.goaway is None:
                self.goaway_at = time.monotonic()
            self.goaway = ev
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.remote_settings_received = True
        elif isinstance(ev, h2.events.SettingsAcknowledged):
            self.settings_acked = True

    def pump(self, deadline):
        """Reads once from the socket (waiting at most until DEADLINE) and handles
        what came. Returns False once the server has closed the connection."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("no data from the server before the deadline") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        for ev in self.conn.receive_data(data):
            self._handle(ev)
        self._flush()
        return True

    def wait_for(self, predicate, timeout=None, what="condition"):
        """Reads until PREDICATE() is true. TimeoutError when it is not true by the
        deadline, ConnectionClosed when the server closes the connection first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            try:
                alive = self.pump(deadline)
            except TimeoutError:
                raise TimeoutError(f"timed out waiting for {what}; responses: "
                                   f"{list(self.responses.values())}") from None
            if not alive and not predicate():
                raise ConnectionClosed(f"server closed the connection while waiting for "
                                       f"{what}; goaway={self.goaway}; responses: "
                                       f"{list(self.responses.values())}")

    def wait_closed(self, timeout=None):
        """Reads (and handles frames) until the server closes the TCP connection.
        Returns the number of seconds that took; TimeoutError if it does not."""
        start = time.monotonic()
        deadline = start + (self.timeout if timeout is None else timeout)
        while self.pump(deadline):
            pass
        return time.monotonic() - start

    # -- requests ---------------------------------------------------------

    def send_request(self, method, path, headers=(), body=b"", end_stream=True,
                     authority=None):
        """Opens a stream with a request. Returns its stream id. The body (if any)
        is sent within flow control, reading from the server meanwhile."""
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "http"),
                (":authority", authority or self.authority), (":path", path)]
        hdrs.extend(headers)
        self.responses[sid] = Response(sid)
        self.conn.send_headers(sid, hdrs, end_stream=(end_stream and not body))
        self._flush()
        if body:
            self.send_body(sid, body, end_stream=end_stream)
        return sid

    def reset_stream(self, stream_id, error_code=None):
        """Sends RST_STREAM (CANCEL by default) for one of our streams."""
        if error_code is None:
            error_code = h2.errors.ErrorCodes.CANCEL
        self.conn.reset_stream(stream_id, error_code)
        self._flush()

    def send_body(self, stream_id, data, end_stream=True, timeout=None):
        """Sends DATA on STREAM_ID as the server's windows allow. Returns True when
        everything was sent, False when the stream was answered or reset first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        view = memoryview(data)
        off = 0
        r = self._response(stream_id)
        while off < len(data):
            if r.done:
                return False
            try:
                window = self.conn.local_flow_control_window(stream_id)
            except h2.exceptions.StreamClosedError:
                return False
            n = min(window, self.conn.max_outbound_frame_size, len(data) - off)
            if n <= 0:
                if not self.pump(deadline):
                    raise ConnectionClosed("server closed the connection during a request body")
                continue
            last = end_stream and off + n == len(data)
            try:
                self.conn.send_data(stream_id, bytes(view[off:off + n]), end_stream=last)
            except h2.exceptions.StreamClosedError:
                return False
            off += n
            self._flush()
        if not data and end_stream:
            self.conn.end_stream(stream_id)
            self._flush()
        return True

    def response(self, stream_id, timeout=None):
        """Waits for STREAM_ID to end (or be reset) and returns its Response."""
        r = self._response(stream_id)
        self.wait_for(lambda: r.done, timeout, what=f"stream {stream_id}")
        return r

    def request(self, method, path, headers=(), body=b"", timeout=None):
        sid = self.send_request(method, path, headers, body)
        return self.response(sid, timeout)

    def get(self, path, headers=(), timeout=None):
        return self.request("GET", path, headers, timeout=timeout)

    def many(self, requests, timeout=None):
        """Opens one stream per request, all before reading any answer, then waits
        for all of them. Each request is a path, or a tuple (method, path[,
        headers[, body]]). Returns the Responses in request order."""
        sids = []
        for req in requests:
            if isinstance(req, str):
                req = ("GET", req)
            method, path = req[0], req[1]
            headers = req[2] if len(req) > 2 else ()
            body = req[3] if len(req) > 3 else b""
            sid = self.conn.get_next_available_stream_id()
            hdrs = [(":method", method), (":scheme", "http"),
                    (":authority", self.authority), (":path", path)]
            hdrs.extend(headers)
            self.responses[sid] = Response(sid)
            self.conn.send_headers(sid, hdrs, end_stream=not body)
            if body:
                self.conn.send_data(sid, body, end_stream=True)
            sids.append(sid)
        self._flush()
        rs = [self.responses[s] for s in sids]
        self.wait_for(lambda: all(r.done for r in rs), timeout,
                      what=f"{len(rs)} concurrent streams")
        return rs

    # -- flow control -----------------------------------------------------

    def unacked_bytes(self):
        return sum(n for _, n in self._unacked)

    def open_window(self):
        """Acknowledges all DATA read so far and from now on acknowledges as it
        arrives, so the server may send on."""
        self.auto_ack = True
        pending, self._unacked = self._unacked, []
        for sid, n in pending:
            self.conn.acknowledge_received_data(n, sid)
        self._flush()

    def remote_setting(self, code):
        return self.conn.remote_settings.get(code)
