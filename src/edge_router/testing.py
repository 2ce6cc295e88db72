"""Helpers for testing with edge-router (stdlib only, cheap to import).

* `function_url_event()` builds a Lambda function URL request (payload 2.0) as AWS sends it:
  headers lower-cased with AWS's x-forwarded-* added, `rawPath` escaped as sent and
  `requestContext.http.path` unescaped, cookies in their own array, binary bodies base64-encoded.
  It is the router's own codec (`aws/function_url.py`), so tests and the router agree on the format.
* `FakeUpstream` is an `Upstream` without sockets, like httpx's `MockTransport`: a handler function
  answers each request (or raises one of the upstream errors), and every request is kept, so a
  guard or the attempt loop can be tested through the real pipeline:

      upstream = FakeUpstream(lambda request: FakeResponse(200, body=b"ok"))
      router = EdgeRouter(settings, upstream=upstream)
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .aws.function_url import build_event
from .upstream.base import Interim, WholeResponse


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
    """A Lambda function URL (payload 2.0) event, as AWS sends it (a `bytes` body goes base64)."""
    domain = "abc123.lambda-url.us-east-1.on.aws"
    event_headers = {
        "host": domain,
        "x-forwarded-proto": "https",
        "x-forwarded-port": "443",
        "x-forwarded-for": source_ip,
        "x-amzn-trace-id": "Root=1-00000000-000000000000000000000000",
    }
    event_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    event = build_event(
        method,
        raw_path,
        query=query,
        headers=event_headers,
        cookies=cookies or (),
        body=body,
        source_ip=source_ip,
        request_id=request_id,
        domain=domain,
        user_agent="test",
        now=1795521600.0,  # fixed, so events compare equal across runs
    )
    return dict(event)


@dataclass
class FakeRequest:
    """One request as a `FakeUpstream` received it (the body read whole)."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    timeout: float

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


class FakeResponse(WholeResponse):
    """A backend's answer for `FakeUpstream`: status, headers (bytes pairs) and a whole body."""

    def __init__(
        self, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b""
    ) -> None:
        given = [(b"content-type", b"text/plain")] if headers is None else headers
        super().__init__(status, [*given, (b"content-length", str(len(body)).encode())], body)


Handler = Callable[[FakeRequest], "FakeResponse | Awaitable[FakeResponse]"]


class FakeUpstream:
    """An `Upstream` whose answers come from `handler` (which may raise `UpstreamConnectError`,
    `UpstreamTimeout` or `UpstreamProtocolError` to fake a failure). `requests` keeps them all."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[FakeRequest] = []

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: Any,
        timeout: float,
        *,
        interim: Interim | None = None,  # ignored: a fake answer has no 1xx
    ) -> FakeResponse:
        if body is None or isinstance(body, bytes):
            data = body or b""
        else:
            data = b"".join([chunk async for chunk in body])
        request = FakeRequest(method, url, list(headers), data, timeout)
        self.requests.append(request)
        answer = self._handler(request)
        return await answer if inspect.isawaitable(answer) else answer

    async def aclose(self) -> None:
        pass
