"""The state and the plumbing of one client connection (`ConnectionBase`): its phase, its one
timer (head, keep-alive and linger deadlines), flow control both ways, closing and refusing, and
its place among the server's connections (`_limits.Connections`). `engine.HttpConnection` adds
the reading, the parsing and the handling of requests on top.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol, cast

from ._exchange import NOTHING, Exchange
from ._limits import Connections

if TYPE_CHECKING:
    from ..http.channel import AnswerWriter, BodyReader
    from ..http.context import RequestContext
    from ..settings import ServerLimits
    from ._splice import Splice

logger = logging.getLogger("edge_router.server")


class Host(Protocol):
    """What the engine needs of the router (`app.EdgeRouter`)."""

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...

    async def handle(self, ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None: ...

    def refusal_response(self, status: int, message: str) -> bytes: ...


class Shared:
    """What every connection of one server shares."""

    __slots__ = ("connections", "host", "limits", "loop", "stopping")

    def __init__(self, host: Host, limits: ServerLimits, cap: int, loop: asyncio.AbstractEventLoop) -> None:
        self.host = host
        self.limits = limits
        self.connections = Connections(cap)
        self.loop = loop
        self.stopping = False


# Reading phases (`HttpConnection.phase`).
HEAD = 0  # between requests, or inside a request head
BODY = 1  # the head is complete (the request is being handled), its body is arriving
HELD = 2  # the request is complete, its answer is not: arriving bytes are held, unparsed
UPGRADE = 3  # the request asked to upgrade: bytes held until its answer (a splice, or a close)
SPLICED = 4
CLOSED = 5

# What the connection's one timer is for (`HttpConnection.timer_kind`).
NO_TIMER = 0
HEAD_WAIT = 1  # head_timeout_s
IDLE = 2  # keepalive_timeout_s
LINGER = 3  # dropping the rest of a body after the answer

PAUSE_AT = 64 * 1024  # unread body bytes at which reading the client pauses


class ConnectionBase(asyncio.Protocol):
    """One client connection's state and plumbing (`engine.HttpConnection` is the whole of it)."""

    __slots__ = (
        "body_left",
        "chunked",
        "client",
        "completed",
        "content_length",
        "counted",
        "deadline",
        "discarded",
        "drain_waiter",
        "exchange",
        "expect",
        "framing_bytes",
        "head_bytes",
        "head_size",
        "headers",
        "held",
        "limits",
        "loop",
        "message_started",
        "parser",
        "parser_dead",
        "phase",
        "progress",
        "reading_paused",
        "shared",
        "splicing",
        "stopped",
        "tail",
        "task",
        "timer",
        "timer_at",
        "timer_kind",
        "transport",
        "url",
        "write_paused",
    )

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.loop = shared.loop
        self.limits = shared.limits
        self.phase = HEAD
        self.client: str | None = None
        self.counted = False
        self.exchange: Exchange | None = None
        self.task: asyncio.Task[None] | None = None
        self.splicing: Splice | None = None
        self.held: bytearray | None = None
        self.parser_dead = self.stopped = False
        self.reading_paused = self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = self.deadline = 0.0
        self.timer_kind = NO_TIMER
        self.tail = b""  # the last bytes of an unfinished head (a CRLFCRLF split across reads)
        self.head_bytes = self.framing_bytes = self.discarded = 0
        self.body_left = -1
        self.progress = self.completed = self.message_started = False
        self._new_message()

    def _new_message(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.content_length: bytes | None = None
        self.chunked = self.expect = False

    # connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        connections = self.shared.connections
        if not connections.admit():
            self.phase = CLOSED
            refusal = "The server has too many open connections; try again"
            transport.write(self.shared.host.refusal_response(503, refusal))
            transport.close()
            return
        self.counted = True
        connections.open.add(self)
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else None
        connections.waiting[self] = None
        self._arm(HEAD_WAIT, self.loop.time() + self.limits.head_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = CLOSED
        self._cancel_timer()
        if self.exchange is not None:
            self.exchange.fail()
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.splicing is not None:
            self.splicing.client_closed()
        self._forget()

    def _forget(self) -> None:
        if self.counted:
            self.counted = False
            self.shared.connections.gone(self)

    def evict(self) -> None:
        """Closed to admit a new connection (it was waiting longest for a request head)."""
        if self.message_started or self.head_bytes:
            refusal = "The server is at its connection limit; try again"
            self.write(self.shared.host.refusal_response(503, refusal))
        self._close()

    def close_idle(self) -> None:
        """The server is stopping: a connection waiting for a head closes now."""
        if self.phase == HEAD and self.exchange is None:
            self._close()
        elif self.splicing is not None:
            self.splicing.stop()

    def abandon(self) -> None:
        """The server stopped waiting for this connection: closed at once, its request cancelled."""
        task = self.task
        if self.splicing is not None:
            self.splicing.stop()
        self._close(abort=True)
        if task is not None:
            task.cancel()

    def _close(self, *, abort: bool = False) -> None:
        if self.phase == CLOSED:
            return
        self.phase = CLOSED
        self._cancel_timer()
        if self.exchange is not None:
            self.exchange.fail()
        if abort:
            self.transport.abort()
        else:
            self.transport.close()
        self._forget()

    def write(self, data: bytes) -> None:
        if self.phase != CLOSED:
            self.transport.write(data)

    # flow control ----------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.splicing is not None:
            self.splicing.client_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.splicing is not None:
            self.splicing.client_resumed()

    async def drain(self) -> None:
        """Wait until the client's transport takes writes again (or the client is gone)."""
        if self.phase == CLOSED:
            return
        if self.drain_waiter is None or self.drain_waiter.done():
            self.drain_waiter = self.loop.create_future()
        await self.drain_waiter

    def _pause(self) -> None:
        if not self.reading_paused and self.phase != CLOSED:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.reading_paused and self.phase != CLOSED and self.held is None:
            self.reading_paused = False
            self.transport.resume_reading()

    def body_taken(self) -> None:
        """The pipeline read the buffered body: reading may go on."""
        if self.reading_paused and self.phase == BODY:
            self._resume()

    # timers: one per connection, re-armed from `deadline` rather than rescheduled per request ----

    def _arm(self, kind: int, deadline: float) -> None:
        self.timer_kind, self.deadline = kind, deadline
        if self.timer is not None:
            if self.timer_at <= deadline:
                return  # it fires in time and re-arms itself from `deadline`
            self.timer.cancel()
        # Never later than a head timeout from now: a head that starts meanwhile needs no new timer.
        self.timer_at = min(deadline, self.loop.time() + self.limits.head_timeout_s)
        self.timer = self.loop.call_at(self.timer_at, self._on_timer)

    def _cancel_timer(self) -> None:
        self.timer_kind = NO_TIMER
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        kind = self.timer_kind
        if kind == NO_TIMER or self.phase == CLOSED:
            return
        if self.loop.time() < self.deadline:
            self._arm(kind, self.deadline)
        elif kind == HEAD_WAIT:
            timeout = self.limits.head_timeout_s
            self.shared.connections.head_timeout_log(timeout=timeout)
            if self.message_started or self.head_bytes:
                self._refuse(408, f"The request head was not complete within {timeout:g}s")
            else:
                self._close()
        else:  # IDLE, LINGER
            self._close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` (unless an answer has started), end the request, close the connection."""
        if self.phase == CLOSED:
            return
        exchange = self.exchange
        if exchange is not None:
            # The pipeline is running: it must see the client as gone, never a complete body.
            exchange.refused = status
            answer = exchange.state == NOTHING
        else:
            answer = self.phase == HEAD  # else the answer is out, and the rest of the body was bad
        if answer:
            self.write(self.shared.host.refusal_response(status, message))
        self._close()
