"""Header attacks: CONTINUATION floods (CVE-2024-27316 family), HPACK bombs and
oversized header lists. nghttp2 only advertises SETTINGS_MAX_HEADER_LIST_SIZE;
the daemon enforces limits.max_header_list_size itself and answers 431
(README, Limits), keeping the connection."""

import os
import time

import pytest

import rawh2 as R
from hostile import SCALE, cpu_seconds
from rawh2 import RawH2

CALM = (R.ENHANCE_YOUR_CALM,)
FRAMES = int(os.environ.get("CELERIS_ATTACK_FRAMES", 100_000))


def attacker(srv, **kw):
    a = RawH2(srv.port, **kw)
    assert a.read_until(lambda: a.server_settings is not None, 5), a.describe()
    return a


def big_fields_fragment(size=16000):
    """A fragment of complete literal fields (not indexed), about SIZE bytes."""
    out = b""
    i = 0
    while len(out) < size - 4100:
        out += R.hp_literal(f"x-flood-{i}", "v" * 4000)
        i += 1
    return out


def continuation_flood(kind, n):
    """HEADERS without END_HEADERS, then CONTINUATIONs that never end the block."""
    head = R.headers(1, R.hp_request(), end_stream=True, end_headers=False)
    if kind == "big":
        # 16 kB of header fields in every frame: the list grows without bound.
        return head + R.continuation(1, big_fields_fragment()) * min(n, 4000)
    if kind == "tiny":
        # One byte of one endless header value per frame.
        field = R.hp_literal("x-tiny", "t" * 100_000)
        return head + b"".join(R.continuation(1, field[i:i + 1]) for i in range(min(n, len(field))))
    if kind == "empty":
        return head + R.continuation(1, b"") * n
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["big", "tiny", "empty"])
def test_continuation_flood(target, kind):
    """A header block that never ends: GOAWAY ENHANCE_YOUR_CALM (README:
    limits.max_continuations), quickly, and nothing buffered meanwhile."""
    srv = target.start()
    a = attacker(srv)
    blob = continuation_flood(kind, FRAMES)
    t0 = time.monotonic()
    a.flood(blob, 6.0)
    target.expect_goaway(a, CALM, t0, 3.0 * SCALE)
    target.check(1 not in a.status, f"stream 1 of an unfinished block was answered: {a.status}")
    a.close()
    target.finish()


def test_continuations_within_limit(target):
    """Control: a legitimate block split over 8 CONTINUATIONs (the default
    max_continuations) is a request like any other."""
    srv = target.start()
    a = attacker(srv)
    hb = R.hp_request() + R.hp_literal("x-pad", "p" * 900)
    step = -(-len(hb) // 9)
    a.send(R.header_frames(1, hb, chunk=step))
    a.read_until(lambda: 1 in a.ended or a.goaway is not None, 3.0)
    target.check(a.status.get(1) == 200 and a.goaway is None,
                 f"a block in 9 frames was refused: status {a.status}, {a.describe()}")
    a.close()
    target.finish()


# ---- HPACK bomb -------------------------------------------------------------

BOMB_VALUE = 4000          # one dynamic-table entry of 6 + 4000 + 32 bytes
BOMB_REFS = 12000          # ~48 MB of header list from ~16 kB of block


def bomb_block(insert, refs=BOMB_REFS):
    """The request, then (when INSERT) the big field added to the dynamic table,
    then REFS one-byte references to it (index 62)."""
    hb = R.hp_request()
    if insert:
        hb += R.hp_literal("x-bomb", "b" * BOMB_VALUE, index=True)
    return hb + R.hp_indexed(62) * refs


def send_bombs(a, streams, budget):
    """Bombs on STREAMS streams, each sent once the one before was answered."""
    t0 = time.monotonic()
    for i in range(streams):
        sid = 2 * i + 1
        a.send(R.header_frames(sid, bomb_block(insert=(i == 0))))
        if not a.read_until(lambda: sid in a.ended or sid in a.resets or a.goaway is not None
                            or a.closed, 5.0):
            break
        if time.monotonic() - t0 > budget:
            break
    return time.monotonic() - t0


def test_hpack_bomb(target):
    """A 4 kB field put in the dynamic table once and referenced 12,000 times
    in one header block (48 MB decoded from ~16 kB sent). A header list this far
    past the limit (over 4x) is an attack, not a mistake: the daemon ends the
    connection with GOAWAY ENHANCE_YOUR_CALM rather than decode the rest, and
    stays bounded in memory; other clients never notice."""
    srv = target.start()
    a = attacker(srv)
    t0 = time.monotonic()
    send_bombs(a, 1, 5.0)
    target.expect_goaway(a, (R.ENHANCE_YOUR_CALM,), t0, 3.0 * SCALE)
    a.close()
    target.finish()


BOMBS = 200
BOMB_CPU = 2.5 * SCALE


def test_hpack_bomb_repeated(target):
    """200 bombs one after the other (9.6 GB of header list from 3.2 MB): each
    is answered 431 unless the daemon ends the connection with GOAWAY
    ENHANCE_YOUR_CALM first, and the daemon's CPU time for all of it stays
    under BOMB_CPU s: a bomb must not cost work in proportion to its decoded
    size once the limit is passed."""
    srv = target.start()
    a = attacker(srv)
    c0 = cpu_seconds(srv.pid)
    took = send_bombs(a, BOMBS, 9.0)
    cpu = cpu_seconds(srv.pid) - c0
    sids = [2 * i + 1 for i in range(BOMBS)]
    answered = [s for s in sids if a.status.get(s) == 431]
    other = [(s, a.status.get(s), a.resets.get(s)) for s in sids
             if s in a.status and a.status[s] != 431 or s in a.resets][:5]
    if a.goaway is not None:
        target.check(a.goaway[1] == R.ENHANCE_YOUR_CALM,
                     f"GOAWAY {R.err_name(a.goaway[1])} after {len(answered)} bombs: {a.describe()}")
    else:
        target.check(len(answered) == BOMBS,
                     f"{len(answered)} of {BOMBS} bombs answered 431 in {took:.1f} s "
                     f"(daemon CPU {cpu:.2f} s); others {other}; {a.describe()}")
    target.check(not other, f"bombs not answered 431: {other}")
    target.check(cpu < BOMB_CPU,
                 f"daemon CPU {cpu:.2f} s for {len(answered)} bombs "
                 f"({1000 * cpu / max(1, len(answered)):.1f} ms each, bound {BOMB_CPU} s for "
                 f"{BOMBS}) in {took:.1f} s wall")
    a.close()
    target.finish()


def test_hpack_bomb_table_size_games(target):
    """A client that asks for a dynamic table larger than SETTINGS_HEADER_TABLE_SIZE
    (4096, the default we never raise) is a COMPRESSION_ERROR (RFC 7541 4.2, 6.3)."""
    srv = target.start()
    a = attacker(srv)
    update = R.encode_table_size(1 << 20)
    t0 = time.monotonic()
    a.send(R.headers(1, update + R.hp_request()))
    target.expect_goaway(a, (R.COMPRESSION_ERROR,), t0, 2.0 * SCALE)
    a.close()
    target.finish()


# ---- oversized header lists -------------------------------------------------

LIMIT = 16 * 1024


def list_block(kind):
    """A request whose header list (names + values + 32 per field, pseudo-headers
    included) is over LIMIT, or just under it for "under"."""
    hb = R.hp_request()
    if kind == "many_fields":
        return hb + b"".join(R.hp_literal(f"x-field-{i}", "f" * 300) for i in range(100))
    if kind == "one_big_field":
        return hb + R.hp_literal("x-big", "B" * 30_000)
    if kind == "huffman_field":
        # 40,000 bytes decoded from ~25,000 sent.
        return hb + R.hp_literal("x-huff", "a" * 40_000, huffman=True)
    if kind == "many_empty_fields":
        # 600 fields of 1 + 0 bytes: 600 * 33 = 19,800 counted, ~2,400 sent.
        return hb + R.hp_literal("x", "") * 600
    if kind == "cookie_crumbs":
        return hb + b"".join(R.hp_literal("cookie", f"c{i}=" + "k" * 100) for i in range(200))
    if kind == "under":
        # ~14 kB counted with the pseudo-headers: must be served.
        return hb + b"".join(R.hp_literal(f"x-field-{i}", "f" * 300) for i in range(40))
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["many_fields", "one_big_field", "huffman_field",
                                  "many_empty_fields", "cookie_crumbs", "under"])
