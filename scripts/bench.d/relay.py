"""A TCP relay that delays each direction by a fixed time, for measuring what a
long path does to a protocol (these kernels have no netem). Every chunk read on
one side is written to the other DELAY seconds after it was read; at most
LIMIT bytes wait in each direction, past which the relay stops reading that
side (so a fast sender meets back-pressure, as on a real link, instead of
filling the relay's memory). Bandwidth is not limited: on loopback only the
round trip is.

    with Relay(upstream_port=8080, delay=0.05) as r:   # 50 ms each way
        ... connect to 127.0.0.1:r.port ...

Also a command: relay.py UPSTREAM_PORT DELAY_MS [LISTEN_PORT]."""

import asyncio
import socket
import sys
import threading


class Relay:
    def __init__(self, upstream_port, delay, host="127.0.0.1", limit=16 << 20, port=0):
        self.upstream = (host, upstream_port)
        self.delay = delay
        self.limit = limit
        self.host = host
        self.port = port
        self._loop = None
        self._thread = None
        self._stop = None
        self._tasks = set()

    async def _pipe(self, reader, writer):
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue()
        room = asyncio.Condition()
        waiting = 0

        async def rx():
            nonlocal waiting
            while True:
                try:
                    data = await reader.read(65536)
                except (ConnectionError, OSError):
                    data = b""
                async with room:
                    await room.wait_for(lambda: waiting < self.limit)
                    waiting += len(data)
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    return

        async def tx():
            nonlocal waiting
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                try:
                    if not data:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(data)
                    await writer.drain()
                except (ConnectionError, OSError):
                    return
                async with room:
                    waiting -= len(data)
                    room.notify_all()

        await asyncio.gather(rx(), tx())

    async def _client(self, creader, cwriter):
        self._tasks.add(asyncio.current_task())
        try:
            ureader, uwriter = await asyncio.open_connection(*self.upstream)
        except OSError:
            cwriter.close()
            return
        for w in (cwriter, uwriter):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(self._pipe(creader, uwriter), self._pipe(ureader, cwriter))
        finally:
            for w in (cwriter, uwriter):
                w.close()
            self._tasks.discard(asyncio.current_task())

    def start(self):
        ready = threading.Event()

        async def main():
            self._stop = asyncio.Event()
            server = await asyncio.start_server(self._client, self.host, self.port)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stop.wait()
            server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(main())
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the relay did not start")
        return self

    def stop(self):
        if self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: relay.py UPSTREAM_PORT DELAY_MS [LISTEN_PORT]")
    r = Relay(int(sys.argv[1]), float(sys.argv[2]) / 1000,
              port=int(sys.argv[3]) if len(sys.argv) == 4 else 0).start()
    print(f"relay 127.0.0.1:{r.port} -> 127.0.0.1:{sys.argv[1]}, {sys.argv[2]} ms each way",
          flush=True)
    try:
        r._thread.join()
    except KeyboardInterrupt:
        r.stop()
