"""Frame floods: rapid reset (CVE-2023-44487) and the frames that cost the server
work but produce no request (SETTINGS, PING, empty DATA, PRIORITY, unknown
types, WINDOW_UPDATE). Debian's nghttp2 1.52 has no glitch limiter, so the
daemon counts these itself; a flood ends with GOAWAY ENHANCE_YOUR_CALM while a
good client on another connection keeps being served.

Counts: $CELERIS_ATTACK_FRAMES frames per flood (default 100,000),
$CELERIS_ATTACK_RESETS stream open+cancel pairs (default 50,000).
"""

import os
import time

import pytest

import rawh2 as R
from hostile import SCALE
from rawh2 import RawH2

FRAMES = int(os.environ.get("CELERIS_ATTACK_FRAMES", 100_000))
RESETS = int(os.environ.get("CELERIS_ATTACK_RESETS", 50_000))
CALM = (R.ENHANCE_YOUR_CALM,)
# The whole flood is written within FLOOD_TIME s; the GOAWAY must come within
# GOAWAY_WITHIN s of the first byte.
FLOOD_TIME = 4.0
GOAWAY_WITHIN = 3.0 * SCALE


def attacker(srv, **kw):
    a = RawH2(srv.port, **kw)
    assert a.read_until(lambda: a.server_settings is not None, 5), a.describe()
    return a


# ---- rapid reset ------------------------------------------------------------

def pairs_client_cancel(n):
    """HEADERS (a complete GET) then RST_STREAM(CANCEL), stream after stream."""
    hb = R.request(1, "/small")
    rs = R.rst(1, R.CANCEL)
    return b"".join(R.with_sid(hb, s) + R.with_sid(rs, s) for s in range(1, 2 * n, 2))


def pairs_made_you_reset(n):
    """HEADERS of a malformed request (a connection-specific header, RFC 9113
    8.2.2): a stream error, so the server resets each stream itself (the
    MadeYouReset variant, CVE-2025-8671: the resets are the server's, the cost
    of opening and tearing down a stream is the same)."""
    hb = R.headers(1, R.block(R.request_headers(extra=[("connection", "close")])))
    return b"".join(R.with_sid(hb, s) for s in range(1, 2 * n, 2))


RAPID = {
    # name: (builder, streams per batch or None for one burst, wait for the
    # server's answer to each batch)
    "client_cancel_burst": (pairs_client_cancel, None, False),
    "client_cancel_paced": (pairs_client_cancel, 100, False),
    "made_you_reset_paced": (pairs_made_you_reset, 50, True),
}


