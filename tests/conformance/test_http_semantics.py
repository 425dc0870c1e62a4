"""RFC 9113 section 8: HTTP message framing (8.1), malformed messages
(8.1.1), field validity and connection-specific fields (8.2), pseudo-header
fields (8.3), CONNECT (8.5); and the well-formedness of the server's own
responses.

A malformed request MUST be treated as a stream error PROTOCOL_ERROR
(8.1.1). The server MAY send a response first (8.1.1), so a non-2xx
response before the RST_STREAM is tolerated; a 2xx answer fails."""

import json
import time

import pytest

from h2wire import (expect_response, expect_stream_error)
from lib.h2frames import (DATA, END_STREAM, HEADERS, PROTOCOL_ERROR, data_frame, encode_block,
                          headers_frame)


def expect_malformed(c, sid):
    return expect_stream_error(c, sid, PROTOCOL_ERROR, allow_response=True)


def pseudo(c, method="GET", path="/bench", scheme=None, authority=None):
    return [(":method", method), (":scheme", scheme or c.scheme),
            (":authority", authority or f"127.0.0.1:{c.port}"), (":path", path)]


def send(c, headers, end_stream=True):
    sid = c.new_sid()
    c.send(headers_frame(sid, encode_block(headers), end_stream=end_stream))
    return sid


# ---- well-formed requests ----------------------------------------------------

def test_get(conn):
    r = expect_response(conn, send(conn, pseudo(conn)))
    assert r.status == 200 and r.body == b"OK"
    assert r.header("content-length") == "2" and r.header("content-type") == "text/plain"


def test_head(conn):
    """HEAD: the headers of GET, no DATA, END_STREAM on the HEADERS frame."""
    sid = send(conn, pseudo(conn, "HEAD"))
    r = expect_response(conn, sid)
    assert r.status == 200 and r.header("content-length") == "2" and r.body == b""
    h = [f for f in conn.frames if f.sid == sid and f.type == HEADERS][0]
    assert h.flags & END_STREAM
    assert not [f for f in conn.frames if f.sid == sid and f.type == DATA and f.payload]


def test_post_with_body(conn):
    sid = send(conn, pseudo(conn, "POST", "/post"), end_stream=False)
    conn.send(data_frame(sid, b"hello", end_stream=True))
    r = expect_response(conn, sid)
    assert r.status == 200 and r.body == b"posted"


def test_post_with_matching_content_length(conn):
    """8.1.1: content-length equal to the sum of the DATA payloads (three frames)."""
    sid = send(conn, pseudo(conn, "POST", "/post") + [("content-length", "9")], end_stream=False)
    conn.send(data_frame(sid, b"abc") + data_frame(sid, b"def") + data_frame(sid, b"ghi", True))
    assert expect_response(conn, sid).status == 200


def test_post_content_length_zero(conn):
    sid = send(conn, pseudo(conn, "POST", "/post") + [("content-length", "0")])
    assert expect_response(conn, sid).status == 200


def test_post_with_trailers(conn):
    """8.1: HEADERS, DATA, then a trailer HEADERS with END_STREAM."""
    sid = send(conn, pseudo(conn, "POST", "/post") + [("te", "trailers")], end_stream=False)
    conn.send(data_frame(sid, b"body")
              + headers_frame(sid, encode_block([("x-checksum", "abc"), ("x-more", "1")])))
    assert expect_response(conn, sid).status == 200


def test_post_trailers_without_data(conn):
    """A trailer section right after the header section."""
    sid = send(conn, pseudo(conn, "POST", "/post"), end_stream=False)
    conn.send(headers_frame(sid, encode_block([("x-trailer", "t")])))
    assert expect_response(conn, sid).status == 200


def test_te_trailers_accepted(conn):
    """8.2.2: TE with the value "trailers" is allowed."""
    r = expect_response(conn, send(conn, pseudo(conn) + [("te", "trailers")]))
    assert r.status == 200


