"""`lambda:FUNCTION` targets over the real boto3 wire path.

A loopback server speaks the Lambda Invoke REST API (`POST /2015-03-31/functions/NAME/invocations`)
and runs Python functions registered per test; boto3 reaches it through AWS_ENDPOINT_URL_LAMBDA.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import pytest

from edge_router.aws import clients
from edge_router.aws.function_url import MalformedAnswer, decode_response
from edge_router.exceptions import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from edge_router.upstream.base import Upstream, UpstreamResponse
from edge_router.upstream.lambda_invoke import INVOKE_PAYLOAD_LIMIT, LambdaInvokeUpstream
from support import closed_port, run

T = TypeVar("T")
Function = Callable[[dict[str, Any]], Any]


class AwsError(Exception):
    """Raised by a registered function to make the fake Lambda answer with an API error."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


class DropConnection(Exception):
    """Raised by a registered function to close the connection without answering."""


@dataclass
class Invocation:
    name: str
    query: str
    headers: dict[str, str]
    event: Any


@dataclass
class FakeLambda:
    """The Lambda Invoke API on 127.0.0.1, dispatching to Python functions by name."""

    functions: dict[str, Function] = field(default_factory=dict)
    invocations: list[Invocation] = field(default_factory=list)
    url: str = ""

    def count(self, name: str) -> int:
        return sum(1 for invocation in self.invocations if invocation.name == name)

    @property
    def last_event(self) -> dict[str, Any]:
        assert self.invocations, "no function was invoked"
        event: dict[str, Any] = self.invocations[-1].event
        return event


