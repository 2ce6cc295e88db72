"""Fallback load generator, used only when wrk is not installed (or with --loadgen python).

Closed loop like wrk: `--connections` kept-alive HTTP/1.1 connections, each sending its next GET as
soon as the previous response is complete, for `--duration` seconds. It is a raw asyncio Protocol
on uvloop (no HTTP client library), so it costs a few microseconds per request; it is still one
Python process, so against the fastest targets (direct, nginx) it can be the bottleneck, which wrk
is not. Prints one JSON object: requests, errors, duration_s, rps, p50_us, p99_us.

With `--requests N` it sends exactly N requests in all (shared by the connections), `--duration`
then being only the bound; the memory section counts requests this way (bench/memory.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from _common import LOOPBACK, new_event_loop, percentile


class Budget:
    """Requests still to send, shared by every connection (None: no count, the deadline alone)."""

    def __init__(self, left: int | None) -> None:
        self.left = left

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class Connection(asyncio.Protocol):
    def __init__(
        self,
        request: bytes,
        deadline: float,
        latencies: list[float],
        done: asyncio.Future[None],
        budget: Budget,
    ) -> None:
        self.request = request
        self.deadline = deadline
        self.budget = budget
        self.latencies = latencies
        self.done = done
        self.buffer = b""
        self.sent_at = 0.0
        self.errors = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.budget.take():
            self._send()
        else:
            transport.close()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)].strip())
            if len(self.buffer) < end + 4 + length:
                return
            rest = self.buffer[end + 4 + length :]
        elif b"\r\ntransfer-encoding: chunked" in head:
            tail = self.buffer.find(b"\r\n0\r\n\r\n", end)
            if tail < 0:
                return
            rest = self.buffer[tail + 7 :]
        else:
            rest = b""
        now = time.perf_counter()
        if not head.startswith(b"http/1.1 2"):
            self.errors += 1
        self.latencies.append((now - self.sent_at) * 1e6)
        self.buffer = rest
        if now >= self.deadline or not self.budget.take():
            assert self.transport is not None
            self.transport.close()
        else:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def run(
    port: int, path: str, connections: int, duration: float, requests: int | None = None
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nUser-Agent: bench\r\n\r\n".encode()
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + duration
    protocols: list[Connection] = []
    budget = Budget(requests)
    waits: list[asyncio.Future[None]] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        protocol = Connection(request, deadline, latencies, done, budget)

        def factory(protocol: Connection = protocol) -> Connection:
            return protocol

        await loop.create_connection(factory, LOOPBACK, port)
        protocols.append(protocol)
        waits.append(done)
    await asyncio.wait_for(asyncio.gather(*waits), timeout=duration + 10)
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": sum(p.errors for p in protocols),
        "duration_s": elapsed,
        "rps": len(ordered) / elapsed,
        "p50_us": percentile(ordered, 0.5),
        "p99_us": percentile(ordered, 0.99),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/bench")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds (with --requests: at most)")
    parser.add_argument("--requests", type=int, help="send exactly this many requests in all")
    args = parser.parse_args()
    loop = new_event_loop()
    try:
        result = loop.run_until_complete(
            run(args.port, args.path, args.connections, args.duration, args.requests)
        )
    finally:
        loop.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
