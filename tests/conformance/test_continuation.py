"""RFC 9113 sections 4.3 (field blocks are contiguous) and 6.10
(CONTINUATION)."""


import pytest

from h2wire import (expect_connection_error, expect_response, open_stream)
from lib.h2frames import (GOAWAY, HEADERS, PROTOCOL_ERROR, RST_STREAM, continuation_frame,
                          data_frame, encode_block, goaway_frame, headers_frame, hp_literal,
                          ping_frame, priority_frame, raw_frame, rst_stream_frame, settings_frame,
                          window_update_frame)


def split(block, n):
    """BLOCK cut into N nearly equal fragments (some may be empty)."""
    size = max(1, -(-len(block) // n))
    return [block[i:i + size] for i in range(0, len(block), size)] or [b""]


def echo_block(c, a="alpha"):
    return encode_block(c.req_headers("GET", "/echo", [("x-a", a)]))


def test_headers_and_one_continuation(conn):
    """6.10: a field block split over HEADERS and one CONTINUATION."""
    block = echo_block(conn)
    p1, p2 = block[:10], block[10:]
    conn.send(headers_frame(1, p1, end_headers=False) + continuation_frame(1, p2))
    r = expect_response(conn, 1)
    assert r.status == 200 and b'"a":"alpha"' in r.body


def test_several_continuations(conn):
    """6.10: any number of CONTINUATION frames may follow; here six."""
    block = echo_block(conn, "several")
    parts = split(block, 7)
    frames = headers_frame(1, parts[0], end_headers=False)
    for i, part in enumerate(parts[1:], 1):
        frames += continuation_frame(1, part, end_headers=(i == len(parts) - 1))
    conn.send(frames)
    r = expect_response(conn, 1)
    assert r.status == 200 and b'"a":"several"' in r.body


def test_continuation_flood(conn):
    """One small field block in 64 one-octet CONTINUATION frames. 6.10 allows
    any number, and 10.5 lets a server treat such traffic as abusive
    (ENHANCE_YOUR_CALM, or the generic PROTOCOL_ERROR, 5.4). Accepted: the
    request is served, or GOAWAY with one of those codes before the close.
    Closing without a GOAWAY fails (5.4.1/6.8: SHOULD send GOAWAY first)."""
    block = echo_block(conn, "f" * 40)
    frames = headers_frame(1, block[:len(block) - 64], end_headers=False)
    tail = block[len(block) - 64:]
    for i in range(64):
        frames += continuation_frame(1, tail[i:i + 1], end_headers=(i == 63))
    conn.send(frames)
    from lib.h2frames import ENHANCE_YOUR_CALM
    try:
        f = conn.wait_for(lambda f: f.type == GOAWAY
                          or (f.sid == 1 and f.type in (HEADERS, RST_STREAM)),
                          what="response or GOAWAY")
    except BaseException:
        if conn.closed:
            pytest.fail("the server closed the connection without a GOAWAY")
        raise
    if f.type == GOAWAY:
        assert f.error_code in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR), f
    else:
        assert f.type == HEADERS and f.status() == 200, f


def test_empty_continuations(conn):
    """Empty fragments are legal fragments."""
    block = echo_block(conn)
    conn.send(headers_frame(1, block, end_headers=False) + continuation_frame(1, b"", False)
              + continuation_frame(1, b"", True))
    assert expect_response(conn, 1).status == 200


def test_empty_headers_then_continuation(conn):
    block = echo_block(conn)
    conn.send(headers_frame(1, b"", end_headers=False) + continuation_frame(1, block))
    assert expect_response(conn, 1).status == 200


def test_end_stream_on_headers_with_continuation(conn):
    """6.2: END_STREAM on the HEADERS, the block continues in CONTINUATION:
    the request ends with the block."""
    block = echo_block(conn)
    conn.send(headers_frame(1, block[:5], end_stream=True, end_headers=False)
              + continuation_frame(1, block[5:]))
    assert expect_response(conn, 1).status == 200


def test_split_inside_a_literal(conn):
    """Fragment boundaries are arbitrary, even inside a string literal."""
    base = encode_block(conn.req_headers("GET", "/echo"))
    lit = hp_literal("x-b", "split-value-1234567890")
    block = base + lit
    cut = len(base) + 6  # inside the value
    conn.send(headers_frame(1, block[:cut], end_headers=False)
              + continuation_frame(1, block[cut:]))
    r = expect_response(conn, 1)
    assert b'"b":"split-value-1234567890"' in r.body


def test_padded_headers_with_continuation(conn):
    block = echo_block(conn)
    conn.send(headers_frame(1, block[:4], end_headers=False, pad=9)
              + continuation_frame(1, block[4:]))
    assert expect_response(conn, 1).status == 200


def test_trailers_with_continuation(conn):
    """A trailer section split over HEADERS and CONTINUATION."""
    sid = open_stream(conn)
    tb = encode_block([("x-trailer", "one"), ("x-trailer-2", "two")])
    conn.send(data_frame(sid, b"abc") + headers_frame(sid, tb[:3], end_headers=False)
              + continuation_frame(sid, tb[3:]))
    assert expect_response(conn, sid).status == 200


# ---- frames interleaved in a field block: connection error PROTOCOL_ERROR ---

INTERLEAVED = {
    "DATA-same-stream": lambda c: data_frame(1, b"x"),
    "DATA-other-stream": lambda c: data_frame(3, b"x"),
    "HEADERS-other-stream": lambda c: headers_frame(3, echo_block(c)),
    "HEADERS-same-stream": lambda c: headers_frame(1, echo_block(c)),
    "PRIORITY-same-stream": lambda c: priority_frame(1, 0, 16),
    "PRIORITY-other-stream": lambda c: priority_frame(3, 0, 16),
    "RST_STREAM": lambda c: rst_stream_frame(1, 8),
    "SETTINGS": lambda c: settings_frame(),
    "SETTINGS-ACK": lambda c: settings_frame(ack=True),
    "PING": lambda c: ping_frame(b"interlvd"),
    "GOAWAY": lambda c: goaway_frame(0, 0),
    "WINDOW_UPDATE-connection": lambda c: window_update_frame(0, 100),
    "WINDOW_UPDATE-stream": lambda c: window_update_frame(1, 100),
    "CONTINUATION-other-stream": lambda c: continuation_frame(3, b"\x82"),
    "CONTINUATION-stream0": lambda c: continuation_frame(0, b"\x82"),
    "unknown-extension": lambda c: raw_frame(0xf7, 0, 0, b"ext"),
    "unknown-extension-same-stream": lambda c: raw_frame(0xf7, 0, 1, b"ext"),
}


@pytest.mark.parametrize("name", list(INTERLEAVED))
def test_frame_inside_field_block(conn, name):
    """4.3/6.2/6.10/5.5: a HEADERS without END_HEADERS MUST be followed by a
    CONTINUATION on the same stream; any other frame (extension frames too)
    is a connection error PROTOCOL_ERROR."""
    block = echo_block(conn)
    conn.send(headers_frame(1, block[:5], end_headers=False) + INTERLEAVED[name](conn)
              + continuation_frame(1, block[5:]))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=1)


