"""RFC 9113 section 3.4 (connection preface) and the server's SETTINGS."""

import pytest

from h2wire import (expect_alive, expect_connection_error, expect_response)
from lib.h2frames import (ACK, ENABLE_PUSH, INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS,
                          MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE, PREFACE, PROTOCOL_ERROR, SETTINGS,
                          encode_block, headers_frame, ping_frame, settings_frame)


def test_server_first_frame_is_settings(raw):
    """3.4: the server connection preface is a SETTINGS frame that MUST be the
    first frame the server sends."""
    raw.send_preface()
    f = raw.read_frame()
    assert f.type == SETTINGS and not f.flags & ACK and f.sid == 0, f


def test_server_acks_client_settings(raw):
    """3.4/6.5.3: the client's SETTINGS frame MUST be acknowledged."""
    raw.send_preface([(INITIAL_WINDOW_SIZE, 65535)])
    raw.wait_for(lambda f: f.type == SETTINGS and f.flags & ACK, what="SETTINGS ACK")


def test_server_settings_ack_is_empty(raw):
    """6.5: a SETTINGS frame with ACK has an empty payload, on stream 0."""
    raw.send_preface()
    f = raw.wait_for(lambda f: f.type == SETTINGS and f.flags & ACK, what="SETTINGS ACK")
    assert f.payload == b"" and f.sid == 0


def test_empty_client_settings_accepted(raw):
    """3.4: the client preface SETTINGS frame may be empty."""
    raw.handshake(())
    expect_alive(raw)


def test_server_settings_values_are_legal(conn):
    """6.5.2: a server MUST NOT set ENABLE_PUSH to 1 (it may omit it);
    MAX_FRAME_SIZE within 2^14..2^24-1; INITIAL_WINDOW_SIZE <= 2^31-1."""
    s = conn.server_settings
    assert s.get(ENABLE_PUSH, 0) == 0, s
    assert 16384 <= s.get(MAX_FRAME_SIZE, 16384) <= 2 ** 24 - 1, s
    assert s.get(INITIAL_WINDOW_SIZE, 65535) <= 2 ** 31 - 1, s


def test_server_advertises_configured_limits(conn):
    """README limits: max_concurrent_streams 128, 64 KiB header lists and a
    65,535-octet stream window are what the SETTINGS frame announces (a
    buffered upload's stream is opened wider by WINDOW_UPDATE)."""
    s = conn.server_settings
    assert s.get(MAX_CONCURRENT_STREAMS) == 128, s
    assert s.get(MAX_HEADER_LIST_SIZE) == 64 * 1024, s
    assert s.get(INITIAL_WINDOW_SIZE, 65535) == 65535, s


def test_request_after_preface(conn):
    sid = conn.request()
    r = expect_response(conn, sid)
    assert r.status == 200 and r.body == b"OK"


def test_request_sent_with_preface_without_waiting(raw):
    """3.4: clients may send frames right after their preface, without waiting
    for the server's."""
    block = encode_block(raw.req_headers())
    raw.send(PREFACE + settings_frame() + headers_frame(1, block))
    r = expect_response(raw, 1)
    assert r.status == 200 and r.body == b"OK"


def test_preface_byte_by_byte(raw):
    """The preface, SETTINGS and a request arriving one octet per segment."""
    block = encode_block(raw.req_headers())
    data = PREFACE + settings_frame() + headers_frame(1, block)
    for i in range(len(data)):
        raw.send(data[i:i + 1])
    r = expect_response(raw, 1)
    assert r.status == 200


def test_invalid_preface(raw):
    """3.4: an invalid connection preface MUST be treated as a connection error
    of type PROTOCOL_ERROR; the GOAWAY MAY be omitted (the peer is not
    speaking HTTP/2). Accepted: GOAWAY(PROTOCOL_ERROR) + close, or a close."""
    raw.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings_frame())
    expect_connection_error(raw, PROTOCOL_ERROR, allow_bare_close=True)


def test_preface_garbage(raw):
    """3.4: arbitrary octets instead of the preface: connection error, GOAWAY
    optional."""
    raw.send(b"\x00\x01\x02\x03" * 10)
    expect_connection_error(raw, PROTOCOL_ERROR, allow_bare_close=True)


@pytest.mark.parametrize("data", [b"INVALID CONNECTION PREFACE\r\n\r\n",
                                  b"HELLO WORLD\r\n\r\n"],
                         ids=["h2spec-3.5-2", "words"])
def test_preface_words_that_are_not_http1(raw, data):
    """3.4 (h2spec http2/3.5/2): upper-case words that are not an HTTP/1.1
    request line (no origin-form, asterisk-form or absolute-form target) are
    an invalid HTTP/2 preface, not an HTTP/1.1 request: no HTTP/1.1 answer."""
    raw.send(data)
    expect_connection_error(raw, PROTOCOL_ERROR, allow_bare_close=True)


def test_preface_not_followed_by_settings(raw):
    """3.4: the preface MUST be followed by a SETTINGS frame; anything else is
    an invalid preface: connection error PROTOCOL_ERROR (GOAWAY optional)."""
    raw.send(PREFACE + ping_frame(b"12345678"))
    expect_connection_error(raw, PROTOCOL_ERROR, allow_bare_close=True)


def test_preface_followed_by_headers(raw):
    """3.4: a HEADERS frame right after the magic (no SETTINGS): invalid
    preface, connection error PROTOCOL_ERROR (GOAWAY optional)."""
    raw.send(PREFACE + headers_frame(1, encode_block(raw.req_headers())))
    expect_connection_error(raw, PROTOCOL_ERROR, allow_bare_close=True)
