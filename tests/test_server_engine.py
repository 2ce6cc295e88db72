"""The server engine (`edge_router.server`) on its own: raw sockets against a stub router whose
`handle()` does what each test needs (stream, stall, break off, send 1xx, splice), so every
framing and flow-control decision of the engine is seen on the wire.

The real router through the same engine is covered by test_server_proxy.py and
test_server_limits.py; `serve --workers` runs the real CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_router.exceptions import ClientDisconnected
from edge_router.http.channel import AnswerWriter, BodyReader, Pipe
from edge_router.http.context import RequestContext
from edge_router.http.responses import raw_error_response
from edge_router.server import Server, bind, new_event_loop
from edge_router.settings import ServerLimits
from support import Backend, closed_port, parse_response, wait_until, wait_until_serving, write_config

Handler = Callable[[RequestContext, BodyReader, AnswerWriter], Awaitable[None]]
JSON = (b"content-type", b"application/json")


class StubRouter:
    """The host API of `EdgeRouter` (startup, handle, shutdown, refusal_response), with `handle`
    chosen per path from `routes`; what each request read and how it ended is kept in `seen`."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.seen: list[dict[str, Any]] = []
        self.started = self.stopped = False
        self.in_flight = 0
        self.most_in_flight = 0

    async def startup(self) -> None:
        self.started = True

    async def shutdown(self) -> None:
        self.stopped = True

    def refusal_response(self, status: int, message: str) -> bytes:
        return raw_error_response(status, message, request_id="stub")

    async def handle(self, ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
        record: dict[str, Any] = {"path": ctx.raw_path, "method": ctx.method, "version": ctx.http_version}
        self.seen.append(record)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.routes.get(ctx.raw_path, echo)(ctx, body, answer)
            record["ended"] = "answered"
        except ClientDisconnected:
            record["ended"] = "client gone"
            record["refused"] = body.refused
        finally:
            self.in_flight -= 1


async def read_body(body: BodyReader) -> bytes:
    parts = []
    while True:
        data, more = await body.read()
        parts.append(data)
        if not more:
            return b"".join(parts)


async def echo(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    data = await read_body(body)
    out = json.dumps({"path": ctx.raw_path, "query": ctx.query.decode(), "body": len(data)}).encode()
    await answer.whole(200, [JSON], out)


class EngineServer:
    """A `Server` for `router` on 127.0.0.1, its loop in a thread."""

    def __init__(self, router: StubRouter, **limits: Any) -> None:
        self.router = router
        self.server = Server(router, limits=ServerLimits(**limits), grace_s=3.0)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        sock = bind("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.loop = new_event_loop()
        try:
            self.loop.run_until_complete(self.server.serve(sock))
        finally:
            sock.close()
            self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self, timeout: float = 10) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def __enter__(self) -> EngineServer:
        self.thread.start()
        wait_until(lambda: self.server.started)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def serve(routes: dict[str, Handler] | None = None, **limits: Any) -> EngineServer:
    return EngineServer(StubRouter(routes or {}), **limits)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """`count` whole answers (Content-Length or chunked framing) from `sock`."""
    data, answers = b"", list[bytes]()
    while len(answers) < count:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {len(answers)} answers"
        data += chunk
        while b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            response = parse_response(data)
            if not response.complete:
                break
            if "content-length" in response.headers:
                size = len(head) + 4 + int(response.headers["content-length"])
            else:
                size = len(head) + 4 + rest.index(b"0\r\n\r\n") + 5
            answers.append(data[:size])
            data = data[size:]
    return answers


# pipelining ---------------------------------------------------------------------------------------


async def slow_first(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    await asyncio.sleep(0.3)  # were requests handled side by side, the next would answer first
    await echo(ctx, body, answer)


def test_pipelined_requests_are_answered_in_order_one_at_a_time() -> None:
    with serve({"/slow": slow_first}) as server, server.connect() as sock:
        sock.sendall(
            b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /three?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /four HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /five HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        answers = [parse_response(raw) for raw in read_answers(sock, 5)]
        assert read_until_closed(sock) == b""
    assert [json.loads(answer.body) for answer in answers] == [
        {"path": "/slow", "query": "", "body": 0},
        {"path": "/two", "query": "", "body": 5},
        {"path": "/three", "query": "x=1", "body": 0},
        {"path": "/four", "query": "", "body": 3},
        {"path": "/five", "query": "", "body": 0},
    ]
    assert answers[-1].headers["connection"] == "close"
    assert server.router.most_in_flight == 1


def test_a_pipelined_request_split_across_reads_is_parsed_exactly() -> None:
    with serve() as server, server.connect() as sock:
        stream = b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % n for n in (1, 2, 3))
        for cut in (27, 29, 31, 60):  # CRLFCRLF split across reads, at every offset
            sock.sendall(stream[:cut])
            time.sleep(0.05)
            sock.sendall(stream[cut:])
            paths = [json.loads(parse_response(raw).body)["path"] for raw in read_answers(sock, 3)]
            assert paths == ["/1", "/2", "/3"]


def test_a_request_pipelined_after_a_chunked_one_closes_the_connection_after_the_first() -> None:
    with serve({"/slow": slow_first}) as server, server.connect() as sock:
        sock.sendall(
            b"POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        raw = read_until_closed(sock)
    assert raw.count(b"HTTP/1.1 ") == 1
    assert json.loads(parse_response(raw).body) == {"path": "/slow", "query": "", "body": 5}
    assert [seen["path"] for seen in server.router.seen] == ["/slow"]


# request bodies -------------------------------------------------------------------------------------


def test_expect_100_continue_is_answered_on_the_first_read() -> None:
    with serve() as server, server.connect() as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        answer = parse_response(read_answers(sock, 1)[0])
        assert json.loads(answer.body)["body"] == 5


async def refuse_unread(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    await answer.whole(413, [JSON], b'{"error":"too large"}')


def test_no_100_continue_when_the_answer_comes_without_reading_and_the_connection_closes() -> None:
    with serve({"/up": refuse_unread}) as server, server.connect() as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in raw


def test_an_unread_body_is_dropped_after_the_answer_and_the_connection_goes_on() -> None:
    with serve({"/up": refuse_unread}) as server, server.connect() as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000)
        assert parse_response(read_answers(sock, 1)[0]).status == 413
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        assert json.loads(parse_response(read_answers(sock, 1)[0]).body)["path"] == "/after"


async def read_slowly(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    await asyncio.sleep(0.5)  # the client sends meanwhile: reading it must pause
    sizes, more = [], True
    while more:
        data, more = await body.read()
        sizes.append(len(data))
        await asyncio.sleep(0.01)
    await answer.whole(200, [JSON], json.dumps({"largest": max(sizes), "total": sum(sizes)}).encode())


def test_reading_a_body_pauses_while_the_pipeline_does_not_read() -> None:
    size = 16 * 1024 * 1024
    with serve({"/up": read_slowly}) as server, server.connect() as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
        sock.sendall(b"x" * size)
        answer = json.loads(parse_response(read_answers(sock, 1)[0]).body)
    assert answer["total"] == size
    assert answer["largest"] < 1024 * 1024  # what one read() returned: never the body buffered whole


def test_a_malformed_chunk_mid_body_is_refused_and_the_pipeline_sees_the_client_gone() -> None:
    with serve() as server, server.connect() as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.2)
        sock.sendall(b"zz\r\nbad\r\n")
        answer = parse_response(read_until_closed(sock))
    assert answer.status == 400
    assert answer.headers["connection"] == "close"
    wait_until(lambda: "ended" in server.router.seen[0])
    assert server.router.seen[0] == {
        "path": "/up",
        "method": "POST",
        "version": "1.1",
        "ended": "client gone",
        "refused": 400,
    }


def test_a_client_that_leaves_mid_body_is_client_gone() -> None:
    with serve() as server:
        with server.connect() as sock:
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
            time.sleep(0.2)
        wait_until(lambda: "ended" in server.router.seen[0])
        assert server.router.seen[0]["ended"] == "client gone"
        assert server.router.seen[0]["refused"] is None


# answer framing ----------------------------------------------------------------------------------


async def stream(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    await answer.start(200, [(b"content-type", b"text/plain")])
    for part in (b"one ", b"two ", b"three"):
        await answer.body(part, True)
        await asyncio.sleep(0.01)
    await answer.body(b"", False)


async def stream_with_length(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    await answer.start(200, [(b"Content-Length", b"13"), (b"content-type", b"text/plain")])
    await answer.body(b"one two ", True)
    await answer.body(b"three", False)


def test_a_streamed_answer_without_length_is_chunked_for_http_1_1() -> None:
    with serve({"/s": stream}) as server, server.connect() as sock:
        sock.sendall(b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n")
        raw = read_answers(sock, 1)[0]
        answer = parse_response(raw)
        assert answer.headers["transfer-encoding"] == "chunked"
        assert answer.complete and answer.body == b"one two three"
        assert raw.endswith(b"\r\n0\r\n\r\n")
        assert "date" not in answer.headers and "server" not in answer.headers
        sock.sendall(b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n")  # still kept alive
        assert parse_response(read_answers(sock, 1)[0]).body == b"one two three"


def test_a_streamed_answer_with_length_is_sent_as_is() -> None:
    with serve({"/s": stream_with_length}) as server, server.connect() as sock:
        sock.sendall(b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n")
        answer = parse_response(read_answers(sock, 1)[0])
        assert "transfer-encoding" not in answer.headers
        assert answer.headers["content-length"] == "13"
        assert answer.body == b"one two three"


def test_http_1_0_gets_a_close_delimited_answer_or_keep_alive_with_a_length() -> None:
    with serve({"/s": stream}) as server:
        with server.connect() as sock:
            sock.sendall(b"GET /s HTTP/1.0\r\n\r\n")
            raw = read_until_closed(sock)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"transfer-encoding" not in head.lower()
        assert b"\r\nconnection: close" in head
        assert body == b"one two three"
        with server.connect() as sock:
            sock.sendall(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            first = parse_response(read_answers(sock, 1)[0])
            assert first.headers["connection"] == "keep-alive"
            sock.sendall(b"GET /y HTTP/1.0\r\n\r\n")  # no keep-alive asked: the last one
            raw = read_until_closed(sock)
        assert json.loads(parse_response(raw).body)["path"] == "/y"
        assert parse_response(raw).headers["connection"] == "close"


def test_head_and_204_and_304_answers_have_no_body() -> None:
    async def no_body(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
        status = {"HEAD": 200, "GET": 204, "PUT": 304}[ctx.method]
        await answer.whole(status, [JSON, (b"content-length", b"11")], b"not allowed")

    async def head_streamed(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
        await answer.start(200, [JSON])
        await answer.body(b"not allowed", False)

    with serve({"/n": no_body, "/s": head_streamed}) as server, server.connect() as sock:
        for method in (b"HEAD", b"GET", b"PUT"):
            sock.sendall(method + b" /n HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
            head = sock.recv(65536)
            assert head.endswith(b"\r\n\r\n") and b"not allowed" not in head
        sock.sendall(b"HEAD /s HTTP/1.1\r\nHost: a\r\n\r\n")
        head = sock.recv(65536)
        assert head.endswith(b"\r\n\r\n") and b"transfer-encoding" not in head
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")  # nothing stray in between
        assert json.loads(parse_response(read_answers(sock, 1)[0]).body)["path"] == "/x"


async def broken_chunked(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    await answer.start(200, [(b"content-type", b"text/plain")])
    await answer.body(b"the beginning", True)


async def broken_identity(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    await answer.start(200, [(b"content-length", b"100")])
    await answer.body(b"the beginning", True)


@pytest.mark.parametrize("path", ["/chunked", "/identity"])
def test_a_streamed_answer_that_breaks_off_is_not_terminated(path: str) -> None:
    with (
        serve({"/chunked": broken_chunked, "/identity": broken_identity}) as server,
        server.connect() as sock,
    ):
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        raw = read_until_closed(sock)
    answer = parse_response(raw)
    assert answer.status == 200
    assert answer.body == b"the beginning"
    assert not answer.complete
    assert not raw.endswith(b"0\r\n\r\n")


async def fails(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    if ctx.query == b"after":
        await answer.start(200, [(b"content-type", b"text/plain")])
        await answer.body(b"part", True)
    raise RuntimeError("a bug")


def test_a_handler_that_raises_gets_a_500_or_a_closed_connection() -> None:
    with serve({"/f": fails}) as server:
        with server.connect() as sock:
            sock.sendall(b"GET /f HTTP/1.1\r\nHost: a\r\n\r\n")
            answer = parse_response(read_until_closed(sock))
        assert answer.status == 500
        assert answer.headers["content-type"] == "application/json"
        with server.connect() as sock:
            sock.sendall(b"GET /f?after HTTP/1.1\r\nHost: a\r\n\r\n")
            answer = parse_response(read_until_closed(sock))
        assert answer.status == 200 and not answer.complete


STREAMED: dict[str, Any] = {}


async def endless(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    await answer.start(200, [(b"content-type", b"application/octet-stream")])
    sent = 0
    try:
        while sent < 1024 * 1024 * 1024:
            await answer.body(b"x" * 65536, True)
            sent += 65536
            STREAMED["sent"] = sent
    finally:
        STREAMED["ended"] = True


def test_a_download_nobody_reads_waits_and_then_ends_when_the_client_leaves() -> None:
    STREAMED.clear()
    with serve({"/big": endless}) as server:
        sock = server.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(1.0)
        stalled = STREAMED["sent"]
        time.sleep(0.5)
        assert STREAMED["sent"] == stalled < 64 * 1024 * 1024  # body() waits while the client does not read
        sock.close()
        wait_until(lambda: STREAMED.get("ended", False))
        assert server.router.seen[0]["ended"] == "client gone"


# 1xx ------------------------------------------------------------------------------------------------


async def early_hints(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    await answer.interim(103, [(b"link", b"</style.css>; rel=preload; as=style")])
    await read_body(body)
    await answer.interim(100, [])  # a backend's 100 after the engine's own: dropped
    await answer.whole(200, [JSON], b"{}")


def test_interim_answers_are_relayed_to_http_1_1_clients_only() -> None:
    with serve({"/h": early_hints}) as server:
        with server.connect() as sock:
            sock.sendall(b"POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            first = b""
            while first.count(b"\r\n\r\n") < 2:
                first += sock.recv(65536)
            assert first == (
                b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\n"
                b"HTTP/1.1 100 Continue\r\n\r\n"
            )
            sock.sendall(b"ok")
            rest = read_answers(sock, 1)[0]
            assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
        with server.connect() as sock:
            sock.sendall(b"POST /h HTTP/1.0\r\nContent-Length: 2\r\n\r\nok")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 200 OK\r\n")


# upgrade ------------------------------------------------------------------------------------------


class EchoUpgraded:
    """A backend that answered 101, in process: it echoes what it gets, upper-cased, and closes on
    b"bye"; `closed` tells whether the engine closed it."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.peer: Pipe | None = None

    def attach(self, peer: Pipe) -> Pipe:
        self.peer = peer
        peer.write(b"hello from the backend;")
        return self

    def write(self, data: bytes) -> None:
        assert self.peer is not None
        if data == b"bye":
            self.peer.close()
        else:
            self.peer.write(data.upper())

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        self.closed.set()


UPGRADES: list[EchoUpgraded] = []


async def upgrade(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    assert answer.upgrade is not None
    backend = EchoUpgraded()
    UPGRADES.append(backend)
    headers = [(b"connection", b"upgrade"), (b"upgrade", b"echo")]
    await answer.upgrade.splice(101, headers, backend, float(ctx.query or b"5"))


UPGRADE = b"GET /u%s HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"


def test_a_splice_relays_both_ways_until_the_backend_closes() -> None:
    UPGRADES.clear()
    with serve({"/u": upgrade}) as server, server.connect() as sock:
        sock.sendall(UPGRADE % b"" + b"early bytes;")
        data = b""
        while b"EARLY BYTES;" not in data:
            data += sock.recv(65536)
        assert data == (
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n"
            b"hello from the backend;EARLY BYTES;"
        )
        for _ in range(3):
            sock.sendall(b"ping")
            assert sock.recv(65536) == b"PING"
        sock.sendall(b"bye")
        assert read_until_closed(sock) == b""
        wait_until(lambda: server.router.seen[0].get("ended") == "answered")


def test_a_splice_ends_when_the_client_closes_or_nothing_moves() -> None:
    UPGRADES.clear()
    with serve({"/u": upgrade}) as server:
        with server.connect() as sock:
            sock.sendall(UPGRADE % b"")
            sock.recv(65536)
        wait_until(lambda: len(UPGRADES) == 1 and UPGRADES[0].closed.is_set())
        with server.connect() as sock:
            sock.sendall(UPGRADE % b"?0.5")
            started = time.monotonic()
            assert read_until_closed(sock).startswith(b"HTTP/1.1 101 ")
            assert 0.4 < time.monotonic() - started < 3
        assert UPGRADES[1].closed.wait(5)
        wait_until(lambda: all(seen.get("ended") == "answered" for seen in server.router.seen))


def test_an_upgrade_answered_without_a_splice_closes_the_connection() -> None:
    with serve() as server, server.connect() as sock:
        sock.sendall(UPGRADE % b"" + b"not http")
        raw = read_until_closed(sock)
    answer = parse_response(raw)
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert len(server.router.seen) == 1


# connection cap, timeouts, stop -------------------------------------------------------------------


def test_a_slowloris_with_more_sockets_than_the_cap_does_not_lock_a_client_out() -> None:
    with serve(max_connections=8, head_timeout_s=10.0) as server:
        stop = threading.Event()
        attackers: list[socket.socket] = []

        def trickle() -> None:  # one header byte per socket every 0.2 s: each head never ends
            while not stop.is_set():
                for sock in list(attackers):
                    with contextlib.suppress(OSError):
                        sock.sendall(b"a")
                stop.wait(0.2)

        try:
            for _ in range(20):
                sock = server.connect()
                sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                attackers.append(sock)
            thread = threading.Thread(target=trickle, daemon=True)
            thread.start()
            time.sleep(0.3)
            started = time.monotonic()
            with httpx.Client(base_url=server.url, timeout=5) as client:
                assert client.get("/legit").status_code == 200
            assert time.monotonic() - started < 1.0
        finally:
            stop.set()
            for sock in attackers:
                sock.close()


def test_an_idle_kept_alive_connection_closes_after_the_keepalive_timeout() -> None:
    with serve(keepalive_timeout_s=0.5, head_timeout_s=5.0) as server, server.connect() as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        read_answers(sock, 1)
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        assert 0.4 < time.monotonic() - started < 2


async def slow(ctx: RequestContext, body: BodyReader, answer: AnswerWriter) -> None:
    await asyncio.sleep(0.5)
    await answer.whole(200, [JSON], b"{}")


def test_stopping_lets_a_request_in_progress_finish_and_closes_idle_connections() -> None:
    server = serve({"/slow": slow}).__enter__()
    try:
        idle = server.connect()
        busy = server.connect()
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_until(lambda: len(server.router.seen) == 1)
        server.server.request_stop()
        assert read_until_closed(idle) == b""
        answer = parse_response(read_until_closed(busy))
        assert answer.status == 200 and answer.headers["connection"] == "close"
        server.thread.join(5)
        assert server.router.stopped
        with pytest.raises(OSError):
            server.connect(timeout=1)
    finally:
        server.__exit__()


# --workers --------------------------------------------------------------------------------------


CLI = [sys.executable, "-m", "edge_router.cli"]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def test_workers_serve_on_one_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    with Backend() as backend:
        config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        port = closed_port()
        process = subprocess.Popen(
            [*CLI, "serve", "--config", config, "--port", str(port), "--workers", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING"},
            start_new_session=True,
        )
        try:
            wait_until_serving(f"http://127.0.0.1:{port}")
            workers = _children(process.pid)
            assert len(workers) == 2
            ids = set()
            for _ in range(20):  # new connections each: the kernel spreads them over both workers
                response = httpx.get(f"http://127.0.0.1:{port}/api/x", timeout=5)
                assert response.status_code == 200
                ids.add(response.headers["x-request-id"])
            assert len(ids) == 20
            assert len({request_id[:16] for request_id in ids}) == 2  # each worker's own id prefix
            os.kill(workers[0], signal.SIGKILL)  # a worker that dies is started again
            wait_until(
                lambda: len(_children(process.pid)) == 2 and workers[0] not in _children(process.pid), 10
            )
            wait_until_serving(f"http://127.0.0.1:{port}", 10)
            workers = _children(process.pid)
            os.kill(process.pid, signal.SIGTERM)
            output = process.communicate(timeout=20)[0].decode()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        assert process.returncode == 0
        assert "(2 workers)" in output and "Traceback" not in output
        assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in workers)
        assert len(backend.seen) == 20
        assert "worker 0 exited" in output or "worker 1 exited" in output


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    return True
