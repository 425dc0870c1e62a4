"""Slow peers: slowloris (the preface dribbled, a header block never finished),
idle connections, stalled writes. The defences are the timeouts of README's
Limits, set low here: header_timeout, idle_timeout, write_timeout = 1 s."""

import time

import pytest

import rawh2 as R
from hostile import BIG_SIZE, SCALE
from rawh2 import RawH2

T = 1.0                 # each timeout under test
SLACK = 1.0 * SCALE     # what "closed within the timeout" may overrun by
FAST = {"header_timeout": "1s", "idle_timeout": "1s", "write_timeout": "1s"}


def dribble(a, payload, interval, until):
    """Sends PAYLOAD one byte at a time, INTERVAL s apart, reading (and so
    noticing a close) meanwhile, until it is all sent, the server closed or
    UNTIL (monotonic) passed. Returns the bytes sent."""
    sent = 0
    for i in range(len(payload)):
        if a.closed or time.monotonic() >= until:
            break
        if a.send(payload[i:i + 1], timeout=1.0) != 1:
            break
        sent += 1
        a.read_until(lambda: False, min(interval, max(0.0, until - time.monotonic())))
    return sent


def check_closed_in(target, a, t0, low, high, what):
    """The connection must have been ended between LOW and HIGH s after T0."""
    took = target.expect_closed(a, t0, high, what)
    if took is not False:
        target.check(took >= low, f"{what}: closed after {took:.2f} s, before the timeout "
                                  f"({low} s): {a.describe()}")
    return took


def test_preface_dribbled(target):
    """The preface one byte every 0.2 s (the whole would take 13 s; the timer
    counts from accept, the bytes do not extend it): closed after header_timeout."""
    srv = target.start(limits=FAST)
    a = RawH2(srv.port, preface=False)
    t0 = a.t0
    payload = R.PREFACE + R.settings() + R.request(1)
    dribble(a, payload, 0.2, t0 + T + SLACK)
    check_closed_in(target, a, t0, T - 0.3, T + SLACK, "preface dribbled")
    target.check(1 not in a.status, f"the dribbled request was answered: {a.describe()}")
    a.close()
    target.finish()


def test_silent_after_connect(target):
    """A TCP connection that never sends a byte: closed after header_timeout."""
    srv = target.start(limits=FAST)
    a = RawH2(srv.port, preface=False)
    check_closed_in(target, a, a.t0, T - 0.3, T + SLACK, "silent connection")
    a.close()
    target.finish()


def test_no_request_after_preface(target):
    """Preface and SETTINGS, then nothing (the SETTINGS ACK is sent, so the
    connection is healthy but asks for nothing): closed after header_timeout."""
    srv = target.start(limits=FAST)
    a = RawH2(srv.port)
    check_closed_in(target, a, a.t0, T - 0.3, T + SLACK, "no request after the preface")
    a.close()
    target.finish()


@pytest.mark.parametrize("how", ["silent", "frame_dribbled", "continuations_dribbled"])
def test_headers_never_finished(target, how):
    """A first header block that never ends: HEADERS without END_HEADERS and
    then silence, or the HEADERS frame itself one byte every 0.25 s, or an
    empty CONTINUATION every 0.2 s (under max_continuations until the timeout):
    closed after header_timeout (counted from accept)."""
    srv = target.start(limits=FAST)
    a = RawH2(srv.port)
    t0 = a.t0
    a.read_until(lambda: a.server_settings is not None, 1.0)
    head = R.headers(1, R.hp_request() + R.hp_literal("x-slow", "s" * 200),
                     end_stream=True, end_headers=False)
    if how == "silent":
        a.send(head)
    elif how == "frame_dribbled":
        dribble(a, head, 0.25, t0 + T + SLACK)
    else:
        a.send(head)
        for _ in range(20):
            if a.closed or time.monotonic() > t0 + T + SLACK:
                break
            a.send(R.continuation(1, b""))
            a.read_until(lambda: False, 0.2)
    check_closed_in(target, a, t0, T - 0.3, T + SLACK, f"header block never finished ({how})")
    target.check(1 not in a.status, f"the unfinished request was answered: {a.describe()}")
    a.close()
    target.finish()


