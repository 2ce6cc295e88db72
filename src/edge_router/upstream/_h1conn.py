"""One kept-alive HTTP/1.1 connection to a backend: an asyncio `Protocol` fed to httptools'
response parser (private to `http1.py`, which states the contract).

Everything the parser reports lands in plain attributes that `http1.py` reads; a coroutine that
needs more waits on `wait()`, one future woken by whatever arrives (a head, an interim answer, a
body chunk, the end, the connection's loss, room in the write buffer) or by the timer it armed.
No future and no timer exist while nothing waits: a small answer that arrives with its head is
read without either.

Flow control: reading from the backend pauses while more than `HIGH_WATER` bytes of body wait
unread, and resumes once they are taken; `write_paused` mirrors the transport's write buffer
(pause_writing/resume_writing).

After a 101 the connection carries raw bytes: kept (reading paused) until `attach(peer)`, then
relayed to `peer` as they come (see `Upgraded` in http/channel.py).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

if TYPE_CHECKING:
    from ..http.channel import Pipe

HIGH_WATER = 256 * 1024  # unread body bytes that pause reading from the backend
Head = list[tuple[bytes, bytes]]


class Connection(asyncio.Protocol):
    """The protocol of one backend connection (one exchange at a time, never pipelined)."""

    __slots__ = (
        "_deadline",
        "_headers",
        "_loop",
        "_parser",
        "_timer",
        "_timer_at",
        "_waiter",
        "broken",
        "buffered",
        "busy",
        "chunks",
        "close_delimited",
        "closed",
        "done",
        "fresh_parser",
        "head",
        "head_only",
        "head_ready",
        "idle_since",
        "interims",
        "keep_alive",
        "length",
        "lost",
        "peer",
        "raw",
        "read_paused",
        "received",
        "status",
        "te",
        "timed_out",
        "transport",
        "upgraded",
        "write_paused",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = HttpResponseParser(self)
        self._headers: Head = []
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when _timer fires
        self._deadline: float | None = None  # when the current wait times out
        self.transport: asyncio.Transport | None = None
        self.closed = False  # connection_lost seen
        self.lost: BaseException | None = None  # what connection_lost said (None: a clean close)
        self.broken: str | None = None  # why the exchange cannot go on (a malformed answer)
        self.busy = False
        self.idle_since = 0.0
        self.read_paused = self.write_paused = False
        self.fresh_parser = False
        self.upgraded = False
        self.raw: list[bytes] = []
        self.peer: Pipe | None = None
        self.begin(False, None)
        self.busy = False  # until the first request is written

    def begin(self, head_only: bool, interims: list[tuple[int, Head]] | None) -> None:
        """Start an exchange (the request is written next); `head_only`: a HEAD request."""
        if self.fresh_parser:  # after a HEAD answer the parser still expects its body
            self._parser = HttpResponseParser(self)
            self.fresh_parser = False
        self.busy = True
        self.head_only = head_only
        self.interims = interims
        self.received = self.head_ready = self.done = self.timed_out = False
        self.keep_alive = True
        self.status = 0
        self.head: Head = []
        self.length: bytes | None = None
        self.te: bytes | None = None
        self.close_delimited = False
        self.chunks: list[bytes] = []
        self.buffered = 0

    def now(self) -> float:
        return self._loop.time()

    # waiting ---------------------------------------------------------------------------------

    def wait(self, timeout: float | None) -> asyncio.Future[None]:
        """A future woken by the next event, or after `timeout` seconds with `timed_out` set;
        call `stop_timer()` once it is done (or the wait given up).

        One timer per connection, re-armed lazily: a wait sets a deadline, and a timer already
        due no later than it is left to fire and look again (a timer handle created and
        cancelled for every wait costs more than the rest of a small exchange's bookkeeping)."""
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        if timeout is not None:
            deadline = self._deadline = loop.time() + timeout
            if self._timer is None or self._timer_at > deadline:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(deadline, self._time_out)
                self._timer_at = deadline
        return waiter

    def stop_timer(self) -> None:
        self._deadline = None

    def cancel_timer(self) -> None:
        self._deadline = None
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def _time_out(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return  # nobody waits any more
        if self._loop.time() + 0.001 < deadline:  # the timer was armed for an earlier wait
            self._timer = self._loop.call_at(deadline, self._time_out)
            self._timer_at = deadline
            return
        self._deadline = None
        self.timed_out = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transport is no subclass

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None:
            peer.write(data)
            return
        if self.upgraded:
            self.raw.append(data)
            return
        if not self.busy or self.done:  # bytes nobody asked for: the connection is out of step
            self.keep_alive = False
            if not self.busy:
                self.abort()
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._upgrade(data[exc.args[0] :])
        except HttpParserError as exc:
            self.broken = f"the backend sent a malformed response: {exc}"
            self.keep_alive = False
            self.abort()
            self._wake()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself: connection_lost says the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        self.keep_alive = False
        if self.peer is not None:
            self.peer.close()
        elif self.head_ready and not self.done and self.close_delimited and exc is None:
            self.done = True  # the close is the end of a body delimited by it
        self.cancel_timer()
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.peer is not None:
            self.peer.resume_reading()
        self._wake()

    # httptools callbacks ---------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            self.length = value
        elif size == 17 and name.lower() == b"transfer-encoding":
            self.te = value

    def on_headers_complete(self) -> None:
        headers, self._headers = self._headers, []
        status = self._parser.get_status_code()
        if self.head_ready:  # a second answer to one request
            self.keep_alive = False
            return
        if 100 <= status < 200 and status != 101:  # below 100: final, and refused as invalid
            if self.interims is not None:
                self.interims.append((status, headers))
            self.length = self.te = None
            self._wake()
            return
        self.status, self.head, self.head_ready = status, headers, True
        if self.head_only:  # a HEAD answer: its Content-Length describes a body it does not carry
            self.done = True
            self.fresh_parser = True
            self.keep_alive = self._parser.should_keep_alive()
        elif self.length is None and status not in (204, 304, 101):
            self.close_delimited = self.te is None or b"chunked" not in self.te.lower()
        self._wake()

    def on_body(self, data: bytes) -> None:
        if self.done:  # a body to a HEAD request, or bytes past the end
            self.keep_alive = False
            return
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._headers:
            self._headers = []  # trailers: not relayed
        if not self.head_ready or self.done:  # an interim answer's end, or a HEAD answer's
            return
        self.done = True
        self.keep_alive = self.keep_alive and self._parser.should_keep_alive()
        self._wake()

    # taking the body -------------------------------------------------------------------------

    def take(self) -> bytes:
        """Every body byte received and not taken yet (reading resumes if it was paused)."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.read_paused:
            self.resume()
        return data

    def resume(self) -> None:
        self.read_paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # ending ----------------------------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        """Whether the exchange ended cleanly at a message boundary and the backend keeps the
        connection open."""
        return self.done and self.keep_alive and not self.closed and not self.upgraded

    def abort(self) -> None:
        """Close now, without flushing (an abandoned or broken exchange: stop reading at once)."""
        self.keep_alive = False
        self.cancel_timer()
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _upgrade(self, rest: bytes) -> None:
        """A 101 was parsed: from here on the bytes are the upgraded protocol's."""
        self.upgraded = True
        self.keep_alive = False
        if rest:
            self.raw.append(rest)
        if self.transport is not None:
            self.transport.pause_reading()  # until attach(): nobody reads them yet
        self._wake()

    def attach(self, peer: Pipe) -> asyncio.Transport:
        """`Upgraded.attach`: relay what came after the 101, then everything, to `peer`."""
        transport = self.transport
        assert transport is not None and self.upgraded and self.peer is None
        raw, self.raw = self.raw, []
        for data in raw:
            peer.write(data)
        if self.closed:
            peer.close()
            return transport
        self.peer = peer
        if self.write_paused:
            peer.pause_reading()
        transport.resume_reading()
        return transport