def _serve(fake: FakeLambda) -> tuple[ThreadingHTTPServer, threading.Thread]:
    prefix, suffix = "/2015-03-31/functions/", "/invocations"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response_only(status)
            self.send_header("Content-Type", "application/json")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_POST(self) -> None:
            target = urlsplit(self.path)
            payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not (target.path.startswith(prefix) and target.path.endswith(suffix)):
                self._answer(
                    404, b'{"message":"unknown operation"}', {"x-amzn-errortype": "UnknownOperation"}
                )
                return
            name = unquote(target.path[len(prefix) : -len(suffix)])
            event = json.loads(payload) if payload else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.invocations.append(Invocation(name, target.query, headers, event))
            function = fake.functions.get(name)
            if function is None:
                body = {"Type": "User", "message": f"Function not found: arn:aws:lambda:::function:{name}"}
                self._answer(
                    404, json.dumps(body).encode(), {"x-amzn-errortype": "ResourceNotFoundException"}
                )
                return
            try:
                result = function(event)
            except DropConnection:
                self.close_connection = True
                return
            except AwsError as exc:
                body = {"Type": "Service", "message": exc.message}
                self._answer(exc.status, json.dumps(body).encode(), {"x-amzn-errortype": exc.code})
                return
            except Exception as exc:
                body = {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": []}
                self._answer(200, json.dumps(body).encode(), {"X-Amz-Function-Error": "Unhandled"})
                return
            self._answer(200, json.dumps(result).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def lambda_server() -> Iterator[FakeLambda]:
    fake = FakeLambda()
    server, thread = _serve(fake)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture
def fake_lambda(lambda_server: FakeLambda, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLambda]:
    """The fake Lambda with no functions yet, and boto3 pointed at it."""
    _aws_env(monkeypatch, lambda_server.url)
    lambda_server.functions.clear()
    lambda_server.invocations.clear()
    yield lambda_server
    clients.clear()


async def _exchange(
    upstream: Upstream,
    method: str,
    url: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | AsyncIterator[bytes] | None = None,
    timeout: float = 5.0,
) -> tuple[UpstreamResponse, bytes]:
    response = await upstream.send(method, url, headers or [], body, timeout)
    try:
        parts = [chunk async for chunk in response.stream()]
    finally:
        response.release()
    return response, b"".join(parts)


def call(
    function: str,
    method: str = "GET",
    url: str = "http://fn.lambda.invalid/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes | AsyncIterator[bytes] | None = None,
    timeout: float = 5.0,
) -> tuple[UpstreamResponse, bytes]:
    upstream = LambdaInvokeUpstream(function)
    try:
        return run(_exchange(upstream, method, url, headers, body, timeout))
    finally:
        run(upstream.aclose())


def header_values(response: UpstreamResponse, name: bytes) -> list[bytes]:
    return [value for key, value in response.raw_headers if key.lower() == name]


def echo(event: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "ok"}


# --- the event the function receives ---------------------------------------------------------


def test_event_carries_method_path_query_headers_cookies_and_request_id(fake_lambda: FakeLambda) -> None:
    fake_lambda.functions["orders"] = echo
    headers = [
        ("Host", "orders.internal"),
        ("X-Custom", "One"),
        ("Accept", "text/html"),
        ("Accept", "application/json"),
        ("Cookie", "session=abc; theme=dark"),
        ("X-Forwarded-For", "198.51.100.1, 203.0.113.9"),
        ("X-Request-Id", "req-42"),
        ("User-Agent", "curl/8"),
        ("Connection", "keep-alive"),
    ]
    url = "http://orders.internal/api/a%2Fb/c%20d?x=1&y=%20z&&flag&q=%2F"
    response, body = call("orders", "GET", url, headers)
    assert (response.status, body) == (200, b"ok")

    event = fake_lambda.last_event
    assert event["version"] == "2.0"
    assert event["rawPath"] == "/api/a%2Fb/c%20d"
    assert event["rawQueryString"] == "x=1&y=%20z&&flag&q=%2F"
    http = event["requestContext"]["http"]
    assert http == {
        "method": "GET",
        "path": "/api/a/b/c d",
        "protocol": "HTTP/1.1",
        "sourceIp": "203.0.113.9",
        "userAgent": "curl/8",
    }
    assert event["requestContext"]["requestId"] == "req-42"
    assert event["requestContext"]["domainName"] == "orders.internal"
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["headers"] == {
        "host": "orders.internal",
        "x-custom": "One",
        "accept": "text/html,application/json",
        "x-forwarded-for": "198.51.100.1, 203.0.113.9",
        "x-request-id": "req-42",
        "user-agent": "curl/8",
    }
    assert "body" not in event and event["isBase64Encoded"] is False
    # A synchronous Invoke of exactly the function named, without a qualifier.
    invocation = fake_lambda.invocations[-1]
    assert invocation.name == "orders" and invocation.query == ""
    assert invocation.headers.get("x-amz-invocation-type", "RequestResponse") == "RequestResponse"


def test_text_body_is_sent_as_text(fake_lambda: FakeLambda) -> None:
    fake_lambda.functions["fn"] = echo
    text = '{"name": "h\u00e9llo \u2603"}'
    call("fn", "POST", "http://fn/submit", [("Content-Type", "application/json")], text.encode())
    event = fake_lambda.last_event
    assert event["isBase64Encoded"] is False
    assert event["body"] == text
    assert event["headers"]["content-length"] == str(len(text.encode()))
    assert event["requestContext"]["http"]["method"] == "POST"


def test_binary_body_is_sent_base64(fake_lambda: FakeLambda) -> None:
    fake_lambda.functions["fn"] = echo
    data = bytes(range(256)) * 4
    call("fn", "PUT", "http://fn/blob", [("Content-Type", "application/octet-stream")], data)
    event = fake_lambda.last_event
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == data


def test_streamed_body_is_read_whole_first(fake_lambda: FakeLambda) -> None:
    fake_lambda.functions["fn"] = echo

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"alpha-", b"beta-", b"gamma"):
            await asyncio.sleep(0)
            yield part

    headers = [("Transfer-Encoding", "chunked"), ("Content-Length", "999")]
    call("fn", "POST", "http://fn/up", headers, chunks())
    event = fake_lambda.last_event
    assert event["body"] == "alpha-beta-gamma"
    assert event["headers"] == {"content-length": "16"}


def test_request_over_six_megabytes_is_refused_without_invoking(fake_lambda: FakeLambda) -> None:
    fake_lambda.functions["fn"] = echo

    async def big() -> AsyncIterator[bytes]:
        for _ in range(7):
            yield b"x" * (1024 * 1024)

    with pytest.raises(UpstreamProtocolError, match="6 MB"):
        call("fn", "POST", "http://fn/up", [], big())
    with pytest.raises(UpstreamProtocolError, match="6 MB"):
        call("fn", "POST", "http://fn/up", [], b"\xff" * (INVOKE_PAYLOAD_LIMIT // 4 * 3))  # base64: > 6 MB
    assert fake_lambda.invocations == []


# --- the answer ------------------------------------------------------------------------------


def test_function_url_answer_maps_status_headers_cookies_and_base64_body(fake_lambda: FakeLambda) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

    def image(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "statusCode": 201,
            "headers": {"Content-Type": "image/png", "X-Version": 7, "Content-Length": "1"},
            "cookies": ["a=1; Path=/", "b=2; HttpOnly; Secure"],
            "body": base64.b64encode(png).decode(),
            "isBase64Encoded": True,
        }

    fake_lambda.functions["img"] = image
    response, body = call("img")
    assert response.status == 201
    assert body == png
    assert response.content_length == len(png)
    assert header_values(response, b"set-cookie") == [b"a=1; Path=/", b"b=2; HttpOnly; Secure"]
    assert header_values(response, b"content-type") == [b"image/png"]
    assert header_values(response, b"x-version") == [b"7"]
    # The function's own (wrong) Content-Length is replaced by the decoded body's.
    assert header_values(response, b"content-length") == [str(len(png)).encode()]


def test_text_answer_and_read_limit(fake_lambda: FakeLambda) -> None:
    fake_lambda.functions["txt"] = lambda event: {"statusCode": 404, "body": "n\u00e4t found"}

    async def read_twice() -> tuple[UpstreamResponse, bytes | None, bytes | None]:
        response = await LambdaInvokeUpstream("txt").send("GET", "http://fn/x", [], None, 5.0)
        return response, await response.read(3), await response.read(100)

    response, over, whole = run(read_twice())
    assert response.status == 404
    assert over is None
    assert whole == "n\u00e4t found".encode()
    assert header_values(response, b"content-type") == []  # none invented when statusCode is given


@pytest.mark.parametrize(
    "answer",
    [{"message": "hi", "items": [1, 2]}, [1, "two", None], "just a string", 42, None],
    ids=["dict", "list", "string", "number", "null"],
)
def test_bare_json_answer_is_200_application_json(fake_lambda: FakeLambda, answer: Any) -> None:
    fake_lambda.functions["bare"] = lambda event: answer
    response, body = call("bare")
    assert response.status == 200
    assert header_values(response, b"content-type") == [b"application/json"]
    assert json.loads(body) == answer


def test_head_answer_keeps_length_but_sends_no_body(fake_lambda: FakeLambda) -> None:
    fake_lambda.functions["fn"] = lambda event: {"statusCode": 200, "body": "twelve bytes"}
    response, body = call("fn", "HEAD")
    assert body == b""
    assert header_values(response, b"content-length") == [b"12"]


def test_multi_value_headers_are_refused(fake_lambda: FakeLambda) -> None:
    fake_lambda.functions["bad"] = lambda event: {"statusCode": 200, "headers": {"x-a": ["1", "2"]}}
    with pytest.raises(UpstreamProtocolError, match="multi-value"):
        call("bad")


def test_malformed_answers_are_protocol_errors() -> None:
    for payload in (b"not json", b'{"statusCode": "abc"}', b'{"statusCode": 200, "body": {"a": 1}}'):
        with pytest.raises(MalformedAnswer):
            decode_response(payload)
    with pytest.raises(MalformedAnswer, match="base64"):
        decode_response(b'{"statusCode": 200, "body": "***", "isBase64Encoded": true}')
    with pytest.raises(MalformedAnswer, match="invalid header"):
        decode_response(b'{"statusCode": 200, "headers": {"x-a": "1\\r\\nx-b: 2"}}')
    # a name ending in a newline, a control character in a value or a cookie: relayed, any of them
    # would make the server drop the client's connection (the rule for HTTP backends too)
    with pytest.raises(MalformedAnswer, match="invalid header"):
        decode_response(b'{"statusCode": 200, "headers": {"x-a\\n": "1"}}')
    with pytest.raises(MalformedAnswer, match="invalid header"):
        decode_response(b'{"statusCode": 200, "headers": {"x-a": "1\\u0001"}}')
    with pytest.raises(MalformedAnswer, match="invalid cookie"):
        decode_response(b'{"statusCode": 200, "cookies": ["a=1\\u0001"]}')


# --- errors ----------------------------------------------------------------------------------


def test_function_error_is_a_protocol_error_naming_the_error_type(fake_lambda: FakeLambda) -> None:
    def broken(event: dict[str, Any]) -> Any:
        raise KeyError("customer_id")

    fake_lambda.functions["broken"] = broken
    with pytest.raises(UpstreamProtocolError, match=r"KeyError: 'customer_id'") as caught:
        call("broken", "POST", "http://fn/orders", [], b'{"order": 1}')
    assert "broken" in str(caught.value) and "Unhandled" in str(caught.value)
    # A POST is invoked exactly once even though it failed: botocore does not retry.
    assert fake_lambda.count("broken") == 1


def test_unknown_function_is_a_connect_error(fake_lambda: FakeLambda) -> None:
    with pytest.raises(UpstreamConnectError, match="ResourceNotFoundException"):
        call("missing")
    assert fake_lambda.count("missing") == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "ServiceException"), (429, "TooManyRequestsException"), (502, "EC2UnexpectedException")],
)
def test_retryable_api_errors_are_not_retried(fake_lambda: FakeLambda, status: int, code: str) -> None:
    def failing(event: dict[str, Any]) -> Any:
        raise AwsError(status, code, "try again later")

    fake_lambda.functions["flaky"] = failing
    with pytest.raises(UpstreamConnectError, match=code):
        call("flaky", "POST", "http://fn/pay", [], b"amount=5")
    assert fake_lambda.count("flaky") == 1


