"""The local server: the same ASGI app under uvicorn (uvloop + httptools).

Settings that matter for a proxy:
* proxy_headers=False: uvicorn would otherwise trust X-Forwarded-For from loopback clients and
  replace the socket peer with it, letting a local client choose the address we forward;
* server_header/date_header=False: the backend's own Server and Date pass through untouched;
* access_log off: the router writes its own JSON line per request.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn


def make_server(
    app: Any, host: str = "127.0.0.1", port: int = 8080, *, log_level: str = "warning"
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        date_header=False,
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=75,
    )
    return uvicorn.Server(config)


def new_event_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock
