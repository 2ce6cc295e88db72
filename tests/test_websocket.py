"""WebSocket passthrough in server mode, black-box: a real WebSocket echo backend on loopback
(`websockets`), a real WebSocket client, the router between them (`edge-router serve`'s engine).

After the backend's 101 the router splices bytes both ways without reading a frame (nginx's
way), so every frame, ping and close code the two ends exchange arrives as sent; either end
closing ends the other; nothing moving for the route's timeout closes both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support import RouterServer, write_config


class EchoBackend:
    """A WebSocket server on 127.0.0.1: echoes every message; b"close-me" makes it close with
    code 4000; it keeps what it saw of each handshake and how each connection ended."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.ended: list[int | None] = []  # the close code each connection ended with
        self.one_ended = asyncio.Event()
        self.server: Server | None = None

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        self.headers.append({name.lower(): value for name, value in ws.request.headers.raw_items()})
        try:
            async for message in ws:
                if message == b"close-me":
                    await ws.close(4000, "asked to")
                    break
                await ws.send(message)
        except ConnectionClosed:
            pass
        self.ended.append(ws.close_code)
        self.one_ended.set()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@contextlib.asynccontextmanager
async def echo_backend() -> AsyncIterator[EchoBackend]:
    backend = EchoBackend()
    async with serve(backend.handler, "127.0.0.1", 0, max_size=None) as server:
        backend.server = server
        yield backend


def router(tmp_path: Path, backend: EchoBackend, **route: Any) -> RouterServer:
    routes = [{"prefix": "/ws", "target": backend.url, **route}]
    return RouterServer(write_config(tmp_path / "config.json", {"routes": routes}))


def ws_url(r: RouterServer, path: str) -> str:
    return r.url.replace("http://", "ws://") + path


async def in_thread(r: RouterServer, **fields: Any) -> dict[str, Any]:
    return await asyncio.to_thread(r.logged, **fields)


def run(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 30))
    finally:
        loop.close()


def test_messages_round_trip_through_the_router(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with echo_backend() as backend:
            with router(tmp_path, backend) as r:
                async with connect(ws_url(r, "/ws/chat?room=1"), max_size=None) as ws:
                    for i in range(200):
                        await ws.send(f"message {i}")
                        assert await ws.recv() == f"message {i}"
                    big = hashlib.sha256(b"seed").digest() * (4 * 1024 * 1024 // 32)  # 4 MiB, both ways
                    await ws.send(big)
                    assert await ws.recv() == big
                    pong = await ws.ping(b"are you there")
                    await asyncio.wait_for(pong, 5)
                line = await in_thread(r, path="/ws/chat")
                assert line["status"] == 101
                assert backend.paths == ["/chat?room=1"]
                seen = backend.headers[0]
                assert seen["upgrade"].lower() == "websocket"
                assert "upgrade" in seen["connection"].lower()
                assert seen["via"] == "1.1 edge-router"
                assert seen["x-forwarded-for"] == "127.0.0.1"

    run(scenario())


def test_many_round_trips_on_concurrent_connections(tmp_path: Path) -> None:
    async def one(r: RouterServer, n: int) -> None:
        async with connect(ws_url(r, f"/ws/{n}")) as ws:
            for i in range(100):
                await ws.send(json.dumps([n, i]))
                assert json.loads(await ws.recv()) == [n, i]

    async def scenario() -> None:
        async with echo_backend() as backend:
            with router(tmp_path, backend) as r:
                await asyncio.gather(*(one(r, n) for n in range(20)))
                assert len(backend.paths) == 20

    run(scenario())


def test_the_client_closing_closes_the_backend(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with echo_backend() as backend:
            with router(tmp_path, backend) as r:
                async with connect(ws_url(r, "/ws/x")) as ws:
                    await ws.send("hi")
                    await ws.recv()
                    await ws.close(4001, "done")
                await asyncio.wait_for(backend.one_ended.wait(), 5)
                assert backend.ended == [4001]  # the client's close frame, relayed as it was

    run(scenario())


def test_the_backend_closing_closes_the_client(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with echo_backend() as backend:
            with router(tmp_path, backend) as r:
                ws: ClientConnection
                async with connect(ws_url(r, "/ws/x")) as ws:
                    await ws.send(b"close-me")
                    with pytest.raises(ConnectionClosed):
                        await ws.recv()
                    assert ws.close_code == 4000
                    assert ws.close_reason == "asked to"

    run(scenario())


def test_a_backend_killed_mid_connection_ends_the_client(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with echo_backend() as backend:
            with router(tmp_path, backend) as r:
                async with connect(ws_url(r, "/ws/x")) as ws:
                    await ws.send("hi")
                    await ws.recv()
                    assert backend.server is not None
                    for connection in list(backend.server.connections):
                        connection.transport.abort()  # no close frame: the TCP connection just ends
                    with pytest.raises(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 5)

    run(scenario())


def test_an_idle_websocket_is_closed_after_the_routes_timeout(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with echo_backend() as backend:
            with router(tmp_path, backend, timeout_ms=600) as r:
                async with connect(ws_url(r, "/ws/x"), ping_interval=None) as ws:
                    await ws.send("hi")
                    assert await ws.recv() == "hi"
                    for _ in range(3):  # traffic keeps it open past the timeout
                        await asyncio.sleep(0.3)
                        await ws.send("again")
                        assert await ws.recv() == "again"
                    started = time.monotonic()
                    with pytest.raises(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 5)
                    assert 0.5 < time.monotonic() - started < 3
                await asyncio.wait_for(backend.one_ended.wait(), 5)
                assert len(backend.ended) == 1  # the backend's side was closed too

    run(scenario())


def test_a_backend_that_refuses_the_upgrade_is_an_ordinary_answer(tmp_path: Path) -> None:
    async def refuse(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(403, "no websockets here\n")

    async def scenario() -> None:
        async with serve(lambda ws: ws.close(), "127.0.0.1", 0, process_request=refuse) as server:
            port = server.sockets[0].getsockname()[1]
            routes = [{"prefix": "/ws", "target": f"http://127.0.0.1:{port}"}]
            with RouterServer(write_config(tmp_path / "c.json", {"routes": routes})) as r:
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(ws_url(r, "/ws/x")):
                        pass
                assert refused.value.response.status_code == 403

    run(scenario())


def test_the_routes_guards_apply_to_an_upgrade(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with echo_backend() as backend:
            with router(tmp_path, backend, ip_rules={"deny": ["127.0.0.1"]}) as r:
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(ws_url(r, "/ws/x")):
                        pass
                assert refused.value.response.status_code == 403
                assert backend.paths == []

    run(scenario())
