"""RFC 9113 sections 5.2 (flow control) and 6.9 (WINDOW_UPDATE), both
directions: the server's DATA within the client's windows and frame size,
and the server's handling of the client's windows and WINDOW_UPDATEs."""

import time

import pytest

from h2wire import (BIG_SIZE, Closed, big_body, expect_alive, expect_connection_error,
                    expect_response, expect_stream_error, open_stream)
from lib.h2frames import (DATA, END_STREAM, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, GOAWAY, HEADERS,
                          INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_WINDOW, PROTOCOL_ERROR,
                          RST_STREAM, WINDOW_UPDATE, data_frame, encode_block, headers_frame,
                          raw_frame, settings_frame, window_update_frame)

QUIET = 0.2  # how long "no more DATA" is watched before the PING check


def connect(server, settings=(), connection_window=None):
    c = server.connect()
    c.handshake(settings, connection_window=connection_window)
    return c


@pytest.fixture
def make(server):
    conns = []

    def factory(settings=(), connection_window=None, srv=None):
        c = connect(srv or server, settings, connection_window)
        conns.append(c)
        return c
    yield factory
    for c in conns:
        c.close()


def read_data(c, sids, total, timeout=3.0):
    """Reads DATA on SIDS until TOTAL octets (flow-controlled length) came;
    returns the frames. Fails on RST_STREAM/GOAWAY or when it takes too long."""
    got, frames = 0, []
    deadline = time.monotonic() + timeout
    while got < total:
        try:
            f = c.read_frame(max(0.001, deadline - time.monotonic()))
        except (TimeoutError, Closed) as e:
            pytest.fail(f"expected {total} DATA octets, got {got} ({type(e).__name__}); "
                        f"frames: {frames}")
        if f.type in (RST_STREAM, GOAWAY):
            pytest.fail(f"{f} while waiting for DATA")
        if f.type == DATA and f.sid in sids:
            frames.append(f)
            got += len(f.payload)
    assert got == total, f"server sent {got} octets, the window allowed {total}: {frames}"
    return frames


def assert_quiet(c, sids):
    """No DATA on SIDS for QUIET seconds and until a PING round trip."""
    time.sleep(QUIET)
    seen = expect_alive(c)
    extra = [f for f in seen if f.type == DATA and f.sid in sids and len(f.payload)]
    assert not extra, f"server exceeded the flow-control window: {extra}"


# ---- the server's DATA within the client's windows ---------------------------

def test_initial_window_size_one(make):
    """6.9.1 (h2spec 6.9.1/1): with SETTINGS_INITIAL_WINDOW_SIZE 1 the server
    sends HEADERS, then one DATA octet, then waits."""
    c = make([(INITIAL_WINDOW_SIZE, 1)])
    sid = c.request(path="/big")
    f = read_data(c, [sid], 1)
    assert f[0].payload == big_body()[:1]
    assert_quiet(c, [sid])


def test_initial_window_size_zero(make):
    """Window 0: the response HEADERS may go, DATA may not (5.2: only DATA is
    flow controlled)."""
    c = make([(INITIAL_WINDOW_SIZE, 0)])
    sid = c.request(path="/big")
    h = c.wait_for(lambda f: f.type == HEADERS and f.sid == sid, what="response HEADERS")
    assert h.status() == 200 and not h.flags & END_STREAM
    assert_quiet(c, [sid])


def test_window_update_releases_exactly(make):
    """6.9: a WINDOW_UPDATE of 10 on the stream lets exactly 10 octets out."""
    c = make([(INITIAL_WINDOW_SIZE, 0)])
    sid = c.request(path="/big")
    c.wait_for(lambda f: f.type == HEADERS and f.sid == sid, what="HEADERS")
    c.send(window_update_frame(sid, 10))
    frames = read_data(c, [sid], 10)
    assert b"".join(f.payload for f in frames) == big_body()[:10]
    assert_quiet(c, [sid])
    c.send(window_update_frame(sid, 25))
    frames = read_data(c, [sid], 25)
    assert b"".join(f.payload for f in frames) == big_body()[10:35]


def test_connection_window_limits_all_streams(make):
    """5.2.1/6.9.1: the connection window (65,535 initially, SETTINGS cannot
    change it) bounds the DATA of all streams together."""
    c = make([(INITIAL_WINDOW_SIZE, 1 << 20)])
    a, b = c.request(path="/big"), c.request(path="/big")
    read_data(c, [a, b], 65535)
    assert_quiet(c, [a, b])