def test_authority_omitted_with_host(conn):
    """8.3.1: :authority may be omitted; a Host header then carries it."""
    hdrs = [(":method", "GET"), (":scheme", conn.scheme), (":path", "/echo"),
            ("host", f"127.0.0.1:{conn.port}")]
    r = expect_response(conn, send(conn, hdrs))
    assert r.status == 200 and json.loads(r.body)["host"] == f"127.0.0.1:{conn.port}"


def test_pseudo_headers_in_any_order(conn):
    """8.3: pseudo-header fields must come first, in any order among themselves."""
    hdrs = [(":path", "/bench"), (":authority", f"127.0.0.1:{conn.port}"), (":scheme", conn.scheme),
            (":method", "GET")]
    assert expect_response(conn, send(conn, hdrs)).status == 200


def test_https_scheme_accepted(conn):
    """8.3.1: :scheme is not restricted to "http"."""
    assert expect_response(conn, send(conn, pseudo(conn, scheme="https"))).status == 200


def test_echo_of_method_path_and_fields(conn):
    sid = send(conn, pseudo(conn, "GET", "/echo?q=1") + [("x-a", "A value"), ("x-b", "b")])
    r = expect_response(conn, sid)
    body = json.loads(r.body)
    assert body["method"] == "GET" and body["path"] == "/echo"
    assert body["a"] == "A value" and body["b"] == "b"


@pytest.mark.parametrize("path,rest,q", [
    ("/query/a?q=1", "a", "1"),                          # '?' in the last octets
    ("/query/abcdefgh?q=2", "abcdefgh", "2"),            # in the second word
    ("/query/>@>@>@>@?q=3", ">@>@>@>@", "3"),            # beside '?' (0x3f)
    ("/query/a?b?q=4", "a", ""),                         # the first '?' splits
    ("/query/" + "x" * 100 + "?q=" + "y" * 60, "x" * 100, "y" * 60),
    ("/query/" + "z" * 300, "z" * 300, ""),
], ids=["short", "second-word", "neighbours", "two-marks", "long", "no-query"])
def test_path_and_query_split(conn, path, rest, q):
    """The path ends at the first '?' and the query follows it (RFC 3986 3.4),
    on a connection's first request and on those after it."""
    for _ in range(2):
        r = expect_response(conn, send(conn, pseudo(conn, "GET", path)))
        assert r.status == 200, r
        body = json.loads(r.body)
        assert body["rest"] == rest and body["q"] == q, body


def test_cookie_crumbs_concatenated(conn):
    """8.2.3: several cookie fields MUST be joined with "; " before being passed
    to a generic HTTP server application (here the {{header.cookie}}
    placeholder of the JSON handler)."""
    sid = send(conn, pseudo(conn, "GET", "/echo") + [("cookie", "a=b"), ("cookie", "c=d"),
                                                     ("cookie", "e=f")])
    r = expect_response(conn, sid)
    assert json.loads(r.body)["cookie"] == "a=b; c=d; e=f"


def test_unknown_path_gets_404(conn):
    r = expect_response(conn, send(conn, pseudo(conn, path="/no/such/path")))
    assert r.status == 404


def test_options_asterisk_is_not_malformed(conn):
    """8.3.1: OPTIONS with :path "*" is well formed: answered, not reset."""
    r = expect_response(conn, send(conn, pseudo(conn, "OPTIONS", "*")))
    assert r.status is not None and 200 <= r.status < 600


def test_unknown_method_is_not_malformed(conn):
    r = expect_response(conn, send(conn, pseudo(conn, "FROBNICATE", "/bench")))
    assert r.status == 405


# ---- the server's responses -------------------------------------------------

def test_response_is_well_formed(conn):
    """8.3.2/8.2: exactly one :status, first; no request pseudo-headers; only
    lowercase names; no connection-specific fields (8.2.2)."""
    r = expect_response(conn, send(conn, pseudo(conn)))
    names = [k for k, _ in r.headers]
    assert names[0] == ":status" and names.count(":status") == 1
    assert all(not k.startswith(":") for k in names[1:])
    assert all(k == k.lower() for k in names)
    for bad in ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"):
        assert bad not in names


