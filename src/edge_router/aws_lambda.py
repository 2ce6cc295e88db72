"""The AWS Lambda entry point named in template.yaml, `edge_router.aws_lambda.handler`: the router
driven straight from the function URL event, one event loop per process.

One event loop, one router and one upstream client per process, built on the first invocation
and reused by every warm invocation after it. A proxied request (a function URL event for a path
that is not a control path) goes from the event to the pipeline directly: a `RequestContext` and
the whole body (`aws/url_requests.py`) in, a `BufferedAnswer` out, encoded as the function URL
response (`aws/function_url.py`) — no ASGI scope, no Mangum, not even imported. Control-plane
requests (FastAPI is ASGI) and API Gateway's payload 1.0 go through Mangum (`aws/mangum_host.py`),
with lifespan="off" (it would otherwise run startup and shutdown on every invocation). The loop is
ours: we set it as the current loop before every call, so nothing else in the process (an
`asyncio.run` in a library) can leave either path without one. Each request's log line (with
its EMF metrics) is flushed before the invocation returns.

The handler never raises: an exception becomes a Lambda error (the caller sees a stack trace, a
function URL client a bare 502), so every event gets a dict. A malformed HTTP event (a direct
invoke can send anything) is answered 400 naming the field; an exception in the router, or
anywhere else, is logged with its trace and answered with the router's JSON 500, never Mangum's
text/plain one.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable
from typing import Any, Protocol

from .app import EdgeRouter, is_control_path
from .aws.api_gateway import is_api_gateway_v1_event, without_named_stage
from .aws.api_gateway import validate_event as validate_api_gateway_event
from .aws.function_url import (
    FunctionUrlResponse,
    encode_response,
    error_response,
    is_http_event,
    validate_function_url_event,
)
from .aws.url_requests import event_body, request_context
from .config.model import DEFAULT_CORS
from .http.channel import BufferedAnswer, WholeBody
from .http.context import DEADLINE, RequestContext, new_request_id, renew_request_id_prefix
from .observability.logs import app_logger
from .settings import Settings
from .types import Receive, Scope, Send


class EventHooks(Protocol):
    """What non-HTTP handlers may ask of the router."""

    async def on_schedule(self, event: Any) -> dict[str, Any]: ...

    async def on_parameter_change(self, name: str) -> dict[str, Any]: ...


class NonHttpHandler(Protocol):
    """Answers one kind of non-HTTP event; `infer` says whether it is that kind. Such events never
    reach Mangum, which would raise "unable to infer a handler"; they run on the same loop."""

    @staticmethod
    def infer(event: Any) -> bool: ...

    @staticmethod
    def handle(event: Any, hooks: EventHooks) -> Awaitable[dict[str, Any]]: ...


class ScheduledEventHandler:
    @staticmethod
    def infer(event: Any) -> bool:
        return isinstance(event, dict) and (
            event.get("detail-type") == "Scheduled Event" or event.get("source") == "aws.events"
        )

    @staticmethod
    async def handle(event: Any, hooks: EventHooks) -> dict[str, Any]:
        return await hooks.on_schedule(event)


class ParameterChangeHandler:
    """EventBridge's SSM "Parameter Store Change" event for the config parameter (the template's
    rule): the router reads the parameter once and bumps the fleet's config version, so a change
    made any way (the console included) reaches every instance within `CONFIG_CHECK_SECONDS`."""

    @staticmethod
    def infer(event: Any) -> bool:
        return (
            isinstance(event, dict)
            and event.get("source") == "aws.ssm"
            and event.get("detail-type") == "Parameter Store Change"
        )

    @staticmethod
    async def handle(event: Any, hooks: EventHooks) -> dict[str, Any]:
        detail = event.get("detail")
        name = detail.get("name") if isinstance(detail, dict) else None
        if not isinstance(name, str) or not name:
            return {"handled": False, "error": "a Parameter Store Change event without detail.name"}
        return await hooks.on_parameter_change(name)


NON_HTTP_HANDLERS: list[type[NonHttpHandler]] = [ParameterChangeHandler, ScheduledEventHandler]


def unknown_event(event: Any) -> dict[str, Any]:
    keys = sorted(map(str, event))[:10] if isinstance(event, dict) else type(event).__name__
    return {"handled": False, "error": "unsupported event", "keys": keys}


class LambdaAdapter:
    def __init__(self, router: EdgeRouter) -> None:
        self.router = router
        _fresh_identity()
        # Plain asyncio, not uvloop: measured here, a Lambda invocation is one run_until_complete
        # per request and uvloop's loop start/stop costs more than it saves (~+50 us per invoke).
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._mangum: Any = None  # built on the first request that needs it
        # Powertools' Lambda context on every log line (cold_start, function_request_id, the
        # X-Ray trace id), with the keys of the previous invocation cleared: a scheduled tick never
        # logs the correlation id of the HTTP request before it.
        self._with_context = app_logger().inject_lambda_context(clear_state=True)(self._handle)
        self._router_failed = False  # one invocation at a time per Lambda process
        self._cold = True
        self._margin_s = router.settings.deadline_margin_ms / 1000

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        try:
            if hasattr(context, "aws_request_id") and hasattr(context, "function_name"):
                answer: dict[str, Any] = self._with_context(event, context)
                return answer
            return self._handle(event, context)  # no Lambda context: a test, a local call
        except Exception:  # the last resort: a Lambda error is never the answer
            app_logger().exception("unexpected error handling a Lambda event; answering 500")
            # Built from nothing that might itself be broken: the default CORS, not the config's.
            message = "The router failed to handle this request"
            return dict(error_response(500, message, _request_id(event, context), DEFAULT_CORS))

    def _handle(self, event: Any, context: Any) -> dict[str, Any]:
        asyncio.set_event_loop(self.loop)
        direct = False
        if is_http_event(event):
            problem = validate_function_url_event(event)
            direct = problem is None
        elif is_api_gateway_v1_event(event):
            problem = validate_api_gateway_event(event)
            if problem is None:
                event = without_named_stage(event)
        else:
            return self._non_http(event)
        if problem is not None:
            app_logger().warning("refusing a malformed HTTP event: %s", problem)
            return dict(self._error(400, problem, event, context))
        app_logger().set_correlation_id(event["requestContext"].get("requestId"))
        self.router.recorder.invocation = _invocation_keys(context, self._cold)
        self._cold = False
        self._router_failed = False
        try:
            ctx = request_context(event, _deadline(context, self._margin_s)) if direct else None
            if ctx is not None and not is_control_path(ctx.path):
                response = self._proxied(ctx, event)
            else:
                response = self._through_mangum(event, context)
        finally:
            self.router.recorder.flush()  # the request's log+metrics line leaves before we return
        if self._router_failed:
            return dict(self._error(500, "The router failed to handle this request", event, context))
        return response

    def _proxied(self, ctx: RequestContext, event: Any) -> dict[str, Any]:
        """The data path: the event straight into the pipeline, its buffered answer encoded."""
        answer = BufferedAnswer()
        self.loop.run_until_complete(
            self._guarded(self.router.handle(ctx, WholeBody(event_body(event)), answer))
        )
        return dict(encode_response(answer.status, answer.headers, answer.content))

    def _through_mangum(self, event: Any, context: Any) -> dict[str, Any]:
        if self._mangum is None:
            from .aws.mangum_host import make_mangum

            self._mangum = make_mangum(self._guarded_router)
        response: dict[str, Any] = self._mangum(event, context)
        return response

    async def _guarded(self, handling: Awaitable[None]) -> None:
        """An exception escaping the router is logged here, and `_handle` answers JSON 500."""
        try:
            await handling
        except Exception:
            self._router_failed = True
            app_logger().exception("unexpected error in the router; answering 500")

    async def _guarded_router(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The router as Mangum runs it. An exception escaping the router is logged here and the
        exchange completed, so Mangum returns normally and `_handle` answers JSON 500 instead of
        Mangum's text/plain 500 (or, after the answer started, a half-sent answer as if whole)."""
        scope[DEADLINE] = _deadline(scope.get("aws.context"), self._margin_s)
        try:
            await self.router(scope, receive, send)
        except Exception:
            self._router_failed = True
            app_logger().exception("unexpected error in the router; answering 500")
            from .aws.mangum_host import complete_with_500

            await complete_with_500(send)

    def _error(self, status: int, message: str, event: Any, context: Any) -> FunctionUrlResponse:
        config = self.router.config.current
        cors = config.cors_headers if config else DEFAULT_CORS
        return error_response(status, message, _request_id(event, context), cors)

    def _non_http(self, event: Any) -> dict[str, Any]:
        app_logger().set_correlation_id(None)  # not the id of the HTTP request before it
        for handler in NON_HTTP_HANDLERS:
            if handler.infer(event):
                return self.loop.run_until_complete(handler.handle(event, self))
        app_logger().warning(
            "ignoring an event that is not a function URL request", extra={"event": unknown_event(event)}
        )
        return unknown_event(event)

    async def on_parameter_change(self, name: str) -> dict[str, Any]:
        return await self.router.on_parameter_change(name)

    async def on_schedule(self, event: Any) -> dict[str, Any]:
        """A scheduled tick keeps the config warm and runs one round of health checks, whose
        results go to the state table for every instance (CONTRACT section 7)."""
        config = await self.router.config.get()
        status = self.router.config.status()
        probed: dict[str, str] = {}
        if config is not None:
            targets = await self.router.probe_targets()
            if targets:
                snapshot = await self.router.health.round(targets)
                probed = {
                    backend: snapshot.statuses[backend].health for backend in (t.backend for t in targets)
                }
        return {
            "handled": True,
            "event": "schedule",
            "config_loaded": config is not None,
            "error": status.last_error_summary,
            "health": probed,
        }


