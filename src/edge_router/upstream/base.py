"""The upstream contract: how the proxy talks to a backend, whatever the transport.

    class Upstream(Protocol):
        async def send(method, url, headers, body, timeout) -> UpstreamResponse
        async def aclose() -> None

`send()`:
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
  relayed: a status outside 200-599, a header with control characters), and lets an exception
  raised by the body iterator abort the request (the backend never sees the body as complete);
* a body that ends early raises `UpstreamProtocolError` from `stream()`/`read()`, never a clean end.

Implementations: `aiohttp.AiohttpUpstream` (HTTP), `lambda_invoke.LambdaInvokeUpstream` (Lambda
Invoke), `edge_router.testing.FakeUpstream` (no sockets, for tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Protocol

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


class WholeResponse:
    """An `UpstreamResponse` received whole already (a Lambda Invoke answer, a test's fake):
    `stream()` yields the body in one piece. `content_length` may differ from the body's length
    (the answer to a HEAD keeps the length of the body it does not carry)."""

    __slots__ = ("_body", "content_length", "raw_headers", "status")

    def __init__(
        self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes, length: int | None = None
    ) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self._body = body
        self.content_length: int | None = len(body) if length is None else length

    @property
    def body(self) -> bytes:
        return self._body

    async def stream(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self._body

    async def read(self, limit: int) -> bytes | None:
        return None if len(self._body) > limit else self._body

    def release(self) -> None:
        pass
