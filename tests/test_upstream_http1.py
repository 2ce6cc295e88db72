"""The HTTP/1.1 upstream client (`upstream/http1.py`) against real loopback backends, most of them
raw sockets that misbehave on purpose; every test runs on the plain asyncio loop (Lambda) and on
uvloop (the server)."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from edge_router.exceptions import (
    ClientDisconnected,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from edge_router.upstream import _h1pool
from edge_router.upstream.http1 import Http1Response, Http1Upstream
from support import RawBackend, closed_port, read_head, reset

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Iterator[Run[Any]]:
    def run(coro: Coroutine[Any, Any, T]) -> T:
        loop = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()
        try:
            return loop.run_until_complete(asyncio.wait_for(coro, 20))
        finally:
            loop.close()

    yield run


class Backend(RawBackend):
    """A RawBackend that counts connections and keeps every request head it read."""

    def __init__(self, answer: Callable[[socket.socket, bytes, int], bool | None]) -> None:
        """`answer(conn, head, index)` answers one request; True: keep reading the connection."""
        self.connections = 0
        self.heads: list[bytes] = []
        self.errors: list[BaseException] = []

        def handler(conn: socket.socket) -> None:
            self.connections += 1
            while True:
                head = read_request(conn)
                if not head:
                    return
                self.heads.append(head)
                try:
                    if not answer(conn, head, len(self.heads) - 1):
                        return
                except OSError as exc:
                    self.errors.append(exc)
                    return

        super().__init__(handler)

    def __enter__(self) -> Backend:
        super().__enter__()
        return self


def read_request(conn: socket.socket) -> bytes:
    """One request's head and body (Content-Length or chunked, decoded) as read."""
    data = read_head(conn)
    head, _, rest = data.partition(b"\r\n\r\n")
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
    elif b"transfer-encoding: chunked" in lower:
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                return data + rest + b"<EOF>"
            rest += chunk
    return head + b"\r\n\r\n" + rest if data else b""


async def get(
    upstream: Http1Upstream,
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    timeout: float = 5.0,
    **kw: Any,
) -> tuple[Http1Response, bytes | None]:
    response = await upstream.send(method, url, [("host", "backend.test")], body, timeout, **kw)
    try:
        return response, await response.read(1 << 20)
    finally:
        response.release()