def _deadline(context: Any, margin_s: float) -> float | None:
    """When the answer must be ready: the invocation's end minus a margin (None without a context)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    left_ms: float = remaining()
    return time.monotonic() + left_ms / 1000 - margin_s


def _fresh_identity() -> None:
    """Per-instance randomness made after start-up: with SnapStart every instance is restored from
    one snapshot of the imported modules, random's state and the request-id prefix included."""
    random.seed()
    renew_request_id_prefix()


def _invocation_keys(context: Any, cold_start: bool) -> dict[str, Any]:
    """What the request line says of the invocation (the request ids are per request on Lambda)."""
    keys: dict[str, Any] = {"cold_start": cold_start}
    request_id = getattr(context, "aws_request_id", None)
    if isinstance(request_id, str):
        keys["function_request_id"] = request_id
    trace = os.environ.get("_X_AMZN_TRACE_ID")
    if trace:
        keys["xray_trace_id"] = trace.partition(";")[0].removeprefix("Root=")
    return keys


def _request_id(event: Any, context: Any) -> str:
    """The function URL's request id when the event has a usable one, else Lambda's, else a new one."""
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    request_id = request_context.get("requestId") if isinstance(request_context, dict) else None
    if not (isinstance(request_id, str) and request_id.isascii() and request_id.isprintable()):
        request_id = getattr(context, "aws_request_id", None)
    return request_id if isinstance(request_id, str) and request_id else new_request_id()


def build_handler(settings: Settings | None = None) -> LambdaAdapter:
    return LambdaAdapter(EdgeRouter(settings or Settings.from_env()))


_adapter: LambdaAdapter | None = None


def handler(event: Any, context: Any) -> dict[str, Any]:
    global _adapter
    if _adapter is None:
        _adapter = build_handler()
    return _adapter(event, context)
