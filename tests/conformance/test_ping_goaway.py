"""RFC 9113 sections 6.4 (RST_STREAM), 6.7 (PING), 6.8 (GOAWAY) and 7 (error
codes)."""

import struct

import pytest

from h2wire import (closed_stream, expect_alive, expect_connection_error, expect_no_frames_on,
                    expect_response, open_stream)
from lib.h2frames import (ACK, CANCEL, FRAME_SIZE_ERROR, GOAWAY, NO_ERROR, PING, PROTOCOL_ERROR,
                          RST_STREAM, goaway_frame, ping_frame, raw_frame, rst_stream_frame)


# ---- PING -------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"\0" * 8, b"\xff" * 8, b"h2-PING!", bytes(range(8))])
def test_ping_ack_same_payload(conn, payload):
    """6.7: a PING without ACK MUST be answered with a PING with ACK and an
    identical payload, on stream 0."""
    conn.send(ping_frame(payload))
    f = conn.wait_for(lambda f: f.type == PING, what="PING ACK")
    assert f.flags & ACK and f.payload == payload and f.sid == 0, f


def test_ping_ack_not_answered(conn):
    """6.7: an endpoint MUST NOT respond to a PING with ACK. The first PING
    the server sends back must be the ACK of the second (non-ACK) PING."""
    conn.send(ping_frame(b"ackackac", ack=True) + ping_frame(b"realping"))
    f = conn.wait_for(lambda f: f.type == PING, what="PING ACK")
    assert f.flags & ACK and f.payload == b"realping", f


def test_many_pings_answered_in_order(conn):
    payloads = [struct.pack(">Q", i) for i in range(10)]
    conn.send(b"".join(ping_frame(p) for p in payloads))
    for p in payloads:
        f = conn.wait_for(lambda f: f.type == PING, what="PING ACK")
        assert f.flags & ACK and f.payload == p, f


def test_ping_during_open_stream(conn):
    sid = open_stream(conn)
    expect_alive(conn)
    from lib.h2frames import data_frame
    conn.send(data_frame(sid, b"", end_stream=True))
    assert expect_response(conn, sid).status == 200


def test_ping_on_stream(conn):
    """6.7: PING with a stream identifier other than 0: connection error
    PROTOCOL_ERROR."""
    conn.send(ping_frame(b"12345678", stream_id=1))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_ping_ack_on_stream(conn):
    conn.send(ping_frame(b"12345678", ack=True, stream_id=3))
    expect_connection_error(conn, PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [0, 1, 7, 9, 16])
def test_ping_wrong_length(conn, length):
    """6.7: a PING length other than 8: connection error FRAME_SIZE_ERROR."""
    conn.send(raw_frame(PING, 0, 0, b"p" * length))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


def test_ping_ack_wrong_length(conn):
    conn.send(raw_frame(PING, ACK, 0, b"p" * 6))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


# ---- GOAWAY -----------------------------------------------------------------

def test_client_goaway_lets_streams_finish(conn):
    """6.8: a client GOAWAY concerns streams the server would initiate; the
    request already sent is still answered."""
    sid = conn.request()
    conn.send(goaway_frame(0, NO_ERROR))
    r = expect_response(conn, sid)
    assert r.status == 200 and r.body == b"OK"


def test_client_goaway_with_open_request_body(conn):
    """After a client GOAWAY the client may still finish its open request."""
    sid = open_stream(conn)
    conn.send(goaway_frame(0, NO_ERROR))
    from lib.h2frames import data_frame
    conn.send(data_frame(sid, b"body", end_stream=True))
    assert expect_response(conn, sid).status == 200


def test_client_goaway_unknown_error_code(conn):
    """7: unknown error codes MUST NOT trigger special behaviour."""
    sid = conn.request()
    conn.send(goaway_frame(0, 0xdeadbeef, b"debug data"))
    assert expect_response(conn, sid).status == 200


def test_client_goaway_then_close_is_clean(conn):
    """A client GOAWAY with nothing in flight; the server may close, but not
    with an error."""
    conn.send(goaway_frame(0, NO_ERROR))
    from h2wire import Closed
    try:
        while True:
            f = conn.read_frame(2)
            assert f.type != GOAWAY or f.error_code == NO_ERROR, f
            assert f.type != RST_STREAM, f
    except (Closed, TimeoutError):
        pass


def test_goaway_on_stream(conn):
    """6.8: GOAWAY with a stream identifier other than 0: connection error
    PROTOCOL_ERROR."""
    conn.send(goaway_frame(0, NO_ERROR, stream_id=1))
    expect_connection_error(conn, PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [0, 4, 7])
def test_goaway_too_short(conn, length):
    """4.2: a frame too small for its mandatory fields (8 octets of GOAWAY) on
    stream 0: connection error FRAME_SIZE_ERROR."""
    conn.send(raw_frame(GOAWAY, 0, 0, b"\0" * length))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


def test_server_goaway_last_stream_id(conn):
    """5.4.1/6.8: on a connection error the GOAWAY carries the last stream the
    server processed: streams 1 and 3 were served, so 3."""
    closed_stream(conn)
    closed_stream(conn)
    conn.send(ping_frame(b"12345678", stream_id=5))
    g = expect_connection_error(conn, PROTOCOL_ERROR)
    assert g.frame.last_stream_id == 3, g


def test_server_goaway_last_stream_id_zero(conn):
    """No stream processed yet: last stream id 0."""
    conn.send(ping_frame(b"12345678", stream_id=5))
    g = expect_connection_error(conn, PROTOCOL_ERROR)
    assert g.frame.last_stream_id == 0, g


# ---- RST_STREAM -------------------------------------------------------------

def test_rst_stream_on_stream0(conn):
    """6.4: RST_STREAM on stream 0: connection error PROTOCOL_ERROR."""
    conn.send(rst_stream_frame(0, CANCEL))
    expect_connection_error(conn, PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [0, 3, 5, 8])
def test_rst_stream_wrong_length(conn, length):
    """6.4: a RST_STREAM length other than 4: connection error
    FRAME_SIZE_ERROR (on an open stream, so the state is not at issue)."""
    sid = open_stream(conn)
    conn.send(raw_frame(RST_STREAM, 0, sid, b"\0\0\0\x08\0\0\0\0"[:length]))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


@pytest.mark.parametrize("code", [NO_ERROR, PROTOCOL_ERROR, CANCEL, 0xd, 0xff, 0xffffffff])
def test_rst_stream_codes(conn, code):
    """6.4/7: RST_STREAM with known and unknown codes closes the stream and
    nothing else; the connection goes on."""
    sid = open_stream(conn)
    conn.send(rst_stream_frame(sid, code))
    expect_no_frames_on(conn, sid)
    assert expect_response(conn, conn.request()).status == 200


def test_unknown_error_code_in_rst_not_echoed(conn):
    """5.4.2: an endpoint MUST NOT send a RST_STREAM in response to a
    RST_STREAM."""
    sid = open_stream(conn)
    conn.send(rst_stream_frame(sid, 0x1234))
    seen = expect_alive(conn)
    assert not [f for f in seen if f.type == RST_STREAM], seen
