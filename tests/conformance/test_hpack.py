"""RFC 7541 (HPACK) as the server's decoder must apply it, and RFC 9113 4.3 /
4.3.1: every decoding error is a connection error COMPRESSION_ERROR; the
server's own encoder must follow the client's SETTINGS_HEADER_TABLE_SIZE.

Request field blocks are built octet by octet (hp_* of tests/lib/h2frames.py); decoded values
are checked through the /echo route, which returns x-a, x-b, x-c and cookie
as the server decoded them."""

import json

import pytest

from h2wire import (expect_connection_error, expect_response)
from lib.h2frames import (ACK, COMPRESSION_ERROR, HEADER_TABLE_SIZE, HEADERS, SETTINGS, STATIC,
                          continuation_frame, encode_block, headers_frame, hp_indexed, hp_int,
                          hp_literal, hp_raw_str, hp_size_update, hp_str, huffman, settings_frame)

KINDS = ["incremental", "without", "never"]


def base(c, path="/echo"):
    """The request pseudo-headers, static-indexed or literal without indexing
    (so they never touch the dynamic table)."""
    return encode_block(c.req_headers("GET", path))


def echo(c, block, sid=None):
    sid = sid or c.new_sid()
    c.send(headers_frame(sid, block))
    r = expect_response(c, sid)
    assert r.status == 200, r
    return json.loads(r.body)


def bad(c, block):
    """4.3: a decoding error MUST be a connection error COMPRESSION_ERROR."""
    sid = c.new_sid()
    c.send(headers_frame(sid, block))
    expect_connection_error(c, COMPRESSION_ERROR, stream=sid)


# ---- representations (h2spec hpack 2.3.x / 6.x, and more) --------------------

@pytest.mark.parametrize("huff", [False, True], ids=["plain", "huffman"])
@pytest.mark.parametrize("kind", KINDS)
def test_literal_new_name(conn, kind, huff):
    """6.2.1-6.2.3: literal field line with a new (literal) name."""
    body = echo(conn, base(conn) + hp_literal("x-a", "value-1", kind, huff))
    assert body["a"] == "value-1"


@pytest.mark.parametrize("huff", [False, True], ids=["plain", "huffman"])
@pytest.mark.parametrize("kind", KINDS)
def test_literal_indexed_name(conn, kind, huff):
    """6.2.1-6.2.3: literal field line with a static-table name (cookie, 32)."""
    assert STATIC[31][0] == b"cookie"
    body = echo(conn, base(conn) + hp_literal(None, "k=v", kind, huff, name_index=32))
    assert body["cookie"] == "k=v"


def test_indexed_static_fields(conn):
    """6.1: indexed representations of static entries (:method GET = 2,
    :scheme http = 6, :path / = 4)."""
    block = (hp_indexed(2) + hp_indexed(6) + hp_indexed(4)
             + hp_literal(None, f"127.0.0.1:{conn.port}", name_index=1))
    sid = conn.new_sid()
    conn.send(headers_frame(sid, block))
    r = expect_response(conn, sid)
    assert r.status == 404  # "/" has no route: answered, not refused


def test_huffman_name_and_plain_value(conn):
    block = base(conn) + b"\x00" + hp_str("x-b", True) + hp_str("mixed", False)
    assert echo(conn, block)["b"] == "mixed"


def test_empty_huffman_string(conn):
    """5.2: a Huffman string of length 0 is the empty string."""
    block = base(conn) + b"\x00" + hp_str("x-a") + hp_raw_str(b"", True)
    assert echo(conn, block)["a"] == ""


def test_huffman_all_printable(conn):
    value = "".join(chr(c) for c in range(0x21, 0x7f))
    assert echo(conn, base(conn) + hp_literal("x-c", value, huff=True))["c"] == value


def test_huffman_long_codes(conn):
    """Octets with 20+ bit Huffman codes (non-ASCII, Latin-1) decode exactly.
    (Field values may carry obs-text 0x80-0xff.)"""
    value = bytes([0x80, 0x99, 0xc3, 0xa9, 0xfe]) + b"ok"
    block = base(conn) + b"\x00" + hp_str("x-c") + hp_str(value, True)
    body = echo(conn, block)
    assert body["c"].endswith("ok")


def test_integer_multi_octet(conn):
    """5.1: a string length needing several octets (value of 300 octets)."""
    v = "x" * 300
    assert echo(conn, base(conn) + hp_literal("x-a", v))["a"] == v


# ---- the dynamic table -------------------------------------------------------

