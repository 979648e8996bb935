#!/usr/bin/env python3
"""A TCP relay on 127.0.0.1 that adds round-trip time, for workload 3's 20 ms.

`tc netem` is not available in this kernel (no sch_netem), so the round trip
is added in user space, in front of the ACR-like registry front:

  * a new connection waits one RTT before its first byte goes upstream (the
    TCP handshake a real client pays);
  * every piece the upstream sends back is delivered RTT after it arrived,
    in order (a request/response exchange costs one RTT, as on a real link).

Bytes from the client go upstream at once (the one-way delay is all on the
way back, which gives the same RTT). The RTT is read from stdin, one number
of milliseconds per line, and applies to what arrives after it; 0 makes the
relay transparent (it still costs one Python hop, equally for every peer).

Usage (as a child): latency_relay.py TARGET_PORT; prints
"latency relay listening: PORT" once it accepts.
"""

import asyncio
import sys

_CHUNK = 256 * 1024


class Relay:
    def __init__(self, target_port):
        self.target_port = target_port
        self.rtt = 0.0

    async def _upward(self, reader, writer):
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.write_eof()
            except (OSError, RuntimeError):
                pass

    async def _downward(self, reader, writer):
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue()

        async def receive():
            try:
                while True:
                    data = await reader.read(_CHUNK)
                    queue.put_nowait((loop.time() + self.rtt, data))
                    if not data:
                        return
            except (ConnectionError, OSError):
                queue.put_nowait((loop.time(), b""))

        rx = asyncio.ensure_future(receive())
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            rx.cancel()
            writer.close()

    async def handle(self, client_reader, client_writer):
        if self.rtt > 0:
            await asyncio.sleep(self.rtt)  # the handshake's round trip
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._upward(client_reader, up_writer), self._downward(up_reader, client_writer))
        up_writer.close()

    async def read_knob(self):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                return  # our parent went away
            self.rtt = float(line.decode().strip() or 0) / 1000.0
            print(f"rtt {self.rtt * 1000:.1f} ms", flush=True)

    async def main(self):
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0, backlog=1024)
        print(f"latency relay listening: {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await self.read_knob()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: latency_relay.py TARGET_PORT")
    asyncio.run(Relay(int(sys.argv[1])).main())
