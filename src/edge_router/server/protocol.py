"""uvicorn's httptools protocol with the limits a gateway needs (`ServerLimits`), enforced while reading.

Why a subclass and not another server: uvicorn + httptools is the fastest engine measured here,
but it has no limit on the request head (llhttp streams a header line of any length and httptools
accumulates it in memory), no timeout before the first request and no cap on open connections.
uvicorn's h11 mode has a head-size limit, but no head timeout, answers with a bare text 400, and
measured 0.71x the router's throughput at c=32 (+90 us CPU per request). granian was measured
earlier at +155 us p50 at c=1. The smallest change that enforces the limits is to count where every
byte passes, `data_received` (and once per head, when it is complete), and to refuse before memory
is spent. A later engine is to enforce the same `ServerLimits`.

What is refused, and how (each answer is the router's JSON error with `Connection: close`):

* a head over `max_head_bytes` (counted raw while it arrives, exactly once it is complete) or
  with more than `max_header_count` headers: 431;
* a head not complete within `head_timeout_s` of its first byte (or of the connection's opening):
  408 when part of a head arrived, else the connection is closed silently;
* a malformed request (the parser's error): 400 in JSON instead of uvicorn's text/plain;
* in a chunked body, more than `max_head_bytes` of chunk-size lines, extensions or trailers with no
  body byte between them, or a malformed chunk: 400. The application then sees the client as gone
  (`http.disconnect`), so the proxy aborts the upstream request and the backend never receives a
  complete request the client did not complete; the refusal status is left in the scope under
  `CLIENT_REFUSAL` for the request log;
* a connection beyond `max_connections`: 503, closed at once, with a warning log line (at most one
  per 10 s, counting the others).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..http.responses import CLIENT_REFUSAL
from ..settings import ServerLimits

logger = logging.getLogger("edge_router.server")

# (status, message) -> a whole HTTP/1.1 response with `Connection: close`.
RenderRefusal = Callable[[int, str], bytes]


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the refusal is already recorded."""


class _ThrottledLog:
    """A warning at most once per `interval` seconds, saying how many more happened meanwhile."""

    def __init__(self, message: str, interval: float = 10.0) -> None:
        self._message = message
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def __call__(self, **fields: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self._interval
        suppressed, self._suppressed = self._suppressed, 0
        logger.warning(self._message, {**fields, "more": suppressed})


_connection_cap_log = _ThrottledLog(
    "server: connection refused, %(open)d connections are open (SERVER_MAX_CONNECTIONS=%(cap)d); "
    "%(more)d more refused since the last line"
)
_head_timeout_log = _ThrottledLog(
    "server: closed a connection whose request head was not complete within %(timeout)gs; "
    "%(more)d more since the last line"
)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One client connection; see the module docstring for what it refuses."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ServerLimits,
        render: RenderRefusal,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert limits.max_connections is not None, "resolve max_connections before serving"
        self._limits = limits
        self._max_connections: int = limits.max_connections
        self._render = render
        self._reading_head = True  # between messages, or inside a request head
        self._head_bytes = 0  # raw bytes of the current head received so far
        self._message_done_in_call = False
        self._body_progress = False
        self._framing_bytes = 0  # body-phase bytes with no body byte among them
        self._head_timer: asyncio.TimerHandle | None = None
        self._closed_by_us = False

    # connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self._max_connections:
            _connection_cap_log(open=len(self.connections), cap=self._max_connections)
            self.transport = transport
            self._closed_by_us = True
            transport.write(self._render(503, "The server has too many open connections; try again"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._limits.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._reading_head:
            return
        _head_timeout_log(timeout=self._limits.head_timeout_s)
        if self._head_bytes:
            self._refuse(408, f"The request head was not complete within {self._limits.head_timeout_s:g}s")
        else:
            self._closed_by_us = True
            self.transport.close()

    # reading ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closed_by_us:
            return
        self._unset_keepalive_if_required()
        started_in_head = self._reading_head
        started_in_body = not started_in_head and self._request_body_pending()
        self._message_done_in_call = False
        self._body_progress = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # As uvicorn: a websocket upgrade is handed over, anything else is only warned about.
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self._closed_by_us:  # a limit refusal has answered already
                self._refuse(400, "The request is not valid HTTP/1.1")
            return
        if self._message_done_in_call:
            return
        if started_in_head and self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_head_bytes:
                self._refuse(431, f"The request head is larger than {self._limits.max_head_bytes} bytes")
        elif started_in_body and not self._body_progress:
            self._framing_bytes += len(data)
            if self._framing_bytes > self._limits.max_head_bytes:
                self._refuse(
                    400, f"Chunk lines, extensions or trailers over {self._limits.max_head_bytes} bytes"
                )
        elif self._body_progress:
            self._framing_bytes = 0

    def _request_body_pending(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.disconnected

    # parser callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = self._framing_bytes = 0
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        # Counted once here rather than in `on_header`: a Python frame per header costs more, and
        # until now the head was bounded by its raw byte count.
        headers = self.headers
        if len(headers) > self._limits.max_header_count:
            self._refuse(431, f"The request has more than {self._limits.max_header_count} headers")
            raise _Refused
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in headers)
        if size > self._limits.max_head_bytes:
            self._refuse(431, f"The request head is larger than {self._limits.max_head_bytes} bytes")
            raise _Refused
        self._reading_head = False
        super().on_headers_complete()
        # uvicorn appends trailers to the list the scope holds; they are not forwarded, so they
        # go to a list of their own (bounded by the framing limit) instead of changing the scope.
        self.headers = []

    def on_body(self, body: bytes) -> None:
        self._body_progress = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._reading_head = True
        self._message_done_in_call = True
        self._head_bytes = 0
        super().on_message_complete()

    # refusing --------------------------------------------------------------------------------

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` (unless a response has started), end the request, close the connection."""
        if self._closed_by_us:
            return
        self._closed_by_us = True
        self._cancel_head_timer()
        cycle = self.cycle if not self._reading_head else None
        started = cycle is not None and cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The application is running: it must see the client as gone, never a complete body.
            cycle.scope[CLIENT_REFUSAL] = status  # type: ignore[literal-required]
            cycle.disconnected = True
            cycle.message_event.set()
        if not started:
            self.transport.write(self._render(status, message))
        self.transport.close()
