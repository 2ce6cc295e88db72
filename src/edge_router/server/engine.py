"""The server engine: one `HttpConnection` (an asyncio `Protocol`) per client connection, requests
parsed by httptools (llhttp, strict) and handed to the pipeline as a `RequestContext` with the
connection's own body reader and answer writer (`_exchange.Exchange`), with no ASGI message in
between. The control plane is the pipeline's business (it adapts to ASGI itself).

Why this and not a server library: an ASGI server builds a scope and message dicts per request
and writes head and body with two syscalls, and none of them enforces the limits a gateway needs
(bounded heads, a head timeout, a connection cap that evicts) without reaching into its private
parts. Here every byte passes through `data_received`, where the limits are counted.

One request at a time per connection, answered in order (pipelining): the parser is fed up to
the end of the current request (the head's end is found by `\\r\\n\\r\\n`, a body by its
Content-Length); bytes past it are held unparsed, and reading paused, until the answer is out.
A chunked request followed by another in the same read is the one case where the parser would
run ahead: the next request is not parsed, and the connection closes after the current answer
(a pipelining client retries unanswered requests, RFC 9112 section 9.3.2).

What is refused, and how (the router's JSON error with `Connection: close`, `Host.refusal_response`):

* a head over `max_head_bytes` (counted raw while it arrives, exactly once it is complete) or
  with more than `max_header_count` headers: 431;
* a head not complete within `head_timeout_s` of the connection's opening, or of a kept-alive
  connection's next request's first byte: 408 when part of a head arrived, else the connection
  is closed; an idle kept-alive connection is closed after `keepalive_timeout_s`;
* a malformed request (the parser's error: bad framing, Content-Length with Transfer-Encoding,
  a duplicate Content-Length, a bad chunk): 400; an upgrade request with a body: 400;
* in a chunked body, more than `max_head_bytes` of chunk-size lines, extensions or trailers with
  no body byte between them: 400. A refusal mid-body makes the pipeline's next `read()` raise
  `ClientDisconnected` (`refused` holds the status), so the backend never sees that body as
  complete;
* at `max_connections`, a new connection closes the one waiting longest for a request head (an
  idle kept-alive one, or a partial head: 503) instead of being refused; only when every
  connection has a request in progress is it answered 503 (`_limits.Connections`).

A request the pipeline answered before reading its whole body: the rest is read and dropped
(at most 1 MiB within 1 s, then the connection closes), unless the client waits for a
`100 Continue` that was never sent (it may never send the body): then the connection closes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httptools

from ..http.context import RequestContext
from ._base import (
    BODY,
    CLOSED,
    HEAD,
    HEAD_WAIT,
    HELD,
    IDLE,
    LINGER,
    NO_TIMER,
    PAUSE_AT,
    SPLICED,
    UPGRADE,
    ConnectionBase,
    Host,
    Shared,
)
from ._exchange import DONE, NOTHING, Exchange
from ._splice import Splice
from ._wire import CLOSE_DELIMITED

if TYPE_CHECKING:
    from ..http.channel import Upgraded

__all__ = ["Host", "HttpConnection", "Shared"]

logger = logging.getLogger("edge_router.server")


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the refusal is already made."""


_LINGER_BYTES = 1024 * 1024
_LINGER_S = 1.0
_SPECIAL = frozenset({b"content-length", b"transfer-encoding", b"expect"})
_METHODS = {
    name.encode(): name
    for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE")
}


