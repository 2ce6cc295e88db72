"""The function URL wire format (payload 2.0), in one typed codec: events in, responses out.

Used by the Lambda adapter (event -> ASGI scope, ASGI answer -> response), by the `lambda:`
upstream (request -> event, response -> status/headers/body) and by `edge_router.testing`
(events as AWS sends them). Stdlib only: importing it costs nothing.

* `validate_function_url_event`: a function URL only sends well-formed events, but the function
  can be invoked directly with anything; every field the scope and body are built from is checked
  before use (a wrong type, a lone surrogate that cannot be encoded, invalid base64 would each
  raise later), so a malformed event is answered 400 naming the field, never a Lambda error.
* `scope_from_event`: the ASGI scope, from the same reading of the event as the data path's
  `RequestContext` (`url_requests.request_parts`: headers, cookies, `rawPath`, the stage).
* `encode_response`: `set-cookie` headers go to `cookies`, other repeated headers are joined with
  ","; a body is text when its content type is textual and it is UTF-8, else base64; an answer
  whose envelope would exceed the 6 MB a buffered function URL can return becomes a clear 502.
* `decode_response`: an Invoke answer read as a function URL reads it: a dict with `statusCode`,
  or any other JSON value as a 200 `application/json` body.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict
from urllib.parse import unquote

from ..http.responses import error_body
from ..types import Header
from .url_requests import request_parts

# The whole JSON envelope of a buffered function URL answer may not exceed 6 MB.
FUNCTION_URL_ENVELOPE_LIMIT = 6 * 1024 * 1024
# Bodies sent as text rather than base64: Mangum's defaults, plus application/*+json and *+xml
# (problem+json, hal+json, ...).
TEXT_MIME_TYPES = (
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/vnd.api+json",
    "application/vnd.oai.openapi",
    "+json",
    "+xml",
)


class FunctionUrlHttp(TypedDict, total=False):
    method: str
    path: str
    protocol: str
    sourceIp: str
    userAgent: str


class FunctionUrlRequestContext(TypedDict, total=False):
    accountId: str
    apiId: str
    domainName: str
    domainPrefix: str
    http: FunctionUrlHttp
    requestId: str
    routeKey: str
    stage: str
    time: str
    timeEpoch: int


class FunctionUrlEvent(TypedDict, total=False):
    version: str
    routeKey: str
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


class MalformedAnswer(ValueError):
    """A function's answer that a function URL could not turn into an HTTP response."""


# -- events in --------------------------------------------------------------------------------


def is_http_event(event: Any) -> bool:
    """A function URL (HTTP payload 2.0) event, well-formed or not: version "2.0" with a `rawPath`
    (only HTTP payloads have one) or a `requestContext.http`."""
    if not isinstance(event, dict) or event.get("version") != "2.0":
        return False
    context = event.get("requestContext")
    return "rawPath" in event or (isinstance(context, dict) and "http" in context)


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110: a method or a header name
_TOKENS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?: [!#$%&'*+.^_`|~0-9A-Za-z-]+)*")  # space-joined
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
        ("requestContext.stage", context.get("stage"), False),
        ("requestContext.http.sourceIp", http.get("sourceIp"), True),
        ("requestContext.http.path", http.get("path"), False),
        ("rawPath", event.get("rawPath"), False),
        ("rawQueryString", event.get("rawQueryString"), False),
    )
    try:  # the common case in one scan: every field a string of printable ASCII
        strings_ok = _printable_ascii("".join(value for _, value, _ in strings if value is not None))
    except TypeError:
        strings_ok = False
    if not strings_ok:
        for field, value, in_header in strings:
            if value is not None and (reason := string_problem(value, in_header)):
                return f"{field} {reason}"
    raw_path = event.get("rawPath") or http.get("path")
    if raw_path and not raw_path.startswith("/"):
        return "rawPath must start with '/'"
    headers = event.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            return "headers must be an object of strings"
        if (reason := headers_problem(headers)) is not None:
            return reason
    cookies = event.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, list):
            return "cookies must be a list of strings"
        for index, cookie in enumerate(cookies):
            if reason := string_problem(cookie, True):
                return f"cookies: item {index} {reason}"
    return body_problem(event)