def test_dynamic_table_across_requests(conn):
    """2.3.2/6.2.1: an incrementally indexed field is index 62 in the next
    field block."""
    echo(conn, base(conn) + hp_literal("x-a", "remembered", "incremental"))
    assert echo(conn, base(conn) + hp_indexed(62))["a"] == "remembered"


def test_dynamic_table_order(conn):
    """2.3.3: the newest entry has the lowest dynamic index."""
    echo(conn, base(conn) + hp_literal("x-a", "first", "incremental")
         + hp_literal("x-b", "second", "incremental"))
    body = echo(conn, base(conn) + hp_indexed(63) + hp_indexed(62))
    assert body["a"] == "first" and body["b"] == "second"


def test_dynamic_entry_within_same_block(conn):
    """An entry is usable right after it was added in the same block."""
    body = echo(conn, base(conn) + hp_literal("x-c", "c1", "incremental")
                + hp_literal(None, "again", "without", name_index=62))
    assert body["c"] == "c1"
    # the next block sees it too
    assert echo(conn, base(conn) + hp_literal(None, "v2", name_index=62))["c"] == "v2"


def test_dynamic_name_reference(conn):
    """6.2: a literal with an indexed name from the dynamic table."""
    echo(conn, base(conn) + hp_literal("x-b", "old", "incremental"))
    assert echo(conn, base(conn) + hp_literal(None, "new", "never", name_index=62))["b"] == "new"


def test_eviction(conn):
    """4.4: entries are evicted oldest first when the table is full. Table
    100 octets, two 65-octet entries: the first is gone."""
    body = echo(conn, hp_size_update(100) + base(conn)
                + hp_literal("x-a", "v" * 30, "incremental")
                + hp_literal("x-b", "w" * 30, "incremental"))
    assert body["a"] == "v" * 30 and body["b"] == "w" * 30
    assert echo(conn, base(conn) + hp_indexed(62))["b"] == "w" * 30
    bad(conn, base(conn) + hp_indexed(63))


def test_entry_larger_than_table_empties_it(conn):
    """4.4: adding an entry larger than the table empties the table, without
    error; afterwards index 62 does not exist."""
    echo(conn, base(conn) + hp_literal("x-a", "small", "incremental"))
    big = "L" * 5000
    assert echo(conn, base(conn) + hp_literal("x-b", big, "incremental"))["b"] == big
    bad(conn, base(conn) + hp_indexed(62))


def test_size_update_zero_clears_table(conn):
    """4.2/6.3: a dynamic table size update to 0 evicts everything."""
    echo(conn, base(conn) + hp_literal("x-a", "gone", "incremental"))
    bad(conn, hp_size_update(0) + base(conn) + hp_indexed(62))


def test_size_update_then_restore(conn):
    """4.2: several size updates at the start of a block are allowed (0 then
    4096); the table is usable again after."""
    echo(conn, hp_size_update(0) + hp_size_update(4096) + base(conn)
         + hp_literal("x-a", "back", "incremental"))
    assert echo(conn, base(conn) + hp_indexed(62))["a"] == "back"


def test_size_update_to_maximum(conn):
    """6.3: an update equal to SETTINGS_HEADER_TABLE_SIZE (4,096 default)."""
    assert echo(conn, hp_size_update(4096) + base(conn) + hp_literal("x-a", "m"))["a"] == "m"


def test_size_update_in_continuation_at_block_start(conn):
    """The block starts in an empty HEADERS; the update at the start of the
    CONTINUATION is still the beginning of the field block."""
    sid = conn.new_sid()
    conn.send(headers_frame(sid, b"", end_headers=False)
              + continuation_frame(sid, hp_size_update(0) + base(conn)))
    assert expect_response(conn, sid).status == 200


# ---- decoding errors -> COMPRESSION_ERROR -------------------------------------

def test_indexed_zero(conn):
    """6.1: index 0 MUST be treated as a decoding error."""
    bad(conn, base(conn) + hp_indexed(0))


@pytest.mark.parametrize("index", [62, 70, 1000, 2 ** 28], ids=str)
def test_indexed_beyond_table(conn, index):
    """2.3.3: an index beyond static + dynamic table MUST be a decoding error
    (the dynamic table is empty here)."""
    bad(conn, base(conn) + hp_indexed(index))


@pytest.mark.parametrize("kind", KINDS)
def test_literal_name_index_beyond_table(conn, kind):
    bad(conn, base(conn) + hp_literal(None, "v", kind, name_index=62))


