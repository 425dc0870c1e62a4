"""The nghttp2-backed limits set from YAML reach the connection: each test runs
a daemon with the limit set low, where a peer past it is cut off, and one with
the default, where the same peer is not (so the YAML value is what decides).

  max_settings_entries  entries in one SETTINGS frame (default 32)
  max_outbound_ack      PING/SETTINGS ACKs queued for a client (default 1000)
  max_output_buffer     bytes queued for a connection before celerisd stops
                        reading it (default 256k)
"""
import socket
import time

import pytest

import rawh2 as R
from hostile import SCALE
from rawh2 import RawH2

# PING counts as a glitch: keep that defence out of the way of the one tested
NO_GLITCH = {"glitch_burst": 100_000_000, "glitch_rate": 100_000_000}


def attacker(srv, **kw):
    a = RawH2(srv.port, **kw)
    assert a.read_until(lambda: a.server_settings is not None, 5 * SCALE), a.describe()
    return a


@pytest.mark.parametrize("limit", [8, None], ids=["limit_8", "default"])
def test_max_settings_entries(target, limit):
    """8 entries pass at max_settings_entries 8; 9 end the connection with
    GOAWAY ENHANCE_YOUR_CALM. With the default (32), 9 pass too."""
    srv = target.start(limits={"max_settings_entries": limit} if limit else {})
    ok = attacker(srv)
    ok.send(R.settings_entries([(R.INITIAL_WINDOW_SIZE, 65535)] * 8) + R.ping(b"eight..."))
    ok.read_until(lambda: ok.counts.get(R.PING, 0) >= 1 or ok.goaway is not None, 3 * SCALE)
    target.check(ok.goaway is None and ok.counts.get(R.PING, 0) == 1,
                 f"8 SETTINGS entries at a limit of {limit or 32}: {ok.describe()}")
    ok.close()
    a = attacker(srv)
    t0 = time.monotonic()
    a.send(R.settings_entries([(R.INITIAL_WINDOW_SIZE, 65535)] * 9) + R.ping(b"nine...."))
    if limit:
        target.expect_goaway(a, (R.ENHANCE_YOUR_CALM,), t0, 3.0 * SCALE)
    else:
        a.read_until(lambda: a.counts.get(R.PING, 0) >= 1 or a.goaway is not None, 3 * SCALE)
        target.check(a.goaway is None and a.counts.get(R.PING, 0) == 1,
                     f"9 SETTINGS entries at the default limit (32): {a.describe()}")
    a.close()
    target.finish()


@pytest.mark.parametrize("limit", [50, None], ids=["limit_50", "default"])
def test_max_outbound_ack(target, limit):
    """200 PINGs in one write are read at once, so their 200 ACKs queue in
    nghttp2 before any is sent: past max_outbound_ack 50 the connection ends;
    at the default (1000) every ACK comes back."""
    lim = dict(NO_GLITCH)
    if limit:
        lim["max_outbound_ack"] = limit
    srv = target.start(limits=lim)
    a = attacker(srv)
    a.send(b"".join(R.ping(b"%08d" % i) for i in range(200)))
    a.read_until(lambda: a.counts.get(R.PING, 0) >= 200, 5 * SCALE)
    if limit:
        a.wait_closed(3 * SCALE)
        target.check(a.closed and a.counts.get(R.PING, 0) < 200,
                     f"200 PINGs at once past max_outbound_ack {limit}: {a.describe()}")
        if a.goaway is not None:
            target.check(a.goaway[1] == R.ENHANCE_YOUR_CALM, f"GOAWAY: {a.describe()}")
    else:
        target.check(not a.closed and a.goaway is None and a.counts.get(R.PING, 0) == 200,
                     f"200 PINGs at the default max_outbound_ack (1000): {a.describe()}")
    a.close()
    target.finish()


@pytest.mark.parametrize("limit", ["16k", "64m"])
def test_max_output_buffer(target, limit):
    """A client opens every window, asks for the 8 MiB body and reads nothing.
    At max_output_buffer 16k celerisd queues at most that much, then stops
    reading the connection: the client's further writes (8 MiB of frames of an
    unknown type, which the server ignores) stall after what the kernel buffers
    hold. At 64m the whole body fits the queue, so the server reads on and
    takes all 8 MiB."""
    srv = target.start(limits=dict(NO_GLITCH, max_output_buffer=limit))
    a = attacker(srv, local_settings={R.INITIAL_WINDOW_SIZE: 2**31 - 1}, rcvbuf=16384)
    a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    a.send(R.window_update(0, 2**31 - 1 - 65535) + R.request(1, "/big"))
    time.sleep(0.5 * SCALE)  # the server fills the socket and its queue
    junk = R.unknown(0xEE, 0, b"j" * 16000) * (8 * 1024 * 1024 // 16009)
    # A stalled reader stays stalled: 3 s tell it. A server that reads on may be
    # slow on a loaded machine: it gets 20 s (times the sanitizer factor).
    t0 = time.monotonic()
    sent = a.send(junk, timeout=3.0 if limit == "16k" else 20.0 * SCALE)
    print(f"max_output_buffer {limit}: wrote {sent} of {len(junk)} bytes "
          f"in {time.monotonic() - t0:.1f} s")
    if limit == "16k":
        target.check(sent < 2 * 1024 * 1024,
                     f"the server read {sent} bytes from a client that read nothing while "
                     f"its output was past max_output_buffer {limit}")
    else:
        target.check(sent == len(junk),
                     f"only {sent} of {len(junk)} bytes taken at max_output_buffer {limit}")
    a.close()
    target.finish()
