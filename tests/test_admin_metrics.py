"""`GET /admin/metrics` and `POST /admin/metrics/reset` (CONTRACT section 10), black-box: the router
under `edge-router serve`, real loopback backends (and a dead one), a known mix of answers, exact
figures back.

Control requests (/health, /backends, /admin/...) are never counted: the polls below are control
requests themselves, and the figures they read must not move.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_router.observability.windows import MetricsWindows
from support import Backend, Clock, Reply, RouterServer, Seen, closed_port, wait_until, write_config

ADMIN = "admin-secret-for-metrics"
KEY = {"X-Admin-Key": ADMIN}


def by_path(seen: Seen) -> Reply:
    if seen.target.startswith("/missing"):
        return Reply(status=404, body=b'{"missing":true}')
    if seen.target.startswith("/boom"):
        return Reply(status=500, body=b'{"boom":true}')
    return Reply()


def config(backend: Backend) -> dict[str, Any]:
    limit = {"enabled": True, "requestsPerWindow": 1, "windowSeconds": 3600}
    return {
        "routes": [
            {"prefix": "/api", "target": backend.url},
            {"prefix": "/down", "target": f"http://127.0.0.1:{closed_port()}"},
            {"prefix": "/limited", "target": backend.url, "rateLimit": limit},
        ]
    }


def serve(tmp_path: Path, document: dict[str, Any]) -> RouterServer:
    return RouterServer(write_config(tmp_path / "config.json", document), env={"ADMIN_KEY": ADMIN})


def metrics(client: httpx.Client, window: str = "1m", *, settled: int | None = None) -> dict[str, Any]:
    """The window's figures; with `settled`, once that many requests are counted (a request is
    counted just after its answer is sent, so a poll may otherwise run a hair ahead)."""
    if settled is not None:
        wait_until(lambda: metrics(client, window)["requests"] >= settled)
    response = client.get("/admin/metrics", params={"window": window}, headers=KEY)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def send_the_mix(client: httpx.Client) -> list[int]:
    statuses = [client.get("/api/ok").status_code for _ in range(5)]
    statuses += [client.get("/api/missing").status_code for _ in range(3)]
    statuses += [client.get("/api/boom").status_code]
    statuses += [client.get("/down/x").status_code for _ in range(2)]
    statuses += [client.get("/nowhere").status_code]  # no route: 404, counted under "(none)"
    return statuses


def control_requests(client: httpx.Client) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/backends").status_code == 200
    assert client.get("/admin/metrics").status_code == 401  # no key: refused, and not counted
    assert client.get("/admin/circuit-breaker-status", headers=KEY).status_code == 200


def test_each_answer_of_a_known_mix_is_counted_exactly(tmp_path: Path) -> None:
    with Backend(by_path) as backend, serve(tmp_path, config(backend)) as router, router.client() as client:
        statuses = send_the_mix(client)
        control_requests(client)
        answer = metrics(client, "1m", settled=12)
        control_requests(client)
        again = metrics(client, "1m")
        everything = metrics(client, "all")
        emf = router.logged(path="/api/ok")
    down = statuses[9]
    assert statuses == [200] * 5 + [404] * 3 + [500] + [down] * 2 + [404]
    assert down in (502, 503)
    assert answer["window"] == "1m"
    assert answer["requests"] == 12
    assert answer["by_status"] == {"200": 5, "404": 4, "500": 1, str(down): 2}
    assert answer["by_route"] == {
        "(none)": {"requests": 1, "errors": 0},
        "/api": {"requests": 9, "errors": 1},
        "/down": {"requests": 2, "errors": 2},
    }
    # failed attempts: the backend's 500, and each attempt on the dead backend
    assert answer["upstream_errors"] == 1 + 2
    assert answer["rate_limited"] == 0
    assert answer["cache"] == {"hits": 0, "misses": 0, "hit_rate": 0.0}
    latency = answer["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] < 10_000
    assert again == answer, "control requests were counted"
    assert {**everything, "window": "1m"} == answer
    assert not {"CacheHits", "CacheMisses", "RateLimited"} & set(emf)  # nothing cached, nothing refused


def test_a_rate_limited_request_is_counted(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, config(backend)) as router, router.client() as client:
        assert [client.get("/limited/x").status_code for _ in range(3)] == [200, 429, 429]
        answer = metrics(client, "5m", settled=3)
        emf = router.logged(path="/limited/x", status=429)
    assert answer["rate_limited"] == 2
    assert answer["by_status"] == {"200": 1, "429": 2}
    assert answer["by_route"] == {"/limited": {"requests": 3, "errors": 0}}
    assert answer["upstream_errors"] == 0
    assert emf["RateLimited"] == 1


def test_a_refusal_before_routing_counts_on_a_proxied_path_only(tmp_path: Path) -> None:
    # An IP rule refuses before routing: on /api that is a proxied request (route "(none)"); on a
    # control path it is not, though both still write their request line.
    with Backend() as backend:
        document = {**config(backend), "ip_rules": {"deny": ["127.0.0.2/32"]}}
        with serve(tmp_path, document) as router, router.client() as client:
            transport = httpx.HTTPTransport(local_address="127.0.0.2")
            with httpx.Client(base_url=router.url, transport=transport, timeout=30) as denied:
                assert denied.get("/health").status_code == 403
                assert denied.get("/admin/metrics", headers=KEY).status_code == 403
                assert denied.get("/api/ok").status_code == 403
            client.get("/api/ok")
            answer = metrics(client, "1m", settled=2)
            router.logged(path="/health", status=403)
            logged_admin = router.logged(path="/admin/metrics", status=403)
            again = metrics(client, "1m")
    assert answer["by_status"] == {"200": 1, "403": 1}
    assert answer["by_route"] == {
        "(none)": {"requests": 1, "errors": 0},
        "/api": {"requests": 1, "errors": 0},
    }
    assert logged_admin["route"] == "(none)"
    assert again == answer


def test_cache_hits_and_misses_are_counted_and_a_bypass_is_neither(tmp_path: Path) -> None:
    cache = {"enabled": True, "ttl": 300, "bypassHeader": "X-No-Cache"}
    with Backend() as backend:
        document = {"routes": [{"prefix": "/cached", "target": backend.url, "cache": cache}]}
        with serve(tmp_path, document) as router, router.client() as client:
            verdicts = [client.get("/cached/x").headers.get("x-cache") for _ in range(4)]
            verdicts.append(client.get("/cached/x", headers={"X-No-Cache": "1"}).headers.get("x-cache"))
            answer = metrics(client, "1m", settled=5)
            hit = router.logged(path="/cached/x", CacheHits=1)
            miss = router.logged(path="/cached/x", CacheMisses=1)
    assert verdicts == ["MISS", "HIT", "HIT", "HIT", "BYPASS"]
    assert answer["cache"] == {"hits": 3, "misses": 1, "hit_rate": 0.75}
    assert answer["by_status"] == {"200": 5}
    assert (hit["CacheMisses"], miss["CacheHits"]) == (0, 0)


def test_reset_zeroes_every_window(tmp_path: Path) -> None:
    with Backend(by_path) as backend, serve(tmp_path, config(backend)) as router, router.client() as client:
        send_the_mix(client)
        assert metrics(client, "all", settled=12)["requests"] == 12
        reset = client.post("/admin/metrics/reset", headers=KEY)
        after = {window: metrics(client, window) for window in ("1m", "5m", "1h", "all")}
        client.get("/api/ok")
        one = metrics(client, "all", settled=1)
    assert (reset.status_code, reset.json()) == (200, {"reset": True})
    for window, answer in after.items():
        assert answer["window"] == window
        assert (answer["requests"], answer["by_status"], answer["by_route"]) == (0, {}, {})
        assert (answer["upstream_errors"], answer["rate_limited"]) == (0, 0)
        assert answer["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert (one["requests"], one["by_status"]) == (1, {"200": 1})


def test_the_default_window_is_all(tmp_path: Path) -> None:
    with Backend() as backend, serve(tmp_path, config(backend)) as router, router.client() as client:
        client.get("/api/ok")
        metrics(client, "all", settled=1)
        answer = client.get("/admin/metrics", headers=KEY).json()
    assert (answer["window"], answer["requests"]) == ("all", 1)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/admin/metrics", {}, 401),
        ("GET", "/admin/metrics", {"X-Admin-Key": "wrong"}, 401),
        ("POST", "/admin/metrics/reset", {}, 401),
        ("GET", "/admin/metrics?window=2m", KEY, 400),
        ("GET", "/admin/metrics?window=", KEY, 400),
    ],
)
def test_refusals(tmp_path: Path, method: str, path: str, headers: dict[str, str], status: int) -> None:
    with Backend() as backend, serve(tmp_path, config(backend)) as router, router.client() as client:
        client.get("/api/ok")
        metrics(client, "all", settled=1)
        answer = client.request(method, path, headers=headers)
        still = metrics(client, "all")
    assert answer.status_code == status
    body = answer.json()
    assert set(body) >= {"error", "message", "request_id"} and "detail" not in body
    if status == 400:
        assert body["error"] == "Bad Request" and "expected one of 1m, 5m, 1h, all" in body["message"]
    assert still["requests"] == 1, "a refused reset zeroed the figures, or a control request was counted"


def test_without_an_admin_key_configured_metrics_are_closed(tmp_path: Path) -> None:
    with Backend() as backend:
        source = write_config(tmp_path / "c.json", config(backend))
        with RouterServer(source) as router, router.client() as client:
            assert client.get("/admin/metrics", headers=KEY).status_code == 403
            assert client.post("/admin/metrics/reset", headers=KEY).status_code == 403


def test_the_1m_window_forgets_a_request_61_seconds_old(tmp_path: Path) -> None:
    clock = Clock(1_700_000_000.0)
    with Backend(by_path) as backend, serve(tmp_path, config(backend)) as router:
        router.app.recorder.windows = MetricsWindows(clock=clock)  # the app serves what its recorder feeds
        with router.client() as client:
            client.get("/api/ok")
            metrics(client, "1m", settled=1)
            clock.now += 61
            client.get("/api/missing")
            one_minute = metrics(client, "1m", settled=1)
            five_minutes = metrics(client, "5m", settled=2)
    assert (one_minute["requests"], one_minute["by_status"]) == (1, {"404": 1})
    assert (five_minutes["requests"], five_minutes["by_status"]) == (2, {"200": 1, "404": 1})
