"""A raw HTTP/2 peer for the hostile-peer tests: it writes whatever frames it is
told to (built with hyperframe, header blocks with hpack) and reads the
server's frames without judging them.

    a = RawH2(port)                       # preface + SETTINGS sent
    a.send(frames.ping() * 1000)          # bytes, as fast as the socket takes them
    a.read_until(lambda: a.goaway, 5)     # True once it holds
    a.goaway  -> (last_stream_id, error_code, debug) or None
    a.closed  -> the server ended the TCP connection (EOF or reset)

Every socket operation has a deadline; nothing here loops without a bound.
Incoming frames are counted by type; only the interesting ones (SETTINGS,
HEADERS, RST_STREAM, GOAWAY, END_STREAM) are kept.
"""

import select
import socket
import struct
import time

from hpack import Decoder, Encoder
from hpack.hpack import encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and error codes (RFC 9113 section 6 and 7).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, \
    STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, \
    CONNECT_ERROR, ENHANCE_YOUR_CALM, INADEQUATE_SECURITY, HTTP_1_1_REQUIRED = range(14)

ERROR_NAMES = {v: k for k, v in dict(
    NO_ERROR=0, PROTOCOL_ERROR=1, INTERNAL_ERROR=2, FLOW_CONTROL_ERROR=3,
    SETTINGS_TIMEOUT=4, STREAM_CLOSED=5, FRAME_SIZE_ERROR=6, REFUSED_STREAM=7,
    CANCEL=8, COMPRESSION_ERROR=9, CONNECT_ERROR=10, ENHANCE_YOUR_CALM=11,
    INADEQUATE_SECURITY=12, HTTP_1_1_REQUIRED=13).items()}

TYPE_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
              5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE",
              9: "CONTINUATION"}

# SETTINGS identifiers
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, \
    MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)


def err_name(code):
    return ERROR_NAMES.get(code, f"0x{code:x}")


# ---- frame builders (bytes) ----------------------------------------------

def block(headers):
    """A self-contained HPACK header block: a fresh encoder, so it refers to the
    static table only and may be sent any number of times."""
    return Encoder().encode(headers)


# ---- HPACK by hand (RFC 7541), for blocks whose table effects must be exact --

_huffman = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def hp_string(value, huffman=False):
    """A string literal (5.2), optionally Huffman-coded."""
    if isinstance(value, str):
        value = value.encode()
    if huffman:
        value = _huffman.encode(value)
    n = encode_integer(len(value), 7)
    if huffman:
        n[0] |= 0x80
    return bytes(n) + value


def hp_indexed(index):
    """An indexed field (6.1): one byte for indexes below 127."""
    n = encode_integer(index, 7)
    n[0] |= 0x80
    return bytes(n)


def hp_literal(name, value, index=False, huffman=False):
    """A literal field with a literal name (6.2.1 with incremental indexing,
    else 6.2.2 without indexing): self-contained, it refers to no table entry."""
    return (b"\x40" if index else b"\x00") + hp_string(name) + hp_string(value, huffman)


def hp_literal_static_name(name_index, value):
    """A literal without indexing whose name is a static-table entry (6.2.2)."""
    n = encode_integer(name_index, 4)
    return bytes(n) + hp_string(value)


def encode_table_size(size):
    """A dynamic table size update (6.3)."""
    n = encode_integer(size, 5)
    n[0] |= 0x20
    return bytes(n)


def hp_request(path="/small", authority="attacker"):
    """GET PATH over http: static-table references and literals that are not
    indexed, so the dynamic table is untouched."""
    return (hp_indexed(2) + hp_indexed(6) + hp_literal_static_name(1, authority)
            + hp_literal_static_name(4, path))


def header_frames(sid, hblock, end_stream=True, chunk=16384):
    """HBLOCK as one HEADERS and as many CONTINUATION frames as CHUNK needs."""
    parts = [hblock[i:i + chunk] for i in range(0, len(hblock), chunk)] or [b""]
    out = [headers(sid, parts[0], end_stream=end_stream, end_headers=len(parts) == 1)]
    for i, part in enumerate(parts[1:], 2):
        out.append(continuation(sid, part, end_headers=i == len(parts)))
    return b"".join(out)


def request_headers(path="/small", method="GET", authority="attacker", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", authority),
            (":path", path), *extra]


def settings(values=None, ack=False):
    if ack:
        return SettingsFrame(0, flags=["ACK"]).serialize()
    return SettingsFrame(0, settings=dict(values or {})).serialize()


def settings_entries(entries):
    """A SETTINGS frame with exactly these (id, value) entries, repeats allowed."""
    body = b"".join(struct.pack("!HL", i, v) for i, v in entries)
    return struct.pack("!L", len(body))[1:] + bytes([SETTINGS, 0]) + struct.pack("!L", 0) + body