def test_connection_lost_after_sending_is_a_protocol_error_not_retried(fake_lambda: FakeLambda) -> None:
    def vanish(event: dict[str, Any]) -> Any:
        raise DropConnection

    fake_lambda.functions["vanish"] = vanish
    with pytest.raises(UpstreamProtocolError):
        call("vanish", "POST", "http://fn/pay", [], b"amount=5")
    assert fake_lambda.count("vanish") == 1


def test_slow_function_times_out(fake_lambda: FakeLambda) -> None:
    def slow(event: dict[str, Any]) -> Any:
        time.sleep(1.0)
        return {"statusCode": 200}

    fake_lambda.functions["slow"] = slow
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="300 ms"):
        call("slow", timeout=0.3)
    assert time.monotonic() - started < 0.9


def test_unreachable_endpoint_is_a_connect_error(
    fake_lambda: FakeLambda, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(UpstreamConnectError, match="cannot reach Lambda"):
        call("anything")


# --- targets and clients ---------------------------------------------------------------------


def test_targets_and_one_shared_client(fake_lambda: FakeLambda) -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:orders:live"
    fake_lambda.functions["orders"] = echo
    fake_lambda.functions[arn] = echo
    call("orders")
    upstream = LambdaInvokeUpstream(arn)
    run(_exchange(upstream, "GET", "lambda:x/p"))
    assert fake_lambda.invocations[-1].name == arn
    assert fake_lambda.last_event["rawPath"] == "/p"
    assert len(clients._made) == 1  # both upstreams used the same boto3 client


def test_concurrent_sends_do_not_block_the_loop(fake_lambda: FakeLambda) -> None:
    lock, active, most = threading.Lock(), [0], [0]

    def wait(event: dict[str, Any]) -> Any:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.3)
        with lock:
            active[0] -= 1
        return {"statusCode": 200, "body": event["rawPath"]}

    fake_lambda.functions["wait"] = wait
    upstream = LambdaInvokeUpstream("wait")

    async def many() -> list[bytes]:
        results = await asyncio.gather(*(_exchange(upstream, "GET", f"http://fn/{i}") for i in range(4)))
        return [body for _, body in results]

    assert sorted(run(many())) == [b"/0", b"/1", b"/2", b"/3"]
    assert most[0] == 4  # the four invokes ran side by side, not one after another
