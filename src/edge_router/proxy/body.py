"""The request body, read as little as needed, and never passed on as complete when it was not.

* whole already (Lambda), or no fallback possible and it came in one message: `bytes`;
* up to the route's replay limit: buffered as `bytes`, so a fallback can send it again;
* larger: a `OneShotBody`, forwarded as it arrives and never sent twice.

A client that leaves mid-body (`http.disconnect`, also what the server sends after refusing a
malformed chunk) raises `ClientDisconnected`: before any upstream contact it stops the request;
inside a `OneShotBody` being streamed upstream it aborts that upstream request, so the backend
sees an unterminated body, never a complete one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..exceptions import ClientDisconnected
from ..types import Receive


class OneShotBody:
    """A streamed request body that cannot be sent twice (larger than the route's replay limit)."""

    def __init__(self, head: list[bytes], receive: Receive | None) -> None:
        self._head = head
        self._receive = receive
        self.started = False  # once read, the body is gone: no other target may be tried
        self.client_gone = False  # the client left mid-body: the upstream request was aborted

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        for chunk in self._head:
            yield chunk
        more = self._receive is not None
        while more and self._receive is not None:
            try:
                chunk, more = await next_chunk(self._receive)
            except ClientDisconnected:
                self.client_gone = True
                raise
            if chunk:
                yield chunk


RequestBody = bytes | OneShotBody | None


async def next_chunk(receive: Receive) -> tuple[bytes, bool]:
    """The next part of the request body and whether more follows."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected("client disconnected during the request body")
    return message.get("body", b""), bool(message.get("more_body", False))


async def read_body(receive: Receive, *, buffered: bool, replay_limit: int | None) -> RequestBody:
    """The request body (see the module docstring); `replay_limit` None: no fallback is possible."""
    first, more = await next_chunk(receive)
    head: list[bytes] = [first]
    if buffered or (replay_limit is None and not more):
        return head[0] or None
    if replay_limit is None:
        return OneShotBody(head, receive)
    size = len(head[0])
    while more and size <= replay_limit:
        chunk, more = await next_chunk(receive)
        head.append(chunk)
        size += len(chunk)
    if more or size > replay_limit:
        return OneShotBody(head, receive if more else None)
    return b"".join(head) or None
