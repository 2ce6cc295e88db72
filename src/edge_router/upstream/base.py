"""The upstream contract: how the proxy talks to a backend, whatever the transport.

    class Upstream(Protocol):
        async def send(method, url, headers, body, timeout, *, interim=None) -> UpstreamResponse
        async def aclose() -> None

`send()`:
* sends `method` to `url` (already percent-encoded: it goes on the wire exactly as given) with
  exactly `headers` (nothing added: no User-Agent, Accept or Accept-Encoding of the client's own;
  only the framing the body needs, Content-Length or chunked, and Host if none is given) and
  `body` (bytes, or an async iterator streamed as it arrives); a header value's
  `.encode("utf-8", "surrogateescape")` is the bytes sent (the client's exact bytes, obs-text
  included, when the caller decoded them so); names are ASCII tokens;
* returns once the final response headers are in; the body is read with
  `UpstreamResponse.stream()` as sent by the backend (never decompressed), and `release()` must
  be called when done: a body not read to its end then closes the connection (never drained:
  a download nobody reads any more stops reading the backend);
* `interim`, where given, is awaited with every 1xx answer but 101 that arrives before the final
  one (100 Continue, 103 Early Hints), in order, with its headers as received; a client that
  cannot relay them ignores it;
* a 101 is a final answer: `UpstreamResponse.upgraded()` then takes the connection over (it never
  returns to a pool); elsewhere `upgraded()` raises;
* never follows redirects;
* `timeout` bounds connecting and each wait for bytes from the backend (nginx's
  proxy_connect_timeout / proxy_read_timeout semantics): a 200 MB download is not cut off,
  but a backend that goes silent is;
* raises only `UpstreamConnectError` (nothing was delivered), `UpstreamTimeout`, or
  `UpstreamProtocolError` (the exchange broke after bytes were sent, or the answer cannot be
  relayed: a status outside 200-599, a header with control characters), and lets an exception
  raised by the body iterator abort the request (the backend never sees the body as complete);
* a body that ends early raises `UpstreamProtocolError` from `stream()`/`read()`, never a clean end.

Implementations: `http1.Http1Upstream` (HTTP/1.1 on httptools), `lambda_invoke.LambdaInvokeUpstream`
(Lambda Invoke), `edge_router.testing.FakeUpstream` (no sockets, for tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..http.channel import Upgraded

RequestBody = bytes | AsyncIterable[bytes] | None
# awaited with each 1xx answer (but 101) before the final one: status, headers as received
Interim = Callable[[int, list[tuple[bytes, bytes]]], Awaitable[None]]


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

    def upgraded(self) -> Upgraded:
        """The connection, taken over, after a 101 answer (see `Upgraded` in http/channel.py);
        raises anywhere else (`NotImplementedError` where a client cannot upgrade)."""
        ...


class Upstream(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: RequestBody,
        timeout: float,
        *,
        interim: Interim | None = None,
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

    def upgraded(self) -> Upgraded:
        raise NotImplementedError("a whole answer carries no connection to upgrade")
