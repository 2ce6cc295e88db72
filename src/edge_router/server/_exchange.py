"""One request on a connection, as the pipeline sees it: its body reader, its answer writer and,
for a request that asked to upgrade, its upgrader (`http/channel.py`, all three in one object:
one allocation per request).

The connection (`engine.HttpConnection`) feeds it: body parts as the parser finds them
(`parts`, `buffered`, `complete`), and `fail()` when the client left or the engine refused the
rest of the request (`refused` then holds the status). It ends when the pipeline's `handle()`
returns: from then on it is `gone` and writes nothing, so a stale reference can never write into
the connection's next answer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from ..exceptions import ClientDisconnected
from ._wire import CHUNKED, CLOSE_DELIMITED, CONTINUE, IDENTITY, NO_BODY, chunk, frame, interim_head

if TYPE_CHECKING:
    from ..http.channel import Upgraded, Upgrader
    from ..types import Header


class _Server(Protocol):
    stopping: bool  # the server is stopping: answers close their connection


class Connection(Protocol):
    """What an exchange needs of its connection (`engine.HttpConnection`): declared here, so this
    module depends on nothing of the engine's."""

    loop: asyncio.AbstractEventLoop
    write_paused: bool

    @property
    def shared(self) -> _Server: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def body_taken(self) -> None: ...

    async def splice(self, head: bytes, backend: Upgraded, idle_timeout: float, gone: bool) -> None: ...


# `Exchange.state`: what of the answer went out.
NOTHING = 0  # nothing yet (interim answers do not count)
STREAMING = 1  # start() was called; the body follows
DONE = 2  # the whole answer is out (or handed to a splice)


