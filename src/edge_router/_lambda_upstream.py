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

boto3 is imported on first use only (a config without lambda: targets does not pay ~110 ms for it);
clients are made once per process (per region, endpoint and read timeout) and shared by every
`LambdaInvokeUpstream`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import unquote

from ._exceptions import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from ._headers import HOP_BY_HOP
from ._upstream import RequestBody, UpstreamResponse

LAMBDA_TARGET_PREFIX = "lambda:"
# Lambda's limit for a synchronous Invoke payload, each way (6 MB, the whole JSON envelope).
INVOKE_PAYLOAD_LIMIT = 6 * 1024 * 1024
CONNECT_TIMEOUT = 2.0  # seconds; the per-attempt asyncio timeout still bounds the whole call
MAX_POOL_CONNECTIONS = 32  # as many as asyncio's default executor has threads at most
_ERROR_DETAIL = 300  # characters of a function's errorMessage kept in the exception

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
# Not taken from the function: the body's real length is set from what was decoded.
_LENGTH_HEADERS = frozenset({"content-length", "transfer-encoding"})


def is_lambda_target(target: str) -> bool:
    """Whether a config target names a Lambda function (`lambda:FUNCTION_NAME_OR_ARN`)."""
    return target.startswith(LAMBDA_TARGET_PREFIX) and len(target) > len(LAMBDA_TARGET_PREFIX)


def lambda_function_name(target: str) -> str:
    """`lambda:my-fn` -> `my-fn`; `lambda:arn:aws:lambda:...:function:my-fn:live` -> the ARN."""
    if not is_lambda_target(target):
        raise ValueError(f"not a lambda target (expected lambda:FUNCTION_NAME_OR_ARN): {target!r}")
    return target[len(LAMBDA_TARGET_PREFIX) :]


def _arn_region(function_name: str) -> str | None:
    """The region of a full function ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`)."""
    parts = function_name.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "lambda" and parts[3]:
        return parts[3]
    return None


# ---------------------------------------------------------------------------------------------
# boto3 clients: one per process (per region / endpoint / read timeout), made in a worker thread.

_clients: dict[tuple[str | None, str | None, str | None, int], Any] = {}
_clients_lock = threading.Lock()
_session: Any = None


def _lambda_client(region: str | None, read_timeout: int) -> Any:
    environ = os.environ
    region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    key = (region, environ.get("AWS_ENDPOINT_URL_LAMBDA"), environ.get("AWS_ENDPOINT_URL"), read_timeout)
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:  # a boto3 Session is not safe for concurrent client creation
        client = _clients.get(key)
        if client is None:
            global _session
            import boto3
            from botocore.config import Config

            if _session is None:
                _session = boto3.session.Session()
            config = Config(
                connect_timeout=min(CONNECT_TIMEOUT, read_timeout),
                read_timeout=read_timeout,
                retries={"mode": "standard", "total_max_attempts": 1},
                max_pool_connections=MAX_POOL_CONNECTIONS,
                tcp_keepalive=True,  # an Invoke may stay silent for up to 15 minutes
            )
            client = _clients[key] = _session.client("lambda", region_name=region, config=config)
    return client


# ---------------------------------------------------------------------------------------------
# The request: a function URL event (payload 2.0).


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
    forwarded_for = event_headers.get("x-forwarded-for", "")
    source_ip = forwarded_for.rsplit(",", 1)[-1].strip()
    domain = event_headers.get("host", "")
    request_id = event_headers.get("x-request-id") or str(uuid.uuid4())
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": event_headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": domain.split(".", 1)[0],
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": method.upper(),
                "path": unquote(raw_path),
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": event_headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


# ---------------------------------------------------------------------------------------------
# The answer: a function URL response.


