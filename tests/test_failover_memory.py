"""Failover that remembers (issue 8), black-box in server mode against real loopback backends that
hang, fail, answer 404 or turn unhealthy on purpose: circuit breakers, active health checks,
`/backends`, the admin circuit endpoints, the retry budget."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from support import Backend, RawBackend, Reply, RouterServer, read_head, wait_until, write_config

ADMIN = {"X-Admin-Key": "k"}


class Switch:
    """A backend that hangs (accepts, never answers) until told to answer."""

    def __init__(self) -> None:
        self.healthy = threading.Event()
        self.requests = 0

    def __call__(self, conn: socket.socket) -> None:
        while head := read_head(conn):
            self.requests += 1
            if not self.healthy.is_set():
                conn.settimeout(5)
                try:
                    while conn.recv(65536):  # until the router gives up and closes
                        pass
                except OSError:
                    pass
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nrecovered")
            if b"connection: close" in head.lower():
                return


@contextmanager
def router(tmp_path: Path, document: dict[str, Any]) -> Iterator[tuple[RouterServer, httpx.Client]]:
    with (
        RouterServer(write_config(tmp_path / "config.json", document), env={"ADMIN_KEY": "k"}) as server,
        server.client() as client,
    ):
        yield server, client


def circuit(client: httpx.Client, backend: str) -> dict[str, Any]:
    answer = client.get("/admin/circuit-breaker-status", params={"backend": backend}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["circuits"][0])


def latency_ms(client: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.get(path)
    return (time.perf_counter() - started) * 1000, response


def test_a_hanging_provider_stops_costing_a_timeout_once_its_circuit_opens(tmp_path: Path) -> None:
    hang = Switch()
    with RawBackend(hang) as stuck, Backend() as good:
        document = {
            "global_priority": "12",
            "routes": {"direct": {"priority": "2"}},  # a healthy single-backend route, to compare with
            "providers": {"1": stuck.url, "2": good.url},
            "timeout_ms": 300,
            "circuit_breaker": {"failureThreshold": 5, "timeout": 1500},
        }
        with router(tmp_path, document) as (_, client):
            slow = [latency_ms(client, "/app/x") for _ in range(5)]
            assert all(ms >= 300 for ms, _ in slow)  # each waited out provider 1's timeout ...
            assert all(r.headers["x-backend-source"] == good.url for _, r in slow)  # ... then failed over
            state = circuit(client, stuck.url)
            assert state["state"] == "OPEN" and state["failures"] == 5 and state["next_attempt"]

            opened, direct = [], []
            for _ in range(20):  # interleaved, so the machine's load weighs on both alike
                opened.append(latency_ms(client, "/app/x"))
                direct.append(latency_ms(client, "/direct/x"))
            assert all(r.status_code == 200 and r.headers["x-backend-source"] == good.url for _, r in opened)
            assert hang.requests == 5  # the open circuit was never contacted again
            assert (
                abs(statistics.median(ms for ms, _ in opened) - statistics.median(ms for ms, _ in direct))
                < 10
            )

            hang.healthy.set()  # provider 1 recovers; after the open timeout it is probed again
            time.sleep(1.6)
            answers = [client.get("/app/x") for _ in range(3)]
            assert [a.headers["x-backend-source"] for a in answers] == [stuck.url] * 3
            assert circuit(client, stuck.url)["state"] == "CLOSED"


def test_404s_and_client_aborts_never_open_a_circuit(tmp_path: Path) -> None:
    missing = Reply(status=404, body=b'{"error":"nope"}')
    with Backend(lambda seen: missing) as absent, Backend() as good:
        document = {
            "routes": [
                {
                    "prefix": "/pool",
                    "targets": [absent.url, good.url],
                    "circuitBreaker": {"failureThreshold": 2, "timeout": 60000},
                },
                {"prefix": "/upload", "target": good.url, "circuitBreaker": {"failureThreshold": 2}},
            ]
        }
        with router(tmp_path, document) as (server, client):
            for _ in range(10):
                assert client.get("/pool/x").headers["x-backend-source"] == good.url  # 404: next target
            host, port = server.url.removeprefix("http://").split(":")
            for _ in range(10):  # a chunked upload the client abandons half-way
                with socket.create_connection((host, int(port))) as sock:
                    head = b"POST /upload/x HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n"
                    sock.sendall(head + b"3\r\nabc\r\n")
                    time.sleep(0.02)
            time.sleep(0.3)
            assert circuit(client, absent.url)["state"] == "CLOSED"
            assert circuit(client, absent.url)["total_failures"] == 0
            assert circuit(client, good.url)["state"] == "CLOSED"
            assert circuit(client, good.url)["total_failures"] == 0


def test_an_open_single_backend_answers_503_with_retry_after_without_being_contacted(tmp_path: Path) -> None:
    failing = Reply(status=500, body=b"boom")
    with Backend(lambda seen: failing) as broken:
        document = {
            "routes": [{"prefix": "/api", "target": broken.url, "circuitBreaker": {"failureThreshold": 3}}]
        }
        with router(tmp_path, document) as (_, client):
            assert [client.get("/api/x").status_code for _ in range(3)] == [500, 500, 500]
            refused = client.get("/api/x")
            assert refused.status_code == 503
            assert refused.json()["error"] == "Backend Unavailable"
            assert refused.json()["backend"] == broken.url
            assert 55 <= int(refused.headers["retry-after"]) <= 60  # the real time left, not a constant
            assert refused.headers["access-control-allow-origin"] == "*"
            assert len(broken.seen) == 3
            reset = client.post("/admin/circuit-breaker-reset", params={"backend": broken.url}, headers=ADMIN)
            assert reset.status_code == 200 and reset.json()["state"] == "CLOSED"
            assert client.get("/api/x").status_code == 500  # contacted again
            unknown = client.post("/admin/circuit-breaker-reset", params={"backend": "nope"}, headers=ADMIN)
            assert unknown.status_code == 404


class Health:
    """A backend whose /health answer can be switched; every other path answers 200."""

    def __init__(self) -> None:
        self.status = 200

    def __call__(self, seen: Any) -> Reply:
        if seen.target.startswith("/health"):
            return Reply(status=self.status, body=b"{}")
        return Reply(body=b'{"ok":true}')


def test_health_checks_mark_a_backend_unhealthy_and_pools_skip_it_then_fail_open(tmp_path: Path) -> None:
    first, second = Health(), Health()
    with Backend(first) as one, Backend(second) as two:
        document = {
            "backends": {"one": {"url": one.url}, "two": {"url": two.url}},
            "health_checks": {"interval_s": 0.2, "healthy_threshold": 1, "unhealthy_threshold": 2},
            "routes": [{"prefix": "/pool", "targets": ["one", "two"]}, {"prefix": "/one", "target": "one"}],
        }
        with router(tmp_path, document) as (_, client):

            def health(backend: str) -> str:
                listed = {b["id"]: b for b in client.get("/backends").json()["backends"]}
                return str(listed[backend]["health"])

            wait_until(lambda: health("one") == "healthy" and health("two") == "healthy", 5)
            first.status = 503
            started = time.monotonic()
            wait_until(lambda: health("one") == "unhealthy", 5)
            assert time.monotonic() - started < 0.2 * 2 + 1.5  # interval x threshold, plus slack for a round
            listed = {b["id"]: b for b in client.get("/backends").json()["backends"]}
            assert listed["one"]["reason"] == "status 503" and listed["one"]["last_check"]
            assert listed["one"]["latency_ms"] is not None

            served_before = len([s for s in one.seen if not s.target.startswith("/health")])
            for _ in range(5):
                assert client.get("/pool/x").headers["x-backend-source"] == "two"
            assert len([s for s in one.seen if not s.target.startswith("/health")]) == served_before
            refused = client.get("/one/x")  # chosen explicitly: 503, not contacted
            assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1

            second.status = 503
            wait_until(lambda: health("two") == "unhealthy", 5)
            assert client.get("/pool/x").headers["x-backend-source"] == "one"  # every one skipped: fail open


def test_backends_lists_every_reachable_backend_once(tmp_path: Path) -> None:
    document = {
        "backends": {"api-1": {"url": "http://127.0.0.1:9/v1", "name": "API one"}},
        "routes": [
            {"prefix": "/a", "targets": ["api-1", "http://127.0.0.2:9", "lambda:orders"]},
            {"prefix": "/b", "target": "http://127.0.0.2:9/other"},
        ],
    }
    source = write_config(tmp_path / "config.json", document)
    with (
        RouterServer(source, env={"BACKEND_LOCAL_ONE_URL": "http://127.0.0.3:9"}) as server,
        server.client() as client,
    ):
        listed = client.get("/backends").json()["backends"]
    assert [(b["id"], b["listed_by"]) for b in listed] == [
        ("api-1", "config"),
        ("http://127.0.0.2:9", "route"),
        ("lambda:orders", "route"),
        ("local-one", "env"),
    ]
    assert listed[0]["name"] == "API one"
    assert all(b["health"] == "unknown" and b["circuit"] == "CLOSED" for b in listed)
    assert set(listed[0]) >= {"id", "name", "url", "health", "last_check", "latency_ms", "reason", "circuit"}
