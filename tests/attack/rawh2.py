"""A raw HTTP/2 peer for the hostile-peer tests: it writes whatever frames it is
told to and reads the server's frames without judging them.

    a = RawH2(port)                       # preface + SETTINGS sent
    a.send(R.ping() * 1000)               # bytes, as fast as the socket takes them
    a.read_until(lambda: a.goaway, 5)     # True once it holds
    a.goaway  -> (last_stream_id, error_code, debug) or None
    a.closed  -> the server ended the TCP connection (EOF or reset)

Every socket operation has a deadline; nothing here loops without a bound.
Incoming frames are counted by type; only the interesting ones (SETTINGS,
HEADERS, RST_STREAM, GOAWAY, END_STREAM) are kept.

The frames are built by tests/lib/h2frames.py (shared with the conformance
suite); the functions below are the attack tests' short names for them, with
the defaults these tests want (a GET of /small, a PING of 8 octets).
"""

import pathlib
import select
import socket
import struct
import sys
import time

from hpack import Decoder, Encoder

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import lib.h2frames as F  # noqa: E402
from lib.h2frames import (  # noqa: E402,F401 - the constants, as R.<NAME>
    CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, CONTINUATION, DATA, ENABLE_PUSH,
    ENHANCE_YOUR_CALM, ERROR_NAMES, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, GOAWAY,
    HEADER_TABLE_SIZE, HEADERS, HTTP_1_1_REQUIRED, INADEQUATE_SECURITY, INITIAL_WINDOW_SIZE,
    INTERNAL_ERROR,
    MAX_CONCURRENT_STREAMS, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE, NO_ERROR, PING, PREFACE,
    PRIORITY, PROTOCOL_ERROR, PUSH_PROMISE, REFUSED_STREAM, RST_STREAM, SETTINGS,
    SETTINGS_TIMEOUT, STREAM_CLOSED, TYPE_NAMES, WINDOW_UPDATE, raw_frame)

err_name = F.ename


# ---- frame builders (bytes) ----------------------------------------------

def block(headers):
    """A self-contained HPACK header block: a fresh encoder, so it refers to the
    static table only and may be sent any number of times."""
    return Encoder().encode(headers)


# ---- HPACK by hand (RFC 7541), for blocks whose table effects must be exact --

def hp_string(value, huffman=False):
    """A string literal (5.2), optionally Huffman-coded."""
    return F.hp_str(value, huff=huffman)


hp_indexed = F.hp_indexed  # an indexed field (6.1)


def hp_literal(name, value, index=False, huffman=False):
    """A literal field with a literal name (6.2.1 with incremental indexing,
    else 6.2.2 without indexing): self-contained, it refers to no table entry.
    HUFFMAN codes the value (the name stays plain)."""
    return (b"\x40" if index else b"\x00") + F.hp_str(name) + F.hp_str(value, huff=huffman)


def hp_literal_static_name(name_index, value):
    """A literal without indexing whose name is a static-table entry (6.2.2)."""
    return F.hp_literal(None, value, "without", name_index=name_index)


encode_table_size = F.hp_size_update  # a dynamic table size update (6.3)


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
    """SETTINGS with VALUES (a dict), or its ACK."""
    return F.settings_frame((values or {}).items(), ack=ack)


def settings_entries(entries):
    """A SETTINGS frame with exactly these (id, value) entries, repeats allowed."""
    return F.settings_frame(entries)


def ping(data=b"\0" * 8, ack=False):
    """PING; DATA (at most 8 octets) padded with zeros to 8."""
    assert len(data) <= 8, data
    return F.ping_frame(data.ljust(8, b"\0"), ack=ack)


def headers(sid, hblock, end_stream=True, end_headers=True, priority=None):
    """HEADERS carrying HBLOCK (PRIORITY is accepted and not sent)."""
    return F.headers_frame(sid, hblock, end_stream=end_stream, end_headers=end_headers)


def continuation(sid, fragment, end_headers=False):
    return F.continuation_frame(sid, fragment, end_headers=end_headers)


def rst(sid, code=CANCEL):
    return F.rst_stream_frame(sid, code)


def data(sid, payload=b"", end_stream=False):
    return F.data_frame(sid, payload, end_stream=end_stream)


def priority(sid, depends_on=0, weight=15, exclusive=False):
    """PRIORITY; WEIGHT as sent (0-255, the real weight minus one)."""
    return F.priority_frame(sid, depends_on, weight + 1, exclusive)


def window_update(sid, increment):
    """WINDOW_UPDATE; the reserved bit of INCREMENT is cleared."""
    return F.window_update_frame(sid, increment & 0x7FFFFFFF)


def unknown(ftype=0xEE, sid=0, payload=b"x", flags=0):
    """A frame of a type RFC 9113 does not define (to be ignored, section 4.1)."""
    return raw_frame(ftype, flags, sid, payload)


def with_sid(frame, sid):
    """FRAME (bytes) with its stream id replaced: cheap copies of one frame."""
    return frame[:5] + sid.to_bytes(4, "big") + frame[9:]


def request(sid, path="/small", method="GET", end_stream=True, extra=()):
    return headers(sid, block(request_headers(path, method, extra=extra)), end_stream=end_stream)


# ---- the peer ---------------------------------------------------------------

# Every attacker connection not yet closed: the target closes them all before
# it counts the daemon's descriptors.
OPEN = set()


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
        OPEN.add(self)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.t0 = time.monotonic()
        if preface:
            self.send(PREFACE + settings(local_settings or {}))

    # -- plumbing -----------------------------------------------------------

    def close(self):
        OPEN.discard(self)
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