class LambdaResponse:
    """A whole, already-received answer: `stream()` yields the body in one piece."""

    __slots__ = ("_body", "content_length", "raw_headers", "status")

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self._body = body
        self.content_length: int | None = len(body)

    @property
    def body(self) -> bytes:
        return self._body

    async def stream(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self._body

    async def read(self, limit: int) -> bytes | None:
        return None if len(self._body) > limit else self._body

    def release(self) -> None:
        pass


def _header_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    kind = "multi-value headers are" if isinstance(value, list) else f"a {type(value).__name__} is"
    raise UpstreamProtocolError(f"the function's answer has header {name!r}: {kind} not allowed")


def _status_code(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= 599:
        return value
    raise UpstreamProtocolError(f"the function's answer has an invalid statusCode: {value!r}")


def function_url_response(payload: bytes, *, method: str = "GET") -> LambdaResponse:
    """Read an Invoke answer as a function URL does (a bare JSON value means 200 application/json)."""
    try:
        answer = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise UpstreamProtocolError("the function's answer is not JSON") from None
    if not isinstance(answer, dict) or "statusCode" not in answer:
        body = payload
        raw_headers = [(b"content-type", b"application/json")]
        status = 200
    else:
        status = _status_code(answer["statusCode"])
        headers = answer.get("headers") or {}
        cookies = answer.get("cookies") or []
        if not isinstance(headers, dict):
            raise UpstreamProtocolError("the function's answer has `headers` that is not an object")
        if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
            raise UpstreamProtocolError("the function's answer has `cookies` that is not a list of strings")
        raw_headers = []
        for name, value in headers.items():
            text = _header_text(name, value)
            if not _TOKEN.match(name) or _BAD_VALUE.search(text):
                raise UpstreamProtocolError(f"the function's answer has an invalid header {name!r}")
            if name.lower() not in _LENGTH_HEADERS:
                raw_headers.append((name.encode("ascii"), text.encode("utf-8")))
        for cookie in cookies:
            if _BAD_VALUE.search(cookie):
                raise UpstreamProtocolError("the function's answer has an invalid cookie")
            raw_headers.append((b"set-cookie", cookie.encode("utf-8")))
        text_body = answer.get("body")
        if text_body is None:
            body = b""
        elif not isinstance(text_body, str):
            raise UpstreamProtocolError("the function's answer has a `body` that is not a string")
        elif answer.get("isBase64Encoded") is True:
            try:
                body = base64.b64decode(text_body, validate=True)
            except binascii.Error:
                raise UpstreamProtocolError("the function's answer has a `body` that is not base64") from None
        else:
            body = text_body.encode("utf-8")
    if status in (204, 304) or status < 200:
        return LambdaResponse(status, raw_headers, b"")
    raw_headers.append((b"content-length", str(len(body)).encode("ascii")))
    if method.upper() == "HEAD":
        response = LambdaResponse(status, raw_headers, b"")
        response.content_length = len(body)
        return response
    return LambdaResponse(status, raw_headers, body)


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


# ---------------------------------------------------------------------------------------------


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

    @classmethod
    def from_target(cls, target: str) -> LambdaInvokeUpstream:
        """`LambdaInvokeUpstream.from_target("lambda:my-fn")`."""
        return cls(lambda_function_name(target))

    def __repr__(self) -> str:
        return f"LambdaInvokeUpstream({self.function_name!r})"

    async def send(
        self, method: str, url: str, headers: Sequence[tuple[str, str]], body: RequestBody, timeout: float
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
        return function_url_response(answer, method=method)

    def _invoke(self, payload: bytes, read_timeout: int) -> tuple[str | None, bytes]:
        """One Invoke, in a worker thread; every botocore error is mapped here."""
        from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, ReadTimeoutError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        name = self.function_name
        try:
            client = _lambda_client(self._region, read_timeout)
            answer = client.invoke(FunctionName=name, InvocationType="RequestResponse", Payload=payload)
            data: bytes = answer["Payload"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "Unknown"), error.get("Message", "")
            raise UpstreamConnectError(f"cannot invoke function {name}: {code}: {message}") from None
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


__all__ = [
    "INVOKE_PAYLOAD_LIMIT",
    "LAMBDA_TARGET_PREFIX",
    "LambdaInvokeUpstream",
    "LambdaResponse",
    "function_url_request",
    "function_url_response",
    "is_lambda_target",
    "lambda_function_name",
]
