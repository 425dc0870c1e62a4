"""RFC 9113 sections 5.3 and 6.3 (PRIORITY, deprecated but still to be
accepted) and the priority fields of HEADERS. The self-dependency rule is
RFC 7540 5.3.1, which RFC 9113 5.3.2 keeps by reference."""

import pytest

from h2wire import (closed_stream, expect_alive, expect_connection_error, expect_response,
                    expect_stream_error, open_stream)
from lib.h2frames import (FRAME_SIZE_ERROR, PRIORITY, PROTOCOL_ERROR, data_frame, encode_block,
                          headers_frame, priority_frame, priority_payload, raw_frame)


def get_block(c):
    return encode_block(c.req_headers())


@pytest.mark.parametrize("dep,weight,excl", [(0, 16, False), (0, 1, False), (0, 256, False),
                                             (0, 16, True), (7, 100, False)],
                         ids=["default", "weight1", "weight256", "exclusive", "dep-idle"])
def test_headers_with_priority(conn, dep, weight, excl):
    """6.2: HEADERS with the PRIORITY flag is a normal request (the fields may
    be ignored)."""
    conn.send(headers_frame(1, get_block(conn), priority=(dep, weight, excl)))
    r = expect_response(conn, 1)
    assert r.status == 200 and r.body == b"OK"


@pytest.mark.parametrize("weight", [1, 16, 256])
def test_priority_weights(conn, weight):
    """6.3 (h2spec generic 3.3/1-2): PRIORITY frames with any weight are
    accepted."""
    sid = open_stream(conn)
    conn.send(priority_frame(sid, 0, weight))
    expect_alive(conn)


def test_priority_with_dependency(conn):
    """6.3 (generic 3.3/3): a dependency on another open stream."""
    a = open_stream(conn)
    b = open_stream(conn)
    conn.send(priority_frame(b, a, 32))
    expect_alive(conn)
    conn.send(data_frame(a, b"", True) + data_frame(b, b"", True))
    assert expect_response(conn, a).status == 200
    assert expect_response(conn, b).status == 200


def test_priority_exclusive(conn):
    """6.3 (generic 3.3/4): the exclusive flag."""
    a = open_stream(conn)
    b = open_stream(conn)
    conn.send(priority_frame(b, a, 16, exclusive=True))
    expect_alive(conn)


def test_priority_on_closed_stream(conn):
    """6.3: PRIORITY can be sent on a closed stream."""
    sid = closed_stream(conn)
    conn.send(priority_frame(sid, 0, 16))
    expect_alive(conn)


def test_priority_depends_on_closed_stream(conn):
    sid = closed_stream(conn)
    conn.send(priority_frame(sid + 2, sid, 16))
    expect_alive(conn)
    assert expect_response(conn, conn.request(sid=sid + 2)).status == 200


def test_priority_does_not_open_stream(conn):
    """6.3: sending PRIORITY does not change stream state: after PRIORITY on
    stream 5, streams 1 and 3 can still be opened."""
    conn.send(priority_frame(5, 0, 16))
    for sid in (1, 3, 5):
        conn.send(headers_frame(sid, get_block(conn)))
        assert expect_response(conn, sid).status == 200


def test_many_priority_frames_on_idle_streams(conn):
    """A burst of PRIORITY frames for idle streams is legal."""
    conn.send(b"".join(priority_frame(2 * i + 101, 0, 16) for i in range(50)))
    expect_alive(conn)
    assert expect_response(conn, conn.request()).status == 200


@pytest.mark.parametrize("length", [4, 6])
def test_priority_wrong_length(conn, length):
    """6.3: a PRIORITY length other than 5 MUST be a stream error
    FRAME_SIZE_ERROR (on an open stream here)."""
    sid = open_stream(conn)
    conn.send(raw_frame(PRIORITY, 0, sid, (priority_payload() + b"\0")[:length]))
    # 5.4.1 lets an endpoint treat any stream error as a connection error, and
    # nghttp2 does: GOAWAY(FRAME_SIZE_ERROR), exactly.
    expect_connection_error(conn, FRAME_SIZE_ERROR, stream=sid)


def test_headers_depends_on_itself(conn):
    """HEADERS whose priority makes stream 1 depend on itself: nghttp2 keeps
    RFC 7540's stream error PROTOCOL_ERROR (5.3.1 there) and, as 5.4.1 lets
    an endpoint do with any stream error, makes it a connection error:
    GOAWAY(PROTOCOL_ERROR), exactly. (RFC 9113 deprecates the priority scheme
    and no longer states the rule, so serving the stream would be conformant
    too.)"""
    conn.send(headers_frame(1, get_block(conn), priority=(1, 16, False)))
    expect_connection_error(conn, PROTOCOL_ERROR, stream=1)