def test_header_list_size(target, kind):
    """limits.max_header_list_size (16k here) is enforced by the daemon: 431 on
    the stream, the connection stays usable; a list under the limit is served."""
    srv = target.start(limits={"max_header_list_size": "16k"})
    a = attacker(srv)
    target.check(a.server_settings.get(R.MAX_HEADER_LIST_SIZE) == LIMIT,
                 f"SETTINGS_MAX_HEADER_LIST_SIZE advertised: {a.server_settings}")
    a.send(R.header_frames(1, list_block(kind), chunk=16384))
    a.read_until(lambda: 1 in a.ended or 1 in a.resets or a.goaway is not None, 3.0)
    want = 200 if kind == "under" else 431
    target.check(a.status.get(1) == want,
                 f"{kind}: expected {want}, got status {a.status.get(1)} "
                 f"reset {a.resets.get(1)}; {a.describe()}")
    a.send(R.headers(3, R.hp_request()))
    a.read_until(lambda: 3 in a.ended or a.goaway is not None, 3.0)
    target.check(a.status.get(3) == 200,
                 f"plain request after it: status {a.status.get(3)}, {a.describe()}")
    a.close()
    target.finish()


def test_oversized_lists_on_many_streams(target):
    """300 requests with 60 kB header lists each (~1,000 frames): all 431,
    memory bounded."""
    srv = target.start()
    a = attacker(srv)
    hb = R.hp_request() + b"".join(R.hp_literal(f"x-field-{i}", "f" * 1000) for i in range(60))
    frames = R.header_frames(1, hb + R.hp_literal("x-over", "o" * 6000))
    t0 = time.monotonic()
    n = 300
    for i in range(n):
        sid = 2 * i + 1
        a.send(_resid(frames, sid))
        if not a.read_until(lambda: sid in a.ended or a.goaway is not None or a.closed, 5.0):
            break
        if time.monotonic() - t0 > 8.0:
            break
    got = sum(1 for i in range(n) if a.status.get(2 * i + 1) == 431)
    target.check(got == n, f"{got} of {n} oversized lists answered 431 in "
                           f"{time.monotonic() - t0:.1f} s; {a.describe()}")
    a.close()
    target.finish()


def _resid(frames, sid):
    """FRAMES (a sequence of frames) with every stream id replaced by SID."""
    out = []
    off = 0
    while off < len(frames):
        length = int.from_bytes(frames[off:off + 3], "big")
        out.append(R.with_sid(frames[off:off + 9 + length], sid))
        off += 9 + length
    return b"".join(out)
