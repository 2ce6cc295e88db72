"""The upstream HTTP client: one small interface, one implementation chosen by benchmark.

`Upstream.send()` contract:
* sends `method` to `url` (already percent-encoded: it goes on the wire exactly as given) with
  exactly `headers` (nothing added: no User-Agent, Accept or Accept-Encoding of the client's own)
  and `body` (bytes, or an async iterator streamed as it arrives);
* returns once the response headers are in; the body is read with `UpstreamResponse.stream()`
  as sent by the backend (never decompressed), and `release()` must be called when done;
* never follows redirects;
* `timeout` bounds connecting and each wait for bytes from the backend (nginx's
  proxy_connect_timeout / proxy_read_timeout semantics): a 200 MB download is not cut off,
  but a backend that goes silent is;
* raises only `UpstreamConnectError` (nothing was delivered), `UpstreamTimeout`, or
  `UpstreamProtocolError` (the exchange broke after bytes were sent, or the answer cannot be
  relayed: a status outside 200-599, a header with control characters);
* a body that ends early raises `UpstreamProtocolError` from `stream()`/`read()`, never a clean
  end: also a body delimited by the connection's close (no Content-Length, not chunked) that ends
  with a reset instead of a clean close, which aiohttp alone reports as complete.

Why aiohttp and not httpx: measured here (bench/, LAMBDA-FACTS.md) httpx's default transport costs
~630 us per kept-alive loopback GET against ~125-136 us for aiohttp, and degrades 5-14x further
under concurrency; our Lambda warm-path target (proxy <= 1.5x a direct GET) leaves no room for
that. aiohttp also re-tries an idempotent request once when a pooled keep-alive connection turns
out to have been closed by the backend, which a proxy needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Protocol

import aiohttp
from yarl import URL

from ._exceptions import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from ._headers import valid_response_head

RequestBody = bytes | AsyncIterable[bytes] | None


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def raw_headers(self) -> Sequence[tuple[bytes, bytes]]: ...

    @property
    def content_length(self) -> int | None: ...

    def stream(self) -> AsyncIterator[bytes]: ...

    async def read(self, limit: int) -> bytes | None:
        """The whole body, or None (and nothing more read) when it is larger than `limit` bytes."""
        ...

    def release(self) -> None: ...


class Upstream(Protocol):
    async def send(
        self, method: str, url: str, headers: Sequence[tuple[str, str]], body: RequestBody, timeout: float
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


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
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError:
            raise UpstreamTimeout("the backend stopped sending the response body") from None
        except aiohttp.ClientError as exc:
            raise UpstreamProtocolError(f"the response body broke off: {exc}") from None
        closed = self._closed
        if closed is not None and closed.done() and not closed.cancelled() and closed.exception():
            # aiohttp ends a close-delimited body on any connection loss; a reset is not an end.
            raise UpstreamProtocolError("the connection was reset before the end of the response body")

    async def read(self, limit: int) -> bytes | None:
        length = self.content_length
        if length is not None and length > limit:
            return None
        if length is not None:
            try:
                return await self._response.read()
            except TimeoutError:
                raise UpstreamTimeout("the backend stopped sending the response body") from None
            except aiohttp.ClientError as exc:
                raise UpstreamProtocolError(f"the response body broke off: {exc}") from None
        parts, size = [], 0
        async for chunk in self.stream():
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        self._response.release()


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
        self, method: str, url: str, headers: Sequence[tuple[str, str]], body: RequestBody, timeout: float
    ) -> UpstreamResponse:
        try:
            response = await self._client().request(
                method,
                URL(url, encoded=True),
                headers=list(headers),
                data=body,
                allow_redirects=False,
                timeout=self._timeout(timeout),
            )
        except TimeoutError:  # aiohttp's ServerTimeoutError is a TimeoutError too
            raise UpstreamTimeout(f"no answer within {timeout * 1000:.0f} ms") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectError(f"cannot connect: {exc.os_error or exc}") from None
        except aiohttp.ClientError as exc:
            raise UpstreamProtocolError(f"{type(exc).__name__}: {exc}") from None
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
