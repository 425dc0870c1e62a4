"""HTTP/2 frames and HPACK, byte for byte, for the tests that talk to celerisd
as a raw peer (tests/conformance, tests/attack; RFC 9113 and RFC 7541).

Frame builders write exactly what they are asked to (a lying length, a
reserved bit, a stream id where none belongs), so malformed frames are as
easy to make as good ones. The HPACK encoder is written out by hand: every
octet of a field block is the test's choice (indexed or literal, Huffman or
not, which table entry), where a library encoder would choose for it.
Reading the server's frames is each suite's own (h2wire.H2Conn judges them,
rawh2.RawH2 counts them).
"""

import struct

from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 section 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
TYPE_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
              5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}

# Flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Error codes (RFC 9113 section 7)
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
CONNECT_ERROR = 0xa
ENHANCE_YOUR_CALM = 0xb
INADEQUATE_SECURITY = 0xc
HTTP_1_1_REQUIRED = 0xd
ERROR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
               4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR",
               7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
               11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}

# Settings (RFC 9113 section 6.5.2)
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

MAX_WINDOW = 2 ** 31 - 1


def ename(code):
    return ERROR_NAMES.get(code, f"0x{code:x}")


def enames(codes):
    return " or ".join(ename(c) for c in codes)


# ---------------------------------------------------------------------------
# Frame building


def raw_frame(ftype, flags, stream_id, payload=b"", length=None):
    """Serializes one frame exactly as asked; LENGTH overrides the real length
    (to lie about it). The stream id is written as given (the reserved bit
    too, when stream_id >= 2**31)."""
    n = len(payload) if length is None else length
    head = struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream_id)
    return head + payload


def settings_payload(pairs):
    """PAIRS: iterable of (identifier, value); duplicates kept, order kept."""
    return b"".join(struct.pack(">HI", k, v) for k, v in pairs)


def settings_frame(pairs=(), ack=False):
    return raw_frame(SETTINGS, ACK if ack else 0, 0, settings_payload(pairs))


def ping_frame(payload=b"\0" * 8, ack=False, stream_id=0):
    return raw_frame(PING, ACK if ack else 0, stream_id, payload)


def window_update_frame(stream_id, increment):
    return raw_frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def rst_stream_frame(stream_id, code):
    return raw_frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def priority_payload(depends_on=0, weight=16, exclusive=False):
    """WEIGHT is the real weight 1..256 (sent as weight-1)."""
    return struct.pack(">IB", depends_on | (0x80000000 if exclusive else 0), weight - 1)


def priority_frame(stream_id, depends_on=0, weight=16, exclusive=False):
    return raw_frame(PRIORITY, 0, stream_id, priority_payload(depends_on, weight, exclusive))


def goaway_frame(last_stream_id=0, code=NO_ERROR, debug=b"", stream_id=0):
    return raw_frame(GOAWAY, 0, stream_id, struct.pack(">II", last_stream_id, code) + debug)


def data_frame(stream_id, data=b"", end_stream=False, pad=None, flags=0):
    """PAD: number of padding octets (PADDED flag set, pad length byte added)."""
    f = flags | (END_STREAM if end_stream else 0)
    if pad is not None:
        return raw_frame(DATA, f | PADDED, stream_id, bytes([pad]) + data + b"\0" * pad)
    return raw_frame(DATA, f, stream_id, data)


def headers_frame(stream_id, block, end_stream=True, end_headers=True, pad=None,
                  priority=None, flags=0):
    """PRIORITY: (depends_on, weight, exclusive) to set the PRIORITY flag."""
    f = flags | (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    payload = block
    if priority is not None:
        f |= PRIORITY_FLAG
        payload = priority_payload(*priority) + payload
    if pad is not None:
        f |= PADDED
        payload = bytes([pad]) + payload + b"\0" * pad
    return raw_frame(HEADERS, f, stream_id, payload)


def continuation_frame(stream_id, block, end_headers=True):
    return raw_frame(CONTINUATION, END_HEADERS if end_headers else 0, stream_id, block)


# ---------------------------------------------------------------------------
# HPACK encoding, by hand (RFC 7541), so that tests control every octet

STATIC = HeaderTable.STATIC_TABLE  # index i+1 -> (name, value)
_huff = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def _b(x):
    return x.encode() if isinstance(x, str) else bytes(x)


def hp_int(value, prefix_bits, first=0):
    """RFC 7541 5.1 integer with an N-bit prefix; FIRST holds the bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7f) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def huffman(s):
    return _huff.encode(_b(s))


def hp_str(s, huff=False):
    """RFC 7541 5.2 string literal."""
    s = _b(s)
    if huff:
        enc = huffman(s)
        return hp_int(len(enc), 7, 0x80) + enc
    return hp_int(len(s), 7) + s


def hp_raw_str(octets, huff_flag):
    """A string literal with exactly these octets (e.g. bad Huffman data)."""
    return hp_int(len(octets), 7, 0x80 if huff_flag else 0) + octets


def hp_indexed(index):
    """6.1 Indexed Header Field."""
    return hp_int(index, 7, 0x80)


_KIND = {"incremental": (6, 0x40), "without": (4, 0x00), "never": (4, 0x10)}


def hp_literal(name, value, kind="without", huff=False, name_index=None):
    """6.2 literal field line. NAME_INDEX: use an indexed name (NAME ignored)."""
    bits, first = _KIND[kind]
    if name_index is not None:
        return hp_int(name_index, bits, first) + hp_str(value, huff)
    return hp_int(0, bits, first) + hp_str(name, huff) + hp_str(value, huff)


def hp_size_update(size):
    """6.3 Dynamic Table Size Update."""
    return hp_int(size, 5, 0x20)


def static_index(name, value=None):
    name, value = _b(name), (None if value is None else _b(value))
    for i, (n, v) in enumerate(STATIC):
        if n == name and (value is None or v == value):
            return i + 1
    return None


def encode_block(headers, kind="without", huff=False):
    """Encodes (name, value) pairs: a full static match as an indexed field,
    else a literal (KIND, default without indexing, so the server's dynamic
    table stays empty) with a static name index when there is one. Names are
    sent exactly as given (no lower-casing)."""
    out = b""
    for name, value in headers:
        full = static_index(name, value)
        if full is not None:
            out += hp_indexed(full)
            continue
        ni = static_index(name)
        out += hp_literal(name, value, kind, huff, name_index=ni)
    return out

