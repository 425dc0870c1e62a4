"""Resource exhaustion: streams stuck on a zero window, connection floods past
limits.max_connections, streams past max_concurrent_streams."""

import select
import time

import pytest

import rawh2 as R
from hostile import SCALE, cpu_seconds
from rawh2 import RawH2

FAST = {"idle_timeout": "1s", "write_timeout": "1s", "header_timeout": "1s"}


def attacker(srv, **kw):
    a = RawH2(srv.port, **kw)
    assert a.read_until(lambda: a.server_settings is not None, 5), a.describe()
    return a


def pump_all(conns, seconds, until=None):
    """Reads from every connection for SECONDS (bounded), handling frames, or
    until UNTIL() holds."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        live = [c for c in conns if not c.closed]
        if left <= 0 or not live or (until is not None and until()):
            return
        poller = select.poll()
        by_fd = {}
        for c in live:
            poller.register(c.sock, select.POLLIN)
            by_fd[c.sock.fileno()] = c
        for fd, _ in poller.poll(max(1, int(left * 1000))):
            by_fd[fd]._recv_some(0)


# ---- zero window ------------------------------------------------------------

CONNS = 10
STREAMS = 100


@pytest.mark.parametrize("how", ["initial_window_0", "never_window_update",
                                 "initial_window_0_pinging"])
def test_zero_window(target, how):
    """CONNS connections each ask for the 8 MiB body on STREAMS streams and never
    let it flow: SETTINGS_INITIAL_WINDOW_SIZE 0, or the default window never
    widened by WINDOW_UPDATE (the socket is read), or window 0 with a PING every
    0.25 s so the client is not silent. Memory stays bounded and every connection
    is closed once idle_timeout/write_timeout (1 s) pass: responses that cannot
    progress are output that makes no progress."""
    srv = target.start(limits=FAST)
    settings = {R.INITIAL_WINDOW_SIZE: 0} if how.startswith("initial_window_0") else {}
    conns = [attacker(srv, local_settings=settings) for _ in range(CONNS)]
    for c in conns:
        c.send(b"".join(R.request(2 * i + 1, "/big") for i in range(STREAMS)))
    t1 = time.monotonic()
    bound = 1.0 + 1.0 + 2.0 * SCALE  # idle_timeout, write_timeout, slack
    while time.monotonic() < t1 + bound and not all(c.closed for c in conns):
        if how.endswith("pinging"):
            for c in conns:
                if not c.closed:
                    c.send(R.ping(b"stillhere"[:8]), timeout=0.5)
        pump_all(conns, 0.25)
    open_ = [c for c in conns if not c.closed]
    headers = sum(c.counts.get(R.HEADERS, 0) for c in conns)
    target.check(not open_,
                 f"{len(open_)} of {CONNS} zero-window connections still open "
                 f"{time.monotonic() - t1:.1f} s after their requests (bound {bound} s); "
                 f"first: {open_[0].describe() if open_ else ''}")
    target.check(headers >= CONNS * STREAMS // 2,
                 f"only {headers} responses started of {CONNS * STREAMS} (did the requests "
                 f"arrive?)")
    for c in conns:
        c.close()
    target.finish()


# ---- connection flood -------------------------------------------------------

def test_connection_flood(target):
    """200 connections at max_connections 50 (one worker, the good client holds
    one slot): at most 49 are served, the rest wait in the backlog while the
    daemon uses next to no CPU (no busy loop); when 20 served ones close, 20
    waiting ones are taken on."""
    srv = target.start(limits={"max_connections": 50})
    pending = []
    for _ in range(200):
        pending.append(RawH2(srv.port, timeout=3.0))  # connect + preface + SETTINGS
    pump_all(pending, 1.5,
             until=lambda: sum(c.server_settings is not None for c in pending) >= 49)
    pump_all(pending, 0.3)  # any more would be a breach of the limit
    served = [c for c in pending if c.server_settings is not None or c.closed]
    target.check(40 <= len(served) <= 49,
                 f"{len(served)} of 200 connections answered at max_connections 50 "
                 f"(the good client holds one slot); expected 40..49")
    c0, w0 = cpu_seconds(srv.pid), time.monotonic()
    pump_all(pending, 2.0)
    cpu = (cpu_seconds(srv.pid) - c0) / (time.monotonic() - w0)
    print(f"daemon CPU while 150 connections waited: {100 * cpu:.1f}% of a core")
    # a busy loop takes a whole core; the sanitizers slow each wake-up
    bound = min(0.25 * SCALE, 0.6)
    target.check(cpu < bound, f"the daemon used {100 * cpu:.0f}% of a core while 150 "
                              f"connections waited (bound {100 * bound:.0f}%): busy loop "
                              f"at the limit?")
    served2 = [c for c in pending if c.server_settings is not None]
    target.check(len(served2) <= 49, f"{len(served2)} connections served at the limit (49)")
    closed_early = [c for c in pending if c.closed]
    target.check(not closed_early, f"{len(closed_early)} connections closed by the daemon "
                                   f"while at the limit: {closed_early[:1] and closed_early[0].describe()}")
    # Free 20 slots.
    for c in served2[:20]:
        c.close()
    rest = [c for c in pending if c not in served2[:20]]
    pump_all(rest, 2.0, until=lambda: sum(c.server_settings is not None for c in rest)
             >= len(served2))
    pump_all(rest, 0.3)
    served3 = [c for c in rest if c.server_settings is not None]
    newly = len(served3) - (len(served2) - 20)
    target.check(15 <= newly <= 20 and len(served3) <= 49,
                 f"after 20 served connections closed, {newly} waiting ones were served "
                 f"({len(served3)} served now; expected 20 more, at most 49)")
    # Every served one can make a request.
    for c in served3[:5]:
        c.send(R.request(1))
    pump_all(served3[:5], 2.0, until=lambda: all(1 in c.ended for c in served3[:5]))
    target.check(all(c.status.get(1) == 200 for c in served3[:5]),
                 f"requests on newly served connections: {[c.status.get(1) for c in served3[:5]]}")
    for c in rest:
        c.close()
    target.finish()


# ---- streams past max_concurrent_streams ---------------------------------

def test_streams_past_max_concurrent(target):
    """10 streams held open (POSTs whose bodies are not sent) at
    max_concurrent_streams 10, then 30 more: each extra one is refused with
    RST_STREAM REFUSED_STREAM or PROTOCOL_ERROR, or the connection ends with
    GOAWAY PROTOCOL_ERROR (RFC 9113 5.1.2); when it survives, the 10 held
    streams complete normally."""
    srv = target.start(limits={"max_concurrent_streams": 10})
    a = attacker(srv)
    target.check(a.server_settings.get(R.MAX_CONCURRENT_STREAMS) == 10,
                 f"SETTINGS_MAX_CONCURRENT_STREAMS advertised: {a.server_settings}")
    held = [2 * i + 1 for i in range(10)]
    extra = [2 * i + 1 for i in range(10, 40)]
    a.send(b"".join(R.request(s, "/upload", "POST", end_stream=False) for s in held))
    a.send(b"".join(R.request(s, "/small") for s in extra))
    a.read_until(lambda: all(s in a.resets for s in extra) or a.goaway is not None, 3.0)
    if a.goaway is not None:
        target.check(a.goaway[1] == R.PROTOCOL_ERROR,
                     f"GOAWAY {R.err_name(a.goaway[1])} instead of PROTOCOL_ERROR: {a.describe()}")
        target.check(not any(s in a.status for s in extra),
                     f"streams past the limit were answered: "
                     f"{[(s, a.status[s]) for s in extra if s in a.status]}")
    else:
        codes = {a.resets.get(s) for s in extra}
        target.check(codes <= {R.REFUSED_STREAM, R.PROTOCOL_ERROR},
                     f"streams past the limit: resets {[(s, a.resets.get(s)) for s in extra]}, "
                     f"statuses {[(s, a.status.get(s)) for s in extra if s in a.status]}")
        a.send(b"".join(R.data(s, b"x", end_stream=True) for s in held))
        a.read_until(lambda: all(s in a.ended for s in held) or a.goaway is not None, 3.0)
        target.check(all(a.status.get(s) == 200 for s in held),
                     f"held streams after the refusals: {[(s, a.status.get(s)) for s in held]}; "
                     f"{a.describe()}")
    a.close()
    target.finish()


def test_refused_stream_flood(target):
    """10 streams held open at max_concurrent_streams 10, then 20,000 more
    HEADERS, each refused: that is a flood of streams the server must tear
    down (a rapid-reset variant); it ends with GOAWAY PROTOCOL_ERROR (the
    excess treated as a connection error) or ENHANCE_YOUR_CALM, in bounded
    time."""
    srv = target.start(limits={"max_concurrent_streams": 10})
    a = attacker(srv)
    held = [2 * i + 1 for i in range(10)]
    a.send(b"".join(R.request(s, "/upload", "POST", end_stream=False) for s in held))
    n = 20_000
    hb = R.request(1, "/small")
    blob = b"".join(R.with_sid(hb, s) for s in range(21, 21 + 2 * n, 2))
    t0 = time.monotonic()
    a.flood_batches(blob, 50 * len(hb), 6.0)
    target.expect_goaway(a, (R.PROTOCOL_ERROR, R.ENHANCE_YOUR_CALM), t0, 5.0 * SCALE)
    a.close()
    target.finish()
