"""RFC 9113 section 5.1 (stream states), 5.1.1 (stream identifiers) and
5.1.2 (stream concurrency)."""


import pytest

from h2wire import (closed_stream, expect_alive, expect_connection_error, expect_no_frames_on,
                    expect_response, expect_stream_error, open_stream)
from lib.h2frames import (DATA, GOAWAY, HEADERS, INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS,
                          PROTOCOL_ERROR, RST_STREAM, STREAM_CLOSED, CANCEL, continuation_frame,
                          data_frame, encode_block, headers_frame, priority_frame,
                          rst_stream_frame, window_update_frame)


def get_block(c, path="/bench"):
    return encode_block(c.req_headers("GET", path))


# ---- idle -------------------------------------------------------------------

def test_idle_data(conn):
    """5.1 idle: any frame other than HEADERS or PRIORITY is a connection
    error PROTOCOL_ERROR. 6.1 also says DATA on a stream that is not open is
    a stream error STREAM_CLOSED, so the RFC allows either; the server
    follows 5.1: GOAWAY(PROTOCOL_ERROR), exactly."""
    conn.send(data_frame(1, b"abc", end_stream=True))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=1)


def test_idle_data_above_open_stream(conn):
    """The same on an idle stream above an open one (5.1 idle)."""
    sid = open_stream(conn)
    conn.send(data_frame(sid + 4, b"abc", end_stream=True))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=sid + 4)


