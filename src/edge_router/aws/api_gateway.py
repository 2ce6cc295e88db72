"""API Gateway's payload 1.0 events: REST APIs (v1) and HTTP APIs with payload format 1.0.

`sam local start-api` and a deployment behind API Gateway send these instead of function URL
events; Mangum's own handlers (`APIGateway`, `HTTPGateway`) turn them into an ASGI scope. What is
done here is what they do not: `validate_event` checks every field they read (a direct invoke can
send anything; a wrong type would raise inside Mangum), and `without_named_stage` takes an HTTP
API's named stage off the path, as `function_url.scope_from_event` does for payload 2.0 (a REST
API's `path` never carries its stage).
"""

from __future__ import annotations

from typing import Any

from .function_url import _TOKEN, body_problem, string_problem
from .url_requests import without_stage


def is_api_gateway_v1_event(event: Any) -> bool:
    return isinstance(event, dict) and "httpMethod" in event and "requestContext" in event


def validate_event(event: dict[str, Any]) -> str | None:
    """What is wrong with a payload 1.0 event, naming the field; None when the router can take it."""
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return "requestContext must be an object"
    method = event.get("httpMethod")
    if not isinstance(method, str) or not _TOKEN.fullmatch(method):
        return "httpMethod must be an HTTP method name"
    path = event.get("path")
    if not isinstance(path, str) or not path.startswith("/") or string_problem(path, False):
        return "path must be a string starting with '/'"
    identity = context.get("identity", {})
    if not isinstance(identity, dict):
        return "requestContext.identity must be an object"
    for field, value in (
        ("requestContext.requestId", context.get("requestId")),
        ("requestContext.stage", context.get("stage")),
        ("requestContext.identity.sourceIp", identity.get("sourceIp")),
    ):
        if value is not None and (reason := string_problem(value, True)):
            return f"{field} {reason}"
    for field, in_header in (("headers", True), ("queryStringParameters", False)):
        values = event.get(field)
        if values is not None and (not isinstance(values, dict) or _pairs_problem(values.items(), in_header)):
            return f"{field} must be an object of strings"
    for field, in_header in (("multiValueHeaders", True), ("multiValueQueryStringParameters", False)):
        values = event.get(field)
        if values is None:
            continue
        if not isinstance(values, dict) or not all(isinstance(items, list) for items in values.values()):
            return f"{field} must be an object of lists of strings"
        if _pairs_problem(((name, item) for name, items in values.items() for item in items), in_header):
            return f"{field} must be an object of lists of strings"
    return body_problem(event)


def _pairs_problem(pairs: Any, in_header: bool) -> bool:
    """Whether a name/value pair cannot be used: header names must be tokens; every string valid."""
    for name, value in pairs:
        if not isinstance(name, str) or (in_header and not _TOKEN.fullmatch(name)):
            return True
        if string_problem(name, False) or string_problem(value, in_header):
            return True
    return False


def without_named_stage(event: dict[str, Any]) -> dict[str, Any]:
    """The event with an HTTP API's named stage taken off `path` (a REST API event, which has no
    `version`, is unchanged)."""
    stage = event["requestContext"].get("stage")
    if event.get("version") != "1.0" or not stage or stage == "$default":
        return event
    return {**event, "path": without_stage(event["path"], stage)}
