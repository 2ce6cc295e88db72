"""Hardening (issue 6): the local server's limits and timeouts, request framing, and its dependencies.

Raw sockets throughout: an HTTP client would refuse to send most of these requests. The resource tests
run `edge-router serve` as a child process, with its own file-descriptor limit, and read its memory.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support import (
    Backend,
    Reply,
    RouterServer,
    closed_port,
    parse_response,
    raw_exchange,
    wait_until,
    wait_until_serving,
    write_config,
)


def serve(tmp_path: Path, backend_url: str, **env: str) -> RouterServer:
    return RouterServer(
        write_config(tmp_path / "config.json", {"routes": [{"prefix": "/api", "target": backend_url}]}),
        env=env,
    )


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


# 4. bounded request heads ------------------------------------------------------------------------

HEAD = b"GET /api/x HTTP/1.1\r\nHost: r\r\n"
OVERSIZED = {
    "a 1 MB header value": HEAD + b"X-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
    "a 100 KB header name": HEAD + b"X-" + b"n" * 100_000 + b": v\r\n\r\n",
    "1,000 headers": HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(1000)) + b"\r\n",
    "a 100 KB URL": b"GET /api/" + b"u" * 100_000 + b" HTTP/1.1\r\nHost: r\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", OVERSIZED.values(), ids=OVERSIZED.keys())
def test_oversized_request_heads_are_refused_with_431(tmp_path: Path, request_bytes: bytes) -> None:
    with Backend() as backend, serve(tmp_path, backend.url) as r:
        response = parse_response(raw_exchange(r.url, request_bytes))
        assert response.status == 431
        assert json.loads(response.body)["error"] == "Request Header Fields Too Large"
        assert response.headers["connection"] == "close"
        assert backend.seen == []


def test_head_limits_are_configurable_and_a_head_within_them_passes(tmp_path: Path) -> None:
    with (
        Backend() as backend,
        serve(tmp_path, backend.url, SERVER_MAX_HEAD_BYTES="2048", SERVER_MAX_HEADERS="10") as r,
    ):
        fits = HEAD + b"X-A: " + b"a" * 1500 + b"\r\nConnection: close\r\n\r\n"
        assert parse_response(raw_exchange(r.url, fits)).status == 200
        too_big = HEAD + b"X-A: " + b"a" * 2100 + b"\r\n\r\n"
        assert parse_response(raw_exchange(r.url, too_big)).status == 431
        eleven = HEAD + b"".join(b"X-%d: v\r\n" % i for i in range(10)) + b"\r\n"
        assert parse_response(raw_exchange(r.url, eleven)).status == 431


def test_an_unfinished_header_line_is_refused_while_it_arrives(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, backend.url) as r, connect(r.url) as sock:
        sock.sendall(HEAD + b"X-Endless: ")
        sent = 0
        with pytest.raises(OSError):  # the router answers and closes long before 32 MiB
            while sent < 32 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        assert sent < 4 * 1024 * 1024


def test_a_1mb_chunk_extension_is_refused(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, backend.url) as r, connect(r.url) as sock:
        sock.sendall(b"POST /api/x HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=")
        try:
            for _ in range(16):
                sock.sendall(b"e" * 65536)
        except OSError:
            pass
        answer = read_all(sock)
        assert parse_response(answer).status == 400
        line = r.logged(path="/api/x")
        assert line["status"] == 400
        assert all(seen.body == b"" or len(seen.body) < 5 for seen in backend.seen)


# 8. request framing (RFC 9112) -------------------------------------------------------------------

FRAMING = {
    "two Host headers": (b"GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "no Host header": (b"GET /api/x HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    "identity, chunked": (
        b"POST /api/x HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: identity, chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        501,
    ),
    "gzip, chunked": (
        b"POST /api/x HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        501,
    ),
}


@pytest.mark.parametrize(("request_bytes", "status"), FRAMING.values(), ids=FRAMING.keys())
def test_requests_with_bad_framing_are_refused(tmp_path: Path, request_bytes: bytes, status: int) -> None:
    with Backend() as backend, serve(tmp_path, backend.url) as r:
        response = parse_response(raw_exchange(r.url, request_bytes))
        assert response.status == status
        assert response.headers["content-type"] == "application/json"
        assert backend.seen == []


def test_http_1_0_without_host_is_accepted(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, backend.url) as r:
        assert parse_response(raw_exchange(r.url, b"GET /api/x HTTP/1.0\r\n\r\n")).status == 200
        assert backend.last.target == "/x"


# 5. head-read timeout, connection cap, file descriptors ------------------------------------------


def test_a_silent_connection_is_closed_after_the_head_timeout(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, backend.url, SERVER_HEAD_TIMEOUT_S="0.5") as r:
        with connect(r.url) as sock:
            started = time.monotonic()
            assert read_all(sock) == b""
            assert 0.4 < time.monotonic() - started < 3


def test_a_head_trickled_byte_by_byte_gets_408_after_the_head_timeout(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, backend.url, SERVER_HEAD_TIMEOUT_S="0.8") as r:
        with connect(r.url) as sock:
            started = time.monotonic()
            try:
                for byte in HEAD:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                pass
            answer = read_all(sock)
            assert parse_response(answer).status == 408
            assert time.monotonic() - started < 4
        assert backend.seen == []


def test_a_kept_alive_connection_gets_the_head_timeout_again_for_its_next_request(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, backend.url, SERVER_HEAD_TIMEOUT_S="0.5") as r:
        with connect(r.url) as sock:
            sock.sendall(b"GET /api/1 HTTP/1.1\r\nHost: r\r\n\r\n")
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200")
            time.sleep(0.8)  # idle between requests: the keep-alive timeout applies, not the head one
            sock.sendall(b"GET /api/2 HTTP/1.1\r\nHost: r\r\nX-Slow: ")
            assert parse_response(read_all(sock)).status == 408


@contextmanager
def server_log() -> Iterator[list[str]]:
    """The warning lines of `edge_router.server` while the block runs."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Capture(logging.WARNING)
    logger = logging.getLogger("edge_router.server")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def test_at_the_cap_a_new_connection_closes_the_one_waiting_longest(tmp_path: Path) -> None:
    with (
        Backend() as backend,
        serve(tmp_path, backend.url, SERVER_MAX_CONNECTIONS="3") as r,
        server_log() as log,
    ):
        idle = []
        try:
            for _ in range(3):
                idle.append(connect(r.url))
                time.sleep(0.05)  # so that they start waiting in this order
            idle[1].sendall(b"GET /api/x HTTP/1.1\r\nHost: r\r\n\r\n")  # kept alive: waits again, last
            assert idle[1].recv(65536).startswith(b"HTTP/1.1 200")
            with httpx.Client(base_url=r.url) as client:
                assert client.get("/api/x").status_code == 200  # evicts idle[0], the oldest waiting
                assert read_all(idle[0]) == b""
                assert client.get("/api/x").status_code == 200  # the same connection: no eviction
                with connect(r.url) as fourth:  # evicts idle[2] (idle[1] started waiting after it)
                    assert read_all(idle[2]) == b""
                    fourth.sendall(b"GET /api/x HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
                    assert parse_response(read_all(fourth)).status == 200
            idle[1].sendall(b"GET /api/x HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
            assert parse_response(read_all(idle[1])).status == 200
        finally:
            for sock in idle:
                sock.close()
        assert any(
            "closed the one waiting longest" in line and "SERVER_MAX_CONNECTIONS=3" in line for line in log
        )


def test_a_partial_head_evicted_at_the_cap_gets_503(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, backend.url, SERVER_MAX_CONNECTIONS="2") as r:
        with connect(r.url) as partial, connect(r.url) as other:
            partial.sendall(HEAD + b"X-Slow: ")
            time.sleep(0.1)
            with httpx.Client(base_url=r.url) as client:
                assert client.get("/api/x").status_code == 200
            answer = parse_response(read_all(partial))
            assert answer.status == 503
            assert answer.headers["connection"] == "close"
            other.sendall(b"GET /api/x HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
            assert parse_response(read_all(other)).status == 200


def test_connections_over_the_cap_get_503_only_when_all_have_a_request_in_progress(tmp_path: Path) -> None:
    slow = Backend(lambda seen: Reply(delay=1.5) if seen.target == "/slow" else Reply())
    with slow as backend, serve(tmp_path, backend.url, SERVER_MAX_CONNECTIONS="3") as r, server_log() as log:
        busy = [connect(r.url) for _ in range(3)]
        try:
            for sock in busy:
                sock.sendall(b"GET /api/slow HTTP/1.1\r\nHost: r\r\n\r\n")
            wait_until(lambda: len(backend.seen) == 3)
            with connect(r.url) as fourth:
                response = parse_response(read_all(fourth))
                assert response.status == 503
                assert response.headers["connection"] == "close"
            for sock in busy:  # nothing in progress was touched
                assert parse_response(sock.recv(65536)).status == 200
        finally:
            for sock in busy:
                sock.close()
        time.sleep(0.2)
        with httpx.Client(base_url=r.url) as client:
            assert client.get("/api/x").status_code == 200  # freed connections are usable again
        assert any("connection refused" in line and "SERVER_MAX_CONNECTIONS=3" in line for line in log)


@dataclass
class RouterProcess:
    url: str
    process: subprocess.Popen[bytes]
    output: list[bytes]  # its stdout and stderr lines so far

    def printed(self) -> str:
        return b"".join(self.output).decode()


@contextmanager
def router_process(config: str, *, nofile: tuple[int, int], env: dict[str, str]) -> Iterator[RouterProcess]:
    """`edge-router serve` as a child process with its own file-descriptor limit."""
    port = closed_port()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

    process = subprocess.Popen(
        [sys.executable, "-m", "edge_router.cli", "serve", "--config", config, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=limit,  # the child's own limit, set before exec
        env={**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING", **env},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    output: list[bytes] = []
    stdout = process.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: output.extend(iter(stdout.readline, b"")), daemon=True)
    reader.start()
    try:
        wait_until_serving(url)
        yield RouterProcess(url, process, output)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        reader.join(5)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_more_silent_connections_than_file_descriptors_do_not_lock_users_out(tmp_path: Path) -> None:
    with Backend() as backend:
        config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        with router_process(config, nofile=(256, 256), env={"SERVER_HEAD_TIMEOUT_S": "1"}) as router:
            url = router.url
            host, port = url.removeprefix("http://").split(":")
            silent = []
            for _ in range(300):  # more than the router has file descriptors
                try:
                    silent.append(socket.create_connection((host, int(port)), timeout=5))
                except OSError:
                    break
            try:
                deadline = time.monotonic() + 8
                status = None
                while time.monotonic() < deadline:
                    try:
                        status = httpx.get(url + "/api/x", timeout=2).status_code
                    except httpx.HTTPError:
                        status = None
                    if status == 200:
                        break
                    time.sleep(0.2)
                assert status == 200
            finally:
                for sock in silent:
                    sock.close()
            time.sleep(0.3)
            log = router.printed()  # the silent ones were closed to admit the new ones
            assert "closed the one waiting longest" in log and "SERVER_MAX_CONNECTIONS" in log


def test_start_up_raises_the_soft_file_descriptor_limit_to_the_hard_one(tmp_path: Path) -> None:
    with Backend() as backend:
        config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        with router_process(config, nofile=(256, 1024), env={}) as router:
            limits = Path(f"/proc/{router.process.pid}/limits").read_text()
            line = next(text for text in limits.splitlines() if text.startswith("Max open files"))
            assert line.split()[3:5] == ["1024", "1024"]
            assert "file descriptors 1024 (was 256)" in router.printed()


def test_unfinished_32mib_header_lines_do_not_grow_the_router(tmp_path: Path) -> None:
    with Backend() as backend:
        config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        with router_process(config, nofile=(1024, 1024), env={}) as router:
            before = _rss_kib(router.process.pid)
            host, port = router.url.removeprefix("http://").split(":")

            def attacker() -> None:
                with socket.create_connection((host, int(port)), timeout=10) as sock:
                    sock.sendall(HEAD + b"X-Endless: ")
                    try:
                        for _ in range(512):  # 32 MiB
                            sock.sendall(b"a" * 65536)
                    except OSError:
                        pass

            threads = [threading.Thread(target=attacker) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            grown_mib = (_rss_kib(router.process.pid) - before) / 1024
            assert grown_mib < 16, f"the router grew by {grown_mib:.0f} MiB"
            assert httpx.get(router.url + "/api/x", timeout=5).status_code == 200


# 13. serving with only what is installed ---------------------------------------------------------


def _cli(tmp_path: Path, missing: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    script = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "from edge_router.cli import main\n"
        f"sys.exit(main({list(args)!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, cwd=tmp_path
    )


def test_serve_without_httptools_says_what_to_install(tmp_path: Path) -> None:
    result = _cli(tmp_path, "httptools", "serve", "--port", str(closed_port()))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "pip install 'edge-router[server]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_demo_without_aiohttp_says_what_to_install(tmp_path: Path) -> None:
    # the demo's backends are aiohttp servers (the `server` extra); the router itself needs none
    result = _cli(tmp_path, "aiohttp", "demo", "--port", str(closed_port()))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "aiohttp" in result.stderr and "pip install 'edge-router[server]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("missing", ["uvloop", "uvicorn"])
def test_serve_without_uvloop_or_uvicorn_serves(tmp_path: Path, missing: str) -> None:
    port = closed_port()
    script = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "from edge_router.cli import main\n"
        f"sys.exit(main(['serve', '--port', '{port}']))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=10)[0].decode()
    assert process.returncode == 0
    assert "Traceback" not in output
    if missing == "uvloop":
        assert "uvloop is not installed" in output
