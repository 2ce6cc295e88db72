"""The measurement behind `edge_router/upstream/http1.py`'s choice: microseconds per kept-alive
loopback GET (a 200-byte answer with a Content-Length), one `run_until_complete` per request as
the Lambda adapter runs them, on the plain asyncio loop; `Http1Upstream` and `AiohttpUpstream`
(`_aiohttp_upstream.py`, the client it replaced) interleaved, best of 3 runs of N GETs each after
2,000 warm-up GETs, beside the floor: a bare asyncio Protocol writing a fixed request and taking
the first bytes back, no parsing at all.

    cd bench && ../.venv/bin/python _backend.py --port 0        # prints PORT <n>
    .venv/bin/python bench/_h1bench.py <n> [N=20000] [rounds=2]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

HEADERS = [
    ("user-agent", "bench"),
    ("accept", "*/*"),
    ("x-forwarded-for", "10.0.0.1"),
    ("x-forwarded-proto", "http"),
    ("x-request-id", "0123456789abcdef"),
    ("via", "1.1 edge-router"),
]


def _client(make: Callable[[], Any], port: int, count: int) -> float:
    url = f"http://127.0.0.1:{port}/api/x?y=1"
    headers = [("host", f"127.0.0.1:{port}"), *HEADERS]
    loop = asyncio.new_event_loop()
    upstream = make()

    async def get() -> bytes | None:
        response = await upstream.send("GET", url, headers, None, 5.0)
        body: bytes | None = await response.read(65536)
        response.release()
        return body

    try:
        return _best(loop, get, count)
    finally:
        loop.run_until_complete(upstream.aclose())
        loop.close()


def _floor(port: int, count: int) -> float:
    request = f"GET /api/x?y=1 HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n".encode()
    request += "".join(f"{name}: {value}\r\n" for name, value in HEADERS).encode() + b"\r\n"

    class Bare(asyncio.Protocol):
        waiter: asyncio.Future[bytes] | None = None
        transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if self.waiter is not None:
                self.waiter.set_result(data)
                self.waiter = None

    loop = asyncio.new_event_loop()
    _, bare = loop.run_until_complete(loop.create_connection(Bare, "127.0.0.1", port))

    async def get() -> bytes:
        waiter: asyncio.Future[bytes] = loop.create_future()
        bare.waiter = waiter
        bare.transport.write(request)
        return await waiter

    try:
        return _best(loop, get, count)
    finally:
        bare.transport.close()
        loop.close()


def _best(loop: asyncio.AbstractEventLoop, get: Callable[[], Any], count: int) -> float:
    for _ in range(2000):
        loop.run_until_complete(get())
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            loop.run_until_complete(get())
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


def main(argv: list[str]) -> None:
    from _aiohttp_upstream import AiohttpUpstream
    from edge_router.upstream.http1 import Http1Upstream

    port = int(argv[0])
    count = int(argv[1]) if len(argv) > 1 else 20_000
    for _ in range(int(argv[2]) if len(argv) > 2 else 2):
        floor = _floor(port, count)
        mine = _client(Http1Upstream, port, count)
        theirs = _client(AiohttpUpstream, port, count)
        print(f"floor {floor:.1f} us   Http1Upstream {mine:.1f} us   AiohttpUpstream {theirs:.1f} us per GET")


if __name__ == "__main__":
    main(sys.argv[1:])