def test_idle_rst_stream(conn):
    """5.1/6.4: RST_STREAM on an idle stream: connection error PROTOCOL_ERROR."""
    conn.send(rst_stream_frame(1, CANCEL))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_idle_rst_stream_above_open_stream(conn):
    """An idle stream above an open one is still idle."""
    sid = open_stream(conn)
    conn.send(rst_stream_frame(sid + 2, CANCEL))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_idle_window_update(conn):
    """5.1: WINDOW_UPDATE on an idle stream: connection error PROTOCOL_ERROR."""
    conn.send(window_update_frame(1, 100))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_idle_continuation(conn):
    """5.1/6.10: CONTINUATION on an idle stream (no HEADERS before it):
    connection error PROTOCOL_ERROR."""
    conn.send(continuation_frame(1, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_idle_priority_accepted(conn):
    """5.1/6.3: PRIORITY may be sent on an idle stream."""
    conn.send(priority_frame(3, 0, 16))
    expect_alive(conn)


def test_idle_priority_then_lower_stream(conn):
    """A PRIORITY frame does not open a stream: after PRIORITY on stream 3 a
    request on stream 1 is still legal."""
    conn.send(priority_frame(3, 0, 16))
    conn.send(headers_frame(1, get_block(conn)))
    assert expect_response(conn, 1).status == 200


def test_idle_priority_then_same_stream(conn):
    conn.send(priority_frame(3, 0, 16) + headers_frame(3, get_block(conn)))
    assert expect_response(conn, 3).status == 200


# ---- open -------------------------------------------------------------------

def test_open_stream_receives_body(conn):
    """5.1 open: HEADERS without END_STREAM, then DATA frames, the last with
    END_STREAM."""
    sid = open_stream(conn)
    conn.send(data_frame(sid, b"ab") + data_frame(sid, b"cd") + data_frame(sid, b"", True))
    r = expect_response(conn, sid)
    assert r.status == 200 and r.body == b"posted"


def test_open_rst_stream_by_client(conn):
    """6.4: RST_STREAM closes the stream; the server MUST NOT send frames for
    it afterwards, and MUST NOT answer a RST_STREAM with a RST_STREAM
    (5.4.2)."""
    sid = open_stream(conn)
    conn.send(rst_stream_frame(sid, CANCEL))
    expect_no_frames_on(conn, sid)
    r = expect_response(conn, conn.request(sid=sid + 2))
    assert r.status == 200


def test_open_rst_stream_unknown_code(conn):
    """7: unknown error codes MUST NOT trigger special behaviour."""
    sid = open_stream(conn)
    conn.send(rst_stream_frame(sid, 0xdeadbeef))
    expect_no_frames_on(conn, sid)


# ---- half-closed (remote) ---------------------------------------------------

def test_half_closed_remote_data(hc_remote):
    """5.1 half-closed (remote): frames other than WINDOW_UPDATE, PRIORITY or
    RST_STREAM MUST draw a stream error STREAM_CLOSED (6.1 says the same for
    DATA). 5.4.1 lets an endpoint treat any stream error as a connection
    error, and nghttp2 does: GOAWAY(STREAM_CLOSED), exactly."""
    c, sid = hc_remote
    c.send(data_frame(sid, b"late", end_stream=True))
    expect_connection_error(c, STREAM_CLOSED)


def test_half_closed_remote_headers(hc_remote):
    """5.1 half-closed (remote): a HEADERS frame (trailers after END_STREAM)
    MUST draw a stream error STREAM_CLOSED; escalated to a connection error
    as 5.4.1 allows (nghttp2): GOAWAY(STREAM_CLOSED), exactly."""
    c, sid = hc_remote
    c.send(headers_frame(sid, encode_block([("x-trailer", "1")])))
    expect_connection_error(c, STREAM_CLOSED)


def test_half_closed_remote_continuation(hc_remote):
    """A CONTINUATION on a half-closed (remote) stream is not preceded by a
    HEADERS without END_HEADERS: 6.10 makes that a connection error
    PROTOCOL_ERROR; 5.1 (half-closed) a stream error STREAM_CLOSED. The RFC
    allows either; the server follows 6.10: GOAWAY(PROTOCOL_ERROR), exactly."""
    c, sid = hc_remote
    c.send(continuation_frame(sid, encode_block([("x-a", "1")])))
    expect_connection_error(c, PROTOCOL_ERROR)


def test_half_closed_remote_window_update(hc_remote):
    """5.1: WINDOW_UPDATE is allowed on a half-closed (remote) stream (and
    here lets the server send DATA)."""
    c, sid = hc_remote
    c.send(window_update_frame(sid, 100))
    f = c.wait_for(lambda f: f.type in (DATA, RST_STREAM, GOAWAY) and f.sid in (0, sid),
                   what="DATA")
    assert f.type == DATA and len(f.payload) == 100, f


def test_half_closed_remote_priority(hc_remote):
    c, sid = hc_remote
    c.send(priority_frame(sid, 0, 200))
    expect_alive(c)


def test_half_closed_remote_rst_stream(hc_remote):
    """5.1: RST_STREAM on a half-closed (remote) stream closes it; even when
    the window opens afterwards the server sends nothing more on it."""
    c, sid = hc_remote
    c.send(rst_stream_frame(sid, CANCEL))
    c.send(window_update_frame(0, 1 << 20))
    from lib.h2frames import settings_frame
    c.send(settings_frame([(INITIAL_WINDOW_SIZE, 65535)]))
    expect_no_frames_on(c, sid)


# ---- closed -----------------------------------------------------------------

def _closed_frame_outcome(c, sid):
    """RFC 9113 5.1 closed: an endpoint MAY treat a frame on a closed stream as
    a connection error STREAM_CLOSED, or perform minimal processing (discard
    it); 6.1 asks a stream error STREAM_CLOSED for DATA. Never a response, and
    never another error code."""
    seen = expect_alive_or_error(c, sid)
    return seen


def expect_alive_or_error(c, sid):
    import os
    payload = os.urandom(8)
    from h2wire import Closed
    from lib.h2frames import PING, ACK, ping_frame
    c.send(ping_frame(payload))
    while True:
        try:
            f = c.read_frame()
        except Closed:
            pytest.fail("connection closed without GOAWAY")
        if f.type == GOAWAY:
            assert f.error_code in (STREAM_CLOSED, PROTOCOL_ERROR), f
            return "connection"
        if f.type == RST_STREAM and f.sid == sid:
            assert f.error_code == STREAM_CLOSED, f
        if f.type == HEADERS and f.sid == sid:
            pytest.fail(f"response on a closed stream: {f}")
        if f.type == PING and f.flags & ACK and f.payload == payload:
            return "ignored"


def test_closed_data(conn):
    """5.1 closed: "An endpoint that receives any frames after receiving a
    frame with the END_STREAM flag set MUST treat that as a connection error
    of type STREAM_CLOSED" (6.1 asks a stream error STREAM_CLOSED: the RFC
    allows either). The server follows 5.1: GOAWAY(STREAM_CLOSED), exactly."""
    sid = closed_stream(conn)
    conn.send(data_frame(sid, b"late", end_stream=True))
    expect_connection_error(conn, STREAM_CLOSED)


def test_closed_data_long_after(conn):
    """The same with 40 more streams served in between: the server still
    remembers that the client had ended the stream."""
    sid = closed_stream(conn)
    for _ in range(40):
        closed_stream(conn)
    conn.send(data_frame(sid, b"late", end_stream=True))
    expect_connection_error(conn, STREAM_CLOSED)


def send_split(c, data, delay=0.002):
    """Sends DATA an octet at a time, so frame headers arrive cut."""
    import time
    for i in range(len(data)):
        c.send(data[i:i + 1])
        time.sleep(delay)


def test_closed_data_cut_in_pieces(conn):
    """DATA on a closed stream whose frame header arrives an octet at a time."""
    sid = closed_stream(conn)
    send_split(conn, data_frame(sid, b"late", end_stream=True))
    expect_connection_error(conn, STREAM_CLOSED)


def test_data_on_stream_the_server_reset_is_ignored(conn):
    """5.1 closed: "An endpoint MUST ignore frames that it receives on closed
    streams after it has sent a RST_STREAM frame": the client's DATA was on
    its way when the server reset the (malformed) request."""
    sid = conn.new_sid()
    conn.send_headers(sid, conn.req_headers("POST", "/post", extra=[("X-Upper", "1")]),
                      end_stream=False)
    expect_stream_error(conn, sid, PROTOCOL_ERROR)
    conn.send(data_frame(sid, b"in flight") + data_frame(sid, b"last", end_stream=True))
    expect_no_frames_on(conn, sid)
    assert expect_response(conn, conn.request(sid=sid + 2)).status == 200


def test_closed_headers(conn):
    """5.1.1: a HEADERS on a closed stream reuses an identifier that is not
    greater than all opened ones: connection error PROTOCOL_ERROR (5.1 also
    allows STREAM_CLOSED as the code for frames on closed streams; the
    server follows 5.1.1, exactly)."""
    sid = closed_stream(conn)
    conn.send(headers_frame(sid, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=sid)


def test_closed_continuation(conn):
    """6.10: a CONTINUATION not preceded by HEADERS without END_HEADERS is a
    connection error PROTOCOL_ERROR (5.1 closed would allow STREAM_CLOSED;
    the server follows 6.10, exactly)."""
    sid = closed_stream(conn)
    conn.send(continuation_frame(sid, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_closed_window_update_ignored(conn):
    """6.9: WINDOW_UPDATE on a closed stream MUST NOT be treated as an error."""
    sid = closed_stream(conn)
    conn.send(window_update_frame(sid, 1000))
    expect_no_frames_on(conn, sid)


def test_closed_rst_stream_ignored(conn):
    """5.1 closed: a RST_STREAM may arrive after END_STREAM; it must not be
    answered with a RST_STREAM (5.4.2) nor kill the connection."""
    sid = closed_stream(conn)
    conn.send(rst_stream_frame(sid, CANCEL))
    expect_no_frames_on(conn, sid)


def test_closed_priority_accepted(conn):
    """5.1/6.3: PRIORITY can be sent on a closed stream."""
    sid = closed_stream(conn)
    conn.send(priority_frame(sid, 0, 16))
    expect_no_frames_on(conn, sid)


def test_reset_stream_data(conn):
    """5.1 closed: "An endpoint that receives any frame other than PRIORITY
    after receiving a RST_STREAM MUST treat that as a stream error of type
    STREAM_CLOSED"; 5.4.1 lets an endpoint treat any stream error as a
    connection error, and nghttp2 does: GOAWAY(STREAM_CLOSED), exactly."""
    sid = open_stream(conn)
    conn.send(rst_stream_frame(sid, CANCEL) + data_frame(sid, b"late", end_stream=True))
    expect_connection_error(conn, STREAM_CLOSED)


def test_reset_stream_data_separate_reads(conn):
    """The same with HEADERS, RST_STREAM and DATA each in its own read."""
    import time
    sid = open_stream(conn)
    time.sleep(0.05)
    conn.send(rst_stream_frame(sid, CANCEL))
    time.sleep(0.05)
    conn.send(data_frame(sid, b"late", end_stream=True))
    expect_connection_error(conn, STREAM_CLOSED)


def test_reset_stream_headers(conn):
    """Closed by RST_STREAM, then HEADERS on the same id: never a response.
    5.1.1 (identifier reuse) makes it a connection error PROTOCOL_ERROR; 5.1
    (closed) a stream error STREAM_CLOSED. The RFC allows either; the server
    follows 5.1.1: GOAWAY(PROTOCOL_ERROR), exactly."""
    sid = open_stream(conn)
    conn.send(rst_stream_frame(sid, CANCEL) + headers_frame(sid, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=sid)


def test_reset_stream_continuation(conn):
    """6.10: a CONTINUATION not preceded by a HEADERS without END_HEADERS is a
    connection error PROTOCOL_ERROR (5.1 closed would allow STREAM_CLOSED
    as well; the server follows 6.10, exactly)."""
    sid = open_stream(conn)
    conn.send(rst_stream_frame(sid, CANCEL) + continuation_frame(sid, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_reset_stream_priority(conn):
    sid = open_stream(conn)
    conn.send(rst_stream_frame(sid, CANCEL) + priority_frame(sid, 0, 16))
    expect_no_frames_on(conn, sid)


# ---- 5.1.1: stream identifiers ----------------------------------------------

def test_even_stream_id(conn):
    """5.1.1: clients MUST use odd identifiers; an even one is an unexpected
    stream identifier: connection error PROTOCOL_ERROR."""
    conn.send(headers_frame(2, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=2)


def test_even_stream_id_after_valid(conn):
    closed_stream(conn)
    conn.send(headers_frame(4, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=4)


def test_decreasing_stream_id(conn):
    """5.1.1: a new stream id MUST be greater than all opened ones: 5 then 3
    is a connection error PROTOCOL_ERROR."""
    conn.send(headers_frame(5, get_block(conn)))
    expect_response(conn, 5)
    conn.send(headers_frame(3, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=3)


def test_decreasing_stream_id_while_open(conn):
    """Same with the higher stream still open."""
    conn.send(headers_frame(5, encode_block(conn.req_headers("POST", "/post")),
                            end_stream=False))
    conn.send(headers_frame(3, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=3)


def test_reused_stream_id(conn):
    """5.1.1: stream identifiers cannot be reused: a second request on
    stream 1 is a connection error (PROTOCOL_ERROR; 5.1 would allow
    STREAM_CLOSED; the server follows 5.1.1, exactly)."""
    sid = closed_stream(conn)
    assert sid == 1
    conn.send(headers_frame(1, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=1)


def test_skipped_stream_ids(conn):
    """5.1.1: an endpoint may skip identifiers (1, then 9)."""
    closed_stream(conn)
    conn.send(headers_frame(9, get_block(conn)))
    assert expect_response(conn, 9).status == 200


def test_skipped_stream_id_is_closed(conn):
    """5.1.1: opening stream 9 implicitly closes idle 3..7; a request on 7
    afterwards is an unexpected identifier: connection error PROTOCOL_ERROR
    (5.1 would allow STREAM_CLOSED, as a frame on a closed stream; the server
    follows 5.1.1, exactly)."""
    conn.send(headers_frame(9, get_block(conn)))
    expect_response(conn, 9)
    conn.send(headers_frame(7, get_block(conn)))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=7)


def test_max_stream_id(conn):
    """The largest identifier, 2^31-1, is a valid client stream."""
    sid = 2 ** 31 - 1
    conn.send(headers_frame(sid, get_block(conn)))
    assert expect_response(conn, sid).status == 200


def test_sequential_streams(conn):
    """Fifty requests one after the other on one connection."""
    for _ in range(50):
        r = expect_response(conn, conn.request())
        assert r.status == 200 and r.body == b"OK"


def test_many_streams_interleaved(conn):
    """Ten open request streams receiving their bodies interleaved."""
    sids = [open_stream(conn) for _ in range(10)]
    for chunk in (b"a", b"b"):
        for s in sids:
            conn.send(data_frame(s, chunk))
    for s in reversed(sids):
        conn.send(data_frame(s, b"", end_stream=True))
    for s in sids:
        assert expect_response(conn, s).status == 200


# ---- 5.1.2: stream concurrency ----------------------------------------------

def test_tight_server_advertises_limit(tight_conn):
    assert tight_conn.server_settings.get(MAX_CONCURRENT_STREAMS) == 2


def test_exceeding_max_concurrent_streams(tight_conn):
    """5.1.2: a HEADERS that exceeds the advertised limit MUST be a stream
    error PROTOCOL_ERROR or REFUSED_STREAM. 5.4.1 lets an endpoint treat any
    stream error as a connection error, and nghttp2 does once its SETTINGS
    are acknowledged (REFUSED_STREAM only before): GOAWAY(PROTOCOL_ERROR)
    whose last stream id keeps the streams within the limit, exactly."""
    c = tight_conn
    open_stream(c)
    b = open_stream(c)
    sid = c.request()
    goaway = expect_connection_error(c, PROTOCOL_ERROR, stream=sid)
    assert goaway.frame.last_stream_id == b, goaway


def test_concurrency_slot_freed_by_end_of_stream(tight_conn):
    """Once a stream closes, a new one fits under the limit again."""
    c = tight_conn
    a, b = open_stream(c), open_stream(c)
    c.send(data_frame(a, b"", end_stream=True))
    expect_response(c, a)
    r = expect_response(c, c.request())
    assert r.status == 200
    c.send(data_frame(b, b"", end_stream=True))
    expect_response(c, b)


def test_concurrency_slot_freed_by_rst_stream(tight_conn):
    c = tight_conn
    a = open_stream(c)
    open_stream(c)
    c.send(rst_stream_frame(a, CANCEL))
    r = expect_response(c, c.request())
    assert r.status == 200


def test_half_closed_streams_count_toward_limit(tight_server):
    """5.1.2: streams in a half-closed state count toward the limit: two
    requests whose responses are stalled by a zero window, then a third."""
    c = tight_server.connect()
    try:
        c.handshake([(INITIAL_WINDOW_SIZE, 0)])
        a, b = c.request(path="/big"), c.request(path="/big")
        for s in (a, b):
            c.wait_for(lambda f, s=s: f.type == HEADERS and f.sid == s, what="HEADERS")
        sid = c.request()
        expect_connection_error(c, PROTOCOL_ERROR, stream=sid)  # 5.4.1, as above
    finally:
        c.close()


def test_exceeding_default_max_concurrent_streams(conn):
    """5.1.2 with the default limit (as announced in SETTINGS): one stream
    over it is a connection error (5.4.1, as above) that keeps every stream
    within the limit (last stream id)."""
    limit = conn.server_settings.get(MAX_CONCURRENT_STREAMS)
    assert limit and limit <= 1000
    sids = [open_stream(conn) for _ in range(limit)]
    extra = conn.request()
    goaway = expect_connection_error(conn, PROTOCOL_ERROR, stream=extra)
    assert goaway.frame.last_stream_id == sids[-1], goaway


def test_streams_sharing_a_slot(conn):
    """Concurrent streams whose ids are 64 apart (the server keeps streams by
    id modulo a small table, with a list behind it): each request is answered
    with its own fields, whichever order they end in, and a client reset of
    one leaves the others alone."""
    import json
    from lib.h2frames import headers_frame as hf
    sids = [1, 65, 129, 193, 257]
    for sid in sids:
        conn.send(hf(sid, encode_block(conn.req_headers("POST", "/echo", [("x-a", str(sid))])),
                     end_stream=False))
    conn.send(rst_stream_frame(129, CANCEL))
    for sid in (65, 1, 257, 193):
        conn.send(data_frame(sid, b"", end_stream=True))
        r = expect_response(conn, sid)
        assert r.status == 200 and json.loads(r.body)["a"] == str(sid), (sid, r)
    expect_no_frames_on(conn, 129)
    assert expect_response(conn, conn.request(sid=259)).status == 200