def keep_alive(answer: bytes) -> Callable[[socket.socket, bytes, int], bool]:
    def handler(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(answer)
        return True

    return handler


# the request ------------------------------------------------------------------------------------


def test_kept_alive_gets_share_one_connection_and_headers_travel_byte_exact(run: Run[Any]) -> None:
    raw = b"caf\xe9 \xff obs-text"  # not UTF-8: the client's bytes, carried as surrogates
    answer = b"HTTP/1.1 200 OK\r\nX-Back: " + raw + b"\r\nContent-Length: 5\r\n\r\nhello"

    async def go(url: str) -> list[Any]:
        upstream = Http1Upstream()
        headers = [("host", "backend.test"), ("x-raw", raw.decode("utf-8", "surrogateescape"))]
        seen = []
        for _ in range(3):
            response = await upstream.send("GET", url + "/p%20q?a=1&b", headers, None, 5)
            seen.append(
                (response.status, response.raw_headers, response.content_length, await response.read(99))
            )
            response.release()
        await upstream.aclose()
        return seen

    with Backend(keep_alive(answer)) as backend:
        seen = run(go(backend.url))
    assert seen == [(200, [(b"X-Back", raw), (b"Content-Length", b"5")], 5, b"hello")] * 3
    assert backend.connections == 1
    assert (
        backend.heads
        == [b"GET /p%20q?a=1&b HTTP/1.1\r\nhost: backend.test\r\nx-raw: " + raw + b"\r\n\r\n"] * 3
    )


def test_bodies_are_framed_by_length_or_chunked_and_host_is_added_only_when_missing(run: Run[Any]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"ab", b"", b"cde"):
            yield part

    async def go(url: str) -> None:
        upstream = Http1Upstream()
        await get(upstream, url, method="POST", body=b"xyz")
        await get(upstream, url, method="POST", body=None)
        await get(upstream, url, method="PUT", body=chunks())
        response = await upstream.send("PUT", url, [("content-length", "5")], chunks(), 5)
        response.release()
        await upstream.aclose()

    with Backend(keep_alive(OK)) as backend:
        run(go(backend.url))
    host = f"Host: 127.0.0.1:{backend.port}".encode()
    assert backend.heads == [
        b"POST / HTTP/1.1\r\nhost: backend.test\r\nContent-Length: 3\r\n\r\nxyz",
        b"POST / HTTP/1.1\r\nhost: backend.test\r\nContent-Length: 0\r\n\r\n",
        b"PUT / HTTP/1.1\r\nhost: backend.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n",
        b"PUT / HTTP/1.1\r\n" + host + b"\r\ncontent-length: 5\r\n\r\nabcde",
    ]
    assert backend.connections == 1


def test_a_body_iterator_that_raises_aborts_the_request_and_its_error_propagates(run: Run[Any]) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        await asyncio.sleep(0.05)
        raise ClientDisconnected("the client left")

    async def go(url: str) -> BaseException:
        upstream = Http1Upstream()
        try:
            await get(upstream, url, method="POST", body=broken())
        except ClientDisconnected as exc:
            return exc
        finally:
            await upstream.aclose()
        raise AssertionError("no error")

    with Backend(keep_alive(OK)) as backend:
        error = run(go(backend.url))
        deadline = time.monotonic() + 5
        while not backend.heads and time.monotonic() < deadline:
            time.sleep(0.01)
    assert str(error) == "the client left"
    assert backend.heads[0].endswith(b"7\r\npartial\r\n<EOF>")  # never the terminating 0 chunk


def test_a_request_header_with_a_line_break_is_refused_before_anything_is_sent(run: Run[Any]) -> None:
    async def go(url: str) -> None:
        await Http1Upstream().send("GET", url, [("host", "x"), ("x-a", "1\r\nx-b: 2")], None, 5)

    with Backend(keep_alive(OK)) as backend, pytest.raises(UpstreamProtocolError, match="CR or LF"):
        run(go(backend.url))
    assert backend.heads == []


# connections and the pool ------------------------------------------------------------------------


def test_a_connection_the_backend_closed_while_idle_is_skipped_even_for_a_post(run: Run[Any]) -> None:
    def answer_then_close(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(OK)
        return False  # closes without saying Connection: close

    async def go(url: str) -> list[int]:
        upstream = Http1Upstream()
        statuses = []
        for _ in range(3):
            response, _ = await get(upstream, url, method="POST", body=b"x")
            statuses.append(response.status)
            await asyncio.sleep(0.1)  # the close arrives while the connection is idle
        return statuses

    with Backend(answer_then_close) as backend:
        assert run(go(backend.url)) == [200, 200, 200]
    assert backend.connections == 3


@pytest.mark.parametrize(("method", "sent"), [("GET", 3), ("POST", 2)])
def test_a_pooled_connection_found_dead_is_retried_once_afresh_only_when_idempotent(
    run: Run[Any], method: str, sent: int
) -> None:
    def second_request_unanswered(conn: socket.socket, head: bytes, index: int) -> bool:
        if index == 1:
            return False  # closed as the request arrives: no byte of answer
        conn.sendall(OK)
        return True

    async def go(url: str) -> list[Any]:
        upstream = Http1Upstream()
        results: list[Any] = [(await get(upstream, url, method=method, body=b"b"))[1]]
        try:
            results.append((await get(upstream, url, method=method, body=b"b"))[1])
        except UpstreamProtocolError as exc:
            results.append(str(exc))
        return results

    with Backend(second_request_unanswered) as backend:
        results = run(go(backend.url))
    if method == "GET":
        assert results == [b"ok", b"ok"]
    else:
        assert results == [b"ok", "the backend closed the connection without answering"]
    assert len(backend.heads) == sent  # a POST reaches the backend once, never twice


def test_a_new_connection_that_closes_without_answering_is_not_retried(run: Run[Any]) -> None:
    with Backend(lambda conn, head, index: False) as backend:
        with pytest.raises(UpstreamProtocolError, match="without answering"):
            run(get(Http1Upstream(), backend.url))
    assert len(backend.heads) == 1


def test_idle_connections_expire(run: Run[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_h1pool, "IDLE_SECONDS", 0.05)

    async def go(url: str) -> None:
        upstream = Http1Upstream()
        await get(upstream, url)
        await asyncio.sleep(0.1)
        await get(upstream, url)
        await upstream.aclose()

    with Backend(keep_alive(OK)) as backend:
        run(go(backend.url))
    assert backend.connections == 2


def test_a_refused_connection_is_a_connect_error(run: Run[Any]) -> None:
    with pytest.raises(UpstreamConnectError, match="cannot connect"):
        run(get(Http1Upstream(), f"http://127.0.0.1:{closed_port()}"))


# timeouts ------------------------------------------------------------------------------------


def test_a_backend_silent_before_its_head_times_out(run: Run[Any]) -> None:
    def silent(conn: socket.socket, head: bytes, index: int) -> bool:
        time.sleep(1)
        return False

    with Backend(silent) as backend, pytest.raises(UpstreamTimeout, match="no answer within 200 ms"):
        started = time.monotonic()
        run(get(Http1Upstream(), backend.url, timeout=0.2))
    assert time.monotonic() - started < 0.9


def test_the_timeout_bounds_each_wait_for_body_bytes_not_the_whole_download(run: Run[Any]) -> None:
    def slow(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
        for part in (b"ab", b"cd", b"ef"):
            time.sleep(0.15)
            conn.sendall(part)
        time.sleep(1)  # then silence before the last two bytes
        return False

    async def go(url: str) -> tuple[list[bytes], BaseException | None]:
        response = await Http1Upstream().send("GET", url, [("host", "b")], None, 0.4)
        parts: list[bytes] = []
        try:
            async for part in response.stream():
                parts.append(part)
        except UpstreamTimeout as exc:
            return parts, exc
        finally:
            response.release()
        return parts, None

    with Backend(slow) as backend:
        parts, error = run(go(backend.url))
    assert b"".join(parts) == b"abcdef"  # 0.45 s in all: longer than the timeout, every wait shorter
    assert isinstance(error, UpstreamTimeout)


# answers ---------------------------------------------------------------------------------------


def test_interim_answers_are_relayed_in_order_before_the_final_one(run: Run[Any]) -> None:
    def interims(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        time.sleep(0.05)
        conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + OK)
        return True

    async def go(url: str) -> tuple[list[Any], bytes | None, list[Any]]:
        upstream = Http1Upstream()
        seen: list[Any] = []

        async def interim(status: int, headers: list[tuple[bytes, bytes]]) -> None:
            await asyncio.sleep(0.01)
            seen.append((status, headers))

        _, body = await get(upstream, url, interim=interim)
        response, _ = await get(upstream, url)  # without a callback they are skipped
        return seen, body, [response.status, backend.connections]

    with Backend(interims) as backend:
        seen, body, after = run(go(backend.url))
    assert seen == [(100, []), (103, [(b"Link", b"</a.css>; rel=preload")])]
    assert (body, after) == (b"ok", [200, 1])


def test_a_101_hands_the_connection_over_with_bytes_both_ways(run: Run[Any]) -> None:
    def upgrade(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nhello")
        while data := conn.recv(65536):
            conn.sendall(data.upper())
        return False

    class Peer:
        def __init__(self) -> None:
            self.data = b""
            self.closed = asyncio.Event()
            self.complete = asyncio.Event()

        def write(self, data: bytes) -> None:
            self.data += data
            if len(self.data) >= len(b"hello WORLD"):
                self.complete.set()

        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

        def close(self) -> None:
            self.closed.set()

    async def go(url: str) -> tuple[int, bytes, bool]:
        upstream = Http1Upstream()
        response = await upstream.send("GET", url, [("host", "b"), ("upgrade", "x")], None, 5)
        peer = Peer()
        backend_pipe = response.upgraded().attach(peer)
        response.release()  # the upgraded connection is not the response's any more
        backend_pipe.write(b" world")
        await asyncio.wait_for(peer.complete.wait(), 5)
        backend_pipe.close()
        await asyncio.wait_for(peer.closed.wait(), 5)
        return response.status, peer.data, response.content_length is None

    with Backend(upgrade) as backend:
        assert run(go(backend.url)) == (101, b"hello WORLD", True)


def test_chunked_answers_drop_trailers_and_keep_the_connection(run: Run[Any]) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    with Backend(keep_alive(chunked)) as backend:
        results = run(_twice(backend.url))
    assert results == [(200, [(b"Transfer-Encoding", b"chunked")], None, b"hello world")] * 2
    assert backend.connections == 1


async def _twice(url: str, method: str = "GET") -> list[Any]:
    upstream = Http1Upstream()
    results = []
    for _ in range(2):
        response, body = await get(upstream, url, method=method)
        results.append((response.status, response.raw_headers, response.content_length, body))
    return results


@pytest.mark.parametrize(
    ("method", "answer", "length"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 1000),
        ("HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", None),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n", None),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n", 1000),
    ],
)
def test_head_204_and_304_answers_have_no_body_and_keep_the_connection(
    run: Run[Any], method: str, answer: bytes, length: int | None
) -> None:
    with Backend(keep_alive(answer)) as backend:
        results = run(_twice(backend.url, method))
    assert [(content_length, body) for _, _, content_length, body in results] == [(length, b"")] * 2
    assert backend.connections == 1


def test_a_close_delimited_body_ends_at_a_clean_close_but_a_reset_is_an_error(run: Run[Any]) -> None:
    def close_delimited(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nuntil the close")
        if b"reset" in head:
            time.sleep(0.05)
            reset(conn)
        return False

    async def go(url: str) -> list[Any]:
        upstream = Http1Upstream()
        response, body = await get(upstream, url + "/clean")
        outcome: list[Any] = [response.content_length, body]
        try:
            await get(upstream, url + "/reset")
        except UpstreamProtocolError as exc:
            outcome.append(str(exc))
        return outcome

    with Backend(close_delimited) as backend:
        assert run(go(backend.url)) == [
            None,
            b"until the close",
            "the connection was reset before the end of the response body",
        ]


def test_a_body_shorter_than_its_length_is_an_error_from_read_and_stream(run: Run[Any]) -> None:
    def short(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        time.sleep(0.05)
        return False

    async def go(url: str) -> list[str]:
        upstream = Http1Upstream()
        errors = []
        with pytest.raises(UpstreamProtocolError) as read:
            await get(upstream, url)
        errors.append(str(read.value))
        response = await upstream.send("GET", url, [("host", "b")], None, 5)
        with pytest.raises(UpstreamProtocolError) as stream:
            async for _ in response.stream():
                pass
        response.release()
        errors.append(str(stream.value))
        return errors

    with Backend(short) as backend:
        assert (
            run(go(backend.url)) == ["the response body broke off: the connection closed before its end"] * 2
        )


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"HTTX/1.1 200 OK\r\n\r\n", "malformed response"),
        (b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", "status 600"),
        (
            b"HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 0\r\n\r\n",
            "malformed response: Invalid header value char",
        ),
    ],
)
def test_an_answer_that_cannot_be_relayed_is_a_protocol_error_and_closes_the_connection(
    run: Run[Any], answer: bytes, problem: str
) -> None:
    async def go(url: str) -> None:
        upstream = Http1Upstream()
        with pytest.raises(UpstreamProtocolError, match=problem):
            await get(upstream, url)
        await get(upstream, url)

    def bad_then_good(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(answer if index == 0 else OK)
        return True

    with Backend(bad_then_good) as backend:
        run(go(backend.url))
    assert backend.connections == 2


def test_read_over_its_limit_returns_none_without_reading_on(run: Run[Any]) -> None:
    def big(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100)
        time.sleep(1)
        return False

    async def go(url: str) -> tuple[bytes | None, float]:
        response = await Http1Upstream().send("GET", url, [("host", "b")], None, 5)
        started = time.monotonic()
        body = await response.read(1000)
        response.release()
        return body, time.monotonic() - started

    with Backend(big) as backend:
        body, took = run(go(backend.url))
    assert body is None and took < 0.5


def test_an_abandoned_download_stops_reading_the_backend(run: Run[Any]) -> None:
    sent = [0]
    size = 256 * 1024 * 1024

    def endless(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"x" * 65536
        while sent[0] < size:
            sent[0] += conn.send(block)
        return False

    async def go(url: str) -> int:
        response = await Http1Upstream().send("GET", url, [("host", "b")], None, 5)
        got = 0
        async for part in response.stream():
            got += len(part)
            if got > 1 << 20:
                break
        response.release()
        await asyncio.sleep(0.3)
        return got

    with Backend(endless) as backend:
        run(go(backend.url))
        time.sleep(0.2)
        assert sent[0] < 32 * 1024 * 1024  # the backend's send failed: nobody reads its socket
        assert backend.errors and isinstance(backend.errors[0], OSError)


def test_reading_pauses_while_the_body_waits_unread(run: Run[Any]) -> None:
    sent = [0]
    size = 64 * 1024 * 1024

    def endless(conn: socket.socket, head: bytes, index: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"x" * 65536
        while sent[0] < size:
            sent[0] += conn.send(block)
        return False

    async def go(url: str) -> tuple[int, int]:
        response = await Http1Upstream().send("GET", url, [("host", "b")], None, 5)
        await asyncio.sleep(0.5)  # nobody reads the body meanwhile
        waiting = sent[0]
        got = 0
        async for part in response.stream():
            got += len(part)
        response.release()
        return waiting, got

    with Backend(endless) as backend:
        waiting, got = run(go(backend.url))
    assert waiting < 16 * 1024 * 1024  # socket buffers and 256 KiB, not the whole body
    assert got == size


# TLS ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_goes_through_tls_and_an_untrusted_certificate_is_a_connect_error(
    run: Run[Any], certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*certificate)

    class TlsBackend(RawBackend):
        def __init__(self) -> None:
            self.heads: list[bytes] = []

            def handler(conn: socket.socket) -> None:
                with server_context.wrap_socket(conn, server_side=True) as secure:
                    while head := read_request(secure):
                        self.heads.append(head)
                        secure.sendall(OK)

            super().__init__(handler)

        def __enter__(self) -> TlsBackend:
            super().__enter__()
            return self

    async def go(url: str) -> list[bytes | None]:
        upstream = Http1Upstream()
        bodies = [(await get(upstream, url))[1] for _ in range(2)]
        await upstream.aclose()
        return bodies

    with TlsBackend() as backend:
        url = f"https://localhost:{backend.port}"
        monkeypatch.setattr(_h1pool, "_tls_context", None)
        with pytest.raises(UpstreamConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            run(get(Http1Upstream(), url))  # the default context trusts the system's CAs only
        trusting = ssl.create_default_context(cafile=str(certificate[0]))
        monkeypatch.setattr(_h1pool, "_tls_context", trusting)
        assert run(go(url)) == [b"ok", b"ok"]
    assert backend.heads == [b"GET / HTTP/1.1\r\nhost: backend.test\r\n\r\n"] * 2


def test_importing_the_client_builds_no_tls_context_and_plain_http_never_does() -> None:
    script = (
        "import asyncio, sys\n"
        "from edge_router.upstream import _h1pool, http1\n"
        "print(_h1pool._tls_context is None, 'aiohttp' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["True", "False"]