def test_connection_window_update_releases_rest(make):
    c = make([(INITIAL_WINDOW_SIZE, 1 << 20)])
    sid = c.request(path="/big")
    first = read_data(c, [sid], 65535)
    assert_quiet(c, [sid])
    c.send(window_update_frame(0, BIG_SIZE - 65535))
    rest = read_data(c, [sid], BIG_SIZE - 65535)
    assert rest[-1].flags & END_STREAM
    assert b"".join(f.payload for f in first + rest) == big_body()


def test_stream_window_limits_each_stream(make):
    """Stream window 1000 with a large connection window: each of two
    streams gets exactly 1000 octets."""
    c = make([(INITIAL_WINDOW_SIZE, 1000)], connection_window=1 << 20)
    a, b = c.request(path="/big"), c.request(path="/big")
    frames = read_data(c, [a, b], 2000)
    assert sum(len(f.payload) for f in frames if f.sid == a) == 1000
    assert sum(len(f.payload) for f in frames if f.sid == b) == 1000
    assert_quiet(c, [a, b])


def test_data_frames_within_default_max_frame_size(make):
    """4.2: without a larger SETTINGS_MAX_FRAME_SIZE from the client, no frame
    exceeds 2^14 octets; the body arrives complete and intact."""
    c = make([(INITIAL_WINDOW_SIZE, 1 << 20)], connection_window=1 << 20)
    sid = c.request(path="/big")
    r = expect_response(c, sid)
    sizes = [len(f.payload) for f in c.frames if f.type == DATA]
    assert max(sizes) <= 16384, sizes
    assert r.body == big_body()


def test_data_frames_within_larger_max_frame_size(make):
    c = make([(INITIAL_WINDOW_SIZE, 1 << 20), (MAX_FRAME_SIZE, 65536)],
             connection_window=1 << 20)
    sid = c.request(path="/big")
    r = expect_response(c, sid)
    assert max(len(f.payload) for f in c.frames if f.type == DATA) <= 65536
    assert r.body == big_body()


def test_all_frames_within_max_frame_size(make):
    """4.2: every frame the server sends respects the client's 2^14 limit."""
    c = make([(INITIAL_WINDOW_SIZE, 1 << 20)], connection_window=1 << 20)
    for _ in range(3):
        expect_response(c, c.request(path="/big"))
    assert max(len(f.payload) for f in c.frames) <= 16384


def test_window_and_frame_size_together(make):
    """Window 20,000 and frames of at most 16,384: exactly 20,000 octets."""
    c = make([(INITIAL_WINDOW_SIZE, 20000)], connection_window=1 << 20)
    sid = c.request(path="/big")
    frames = read_data(c, [sid], 20000)
    assert all(len(f.payload) <= 16384 for f in frames)
    assert_quiet(c, [sid])


def test_initial_window_size_raised_after_headers(make):
    """6.9.2 (h2spec 6.9.2/1): raising SETTINGS_INITIAL_WINDOW_SIZE adjusts the
    windows of open streams: 0 -> 100 releases exactly 100 octets."""
    c = make([(INITIAL_WINDOW_SIZE, 0)])
    sid = c.request(path="/big")
    c.wait_for(lambda f: f.type == HEADERS and f.sid == sid, what="HEADERS")
    c.send(settings_frame([(INITIAL_WINDOW_SIZE, 100)]))
    read_data(c, [sid], 100)
    assert_quiet(c, [sid])


def test_negative_window(make):
    """6.9.2 (h2spec 6.9.2/2): lowering SETTINGS_INITIAL_WINDOW_SIZE can make
    a window negative; the sender MUST track it. Window 10, all spent, then
    4 (window -6), then a WINDOW_UPDATE of 10: exactly 4 octets."""
    c = make([(INITIAL_WINDOW_SIZE, 10)])
    sid = c.request(path="/big")
    read_data(c, [sid], 10)
    c.send(settings_frame([(INITIAL_WINDOW_SIZE, 4)]))
    assert_quiet(c, [sid])
    c.send(window_update_frame(sid, 10))
    frames = read_data(c, [sid], 4)
    assert b"".join(f.payload for f in frames) == big_body()[10:14]
    assert_quiet(c, [sid])


