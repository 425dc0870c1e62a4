"""RFC 9113 sections 4.1 (frame format), 4.2 (frame size), 5.5 (extensions),
6.1/6.2 (padding) and the per-type stream-identifier rules of section 6."""

import struct

import pytest

from h2wire import (expect_alive, expect_connection_error, expect_response, open_stream)
from lib.h2frames import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, FRAME_SIZE_ERROR,
                          GOAWAY, HEADERS, PADDED, PING, PRIORITY, PRIORITY_FLAG, PROTOCOL_ERROR,
                          PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE, data_frame,
                          encode_block, headers_frame, priority_payload, raw_frame)

MAX = 16384  # SETTINGS_MAX_FRAME_SIZE the server has not raised (checked below)


def post_headers(c, sid, length, end_stream=False):
    return headers_frame(sid, encode_block(c.req_headers(
        "POST", "/post", [("content-length", str(length))])), end_stream=end_stream)


# ---- 4.1: unknown types, unused flags, reserved bit -----------------------

@pytest.mark.parametrize("ftype", [0x0a, 0x0c, 0x7f, 0xff])
@pytest.mark.parametrize("sid", [0, 1])
def test_unknown_frame_type_ignored(conn, ftype, sid):
    """4.1/5.5: implementations MUST ignore and discard frames of unknown
    types, on any stream (even an idle one). (0x10, PRIORITY_UPDATE, is known:
    see test_priority.py.)"""
    conn.send(raw_frame(ftype, 0xff, sid, b"extension payload"))
    expect_alive(conn)
    r = expect_response(conn, conn.request())
    assert r.status == 200


def test_unknown_frame_type_empty_payload(conn):
    conn.send(raw_frame(0xee, 0, 0, b""))
    expect_alive(conn)


def test_unknown_frame_between_requests_keeps_streams(conn):
    """An extension frame between the HEADERS and DATA of a request (outside
    a field block) is discarded; the request completes."""
    sid = conn.new_sid()
    conn.send(post_headers(conn, sid, 3) + raw_frame(0xf0, 0, sid, b"xx")
              + data_frame(sid, b"abc", end_stream=True))
    assert expect_response(conn, sid).status == 200


def test_ping_unused_flags_ignored(conn):
    """4.1: unused flags MUST be ignored: PING with 0xfe (not ACK) is answered
    with a PING ACK carrying the same payload."""
    conn.send(raw_frame(PING, 0xfe, 0, b"flagsflg"))
    f = conn.wait_for(lambda f: f.type == PING, what="PING ACK")
    assert f.flags & ACK and f.payload == b"flagsflg"


def test_settings_unused_flags_ignored(conn):
    conn.send(raw_frame(SETTINGS, 0xfe, 0, b""))
    f = conn.wait_for(lambda f: f.type == SETTINGS, what="SETTINGS ACK")
    assert f.flags & ACK


def test_headers_unused_flags_ignored(conn):
    """4.1: HEADERS with every unused flag bit (0x02, 0x10, 0x40, 0x80) set."""
    sid = conn.new_sid()
    block = encode_block(conn.req_headers())
    conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS | 0xd2, sid, block))
    r = expect_response(conn, sid)
    assert r.status == 200 and r.body == b"OK"


def test_data_unused_flags_ignored(conn):
    sid = conn.new_sid()
    conn.send(post_headers(conn, sid, 3) + raw_frame(DATA, END_STREAM | 0xf6, sid, b"abc"))
    assert expect_response(conn, sid).status == 200


def test_window_update_unused_flags_ignored(conn):
    conn.send(raw_frame(WINDOW_UPDATE, 0xff, 0, struct.pack(">I", 1000)))
    expect_alive(conn)


def test_reserved_bit_in_stream_id_ignored(conn):
    """4.1: the reserved bit MUST be ignored on receipt: HEADERS on
    0x80000001 is a request on stream 1."""
    block = encode_block(conn.req_headers())
    conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 0x80000001, block))
    r = expect_response(conn, 1)
    assert r.status == 200


