"""The local server: the same ASGI app under uvicorn (httptools, uvloop when installed).

Settings that matter for a proxy:
* proxy_headers=False: uvicorn would otherwise trust X-Forwarded-For from loopback clients and
  replace the socket peer with it, letting a local client choose the address we forward;
* server_header/date_header=False: the backend's own Server and Date pass through untouched;
* access_log off: the router writes its own JSON line per request;
* the HTTP protocol is `protocol.LimitedHttpToolsProtocol`: uvicorn's httptools protocol plus the limits
  and timeouts of `ServerLimits` (head size, header count, head timeout, connection cap).

Importing this module needs the `server` extra (uvicorn, httptools); `cli.py` says so in one line
when it is missing. uvloop is optional: without it the plain asyncio loop serves, and a log line
says how to get the faster one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import resource
import socket
from typing import Any

import uvicorn

from ..config.model import DEFAULT_CORS
from ..http.context import new_request_id
from ..http.responses import raw_error_response
from ..settings import ServerLimits
from .protocol import LimitedHttpToolsProtocol, RenderRefusal

logger = logging.getLogger("edge_router.server")

# The most connections a default cap allows, however high the file-descriptor limit.
_MAX_DEFAULT_CONNECTIONS = 10_000


def default_render(status: int, message: str) -> bytes:
    return raw_error_response(status, message, request_id=new_request_id(), headers=DEFAULT_CORS)


def connection_cap(limits: ServerLimits) -> int:
    """`limits.max_connections`, else half the file descriptors (the other half is for upstream
    connections), keeping 64 for files, the listener and the event loop; at most 10,000."""
    if limits.max_connections is not None:
        return limits.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_DEFAULT_CONNECTIONS
    return max(16, min(_MAX_DEFAULT_CONNECTIONS, (soft - 64) // 2))


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft file-descriptor limit to the hard one (start-up); returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. a hard limit above the kernel's nr_open
            logger.warning("server: cannot raise the file-descriptor limit to %d: %s", hard, exc)
            return soft, soft
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def make_server(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    log_level: str = "warning",
    limits: ServerLimits | None = None,
    render: RenderRefusal | None = None,
) -> uvicorn.Server:
    limits = limits or ServerLimits()
    cap = connection_cap(limits)
    if limits.max_connections is None:
        from dataclasses import replace

        limits = replace(limits, max_connections=cap)
    protocol = functools.partial(LimitedHttpToolsProtocol, limits=limits, render=render or default_render)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",  # the caller's loop (new_event_loop) runs the server
        http=protocol,  # type: ignore[arg-type]  # uvicorn calls it like the class it stands for
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        date_header=False,
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=math.ceil(limits.keepalive_timeout_s),
    )
    return uvicorn.Server(config)


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        logger.info("server: uvloop is not installed; serving on the asyncio loop (pip install uvloop)")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock
