"""The Lambda handler never raises (issue 6, item 11).

A function URL only ever sends well-formed events, but the function can also be invoked directly
(`aws lambda invoke`, a test console, another service) with anything. Every event gets a dict back:
a malformed function URL event a JSON 400 naming the bad field, anything unrecognisable
`{"handled": false, ...}`, and an error inside the router a JSON 500 without a stack trace.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import Backend, function_url_event, write_config

Event = dict[str, Any]


def valid_event() -> Event:
    return function_url_event("POST", "/api/items", query="a=1", body="hello", cookies=["session=abc"])


def put(path: str, value: Any) -> Callable[[Event], None]:
    """Set the field at a dotted path (`requestContext.http.method`) to `value`."""
    *parents, last = path.split(".")

    def corrupt(event: Event) -> None:
        target = event
        for key in parents:
            target = target[key]
        target[last] = value

    return corrupt


def without_raw_path(then: Callable[[Event], None]) -> Callable[[Event], None]:
    def corrupt(event: Event) -> None:
        del event["rawPath"]
        then(event)

    return corrupt


def base64_body(body: str) -> Callable[[Event], None]:
    def corrupt(event: Event) -> None:
        event["isBase64Encoded"] = True
        event["body"] = body

    return corrupt


LONE_SURROGATE = "\ud800"

# (corruption of a valid event, the field the 400's message must name)
MALFORMED = [
    pytest.param(put("requestContext", "oops"), "requestContext", id="requestContext-not-an-object"),
    pytest.param(put("requestContext", None), "requestContext", id="requestContext-null"),
    pytest.param(put("requestContext.http", ["GET"]), "requestContext.http", id="http-not-an-object"),
    pytest.param(
        put("requestContext.http.method", 7), "requestContext.http.method", id="method-not-a-string"
    ),
    pytest.param(
        put("requestContext.http.method", "GE T"), "requestContext.http.method", id="method-not-a-token"
    ),
    pytest.param(
        put("requestContext.http.sourceIp", 1), "requestContext.http.sourceIp", id="sourceIp-not-a-string"
    ),
    pytest.param(
        put("requestContext.requestId", {"a": 1}), "requestContext.requestId", id="requestId-not-a-string"
    ),
    pytest.param(put("headers", ["host: x"]), "headers", id="headers-not-an-object"),
    pytest.param(put("headers.x-count", 5), "headers", id="header-value-not-a-string"),
    pytest.param(put("headers.accept", None), "headers", id="header-value-null"),
    pytest.param(put("headers.x-name", "a\r\nx-injected: 1"), "headers", id="header-value-with-newline"),
    pytest.param(put("headers.x name", "v"), "headers", id="header-name-with-a-space"),
    pytest.param(put("headers.", "v"), "headers", id="header-name-empty"),
    pytest.param(put("headers.x-tab", "a\tb\x01"), "headers", id="header-value-with-a-control-character"),
    pytest.param(put("rawPath", ["/api"]), "rawPath", id="rawPath-not-a-string"),
    pytest.param(put("rawPath", "api/items"), "rawPath", id="rawPath-not-a-path"),
    pytest.param(
        without_raw_path(put("requestContext.http.path", 3)),
        "requestContext.http.path",
        id="http-path-not-a-string",
    ),
    pytest.param(put("rawQueryString", {"a": "1"}), "rawQueryString", id="rawQueryString-not-a-string"),
    pytest.param(put("body", {"json": True}), "body", id="body-not-a-string"),
    pytest.param(put("cookies", "session=abc"), "cookies", id="cookies-not-a-list"),
    pytest.param(put("cookies", ["a=1", 2]), "cookies", id="cookie-not-a-string"),
    pytest.param(put("isBase64Encoded", "false"), "isBase64Encoded", id="isBase64Encoded-not-a-bool"),
    pytest.param(base64_body("!!not base64!!"), "body", id="invalid-base64"),
    pytest.param(base64_body("abc"), "body", id="base64-bad-padding"),
    pytest.param(
        put("headers.x-name", "caf" + LONE_SURROGATE), "headers", id="lone-surrogate-in-header-value"
    ),
    pytest.param(put("headers.x-" + LONE_SURROGATE, "v"), "headers", id="lone-surrogate-in-header-name"),
    pytest.param(put("rawPath", "/api/" + LONE_SURROGATE), "rawPath", id="lone-surrogate-in-rawPath"),
    pytest.param(
        put("rawQueryString", "q=" + LONE_SURROGATE), "rawQueryString", id="lone-surrogate-in-query"
    ),
    pytest.param(put("body", "x" + LONE_SURROGATE), "body", id="lone-surrogate-in-body"),
    pytest.param(put("cookies", ["a=" + LONE_SURROGATE]), "cookies", id="lone-surrogate-in-cookie"),
    pytest.param(
        put("requestContext.requestId", LONE_SURROGATE),
        "requestContext.requestId",
        id="lone-surrogate-in-requestId",
    ),
]


@pytest.fixture
def handler(tmp_path: Path, lambda_adapter: Any) -> Any:
    # Routed to a closed port: a malformed event must be refused before anything is forwarded.
    source = write_config(
        tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": "http://127.0.0.1:9"}]}
    )
    return lambda_adapter(source)


@pytest.mark.parametrize(("corrupt", "field"), MALFORMED)
def test_malformed_function_url_event_gets_a_json_400_naming_the_field(
    handler: Any, corrupt: Callable[[Event], None], field: str
) -> None:
    event = copy.deepcopy(valid_event())
    corrupt(event)
    response = handler(event, None)
    assert response["statusCode"] == 400
    assert response["headers"]["content-type"] == "application/json"
    body = json.loads(response["body"])
    assert body["error"] == "Bad Request"
    assert body["message"].startswith(field + " ") or body["message"].startswith(field + ":"), body["message"]
    assert isinstance(body["request_id"], str) and body["request_id"]
    assert response["headers"]["x-request-id"] == body["request_id"]
    assert response["headers"]["access-control-allow-origin"] == "*"  # errors carry CORS too
    json.dumps(response, ensure_ascii=True)  # Lambda must be able to serialise the answer


def test_the_400_keeps_the_function_url_request_id_when_it_is_valid(handler: Any) -> None:
    event = valid_event()
    event["rawQueryString"] = 5
    body = json.loads(handler(event, None)["body"])
    assert body["request_id"] == "req-1234"


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(None, id="none"),
        pytest.param([], id="list"),
        pytest.param("GET /", id="string"),
        pytest.param(42, id="int"),
        pytest.param({}, id="empty"),
        pytest.param({"version": "1.0"}, id="v1"),
        pytest.param({"version": "2.0"}, id="v2-bare"),
        pytest.param({"version": "2.0", "requestContext": "x"}, id="v2-no-rawPath"),
        pytest.param({"version": "2.0", "requestContext": None}, id="v2-null-context"),
        pytest.param({"version": "2.0", "requestContext": ["http"]}, id="v2-list-context"),
        pytest.param({"detail-type": "Something Else"}, id="other-event"),
        pytest.param({1: "non-string key", "b": 2}, id="mixed-keys"),
    ],
)
def test_unrecognisable_events_are_refused_politely(handler: Any, event: Any) -> None:
    answer = handler(event, None)
    assert answer["handled"] is False
    assert answer["error"] == "unsupported event"


def test_an_error_inside_the_router_is_a_json_500_without_a_trace(handler: Any) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom: internal detail")

    handler.router.proxy.handle = broken
    response = handler(valid_event(), None)
    assert response["statusCode"] == 500
    assert response["headers"]["content-type"] == "application/json"
    body = json.loads(response["body"])
    assert body["error"] == "Internal Server Error"
    assert body["request_id"] == "req-1234"
    assert "boom" not in response["body"]
    assert "Traceback" not in response["body"]


def test_an_error_after_the_answer_started_is_a_json_500_too(handler: Any) -> None:
    async def breaks_mid_answer(scope: Any, receive: Any, send: Any, **kwargs: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")

    handler.router.proxy.handle = breaks_mid_answer
    response = handler(valid_event(), None)
    assert response["statusCode"] == 500
    assert json.loads(response["body"])["error"] == "Internal Server Error"
    assert "partial" not in response["body"]


@pytest.mark.parametrize("path", ["/api/items", "/health"], ids=["data-path", "control-path-via-mangum"])
def test_an_error_outside_the_router_is_a_json_500_too(handler: Any, path: str) -> None:
    def broken(*args: Any) -> Any:
        raise KeyError("requestContext")

    handler._proxied = broken  # the data path's encoding, around the router
    handler._mangum = broken  # Mangum, for control paths
    event = valid_event()
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    response = handler(event, None)
    assert response["statusCode"] == 500
    assert response["headers"]["content-type"] == "application/json"
    assert json.loads(response["body"])["error"] == "Internal Server Error"
    assert "Traceback" not in response["body"]


def test_a_valid_event_still_reaches_the_backend(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as backend:
        source = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        response = lambda_adapter(source)(valid_event(), None)
        assert response["statusCode"] == 200
        assert backend.last.body == b"hello"
        assert backend.last.header("cookie") == "session=abc"