def body_problem(event: dict[str, Any]) -> str | None:
    """What is wrong with an event's `body` and `isBase64Encoded` (every HTTP payload version)."""
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
    reason = string_problem(body, False)
    return f"body {reason}" if reason else None


def headers_problem(headers: dict[Any, Any]) -> str | None:
    try:  # the common case in three C-speed scans: every name a token, every value printable ASCII
        names = " ".join(headers)
        if (
            _TOKENS.fullmatch(names)
            and names.count(" ") == len(headers) - 1  # no name held a space of its own
            and _printable_ascii("".join(headers.values()))
        ):
            return None
    except TypeError:
        pass  # a name or value that is not a string: the loop below names it
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            return f"headers: {name!a} is not a header name"
        if reason := string_problem(value, True):
            return f"headers: the value of {name!r} {reason}"
    return None


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def string_problem(value: Any, in_header: bool) -> str | None:
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


def scope_from_event(event: FunctionUrlEvent, context: Any) -> dict[str, Any]:
    """The ASGI scope of a (validated) function URL request, built once (Mangum's control-plane
    requests; proxied ones skip ASGI: `url_requests.request_context`)."""
    parts = request_parts(event)
    port = parts.headers.get("x-forwarded-port", "443").strip()  # client-set: never trusted to parse
    return {
        "type": "http",
        "method": parts.method,
        "http_version": "1.1",
        "headers": parts.raw_headers,
        "path": unquote(parts.path),
        "raw_path": parts.raw_path.encode(),
        "root_path": "",
        "scheme": parts.scheme,
        "query_string": parts.query,
        "server": (parts.headers.get("host", "lambda"), int(port) if port.isdigit() else 443),
        "client": (parts.client, 0),
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "aws.event": event,
        "aws.context": context,
    }


def build_event(
    method: str,
    raw_path: str,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    cookies: Sequence[str] = (),
    body: bytes | str | None = None,
    source_ip: str = "",
    request_id: str | None = None,
    domain: str = "",
    user_agent: str | None = None,
    now: float | None = None,
) -> FunctionUrlEvent:
    """A function URL event as AWS builds one: `rawPath` escaped as sent, `http.path` unescaped,
    header names lower-case, cookies in their own array; a `str` body goes as text, `bytes` base64."""
    now = time.time() if now is None else now
    prefix = domain.split(".", 1)[0]
    event_headers = {name.lower(): value for name, value in (headers or {}).items()}
    event: FunctionUrlEvent = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": event_headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": prefix,
            "domainName": domain,
            "domainPrefix": prefix,
            "http": {
                "method": method.upper(),
                "path": unquote(raw_path),
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": event_headers.get("user-agent", "") if user_agent is None else user_agent,
            },
            "requestId": request_id or str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = list(cookies)
    if isinstance(body, str):
        event["body"] = body
    elif body is not None:
        event["body"] = base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = True
    return event


# -- responses out ----------------------------------------------------------------------------


