"""The local server (`edge-router serve`): the router's pipeline on its own protocol-level engine.

`Server` binds nothing itself: it serves a listening socket (`bind()`) with one
`engine.HttpConnection` per client connection, calls the router's `startup()` before accepting
and `shutdown()` once stopped. uvloop serves when it is installed (`new_event_loop()`; without it
the asyncio loop does, and a log line says how to get the faster one). `workers.run_workers` runs
several processes, each with its own loop, router and SO_REUSEPORT socket.

What a proxy needs of its server, and how it is met:
* the socket peer is the client address (no X-Forwarded-For trust at this level: the guards
  decide with `trusted_proxies`);
* no Server or Date header is added: the backend's pass through untouched;
* no access log of its own: the router writes one JSON line per request;
* every `ServerLimits` limit and timeout (`engine` says what is refused and how).

Stopping (`request_stop()`, SIGTERM/SIGINT under `serve(handle_signals=True)`): no new
connection is accepted, connections waiting for a request head close, requests in progress get
up to `grace_s` to finish (their answers close their connections), then whatever is left is
closed and the router's `shutdown()` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
from dataclasses import replace
from typing import TYPE_CHECKING

from ._limits import connection_cap, raise_fd_limit
from .engine import HttpConnection, Shared

if TYPE_CHECKING:
    from ..settings import ServerLimits
    from .engine import Host

__all__ = ["Server", "bind", "connection_cap", "new_event_loop", "raise_fd_limit"]

logger = logging.getLogger("edge_router.server")

# How long requests in progress may run on once the server is asked to stop: within the 10 s a
# container runtime waits after SIGTERM, with time left for the router's own shutdown.
GRACE_S = 8.0


class Server:
    """The router served on a listening socket; see the module docstring.

    `limits`: the router's `settings.server` when not given; `max_connections` None is resolved
    here (`connection_cap`). `started` turns True once the router started and the socket accepts.
    """

    def __init__(self, host: Host, *, limits: ServerLimits | None = None, grace_s: float = GRACE_S) -> None:
        if limits is None:
            limits = host.settings.server  # type: ignore[attr-defined]
        assert limits is not None
        self.cap = connection_cap(limits)
        self.limits = replace(limits, max_connections=self.cap)
        self.host = host
        self.grace_s = grace_s
        self.started = False
        self._server: asyncio.AbstractServer | None = None
        self._shared: Shared | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, sock: socket.socket) -> None:
        """Start the router, then accept connections on `sock` (listening already)."""
        loop = self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.host.startup()
        shared = self._shared = Shared(self.host, self.limits, self.cap, loop)
        self._server = await loop.create_server(
            functools.partial(HttpConnection, shared), sock=sock, backlog=2048
        )
        self.started = True

    async def serve(self, sock: socket.socket, *, handle_signals: bool = False) -> None:
        """`start()`, serve until `request_stop()` (or SIGTERM/SIGINT with `handle_signals`), `stop()`."""
        await self.start(sock)
        assert self._stop is not None and self._loop is not None
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for signum in signals:
            self._loop.add_signal_handler(signum, self._stop.set)
        try:
            await self._stop.wait()
        finally:
            for signum in signals:
                self._loop.remove_signal_handler(signum)
            await self.stop()

    def request_stop(self) -> None:
        """Ask `serve()` to stop; callable from any thread, and again once stopped."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: stopped already
                self._loop.call_soon_threadsafe(self._stop.set)

    async def stop(self) -> None:
        """Stop accepting, let requests in progress finish (at most `grace_s`), close the rest,
        then the router's `shutdown()`."""
        shared, server = self._shared, self._server
        if shared is None or server is None:
            return
        self._shared = None
        server.close()
        shared.stopping = True
        for connection in list(shared.connections.open):
            connection.close_idle()
        emptied = shared.connections.emptied = asyncio.Event()
        if shared.connections.open:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(emptied.wait(), self.grace_s)
        for connection in list(shared.connections.open):
            connection.abandon()
        await asyncio.sleep(0)  # let the aborted connections' callbacks run
        await self.host.shutdown()
        self.started = False


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        logger.info("server: uvloop is not installed; serving on the asyncio loop (pip install uvloop)")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A non-blocking TCP socket bound to (host, port), listening unless `listen` is False;
    `reuse_port`: SO_REUSEPORT, for several worker processes on one port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