def ping(data=b"\0" * 8, ack=False):
    return PingFrame(0, opaque_data=data, flags=["ACK"] if ack else []).serialize()


def headers(sid, hblock, end_stream=True, end_headers=True, priority=None):
    flags = []
    if end_stream:
        flags.append("END_STREAM")
    if end_headers:
        flags.append("END_HEADERS")
    f = HeadersFrame(sid, data=hblock, flags=flags)
    return f.serialize()


def continuation(sid, fragment, end_headers=False):
    return ContinuationFrame(sid, data=fragment,
                             flags=["END_HEADERS"] if end_headers else []).serialize()


def rst(sid, code=CANCEL):
    return RstStreamFrame(sid, error_code=code).serialize()


def data(sid, payload=b"", end_stream=False):
    return DataFrame(sid, data=payload, flags=["END_STREAM"] if end_stream else []).serialize()


def priority(sid, depends_on=0, weight=15, exclusive=False):
    return PriorityFrame(sid, depends_on=depends_on, stream_weight=weight,
                         exclusive=exclusive).serialize()


def window_update(sid, increment):
    return WindowUpdateFrame(sid, window_increment=increment).serialize()


def raw_frame(ftype, flags, sid, payload=b""):
    """Any frame, byte for byte (hyperframe 6's ExtensionFrame.serialize writes a
    zero length whatever the body)."""
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + \
        sid.to_bytes(4, "big") + payload


def unknown(ftype=0xEE, sid=0, payload=b"x", flags=0):
    """A frame of a type RFC 9113 does not define (to be ignored, section 4.1)."""
    return raw_frame(ftype, flags, sid, payload)


def with_sid(frame, sid):
    """FRAME (bytes) with its stream id replaced: cheap copies of one frame."""
    return frame[:5] + sid.to_bytes(4, "big") + frame[9:]


def request(sid, path="/small", method="GET", end_stream=True, extra=()):
    return headers(sid, block(request_headers(path, method, extra=extra)), end_stream=end_stream)


# ---- the peer ---------------------------------------------------------------

class RawH2:
    def __init__(self, port, host="127.0.0.1", *, local_settings=None, preface=True,
                 ack_settings=True, timeout=5.0, rcvbuf=None):
        self.host, self.port = host, port
        # ACKs only once our own preface is out: an ACK in the middle of a
        # dribbled preface would corrupt it.
        self.ack_settings = ack_settings and preface
        self.timeout = timeout
        self.buf = bytearray()
        self.counts = {}                # frame type -> number received
        self.data_bytes = {}            # stream id -> DATA payload bytes received
        self.ended = set()              # streams the server ended (END_STREAM)
        self.status = {}                # stream id -> :status
        self.resets = {}                # stream id -> RST_STREAM error code
        self.first_reset_at = None
        self.server_settings = None     # dict of the server's first SETTINGS
        self.goaway = None              # (last_stream_id, code, debug)
        self.goaway_at = None
        self.closed = False             # EOF or reset from the server
        self.closed_how = None          # "eof" or "reset"
        self.closed_at = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._hdec = Decoder()
        self._hdec.max_allowed_table_size = 1 << 16
        self._hpending = None           # (stream id, fragments) of an unfinished block
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.t0 = time.monotonic()
        if preface:
            self.send(PREFACE + settings(local_settings or {}))

    # -- plumbing -----------------------------------------------------------

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def fileno(self):
        return self.sock.fileno()

    def _mark_closed(self, how):
        if not self.closed:
            self.closed = True
            self.closed_how = how
            self.closed_at = time.monotonic()

    def send(self, payload, timeout=None):
        """Writes PAYLOAD (reading nothing). Returns the bytes written: fewer than
        len(PAYLOAD) when the server stopped reading until the deadline or closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        view = memoryview(payload)
        off = 0
        while off < len(view):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                break
            _, w, _ = select.select([], [self.sock], [], left)
            if not w:
                break
            try:
                off += self.sock.send(view[off:off + (1 << 18)], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                self._mark_closed("reset")
                break
        self.bytes_out += off
        return off

    def _recv_some(self, wait):
        """One recv, waiting at most WAIT seconds. False when nothing came."""
        if self.closed:
            return False
        r, _, _ = select.select([self.sock], [], [], max(0.0, wait))
        if not r:
            return False
        try:
            chunk = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except ConnectionResetError:
            self._mark_closed("reset")
            return True
        if not chunk:
            self._mark_closed("eof")
            return True
        self.bytes_in += len(chunk)
        self.buf += chunk
        self._parse()
        return True

    def _parse(self):
        buf = self.buf
        pos = 0
        out = []
        while len(buf) - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if len(buf) - pos < 9 + length:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            self._frame(ftype, flags, sid, buf, pos + 9, length, out)
            pos += 9 + length
        del buf[:pos]
        if out:
            self.send(b"".join(out), timeout=1.0)

    def _frame(self, ftype, flags, sid, buf, off, length, out):
        self.counts[ftype] = self.counts.get(ftype, 0) + 1
        if ftype == DATA:
            self.data_bytes[sid] = self.data_bytes.get(sid, 0) + length
            if flags & 0x1:
                self.ended.add(sid)
        elif ftype in (HEADERS, CONTINUATION):
            payload = bytes(buf[off:off + length])
            if ftype == HEADERS:
                if flags & 0x8:  # PADDED
                    pad = payload[0]
                    payload = payload[1:len(payload) - pad]
                if flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                self._hpending = (sid, [payload])
                if flags & 0x1:
                    self.ended.add(sid)
            elif self._hpending:
                self._hpending[1].append(payload)
            if flags & 0x4 and self._hpending:  # END_HEADERS
                hsid, parts = self._hpending
                self._hpending = None
                for name, value in self._hdec.decode(b"".join(parts), raw=True):
                    if name == b":status":
                        self.status.setdefault(hsid, int(value))
        elif ftype == RST_STREAM and length >= 4:
            self.resets[sid] = int.from_bytes(buf[off:off + 4], "big")
            if self.first_reset_at is None:
                self.first_reset_at = time.monotonic()
        elif ftype == SETTINGS and not flags & 0x1:
            if self.server_settings is None:
                self.server_settings = {}
                for i in range(off, off + length - 5, 6):
                    k, v = struct.unpack_from("!HL", buf, i)
                    self.server_settings[k] = v
            if self.ack_settings:
                out.append(settings(ack=True))
        elif ftype == GOAWAY and length >= 8:
            last, code = struct.unpack_from("!LL", buf, off)
            if self.goaway is None:
                self.goaway_at = time.monotonic()
            self.goaway = (last & 0x7FFFFFFF, code, bytes(buf[off + 8:off + length]))

    # -- waiting ------------------------------------------------------------

    def read_until(self, pred, timeout):
        """Reads until PRED() holds, the server closes, or TIMEOUT s pass.
        Returns PRED()."""
        deadline = time.monotonic() + timeout
        while not pred() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._recv_some(left)
        return bool(pred())

    def wait_closed(self, timeout):
        """Reads (handling frames) until the server ends the TCP connection.
        Returns the seconds waited, or None when it is still open."""
        start = time.monotonic()
        self.read_until(lambda: False, timeout)
        return time.monotonic() - start if self.closed else None

    def flood(self, payload, timeout, stop=None):
        """Writes PAYLOAD as fast as the socket takes it while reading what comes
        back, until everything is written or STOP() holds (default: a GOAWAY
        arrived or the server closed) or TIMEOUT s pass. Returns the bytes
        written."""
        stop = stop or (lambda: self.goaway is not None or self.closed)
        deadline = time.monotonic() + timeout
        view = memoryview(payload)
        off = 0
        while off < len(view) and not stop() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, w, _ = select.select([self.sock], [self.sock], [], left)
            if r:
                self._recv_some(0)
            if w and not self.closed:
                try:
                    off += self.sock.send(view[off:off + (1 << 16)], socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    self._mark_closed("reset")
        self.bytes_out += off
        return off

    def flood_batches(self, payload, batch, timeout, stop=None, pause=0.0005):
        """PAYLOAD in pieces of BATCH bytes, reading what the server sent after
        each (so that no single read of the server holds the whole flood)."""
        stop = stop or (lambda: self.goaway is not None or self.closed)
        deadline = time.monotonic() + timeout
        sent = 0
        for off in range(0, len(payload), batch):
            if stop() or self.closed or time.monotonic() > deadline:
                break
            piece = payload[off:off + batch]
            n = self.send(piece, timeout=max(0.05, min(2.0, deadline - time.monotonic())))
            sent += n
            if n < len(piece):
                break
            self.read_until(lambda: False, pause)
        return sent

    def describe(self):
        counts = {TYPE_NAMES.get(k, hex(k)): v for k, v in sorted(self.counts.items())}
        ga = None
        if self.goaway:
            ga = (self.goaway[0], err_name(self.goaway[1]), self.goaway[2][:80])
        return (f"frames in {counts}, goaway={ga}, closed={self.closed_how}, "
                f"bytes out {self.bytes_out}, bytes in {self.bytes_in}, "
                f"resets {len(self.resets)}")