def test_reserved_bit_on_stream0_frame_ignored(conn):
    """4.1: a WINDOW_UPDATE for 0x80000000 is for the connection (stream 0)."""
    conn.send(raw_frame(WINDOW_UPDATE, 0, 0x80000000, struct.pack(">I", 100)))
    expect_alive(conn)


# ---- 4.2: frame size --------------------------------------------------------

def test_server_max_frame_size_is_default(conn):
    """The cases below assume the server kept SETTINGS_MAX_FRAME_SIZE at 2^14."""
    assert conn.server_settings.get(0x5, MAX) == MAX


def test_data_frame_of_max_size_accepted(conn):
    """4.2: all implementations MUST be capable of receiving frames up to
    2^14 octets."""
    sid = conn.new_sid()
    conn.send(post_headers(conn, sid, MAX) + data_frame(sid, b"x" * MAX, end_stream=True))
    r = expect_response(conn, sid)
    assert r.status == 200 and r.body == b"posted"


def test_headers_frame_of_max_size_accepted(conn):
    """A HEADERS frame of exactly 2^14 octets (a long header value)."""
    sid = conn.new_sid()
    base = encode_block(conn.req_headers("GET", "/echo"))
    # literal without indexing, new name "x-a": 0x00, len, name, len(2 bytes+), value
    name = b"x-a"
    overhead = 1 + 1 + len(name) + 3  # value length needs a 3-octet integer
    value = b"v" * (MAX - len(base) - overhead)
    from lib.h2frames import hp_literal
    block = base + hp_literal(name, value)
    assert len(block) == MAX
    conn.send(headers_frame(sid, block))
    r = expect_response(conn, sid)
    assert r.status == 200 and value.decode() in r.body.decode()


def test_data_frame_too_large(conn):
    """4.2: a frame over SETTINGS_MAX_FRAME_SIZE MUST draw FRAME_SIZE_ERROR. A
    DATA frame does not carry a field block and is not on stream 0, so 4.2
    allows a stream error or a connection error; the server makes it a
    connection error: GOAWAY(FRAME_SIZE_ERROR), exactly."""
    sid = conn.new_sid()
    conn.send(post_headers(conn, sid, MAX + 1) + data_frame(sid, b"x" * (MAX + 1),
                                                            end_stream=True))
    expect_connection_error(conn, FRAME_SIZE_ERROR, stream=sid)


def test_headers_frame_too_large(conn):
    """4.2: a frame carrying a field block over the limit: connection error
    FRAME_SIZE_ERROR."""
    from lib.h2frames import hp_literal
    block = encode_block(conn.req_headers()) + hp_literal("x-a", "v" * (MAX + 10))
    conn.send(headers_frame(1, block))
    expect_connection_error(conn, FRAME_SIZE_ERROR, stream=1)


def test_continuation_frame_too_large(conn):
    from lib.h2frames import hp_literal
    block = encode_block(conn.req_headers())
    tail = hp_literal("x-a", "v" * (MAX + 10))
    conn.send(headers_frame(1, block, end_headers=False)
              + raw_frame(CONTINUATION, END_HEADERS, 1, tail))
    expect_connection_error(conn, FRAME_SIZE_ERROR, stream=1)


