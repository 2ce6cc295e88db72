"""Reference points for server mode: what an ASGI server architecture costs before any proxy code runs.

Both are bare ASGI apps run by uvicorn directly, with the settings the router ran under before it
had an engine of its own (uvloop + httptools, no access log, no Server or Date header, no proxy
headers, one process); nothing of edge_router is imported:

* static: answers a fixed 200-byte JSON body itself: the ceiling of uvicorn on this machine;
* proxy: forwards the GET with one shared aiohttp session and sends the body back buffered,
  with no header rewriting and no logging: the floor of a uvicorn + aiohttp proxy.

    python bench/_floor.py static|proxy --port N [--upstream URL]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from _backend import BODY  # the same 200-byte body the backend sends

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STATIC_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


def make_app(mode: str, upstream: str) -> Callable[[Message, Receive, Send], Awaitable[None]]:
    import aiohttp
    from yarl import URL

    url = URL(upstream, encoded=True)
    state: dict[str, aiohttp.ClientSession] = {}

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    if "session" in state:
                        await state["session"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await receive()
        if mode == "static":
            await send({"type": "http.response.start", "status": 200, "headers": STATIC_HEADERS})
            await send({"type": "http.response.body", "body": BODY})
            return
        session = state.get("session")
        if session is None:
            session = state["session"] = aiohttp.ClientSession(auto_decompress=False)
        async with session.get(url) as response:
            body = await response.read()
            headers = [(k, v) for k, v in response.raw_headers if k.lower() != b"connection"]
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    return app


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["static", "proxy"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="http://127.0.0.1:1/")
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(
        make_app(args.mode, args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        date_header=False,
        access_log=False,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
