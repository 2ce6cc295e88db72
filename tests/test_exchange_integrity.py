"""Hardening (issue 6): no path escape, no broken exchange passed off as complete, no bad answer relayed.

Black-box, server mode, over raw sockets where an HTTP client would normalise the request away, against
real loopback backends: a decoding static-file server, and raw sockets that misbehave on purpose.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import (
    Backend,
    RawBackend,
    RouterServer,
    parse_response,
    raw_exchange,
    read_head,
    reset,
    response_body,
    write_config,
)


def serve(tmp_path: Path, routes: list[dict[str, Any]], **env: str) -> RouterServer:
    return RouterServer(write_config(tmp_path / "config.json", {"routes": routes}), env=env)


# 1. path escape through a second decode ---------------------------------------------------------


class _StaticFiles:
    """Python's http.server serving a directory: it percent-decodes the path, then normalises it."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietFileHandler, directory=str(root))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.requests: list[str] = []
        _QuietFileHandler.seen = self.requests
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    def __enter__(self) -> _StaticFiles:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    seen: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        self.seen.append(self.path)
        return super().send_head()


@pytest.fixture
def static_root(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "base").mkdir(parents=True)
    (root / "base" / "public.txt").write_text("public")
    (root / "secret.txt").write_text("TOP-SECRET")
    return root