def test_size_update_above_setting(conn):
    """6.3: a size update above SETTINGS_HEADER_TABLE_SIZE (4,096; the server
    announces no other value) MUST be a decoding error."""
    assert HEADER_TABLE_SIZE not in conn.server_settings or \
        conn.server_settings[HEADER_TABLE_SIZE] == 4096
    bad(conn, hp_size_update(4097) + base(conn))


def test_size_update_after_field(conn):
    """4.2: the update MUST occur at the beginning of a field block: after a
    field line it is a decoding error."""
    bad(conn, base(conn) + hp_size_update(100))


def test_size_update_between_fields(conn):
    b = base(conn)
    bad(conn, b[:1] + hp_size_update(100) + b[1:])


def test_size_update_in_continuation_after_fields(conn):
    sid = conn.new_sid()
    conn.send(headers_frame(sid, base(conn), end_headers=False)
              + continuation_frame(sid, hp_size_update(0)))
    expect_connection_error(conn, COMPRESSION_ERROR, stream=sid)


def test_huffman_padding_longer_than_7_bits(conn):
    """5.2: padding strictly longer than 7 bits MUST be a decoding error:
    "a" (5 bits) then 11 one-bits."""
    bad(conn, base(conn) + b"\x00" + hp_str("x-a") + hp_raw_str(b"\x1f\xff", True))


def test_huffman_padding_with_zeros(conn):
    """5.2: padding not made of the most significant bits of EOS (ones) MUST
    be a decoding error: "a" then 000."""
    bad(conn, base(conn) + b"\x00" + hp_str("x-a") + hp_raw_str(b"\x18", True))


def test_huffman_eos_symbol(conn):
    """5.2: a string containing the EOS symbol (30 one-bits) MUST be a
    decoding error."""
    bad(conn, base(conn) + b"\x00" + hp_str("x-a") + hp_raw_str(b"\xff\xff\xff\xff", True))