def test_response_content_length_matches_data(conn):
    """8.1.1: the server's content-length equals the DATA it sends."""
    c = conn
    from lib.h2frames import INITIAL_WINDOW_SIZE, settings_frame, window_update_frame
    c.send(settings_frame([(INITIAL_WINDOW_SIZE, 1 << 20)]) + window_update_frame(0, 1 << 20))
    for path in ("/bench", "/echo", "/big"):
        r = expect_response(c, send(c, pseudo(c, path=path)))
        assert int(r.header("content-length")) == len(r.body), (path, r)


def test_response_date_advances(conn):
    """RFC 9110 6.6.1: an origin server with a clock MUST send Date, the time
    the message was generated; two responses 1.1 s apart carry different
    dates."""
    d1 = expect_response(conn, send(conn, pseudo(conn))).header("date")
    time.sleep(1.1)
    d2 = expect_response(conn, send(conn, pseudo(conn))).header("date")
    assert d1 and d2 and d1 != d2, (d1, d2)


# ---- 8.3: pseudo-header fields ------------------------------------------------
# celerisd takes a :path whose name comes from HPACK's static table on a short
# path once a connection has sent one; the "warm" cases send a good request
# first, so the checks are made on that path too.

def warm(c, really):
    if really:
        assert expect_response(c, send(c, pseudo(c))).status == 200
    return c


WARM = pytest.mark.parametrize("warmed", [False, True], ids=["first", "warm"])


@pytest.mark.parametrize("missing", [":method", ":scheme", ":path"])
def test_missing_pseudo_header(conn, missing):
    """8.3.1: requests MUST include :method, :scheme and :path; omitting one
    makes the request malformed."""
    hdrs = [h for h in pseudo(conn) if h[0] != missing]
    expect_malformed(conn, send(conn, hdrs))


def test_no_pseudo_headers_at_all(conn):
    expect_malformed(conn, send(conn, [("x-a", "1")]))


@pytest.mark.parametrize("dup,value", [(":method", "GET"), (":method", "POST"),
                                       (":scheme", "http"), (":path", "/bench"),
                                       (":path", "/other"), (":authority", "example.com")])
@WARM
def test_duplicate_pseudo_header(conn, dup, value, warmed):
    """8.3: the same pseudo-header field MUST NOT appear twice (same value or
    not)."""
    expect_malformed(warm(conn, warmed), send(conn, _insert_dup(pseudo(conn), dup, value)))


def _insert_dup(hdrs, name, value):
    i = [k for k, _ in hdrs].index(name)
    return hdrs[:i + 1] + [(name, value)] + hdrs[i + 1:]


@pytest.mark.parametrize("path", ["", "bench", "*", "/a b", "/a\x7f", "/0123456789abcdef\x01"],
                         ids=["empty", "relative", "asterisk-GET", "space", "del", "ctl-late"])
@WARM
def test_invalid_path(conn, path, warmed):
    """8.3.1: :path MUST NOT be empty for http URIs, holds an absolute path
    (or "*" for OPTIONS only) of VCHAR and obs-text: one valid value is
    required."""
    expect_malformed(warm(conn, warmed), send(conn, pseudo(conn, path=path)))
    assert expect_response(conn, send(conn, pseudo(conn))).status == 200


def test_empty_method(conn):
    """8.3.1: exactly one valid :method; the empty string is not a method token."""
    expect_malformed(conn, send(conn, pseudo(conn, method="")))


@pytest.mark.parametrize("name", [":foo", ":Path", ":"])
def test_unknown_pseudo_header(conn, name):
    """8.3: undefined pseudo-header fields make the request malformed."""
    expect_malformed(conn, send(conn, pseudo(conn) + [(name, "x")]))


def test_response_pseudo_header_in_request(conn):
    """8.3: :status is for responses and MUST NOT appear in requests."""
    expect_malformed(conn, send(conn, pseudo(conn) + [(":status", "200")]))


@pytest.mark.parametrize("name", [":authority", ":path"])
@WARM
def test_pseudo_header_after_regular(conn, name, warmed):
    """8.3: all pseudo-header fields MUST precede regular fields."""
    hdrs = [h for h in pseudo(conn) if h[0] != name] + [("x-a", "1")] \
        + [h for h in pseudo(conn) if h[0] == name]
    expect_malformed(warm(conn, warmed), send(conn, hdrs))