ESCAPES = [
    "/api/%2%65%2%65/secret.txt",
    "/api/%%32%65%%32%65/secret.txt",
    "/api/%%32%45%%32%45/secret.txt",
    "/api/%252e%252e/secret.txt",
    "/api/x%2F..%2F..%2Fsecret.txt",
    "/api/x%5C..%5C..%5Csecret.txt",
    "/api/..;/secret.txt",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_no_decoding_by_the_backend_leaves_the_route_base(
    tmp_path: Path, static_root: Path, path: str
) -> None:
    with (
        _StaticFiles(static_root) as files,
        serve(tmp_path, [{"prefix": "/api", "target": files.url + "/base"}]) as r,
    ):
        assert b"public" in raw_exchange(
            r.url, b"GET /api/public.txt HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n"
        )
        answer = raw_exchange(r.url, f"GET {path} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n".encode())
        response = parse_response(answer)
        assert b"TOP-SECRET" not in answer
        assert response.status == 400
        assert response.headers["content-type"] == "application/json"
        assert files.requests == ["/base/public.txt"]  # the escape never reached the backend


def test_a_stray_percent_is_forwarded_as_a_literal_percent(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r:
        answer = raw_exchange(r.url, b"GET /api/100%/x%4 HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
        assert parse_response(answer).status == 200
        assert backend.last.target == "/100%25/x%254"


# 2. a request body the client did not complete never reaches a backend as complete ---------------


def _recording_backend(received: list[bytes]) -> RawBackend:
    """Records everything each connection sent, until the router closes it (or 3 s)."""

    def handler(conn: socket.socket) -> None:
        conn.settimeout(3)
        data = b""
        try:
            while chunk := conn.recv(65536):
                data += chunk
                if data.endswith(b"0\r\n\r\n"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (TimeoutError, ConnectionResetError):
            pass
        received.append(data)

    return RawBackend(handler)


def _complete_requests(received: list[bytes]) -> list[bytes]:
    """The requests a backend received whose body ended as its framing says."""
    complete = []
    for data in received:
        head, _, body = data.partition(b"\r\n\r\n")
        lowered = head.lower()
        if b"transfer-encoding: chunked" in lowered:
            if body.endswith(b"0\r\n\r\n"):
                complete.append(data)
        elif b"content-length:" in lowered:
            length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
            if len(body) >= length:
                complete.append(data)
        elif head:
            complete.append(data)
    return complete


CHUNKED_HEAD = b"POST /api/upload HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n"
BROKEN_BODIES = {
    "disconnect after the headers": b"",
    "disconnect mid-body": b"5\r\nhello\r\n",
    "invalid size zz": b"5\r\nhello\r\nzz\r\nabc\r\n0\r\n\r\n",
    "negative size": b"5\r\nhello\r\n-5\r\nabcde\r\n0\r\n\r\n",
    "overflowing size": b"5\r\nhello\r\nffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "0x prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "bare LF": b"5\nhello\n0\n\n",
}


@pytest.mark.parametrize("body", BROKEN_BODIES.values(), ids=BROKEN_BODIES.keys())
def test_an_incomplete_request_body_never_reaches_the_backend_as_complete(
    tmp_path: Path, body: bytes
) -> None:
    received: list[bytes] = []
    with (
        _recording_backend(received) as backend,
        serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r,
    ):
        host, port = r.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(CHUNKED_HEAD + body)
            time.sleep(0.2)  # let the router start forwarding what it has
        line = r.logged(path="/api/upload")
        assert line["status"] in (400, 499)
        assert line["error"]
        assert line["UpstreamErrors"] == 0  # the client's doing, never held against the backend
        time.sleep(0.3)
        assert _complete_requests(received) == []


def test_transfer_encoding_xchunked_is_refused_before_any_backend_contact(tmp_path: Path) -> None:
    received: list[bytes] = []
    with (
        _recording_backend(received) as backend,
        serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r,
    ):
        answer = raw_exchange(
            r.url,
            b"POST /api/x HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        assert parse_response(answer).status in (400, 501)
        time.sleep(0.3)
        assert received == []


# 3. a truncated answer is never passed off as complete -------------------------------------------


def _close_delimited_then_reset(conn: socket.socket) -> None:
    read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n" + b"x" * 100_000)
    time.sleep(0.1)
    reset(conn)


def test_a_close_delimited_body_cut_by_a_reset_reaches_the_client_cut(tmp_path: Path) -> None:
    with (
        RawBackend(_close_delimited_then_reset) as backend,
        serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r,
    ):
        answer = raw_exchange(r.url, b"GET /api/big HTTP/1.1\r\nHost: r\r\n\r\n")
        response = parse_response(answer)
        assert response.status == 200
        assert response.headers["transfer-encoding"] == "chunked"
        assert not response.complete  # no terminating chunk: curl and browsers see the break
        assert "reset" in r.logged(path="/api/big")["error"]


def test_a_close_delimited_body_ended_cleanly_is_complete(tmp_path: Path) -> None:
    def clean(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"y" * 100_000)
        conn.shutdown(socket.SHUT_WR)

    with RawBackend(clean) as backend, serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r:
        response = parse_response(raw_exchange(r.url, b"GET /api/big HTTP/1.1\r\nHost: r\r\n\r\n"))
        assert response.complete and response.body == b"y" * 100_000


def test_a_101_nobody_asked_for_is_a_502_and_never_spliced(tmp_path: Path) -> None:
    # a backend that switches protocols on a plain GET would otherwise get a raw pipe to the client
    def switches(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nRAW")
        time.sleep(0.5)

    with RawBackend(switches) as backend, serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r:
        response = parse_response(raw_exchange(r.url, b"GET /api/x HTTP/1.1\r\nHost: r\r\n\r\n"))
        assert response.status == 502
        assert b"RAW" not in response.body


def test_an_upgrade_on_a_cached_route_is_neither_cached_nor_coalesced(tmp_path: Path) -> None:
    # two upgrade requests for one URL: each reaches the backend (a cache would answer the second)
    heads: list[bytes] = []

    def refuses_upgrade(conn: socket.socket) -> None:
        heads.append(read_head(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nContent-Length: 2\r\n\r\nok")

    route = {"prefix": "/api", "target": "", "cache": {"enabled": True, "ttl": 300}}
    with RawBackend(refuses_upgrade) as backend, serve(tmp_path, [{**route, "target": backend.url}]) as r:
        upgrade = b"GET /api/ws HTTP/1.1\r\nHost: r\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        for _ in range(2):
            response = parse_response(raw_exchange(r.url, upgrade))
            assert response.status == 200 and response.body == b"ok"
        assert len(heads) == 2
        assert all(b"upgrade: websocket" in head.lower() for head in heads)


def test_lambda_answers_502_for_a_body_cut_by_a_reset(tmp_path: Path, lambda_adapter: Any) -> None:
    from edge_router.testing import function_url_event

    with RawBackend(_close_delimited_then_reset) as backend:
        config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        answer = lambda_adapter(config)(function_url_event("GET", "/api/big"), None)
        assert answer["statusCode"] == 502
        assert b"x" * 1000 not in response_body(answer)


# 6. Expect: 100-continue -------------------------------------------------------------------------

EXPECT_REQUEST = (
    b"POST /api/e HTTP/1.1\r\nHost: r\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
    b"Connection: close\r\n\r\n"
)


def test_expect_100_continue_is_not_forwarded_so_a_backend_that_never_sends_100_still_answers(
    tmp_path: Path,
) -> None:
    heads: list[bytes] = []

    def waits_for_the_body(conn: socket.socket) -> None:
        data = read_head(conn)  # never sends "100 Continue": waits for the body, as many servers do
        heads.append(data)
        while len(data.partition(b"\r\n\r\n")[2]) < 5:
            data += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")

    with (
        RawBackend(waits_for_the_body) as backend,
        serve(tmp_path, [{"prefix": "/api", "target": backend.url, "timeout_ms": 5000}]) as r,
    ):
        host, port = r.url.removeprefix("http://").split(":")
        started = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(EXPECT_REQUEST)
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(b"hello")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert parse_response(answer).body == b"done"
        assert time.monotonic() - started < 3
        assert b"expect" not in heads[0].lower()


def test_expect_100_continue_to_a_silent_backend_is_bounded_by_the_route_timeout(tmp_path: Path) -> None:
    def silent(conn: socket.socket) -> None:
        read_head(conn)
        time.sleep(5)

    with (
        RawBackend(silent) as backend,
        serve(tmp_path, [{"prefix": "/api", "target": backend.url, "timeout_ms": 500}]) as r,
    ):
        started = time.monotonic()
        answer = raw_exchange(r.url, EXPECT_REQUEST + b"hello")
        assert parse_response(answer.partition(b"HTTP/1.1 100 Continue\r\n\r\n")[2] or answer).status == 504
        assert time.monotonic() - started < 3


# 7. faulty backends ------------------------------------------------------------------------------

FAULTY_ANSWERS = {
    "status 999": b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\nok",
    "status 99": b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok",
    "control character in a value": b"HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\nok",
    "DEL in a value": b"HTTP/1.1 200 OK\r\nX-Bad: a\x7fb\r\nContent-Length: 2\r\n\r\nok",
    "unsolicited 101": (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi"
    ),
}


@pytest.mark.parametrize("reply", FAULTY_ANSWERS.values(), ids=FAULTY_ANSWERS.keys())
def test_an_answer_that_cannot_be_relayed_is_a_json_502(tmp_path: Path, reply: bytes) -> None:
    def faulty(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(reply)
        time.sleep(0.2)

    with RawBackend(faulty) as backend, serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r:
        response = parse_response(
            raw_exchange(r.url, b"GET /api/x HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
        )
        assert response.status == 502
        assert response.headers["content-type"] == "application/json"
        assert b'"error":"Bad Gateway"' in response.body


# 9. non-ASCII header values pass as sent ---------------------------------------------------------


def test_utf8_header_values_reach_the_backend_byte_for_byte(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r:
        raw_exchange(
            r.url,
            b"GET /api/h HTTP/1.1\r\nHost: r\r\nX-Name: caf\xc3\xa9 \xe2\x82\xac\r\n"
            b"Connection: close\r\n\r\n",
        )
        # http.server decodes header bytes as latin-1: the same bytes come back out
        assert backend.last.header("x-name").encode("latin-1") == b"caf\xc3\xa9 \xe2\x82\xac"


def test_a_header_value_that_is_not_utf8_reaches_the_backend_byte_for_byte(tmp_path: Path) -> None:
    # obs-text (RFC 9110 5.5): latin-1 bytes a legacy client sends; the request head goes out as
    # bytes, so they arrive unchanged instead of being refused or re-encoded
    with Backend() as backend, serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r:
        answer = raw_exchange(
            r.url, b"GET /api/h HTTP/1.1\r\nHost: r\r\nX-Name: caf\xe9 \xff\r\nConnection: close\r\n\r\n"
        )
        assert parse_response(answer).status == 200
        assert backend.last.header("x-name").encode("latin-1") == b"caf\xe9 \xff"


def test_a_header_value_that_is_not_utf8_is_refused_for_a_lambda_target(tmp_path: Path) -> None:
    # a Lambda Invoke event is JSON text: such a value cannot be carried as sent, so it is
    # refused (400, naming the header) rather than altered
    with serve(tmp_path, [{"prefix": "/fn", "target": "lambda:some-function"}]) as r:
        answer = raw_exchange(
            r.url, b"GET /fn/h HTTP/1.1\r\nHost: r\r\nX-Name: caf\xe9\r\nConnection: close\r\n\r\n"
        )
        response = parse_response(answer)
        assert response.status == 400
        assert b"x-name" in response.body


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = threading.active_count()
    yield
    # raw backends and servers stop with their `with` blocks; give daemon handlers a moment
    deadline = time.monotonic() + 5
    while threading.active_count() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
