"""The WebSocket section's loopback backend: a raw uvloop Protocol that echoes WebSocket frames.

A request that asks to upgrade (`Upgrade: websocket` with a `Sec-WebSocket-Key`) is answered 101
(RFC 6455 section 4.2.2); from then on every data frame (text, binary, continuation) comes back as
the same frame unmasked, a ping gets its pong, and a close is echoed (the client's status code)
before the connection is closed: the clean closing handshake. Any other request is answered 200 with
a small JSON body over a kept-alive connection (what the bench's readiness poll needs), and
`GET /__stats` tells how many WebSockets are open now and how many were ever upgraded.

Like `_backend.py`, it parses as little as it can (the header block, frame headers), so a round trip
costs it a few microseconds and it is never what the measurement measures.

    python bench/_ws_backend.py [--port 0]     prints "PORT <n>" once it listens on 127.0.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import resource
import signal
import sys

from _common import new_event_loop

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's fixed key suffix
OK_BODY = b'{"service":"bench-ws-backend","ok":true}'
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(OK_BODY),
    OK_BODY,
)
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
CLOSE, PING, PONG = 0x8, 0x9, 0xA


class Stats:
    open = 0  # WebSockets open now
    upgraded = 0  # WebSockets ever upgraded


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())  # RFC 6455 names SHA-1


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR `payload` with the 4-byte `mask` repeated (one big-int XOR: cheap for small frames)."""
    n = len(payload)
    if not n:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(first: int, payload: bytes) -> bytes:
    """A server frame (unmasked): `first` is the FIN/RSV/opcode byte."""
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def header_value(head: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower-case, with its colon) in a lower-cased header block."""
    at = head.find(b"\r\n" + name)
    if at < 0:
        return None
    stop = head.find(b"\r\n", at + 2)
    return head[at + 2 + len(name) : stop if stop >= 0 else len(head)].strip()


class EchoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.websocket = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transport is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.websocket:
            Stats.open -= 1

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        if not self.websocket:
            self._http()
        if self.websocket:
            self._frames()

    def _http(self) -> None:
        assert self.transport is not None
        while not self.websocket:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            raw = self.buffer[:end]
            head = raw.lower()
            self.buffer = self.buffer[end + 4 :]  # GETs only: no request body to skip
            upgrade = header_value(head, b"upgrade:")
            if upgrade is None:
                if raw.startswith(b"GET /__stats"):
                    body = json.dumps({"open": Stats.open, "upgraded": Stats.upgraded}).encode()
                    self.transport.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                else:
                    self.transport.write(OK)
                if b"\r\nconnection: close" in head:
                    self.transport.close()
                    return
                continue
            key = None
            at = head.find(b"\r\nsec-websocket-key:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                key = raw[at + 20 : stop if stop >= 0 else len(raw)].strip()  # the key keeps its case
            if upgrade != b"websocket" or not key:
                self.transport.write(BAD)
                self.transport.close()
                return
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
            )
            self.websocket = True
            Stats.open += 1
            Stats.upgraded += 1

    def _frames(self) -> None:
        assert self.transport is not None
        buffer, out = self.buffer, []
        closing = False
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length, at = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length, at = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length, at = int.from_bytes(buffer[2:10], "big"), 10
            masked = second & 0x80
            end = at + (4 if masked else 0) + length
            if len(buffer) < end:
                break
            payload = buffer[end - length : end]
            if masked:
                payload = unmask(payload, buffer[at : at + 4])
            buffer = buffer[end:]
            opcode = first & 0x0F
            if opcode == PING:
                out.append(frame(0x80 | PONG, payload))
            elif opcode == CLOSE:
                out.append(frame(0x80 | CLOSE, payload[:2]))  # echo the status code, then close
                closing = True
                break
            elif opcode != PONG:
                out.append(frame(first, payload))  # text, binary, continuation: the same frame back
        self.buffer = buffer
        if out:
            self.transport.write(b"".join(out))
        if closing:
            self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # the idle test holds a thousand WebSockets open here
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(args.port))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
