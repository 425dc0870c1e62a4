"""--idle-conns N: RSS and pages touched per idle HTTP/2 connection."""

import resource
import selectors
import socket
import time

from .common import BenchError, say
from .servers import check_all_bodies
from .report import header_lines, md_table, write_md


PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
SETTINGS_EMPTY = b'\x00\x00\x00\x04\x00\x00\x00\x00\x00'
SETTINGS_ACK = b'\x00\x00\x00\x04\x01\x00\x00\x00\x00'


class IdleConn:
    def __init__(self, sock):
        self.sock, self.buf = sock, b''
        self.settings = self.acked = self.closed = self.goaway = False

    def feed(self, data):
        self.buf += data
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], 'big')
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            payload = self.buf[9:9 + length]
            self.buf = self.buf[9 + length:]
            if ftype == 4:                      # SETTINGS
                if flags & 1:
                    self.acked = True
                else:
                    self.settings = True
                    self.sock.send(SETTINGS_ACK)
            elif ftype == 6 and not flags & 1:  # PING
                self.sock.send(b'\x00\x00\x08\x06\x01\x00\x00\x00\x00' + payload)
            elif ftype == 7:                    # GOAWAY
                self.goaway = True


class IdleClient:
    """N idle HTTP/2 connections: preface + empty SETTINGS, ACK the server's
    SETTINGS, answer PINGs, send nothing else."""

    def __init__(self, port, n):
        self.sel = selectors.DefaultSelector()
        self.conns = []
        for i in range(n):
            s = socket.create_connection(('127.0.0.1', port), timeout=10)
            s.sendall(PREFACE + SETTINGS_EMPTY)
            s.setblocking(False)
            c = IdleConn(s)
            self.conns.append(c)
            self.sel.register(s, selectors.EVENT_READ, c)
            if i % 64 == 63:
                self.pump(0)

    def pump(self, seconds):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            for key, _ in self.sel.select(max(0, left)):
                c = key.data
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b''
                if not data:
                    c.closed = True
                    self.sel.unregister(c.sock)
                    continue
                c.feed(data)
            if time.monotonic() >= end:
                return

    def ready(self):
        return all((c.settings and c.acked) or c.closed for c in self.conns)

    def counts(self):
        up = sum(1 for c in self.conns if not c.closed and not c.goaway)
        return up, sum(c.closed for c in self.conns), sum(c.goaway for c in self.conns)

    def close(self):
        for c in self.conns:
            try:
                c.sock.close()
            except OSError:
                pass


def mode_idle(opts, ctx, routes, names):
    n = opts.idle_conns
    # This process holds the N client sockets and the server (which inherits
    # the limit) the N accepted ones: each needs N and some slack.
    need = n + 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
        except (ValueError, OSError) as e:
            raise BenchError(f'cannot raise the open-files limit to {need}: {e}')
    check_all_bodies(opts, ctx, routes, names)
    rows = []
    for name in names:
        srv = ctx.server(name, conns=max(4096, 2 * n + 100), idle=True).start()
        time.sleep(0.5)
        before = srv.rss_kib()
        touched_before = srv.touched_kib()
        t0 = time.monotonic()
        client = IdleClient(srv.port, n)
        deadline = time.monotonic() + 30 + n / 500
        while not client.ready() and time.monotonic() < deadline:
            client.pump(0.2)
        client.pump(1.0)
        after = srv.rss_kib()
        touched = (srv.touched_kib() - touched_before) / n
        up, closed, goaway = client.counts()
        srv.check_alive(f'holding {n} idle connections')
        kib = (after - before) / n
        say(f'  {name:<10} RSS {before:,} KiB -> {after:,} KiB with {n} idle connections: '
            f'{kib:.2f} KiB/conn, {touched:.2f} touched  (open {up}, closed by server {closed}, '
            f'GOAWAY {goaway}; {time.monotonic() - t0:.1f} s)')
        if up != n:
            say(f'  WARNING: {name} did not keep all {n} connections open')
        rows.append([name, str(n), f'{before:,}', f'{after:,}', f'{kib:.2f}', f'{touched:.2f}',
                     str(up)])
        client.close()
        srv.stop()
    t = md_table(['server', 'connections', 'RSS before KiB', 'RSS after KiB', 'KiB / idle conn',
                  'touched KiB / conn', 'still open'], rows, ['l'] + ['r'] * 6)
    note = ('Idle HTTP/2 connections (preface, empty SETTINGS, SETTINGS ACK, nothing else); '
            'VmRSS of the server process tree before and after; kernel socket buffers are not in '
            'RSS. "Touched" counts the private anonymous pages with a page table entry '
            '(/proc/PID/pagemap), pages only read included: the same on every kernel, where VmRSS '
            'leaves out read pages the kernel backs with its shared zero page.')
    say('\n' + '\n'.join(t) + '\n\n' + note)
    lines = header_lines(opts, 'celerisd memory per idle connection') + t + ['', note]
    say(f'\nwrote {write_md(opts, ctx.stamp, "-idle", lines)}')