def test_window_update_reserved_bit_ignored(make):
    """6.9: the reserved bit of the increment MUST be ignored: 0x8000000a is an
    increment of 10."""
    c = make([(INITIAL_WINDOW_SIZE, 0)])
    sid = c.request(path="/big")
    c.wait_for(lambda f: f.type == HEADERS and f.sid == sid, what="HEADERS")
    c.send(raw_frame(WINDOW_UPDATE, 0, sid, (0x80000000 | 10).to_bytes(4, "big")))
    read_data(c, [sid], 10)
    assert_quiet(c, [sid])


def test_empty_data_with_end_stream_needs_no_window(make):
    """6.9.1: an empty DATA frame with END_STREAM may be sent with no window;
    the server ends its response the same way when the body is empty... here:
    the client's side, a request finished by an empty DATA frame."""
    c = make()
    sid = open_stream(c)
    c.upload(sid, b"x" * 100, end_stream=False)
    c.send(data_frame(sid, b"", end_stream=True))
    assert expect_response(c, sid).status == 200


# ---- WINDOW_UPDATE errors ----------------------------------------------------

def test_connection_window_overflow(conn):
    """6.9.1: a WINDOW_UPDATE that makes the connection window exceed 2^31-1:
    GOAWAY FLOW_CONTROL_ERROR."""
    conn.send(window_update_frame(0, MAX_WINDOW))
    expect_connection_error(conn, FLOW_CONTROL_ERROR)


def test_connection_window_overflow_in_steps(conn):
    """(h2spec 6.9.1/2) several WINDOW_UPDATEs that add up past 2^31-1."""
    conn.send(window_update_frame(0, 2 ** 30) + window_update_frame(0, 2 ** 30))
    expect_connection_error(conn, FLOW_CONTROL_ERROR)


def test_connection_window_to_exact_maximum(conn):
    """Up to exactly 2^31-1 is legal."""
    conn.send(window_update_frame(0, MAX_WINDOW - 65535))
    expect_alive(conn)
    assert expect_response(conn, conn.request()).status == 200


def test_stream_window_overflow(conn):
    """6.9.1 (h2spec 6.9.1/3): a WINDOW_UPDATE that makes a stream window
    exceed 2^31-1: RST_STREAM FLOW_CONTROL_ERROR for that stream."""
    sid = open_stream(conn)
    conn.send(window_update_frame(sid, MAX_WINDOW))
    expect_stream_error(conn, sid, FLOW_CONTROL_ERROR)


def test_stream_window_overflow_half_closed(hc_remote):
    """The same on a half-closed (remote) stream whose response is pending."""
    c, sid = hc_remote
    c.send(window_update_frame(sid, MAX_WINDOW) + window_update_frame(sid, MAX_WINDOW))
    expect_stream_error(c, sid, FLOW_CONTROL_ERROR)


def test_initial_window_size_change_overflows_stream(conn):
    """6.9.2: a SETTINGS_INITIAL_WINDOW_SIZE change that makes a stream
    window exceed 2^31-1: connection error FLOW_CONTROL_ERROR."""
    sid = open_stream(conn)
    conn.send(window_update_frame(sid, MAX_WINDOW - 65535))
    expect_alive(conn)
    conn.send(settings_frame([(INITIAL_WINDOW_SIZE, 65536)]))
    expect_connection_error(conn, FLOW_CONTROL_ERROR)


def test_window_update_zero_on_connection(conn):
    """6.9: an increment of 0 on the connection window: connection error
    PROTOCOL_ERROR."""
    conn.send(window_update_frame(0, 0))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_window_update_zero_reserved_bit_on_connection(conn):
    """The reserved bit does not count: 0x80000000 is an increment of 0."""
    conn.send(raw_frame(WINDOW_UPDATE, 0, 0, b"\x80\0\0\0"))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_window_update_zero_on_stream(conn):
    """6.9: an increment of 0 on a stream is a stream error PROTOCOL_ERROR;
    5.4.1 lets an endpoint treat any stream error as a connection error, and
    nghttp2 does here: GOAWAY(PROTOCOL_ERROR), exactly."""
    sid = open_stream(conn)
    conn.send(window_update_frame(sid, 0))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=sid)


