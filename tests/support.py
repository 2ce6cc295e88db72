"""Real parts for tests: loopback HTTP backends, the router under uvicorn, function URL events.

Everything binds 127.0.0.1 on port 0 and stops by itself at the end of its `with` block.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
    """`edge-router serve` in-process: the real app under uvicorn on a loopback socket, in a thread."""

    def __init__(self, config_source: str | None, env: dict[str, str] | None = None) -> None:
        from edge_router._app import EdgeRouter
        from edge_router._settings import Settings

        self.settings = Settings.from_env(env or {}, config_source=config_source)
        self.app = EdgeRouter(self.settings)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()
        self.url = ""

    def _run(self) -> None:
        from edge_router._server import bind, make_server, new_event_loop

        sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = make_server(self.app, "127.0.0.1", sock.getsockname()[1])
        loop = new_event_loop()
        self.loop = loop
        self._started.set()
        loop.run_until_complete(self.server.serve(sockets=[sock]))
        loop.close()

    def __enter__(self) -> RouterServer:
        self._thread.start()
        self._started.wait(5)
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "router did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def response_body(response: dict[str, Any]) -> bytes:
    body = response.get("body", "")
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


__all__ = ["Backend", "Reply", "RouterServer", "Seen", "function_url_event"]
