"""The loopback backend every benchmark proxies to: a raw uvloop Protocol speaking just enough HTTP/1.1.

Every request gets the same 200-byte JSON body over a kept-alive connection; pipelined requests are
answered in one write. It parses nothing but the header block and Content-Length, so it costs a few
microseconds per request and is never the bottleneck (see "direct" in the server-mode table).

    python bench/_backend.py [--port 0]     prints "PORT <n>" once it listens on 127.0.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from _common import new_event_loop

BODY_SIZE = 200


def make_body(size: int = BODY_SIZE) -> bytes:
    head = b'{"service":"bench-backend","ok":true,"pad":"'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


BODY = make_body()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
RESPONSE_CLOSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("buffer", "transport")

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transport is no subclass

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        out: list[bytes] = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end].lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)].strip())
            if len(buffer) < end + 4 + length:
                break  # the body is not all here yet
            buffer = buffer[end + 4 + length :]
            if b"\r\nconnection: close" in head:
                out.append(RESPONSE_CLOSE)
                close = True
                break
            out.append(RESPONSE)
        self.buffer = buffer
        if out and self.transport is not None:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
            if close:
                self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HttpProtocol, "127.0.0.1", port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(args.port))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