class Exchange:
    """`BodyReader` + `AnswerWriter` (+ `Upgrader`) of one request on a server connection.

    Reading: `read()` returns every part buffered so far in one piece; the first read of a body
    that has not arrived sends `100 Continue` to an HTTP/1.1 client that asked for it; it raises
    `ClientDisconnected` when the client left before the body was complete or the engine refused
    the rest of it (a malformed chunk: `refused` is the status it answered).

    Writing: see `frame` for the framing. `whole()` is one write of head and body.
    `start()` keeps the head for a moment (one loop turn), so that a first body part that is
    already there goes out in the same write. `body()` raises `ClientDisconnected` once the
    client is gone, and waits while the client's transport is paused (flow control).
    `interim()` writes a 1xx head to an HTTP/1.1 client before the answer (a backend's 100 is
    dropped when the engine has sent its own).
    """

    __slots__ = (
        "buffered",
        "complete",
        "conn",
        "continue_sent",
        "expect",
        "gone",
        "head_request",
        "http11",
        "keep_alive",
        "left",
        "mode",
        "parts",
        "pending",
        "refused",
        "state",
        "upgrade",
        "waiter",
    )

    def __init__(
        self,
        conn: Connection,
        *,
        head_request: bool,
        http11: bool,
        keep_alive: bool,
        expect: bool,
        upgrade: bool,
    ) -> None:
        self.conn = conn
        self.refused: int | None = None
        self.upgrade: Upgrader | None = self if upgrade else None
        self.head_request = head_request
        self.http11 = http11
        self.keep_alive = keep_alive  # updated by the answer's framing
        self.expect = expect and http11  # 100-continue: HTTP/1.0 clients get none
        self.continue_sent = False
        self.state = NOTHING
        self.mode = NO_BODY
        self.left = 0  # IDENTITY: body bytes still to send
        self.pending = b""  # a streamed answer's head, not written yet
        self.parts: list[bytes] = []
        self.buffered = 0
        self.complete = False  # the request's body is all in `parts` (or was read)
        self.gone = False
        self.waiter: asyncio.Future[None] | None = None

    # fed by the connection -------------------------------------------------------------------

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self) -> None:
        """The client is gone (or refused): reads and streamed writes raise from now on."""
        self.gone = True
        self.wake()

    # BodyReader ------------------------------------------------------------------------------

    async def read(self) -> tuple[bytes, bool]:
        while True:
            parts = self.parts
            if parts:
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                parts.clear()
                self.buffered = 0
                self.conn.body_taken()
                return data, not self.complete
            if self.complete:
                return b"", False
            if self.gone:
                raise ClientDisconnected("client disconnected during the request body")
            if self.expect and not self.continue_sent and self.state == NOTHING:
                self.continue_sent = True
                self.conn.write(CONTINUE)
            self.waiter = self.conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    # AnswerWriter ----------------------------------------------------------------------------

    async def interim(self, status: int, headers: list[Header]) -> None:
        if self.state != NOTHING or self.gone or not self.http11 or not 100 <= status <= 199 or status == 101:
            return  # never a 101 (a splice writes it) nor what is not a 1xx
        if status == 100:
            if self.continue_sent:
                return  # the engine sent its own already
            self.continue_sent = True
        self.conn.write(interim_head(status, headers))

    async def whole(self, status: int, headers: list[Header], body: bytes) -> None:
        if self.state != NOTHING:
            raise RuntimeError("the answer has started already")
        self.state = DONE
        if self.gone:
            return
        keep_alive = self.keep_alive and not self.conn.shared.stopping
        head, mode, length, self.keep_alive = frame(
            status, headers, self.head_request, self.http11, keep_alive, len(body)
        )
        if mode == NO_BODY or not body:
            self.conn.write(head)
        else:
            if length != len(body):  # a Content-Length that is not the body's: never more than it says
                body, self.keep_alive = body[:length], False
            self.conn.write(head + body)
        conn = self.conn
        if conn.write_paused:
            await conn.drain()

    async def start(self, status: int, headers: list[Header]) -> None:
        if self.state != NOTHING:
            raise RuntimeError("the answer has started already")
        self.state = STREAMING
        keep_alive = self.keep_alive and not self.conn.shared.stopping
        self.pending, self.mode, length, self.keep_alive = frame(
            status, headers, self.head_request, self.http11, keep_alive
        )
        self.left = length if self.mode == IDENTITY else 0
        if not self.gone:
            self.conn.loop.call_soon(self.flush_head)

    def flush_head(self) -> None:
        """The head of a streamed answer whose first body part did not come within a loop turn."""
        if self.pending and not self.gone:
            self.conn.write(self.pending)
        self.pending = b""

    async def body(self, data: bytes, more: bool) -> None:
        if self.state != STREAMING:
            raise RuntimeError("body() before start() or after the last part")
        if self.gone:
            raise ClientDisconnected("client disconnected during the answer")
        mode = self.mode
        if mode == CHUNKED:
            out = chunk(data, not more)
        elif mode == IDENTITY:
            if len(data) > self.left:  # more than the Content-Length said: never sent
                data, self.keep_alive = data[: self.left], False
            self.left -= len(data)
            out = data
        elif mode == CLOSE_DELIMITED:
            out = data
        else:
            out = b""
        if self.pending:
            out, self.pending = self.pending + out, b""
        conn = self.conn
        if out:
            conn.write(out)
        if not more:
            self.state = DONE
            if self.left:  # fewer bytes than the Content-Length said: the connection ends
                self.keep_alive = False
        if conn.write_paused:
            await conn.drain()
            if self.gone and more:
                raise ClientDisconnected("client disconnected during the answer")

    # Upgrader --------------------------------------------------------------------------------

    async def splice(
        self, status: int, headers: list[Header], backend: Upgraded, idle_timeout: float
    ) -> None:
        """Send the 101 head and relay bytes both ways (`_splice.Splice`); returns once both
        sides are closed."""
        if self.state != NOTHING:
            raise RuntimeError("the answer has started already")
        self.state = DONE
        self.keep_alive = False
        await self.conn.splice(interim_head(status, headers), backend, idle_timeout, self.gone)
