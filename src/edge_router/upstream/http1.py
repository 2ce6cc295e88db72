"""`Upstream` over HTTP/1.1: httptools' response parser on asyncio Protocols, a pool of kept-alive
connections per origin (the contract is in `base.py`).

    Http1Upstream().send(method, url, headers, body, timeout, *, interim=None) -> response

* Connections: per origin (scheme, host, port), reused most recent first; one closed by the
  backend while idle is noticed (connection_lost) and skipped; idle ones expire after 30 s, at
  most 64 kept per origin; `aclose()` closes them all. TLS is asyncio's SSL transport; its context
  is built on the first https request, never at import. Host addresses are cached for 300 s.
* The request: its head built as bytes (`.encode("utf-8", "surrogateescape")` of each value: the
  client's exact bytes, obs-text included), exactly the caller's headers plus the framing the body
  needs (Content-Length, or chunked for a streamed body without one) and Host if none is given;
  head and a bytes body in one write; a streamed body written as it comes, waiting while the
  transport's buffer is full. An exception from the body iterator closes the connection (the
  backend never sees a complete body) and propagates unchanged.
* Timeouts, nginx-style: `timeout` bounds connecting, each wait for room to write the body, and
  each wait for bytes from the backend (the head, then each body chunk), not the whole exchange.
* 1xx: each one but 101 before the final head goes to `interim` (awaited, in order); a 101 is
  final, and `upgraded()` hands its connection over (it never returns to the pool).
* The answer: HEAD, 204 and 304 without a body; chunked (trailers dropped), Content-Length or
  close-delimited bodies (a reset ends none of them cleanly: `UpstreamProtocolError`); reading the
  backend pauses while 256 KiB wait unread. `release()` returns a connection whose answer is all in
  to the pool and closes any other: a download nobody reads stops reading the backend.
* A pooled connection that turns out dead with no response byte (closed by the backend just as
  the request went out) is retried once on a new connection, only for an idempotent method and a
  body that is not a stream; a new connection is never retried.
* Errors, mapped here: connecting (DNS, refused, TLS) -> `UpstreamConnectError`; a timeout ->
  `UpstreamTimeout`; a malformed answer, or a connection lost after the request went out ->
  `UpstreamProtocolError`; an answer that cannot be relayed (`valid_response_head`) closes the
  connection and is an `UpstreamProtocolError` too.

Why this and not aiohttp (or another library client): measured on 2 shared cores, bench/_backend.py
as the backend, a kept-alive loopback GET of its 200-byte answer, one `run_until_complete` per
request on the plain asyncio loop as the Lambda adapter runs it, best of 3 x 20,000 GETs, three
interleaved rounds; "floor" is a bare asyncio Protocol writing a fixed request and awaiting the
first bytes back, no parsing (what any client on this loop costs at least):

    cd bench && ../.venv/bin/python _backend.py --port 0     # PORT <n>
    .venv/bin/python bench/_h1bench.py <n> 20000 3
    floor 66.2 us   Http1Upstream 83.0 us   AiohttpUpstream 174.5 us per GET
    floor 42.8 us   Http1Upstream 96.5 us   AiohttpUpstream 160.1 us per GET
    floor 78.9 us   Http1Upstream 93.2 us   AiohttpUpstream 164.1 us per GET

i.e. ~15-25 us above the floor against ~95-115 us for aiohttp. The client's own CPU, with the
socket replaced by a transport that answers at once: ~13.5 us per GET, of which ~5 us is the one
future an await on the backend costs anyway. Import (compiled bytecode, asyncio already loaded):
~5 ms against ~145 ms for the aiohttp adapter it replaced (now `bench/_aiohttp_upstream.py`,
kept for this comparison) (`python -X importtime -c 'import asyncio, re,
logging; import edge_router.upstream.http1'`). httpx measured ~630 us per GET earlier (bench/).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import TYPE_CHECKING

from ..exceptions import UpstreamProtocolError, UpstreamTimeout
from ..http.headers import valid_response_head
from ._h1conn import Connection, Head
from ._h1pool import Origin, parse_origin, request_head, split_url
from .base import Interim, RequestBody

if TYPE_CHECKING:
    from ..http.channel import Upgraded

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_BODY = "the backend stopped sending the response body"
_NO_ANSWER = "the backend closed the connection without answering"


class Http1Response:
    """An answer being received (`UpstreamResponse`): status and headers are in, the body comes."""

    __slots__ = ("_conn", "_origin", "_taken", "_timeout", "content_length", "raw_headers", "status")

    def __init__(self, conn: Connection, origin: Origin, timeout: float) -> None:
        self._conn: Connection | None = conn
        self._origin = origin
        self._timeout = timeout
        self._taken: Connection | None = None  # the connection upgraded() handed over
        self.status = conn.status
        self.raw_headers: Head = conn.head
        length = conn.length
        self.content_length = int(length) if length is not None else None

    async def stream(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while conn is not None and conn is self._conn:
            data = conn.take() if conn.chunks else await self._chunk(conn)
            if not data:
                return
            yield data

    async def read(self, limit: int) -> bytes | None:
        """The whole body, or None (and nothing more read) once it is larger than `limit`."""
        conn = self._conn
        length = self.content_length
        if conn is None or (length is not None and length > limit):
            return None if conn is not None else b""
        if conn.done:  # all in already (a small answer arrives with its head): no await
            if conn.buffered > limit:
                return None
            return conn.take() if conn.chunks else b""
        parts: list[bytes] = []
        size = 0
        while True:
            data = conn.take() if conn.chunks else await self._chunk(conn)
            if not data:
                return b"".join(parts)
            size += len(data)
            if size > limit:
                return None
            parts.append(data)

    async def _chunk(self, conn: Connection) -> bytes:
        """The next body bytes, b"" at the end; waits (bounded by the timeout) for them."""
        while not conn.chunks:
            if conn.done:
                return b""
            if conn.closed or conn.broken is not None:
                raise UpstreamProtocolError(_broke_off(conn))
            waiter = conn.wait(self._timeout)
            try:
                await waiter
            finally:
                conn.stop_timer()
            if conn.timed_out:
                conn.abort()
                raise UpstreamTimeout(_BODY)
        return conn.take()

    def release(self) -> None:
        """Back to the pool if the answer is all in and the backend keeps the connection; closed
        otherwise (never read to its end here). Calling it again does nothing."""
        conn = self._conn
        if conn is None:
            taken = self._taken
            if taken is not None and taken.peer is None:
                taken.abort()  # upgraded() but never attached: nobody will use it
            return
        self._conn = None
        if conn.reusable:
            conn.chunks = []
            conn.buffered = 0
            self._origin.put(conn)
        else:
            conn.abort()

    def upgraded(self) -> Upgraded:
        """After a 101 answer: the connection, to `attach()` a peer to (it leaves the pool)."""
        conn = self._conn
        if conn is None or not conn.upgraded:
            raise RuntimeError("upgraded() is only for a 101 answer, before release()")
        self._conn, self._taken = None, conn
        return conn


def _broke_off(conn: Connection) -> str:
    if conn.broken is not None:
        return f"the response body broke off: {conn.broken}"
    if conn.close_delimited:
        return "the connection was reset before the end of the response body"
    return "the response body broke off: the connection closed before its end"


class Http1Upstream:
    """`Upstream` over HTTP/1.1 with a pool of kept-alive connections per origin."""

    __slots__ = ("_loop", "_origins", "_pools")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origins: dict[str, Origin] = {}  # "scheme://authority" -> its origin
        self._pools: dict[tuple[str, str, int], Origin] = {}

    def _origin(self, prefix: str) -> Origin:
        known = self._origins.get(prefix)
        if known is not None:
            return known
        key, authority = parse_origin(prefix)
        origin = self._pools.get(key)
        if origin is None:
            origin = self._pools[key] = Origin(*key, authority)
        if len(self._origins) < 10_000:  # URLs come from config: a bounded set in practice
            self._origins[prefix] = origin
        return origin

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: RequestBody,
        timeout: float,
        *,
        interim: Interim | None = None,
    ) -> Http1Response:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._rebind(loop)
        prefix, target = split_url(url)
        origin = self._origin(prefix)
        head, length = request_head(method, target, headers, origin.authority, body)
        conn = origin.take(loop.time())
        reused = conn is not None
        if conn is None:
            conn = await origin.connect(loop, timeout)
        answered = await _exchange(conn, method, head, body, length, timeout, interim)
        if not answered and reused and method in IDEMPOTENT and (body is None or isinstance(body, bytes)):
            # the backend closed the pooled connection as the request went out: once more, afresh
            conn = await origin.connect(loop, timeout)
            answered = await _exchange(conn, method, head, body, length, timeout, interim)
        if not answered:
            conn.abort()
            raise UpstreamProtocolError(_NO_ANSWER)
        status = conn.status
        problem = valid_response_head(200 if status == 101 else status, conn.head)
        if problem is not None:
            conn.abort()  # the connection is in an unknown state: never reused
            raise UpstreamProtocolError(problem)
        return Http1Response(conn, origin, timeout)

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        """A new event loop (a test's, or after a fork): connections of the old one are dropped."""
        if self._loop is not None:
            for origin in self._pools.values():
                origin.idle.clear()
        self._loop = loop

    async def aclose(self) -> None:
        """Close every idle connection (answers still being read close on release)."""
        for origin in self._pools.values():
            idle, origin.idle = origin.idle, []
            for conn in idle:
                if conn.transport is not None and not conn.closed:
                    conn.transport.close()
        await asyncio.sleep(0)


async def _exchange(
    conn: Connection,
    method: str,
    head: bytes,
    body: RequestBody,
    length: int | None,
    timeout: float,
    interim: Interim | None,
) -> bool:
    """Send the request on `conn` and wait for the final head (relaying interim answers): True
    once it is in, False if the connection closed without a byte of answer."""
    conn.begin(method == "HEAD", [] if interim is not None else None)
    transport = conn.transport
    assert transport is not None
    try:
        if body is None:
            transport.write(head)
        elif isinstance(body, bytes):
            if len(body) <= 65536:
                transport.write(head + body)  # one write, one segment
            else:
                transport.write(head)
                transport.write(body)
        else:
            await _write_stream(conn, head, body, length, timeout)
        while True:
            interims = conn.interims
            if interims:
                status, headers = interims.pop(0)
                assert interim is not None
                await interim(status, headers)
                continue
            if conn.head_ready:
                return True
            if conn.closed or conn.broken is not None:
                break
            waiter = conn.wait(timeout)
            try:
                await waiter
            finally:
                conn.stop_timer()
            if conn.timed_out:
                raise UpstreamTimeout(f"no answer within {timeout * 1000:.0f} ms")
    except BaseException:
        conn.abort()  # timed out, cancelled, or the body's iterator raised: never reused
        raise
    if conn.broken is not None:
        raise UpstreamProtocolError(conn.broken)
    if conn.received:
        raise UpstreamProtocolError("the backend closed the connection in the middle of its answer's head")
    return False


async def _write_stream(
    conn: Connection, head: bytes, body: AsyncIterable[bytes], length: int | None, timeout: float
) -> None:
    """Write a streamed body (chunked when `length` is None), waiting while the buffer is full;
    stops early when the backend answered already or closed."""
    transport = conn.transport
    assert transport is not None
    transport.write(head)
    sent = 0
    async for chunk in body:
        if conn.head_ready or conn.closed or conn.broken is not None:
            conn.keep_alive = False  # an early answer: the rest of the body is not sent
            return
        if not chunk:
            continue  # an empty chunk would end a chunked body
        sent += len(chunk)
        if length is None:
            transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
        elif sent > length:
            raise UpstreamProtocolError("the request body is longer than its Content-Length")
        else:
            transport.write(chunk)
        while conn.write_paused and not (conn.closed or conn.head_ready):
            waiter = conn.wait(timeout)
            try:
                await waiter
            finally:
                conn.stop_timer()
            if conn.timed_out:
                raise UpstreamTimeout(f"the backend took no request body for {timeout * 1000:.0f} ms")
    if length is None:
        transport.write(b"0\r\n\r\n")
    elif sent != length and not (conn.head_ready or conn.closed):
        raise UpstreamProtocolError("the request body is shorter than its Content-Length")
