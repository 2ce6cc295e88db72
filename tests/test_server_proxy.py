"""The proxy in server mode (`edge-router serve`'s engine), black-box, against real loopback backends."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import Backend, RawBackend, Reply, RouterServer, chunks, closed_port, read_head, write_config


def serve(tmp_path: Path, routes: list[dict[str, Any]], **env: str) -> RouterServer:
    return RouterServer(write_config(tmp_path / "config.json", {"routes": routes}), env=env)


def test_prefix_rewrite_keeps_query_and_escapes_byte_for_byte(tmp_path: Path) -> None:
    with (
        Backend() as backend,
        serve(tmp_path, [{"prefix": "/api/v1/user", "target": backend.url + "/user"}]) as r,
    ):
        with socket.create_connection(("127.0.0.1", int(r.url.rsplit(":", 1)[1]))) as sock:
            # raw socket: no client library may re-encode the request target
            request_line = b"GET /api/v1/user/a%2Fb/123?page=1&q=%7e+x&q=2 HTTP/1.1\r\n"
            sock.sendall(request_line + b"Host: r\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        assert backend.last.target == "/user/a%2Fb/123?page=1&q=%7e+x&q=2"


def test_first_matching_route_wins_and_prefixes_are_segment_aware(tmp_path: Path) -> None:
    with Backend() as one, Backend() as two:
        routes = [{"prefix": "/api/users", "target": one.url}, {"prefix": "/api", "target": two.url}]
        with serve(tmp_path, routes) as r, r.client() as client:
            assert client.get("/api/users/1").headers["x-backend-source"] == one.url
            assert client.get("/api/usersx").headers["x-backend-source"] == two.url
            assert client.get("/api/users").headers["x-backend-source"] == one.url
            missing = client.get("/apix")
            assert missing.status_code == 404
            assert missing.json()["error"] == "Not Found"
            assert missing.json()["request_id"] == missing.headers["x-request-id"]
            assert missing.headers["access-control-allow-origin"] == "*"


def test_dot_segments_cannot_escape_the_route(tmp_path: Path) -> None:
    with (
        Backend() as backend,
        serve(tmp_path, [{"prefix": "/public", "target": backend.url + "/public"}]) as r,
        r.client() as client,
    ):
        # httpx would normalise '..' itself; send the escaped form, which it leaves alone
        response = client.get("/public/%2e%2e/private")
        assert response.status_code == 404
        assert backend.seen == []
        assert client.get("/public/a/%2E%2E/b").status_code == 200
        assert backend.last.target == "/public/b"


def test_headers_forwarded_and_proxy_headers_set(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r:
        with r.client() as client:
            response = client.get(
                "/api/h",
                headers={
                    "Authorization": "Bearer abc",
                    "Cookie": "a=1; b=2",
                    "X-Forwarded-For": "192.0.2.9",
                    "Connection": "keep-alive, X-Hop",
                    "X-Hop": "secret",
                    "Keep-Alive": "timeout=5",
                    "X-Request-Id": "my-id-1",
                },
            )
        seen = backend.last
        assert seen.header("authorization") == "Bearer abc"
        assert seen.header("cookie") == "a=1; b=2"
        assert seen.header("host") == f"127.0.0.1:{backend.port}"
        assert seen.header("x-forwarded-for") == "192.0.2.9, 127.0.0.1"
        assert seen.header("x-forwarded-proto") == "http"
        assert seen.header("x-forwarded-host") == r.url.removeprefix("http://")
        assert seen.header("via") == "1.1 edge-router"
        assert seen.header("x-request-id") == "my-id-1"
        assert "x-hop" not in seen.header_names()
        assert "keep-alive" not in seen.header_names()
        assert "user-agent" in seen.header_names()  # the client's own, not one of ours
        assert response.headers["x-request-id"] == "my-id-1"
        assert response.headers["x-backend-source"] == backend.url


def test_request_id_created_when_missing_and_returned(tmp_path: Path) -> None:
    with (
        Backend() as backend,
        serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r,
        r.client() as c,
    ):
        response = c.get("/api")
        assert len(response.headers["x-request-id"]) >= 16
        assert backend.last.header("x-request-id") == response.headers["x-request-id"]


def test_no_headers_added_that_the_client_did_not_send(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, [{"prefix": "/api", "target": backend.url}]) as r:
        port = int(r.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /api HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
        names = backend.last.header_names()
        assert not names & {"user-agent", "accept", "accept-encoding", "content-type"}


def test_multiple_set_cookie_headers_survive(tmp_path: Path) -> None:
    reply = Reply(
        headers=[("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Secure"), ("Content-Type", "text/plain")]
    )
    with Backend(lambda _: reply) as backend, serve(tmp_path, [{"prefix": "/", "target": backend.url}]) as r:
        with r.client() as client:
            response = client.get("/x")
        assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Secure"]


def test_binary_bodies_byte_exact_both_ways(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 1000
    echo = Backend(
        lambda seen: Reply(headers=[("Content-Type", "application/octet-stream")], body=seen.body[::-1])
    )
    with (
        echo as backend,
        serve(tmp_path, [{"prefix": "/u", "target": backend.url}]) as r,
        r.client() as client,
    ):
        response = client.post(
            "/u/blob", content=payload, headers={"Content-Type": "application/octet-stream"}
        )
        assert backend.last.body == payload
        assert backend.last.header("content-length") == str(len(payload))
        assert response.content == payload[::-1]


def test_compressed_body_passes_through_compressed(tmp_path: Path) -> None:
    raw = json.dumps({"items": list(range(2000))}).encode()
    packed = gzip.compress(raw)
    reply = Reply(headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")], body=packed)
    with Backend(lambda _: reply) as backend, serve(tmp_path, [{"prefix": "/", "target": backend.url}]) as r:
        with (
            r.client() as client,
            client.stream("GET", "/z", headers={"Accept-Encoding": "gzip"}) as response,
        ):
            body = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip"
        assert body == packed
        assert backend.last.header("accept-encoding") == "gzip"


def test_redirects_are_returned_not_followed(tmp_path: Path) -> None:
    reply = Reply(status=302, headers=[("Location", "https://elsewhere.example/next")], body=b"")
    with Backend(lambda _: reply) as backend, serve(tmp_path, [{"prefix": "/", "target": backend.url}]) as r:
        with r.client() as client:
            response = client.get("/go")
        assert response.status_code == 302
        assert response.headers["location"] == "https://elsewhere.example/next"
        assert len(backend.seen) == 1


def test_backend_unreachable_is_503_json(tmp_path: Path) -> None:
    target = f"http://127.0.0.1:{closed_port()}"
    with serve(tmp_path, [{"prefix": "/api", "target": target}]) as r, r.client() as client:
        response = client.get("/api/x", headers={"X-Request-Id": "rid-503"})
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "Backend Unavailable"
    assert body["backend"] == target
    assert body["request_id"] == "rid-503"
    assert "detail" not in body


def test_error_detail_only_with_debug_errors(tmp_path: Path) -> None:
    target = f"http://127.0.0.1:{closed_port()}"
    with serve(tmp_path, [{"prefix": "/api", "target": target}], DEBUG_ERRORS="1") as r, r.client() as client:
        body = client.get("/api").json()
    assert "cannot connect" in body["detail"]


def test_slow_backend_is_504_after_route_timeout(tmp_path: Path) -> None:
    with Backend(lambda _: Reply(delay=2.0)) as backend:
        with (
            serve(tmp_path, [{"prefix": "/slow", "target": backend.url, "timeout_ms": 200}]) as r,
            r.client() as c,
        ):
            response = c.get("/slow")
    # a 504, not the backend's 200 that came after 2 s: the route's 200 ms timeout was applied
    assert response.status_code == 504
    assert response.json()["error"] == "Gateway Timeout"
    assert response.json()["message"] == "Backend did not respond within 0.2s"


def test_request_timeout_env_applies_when_route_sets_none(tmp_path: Path) -> None:
    with Backend(lambda _: Reply(delay=2.0)) as backend:
        with serve(tmp_path, [{"prefix": "/slow", "target": backend.url}], REQUEST_TIMEOUT_MS="200") as r:
            with r.client() as client:
                assert client.get("/slow").status_code == 504


def test_proxy_loop_is_refused_with_508(tmp_path: Path) -> None:
    with (
        Backend() as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url}]) as r,
        r.client() as c,
    ):
        ok = c.get("/x", headers={"Via": "1.1 edge-router, 1.1 edge-router"})
        looped = c.get("/x", headers={"Via": "1.1 edge-router, 1.1 cdn, 1.1 edge-router, 1.1 edge-router"})
    assert ok.status_code == 200
    assert backend.last.header("via") == "1.1 edge-router, 1.1 edge-router, 1.1 edge-router"
    assert looped.status_code == 508
    assert looped.json()["error"] == "Loop Detected"


def test_preflight_answered_by_router_with_cors(tmp_path: Path) -> None:
    with (
        Backend() as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url}]) as r,
        r.client() as c,
    ):
        response = c.options(
            "/api", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        )
    assert response.status_code == 204
    assert "x-backend" in response.headers["access-control-allow-headers"]
    assert "PATCH" in response.headers["access-control-allow-methods"]
    assert backend.seen == []


# --- streaming ------------------------------------------------------------------------------


class _UploadProbe:
    """A raw loopback backend that signals when the first part of a chunked upload has arrived."""

    def __init__(self, first_part: int) -> None:
        self.first_part = first_part
        self.first_arrived = threading.Event()
        self.digest = ""
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._sock.settimeout(10)
        conn, _ = self._sock.accept()
        conn.settimeout(10)
        with conn:
            reader = conn.makefile("rb")
            while reader.readline() not in (b"\r\n", b""):
                pass
            digest, received = hashlib.sha256(), 0
            while True:
                size = int(reader.readline().split(b";")[0], 16)
                if size == 0:
                    reader.readline()
                    break
                part = reader.read(size)
                reader.readline()
                digest.update(part)
                received += len(part)
                if received >= self.first_part:
                    self.first_arrived.set()
            self.digest = digest.hexdigest()
            body = self.digest.encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )

    def close(self) -> None:
        self._sock.close()
        self._thread.join(timeout=5)


def test_upload_streams_to_backend_before_client_finishes(tmp_path: Path) -> None:
    first, rest = b"a" * 100_000, b"b" * 100_000
    probe = _UploadProbe(len(first))
    try:
        with serve(tmp_path, [{"prefix": "/up", "target": probe.url}]) as r, r.client() as client:

            def body() -> Iterator[bytes]:
                yield first
                # if the router buffered the body, the backend could not have seen this part yet
                assert probe.first_arrived.wait(10), "first part did not reach the backend while uploading"
                yield rest

            response = client.post("/up", content=body())
        assert response.status_code == 200
        assert response.text == hashlib.sha256(first + rest).hexdigest()
    finally:
        probe.close()


def test_download_streams_to_client_before_backend_finishes(tmp_path: Path) -> None:
    client_got_first = threading.Event()

    def body() -> Iterator[bytes]:
        yield b"first-part;"
        # the backend holds the rest back until the client has the first part through the router
        assert client_got_first.wait(10)
        yield b"second-part"

    reply = Reply(headers=[("Content-Type", "text/plain")], body=body())
    with Backend(lambda _: reply) as backend, serve(tmp_path, [{"prefix": "/d", "target": backend.url}]) as r:
        with r.client() as client, client.stream("GET", "/d") as response:
            parts = response.iter_raw()
            received = next(parts)
            client_got_first.set()
            received += b"".join(parts)
    assert received == b"first-part;second-part"


def test_large_transfer_byte_exact_both_ways(tmp_path: Path) -> None:
    blob = hashlib.sha256(b"seed").digest() * (48 * 1024 * 1024 // 32)  # 48 MiB

    def reply(seen: Any) -> Reply:
        return Reply(headers=[("Content-Type", "application/octet-stream")], body=chunks(seen.body, 1 << 20))

    with Backend(reply) as backend, serve(tmp_path, [{"prefix": "/", "target": backend.url}]) as r:
        with r.client() as client, client.stream("PUT", "/big", content=chunks(blob, 1 << 20)) as response:
            digest = hashlib.sha256()
            for part in response.iter_raw():
                digest.update(part)
        assert hashlib.sha256(backend.last.body).digest() == hashlib.sha256(blob).digest()
        assert digest.digest() == hashlib.sha256(blob).digest()


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "PATCH", "PUT"])
def test_methods_pass_through(tmp_path: Path, method: str) -> None:
    with (
        Backend() as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url}]) as r,
        r.client() as c,
    ):
        response = c.request(method, "/m", content=b"x" if method in ("PATCH", "PUT") else None)
    assert response.status_code == 200
    assert backend.last.method == method


def test_malformed_request_gets_4xx_not_500(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, [{"prefix": "/", "target": backend.url}]) as r:
        port = int(r.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: r\r\nContent-Length: nope\r\n\r\n")
            answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 4")


# --- 1xx answers and Expect: 100-continue through the real router ---------------------------------


def _early_hints_backend(conn: socket.socket) -> None:
    head = read_head(conn)
    length = (
        int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        if b"content-length" in head.lower()
        else 0
    )
    body = head.partition(b"\r\n\r\n")[2]
    conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
    while len(body) < length:
        body += conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def test_early_hints_are_relayed_before_the_answer(tmp_path: Path) -> None:
    with (
        RawBackend(_early_hints_backend) as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url}]) as r,
    ):
        port = int(r.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /page HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    hints, _, final = answer.partition(b"\r\n\r\n")
    assert hints == b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload"
    assert final.startswith(b"HTTP/1.1 200 OK\r\n")


def test_expect_100_continue_through_the_router(tmp_path: Path) -> None:
    with (
        RawBackend(_early_hints_backend) as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url}]) as r,
    ):
        port = int(r.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /up HTTP/1.1\r\nHost: r\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
            )
            interim = b""
            while b"\r\n\r\n" not in interim:
                interim += sock.recv(65536)
            assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the body was sent
            sock.sendall(b"hello")
            answer = interim
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.count(b"HTTP/1.1 100 Continue") == 1
    assert b"HTTP/1.1 103 Early Hints" in answer
    assert answer.endswith(b"hello")