class HttpConnection(ConnectionBase):
    """One client connection (see the module docstring for what it refuses)."""

    __slots__ = ()

    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        self.parser = httptools.HttpRequestParser(self)  # the callbacks below are its protocol

    # reading ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase <= BODY:
            self._feed(data)
        elif phase <= UPGRADE:
            self._hold(data)
        elif phase == SPLICED and self.splicing is not None:
            self.splicing.from_client(data)

    def _feed(self, data: bytes) -> None:
        """Parse `data`, stopping at the end of a request whose answer is not out yet (the rest
        is held): the head's end found by CRLFCRLF, a body's by its Content-Length."""
        while data:
            phase = self.phase
            if phase == HEAD:
                end = self._head_end(data)
                if 0 <= end < len(data):
                    piece, data = data[:end], data[end:]
                else:
                    piece, data = data, b""
            elif phase == BODY and 0 <= self.body_left < len(data):
                piece, data = data[: self.body_left], data[self.body_left :]
            else:
                piece, data = data, b""
            if phase == BODY and self.body_left > 0:
                self.body_left -= len(piece)
            self._parse(piece)
            if self.phase == HEAD and not data:
                self.tail = piece[-3:] if len(piece) >= 3 else (self.tail + piece)[-3:]
            elif self.phase > BODY:
                if data and self.phase != CLOSED:
                    self._hold(data)
                return

    def _head_end(self, data: bytes) -> int:
        """Where the request head ends in `data` (just past CRLFCRLF), or -1."""
        tail = self.tail
        if tail:
            self.tail = b""
            at = (tail + data[:3]).find(b"\r\n\r\n")
            if at >= 0:
                return at + 4 - len(tail)
        at = data.find(b"\r\n\r\n")
        return at + 4 if at >= 0 else -1

    def _parse(self, piece: bytes) -> None:
        """Feed the parser one piece, counting the head and framing limits where bytes pass."""
        phase = self.phase
        self.progress = self.completed = False
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade as exc:
            self._hold(piece[exc.args[0] :])
            return
        except httptools.HttpParserError:
            if self.stopped:  # a pipelined request after a chunked one (module docstring)
                self.parser_dead = True
            elif self.phase != CLOSED:  # a limit's refusal has answered already
                self._refuse(400, "The request is not valid HTTP/1.1")
            return
        if self.completed or self.phase == CLOSED:
            return
        limit = self.limits.max_head_bytes
        if phase == HEAD and self.phase == HEAD:
            self.head_bytes += len(piece)
            if self.head_bytes > limit:
                self._refuse(431, f"The request head is larger than {limit} bytes")
        elif phase == BODY:
            if self.progress:
                self.framing_bytes = 0
            else:
                self.framing_bytes += len(piece)
                if self.framing_bytes > limit:
                    self._refuse(400, f"Chunk lines, extensions or trailers over {limit} bytes")

    def _hold(self, data: bytes) -> None:
        if self.parser_dead or self.phase == CLOSED:
            return
        if self.held is None:
            self.held = bytearray(data)
        else:
            self.held += data
        self._pause()

    # parser callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.exchange is not None:
            # The parser ran past a chunked request into the next one: stop it (module docstring).
            self.stopped = True
            raise _Refused
        self.message_started = True
        self._new_message()
        if self.timer_kind == IDLE:
            self._arm(HEAD_WAIT, self.loop.time() + self.limits.head_timeout_s)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        self.head_size += len(name) + len(value) + 4
        if name in _SPECIAL:
            if name == b"content-length":
                self.content_length = value
            elif name == b"transfer-encoding":
                self.chunked = True
            else:
                self.expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        limits = self.limits
        if len(self.headers) > limits.max_header_count:
            self._refuse(431, f"The request has more than {limits.max_header_count} headers")
            raise _Refused
        if self.head_size + len(self.url) > limits.max_head_bytes:
            self._refuse(431, f"The request head is larger than {limits.max_head_bytes} bytes")
            raise _Refused
        parser = self.parser
        upgrade = parser.should_upgrade()
        if upgrade and (self.chunked or self.content_length not in (None, b"0")):
            self._refuse(400, "A request that asks to upgrade cannot have a body")
            raise _Refused
        self.shared.connections.waiting.pop(self, None)
        self.timer_kind = NO_TIMER
        self.message_started = False
        self.head_bytes = self.framing_bytes = 0
        self.tail = b""
        length = self.content_length
        self.body_left = int(length) if length is not None and not self.chunked else -1
        method = parser.get_method()
        http11 = parser.get_http_version() == "1.1"
        exchange = Exchange(
            self,
            head_request=method == b"HEAD",
            http11=http11,
            keep_alive=parser.should_keep_alive() and not upgrade,
            expect=self.expect,
            upgrade=upgrade,
        )
        self.exchange = exchange
        self.phase = BODY
        ctx = self._context(method, "1.1" if http11 else parser.get_http_version())
        self.task = self.loop.create_task(self._run(exchange, ctx))

    def _context(self, method: bytes, version: str) -> RequestContext:
        url = self.url
        if url[:1] == b"/":
            if b"#" in url:
                url = url.partition(b"#")[0]
            path, _, query = url.partition(b"?")
        else:  # absolute-form (a proxy request), `*`, or CONNECT's authority
            try:
                parsed = httptools.parse_url(url)
                path, query = parsed.path or b"/", parsed.query or b""
            except httptools.HttpParserInvalidURLError:
                path, query = url, b""
        return RequestContext(
            method=_METHODS.get(method) or method.decode("latin-1"),
            raw_path=path.decode("latin-1"),
            query=query,
            raw_headers=self.headers,
            client=self.client,
            http_version=version,
        )

    def on_body(self, body: bytes) -> None:
        self.progress = True
        exchange = self.exchange
        if exchange is None:  # the answer is out already: dropped (bounded)
            self.discarded += len(body)
            if self.discarded > _LINGER_BYTES:
                self._close()
                raise _Refused
            return
        exchange.parts.append(body)
        exchange.buffered += len(body)
        if exchange.waiter is not None:
            exchange.wake()
        if exchange.buffered >= PAUSE_AT:
            self._pause()

    def on_message_complete(self) -> None:
        self.completed = True
        exchange = self.exchange
        if exchange is None:  # the rest of a body, dropped after the answer: on to the next request
            self._next_request()
            return
        exchange.complete = True
        if exchange.waiter is not None:
            exchange.wake()
        self.phase = UPGRADE if exchange.upgrade is not None else HELD

    # handling --------------------------------------------------------------------------------

    async def _run(self, exchange: Exchange, ctx: RequestContext) -> None:
        try:
            await self.shared.host.handle(ctx, exchange, exchange)
        except Exception:
            logger.exception("server: the request handler failed (%s %s)", ctx.method, ctx.raw_path[:200])
            self._handled(exchange, failed=True)
        else:
            self._handled(exchange, failed=False)

    def _handled(self, exchange: Exchange, *, failed: bool) -> None:
        """`handle()` returned: the next request, a lingering read of the body, or the end."""
        exchange.gone = True  # a stale reference writes nothing from now on
        self.task = None
        if self.exchange is exchange:
            self.exchange = None
        if self.phase == CLOSED:
            return
        if exchange.state != DONE:
            if exchange.state == NOTHING or exchange.pending:  # nothing of it on the wire yet
                if not failed:
                    logger.error("server: the request handler returned without an answer")
                self.write(self.shared.host.refusal_response(500, "The router failed to answer this request"))
                self._close()
            else:  # a streamed answer broke off: it must not look complete (no last chunk)
                self._close(abort=exchange.mode == CLOSE_DELIMITED)
            return
        phase = self.phase
        if not exchange.keep_alive or self.parser_dead or self.shared.stopping or phase > HELD:
            self._close()
        elif phase == HELD:
            self._next_request()
            self._continue()
        elif exchange.expect and not exchange.continue_sent:
            self._close()  # the client may wait for a 100 forever: its body never comes
        else:  # the answer is out before the body was read: the rest is dropped, bounded
            self.discarded = 0
            self._arm(LINGER, self.loop.time() + _LINGER_S)
            self._resume()

    def _next_request(self) -> None:
        """The connection waits for its next request (kept alive)."""
        if self.shared.stopping:
            self._close()
            return
        self.phase = HEAD
        self.shared.connections.waiting[self] = None
        self._arm(IDLE, self.loop.time() + self.limits.keepalive_timeout_s)

    def _continue(self) -> None:
        """Parse what arrived meanwhile, then read on (unless that holds again)."""
        held = self.held
        if held is not None and self.phase == HEAD:
            self.held = None
            self._feed(bytes(held))
        if self.phase <= HELD and self.held is None:
            exchange = self.exchange
            if exchange is None or exchange.buffered < PAUSE_AT:
                self._resume()

    # upgrade ---------------------------------------------------------------------------------

    async def splice(self, head: bytes, backend: Upgraded, idle_timeout: float, gone: bool) -> None:
        """Write the 101 head and relay both ways until both sides are closed (`_splice`)."""
        if gone or self.phase == CLOSED:
            backend.attach(_Dropped()).close()
            return
        self.phase = SPLICED
        self._cancel_timer()
        self.write(head)
        splicing = self.splicing = Splice(self.transport, self.loop, idle_timeout)
        held, self.held = self.held, None
        self._resume()
        splicing.begin(backend, bytes(held) if held else b"")
        if self.shared.stopping:
            splicing.stop()
        await splicing.done


class _Dropped:
    """The client's side of a splice whose client left before it began."""

    def write(self, data: bytes) -> None:
        return None

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        return None
