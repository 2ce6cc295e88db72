"""A function URL request (payload 2.0) read straight into the pipeline's own types, no ASGI.

The Lambda adapter's data path: `request_context` builds the `RequestContext` from a validated
event (`function_url.validate_function_url_event` ran first) and `event_body` its body, so a
proxied invocation builds neither an ASGI scope nor Mangum's handler. `request_parts` is the one
reading of the event both this and the ASGI scope (`function_url.scope_from_event`, for Mangum's
control-plane requests) use, so the two views cannot drift apart.

* header names arrive lower-cased and repeated headers joined with ","; the cookies array becomes
  one `cookie` header, as a browser sends it;
* the path is `rawPath` with its escapes (the unescaped `requestContext.http.path` would turn
  `%2F` into a separator); an HTTP API's named stage is taken off both;
* the request id: the client's X-Request-Id wins, else the function URL's request id.
"""

from __future__ import annotations

import base64
from typing import Any, NamedTuple

from ..http.context import RequestContext
from ..types import Header


class RequestParts(NamedTuple):
    method: str
    raw_headers: list[Header]
    path: str  # unescaped, as Mangum's scope has it
    raw_path: str  # as sent, with its escapes
    query: bytes
    scheme: str
    client: str
    request_id: str | None
    headers: dict[str, str]


def request_parts(event: Any) -> RequestParts:
    """What the request is, read once from a validated function URL (or normalised v1) event."""
    request = event["requestContext"]
    http = request["http"]
    headers: dict[str, str] = event.get("headers") or {}
    raw_headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    cookies = event.get("cookies")
    if cookies:
        raw_headers = [h for h in raw_headers if h[0] != b"cookie"]
        raw_headers.append((b"cookie", "; ".join(cookies).encode()))
    path = http.get("path") or "/"
    raw_path = event.get("rawPath") or path
    stage = request.get("stage")
    if stage and stage != "$default":  # an HTTP API's named stage: its prefix is not the app's path
        raw_path, path = without_stage(raw_path, stage), without_stage(path, stage)
    request_id = headers.get("x-request-id") or request.get("requestId") or None
    return RequestParts(
        method=http.get("method", "GET"),
        raw_headers=raw_headers,
        path=path,
        raw_path=raw_path,
        query=(event.get("rawQueryString") or "").encode(),
        scheme=headers.get("x-forwarded-proto", "https"),
        client=http.get("sourceIp", ""),
        request_id=request_id if isinstance(request_id, str) else None,
        headers=headers,
    )


def without_stage(path: str, stage: str) -> str:
    """`/prod/api/x` -> `/api/x` for stage `prod` (HTTP APIs put a named stage in the path)."""
    prefix = f"/{stage}"
    if path == prefix:
        return "/"
    return path[len(prefix) :] if path.startswith(prefix + "/") else path


def request_context(event: Any, deadline: float | None) -> RequestContext:
    """The pipeline's view of a validated event: the body is whole, the answer buffered."""
    parts = request_parts(event)
    return RequestContext(
        method=parts.method,
        raw_path=parts.raw_path.encode().decode("latin-1"),  # one character per byte, as a server's
        query=parts.query,
        raw_headers=parts.raw_headers,
        client=parts.client or None,
        scheme=parts.scheme,
        request_id=parts.request_id,
        buffered=True,
        deadline=deadline,
    )


def event_body(event: Any) -> bytes:
    """The request body of a validated event (base64 decoded where the event says so)."""
    body = event.get("body")
    if not body:
        return b""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return str(body).encode()
