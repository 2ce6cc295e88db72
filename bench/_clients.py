"""Upstream client comparison: aiohttp vs httpx (default transport) vs the router's own
`edge_router.upstream.http1.Http1Upstream` (sent the Host, User-Agent and Accept a proxied request
carries: it adds no header of its own), against the loopback backend.

Both on a plain asyncio loop (the loop the Lambda adapter runs), one client object each, kept alive:
* sequential: µs per GET, one at a time, each driven by `loop.run_until_complete` (as a Lambda
  invocation is) and, separately, all inside one coroutine;
* concurrent: `--concurrency` tasks sharing the client for `--duration` seconds: req/s, p50, p99.

    python bench/_clients.py aiohttp|httpx|http1 --url URL --result OUT.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import percentile, summarize

Get = Callable[[], Awaitable[int]]


async def make_client(kind: str, url: str) -> tuple[Get, Callable[[], Awaitable[None]]]:
    if kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession()

        async def get_aiohttp() -> int:
            async with session.get(url) as response:
                await response.read()
                return response.status

        return get_aiohttp, session.close
    if kind == "http1":
        from urllib.parse import urlsplit

        from edge_router.upstream.http1 import Http1Upstream

        upstream = Http1Upstream()
        headers = [("host", urlsplit(url).netloc), ("user-agent", "bench"), ("accept", "*/*")]

        async def get_http1() -> int:
            response = await upstream.send("GET", url, headers, None, 10.0)
            try:
                await response.read(1 << 20)
            finally:
                response.release()
            return response.status

        return get_http1, upstream.aclose
    import httpx

    client = httpx.AsyncClient()

    async def get_httpx() -> int:
        response = await client.get(url)
        return response.status_code

    return get_httpx, client.aclose


async def sequential_in_coroutine(get: Get, n: int) -> list[float]:
    out: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(n):
        started = clock()
        await get()
        out.append((clock() - started) / 1000)
    return out


async def concurrent(get: Get, concurrency: int, duration: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        clock = time.perf_counter
        while clock() < deadline:
            started = clock()
            if await get() != 200:
                errors += 1
            latencies.append((clock() - started) * 1e6)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=duration + 30)
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": errors,
        "rps": len(ordered) / elapsed,
        "p50_us": percentile(ordered, 0.5),
        "p99_us": percentile(ordered, 0.99),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=["aiohttp", "httpx", "http1"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()

    loop = asyncio.new_event_loop()
    try:
        get, close = loop.run_until_complete(make_client(args.client, args.url))
        for _ in range(200):  # warm-up: connection opened, code paths hot
            loop.run_until_complete(get())
        per_call: list[float] = []
        clock = time.perf_counter_ns
        for _ in range(args.n):
            started = clock()
            loop.run_until_complete(get())
            per_call.append((clock() - started) / 1000)
        in_coroutine = loop.run_until_complete(sequential_in_coroutine(get, args.n))
        loaded = loop.run_until_complete(concurrent(get, args.concurrency, args.duration))
        loop.run_until_complete(close())
    finally:
        loop.close()
    result: dict[str, Any] = {
        "client": args.client,
        "sequential_run_until_complete": summarize(per_call),
        "sequential_in_coroutine": summarize(in_coroutine),
        "concurrent": {"concurrency": args.concurrency, **loaded},
    }
    Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
