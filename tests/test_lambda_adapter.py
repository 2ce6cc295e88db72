"""The Lambda handler end to end: function URL events (straight into the pipeline; control paths
through Mangum) to real loopback backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support import Backend, Reply, function_url_event, response_body, write_config


def routes(tmp_path: Path, target: str, **route: Any) -> str:
    return write_config(tmp_path / "config.json", {"routes": [{"prefix": "/api", "target": target, **route}]})


def test_get_with_query_and_escapes_reaches_backend_byte_for_byte(
    tmp_path: Path, lambda_adapter: Any
) -> None:
    with Backend() as backend:
        handler = lambda_adapter(routes(tmp_path, backend.url + "/v1"))
        event = function_url_event("GET", "/api/a%2Fb/c%20d", query="x=1&y=%2F&x=2&empty=")
        response = handler(event, None)
        assert response["statusCode"] == 200
        assert backend.last.target == "/v1/a%2Fb/c%20d?x=1&y=%2F&x=2&empty="
        assert response["headers"]["x-backend-source"] == backend.url
        assert response["headers"]["x-request-id"] == "req-1234"


def test_twenty_warm_invocations_share_one_upstream_connection(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as backend:
        handler = lambda_adapter(routes(tmp_path, backend.url))
        for i in range(20):
            response = handler(function_url_event("GET", f"/api/{i}", request_id=f"r{i}"), None)
            assert response["statusCode"] == 200
        assert len(backend.seen) == 20
        assert backend.connections == 1


def test_binary_post_and_binary_answer_are_byte_exact(tmp_path: Path, lambda_adapter: Any) -> None:
    payload = bytes(range(256)) * 16
    with Backend(
        lambda seen: Reply(headers=[("Content-Type", "application/octet-stream")], body=seen.body[::-1])
    ) as b:
        handler = lambda_adapter(routes(tmp_path, b.url))
        event = function_url_event("POST", "/api/upload", body=payload, headers={"content-type": "image/png"})
        response = handler(event, None)
        assert b.last.body == payload
        assert response["isBase64Encoded"] is True
        assert response_body(response) == payload[::-1]


def test_problem_json_is_returned_as_text(tmp_path: Path, lambda_adapter: Any) -> None:
    problem = b'{"type":"about:blank","title":"nope"}'
    with Backend(
        lambda _: Reply(status=422, headers=[("Content-Type", "application/problem+json")], body=problem)
    ) as b:
        response = lambda_adapter(routes(tmp_path, b.url))(function_url_event("GET", "/api"), None)
        assert response["statusCode"] == 422
        assert response["isBase64Encoded"] is False
        assert response["body"].encode() == problem


def test_cookies_both_ways(tmp_path: Path, lambda_adapter: Any) -> None:
    def reply(_: Any) -> Reply:
        return Reply(
            headers=[
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; HttpOnly"),
                ("Content-Type", "text/plain"),
            ],
            body=b"ok",
        )

    with Backend(reply) as backend:
        handler = lambda_adapter(routes(tmp_path, backend.url))
        response = handler(function_url_event("GET", "/api/me", cookies=["session=abc", "theme=dark"]), None)
        assert backend.last.header("cookie") == "session=abc; theme=dark"
        assert response["cookies"] == ["a=1; Path=/", "b=2; HttpOnly"]


def test_forwarded_for_ends_with_source_ip_once(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as backend:
        handler = lambda_adapter(routes(tmp_path, backend.url))
        # The function URL has already appended the caller (sourceIp) to what the client sent.
        event = function_url_event("GET", "/api", headers={"x-forwarded-for": "10.9.9.9, 203.0.113.7"})
        handler(event, None)
        assert backend.last.header("x-forwarded-for") == "10.9.9.9, 203.0.113.7"
        assert backend.last.header("x-forwarded-proto") == "https"
        assert backend.last.header("x-forwarded-host") == "abc123.lambda-url.us-east-1.on.aws"
        assert backend.last.header("host") == f"127.0.0.1:{backend.port}"


def test_too_large_answer_becomes_clear_502(tmp_path: Path, lambda_adapter: Any) -> None:
    big = b"x" * (7 * 1024 * 1024)
    with Backend(lambda _: Reply(headers=[("Content-Type", "text/plain")], body=big)) as backend:
        event = function_url_event("GET", "/api/big", headers={"x-request-id": "client-7"})
        response = lambda_adapter(routes(tmp_path, backend.url))(event, None)
        assert response["statusCode"] == 502
        body = json.loads(response["body"])
        assert body["error"] == "Bad Gateway"
        assert "6 MB" in body["message"]
        # under the request id the router answered with (the client's), in the body and the header
        assert body["request_id"] == response["headers"]["x-request-id"] == "client-7"


def test_scheduled_event_is_answered_without_crashing(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as backend:
        handler = lambda_adapter(routes(tmp_path, backend.url))
        event = {
            "version": "0",
            "id": "1",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "detail": {},
        }
        answer = handler(event, None)
        assert answer["handled"] is True and answer["config_loaded"] is True
        # and the instance still serves HTTP afterwards on the same loop
        assert handler(function_url_event("GET", "/api"), None)["statusCode"] == 200


def test_unknown_event_is_refused_politely(tmp_path: Path, lambda_adapter: Any) -> None:
    handler = lambda_adapter(routes(tmp_path, "http://127.0.0.1:9"))
    answer = handler({"Records": [{"eventSource": "aws:sqs"}]}, None)
    assert answer["handled"] is False


def test_raw_non_ascii_path_and_query_are_escaped_once(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as backend:
        handler = lambda_adapter(routes(tmp_path, backend.url))
        response = handler(function_url_event("GET", "/api/café", query="q=café&s=a b"), None)
        assert response["statusCode"] == 200
        assert backend.last.target == "/caf%C3%A9?q=caf%C3%A9&s=a%20b"


def test_odd_forwarded_port_does_not_break_the_request(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as backend:
        handler = lambda_adapter(routes(tmp_path, backend.url))
        response = handler(function_url_event("GET", "/api", headers={"x-forwarded-port": "443, 80"}), None)
        assert response["statusCode"] == 200


def test_a_websocket_upgrade_is_501_on_lambda_and_never_reaches_the_backend(
    tmp_path: Path, lambda_adapter: Any
) -> None:
    with Backend() as backend:
        handler = lambda_adapter(routes(tmp_path, backend.url))
        upgrade = {"connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13"}
        response = handler(function_url_event("GET", "/api/chat", headers=upgrade), None)
        assert response["statusCode"] == 501
        assert response["headers"]["content-type"] == "application/json"
        body = json.loads(response["body"])
        assert body["error"] == "Not Implemented"
        assert "function URLs cannot upgrade" in body["message"]
        assert backend.seen == []
        # a plain request to the same route still goes through
        assert handler(function_url_event("GET", "/api/chat"), None)["statusCode"] == 200