@WARM
def test_pseudo_header_in_trailers(conn, warmed):
    """8.1: trailers MUST NOT include pseudo-header fields."""
    warm(conn, warmed)
    sid = send(conn, pseudo(conn, "POST", "/post"), end_stream=False)
    conn.send(data_frame(sid, b"body") + headers_frame(sid, encode_block([(":path", "/x")])))
    expect_malformed(conn, sid)


def test_pseudo_header_among_trailers(conn):
    sid = send(conn, pseudo(conn, "POST", "/post"), end_stream=False)
    conn.send(data_frame(sid, b"body")
              + headers_frame(sid, encode_block([("x-t", "1"), (":method", "POST")])))
    expect_malformed(conn, sid)


def test_trailers_without_end_stream(conn):
    """8.1: a HEADERS without END_STREAM after the request's HEADERS (and
    DATA) makes the request malformed."""
    sid = send(conn, pseudo(conn, "POST", "/post"), end_stream=False)
    conn.send(data_frame(sid, b"body")
              + headers_frame(sid, encode_block([("x-t", "1")]), end_stream=False))
    expect_malformed(conn, sid)


def test_second_headers_without_end_stream(conn):
    """8.1: two HEADERS in a row, the second without END_STREAM."""
    sid = send(conn, pseudo(conn, "POST", "/post"), end_stream=False)
    conn.send(headers_frame(sid, encode_block([("x-t", "1")]), end_stream=False))
    expect_malformed(conn, sid)


def test_data_after_trailers(server):
    """8.1: the trailer section ends the request (END_STREAM); DATA after it
    arrives on a half-closed (remote) stream: stream error STREAM_CLOSED
    (5.1), which 5.4.1 lets an endpoint treat as a connection error, as
    nghttp2 does: GOAWAY(STREAM_CLOSED), exactly. The client's window is 0 so
    the response cannot complete and close the stream first."""
    from h2wire import expect_connection_error
    from lib.h2frames import INITIAL_WINDOW_SIZE, STREAM_CLOSED
    c = server.connect()
    try:
        c.handshake([(INITIAL_WINDOW_SIZE, 0)])
        sid = send(c, pseudo(c, "POST", "/post"), end_stream=False)
        c.send(data_frame(sid, b"body") + headers_frame(sid, encode_block([("x-t", "1")])))
        c.wait_for(lambda f: f.type == HEADERS and f.sid == sid, what="response HEADERS")
        c.send(data_frame(sid, b"more", end_stream=True))
        expect_connection_error(c, STREAM_CLOSED)
    finally:
        c.close()


# ---- 8.2: field names and values ---------------------------------------------

@pytest.mark.parametrize("name", ["X-Upper", "Content-Type", "USER-AGENT", "x-mIxed"])
def test_uppercase_field_name(conn, name):
    """8.2/8.2.1: uppercase field names make the request malformed."""
    expect_malformed(conn, send(conn, pseudo(conn) + [(name, "1")]))


@pytest.mark.parametrize("name", [b"x a", b"x\x00a", b"x:a", b"x\x7fa", b"x\xffa", b"\x01x",
                                  b"x\ta"],
                         ids=["space", "nul", "colon", "del", "0xff", "ctl", "tab"])
def test_invalid_field_name_characters(conn, name):
    """8.2.1: a field name MUST NOT contain 0x00-0x20, 0x41-0x5a, 0x7f-0xff,
    nor a colon (except a pseudo-header's leading one)."""
    expect_malformed(conn, send(conn, pseudo(conn) + [(name, b"1")]))


@pytest.mark.parametrize("value", [b"a\x00b", b"a\rb", b"a\nb", b"\r\n"],
                         ids=["nul", "cr", "lf", "crlf"])
def test_invalid_field_value_characters(conn, value):
    """8.2.1: a field value MUST NOT contain NUL, CR or LF."""
    expect_malformed(conn, send(conn, pseudo(conn) + [(b"x-a", value)]))