@pytest.mark.parametrize("variant", list(RAPID))
def test_rapid_reset(target, variant):
    """RESETS streams opened and cancelled as fast as possible, in one burst or in
    batches with the answers read between (staying under max_concurrent_streams):
    GOAWAY ENHANCE_YOUR_CALM well before the end."""
    srv = target.start()
    a = attacker(srv)
    build, batch, wait = RAPID[variant]
    blob = build(RESETS)
    t0 = time.monotonic()
    if batch:
        # Each batch's streams are answered (or reset) before the next goes, so
        # the open-stream count stays under max_concurrent_streams (128).
        size = batch * (len(blob) // RESETS)
        deadline = t0 + FLOOD_TIME
        for i, off in enumerate(range(0, len(blob), size)):
            if a.goaway is not None or a.closed or time.monotonic() > deadline:
                break
            a.send(blob[off:off + size], timeout=2.0)
            done = (i + 1) * batch if wait else 0
            a.read_until(lambda: len(a.resets) + len(a.ended) >= done or a.goaway is not None,
                         2.0 if wait else 0.0005)
    else:
        a.flood(blob, FLOOD_TIME)
    target.expect_goaway(a, CALM, t0, GOAWAY_WITHIN)
    if a.goaway:
        # Streams the server let through before it stopped: far fewer than sent.
        target.check(a.goaway[0] < RESETS,
                     f"GOAWAY last_stream_id {a.goaway[0]}: over half of the {RESETS} streams "
                     f"were processed before the connection was ended")
    a.close()
    target.finish()


def test_rapid_reset_configured_threshold(target):
    """limits.reset_burst/reset_rate are honoured: 100 cancelled streams pass
    at reset_burst 150; 300 more end the connection with ENHANCE_YOUR_CALM."""
    srv = target.start(limits={"reset_burst": 150, "reset_rate": 1})
    a = attacker(srv)
    blob = pairs_client_cancel(400)
    pair = len(blob) // 400
    a.flood(blob[:100 * pair], 3.0)
    a.send(R.ping(b"pingpong"))
    a.read_until(lambda: a.counts.get(R.PING, 0) >= 1 or a.goaway is not None, 3.0)
    target.check(a.goaway is None and not a.closed,
                 f"100 cancelled streams (reset_burst 150) ended the connection: {a.describe()}")
    t0 = time.monotonic()
    a.flood(blob[100 * pair:], 3.0)
    target.expect_goaway(a, CALM, t0, 3.0 * SCALE)
    a.close()
    target.finish()


# ---- floods of frames that open nothing ------------------------------------

def flood_frames(kind, n):
    """(frames to open the scene, the flood) for KIND."""
    upload = R.request(1, "/upload", "POST", end_stream=False)
    if kind == "settings":
        return b"", R.settings() * n
    if kind == "settings_values":
        return b"", R.settings({R.INITIAL_WINDOW_SIZE: 65535, R.ENABLE_PUSH: 0}) * n
    if kind == "ping":
        return b"", R.ping() * n
    if kind == "empty_data":
        return upload, R.data(1) * n
    if kind == "priority_one_stream":
        return b"", R.priority(3, depends_on=0) * n
    if kind == "priority_idle_streams":
        p = R.priority(3, depends_on=0)
        return b"", b"".join(R.with_sid(p, s) for s in range(3, 2 * n + 3, 2))
    if kind == "priority_open_stream":
        return upload, R.priority(1, depends_on=0, weight=200) * n
    if kind == "unknown_type":
        return b"", R.unknown(0xEE, 0, b"x") * n
    if kind == "unknown_type_on_stream":
        return upload, R.unknown(0xBB, 1, b"") * n
    if kind == "window_update_connection":
        return b"", R.window_update(0, 1) * n
    if kind == "window_update_stream":
        return upload, R.window_update(1, 1) * n
    raise ValueError(kind)


FLOODS = ["settings", "settings_values", "ping", "empty_data", "priority_one_stream",
          "priority_idle_streams", "priority_open_stream", "unknown_type",
          "unknown_type_on_stream", "window_update_connection", "window_update_stream"]


@pytest.mark.parametrize("kind", FLOODS)
def test_frame_flood(target, kind):
    """FRAMES frames written as fast as the socket takes them, reading whatever
    comes back (so SETTINGS and PING are acknowledged as fast as the client
    reads): the connection ends with GOAWAY ENHANCE_YOUR_CALM."""
    srv = target.start()
    a = attacker(srv)
    pre, blob = flood_frames(kind, FRAMES)
    if pre:
        a.send(pre)
    t0 = time.monotonic()
    a.flood(blob, FLOOD_TIME)
    target.expect_goaway(a, CALM, t0, GOAWAY_WITHIN)
    a.close()
    target.finish()


@pytest.mark.parametrize("kind", ["ping", "settings", "priority_one_stream", "empty_data",
                                  "window_update_connection"])
def test_paced_flood(target, kind):
    """The same frames in batches of 200 with the answers read between batches,
    so that no single read holds enough of them to trip nghttp2's own outbound
    ACK limit (1000 queued): the daemon's own count must end it."""
    srv = target.start()
    a = attacker(srv)
    pre, blob = flood_frames(kind, FRAMES)
    if pre:
        a.send(pre)
    t0 = time.monotonic()
    a.flood_batches(blob, 200 * (len(blob) // FRAMES), FLOOD_TIME)
    target.expect_goaway(a, CALM, t0, FLOOD_TIME)
    a.close()
    target.finish()


def test_below_threshold_is_not_a_flood(target):
    """A client that sends a few hundred PINGs, SETTINGS, PRIORITY and
    WINDOW_UPDATE frames along with its requests is not cut off."""
    srv = target.start()
    a = attacker(srv)
    mix = (R.ping() + R.settings() + R.priority(3) + R.window_update(0, 1000)) * 50
    for i in range(4):
        sid = 2 * i + 1
        a.send(mix + R.request(sid, "/small"))
        a.read_until(lambda: sid in a.ended or a.goaway is not None, 3.0)
    target.check(a.goaway is None and not a.closed and all(a.status.get(s) == 200
                                                              for s in (1, 3, 5, 7)),
                 f"a client under the thresholds was cut off: {a.describe()}, status {a.status}")
    a.close()
    target.finish()


def test_glitch_configured_threshold(target):
    """limits.glitch_burst/glitch_rate are honoured: 40 PINGs pass at
    glitch_burst 50, 100 more end the connection with ENHANCE_YOUR_CALM."""
    srv = target.start(limits={"glitch_burst": 50, "glitch_rate": 1})
    a = attacker(srv)
    a.send(R.ping() * 40)
    a.read_until(lambda: a.counts.get(R.PING, 0) >= 40 or a.goaway is not None, 3.0)
    target.check(a.goaway is None and a.counts.get(R.PING, 0) == 40,
                 f"40 PINGs at glitch_burst 50: {a.describe()}")
    t0 = time.monotonic()
    a.flood(R.ping() * 100, 3.0)
    target.expect_goaway(a, CALM, t0, 3.0 * SCALE)
    a.close()
    target.finish()


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_ack_flood_not_reading(target, kind):
    """PINGs or SETTINGS from a client that never reads the ACKs: what the
    server queues for it stays bounded (memory), and the connection is closed
    by GOAWAY ENHANCE_YOUR_CALM or by write_timeout (1 s) once output stalls."""
    srv = target.start(limits={"write_timeout": "1s"})
    a = attacker(srv, rcvbuf=16384)
    _, blob = flood_frames(kind, FRAMES)
    t0 = time.monotonic()
    sent = a.send(blob, timeout=FLOOD_TIME)
    # Stay deaf past the write timeout, then look.
    time.sleep(max(0.0, 1.0 + 1.0 - (time.monotonic() - t0)))
    target.expect_closed(a, t0, FLOOD_TIME + 1.0 + 2.0,
                                        f"{kind} flood, ACKs never read")
    if a.goaway is not None:
        target.check(a.goaway[1] == R.ENHANCE_YOUR_CALM,
                     f"GOAWAY {R.err_name(a.goaway[1])} instead of ENHANCE_YOUR_CALM: "
                     f"{a.describe()}")
    print(f"attacker wrote {sent} of {len(blob)} bytes before its writes stalled")
    a.close()
    target.finish()


@pytest.mark.parametrize("entries,code", [
    # Legal frame size (12,000 bytes) but far more entries than any client needs.
    ([(0x100 + i, 1) for i in range(2000)], R.ENHANCE_YOUR_CALM),
    # The same known setting 2,000 times.
    ([(R.INITIAL_WINDOW_SIZE, 65535)] * 2000, R.ENHANCE_YOUR_CALM),
    # 18,000 bytes: past SETTINGS_MAX_FRAME_SIZE (16,384), RFC 9113 4.2.
    ([(0x100 + i, 1) for i in range(3000)], R.FRAME_SIZE_ERROR),
], ids=["2000_unknown_ids", "2000_repeats", "oversized_frame"])
def test_oversized_settings(target, entries, code):
    srv = target.start()
    a = attacker(srv)
    t0 = time.monotonic()
    a.send(R.settings_entries(entries))
    target.expect_goaway(a, (code,), t0, 2.0 * SCALE)
    a.close()
    target.finish()
