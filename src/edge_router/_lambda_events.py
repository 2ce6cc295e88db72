"""Lambda event handling around Mangum: one handler per event source, tried in order.

* `FunctionUrlHandler` (HTTP, payload 2.0) replaces Mangum's HTTPGateway for function URLs:
  it keeps the event's `rawPath` as the ASGI `raw_path` (Mangum unquotes `path`, which would turn
  `%2F` into a separator), builds the scope once (Mangum's property rebuilds it per access), does
  not invent a content-type for a body the backend sent without one, and turns an answer too large
  for a buffered function URL (6 MB envelope) into a clear 502 instead of a Lambda error.
* Non-HTTP events (an EventBridge schedule) never reach Mangum, which would raise "unable to
  infer a handler"; `NON_HTTP_HANDLERS` answers them on the same event loop.
* A function URL only sends well-formed events, but the function can be invoked directly with
  anything. `validate_function_url_event` checks, before Mangum runs, every field the scope and
  body are built from (a wrong type, a lone surrogate that cannot be encoded, invalid base64 would
  each raise there), so a malformed HTTP event is answered 400 naming the field, not a Lambda error.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol, TypedDict
from urllib.parse import unquote

from mangum.handlers.api_gateway import HTTPGateway, _combine_headers_v2
from mangum.handlers.utils import handle_base64_response_body

from ._responses import error_body

# The whole JSON envelope of a buffered function URL answer may not exceed 6 MB.
FUNCTION_URL_ENVELOPE_LIMIT = 6 * 1024 * 1024


class FunctionUrlHttp(TypedDict, total=False):
    method: str
    path: str
    protocol: str
    sourceIp: str
    userAgent: str


class FunctionUrlRequestContext(TypedDict, total=False):
    requestId: str
    http: FunctionUrlHttp
    domainName: str
    timeEpoch: int


class FunctionUrlEvent(TypedDict, total=False):
    version: str
    rawPath: str
    rawQueryString: str
    cookies: list[str]
    headers: dict[str, str]
    requestContext: FunctionUrlRequestContext
    body: str
    isBase64Encoded: bool


class FunctionUrlResponse(TypedDict, total=False):
    statusCode: int
    headers: dict[str, str]
    cookies: list[str]
    body: str
    isBase64Encoded: bool


def is_http_event(event: Any) -> bool:
    """A function URL (HTTP payload 2.0) event, well-formed or not: version "2.0" with a `rawPath`
    (only HTTP payloads have one) or a `requestContext.http`."""
    if not isinstance(event, dict) or event.get("version") != "2.0":
        return False
    context = event.get("requestContext")
    return "rawPath" in event or (isinstance(context, dict) and "http" in context)


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110: a method or a header name
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # never valid in a header field (HTAB is)


def validate_function_url_event(event: dict[str, Any]) -> str | None:
    """What is wrong with an HTTP event, naming the field; None when the router can take it.

    It checks every field the scope and the body are built from. This runs on every warm
    invocation, so it is type checks and C-speed scans (`isascii`, `isprintable`); the slower
    checks run only for a string that is not plain printable ASCII.
    """
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return "requestContext must be an object"
    http = context.get("http")
    if not isinstance(http, dict):
        return "requestContext.http must be an object"
    method = http.get("method", "GET")
    if not isinstance(method, str) or not _TOKEN.fullmatch(method):
        return "requestContext.http.method must be an HTTP method name"
    # (field, value, whether it ends up in a header: the request id and client address do)
    strings = (
        ("requestContext.requestId", context.get("requestId"), True),
        ("requestContext.http.sourceIp", http.get("sourceIp"), True),
        ("requestContext.http.path", http.get("path"), False),
        ("rawPath", event.get("rawPath"), False),
        ("rawQueryString", event.get("rawQueryString"), False),
    )
    for field, value, in_header in strings:
        if value is not None and (reason := _string_problem(value, in_header)):
            return f"{field} {reason}"
    raw_path = event.get("rawPath") or http.get("path")
    if raw_path and not raw_path.startswith("/"):
        return "rawPath must start with '/'"
    headers = event.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            return "headers must be an object of strings"
        if (reason := _headers_problem(headers)) is not None:
            return reason
    cookies = event.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, list):
            return "cookies must be a list of strings"
        for index, cookie in enumerate(cookies):
            if reason := _string_problem(cookie, True):
                return f"cookies: item {index} {reason}"
    is_base64 = event.get("isBase64Encoded", False)
    if not isinstance(is_base64, bool):
        return "isBase64Encoded must be true or false"
    body = event.get("body")
    if body is None:
        return None
    if is_base64 and isinstance(body, str):
        try:
            binascii.a2b_base64(body, strict_mode=True)
        except (binascii.Error, ValueError):
            return "body is not valid base64 (isBase64Encoded is true)"
        return None
    reason = _string_problem(body, False)
    return f"body {reason}" if reason else None


def _headers_problem(headers: dict[Any, Any]) -> str | None:
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            return f"headers: {name!a} is not a header name"
        if reason := _string_problem(value, True):
            return f"headers: the value of {name!r} {reason}"
    return None


def _string_problem(value: Any, in_header: bool) -> str | None:
    """Why `value` cannot be used as a string (in a header field when `in_header`), or None."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if value.isascii() and (value.isprintable() or not in_header):
        return None
    if in_header and _CONTROL.search(value):
        return "holds a control character"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate)"
    return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class FunctionUrlHandler(HTTPGateway):
    @classmethod
    def infer(cls, event: Any, context: Any, config: Any) -> bool:
        return is_http_event(event)

    def __init__(self, event: Any, context: Any, config: Any) -> None:
        super().__init__(event, context, config)
        self._scope = function_url_scope(event, context)

    @property
    def scope(self) -> Any:
        return self._scope

    def __call__(self, response: Any) -> dict[str, Any]:
        headers, cookies = _combine_headers_v2(response["headers"])
        body, is_base64 = handle_base64_response_body(
            response["body"], headers, self.config["text_mime_types"]
        )
        out: FunctionUrlResponse = {
            "statusCode": response["status"],
            "headers": headers,
            "isBase64Encoded": is_base64,
        }
        if body:
            out["body"] = body
        if cookies:
            out["cookies"] = cookies
        if (
            len(body) > FUNCTION_URL_ENVELOPE_LIMIT - 64 * 1024
            and _envelope_size(out) > FUNCTION_URL_ENVELOPE_LIMIT
        ):
            return dict(too_large_response(self._scope, _envelope_size(out)))
        return dict(out)


