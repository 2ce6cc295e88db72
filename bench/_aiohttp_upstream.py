"""`Upstream` over aiohttp: the router's HTTP client until issue 16, kept here (not in the package)
as the comparison `_h1bench.py` measures `edge_router.upstream.http1` against.

aiohttp's exceptions are mapped to ours in one place, `_MappedErrors`: a timeout is
`UpstreamTimeout`, a failure to connect `UpstreamConnectError`, anything else once bytes may have
been exchanged `UpstreamProtocolError`. A body delimited by the connection's close (no
Content-Length, not chunked) that ends with a reset, which aiohttp alone reports as complete, is a
`UpstreamProtocolError` too.

Why aiohttp and not httpx: measured here (bench/, LAMBDA-FACTS.md) httpx's default transport costs
~630 us per kept-alive loopback GET against ~125-136 us for aiohttp, and degrades 5-14x further
under concurrency; our Lambda warm-path target (proxy <= 1.5x a direct GET) leaves no room for
that. aiohttp also re-tries an idempotent request once when a pooled keep-alive connection turns
out to have been closed by the backend, which a proxy needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from edge_router.exceptions import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from edge_router.http.headers import valid_response_head
from edge_router.upstream.base import Interim, RequestBody, UpstreamResponse

if TYPE_CHECKING:
    from ..http.channel import Upgraded

_BODY = "the backend stopped sending the response body"


class _MappedErrors:
    """The aiohttp boundary: every aiohttp error inside becomes one of ours (`timed_out` says what
    a timeout means where this is used, a string or the timeout in seconds). A class, not a
    @contextmanager generator: it runs on every request, and this costs a third as much."""

    __slots__ = ("_timed_out",)

    def __init__(self, timed_out: str | float) -> None:
        self._timed_out = timed_out

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is a TimeoutError too
            timed_out = self._timed_out
            if not isinstance(timed_out, str):
                timed_out = f"no answer within {timed_out * 1000:.0f} ms"
            raise UpstreamTimeout(timed_out) from None
        if isinstance(exc, aiohttp.ClientConnectorError):
            raise UpstreamConnectError(f"cannot connect: {exc.os_error or exc}") from None
        if isinstance(exc, aiohttp.ClientPayloadError):
            raise UpstreamProtocolError(f"the response body broke off: {exc}") from None
        if isinstance(exc, aiohttp.ClientError):
            raise UpstreamProtocolError(f"{type(exc).__name__}: {exc}") from None


def _close_delimited(response: aiohttp.ClientResponse) -> bool:
    """Whether the body ends only when the backend closes the connection (RFC 9112 6.3 item 8)."""
    if response.content_length is not None or response.method == "HEAD" or response.status in (204, 304):
        return False
    return "chunked" not in response.headers.get("Transfer-Encoding", "").lower()


def _connection_closed(response: aiohttp.ClientResponse) -> asyncio.Future[None] | None:
    """A future set when the response's connection is lost: with an exception after a reset."""
    connection = response.connection
    protocol = connection.protocol if connection is not None else None
    closed = protocol.closed if protocol is not None else None
    if closed is not None:
        # retrieved here so that a body nobody reads to the end leaves no "never retrieved" warning
        closed.add_done_callback(lambda future: future.cancelled() or future.exception())
    return closed


class _AiohttpResponse:
    __slots__ = ("_closed", "_response", "content_length", "raw_headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.raw_headers = response.raw_headers
        self.content_length = response.content_length
        self._closed = _connection_closed(response) if _close_delimited(response) else None

    async def stream(self) -> AsyncIterator[bytes]:
        with _MappedErrors(_BODY):
            async for chunk in self._response.content.iter_any():
                yield chunk
        closed = self._closed
        if closed is not None and closed.done() and not closed.cancelled() and closed.exception():
            # aiohttp ends a close-delimited body on any connection loss; a reset is not an end.
            raise UpstreamProtocolError("the connection was reset before the end of the response body")

    async def read(self, limit: int) -> bytes | None:
        length = self.content_length
        if length is not None and length > limit:
            return None
        if length is not None:
            with _MappedErrors(_BODY):
                return await self._response.read()
        parts, size = [], 0
        async for chunk in self.stream():
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        self._response.release()

    def upgraded(self) -> Upgraded:
        raise NotImplementedError("aiohttp cannot hand over an upgraded connection")


class AiohttpUpstream:
    """`Upstream` over one aiohttp ClientSession, created lazily inside the running loop."""

    def __init__(self, *, pool_limit: int = 1000) -> None:
        self._pool_limit = pool_limit
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_limit, limit_per_host=0, ttl_dns_cache=300),
                auto_decompress=False,  # bodies pass through as sent, compressed or not
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),  # a proxy must not remember cookies
            )
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(
                total=None, sock_connect=seconds, sock_read=seconds
            )
        return timeout

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: RequestBody,
        timeout: float,
        *,
        interim: Interim | None = None,  # ignored: aiohttp skips 1xx answers
    ) -> UpstreamResponse:
        with _MappedErrors(timeout):
            response = await self._client().request(
                method,
                URL(url, encoded=True),
                headers=list(headers),
                data=body,
                allow_redirects=False,
                timeout=self._timeout(timeout),
            )
        problem = valid_response_head(response.status, response.raw_headers)
        if problem is not None:
            response.close()  # the connection is in an unknown state: never reused
            raise UpstreamProtocolError(problem)
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await asyncio.sleep(0)
