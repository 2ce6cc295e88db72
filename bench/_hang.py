"""A hanging provider for the failover section: it accepts connections, reads requests, never answers.

Every connection is kept open until the client closes it (the router, when its per-attempt timeout
runs out); what arrives is read and thrown away, so the client's write never blocks and nothing is
reset. With `--stats FILE`, the counts so far are written there as JSON whenever a request head
arrives or a connection ends (a few times a second at most): `{"connections", "requests", "open"}`.
The bench reads it to see whether requests still reach this provider once its circuit is open.

    python bench/_hang.py [--port 0] [--stats FILE]     prints "PORT <n>" once it listens on 127.0.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from _common import new_event_loop


class Counts:
    def __init__(self, stats: Path | None) -> None:
        self.stats = stats
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.transports: set[asyncio.BaseTransport] = set()

    def write(self) -> None:
        if self.stats is None:
            return
        document = {"connections": self.connections, "requests": self.requests, "open": self.open}
        partial = self.stats.with_suffix(".tmp")
        partial.write_text(json.dumps(document))
        os.replace(partial, self.stats)  # a reader never sees half a document


class HangProtocol(asyncio.Protocol):
    __slots__ = ("buffer", "counts", "transport")

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.buffer = b""
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.counts.transports.add(transport)
        self.counts.connections += 1
        self.counts.open += 1

    def data_received(self, data: bytes) -> None:
        # Count request heads (a GET has no body; anything else is read and dropped all the same).
        self.buffer = (self.buffer + data)[-65536:]
        heads = self.buffer.count(b"\r\n\r\n")
        if heads:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.counts.requests += heads
            self.counts.write()

    def connection_lost(self, exc: Exception | None) -> None:
        self.counts.open -= 1
        self.counts.write()
        if self.transport is not None:
            self.counts.transports.discard(self.transport)


async def serve(port: int, stats: Path | None) -> None:
    loop = asyncio.get_running_loop()
    counts = Counts(stats)
    counts.write()
    server = await loop.create_server(
        lambda: HangProtocol(counts), "127.0.0.1", port, backlog=1024, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        # No `wait_closed`: from Python 3.12 it waits for every connection, and these never end.
        server.close()
        for transport in list(counts.transports):
            transport.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stats", type=Path, default=None)
    args = parser.parse_args()
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(args.port, args.stats))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