def test_settings_frame_too_large(conn):
    """4.2: SETTINGS over the limit (a multiple of 6): connection error."""
    conn.send(raw_frame(SETTINGS, 0, 0, b"\x00\xf0\x00\x00\x00\x00" * (MAX // 6 + 1)))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


def test_ping_frame_too_large(conn):
    conn.send(raw_frame(PING, 0, 0, b"\0" * (MAX + 1)))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


def test_unknown_frame_too_large_on_stream0(conn):
    """4.2: any frame with stream identifier 0 over the limit is a connection
    error, unknown types included."""
    conn.send(raw_frame(0xf1, 0, 0, b"\0" * (MAX + 1)))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


def test_window_update_frame_too_large(conn):
    conn.send(raw_frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\1" + b"\0" * MAX))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


def test_headers_priority_flag_too_short(conn):
    """4.2: a frame too small to contain mandatory data (PRIORITY flag with 4
    payload octets) is FRAME_SIZE_ERROR; a HEADERS frame makes it a connection
    error."""
    conn.send(raw_frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 1, b"\0\0\0\0"))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


# ---- 6.1/6.2: padding -------------------------------------------------------

def test_data_with_padding(conn):
    """6.1: padding is not content: content-length 5 matches 5 data octets
    sent with 20 octets of padding."""
    sid = conn.new_sid()
    conn.send(post_headers(conn, sid, 5) + data_frame(sid, b"hello", end_stream=True, pad=20))
    assert expect_response(conn, sid).status == 200


def test_data_with_max_padding(conn):
    sid = conn.new_sid()
    conn.send(post_headers(conn, sid, 1) + data_frame(sid, b"z", end_stream=True, pad=255))
    assert expect_response(conn, sid).status == 200


def test_data_all_padding(conn):
    """6.1: pad length = payload length - 1 (no data at all) is legal."""
    sid = conn.new_sid()
    conn.send(post_headers(conn, sid, 0) + data_frame(sid, b"", end_stream=True, pad=10))
    assert expect_response(conn, sid).status == 200


def test_data_zero_pad_length(conn):
    """6.1 note: a Pad Length of 0 is legal (one octet longer frame)."""
    sid = conn.new_sid()
    conn.send(post_headers(conn, sid, 3) + data_frame(sid, b"abc", end_stream=True, pad=0))
    assert expect_response(conn, sid).status == 200


def test_data_pad_length_equals_payload(conn):
    """6.1: padding >= the frame payload length: connection error PROTOCOL_ERROR."""
    sid = open_stream(conn)
    # payload = 1 (pad length) + 4 data; pad length 5 == payload length
    conn.send(raw_frame(DATA, PADDED | END_STREAM, sid, bytes([5]) + b"abcd"))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=sid)


def test_data_pad_length_exceeds_payload(conn):
    sid = open_stream(conn)
    conn.send(raw_frame(DATA, PADDED | END_STREAM, sid, bytes([200]) + b"abcd"))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=sid)


def test_data_padded_flag_empty_payload(conn):
    """PADDED set on an empty DATA frame: no room for the Pad Length field.
    4.2 calls a frame too small for mandatory data a FRAME_SIZE_ERROR and
    6.1 calls bad padding a PROTOCOL_ERROR; 5.4 lets an endpoint report
    either. Either way a connection error (6.1: padding errors are); the
    server reports PROTOCOL_ERROR, exactly."""
    sid = open_stream(conn)
    conn.send(raw_frame(DATA, PADDED | END_STREAM, sid, b""))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=sid)


def test_headers_with_padding(conn):
    """6.2: HEADERS with padding is a normal request."""
    conn.send(headers_frame(1, encode_block(conn.req_headers()), pad=40))
    r = expect_response(conn, 1)
    assert r.status == 200 and r.body == b"OK"


def test_headers_with_padding_and_priority(conn):
    conn.send(headers_frame(1, encode_block(conn.req_headers()), pad=7, priority=(0, 100, False)))
    assert expect_response(conn, 1).status == 200


def test_headers_pad_length_exceeds_payload(conn):
    """6.2: padding >= the payload length: connection error PROTOCOL_ERROR."""
    block = encode_block(conn.req_headers())
    conn.send(raw_frame(HEADERS, PADDED | END_HEADERS | END_STREAM, 1,
                        bytes([len(block) + 1]) + block))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=1)


def test_headers_pad_length_exceeds_payload_with_priority(conn):
    """6.2: with the PRIORITY fields present, padding that leaves no room for
    them is still padding >= payload: connection error PROTOCOL_ERROR (4.2
    would allow FRAME_SIZE_ERROR for a frame too short for its fields; the
    server reports PROTOCOL_ERROR, exactly)."""
    block = encode_block(conn.req_headers())
    payload = bytes([len(block) + 2]) + priority_payload() + block
    conn.send(raw_frame(HEADERS, PADDED | PRIORITY_FLAG | END_HEADERS | END_STREAM, 1, payload))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=1)


