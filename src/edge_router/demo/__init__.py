"""Demo backends for the quick start: small JSON echo servers on loopback ports, one of them flaky,
and a little traffic so that every panel of the status page moves within a minute."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from typing import Any

import aiohttp
from aiohttp import web


def echo_app(name: str, middlewares: tuple[Any, ...] = ()) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        payload: dict[str, Any] = {
            "backend": name,
            "method": request.method,
            "path": request.raw_path.split("?", 1)[0],
            "query": request.query_string,
            "headers": dict(request.headers),
            "body_bytes": len(body),
        }
        return web.Response(text=json.dumps(payload, indent=2) + "\n", content_type="application/json")

    app = web.Application(middlewares=list(middlewares))
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def flaky_app(name: str, *, failure_rate: float = 0.25, period_s: float = 40.0) -> web.Application:
    """An echo backend that fails now and then: a request is a 503 with `failure_rate`, and for the
    second half of every `period_s` its /health answers 503 too (health checks see it go down and
    come back; a breaker in front of it opens and closes)."""
    started = time.monotonic()

    def sick() -> bool:
        return (time.monotonic() - started) % period_s >= period_s / 2

    @web.middleware
    async def fail_sometimes(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/health":
            if sick():
                return web.json_response({"status": "down for a while"}, status=503)
            return web.json_response({"status": "ok"})
        if sick() or random.random() < failure_rate:  # noqa: S311 - a demo's dice, not a secret
            return web.json_response({"error": f"{name} failed on purpose"}, status=503)
        response: web.StreamResponse = await handler(request)
        return response

    return echo_app(name, (fail_sometimes,))


async def start_demo_backend(
    name: str, host: str = "127.0.0.1", port: int = 0, *, flaky: bool = False
) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(flaky_app(name) if flaky else echo_app(name), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, f"http://{host}:{bound_port}"


DEMO_PATHS = (
    "/api/users/42?page=1",
    "/api/orders/7",
    "/api/cached/report",
    "/api/flaky/jobs",
    "/api/limited/x",
)


async def demo_traffic(base: str, *, every_s: float = 0.4) -> None:
    """A request to one of the demo's routes every `every_s` until cancelled, so that traffic,
    errors, cache hits, refusals and the flaky backend's circuit show on the status page."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            path = random.choice(DEMO_PATHS)  # noqa: S311 - not a secret
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(base + path) as response:
                    await response.read()
            await asyncio.sleep(every_s)