def test_window_update_zero_on_half_closed_stream(hc_remote):
    """The same on a half-closed (remote) stream (5.4.1 escalation, as above)."""
    c, sid = hc_remote
    c.send(window_update_frame(sid, 0))
    expect_connection_error(c, PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [0, 3, 5, 8])
def test_window_update_wrong_length_on_connection(conn, length):
    """6.9: a WINDOW_UPDATE length other than 4: connection error
    FRAME_SIZE_ERROR."""
    conn.send(raw_frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\1\0\0\0\1"[:length]))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


@pytest.mark.parametrize("length", [3, 5])
def test_window_update_wrong_length_on_stream(conn, length):
    """6.9: the FRAME_SIZE_ERROR is a connection error on a stream too."""
    sid = open_stream(conn)
    conn.send(raw_frame(WINDOW_UPDATE, 0, sid, b"\0\0\0\1\0"[:length]))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


# ---- the client's DATA within the server's windows ---------------------------

def test_upload_beyond_initial_windows(conn):
    """5.2: the server credits request bodies back with WINDOW_UPDATE: a
    200 KiB upload through 64 KiB windows completes."""
    sid = open_stream(conn)
    conn.upload(sid, b"u" * (200 * 1024))
    r = expect_response(conn, sid)
    assert r.status == 200 and r.body == b"posted"


def test_upload_through_small_stream_window(tight_conn):
    """The tight server announces a 4,096-octet stream window; a 20 KiB body
    still completes through its WINDOW_UPDATEs."""
    c = tight_conn
    assert c.server_settings.get(INITIAL_WINDOW_SIZE) == 4096
    sid = open_stream(c)
    c.upload(sid, b"w" * 20480)
    assert expect_response(c, sid).status == 200


def test_data_beyond_stream_window(tight_conn):
    """5.2/6.9.1: DATA beyond the advertised stream window (4,097 octets into
    4,096) is a flow-control violation: FLOW_CONTROL_ERROR. 6.9.1 lets the
    receiver make it a stream or a connection error; the server resets the
    stream and keeps the connection: RST_STREAM(FLOW_CONTROL_ERROR), exactly."""
    c = tight_conn
    sid = open_stream(c)
    c.send(data_frame(sid, b"v" * 4097))
    expect_stream_error(c, sid, FLOW_CONTROL_ERROR)


def test_padding_counts_against_window(tight_conn):
    """6.1: the whole DATA payload, Pad Length and padding included, is flow
    controlled: 1 + 4,000 + 100 octets exceed a 4,096 window. A stream error,
    as above (6.9.1 would allow a connection error too)."""
    c = tight_conn
    sid = open_stream(c)
    c.send(data_frame(sid, b"p" * 4000, pad=100))
    expect_stream_error(c, sid, FLOW_CONTROL_ERROR)


def test_padded_data_filling_window_exactly(tight_conn):
    """1 + 3,995 + 100 = 4,096: exactly the window; then an empty DATA with
    END_STREAM (allowed with no window left, 6.9.1)."""
    c = tight_conn
    sid = c.new_sid()
    c.send(headers_frame(sid, encode_block(c.req_headers(
        "POST", "/post", [("content-length", "3995")])), end_stream=False))
    c.send(data_frame(sid, b"p" * 3995, pad=100))
    c.send(data_frame(sid, b"", end_stream=True))
    assert expect_response(c, sid).status == 200


def test_discarded_data_still_credited(conn):
    """5.1 closed / 6.9: DATA that arrives on a stream the server has reset is
    discarded but MUST still count toward the connection window, so it must
    be credited back or the connection stalls. A malformed request (uppercase
    field name, reset by the server) followed at once by 64,000 octets of
    body; then a 64 KiB upload on a new stream must get through."""
    sid = conn.new_sid()
    conn.send(headers_frame(sid, encode_block(conn.req_headers("POST", "/post",
                                                               [("X-Upper", "1")])),
                            end_stream=False)
              + b"".join(data_frame(sid, b"d" * 16000) for _ in range(4)))
    conn.conn_send_window -= 64000
    conn.wait_for(lambda f: f.type == RST_STREAM and f.sid == sid, what="RST_STREAM")
    new = open_stream(conn)
    conn.upload(new, b"n" * 65536)
    assert expect_response(conn, new).status == 200