def test_data_nonzero_padding(conn):
    """6.1: a receiver is not obligated to verify padding but MAY treat
    non-zero padding as a connection error PROTOCOL_ERROR. Accepted: the
    request succeeds, or GOAWAY(PROTOCOL_ERROR)."""
    sid = conn.new_sid()
    conn.send(post_headers(conn, sid, 3)
              + raw_frame(DATA, PADDED | END_STREAM, sid, bytes([4]) + b"abc" + b"\xff" * 4))
    f = conn.wait_for(lambda f: (f.sid == sid and f.type in (HEADERS, RST_STREAM))
                      or f.type == GOAWAY, what="response or GOAWAY")
    if f.type == GOAWAY:
        assert f.error_code == PROTOCOL_ERROR, f
    else:
        assert f.type == HEADERS and f.status() == 200, f


# ---- section 6: frames that must (not) be on stream 0 -----------------------

@pytest.mark.parametrize("ftype,flags,payload", [
    (DATA, END_STREAM, b"abc"),
    (HEADERS, END_HEADERS | END_STREAM, None),
    (PRIORITY, 0, priority_payload(1)),
    (RST_STREAM, 0, struct.pack(">I", 8)),
    (PUSH_PROMISE, END_HEADERS, b"\0\0\0\2" + b"\x82"),
    (CONTINUATION, END_HEADERS, b"\x82"),
], ids=["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "PUSH_PROMISE", "CONTINUATION"])
def test_stream_frame_on_stream0(conn, ftype, flags, payload):
    """6.1, 6.2, 6.3, 6.4, 6.6, 6.10: these frames MUST be associated with a
    stream; stream identifier 0 is a connection error PROTOCOL_ERROR."""
    if payload is None:
        payload = encode_block(conn.req_headers())
    conn.send(raw_frame(ftype, flags, 0, payload))
    expect_connection_error(conn, PROTOCOL_ERROR)


@pytest.mark.parametrize("frame", [
    raw_frame(SETTINGS, 0, 1, b""),
    raw_frame(SETTINGS, ACK, 1, b""),
    raw_frame(PING, 0, 1, b"\0" * 8),
    raw_frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0)),
], ids=["SETTINGS", "SETTINGS-ACK", "PING", "GOAWAY"])
def test_connection_frame_on_stream(conn, frame):
    """6.5, 6.7, 6.8: SETTINGS, PING and GOAWAY apply to the connection; a
    non-zero stream identifier is a connection error PROTOCOL_ERROR."""
    conn.send(frame)
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_push_promise_from_client(conn):
    """8.4: a client cannot push; a server MUST treat a PUSH_PROMISE as a
    connection error PROTOCOL_ERROR (here on an open stream, well formed)."""
    sid = open_stream(conn)
    block = encode_block(conn.req_headers())
    conn.send(raw_frame(PUSH_PROMISE, END_HEADERS, sid, struct.pack(">I", 2) + block))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_many_frames_in_one_segment(conn):
    """Many frames in one write: 20 complete requests back to back."""
    data = b"".join(headers_frame(2 * i + 1, encode_block(conn.req_headers()))
                    for i in range(20))
    conn.send(data)
    for i in range(20):
        assert expect_response(conn, 2 * i + 1).status == 200


def test_frame_header_split_across_segments(conn):
    """A frame header and payload delivered in three pieces."""
    f = headers_frame(1, encode_block(conn.req_headers()))
    import time
    for part in (f[:4], f[4:11], f[11:]):
        conn.send(part)
        time.sleep(0.01)
    assert expect_response(conn, 1).status == 200


def test_window_update_any_flags_on_stream(conn):
    """Stream-level WINDOW_UPDATE on an open stream with unused flags."""
    sid = open_stream(conn)
    conn.send(raw_frame(WINDOW_UPDATE, 0xff, sid, struct.pack(">I", 10)))
    expect_alive(conn)
    conn.send(data_frame(sid, b"", end_stream=True))
    assert expect_response(conn, sid).status == 200
