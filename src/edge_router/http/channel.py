"""How a host hands a request to the pipeline and takes its answer back, without ASGI.

    class BodyReader(Protocol):          the request body, as the host receives it
        refused: int | None
        async def read() -> tuple[bytes, bool]

    class AnswerWriter(Protocol):        where the answer goes
        async def interim(status, headers) -> None        1xx, any number, before the answer
        async def whole(status, headers, body) -> None     a whole answer, in one write
        async def start(status, headers) -> None           or: the head, then
        async def body(data, more) -> None                   the body, until more=False
        upgrade: Upgrader | None                           None: this host cannot upgrade

Three hosts implement them: the server engine (`server/engine.py`: bytes on a socket, no ASGI
message in between), the Lambda adapter (`aws/function_url.py`: a whole body in, a buffered
answer out), and ASGI (`http/asgi.py`: for the control plane, and any ASGI server an embedder
runs the router under). The pipeline (`proxy/`) speaks only these.

`BodyReader.read()`:
* returns the next part of the body and whether more follows; a request without a body reads
  `(b"", False)` once; after the last part, reading again is not allowed;
* raises `ClientDisconnected` when the client left before the body was complete, or the host
  refused the rest of it (a malformed chunk): then `refused` holds the status the host answered
  with, for the request's log line (else it stays None: the client left, a 499);
* on a server, the first read is what sends `100 Continue` to a client that asked for it.

`AnswerWriter`:
* exactly one of `whole()` or `start()` + `body(..., more=False)`; headers are (name, value)
  byte pairs as relayed (a backend's names keep their case; the router's own are lower-case),
  with `content-length` when the length is known; the host
  frames the body (chunked when it must) and drops it for HEAD, 204 and 304;
* `body()` raises `ClientDisconnected` once the client is gone, so a download nobody reads any
  more stops reading the backend;
* `interim()` relays a 1xx answer (100 Continue, 103 Early Hints) where the host can (a server,
  to an HTTP/1.1 client), and is a no-op elsewhere (Lambda, ASGI); 101 never goes through it;
* `upgrade`, where not None, takes over the connection after a backend answered 101
  (`Upgrader.splice`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..types import Header


class BodyReader(Protocol):
    refused: int | None

    async def read(self) -> tuple[bytes, bool]: ...


class Upgraded(Protocol):
    """The backend's side of an upgraded connection (`UpstreamResponse.upgraded()`): raw bytes
    both ways, no framing."""

    def attach(self, peer: Pipe) -> Pipe:
        """Start relaying: first what the backend sent after its 101 head (already read), then
        every byte it sends, to `peer.write`; the backend's close (or reset) is `peer.close()`;
        the backend connection's full write buffer is `peer.pause_reading()` (and
        `resume_reading()` once drained). Returns the pipe to the backend: `write` sends to it,
        `pause_reading`/`resume_reading` stop and restart reading from it, `close` closes it."""
        ...


class Pipe(Protocol):
    """One direction's sink in a splice (a transport with flow control, seen by the other side)."""

    def write(self, data: bytes) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


class Upgrader(Protocol):
    async def splice(
        self, status: int, headers: list[Header], backend: Upgraded, idle_timeout: float
    ) -> None:
        """Send the 101 head, then relay bytes both ways until either side closes or nothing moves
        for `idle_timeout` seconds; returns when the connection is gone."""
        ...


class AnswerWriter(Protocol):
    upgrade: Upgrader | None

    async def interim(self, status: int, headers: list[Header]) -> None: ...

    async def whole(self, status: int, headers: list[Header], body: bytes) -> None: ...

    async def start(self, status: int, headers: list[Header]) -> None: ...

    async def body(self, data: bytes, more: bool) -> None: ...


class WholeBody:
    """A `BodyReader` over a body received whole already (Lambda, a background refresh)."""

    __slots__ = ("_body", "refused")

    def __init__(self, body: bytes = b"") -> None:
        self._body = body
        self.refused: int | None = None

    async def read(self) -> tuple[bytes, bool]:
        body, self._body = self._body, b""
        return body, False


class BufferedAnswer:
    """An `AnswerWriter` that keeps the answer (Lambda's buffered function URL answer, tests)."""

    __slots__ = ("_parts", "headers", "status", "upgrade")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[Header] = []
        self._parts: list[bytes] = []
        self.upgrade: Upgrader | None = None

    @property
    def content(self) -> bytes:
        return b"".join(self._parts)

    async def interim(self, status: int, headers: list[Header]) -> None:
        return None

    async def whole(self, status: int, headers: list[Header], body: bytes) -> None:
        self.status, self.headers, self._parts = status, headers, [body]

    async def start(self, status: int, headers: list[Header]) -> None:
        self.status, self.headers = status, headers

    async def body(self, data: bytes, more: bool) -> None:
        if data:
            self._parts.append(data)


class Nowhere:
    """An `AnswerWriter` that drops everything (a background revalidation's answer)."""

    upgrade: Upgrader | None = None

    async def interim(self, status: int, headers: list[Header]) -> None:
        return None

    async def whole(self, status: int, headers: list[Header], body: bytes) -> None:
        return None

    async def start(self, status: int, headers: list[Header]) -> None:
        return None

    async def body(self, data: bytes, more: bool) -> None:
        return None
