"""Every seed's routing, black-box: failover, pools, header routing, geo, Lambda targets.

Requests go through the Lambda handler (one process, one loop, as on Lambda) to real loopback
backends; body replay with a streamed body is also checked under the local server.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from support import Backend, Reply, RouterServer, closed_port, function_url_event, response_body, write_config
from test_lambda_upstream import fake_lambda, lambda_server  # noqa: F401 - fixtures

FAIL_500 = Reply(status=500, body=b'{"down":true}')


def handler_for(tmp_path: Path, lambda_adapter: Any, document: dict[str, Any], **env: str) -> Any:
    return lambda_adapter(write_config(tmp_path / "c.json", document), **env)


def call(handler: Any, method: str = "GET", path: str = "/api/x", **options: Any) -> dict[str, Any]:
    response: dict[str, Any] = handler(function_url_event(method, path, **options), None)
    return response


def failover(*urls: str, **route: Any) -> dict[str, Any]:
    return {"routes": [{"prefix": "/api", "targets": list(urls), "strategy": "failover", **route}]}


@pytest.mark.parametrize(
    ("first", "falls_back"),
    [
        (FAIL_500, True),
        (Reply(status=404), True),
        (Reply(status=503), True),
        (Reply(status=401), False),
        (Reply(status=403), False),
        (Reply(status=400), False),
        (Reply(status=200), False),
    ],
)
def test_failover_by_status(tmp_path: Path, lambda_adapter: Any, first: Reply, falls_back: bool) -> None:
    with Backend(lambda _: first) as one, Backend() as two:
        response = call(handler_for(tmp_path, lambda_adapter, failover(one.url, two.url)))
        assert response["headers"]["x-backend-source"] == (two.url if falls_back else one.url)
        assert response["statusCode"] == (200 if falls_back else first.status)
        assert one.last.header("x-no-fallback") == "1"  # sent by a failover route
        assert len(two.seen) == (1 if falls_back else 0)


def test_failover_on_connection_refused_and_timeout(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend(lambda _: Reply(delay=1.0)) as slow, Backend() as good:
        document = failover(f"http://127.0.0.1:{closed_port()}", slow.url, good.url, timeout_ms=150)
        response = call(handler_for(tmp_path, lambda_adapter, document))
        assert response["statusCode"] == 200
        assert response["headers"]["x-backend-source"] == good.url


def test_every_candidate_failed_is_502_with_attempts(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend(lambda _: FAIL_500) as one, Backend(lambda _: Reply(status=404)) as two:
        refused = f"http://127.0.0.1:{closed_port()}"
        response = call(handler_for(tmp_path, lambda_adapter, failover(one.url, refused, two.url)))
    body = json.loads(response["body"])
    assert response["statusCode"] == 502
    assert body["error"] == "Bad Gateway"
    assert body["attempts"] == [
        {"backend": one.url, "status": 500},
        {"backend": refused, "error": "connect"},
        {"backend": two.url, "status": 404},
    ]


def test_post_body_is_replayed_intact(tmp_path: Path, lambda_adapter: Any) -> None:
    payload = bytes(range(256)) * 64
    with Backend(lambda _: FAIL_500) as one, Backend() as two:
        document = failover(one.url, two.url, retry_non_idempotent=True)
        response = call(handler_for(tmp_path, lambda_adapter, document), "POST", body=payload)
        assert response["statusCode"] == 200
        assert one.last.body == payload and two.last.body == payload


def test_post_is_not_resent_on_status_unless_the_route_allows_it(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend(lambda _: FAIL_500) as one, Backend() as two:
        response = call(handler_for(tmp_path, lambda_adapter, failover(one.url, two.url)), "POST", body="{}")
        assert response["statusCode"] == 500  # the native format's default: nginx/Traefik practice
        assert two.seen == []


def test_post_falls_back_on_connection_refused_even_without_retry(
    tmp_path: Path, lambda_adapter: Any
) -> None:
    with Backend() as two:
        document = failover(f"http://127.0.0.1:{closed_port()}", two.url)
        response = call(handler_for(tmp_path, lambda_adapter, document), "POST", body="{}")
        assert response["statusCode"] == 200  # nothing was delivered, so nothing can run twice


def test_incoming_no_fallback_limits_to_first_candidate(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend(lambda _: FAIL_500) as one, Backend() as two:
        handler = handler_for(tmp_path, lambda_adapter, failover(one.url, two.url))
        response = call(handler, headers={"x-no-fallback": "1"})
        assert response["statusCode"] == 500  # handled like a single-target route
        assert two.seen == []


def test_round_robin_advances_on_every_request(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as a, Backend() as b, Backend() as c:
        document = {
            "routes": [{"prefix": "/api", "targets": [a.url, b.url, c.url], "strategy": "round_robin"}]
        }
        handler = handler_for(tmp_path, lambda_adapter, document)
        sources = [call(handler)["headers"]["x-backend-source"] for _ in range(30)]
    assert Counter(sources) == {a.url: 10, b.url: 10, c.url: 10}
    assert len({tuple(sources[i : i + 3]) for i in range(0, 30, 3)}) == 1  # a fixed rotation


def test_round_robin_moves_on_when_a_target_fails(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend(lambda _: FAIL_500) as bad, Backend() as good:
        document = {"routes": [{"prefix": "/api", "targets": [bad.url, good.url], "strategy": "round_robin"}]}
        handler = handler_for(tmp_path, lambda_adapter, document)
        statuses = [call(handler)["statusCode"] for _ in range(6)]
    assert statuses == [200] * 6
    assert len(good.seen) == 6


def test_weighted_proportions_and_drained_targets(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as a, Backend() as b, Backend() as c, Backend() as d:
        targets = [
            {"url": a.url, "weight": 5},
            {"url": b.url, "weight": 3},
            {"url": c.url, "weight": 2},
            {"url": d.url, "weight": 0},
        ]
        document = {"routes": [{"prefix": "/api", "targets": targets, "strategy": "weighted"}]}
        handler = handler_for(tmp_path, lambda_adapter, document)
        picks = Counter(call(handler)["headers"]["x-backend-source"] for _ in range(1000))
    assert picks == {a.url: 500, b.url: 300, c.url: 200}
    assert d.seen == []


def test_disabled_target_gets_no_traffic(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as a, Backend() as b:
        targets = [{"url": a.url, "enabled": False}, b.url]
        handler = handler_for(tmp_path, lambda_adapter, {"routes": [{"prefix": "/api", "targets": targets}]})
        for _ in range(5):
            assert call(handler)["headers"]["x-backend-source"] == b.url
    assert a.seen == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"cloudfront-viewer-country": "DE"}, "de"),
        ({"cloudfront-viewer-country": "FR"}, "eu"),
        ({"cf-ipcountry": "JP"}, "default"),
        ({"cloudfront-viewer-country": "XX", "cf-ipcountry": "AT"}, "eu"),
        ({"cloudfront-viewer-country": "AF"}, "default"),  # Afghanistan, not the AF (Africa) continent
        ({}, "default"),
    ],
)
def test_geo_routing(tmp_path: Path, lambda_adapter: Any, headers: dict[str, str], expected: str) -> None:
    with Backend() as de, Backend() as eu, Backend() as africa, Backend() as default:
        names = {de.url: "de", eu.url: "eu", africa.url: "africa", default.url: "default"}
        route = {
            "prefix": "/api",
            "target": default.url,
            "geo": {"countries": {"DE": de.url}, "continents": {"EU": eu.url, "AF": africa.url}},
        }
        handler = handler_for(tmp_path, lambda_adapter, {"routes": [route]})
        assert names[call(handler, headers=headers)["headers"]["x-backend-source"]] == expected


def test_header_routing_without_config(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as sqlite, Backend() as rails:
        env = {
            "ENVIRONMENT": "local",
            "BACKEND_BUN_SQLITE_URL": sqlite.url,
            "BACKEND_RUBY_RAILS_URL": rails.url,
        }
        handler = lambda_adapter(None, **env)
        assert call(handler, path="/todos")["headers"]["x-backend-source"] == "bun-sqlite"  # DEFAULT_BACKEND
        chosen = call(handler, path="/todos", headers={"x-backend": "ruby-rails"})
        assert chosen["headers"]["x-backend-source"] == "ruby-rails"
        assert rails.last.target == "/todos"
        unknown = call(handler, path="/todos", headers={"x-backend": "http://evil.example"})
        body = json.loads(unknown["body"])
        assert unknown["statusCode"] == 400
        assert body["error"] == "Invalid Backend"
        assert body["valid_backends"] == ["bun-sqlite", "ruby-rails"]


def test_header_routing_location_picks_the_registry(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as local, Backend() as cloud:
        document = {
            "backends": {"cf-d1": {"url": cloud.url, "name": "Cloudflare D1"}},
            "routes": [{"prefix": "/", "select_by_header": "x-backend"}],
        }
        handler = handler_for(tmp_path, lambda_adapter, document, BACKEND_CF_D1_URL=local.url)
        assert call(handler)["headers"]["x-backend-source"] == "cf-d1"  # ENVIRONMENT defaults to cloud
        assert cloud.seen and not local.seen
        call(handler, headers={"x-backend-location": "local", "x-backend": "cf-d1"})
        assert len(local.seen) == 1 and len(cloud.seen) == 1


def test_priority_format_seed_loads_and_falls_back(
    tmp_path: Path, lambda_adapter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Backend(lambda _: FAIL_500) as local, Backend() as worker:
        document = {
            "global_priority": "2",
            "routes": {"task": {"priority": "213"}, "watchparty": {"priority": "1", "cache": True}},
            "providers": {"1": "${LOCAL_BASE}", "2": "${WORKER_BASE}", "3": "${LAMBDA_BASE}"},
        }
        monkeypatch.setenv("LOCAL_BASE", local.url)
        monkeypatch.setenv("WORKER_BASE", worker.url)
        monkeypatch.setenv("LAMBDA_BASE", "")  # empty: provider 3 is skipped with a warning
        handler = handler_for(tmp_path, lambda_adapter, document)
        response = call(handler, "POST", "/task/api/items", query="x=1", body='{"a":1}')
        assert response["headers"]["x-backend-source"] == worker.url  # 2 first, per "213"
        assert worker.last.target == "/task/api/items?x=1"  # the full path is forwarded
        watch = call(handler, "POST", "/watchparty/api/x", body="{}")
        assert watch["statusCode"] == 500  # only provider 1: a single attempt is returned as is
        other = call(handler, "GET", "/other/x")
        assert other["headers"]["x-backend-source"] == worker.url  # global_priority


def test_lambda_target(tmp_path: Path, lambda_adapter: Any, fake_lambda: Any) -> None:  # noqa: F811
    def app(event: dict[str, Any]) -> dict[str, Any]:
        return {"statusCode": 201, "headers": {"content-type": "text/plain"}, "body": event["rawPath"]}

    fake_lambda.functions["orders-fn"] = app
    document = {"routes": [{"prefix": "/orders", "target": "lambda:orders-fn"}]}
    response = call(handler_for(tmp_path, lambda_adapter, document), path="/orders/a%2Fb")
    assert response["statusCode"] == 201
    assert response_body(response) == b"/a%2Fb"
    assert response["headers"]["x-backend-source"] == "lambda:orders-fn"


def test_streamed_body_over_replay_limit_is_sent_once_without_fallback(tmp_path: Path) -> None:
    with Backend(lambda _: FAIL_500) as one, Backend() as two:
        document = failover(one.url, two.url, retry_non_idempotent=True, replay_limit_bytes=1000)
        with RouterServer(write_config(tmp_path / "c.json", document)) as router, router.client() as client:
            big = client.post("/api/up", content=iter([b"x" * 800, b"y" * 800]))
            small = client.post("/api/up", content=iter([b"x" * 100, b"y" * 100]))
    assert big.status_code == 500 and len(one.seen[0].body) == 1600  # sent once, no fallback after
    assert small.status_code == 200 and two.last.body == b"x" * 100 + b"y" * 100  # replayed


def test_streamed_body_read_by_a_failed_lambda_target_is_not_sent_again(
    tmp_path: Path,
    fake_lambda: Any,  # noqa: F811
) -> None:
    from test_lambda_upstream import AwsError

    def throttled(_: dict[str, Any]) -> dict[str, Any]:
        raise AwsError(429, "TooManyRequestsException", "Rate exceeded")

    fake_lambda.functions["busy-fn"] = throttled
    with Backend() as second:
        document = failover("lambda:busy-fn", second.url, replay_limit_bytes=100)
        with RouterServer(write_config(tmp_path / "c.json", document)) as router, router.client() as client:
            response = client.post("/api/up", content=iter([b"x" * 300, b"y" * 300]))
    # The Invoke read the one-shot body; a throttle is "nothing delivered", but the body is gone:
    # trying the next target would send it an empty or truncated body.
    assert fake_lambda.count("busy-fn") == 1
    assert second.seen == []
    assert response.status_code == 503