def function_url_scope(event: FunctionUrlEvent, context: Any) -> dict[str, Any]:
    """The ASGI scope of a function URL request, built once.

    Function URL header names arrive lower-cased; repeated headers arrive joined with ",". The
    cookies array becomes one `cookie` header, as a browser sends it. `raw_path` is the event's
    `rawPath` with its escapes, so `%2F` is never mistaken for a separator.
    """
    http = event["requestContext"]["http"]
    headers = event.get("headers") or {}
    raw_headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    cookies = event.get("cookies")
    if cookies:
        raw_headers = [h for h in raw_headers if h[0] != b"cookie"]
        raw_headers.append((b"cookie", "; ".join(cookies).encode()))
    path = http.get("path") or "/"
    raw_path = event.get("rawPath") or path
    host = headers.get("host", "lambda")
    port = headers.get("x-forwarded-port", "443").strip()  # client-influenced: never trusted to parse
    return {
        "type": "http",
        "method": http.get("method", "GET"),
        "http_version": "1.1",
        "headers": raw_headers,
        "path": unquote(path),
        "raw_path": raw_path.encode(),
        "root_path": "",
        "scheme": headers.get("x-forwarded-proto", "https"),
        "query_string": (event.get("rawQueryString") or "").encode(),
        "server": (host, int(port) if port.isdigit() else 443),
        "client": (http.get("sourceIp", ""), 0),
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "aws.event": event,
        "aws.context": context,
    }


def _envelope_size(response: FunctionUrlResponse) -> int:
    return len(json.dumps(response, separators=(",", ":")))


def too_large_response(scope: Any, size: int) -> FunctionUrlResponse:
    request_id = ""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            request_id = value.decode("latin-1")
    request_id = request_id or scope["aws.event"]["requestContext"].get("requestId", "")
    message = (
        f"The response ({size} bytes as a function URL answer) is larger than the 6 MB "
        "a function URL can return"
    )
    return function_url_error(502, message, request_id)


def function_url_error(
    status: int, message: str, request_id: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> FunctionUrlResponse:
    """An error the router answers itself, in the contract's JSON shape, as a function URL response."""
    return {
        "statusCode": status,
        "headers": {
            **{name.decode("latin-1"): value.decode("latin-1") for name, value in headers},
            "content-type": "application/json",
            "x-request-id": request_id,
        },
        "body": error_body(status, message, request_id).decode(),
        "isBase64Encoded": False,
    }


class NonHttpHandler(Protocol):
    """Answers one kind of non-HTTP event; `infer` says whether it is that kind."""

    @staticmethod
    def infer(event: Any) -> bool: ...

    @staticmethod
    def handle(event: Any, hooks: EventHooks) -> Awaitable[dict[str, Any]]: ...


class EventHooks(Protocol):
    """What non-HTTP handlers may ask of the router."""

    async def on_schedule(self, event: Any) -> dict[str, Any]: ...


class ScheduledEventHandler:
    @staticmethod
    def infer(event: Any) -> bool:
        return isinstance(event, dict) and (
            event.get("detail-type") == "Scheduled Event" or event.get("source") == "aws.events"
        )

    @staticmethod
    async def handle(event: Any, hooks: EventHooks) -> dict[str, Any]:
        return await hooks.on_schedule(event)


NON_HTTP_HANDLERS: list[type[NonHttpHandler]] = [ScheduledEventHandler]


def unknown_event(event: Any) -> dict[str, Any]:
    keys = sorted(map(str, event))[:10] if isinstance(event, dict) else type(event).__name__
    return {"handled": False, "error": "unsupported event", "keys": keys}


__all__ = [
    "NON_HTTP_HANDLERS",
    "FunctionUrlEvent",
    "FunctionUrlHandler",
    "FunctionUrlResponse",
    "function_url_error",
    "is_http_event",
    "unknown_event",
    "validate_function_url_event",
]
