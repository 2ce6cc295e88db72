"""Lambda warm path, in one process, no server: µs per invocation, three or four ways.

* router: `edge_router.aws_lambda.build_handler(...)` called with a function URL GET event that it
  proxies to the loopback backend (its JSON log line and EMF metrics are written, to /dev/null);
* direct: one kept-alive aiohttp GET to the same backend, on its own plain asyncio loop, each
  request driven by `loop.run_until_complete` as the Lambda adapter drives an invocation;
* direct_http1: the same with the router's own lean client, `edge_router.upstream.http1.Http1Upstream`
  (when that module exists; otherwise the result says why it was skipped): the fastest direct GET
  this process can make, so the least a proxied invocation can cost;
* fastapi: a FastAPI async "hello" app under `Mangum(lifespan="off")`, same event, no network.

The modes run interleaved in rounds so that drift (CPU frequency, other load) hits all of them alike.
No `asyncio.run` anywhere: it would leave Mangum without an event loop.

    python bench/_lambda_warm.py --backend-url URL --config FILE --result OUT.json [--n N --rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import function_url_event, summarize


def build_router(config: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    from edge_router.aws_lambda import build_handler
    from edge_router.settings import Settings

    handler = build_handler(Settings.from_env({}, config_source=config))
    return lambda event: handler(event, None)


def build_fastapi() -> Callable[[dict[str, Any]], dict[str, Any]]:
    from fastapi import FastAPI
    from mangum import Mangum

    app = FastAPI()

    @app.get("/bench")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mangum = Mangum(app, lifespan="off")

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        asyncio.set_event_loop(loop)  # its own loop, as the router's adapter does for itself
        response: dict[str, Any] = mangum(event, None)  # type: ignore[arg-type]  # no context in a bench
        return response

    return invoke


class Direct:
    """A kept-alive aiohttp GET on a dedicated plain asyncio loop."""

    def __init__(self, url: str) -> None:
        import aiohttp

        self.url = url
        self.loop = asyncio.new_event_loop()

        async def make() -> aiohttp.ClientSession:
            return aiohttp.ClientSession()

        self.session = self.loop.run_until_complete(make())

    async def _get(self) -> tuple[int, bytes]:
        async with self.session.get(self.url) as response:
            return response.status, await response.read()

    def __call__(self, _: dict[str, Any]) -> dict[str, Any]:
        status, body = self.loop.run_until_complete(self._get())
        return {"statusCode": status, "body": body}

    def close(self) -> None:
        self.loop.run_until_complete(self.session.close())
        self.loop.close()


class DirectHttp1:
    """A kept-alive GET with `Http1Upstream` on a dedicated plain asyncio loop: the request carries
    what a proxied one carries to the backend (Host, User-Agent, Accept), since the client adds
    nothing of its own."""

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        from edge_router.upstream.http1 import Http1Upstream

        self.url = url
        self.headers = [("host", urlsplit(url).netloc), ("user-agent", "bench"), ("accept", "*/*")]
        self.loop = asyncio.new_event_loop()

        async def make() -> Any:
            return Http1Upstream()

        self.client = self.loop.run_until_complete(make())

    async def _get(self) -> tuple[int, bytes]:
        response = await self.client.send("GET", self.url, self.headers, None, 10.0)
        try:
            body = await response.read(1 << 20)
        finally:
            response.release()
        return response.status, body or b""

    def __call__(self, _: dict[str, Any]) -> dict[str, Any]:
        status, body = self.loop.run_until_complete(self._get())
        return {"statusCode": status, "body": body}

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


def body_len(response: dict[str, Any]) -> int:
    body = response.get("body", b"")
    return len(body if isinstance(body, bytes) else body.encode())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend-url", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--n", type=int, default=1000, help="invocations per mode per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()

    event = function_url_event("GET", "/bench")
    direct = Direct(args.backend_url + "/")
    modes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "router": build_router(args.config),
        "direct": direct,
    }
    skipped: dict[str, str] = {}
    http1: DirectHttp1 | None = None
    try:
        http1 = modes["direct_http1"] = DirectHttp1(args.backend_url + "/")
    except Exception as exc:  # not written yet, or its constructor changed: a row that says so
        skipped["direct_http1"] = f"{type(exc).__name__}: {exc}"
    modes["fastapi"] = build_fastapi()
    checks: dict[str, Any] = {}

    # Logs stay on (their cost is counted) but go to /dev/null, at the fd level.
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        for name, invoke in list(modes.items()):
            try:
                first = invoke(event)
            except Exception as exc:
                if name != "direct_http1":
                    raise
                skipped[name] = f"{type(exc).__name__}: {exc}"  # a client in the making: skip its row
                del modes[name]
                continue
            checks[name] = {"status": first.get("statusCode"), "body_bytes": body_len(first)}
            for _ in range(args.warmup):
                invoke(event)
        samples: dict[str, list[float]] = {name: [] for name in modes}
        clock = time.perf_counter_ns
        for _ in range(args.rounds):
            for name, invoke in modes.items():
                out = samples[name]
                for _ in range(args.n):
                    started = clock()
                    invoke(event)
                    out.append((clock() - started) / 1000)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    direct.close()
    if http1 is not None:
        http1.close()

    result: dict[str, Any] = {name: {**summarize(values), **checks[name]} for name, values in samples.items()}
    result.update({name: {"skipped": why} for name, why in skipped.items()})
    Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