@pytest.mark.parametrize("value", [b" lead", b"trail ", b"\tlead", b"trail\t"],
                         ids=["leading-sp", "trailing-sp", "leading-htab", "trailing-htab"])
def test_field_value_surrounding_whitespace(conn, value):
    """8.2.1: a field value MUST NOT start or end with SP or HTAB."""
    expect_malformed(conn, send(conn, pseudo(conn) + [(b"x-a", value)]))


def test_invalid_value_in_pseudo_header(conn):
    """8.2.1 applies to pseudo-header values too: :path with a CR LF."""
    expect_malformed(conn, send(conn, pseudo(conn, path="/bench\r\nx: y")))


def test_uppercase_in_trailers(conn):
    sid = send(conn, pseudo(conn, "POST", "/post"), end_stream=False)
    conn.send(data_frame(sid, b"x") + headers_frame(sid, encode_block([("X-Trailer", "1")])))
    expect_malformed(conn, sid)


def test_empty_value_is_valid(conn):
    r = expect_response(conn, send(conn, pseudo(conn, path="/echo") + [("x-a", "")]))
    assert r.status == 200 and json.loads(r.body)["a"] == ""


def test_inner_whitespace_is_valid(conn):
    r = expect_response(conn, send(conn, pseudo(conn, path="/echo") + [("x-a", "a \t b")]))
    assert json.loads(r.body)["a"] == "a \t b"


# ---- 8.2.2: connection-specific fields ----------------------------------------

@pytest.mark.parametrize("name,value", [("connection", "keep-alive"), ("connection", "close"),
                                        ("keep-alive", "timeout=5"),
                                        ("proxy-connection", "keep-alive"),
                                        ("transfer-encoding", "chunked"),
                                        ("transfer-encoding", "identity"),
                                        ("upgrade", "h2c")])
def test_connection_specific_field(conn, name, value):
    """8.2.2: a message containing connection-specific fields MUST be treated
    as malformed."""
    expect_malformed(conn, send(conn, pseudo(conn) + [(name, value)]))


def test_connection_specific_field_in_trailers(conn):
    sid = send(conn, pseudo(conn, "POST", "/post"), end_stream=False)
    conn.send(data_frame(sid, b"x") + headers_frame(sid, encode_block([("connection", "close")])))
    expect_malformed(conn, sid)


@pytest.mark.parametrize("value", ["gzip", "trailers, deflate", "deflate;q=0.5", "chunked"])
def test_te_other_than_trailers(conn, value):
    """8.2.2: TE MUST NOT contain any value other than "trailers"."""
    expect_malformed(conn, send(conn, pseudo(conn) + [("te", value)]))


# ---- 8.1.1: content-length ----------------------------------------------------

def test_content_length_more_than_data(conn):
    """8.1.1: content-length larger than the DATA received: malformed."""
    sid = send(conn, pseudo(conn, "POST", "/post") + [("content-length", "10")], end_stream=False)
    conn.send(data_frame(sid, b"12345", end_stream=True))
    expect_malformed(conn, sid)


def test_content_length_less_than_data(conn):
    """8.1.1: content-length smaller than the DATA received: malformed."""
    sid = send(conn, pseudo(conn, "POST", "/post") + [("content-length", "3")], end_stream=False)
    conn.send(data_frame(sid, b"12345", end_stream=True))
    expect_malformed(conn, sid)


def test_content_length_less_than_multiple_data(conn):
    """(h2spec 8.1.2.6/2) the sum of several DATA frames exceeds it."""
    sid = send(conn, pseudo(conn, "POST", "/post") + [("content-length", "8")], end_stream=False)
    conn.send(data_frame(sid, b"12345") + data_frame(sid, b"67890", end_stream=True))
    expect_malformed(conn, sid)


def test_content_length_more_than_multiple_data(conn):
    sid = send(conn, pseudo(conn, "POST", "/post") + [("content-length", "12")], end_stream=False)
    conn.send(data_frame(sid, b"12345") + data_frame(sid, b"67890", end_stream=True))
    expect_malformed(conn, sid)