def test_frame_inside_continued_block(conn):
    """The same after a first CONTINUATION without END_HEADERS."""
    block = echo_block(conn)
    conn.send(headers_frame(1, block[:3], end_headers=False)
              + continuation_frame(1, block[3:6], end_headers=False)
              + ping_frame(b"inblock!") + continuation_frame(1, block[6:]))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=1)


def test_trailer_block_interrupted(conn):
    """An interrupted trailer block is a connection error as well."""
    sid = open_stream(conn)
    tb = encode_block([("x-trailer", "one")])
    conn.send(headers_frame(sid, tb[:2], end_headers=False) + data_frame(sid, b"x")
              + continuation_frame(sid, tb[2:]))
    expect_connection_error(conn, PROTOCOL_ERROR)


# ---- CONTINUATION without a preceding open block ----------------------------

def test_continuation_after_end_headers(conn):
    """6.10: CONTINUATION after a HEADERS with END_HEADERS: connection error
    PROTOCOL_ERROR."""
    sid = open_stream(conn)
    conn.send(continuation_frame(sid, encode_block([("x-a", "1")])))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_continuation_after_ended_continuation(conn):
    """6.10: CONTINUATION after a CONTINUATION with END_HEADERS."""
    block = encode_block(conn.req_headers("POST", "/post"))
    conn.send(headers_frame(1, block[:3], end_stream=False, end_headers=False)
              + continuation_frame(1, block[3:], end_headers=True)
              + continuation_frame(1, encode_block([("x-a", "1")])))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_continuation_after_data(conn):
    """6.10: CONTINUATION preceded by DATA."""
    sid = open_stream(conn)
    conn.send(data_frame(sid, b"abc") + continuation_frame(sid, encode_block([("x-a", "1")])))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_continuation_as_first_frame(conn):
    """6.10: CONTINUATION right after the preface, on a new stream."""
    conn.send(continuation_frame(1, echo_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_continuation_without_end_headers_on_idle(conn):
    conn.send(continuation_frame(1, echo_block(conn), end_headers=False))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_continuation_after_complete_response(conn):
    """CONTINUATION after a whole exchange on that stream."""
    sid = conn.request()
    expect_response(conn, sid)
    conn.send(continuation_frame(sid, encode_block([("x-a", "1")])))
    expect_connection_error(conn, PROTOCOL_ERROR)
