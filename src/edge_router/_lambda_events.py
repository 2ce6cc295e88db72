"""Lambda event handling around Mangum: one handler per event source, tried in order.

* `FunctionUrlHandler` (HTTP, payload 2.0) replaces Mangum's HTTPGateway for function URLs:
  it keeps the event's `rawPath` as the ASGI `raw_path` (Mangum unquotes `path`, which would turn
  `%2F` into a separator), builds the scope once (Mangum's property rebuilds it per access), does
  not invent a content-type for a body the backend sent without one, and turns an answer too large
  for a buffered function URL (6 MB envelope) into a clear 502 instead of a Lambda error.
* Non-HTTP events (an EventBridge schedule) never reach Mangum, which would raise "unable to
  infer a handler"; `NON_HTTP_HANDLERS` answers them on the same event loop.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, Protocol, TypedDict
from urllib.parse import unquote

from mangum.handlers.api_gateway import HTTPGateway, _combine_headers_v2
from mangum.handlers.utils import handle_base64_response_body

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
    return (
        isinstance(event, dict)
        and event.get("version") == "2.0"
        and "http" in event.get("requestContext", {})
    )


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
    body = {
        "error": "Bad Gateway",
        "message": f"The response ({size} bytes as a function URL answer) is larger than the 6 MB a function "
        "URL can return",
        "request_id": request_id,
    }
    return {
        "statusCode": 502,
        "headers": {"content-type": "application/json", "x-request-id": request_id},
        "body": json.dumps(body),
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
    keys = sorted(event)[:10] if isinstance(event, dict) else type(event).__name__
    return {"handled": False, "error": "unsupported event", "keys": keys}


__all__ = [
    "NON_HTTP_HANDLERS",
    "FunctionUrlEvent",
    "FunctionUrlHandler",
    "FunctionUrlResponse",
    "is_http_event",
    "unknown_event",
]
