"""Real parts for tests: loopback HTTP backends, the router on its server engine, function URL events.

Everything binds 127.0.0.1 on port 0 and stops by itself at the end of its `with` block.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

from edge_router.testing import function_url_event


@dataclass
class Seen:
    """One request as the backend received it."""

    method: str
    target: str  # the request-target exactly as sent on the wire
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("Content-Type", "application/json")])
    body: bytes | Iterable[bytes] = b'{"ok":true}'
    delay: float = 0.0  # seconds before answering


Responder = Callable[[Seen], Reply]


def _json_echo(seen: Seen) -> Reply:
    payload = {"method": seen.method, "target": seen.target, "body_len": len(seen.body)}
    return Reply(body=json.dumps(payload).encode())


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (the router gave up on a slow answer, or closed a kept-alive
        # connection) is part of what the tests do, not an error worth a traceback on stderr.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Backend:
    """A real HTTP/1.1 server on 127.0.0.1 that records what it receives and counts connections."""

    def __init__(self, responder: Responder = _json_echo, *, read_body: bool = True) -> None:
        self.responder = responder
        self.seen: list[Seen] = []
        self.connections = 0
        self.read_body = read_body
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body are separate writes: without this, Nagle + delayed ACK add 40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with lock:
                    backend.connections += 1

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if not backend.read_body:
                    return b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(parts)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                seen = Seen(self.command, self.path, list(self.headers.items()), self._body())
                backend.seen.append(seen)
                reply = backend.responder(seen)
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response_only(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                if isinstance(reply.body, bytes):
                    if not any(k.lower() == "content-length" for k, _ in reply.headers):
                        self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(reply.body)
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in reply.body:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

        lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Backend:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def last(self) -> Seen:
        assert self.seen, "the backend received no request"
        return self.seen[-1]


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, document: dict[str, Any]) -> str:
    path.write_text(json.dumps(document))
    return str(path)


class RouterServer:
    """`edge-router serve` in-process: the real router on the server engine (`edge_router.server`)
    on a loopback socket, its loop in a thread."""

    def __init__(
        self, config_source: str | None, env: dict[str, str] | None = None, *, host: str = "127.0.0.1"
    ) -> None:
        from edge_router.app import EdgeRouter
        from edge_router.observability.access_log import AccessLog
        from edge_router.server import Server
        from edge_router.settings import Settings

        self.settings = Settings.from_env(env or {}, config_source=config_source)
        self.app = EdgeRouter(self.settings)
        self.log = io.StringIO()  # the request lines, written by the router every 0.5 s
        self.app.recorder.access_log = AccessLog(self.log, enabled=True)
        # a test's own requests are done when it leaves the block: a short grace for stragglers
        self.server = Server(self.app, limits=self.settings.server, grace_s=3.0)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._failed: BaseException | None = None
        self.host = host  # 127.0.0.1, or ::1
        self.url = ""

    def _run(self) -> None:
        from edge_router.server import bind, new_event_loop

        sock = bind(self.host, 0)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{sock.getsockname()[1]}"
        loop = self.loop = new_event_loop()
        try:
            loop.run_until_complete(self.server.serve(sock))
        except BaseException as exc:  # start-up failed: __enter__ says so instead of timing out
            self._failed = exc
        finally:
            sock.close()
            loop.close()

    def __enter__(self) -> RouterServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self._failed is None, f"router did not start: {self._failed!r}"
            assert time.monotonic() < deadline, "router did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.request_stop()
        self._thread.join(timeout=15)

    def logged(self, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """The first request line whose fields include `fields`, waiting for the next flush."""
        found: list[dict[str, Any]] = []

        def present() -> bool:
            lines = [json.loads(line) for line in self.log.getvalue().splitlines() if line]
            found[:] = [line for line in lines if all(line.get(k) == v for k, v in fields.items())]
            return bool(found)

        wait_until(present, timeout)
        return found[0]

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


class RawBackend:
    """A TCP server on 127.0.0.1 for backends that misbehave on purpose: `handler(conn)` runs in a
    thread per accepted connection and does whatever it likes with the raw socket.

    `received` holds, per connection, every byte the router sent before the handler returned.
    """

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.received: list[bytearray] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            with contextlib.suppress(OSError):
                self.handler(conn)

    def __enter__(self) -> RawBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


def read_head(conn: socket.socket) -> bytes:
    """Read from `conn` up to the end of an HTTP head (or EOF); returns what was read."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def reset(conn: socket.socket) -> None:
    """Close with a TCP reset (RST) instead of a clean FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def raw_exchange(url: str, request: bytes, *, timeout: float = 10) -> bytes:
    """Send `request` as raw bytes and read until the router closes the connection (or `timeout`)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # refused mid-send: what it answered is still to be read
            sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool  # the body ended as its framing says (length reached / terminating chunk)


def parse_response(raw: bytes) -> RawResponse:
    """Parse one HTTP/1.1 response as bytes on the wire, telling a complete body from a cut one."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, complete = b"", False
        while True:
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                break
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                complete = rest.startswith(b"\r\n")
                break
            if len(rest) < size + 2:
                body += rest[:size]
                break
            body, rest = body + rest[:size], rest[size + 2 :]
        return RawResponse(status, headers, body, complete)
    if "content-length" in headers:
        length = int(headers["content-length"])
        return RawResponse(status, headers, rest[:length], len(rest) >= length)
    return RawResponse(status, headers, rest, True)


class Clock:
    """A monotonic clock the test moves by hand (for anything that takes an injected `clock`)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on its own loop (never asyncio.run: it leaves no current loop for Mangum)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def dynamodb_table(name: str) -> Any:
    """A DynamoDB table keyed by the string `id` (config, registry and state tables), on moto."""
    import boto3

    return boto3.resource("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def response_body(response: dict[str, Any]) -> bytes:
    body = response.get("body", "")
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def wait_until_serving(url: str, timeout: float = 20.0) -> None:
    """Wait until the router at `url` (a process being started) answers `/health` with 200."""

    def up() -> bool:
        try:
            return httpx.get(url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


__all__ = ["Backend", "RawBackend", "Reply", "RouterServer", "Seen", "function_url_event"]


class HangingServer(RawBackend):
    """A TCP server on 127.0.0.1 that accepts every connection, reads the request and never
    answers: a partitioned or browned-out dependency. As `AWS_ENDPOINT_URL`, every AWS call waits
    for botocore's read timeout (and is retried once, in this project's client settings).

    `operations` lists each request received, by its `X-Amz-Target` operation (`GetItem`,
    `BatchGetItem`, ...) or else its request line. Leaving the block closes every connection, so
    the callers still waiting see the connection end instead of waiting on. (A dependency that
    fails fast instead is a `Backend` answering 503 or a throttling error.)
    """

    def __init__(self) -> None:
        super().__init__(self._hold)
        self.operations: list[str] = []

    def _hold(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            head = read_head(conn).decode("latin-1")
            lines = head.split("\r\n")
            target = [
                line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("x-amz-target:")
            ]
            self.operations.append(target[0].rpartition(".")[2] if target else lines[0])
        self._stop.wait()  # never answered; the connection stays open until the server stops

    def __enter__(self) -> HangingServer:
        super().__enter__()
        return self


class InvocationContext:
    """A Lambda context whose invocation ends `seconds` after it is made."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds
        self.aws_request_id = "lambda-req"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends - time.monotonic()) * 1000)