def test_priority_depends_on_itself(conn):
    """A PRIORITY frame making an open stream depend on itself, then the end
    of the request: RFC 9113 would let the server ignore the priority and
    serve the stream; nghttp2 keeps RFC 7540 5.3.1's stream error:
    RST_STREAM(PROTOCOL_ERROR) and the connection goes on, exactly."""
    sid = open_stream(conn)
    conn.send(priority_frame(sid, sid, 16) + data_frame(sid, b"", True))
    expect_stream_error(conn, sid, PROTOCOL_ERROR)


@pytest.mark.parametrize("split", [False, True], ids=["whole", "octet-by-octet"])
def test_priority_self_dependency_is_stream_error(conn, split):
    """celerisd answers RFC 7540 5.3.1's rule with its stream error,
    RST_STREAM(PROTOCOL_ERROR), and keeps the connection; also when the frame
    arrives cut into single octets."""
    import time
    sid = open_stream(conn)
    frame = priority_frame(sid, sid, 16)
    if split:
        for i in range(len(frame)):
            conn.send(frame[i:i + 1])
            time.sleep(0.002)
    else:
        conn.send(frame)
    expect_stream_error(conn, sid, PROTOCOL_ERROR)
    expect_alive(conn)


def test_priority_self_dependency_on_idle_stream(conn):
    """On an idle stream a RST_STREAM may not be sent (5.1): a connection
    error PROTOCOL_ERROR."""
    from h2wire import expect_connection_error
    conn.send(priority_frame(9, 9, 16))
    expect_connection_error(conn, PROTOCOL_ERROR)


def test_server_turns_rfc7540_priorities_off(conn):
    """RFC 9218 2.1: the server's SETTINGS carry
    SETTINGS_NO_RFC7540_PRIORITIES = 1 (RFC 9113 5.3.2 deprecates the tree)."""
    assert conn.server_settings.get(0x9) == 1, conn.server_settings


@pytest.mark.parametrize("first,second,leader", [(7, 0, 3), (0, 7, 1), (3, 1, 3)],
                         ids=["later-urgent", "earlier-urgent", "u1-before-default"])
def test_priority_field_orders_responses(conn, first, second, leader):
    """RFC 9218 4: the priority field's urgency orders the responses. Two
    100 KiB responses asked for in one packet share a 64 KiB connection
    window: the more urgent one's DATA comes first and fills it."""
    from lib.h2frames import DATA as DATA_T, headers_frame as hf
    conn.send(hf(1, encode_block(conn.req_headers("GET", "/big", extra=[("priority", f"u={first}")])))
              + hf(3, encode_block(conn.req_headers("GET", "/big",
                                                    extra=[("priority", f"u={second}")]))))
    f = conn.wait_for(lambda f: f.type == DATA_T, what="DATA")
    assert f.sid == leader, f"first DATA on stream {f.sid}, expected {leader}"
    got = {1: 0, 3: 0}
    got[f.sid] += len(f.payload)
    while sum(got.values()) < 65535:
        f = conn.wait_for(lambda f: f.type == DATA_T, what="DATA")
        got[f.sid] += len(f.payload)
    assert got[leader] == 65535, got


def priority_update_frame(sid, value):
    """RFC 9218 7.1: PRIORITY_UPDATE (type 0x10) on stream 0."""
    import struct
    return raw_frame(0x10, 0, 0, struct.pack(">I", sid) + value.encode())


def test_priority_update_orders_responses(conn):
    """RFC 9218 7.1: PRIORITY_UPDATE frames sent before the requests set
    their urgency: stream 3 (u=0) is served before stream 1 (u=7)."""
    from lib.h2frames import DATA as DATA_T
    conn.send(priority_update_frame(1, "u=7") + priority_update_frame(3, "u=0")
              + headers_frame(1, encode_block(conn.req_headers("GET", "/big")))
              + headers_frame(3, encode_block(conn.req_headers("GET", "/big"))))
    f = conn.wait_for(lambda f: f.type == DATA_T, what="DATA")
    assert f.sid == 3, f"first DATA on stream {f.sid}, expected 3"
    expect_alive(conn)


def test_unknown_frame_types_ignored(conn):
    """RFC 9113 5.5: frames of unknown types are ignored, on any stream."""
    conn.send(raw_frame(0xfa, 0xff, 0, b"x" * 40) + raw_frame(0x21, 0, 7, b""))
    expect_alive(conn)
    assert expect_response(conn, conn.request()).status == 200


def test_priority_update_on_a_stream_is_connection_error(conn):
    """RFC 9218 7.1: a PRIORITY_UPDATE with a stream identifier other than 0
    is a connection error PROTOCOL_ERROR."""
    import struct
    from h2wire import expect_connection_error
    conn.send(raw_frame(0x10, 0, 1, struct.pack(">I", 1) + b"u=1"))
    expect_connection_error(conn, PROTOCOL_ERROR)
