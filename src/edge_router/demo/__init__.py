"""Demo backends for the quick start: small JSON echo servers on loopback ports."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def echo_app(name: str) -> web.Application:
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

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def start_demo_backend(name: str, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(echo_app(name), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, f"http://{host}:{bound_port}"
