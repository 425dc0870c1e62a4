"""RFC 9113 section 6.5 (SETTINGS): format, defined settings, synchronization."""

import pytest

from h2wire import (expect_alive, expect_connection_error, expect_response)
from lib.h2frames import (ACK, DATA, ENABLE_PUSH, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR,
                          HEADER_TABLE_SIZE, INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS,
                          MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE, PROTOCOL_ERROR, SETTINGS,
                          raw_frame, settings_frame, settings_payload)


def wait_ack(c):
    return c.wait_for(lambda f: f.type == SETTINGS and f.flags & ACK, what="SETTINGS ACK")


def test_settings_acknowledged(conn):
    """6.5.3: a SETTINGS frame without ACK MUST be answered with an ACK."""
    conn.send(settings_frame([(MAX_CONCURRENT_STREAMS, 50)]))
    f = wait_ack(conn)
    assert f.sid == 0 and f.payload == b""


def test_empty_settings_acknowledged(conn):
    conn.send(settings_frame())
    wait_ack(conn)


def test_settings_acknowledged_in_order(conn):
    """6.5.3: SETTINGS frames are acknowledged in the order received: three
    frames, three ACKs."""
    conn.send(settings_frame([(HEADER_TABLE_SIZE, 4096)]) * 3)
    for _ in range(3):
        wait_ack(conn)
    expect_alive(conn)


def test_settings_ack_with_payload(conn):
    """6.5: a SETTINGS ACK with a non-empty payload is a connection error
    FRAME_SIZE_ERROR."""
    conn.send(raw_frame(SETTINGS, ACK, 0, settings_payload([(INITIAL_WINDOW_SIZE, 1)])))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


def test_settings_on_stream(conn):
    """6.5: a SETTINGS frame on a stream other than 0: connection error
    PROTOCOL_ERROR."""
    conn.send(raw_frame(SETTINGS, 0, 3, settings_payload([(INITIAL_WINDOW_SIZE, 1)])))
    expect_connection_error(conn, PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [1, 3, 5, 7, 11])
def test_settings_length_not_multiple_of_6(conn, length):
    """6.5: a SETTINGS length other than a multiple of 6: connection error
    FRAME_SIZE_ERROR."""
    conn.send(raw_frame(SETTINGS, 0, 0, (b"\x00\x03\x00\x00\x00\x64" * 2)[:length]))
    expect_connection_error(conn, FRAME_SIZE_ERROR)


@pytest.mark.parametrize("value", [2, 0xffffffff])
def test_enable_push_invalid(conn, value):
    """6.5.2: SETTINGS_ENABLE_PUSH other than 0 or 1: connection error
    PROTOCOL_ERROR."""
    conn.send(settings_frame([(ENABLE_PUSH, value)]))
    expect_connection_error(conn, PROTOCOL_ERROR)


@pytest.mark.parametrize("value", [0, 1])
def test_enable_push_valid(conn, value):
    conn.send(settings_frame([(ENABLE_PUSH, value)]))
    wait_ack(conn)
    assert expect_response(conn, conn.request()).status == 200


@pytest.mark.parametrize("value", [2 ** 31, 0xffffffff])
def test_initial_window_size_too_large(conn, value):
    """6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1: connection error
    FLOW_CONTROL_ERROR."""
    conn.send(settings_frame([(INITIAL_WINDOW_SIZE, value)]))
    expect_connection_error(conn, FLOW_CONTROL_ERROR)


def test_initial_window_size_maximum(conn):
    conn.send(settings_frame([(INITIAL_WINDOW_SIZE, 2 ** 31 - 1)]))
    wait_ack(conn)
    assert expect_response(conn, conn.request()).status == 200


@pytest.mark.parametrize("value", [0, 16383])
def test_max_frame_size_too_small(conn, value):
    """6.5.2: SETTINGS_MAX_FRAME_SIZE below 2^14: connection error
    PROTOCOL_ERROR."""
    conn.send(settings_frame([(MAX_FRAME_SIZE, value)]))
    expect_connection_error(conn, PROTOCOL_ERROR)


