"""Helpers for testing code that runs behind edge-router on Lambda (stdlib only, cheap to import).

`function_url_event()` builds a Lambda function URL request (payload 2.0) as AWS sends it: headers
lower-cased with AWS's x-forwarded-* added, `rawPath` escaped as sent and `requestContext.http.path`
unescaped, cookies in their own array, binary bodies base64-encoded.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote


def function_url_event(
    method: str = "GET",
    raw_path: str = "/",
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | str | None = None,
    cookies: list[str] | None = None,
    source_ip: str = "203.0.113.7",
    request_id: str = "req-1234",
) -> dict[str, Any]:
    """A Lambda function URL (payload 2.0) event, as AWS sends it."""
    event_headers = {
        "host": "abc123.lambda-url.us-east-1.on.aws",
        "x-forwarded-proto": "https",
        "x-forwarded-port": "443",
        "x-forwarded-for": source_ip,
        "x-amzn-trace-id": "Root=1-00000000-000000000000000000000000",
    }
    event_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": event_headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": unquote(raw_path),
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "test",
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": "24/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1795521600000,
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if body is not None:
        if isinstance(body, bytes):
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = body
    return event