def test_huffman_eos_after_symbols(conn):
    enc = huffman("ok")
    # "ok" (12 bits with 4 padding ones), then EOS: build bitwise
    bits = "".join(f"{b:08b}" for b in enc)[:12] + "1" * 30
    bits += "1" * (-len(bits) % 8)
    octets = int(bits, 2).to_bytes(len(bits) // 8, "big")
    bad(conn, base(conn) + b"\x00" + hp_str("x-a") + hp_raw_str(octets, True))


def test_huffman_in_name_bad_padding(conn):
    bad(conn, base(conn) + b"\x00" + hp_raw_str(b"\x18", True) + hp_str("v"))


def test_integer_overflow(conn):
    """5.1: integers too large for the decoder are a decoding error: an index
    encoded with ten continuation octets."""
    bad(conn, base(conn) + b"\xff" + b"\xff" * 10 + b"\x01")


def test_string_length_overflow(conn):
    bad(conn, base(conn) + b"\x00" + hp_str("x-a") + b"\x7f" + b"\xff" * 8 + b"\x01")


def test_truncated_integer(conn):
    """A block ending inside a multi-octet integer."""
    bad(conn, base(conn) + b"\xff\x80")


def test_string_longer_than_block(conn):
    """A string literal whose length runs past the end of the block."""
    bad(conn, base(conn) + b"\x00" + hp_int(10, 7) + b"x-a")


def test_literal_missing_value(conn):
    """A literal field line cut after its name."""
    bad(conn, base(conn) + b"\x00" + hp_str("x-a"))


def test_literal_indexed_name_missing_value(conn):
    bad(conn, base(conn) + hp_int(32, 4, 0x00))


def test_compression_error_on_trailers(conn):
    """Trailer blocks are decoded with the same rules."""
    from h2wire import open_stream
    from lib.h2frames import data_frame
    sid = open_stream(conn)
    conn.send(data_frame(sid, b"x") + headers_frame(sid, hp_indexed(0)))
    expect_connection_error(conn, COMPRESSION_ERROR)


# ---- the server's encoder -----------------------------------------------------

def test_server_field_blocks_stay_decodable(conn):
    """4.3.1: one decoding context per direction; twenty responses in a row
    decode with one decoder (dynamic table kept in step)."""
    for i in range(20):
        r = expect_response(conn, conn.request(path="/echo" if i % 2 else "/bench"))
        assert r.status == 200 and int(r.header("content-length")) == len(r.body)


def test_header_table_size_zero_from_preface(server):
    """6.5.2/4.3.1: with SETTINGS_HEADER_TABLE_SIZE 0 the server's encoder may
    not use the dynamic table; responses decode with a zero-sized decoder."""
    c = server.connect()
    try:
        c.decoder.header_table_size = 0
        c.decoder.max_allowed_table_size = 0
        c.handshake([(HEADER_TABLE_SIZE, 0)])
        for _ in range(5):
            r = expect_response(c, c.request())
            assert r.status == 200 and r.header("server") and r.header("date")
        assert not c.decoder.header_table.dynamic_entries
    finally:
        c.close()


def test_header_table_size_reduced_mid_connection(conn):
    """RFC 9113 4.3.1: after acknowledging a reduction of
    SETTINGS_HEADER_TABLE_SIZE below the current table size, the server's
    next field block MUST start with a Dynamic Table Size Update to at most
    the new maximum."""
    expect_response(conn, conn.request())
    expect_response(conn, conn.request())
    used = len(conn.decoder.header_table.dynamic_entries)
    assert used > 0, "precondition: the server's encoder put entries in its table"
    conn.send(settings_frame([(HEADER_TABLE_SIZE, 0)]))
    conn.wait_for(lambda f: f.type == SETTINGS and f.flags & ACK, what="SETTINGS ACK")
    conn.decoder.max_allowed_table_size = 0
    sid = conn.request()
    h = conn.wait_for(lambda f: f.type == HEADERS and f.sid == sid, what="response HEADERS")
    block = h.block
    assert block and block[0] & 0xe0 == 0x20, \
        f"the field block does not start with a Dynamic Table Size Update: {block[:8]!r}"
    # walk the leading updates; the last one must be <= 0
    i, last = 0, None
    while i < len(block) and block[i] & 0xe0 == 0x20:
        v, n = block[i] & 0x1f, 1
        if v == 0x1f:
            m = 0
            while True:
                b = block[i + n]
                v += (b & 0x7f) << m
                m += 7
                n += 1
                if not b & 0x80:
                    break
        last, i = v, i + n
    assert last == 0, f"table size update to {last}, above the new maximum 0"
    r = expect_response(conn, sid)
    assert r.status == 200


# ---- fields from the dynamic table, request after request --------------------
# celerisd keeps its verdict on a field the client's table hands out again
# (same name and value buffers); these check that each request is still judged
# whole: the rules that depend on the other fields apply to every request.

def _indexed_setup(c):
    """Request 1 puts :authority and x-a: 1 in the table (62 = x-a, 63 =
    :authority) and returns the block prefix for :method GET, :scheme http."""
    auth = f"127.0.0.1:{c.port}"
    head = hp_indexed(2) + hp_indexed(6)
    block = (head + hp_literal(None, "/echo", "without", name_index=4)
             + hp_literal(None, auth, "incremental", name_index=1)
             + hp_literal("x-a", "1", "incremental"))
    assert echo(c, block)["a"] == "1"
    return head + hp_literal(None, "/echo", "without", name_index=4)


def test_indexed_fields_served_again(conn):
    head = _indexed_setup(conn)
    for _ in range(3):
        assert echo(conn, head + hp_indexed(63) + hp_indexed(62))["a"] == "1"


def test_indexed_static_name_fields_served_again(conn):
    """Fields whose names are in HPACK's static table (user-agent 58, accept
    19), from the client's table request after request: long, short and
    empty values reach the handler intact each time."""
    auth = f"127.0.0.1:{conn.port}"
    head = hp_indexed(2) + hp_indexed(6) + hp_literal(None, "/echo", "without", name_index=4)
    ua = "Mozilla/5.0 (X11; Linux x86_64) " + "k" * 150
    for accept in ["", "*/*", "text/html,application/xhtml+xml;q=0.9"]:
        # 62 = accept, 63 = user-agent, 64 = :authority once these are in
        first = (head + hp_literal(None, auth, "incremental", name_index=1)
                 + hp_literal(None, ua, "incremental", name_index=58)
                 + hp_literal(None, accept, "incremental", name_index=19))
        body = echo(conn, first)
        assert body["ua"] == ua and body["accept"] == accept
        for _ in range(3):
            body = echo(conn, head + hp_indexed(64) + hp_indexed(63) + hp_indexed(62))
            assert body["ua"] == ua and body["accept"] == accept, body


def test_table_field_outlives_its_entries(conn):
    """A request's field that came from the client's table stays as it was
    while its stream lives, however many other fields come and go meanwhile:
    here an upload left open while 120 requests carry fresh accept values (the
    client's table, and celerisd's kept fields, let the first one go long
    before the upload ends)."""
    from lib.h2frames import data_frame
    auth = f"127.0.0.1:{conn.port}"
    get = hp_indexed(2) + hp_indexed(6) + hp_literal(None, "/echo", "without", name_index=4)
    post = hp_indexed(3) + hp_indexed(6) + hp_literal(None, "/echo", "without", name_index=4)
    auth_lit = hp_literal(None, auth, "without", name_index=1)
    first = "first-" + "a" * 40
    # in the table (62), and its verdict kept
    assert echo(conn, get + auth_lit + hp_literal(None, first, "incremental", name_index=19))[
        "accept"] == first
    assert echo(conn, get + auth_lit + hp_indexed(62))["accept"] == first
    upload = conn.new_sid()
    conn.send(headers_frame(upload, post + auth_lit + hp_indexed(62), end_stream=False))
    for i in range(120):
        value = f"other-{i:03d}-" + "b" * 40
        body = echo(conn, get + auth_lit + hp_literal(None, value, "incremental", name_index=19))
        assert body["accept"] == value
        assert echo(conn, get + auth_lit + hp_indexed(62))["accept"] == value
    conn.send(data_frame(upload, b"x", end_stream=True))
    r = expect_response(conn, upload)
    assert r.status == 200, r
    assert json.loads(r.body)["accept"] == first


def test_indexed_fields_over_header_list_limit(conn):
    """6.5.2: the same table entry referenced again and again counts each
    time toward the field section size; over the announced limit the request
    gets 431 and the connection goes on."""
    _over_header_list_limit(conn)


def test_indexed_fields_over_tight_header_list_limit(tight_conn):
    """The same with the tight server's 2,048 octets, crossed within the
    fields a stream holds before its array grows."""
    _over_header_list_limit(tight_conn)


def _over_header_list_limit(conn):
    from lib.h2frames import MAX_HEADER_LIST_SIZE
    head = _indexed_setup(conn)
    value = "v" * 250
    first = head + hp_indexed(63) + hp_literal(None, value, "incremental", name_index=19)
    assert echo(conn, first)["accept"] == value
    head += hp_indexed(64)  # :authority, behind accept (62) and x-a (63)
    assert echo(conn, head + hp_indexed(62))["accept"] == value
    limit = conn.server_settings[MAX_HEADER_LIST_SIZE]
    n = limit // (len("accept") + len(value) + 32) + 2
    sid = conn.new_sid()
    conn.send(headers_frame(sid, head + hp_indexed(62) * n))
    assert expect_response(conn, sid).status == 431
    assert echo(conn, head + hp_indexed(62))["accept"] == value


def test_indexed_pseudo_after_regular_is_malformed(conn):
    """8.3: a pseudo-header after a regular field, both from the table."""
    from h2wire import expect_stream_error
    from lib.h2frames import PROTOCOL_ERROR
    head = _indexed_setup(conn)
    assert echo(conn, head + hp_indexed(63) + hp_indexed(62))["a"] == "1"
    sid = conn.new_sid()
    conn.send(headers_frame(sid, head + hp_indexed(62) + hp_indexed(63)))
    expect_stream_error(conn, sid, PROTOCOL_ERROR)
    assert echo(conn, head + hp_indexed(63) + hp_indexed(62))["a"] == "1"


def test_indexed_pseudo_twice_is_malformed(conn):
    """8.3: :authority twice, the second time from the table."""
    from h2wire import expect_stream_error
    from lib.h2frames import PROTOCOL_ERROR
    head = _indexed_setup(conn)
    sid = conn.new_sid()
    conn.send(headers_frame(sid, head + hp_indexed(63) + hp_indexed(63)))
    expect_stream_error(conn, sid, PROTOCOL_ERROR)


def test_indexed_host_twice_is_malformed(conn):
    """host twice, from the table the second time (one host only, 8.3.1)."""
    from h2wire import expect_stream_error
    from lib.h2frames import PROTOCOL_ERROR
    auth = f"127.0.0.1:{conn.port}"
    head = hp_indexed(2) + hp_indexed(6) + hp_literal(None, "/echo", "without", name_index=4)
    assert echo(conn, head + hp_literal(None, auth, "incremental", name_index=38))["a"] == ""
    sid = conn.new_sid()
    conn.send(headers_frame(sid, head + hp_indexed(62) + hp_indexed(62)))
    expect_stream_error(conn, sid, PROTOCOL_ERROR)


@pytest.mark.parametrize("name,value", [("X-Upper", "1"), ("x-ctl", "a\x01b"),
                                        ("connection", "close")],
                         ids=["uppercase-name", "control-octet", "connection"])
def test_indexed_malformed_field_stays_malformed(conn, name, value):
    """A malformed field put in the table makes every request that uses it
    malformed, not only the first."""
    from h2wire import expect_stream_error
    from lib.h2frames import PROTOCOL_ERROR
    head = base(conn)
    for i in range(3):
        field = hp_literal(name, value, "incremental") if i == 0 else hp_indexed(62)
        sid = conn.new_sid()
        conn.send(headers_frame(sid, head + field))
        expect_stream_error(conn, sid, PROTOCOL_ERROR)
    assert echo(conn, head)["a"] == ""


BIG_COOKIE = "; ".join(f"c{i}=" + "v" * 40 for i in range(22))[:1024]


def test_indexed_browser_fields_across_requests(conn):
    """Fields a browser sends on every request, from the table each time after
    the first (a name outside the static table, a value over 255 octets, a
    1 KiB cookie): the server keeps its verdict on them and points at them;
    each request still sees exactly their values."""
    long_a = "a" * 300
    first = echo(conn, base(conn) + hp_literal("x-a", long_a, "incremental")
                 + hp_literal("x-b", "?1", "incremental")
                 + hp_literal(None, BIG_COOKIE, "incremental", name_index=32))
    assert (first["a"], first["b"], first["cookie"]) == (long_a, "?1", BIG_COOKIE)
    for _ in range(5):   # newest first: cookie 62, x-b 63, x-a 64
        body = echo(conn, base(conn) + hp_indexed(64) + hp_indexed(63) + hp_indexed(62))
        assert (body["a"], body["b"], body["cookie"]) == (long_a, "?1", BIG_COOKIE)


def test_indexed_fields_in_another_order(conn):
    """on_header guesses each field's kept verdict from the order of the
    request before: fields from the table in another order, a subset, one of
    them twice, or new ones pushing kept verdicts out between requests, must
    only cost time; each request sees exactly its own values."""
    # newest first: cookie 62, x-c 63, x-b 64, x-a 65
    echo(conn, base(conn) + hp_literal("x-a", "1", "incremental")
         + hp_literal("x-b", "2", "incremental") + hp_literal("x-c", "3", "incremental")
         + hp_literal(None, BIG_COOKIE, "incremental", name_index=32))
    fields = {65: ("a", "1"), 64: ("b", "2"), 63: ("c", "3"), 62: ("cookie", BIG_COOKIE)}
    orders = [(65, 64, 63, 62), (65, 64, 63, 62), (62, 63, 64, 65), (64, 65), (63,),
              (65, 63, 62), (), (64, 64), (65, 64, 63, 62), (62,), (65, 64, 63, 62)]
    for round_ in range(3):
        for order in orders:
            body = echo(conn, base(conn) + b"".join(hp_indexed(i) for i in order))
            want = {"a": "", "b": "", "c": "", "cookie": ""}
            for i in order:  # {{header.x}} is the first x
                key, value = fields[i]
                want[key] = want[key] or value
            got = {k: body[k] for k in want}
            assert got == want, (round_, order)
        # 48 fresh x-c values, never indexed by the client (so the table
        # above stays as it is) but kept by the server, push kept verdicts
        # out of their sets: the guesses point at other fields' entries
        for j in range(48):
            value = f"fresh-{round_}-{j:02d}"
            assert echo(conn, base(conn) + hp_literal("x-c", value, "without"))["c"] == value


def test_indexed_cookie_joined_with_crumbs(conn):
    """8.2.3: a cookie from the table and a literal crumb are joined in the
    order sent, whichever comes first; the next request has its own cookie."""
    echo(conn, base(conn) + hp_literal(None, BIG_COOKIE, "incremental", name_index=32))
    crumb = hp_literal(None, "k=v", "without", name_index=32)
    assert echo(conn, base(conn) + hp_indexed(62) + crumb)["cookie"] == BIG_COOKIE + "; k=v"
    assert echo(conn, base(conn) + crumb + hp_indexed(62))["cookie"] == "k=v; " + BIG_COOKIE
    both = echo(conn, base(conn) + hp_indexed(62) + hp_indexed(62))["cookie"]
    assert both == BIG_COOKIE + "; " + BIG_COOKIE
    assert echo(conn, base(conn) + hp_indexed(62))["cookie"] == BIG_COOKIE
