"""`lambda:FUNCTION` targets: an `Upstream` that sends the request by Lambda Invoke (seed 004's service
bindings, ported).

The request becomes a Lambda function URL event (payload 2.0) and the answer is read as a function
URL response, the way Lambda reads it behind a real function URL:

* a dict with `statusCode`: `headers` (one value per name; lists are refused, as Lambda refuses
  them), `cookies` (one `set-cookie` each), `body`, `isBase64Encoded`;
* any other JSON value (a dict without `statusCode`, a list, a string, a number, null): 200,
  `content-type: application/json`, the JSON as the body;
* `FunctionError` (an unhandled error in the function): `UpstreamProtocolError` naming the
  errorType and errorMessage (the router answers 502).

Invoke is buffered: an async iterator body is read fully first, and the event (the whole JSON
envelope, base64 included) may not exceed Lambda's 6 MB request limit. boto3 is synchronous, so
each Invoke runs in a worker thread (`asyncio.to_thread`) under `asyncio.timeout(timeout)`.

botocore never retries (`total_max_attempts: 1`): the router does its own fallback, and a POST
must not be invoked twice behind its back. Errors are mapped here, at one boundary:

    could not invoke (no connection, ClientError such as ResourceNotFoundException,
        TooManyRequestsException, no credentials, invalid name)      -> UpstreamConnectError
    per-attempt timeout, botocore read timeout                        -> UpstreamTimeout
    connection lost after sending, FunctionError, malformed answer    -> UpstreamProtocolError

The event and the answer are `aws/function_url.py`'s codec (the one the Lambda adapter reads).
boto3 is imported on first use only (a config without lambda: targets does not pay ~110 ms for
it); clients come from `aws/clients.py`, one per process for each region and read timeout, shared
by every `LambdaInvokeUpstream`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

from ..aws.clients import client, describe
from ..aws.function_url import MalformedAnswer, build_event, decode_response
from ..exceptions import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from ..http.headers import HOP_BY_HOP
from .base import Interim, RequestBody, UpstreamResponse, WholeResponse

# Lambda's limit for a synchronous Invoke payload, each way (6 MB, the whole JSON envelope).
INVOKE_PAYLOAD_LIMIT = 6 * 1024 * 1024
CONNECT_TIMEOUT = 2.0  # seconds; the per-attempt asyncio timeout still bounds the whole call
MAX_POOL_CONNECTIONS = 32  # as many as asyncio's default executor has threads at most
_ERROR_DETAIL = 300  # characters of a function's errorMessage kept in the exception


def _arn_region(function_name: str) -> str | None:
    """The region of a full function ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`)."""
    parts = function_name.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "lambda" and parts[3]:
        return parts[3]
    return None


def _lambda_client(region: str | None, read_timeout: int) -> Any:
    return client(
        "lambda",
        region=region,
        settings={
            "connect_timeout": min(CONNECT_TIMEOUT, read_timeout),
            "read_timeout": read_timeout,
            "retries": {"mode": "standard", "total_max_attempts": 1},
            "max_pool_connections": MAX_POOL_CONNECTIONS,
            "tcp_keepalive": True,  # an Invoke may stay silent for up to 15 minutes
        },
    )


def _path_and_query(url: str) -> tuple[str, str]:
    """rawPath and rawQueryString, byte-exact, from `scheme://host/path?query`, `lambda:FN/path?query`
    or `/path?query`."""
    rest = url
    if not rest.startswith("/"):
        authority = rest.find("://")
        start = authority + 3 if authority != -1 else 0
        cuts = [i for i in (rest.find("/", start), rest.find("?", start)) if i != -1]
        rest = rest[min(cuts) :] if cuts else ""
    path, _, query = rest.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    return path, query


async def _read_body(body: RequestBody) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        if len(body) > INVOKE_PAYLOAD_LIMIT:
            raise UpstreamProtocolError(_too_large(len(body)))
        return body
    parts, size = [], 0
    async for chunk in body:
        size += len(chunk)
        if size > INVOKE_PAYLOAD_LIMIT:
            raise UpstreamProtocolError(_too_large(size, at_least=True))
        parts.append(chunk)
    return b"".join(parts)


def _too_large(size: int, *, at_least: bool = False) -> str:
    more = "at least " if at_least else ""
    return f"the request ({more}{size} bytes) is larger than the 6 MB a Lambda Invoke can carry"


def function_url_request(
    method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes
) -> dict[str, Any]:
    """The Lambda function URL event (payload 2.0) a function would receive for this request."""
    raw_path, raw_query = _path_and_query(url)
    event_headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        name = name.lower()
        if name == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        elif name in HOP_BY_HOP or name == "content-length":
            continue
        elif name in event_headers:
            event_headers[name] += "," + value  # as function URLs join repeated headers
        else:
            event_headers[name] = value
    if body:
        # Invoke carries the body whole: its length is known, however it arrived.
        event_headers["content-length"] = str(len(body))
    text: bytes | str | None = body or None
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body  # sent base64
    event = build_event(
        method,
        raw_path,
        query=raw_query,
        headers=event_headers,
        cookies=cookies,
        body=text,
        source_ip=event_headers.get("x-forwarded-for", "").rsplit(",", 1)[-1].strip(),
        request_id=event_headers.get("x-request-id"),
        domain=event_headers.get("host", ""),
    )
    return dict(event)


def _function_error(function_name: str, kind: str, payload: bytes) -> UpstreamProtocolError:
    error_type, message = kind, ""
    try:
        detail = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        message = payload[:_ERROR_DETAIL].decode("utf-8", "replace")
    else:
        if isinstance(detail, dict):
            error_type = str(detail.get("errorType") or kind)
            message = str(detail.get("errorMessage") or "")
        else:
            message = str(detail)
    if len(message) > _ERROR_DETAIL:
        message = message[:_ERROR_DETAIL] + "..."
    return UpstreamProtocolError(f"function {function_name} failed ({kind}): {error_type}: {message}")


class LambdaInvokeUpstream:
    """`Upstream` for one `lambda:FUNCTION` target: each `send` is one synchronous Invoke.

    `function_name` is a name, a partial ARN, `name:alias` or a full ARN (whose region picks the
    client's region); it is passed to Invoke as FunctionName unchanged.
    """

    def __init__(self, function_name: str, *, region: str | None = None) -> None:
        if not function_name:
            raise ValueError("a lambda target needs a function name or ARN")
        self.function_name = function_name
        self._region = region or _arn_region(function_name)

    def __repr__(self) -> str:
        return f"LambdaInvokeUpstream({self.function_name!r})"

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: RequestBody,
        timeout: float,
        *,
        interim: Interim | None = None,  # ignored: an Invoke answer has no 1xx
    ) -> UpstreamResponse:
        data = await _read_body(body)
        event = function_url_request(method, url, headers, data)
        payload = json.dumps(event, separators=(",", ":")).encode("utf-8")
        if len(payload) > INVOKE_PAYLOAD_LIMIT:
            raise UpstreamProtocolError(_too_large(len(payload)) + " as a function URL event")
        read_timeout = max(1, math.ceil(timeout))
        try:
            async with asyncio.timeout(timeout):
                function_error, answer = await asyncio.to_thread(self._invoke, payload, read_timeout)
        except TimeoutError:
            raise UpstreamTimeout(
                f"function {self.function_name} did not answer within {timeout * 1000:.0f} ms"
            ) from None
        if function_error:
            raise _function_error(self.function_name, function_error, answer)
        try:
            status, raw_headers, body, length = decode_response(answer, method=method)
        except MalformedAnswer as exc:
            raise UpstreamProtocolError(str(exc)) from None
        return WholeResponse(status, raw_headers, body, length)

    def _invoke(self, payload: bytes, read_timeout: int) -> tuple[str | None, bytes]:
        """One Invoke, in a worker thread; every botocore error is mapped here."""
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, ReadTimeoutError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        name = self.function_name
        try:
            invoker = _lambda_client(self._region, read_timeout)
            answer = invoker.invoke(FunctionName=name, InvocationType="RequestResponse", Payload=payload)
            data: bytes = answer["Payload"].read()
        except ClientError as exc:
            raise UpstreamConnectError(f"cannot invoke function {name}: {describe(exc)}") from None
        except ReadTimeoutError:
            raise UpstreamTimeout(f"function {name} did not answer within {read_timeout} s") from None
        except BotoConnectionError as exc:  # EndpointConnectionError, ConnectTimeoutError, proxy, TLS
            raise UpstreamConnectError(f"cannot reach Lambda to invoke {name}: {exc}") from None
        except HTTPClientError as exc:  # the connection broke after the request was sent
            raise UpstreamProtocolError(f"the Invoke of {name} broke off: {exc}") from None
        except (BotoCoreError, ValueError) as exc:  # no credentials/region, invalid name or endpoint
            raise UpstreamConnectError(f"cannot invoke function {name}: {exc}") from None
        return answer.get("FunctionError"), data

    async def aclose(self) -> None:
        """Nothing to close: the boto3 clients are shared by the whole process."""
