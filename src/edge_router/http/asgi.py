"""ASGI as one adapter of the pipeline's channel (`channel.py`), both ways.

* `AsgiBody` / `AsgiAnswer`: a `BodyReader` over ASGI `receive` and an `AnswerWriter` over ASGI
  `send`, for when the router itself runs under an ASGI server (an embedder's, or Mangum);
* `scope_for`, `receive_from`, `send_to`: the other way round, an ASGI scope and channel over the
  pipeline's own, for the control plane (FastAPI) when the host is not ASGI (the server engine).

Neither is on the server's or Lambda's data path: those hosts hand the pipeline their own reader
and writer, with no ASGI message built per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..exceptions import ClientDisconnected
from ..types import Header, Message, Receive, Scope, Send
from . import paths
from .channel import AnswerWriter, BodyReader, Upgrader
from .context import RequestContext


class AsgiBody:
    """`BodyReader` over ASGI `receive`: `http.disconnect` is the client gone."""

    __slots__ = ("receive", "refused")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.refused: int | None = None

    async def read(self) -> tuple[bytes, bool]:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("client disconnected during the request body")
        return message.get("body", b""), bool(message.get("more_body", False))


class AsgiAnswer:
    """`AnswerWriter` over ASGI `send`. ASGI has no interim answers and no splice: 1xx are dropped,
    and an upgrade request is refused by the pipeline (`upgrade` is None)."""

    __slots__ = ("send",)
    upgrade: Upgrader | None = None

    def __init__(self, send: Send) -> None:
        self.send = send

    async def interim(self, status: int, headers: list[Header]) -> None:
        return None

    async def whole(self, status: int, headers: list[Header], body: bytes) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def start(self, status: int, headers: list[Header]) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes, more: bool) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})


def scope_for(ctx: RequestContext, server: tuple[str, int] | None = None) -> Scope:
    """An ASGI HTTP scope for `ctx` (the control plane's view of a request the engine parsed)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": ctx.http_version,
        "method": ctx.method,
        "scheme": ctx.scheme,
        "path": paths.unquote_path(ctx.path),
        "raw_path": ctx.raw_path.encode("latin-1", "replace"),
        "query_string": ctx.query,
        "root_path": "",
        "headers": ctx.raw_headers,
        "client": (ctx.client, 0) if ctx.client else None,
        "server": server,
        "state": {},
    }


def receive_from(reader: BodyReader) -> Receive:
    """ASGI `receive` over `reader`: the body, then (as a server does) nothing until the client
    leaves, which here is never: the answer's end finishes the exchange."""
    if isinstance(reader, AsgiBody):
        return reader.receive
    done = False

    async def receive() -> Message:
        nonlocal done
        if done:
            await asyncio.get_running_loop().create_future()  # waits until cancelled
        try:
            data, more = await reader.read()
        except ClientDisconnected:
            done = True
            return {"type": "http.disconnect"}
        done = not more
        return {"type": "http.request", "body": data, "more_body": more}

    return receive


def send_to(answer: AnswerWriter) -> Send:
    """ASGI `send` over `answer`: a start followed by one final body is one `whole()` write."""
    if isinstance(answer, AsgiAnswer):
        return answer.send
    head: list[Any] = []

    async def send(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            head[:] = [message["status"], list(message.get("headers", []))]
        elif kind == "http.response.body":
            data, more = message.get("body", b""), bool(message.get("more_body", False))
            if head and not more:
                await answer.whole(head[0], head[1], data)
            elif head:
                await answer.start(head[0], head[1])
                await answer.body(data, more)
            else:
                await answer.body(data, more)
            head.clear()

    return send
