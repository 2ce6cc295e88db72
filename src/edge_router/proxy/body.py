"""The request body, read as little as needed, and never passed on as complete when it was not.

* whole already (Lambda), or no fallback possible and it came in one message: `bytes`;
* up to the route's replay limit: buffered as `bytes`, so a fallback can send it again;
* larger: a `OneShotBody`, forwarded as it arrives and never sent twice.

A route's size limit (`ctx.body_limit`, CONTRACT section 8) holds for every body, a streamed one
without Content-Length included: a body found over it before any upstream contact is refused 413
at once; one that grows past it while streaming aborts the upstream request (`over_limit`), so the
backend sees an unterminated body, never a complete over-limit one, and the client gets the 413.

A client that leaves mid-body (also what the server's reader raises after refusing a malformed
chunk) raises `ClientDisconnected`: before any upstream contact it stops the request;
inside a `OneShotBody` being streamed upstream it aborts that upstream request, so the backend
sees an unterminated body, never a complete one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..exceptions import ClientDisconnected
from ..guards.size_limits import too_large
from ..http.channel import BodyReader


class OneShotBody:
    """A streamed request body that cannot be sent twice (larger than the route's replay limit)."""

    def __init__(self, head: list[bytes], reader: BodyReader | None, limit: int | None = None) -> None:
        self._head = head
        self._reader = reader
        self._limit = limit
        self.started = False  # once read, the body is gone: no other target may be tried
        self.client_gone = False  # the client left mid-body: the upstream request was aborted
        self.over_limit = False  # it grew past the route's limit: the upstream request was aborted
        self._pending = True  # when over the limit: whether more of it was still coming

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        size = 0
        for chunk in self._head:
            size += len(chunk)
            yield chunk
        more = self._reader is not None
        while more and self._reader is not None:
            try:
                chunk, more = await self._reader.read()
            except ClientDisconnected:
                self.client_gone = True
                raise
            size += len(chunk)
            if self._limit is not None and size > self._limit:
                self.over_limit, self._pending = True, more
                raise too_large(self._limit, pending=more)
            if chunk:
                yield chunk

    def stopped(self) -> None:
        """After the upstream request failed: raise what stopped the body, if it was not the backend."""
        if self.client_gone:
            raise ClientDisconnected("client disconnected during the request body")
        if self.over_limit:
            assert self._limit is not None
            raise too_large(self._limit, pending=self._pending)


RequestBody = bytes | OneShotBody | None

# What the router reads and drops of a refused body before it answers (nginx's discarded body and
# lingering close): a socket closed with unread bytes is reset, and the reset can destroy the 413
# on its way to the client. Bounded, so a huge upload cannot hold the connection.
DISCARD_BYTES = 1024 * 1024
DISCARD_SECONDS = 1.0


async def discard(
    reader: BodyReader, *, limit: int = DISCARD_BYTES, seconds: float = DISCARD_SECONDS
) -> None:
    """Read and drop the rest of a request body, at most `limit` bytes for at most `seconds`."""
    dropped = 0
    try:
        async with asyncio.timeout(seconds):
            while dropped <= limit:
                chunk, more = await reader.read()
                dropped += len(chunk)
                if not more:
                    return
    except (TimeoutError, ClientDisconnected):
        return


async def read_body(
    reader: BodyReader, *, buffered: bool, replay_limit: int | None, limit: int | None = None
) -> RequestBody:
    """The request body (see the module docstring); `replay_limit` None: no fallback is possible;
    `limit`: the route's body size limit (None: none)."""
    first, more = await reader.read()
    head: list[bytes] = [first]
    size = len(first)
    if limit is not None and size > limit:
        raise too_large(limit, pending=more)
    if buffered or (replay_limit is None and not more):
        return head[0] or None
    if replay_limit is None:
        return OneShotBody(head, reader, limit)
    while more and size <= replay_limit:
        chunk, more = await reader.read()
        head.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            raise too_large(limit, pending=more)
    if more or size > replay_limit:
        return OneShotBody(head, reader if more else None, limit)
    return b"".join(head) or None