def test_second_header_block_never_finished(target):
    """After one request was served, a second header block that never ends:
    header_timeout counts from where that block began (README: later header
    blocks count from when they began)."""
    srv = target.start(limits=dict(FAST, idle_timeout="3s"))
    a = RawH2(srv.port)
    a.send(R.request(1))
    a.read_until(lambda: 1 in a.ended, 3.0)
    target.check(a.status.get(1) == 200, f"first request: {a.describe()}")
    time.sleep(0.8)
    t1 = time.monotonic()
    a.send(R.headers(3, R.hp_request(), end_stream=True, end_headers=False))
    check_closed_in(target, a, t1, T - 0.3, T + SLACK, "second header block never finished")
    target.check(3 not in a.status, f"the unfinished request was answered: {a.describe()}")
    a.close()
    target.finish()


def test_idle_connection(target):
    """One request served, then silence: GOAWAY NO_ERROR and close after
    idle_timeout (README: GOAWAY first when idle)."""
    srv = target.start(limits=FAST)
    a = RawH2(srv.port)
    a.send(R.request(1))
    a.read_until(lambda: 1 in a.ended, 3.0)
    t1 = time.monotonic()
    check_closed_in(target, a, t1, T - 0.3, T + SLACK, "idle connection")
    target.check(a.goaway is not None and a.goaway[1] == R.NO_ERROR,
                 f"idle close without GOAWAY NO_ERROR first: {a.describe()}")
    a.close()
    target.finish()


def test_idle_kept_alive_with_pings(target):
    """One request, then only a PING every 0.2 s: nothing is in flight, so the
    connection is idle (README: a connection with nothing in flight is closed);
    PINGs must not hold it (and a slot of max_connections) open forever."""
    srv = target.start(limits=FAST)
    a = RawH2(srv.port)
    a.send(R.request(1))
    a.read_until(lambda: 1 in a.ended, 3.0)
    t1 = time.monotonic()
    while not a.closed and time.monotonic() < t1 + T + SLACK + 0.5:
        a.send(R.ping(b"keepaliv"))
        a.read_until(lambda: False, 0.2)
    check_closed_in(target, a, t1, T - 0.3, T + SLACK, "idle connection kept alive by PINGs")
    a.close()
    target.finish()


def test_silent_with_stream_open(target):
    """A POST whose body never comes, then silence: closed after idle_timeout
    (README: a client silent while its streams are open)."""
    srv = target.start(limits=FAST)
    a = RawH2(srv.port)
    a.send(R.request(1, "/upload", "POST", end_stream=False))
    a.read_until(lambda: False, 0.2)
    t1 = time.monotonic()
    check_closed_in(target, a, t1, T - 0.5, T + SLACK, "silent client with a stream open")
    a.close()
    target.finish()


@pytest.mark.parametrize("streams", [1, 10])
def test_stalled_write(target, streams):
    """Large bodies requested with every window wide open, and the socket never
    read: output stops progressing, and write_timeout closes the connection.
    Reading afterwards drains what was buffered and then finds the end, not the
    rest of the bodies. What the peer acknowledges is averaged over up to four
    write_timeouts (README: min_send_rate), and the first of them holds what
    filled the client's socket buffer: the close comes within five."""
    srv = target.start(limits=FAST)
    a = RawH2(srv.port, local_settings={R.INITIAL_WINDOW_SIZE: (1 << 31) - 1},
              rcvbuf=8192)
    a.read_until(lambda: a.server_settings is not None, 1.0)
    a.send(R.window_update(0, (1 << 31) - 1 - 65535))
    sids = [2 * i + 1 for i in range(streams)]
    a.send(b"".join(R.request(s, "/big") for s in sids))
    t1 = time.monotonic()
    time.sleep(5 * T + SLACK)      # deaf: the server's writes stall
    took = check_closed_in(target, a, t1, T - 0.3, 5 * T + SLACK + 2.0,
                           f"stalled write ({streams} streams)")
    got = sum(a.data_bytes.values())
    target.check(got < streams * BIG_SIZE and not any(s in a.ended for s in sids),
                 f"the bodies were delivered in full ({got} bytes) after {took}: the stall was "
                 f"not cut; {a.describe()}")
    a.close()
    target.finish()