def encode_response(status: int, headers: Iterable[Header], body: bytes) -> FunctionUrlResponse:
    """A router answer as a function URL response (an oversized one becomes a JSON 502, under the
    request id the answer carries: every answer of the router has its `x-request-id`)."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), _text(raw_value)
        if name == "set-cookie":
            cookies.append(value)
        else:
            joined[name] = f"{joined[name]},{value}" if name in joined else value
    out: FunctionUrlResponse = {"statusCode": status, "headers": joined, "isBase64Encoded": False}
    if body:
        content_type = joined.get("content-type", "")
        text = _text_body(body) if _is_text(content_type) else None
        if text is None:
            out["body"], out["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
        else:
            out["body"] = text
    if cookies:
        out["cookies"] = cookies
    if len(out.get("body", "")) > FUNCTION_URL_ENVELOPE_LIMIT - 64 * 1024:
        size = len(json.dumps(out, separators=(",", ":")))
        if size > FUNCTION_URL_ENVELOPE_LIMIT:
            message = (
                f"The response ({size} bytes as a function URL answer) is larger than the 6 MB "
                "a function URL can return"
            )
            return error_response(502, message, joined.get("x-request-id", ""))
    return out


def error_response(
    status: int, message: str, request_id: str, headers: Iterable[Header] = ()
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


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")  # obs-text that is not UTF-8: what HTTP/1.1 meant by it


@functools.lru_cache(maxsize=256)  # a handful of content types, asked on every answer
def _is_text(content_type: str) -> bool:
    return any(kind in content_type for kind in TEXT_MIME_TYPES)


def _text_body(body: bytes) -> str | None:
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None


# -- an Invoke answer, read as a function URL reads it ----------------------------------------

# Not taken from the function: the body's real length is set from what was decoded.
_LENGTH_HEADERS = frozenset({"content-length", "transfer-encoding"})


def decode_response(payload: bytes, *, method: str = "GET") -> tuple[int, list[Header], bytes, int]:
    """(status, headers, body, body length) of an Invoke answer; MalformedAnswer when a function URL
    could not serve it. A HEAD answer keeps the length of the body it does not carry."""
    try:
        answer = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise MalformedAnswer("the function's answer is not JSON") from None
    if not isinstance(answer, dict) or "statusCode" not in answer:
        status, raw_headers, body = 200, [(b"content-type", b"application/json")], payload
    else:
        status = _status_code(answer["statusCode"])
        raw_headers = _answer_headers(answer)
        body = _answer_body(answer)
    if status in (204, 304):
        return status, raw_headers, b"", 0
    raw_headers.append((b"content-length", str(len(body)).encode("ascii")))
    if method.upper() == "HEAD":
        return status, raw_headers, b"", len(body)
    return status, raw_headers, body, len(body)


def _status_code(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= 599:
        return value
    raise MalformedAnswer(f"the function's answer has an invalid statusCode: {value!r}")


def _answer_headers(answer: dict[str, Any]) -> list[Header]:
    headers = answer.get("headers") or {}
    cookies = answer.get("cookies") or []
    if not isinstance(headers, dict):
        raise MalformedAnswer("the function's answer has `headers` that is not an object")
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise MalformedAnswer("the function's answer has `cookies` that is not a list of strings")
    raw_headers = []
    for name, value in headers.items():
        text = _header_text(name, value)
        # the same rule as for an HTTP backend's answer (http/headers.py `valid_response_head`)
        if not _TOKEN.fullmatch(name) or _CONTROL.search(text):
            raise MalformedAnswer(f"the function's answer has an invalid header {name!r}")
        if name.lower() not in _LENGTH_HEADERS:
            raw_headers.append((name.encode("ascii"), text.encode("utf-8")))
    for cookie in cookies:
        if _CONTROL.search(cookie):
            raise MalformedAnswer("the function's answer has an invalid cookie")
        raw_headers.append((b"set-cookie", cookie.encode("utf-8")))
    return raw_headers


def _header_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    kind = "multi-value headers are" if isinstance(value, list) else f"a {type(value).__name__} is"
    raise MalformedAnswer(f"the function's answer has header {name!r}: {kind} not allowed")


def _answer_body(answer: dict[str, Any]) -> bytes:
    text_body = answer.get("body")
    if text_body is None:
        return b""
    if not isinstance(text_body, str):
        raise MalformedAnswer("the function's answer has a `body` that is not a string")
    if answer.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(text_body, validate=True)
        except binascii.Error:
            raise MalformedAnswer("the function's answer has a `body` that is not base64") from None
    return text_body.encode("utf-8")