def test_content_length_without_data(conn):
    """content-length 5 on a HEADERS with END_STREAM: zero octets of content."""
    expect_malformed(conn, send(conn, pseudo(conn, "POST", "/post") + [("content-length", "5")]))


def test_content_length_mismatch_with_trailers(conn):
    sid = send(conn, pseudo(conn, "POST", "/post") + [("content-length", "10")], end_stream=False)
    conn.send(data_frame(sid, b"12345") + headers_frame(sid, encode_block([("x-t", "1")])))
    expect_malformed(conn, sid)


def test_content_length_not_a_number(conn):
    """An unparseable content-length cannot equal the content length: a
    malformed request (RST_STREAM PROTOCOL_ERROR, a 400 first allowed)."""
    sid = send(conn, pseudo(conn, "POST", "/post") + [("content-length", "abc")], end_stream=False)
    conn.send(data_frame(sid, b"abc", end_stream=True))
    expect_malformed(conn, sid)


# ---- 8.5: CONNECT -------------------------------------------------------------

def test_connect_without_authority(conn):
    """8.5: CONNECT carries :authority and omits :scheme and :path; otherwise
    it is malformed."""
    expect_malformed(conn, send(conn, [(":method", "CONNECT")]))


def test_connect_with_path(conn):
    expect_malformed(conn, send(conn, [(":method", "CONNECT"), (":authority", "example.com:443"),
                                       (":path", "/")]))


def test_connect_with_scheme(conn):
    expect_malformed(conn, send(conn, [(":method", "CONNECT"), (":authority", "example.com:443"),
                                       (":scheme", "https")]))


# ---- 10.5.1: field section size ---------------------------------------------------

def test_header_list_over_advertised_limit(conn):
    """6.5.2/10.5.1: a field section over the SETTINGS_MAX_HEADER_LIST_SIZE the
    server announced may be refused with 431 (README: celerisd answers 431);
    the block is still decoded, so the connection goes on."""
    from lib.h2frames import MAX_HEADER_LIST_SIZE, continuation_frame, hp_literal
    limit = conn.server_settings[MAX_HEADER_LIST_SIZE]
    n = limit // 4000 + 2  # fields of 4,000 octets, together over the limit
    block = encode_block(pseudo(conn)) + b"".join(hp_literal(f"x-pad-{i}", "v" * 4000)
                                                  for i in range(n))
    sid = conn.new_sid()
    frags = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    out = headers_frame(sid, frags[0], end_headers=False)
    for i, frag in enumerate(frags[1:], 1):
        out += continuation_frame(sid, frag, end_headers=(i == len(frags) - 1))
    conn.send(out)
    r = expect_response(conn, sid)
    assert r.status == 431, r
    assert expect_response(conn, conn.request()).status == 200


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "separate-reads"])
def test_request_ended_after_early_answer(conn, split):
    """A request answered before it ended (431 here, its field section over the
    limit), then ended by the client with an empty DATA frame: that frame is
    whole with its header and closes the stream; it is no error, and the
    connection goes on."""
    import time
    from h2wire import expect_alive
    from lib.h2frames import (GOAWAY, MAX_HEADER_LIST_SIZE, continuation_frame, data_frame,
                              hp_literal)
    limit = conn.server_settings[MAX_HEADER_LIST_SIZE]
    n = limit // 4000 + 2
    block = encode_block(pseudo(conn, "POST", "/post")) + b"".join(
        hp_literal(f"x-pad-{i}", "v" * 4000) for i in range(n))
    sid = conn.new_sid()
    frags = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    out = headers_frame(sid, frags[0], end_stream=False, end_headers=False)
    for i, frag in enumerate(frags[1:], 1):
        out += continuation_frame(sid, frag, end_headers=(i == len(frags) - 1))
    conn.send(out)
    r = expect_response(conn, sid)
    assert r.status == 431, r
    if split:
        time.sleep(0.05)
    conn.send(data_frame(sid, b"", end_stream=True))
    seen = expect_alive(conn)
    assert not [f for f in seen if f.type == GOAWAY], seen
    assert expect_response(conn, conn.request()).status == 200