@pytest.mark.parametrize("value", [2 ** 24, 0xffffffff])
def test_max_frame_size_too_large(conn, value):
    """6.5.2: SETTINGS_MAX_FRAME_SIZE above 2^24-1: connection error
    PROTOCOL_ERROR."""
    conn.send(settings_frame([(MAX_FRAME_SIZE, value)]))
    expect_connection_error(conn, PROTOCOL_ERROR)


@pytest.mark.parametrize("value", [16384, 2 ** 24 - 1])
def test_max_frame_size_limits_accepted(conn, value):
    conn.send(settings_frame([(MAX_FRAME_SIZE, value)]))
    wait_ack(conn)
    assert expect_response(conn, conn.request()).status == 200


@pytest.mark.parametrize("ident", [0x0, 0x7, 0xf0, 0x1234, 0xffff])
def test_unknown_setting_ignored(conn, ident):
    """6.5.2/5.5: an unknown or unsupported setting MUST be ignored."""
    conn.send(settings_frame([(ident, 0xffffffff)]))
    wait_ack(conn)
    assert expect_response(conn, conn.request()).status == 200


def test_max_concurrent_streams_zero_from_client(conn):
    """6.5.2: the client's MAX_CONCURRENT_STREAMS limits the server's pushes,
    not responses: 0 is legal and requests still work."""
    conn.send(settings_frame([(MAX_CONCURRENT_STREAMS, 0)]))
    wait_ack(conn)
    assert expect_response(conn, conn.request()).status == 200


def test_max_header_list_size_from_client(conn):
    """6.5.2: MAX_HEADER_LIST_SIZE is advisory; a large value is accepted."""
    conn.send(settings_frame([(MAX_HEADER_LIST_SIZE, 100000)]))
    wait_ack(conn)
    assert expect_response(conn, conn.request()).status == 200


def test_header_table_size_from_client(conn):
    conn.send(settings_frame([(HEADER_TABLE_SIZE, 8192)]))
    wait_ack(conn)
    for _ in range(3):
        assert expect_response(conn, conn.request()).status == 200


def test_all_defined_settings_at_once(conn):
    conn.send(settings_frame([(HEADER_TABLE_SIZE, 4096), (ENABLE_PUSH, 0),
                              (MAX_CONCURRENT_STREAMS, 100), (INITIAL_WINDOW_SIZE, 65535),
                              (MAX_FRAME_SIZE, 16384), (MAX_HEADER_LIST_SIZE, 65536)]))
    wait_ack(conn)
    assert expect_response(conn, conn.request()).status == 200


def test_last_value_wins(server):
    """6.5.3: values are processed in order; the last one for a setting counts.
    INITIAL_WINDOW_SIZE 100 then 1: the first DATA frame carries one octet."""
    c = server.connect()
    try:
        c.handshake([(INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1)])
        sid = c.request(path="/big")
        f = c.wait_for(lambda f: f.type == DATA and f.sid == sid, what="DATA")
        assert len(f.payload) == 1, f
    finally:
        c.close()


def test_settings_applied_before_ack(server):
    """6.5.3: settings are applied as soon as received: SETTINGS then a
    request in the same write; the response respects the new window."""
    c = server.connect()
    try:
        c.handshake()
        from lib.h2frames import encode_block, headers_frame
        c.send(settings_frame([(INITIAL_WINDOW_SIZE, 10)])
               + headers_frame(1, encode_block(c.req_headers(path="/big"))))
        f = c.wait_for(lambda f: f.type == DATA and f.sid == 1, what="DATA")
        assert len(f.payload) == 10, f
    finally:
        c.close()


def test_unsolicited_settings_ack(conn):
    """An ACK for SETTINGS the server never sent: the RFC states no rule, so
    ignoring it would be conformant too; the server (nghttp2) ends the
    connection with PROTOCOL_ERROR, exactly."""
    conn.send(settings_frame(ack=True))
    expect_connection_error(conn, PROTOCOL_ERROR)
