"""The AWS Lambda entry point: `edge_router.aws_lambda.handler` (named in template.yaml).

One event loop, one router and one upstream client per process, built on the first invocation
and reused by every warm invocation after it. Mangum runs with lifespan="off" (it would otherwise
run startup and shutdown on every invocation) and its loop is ours: we set it as the current loop
before every call, so nothing else in the process (an `asyncio.run` in a library) can leave
Mangum without one. Each request's log line (with its EMF metrics) is flushed before the invocation returns.

The handler never raises: an exception becomes a Lambda error (the caller sees a stack trace, a
function URL client a bare 502), so every event gets a dict. A malformed HTTP event (a direct
invoke can send anything) is answered 400 naming the field; an exception in the router, or
anywhere else, is logged with its trace and answered with the router's JSON 500, never Mangum's
text/plain one.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from mangum.exceptions import UnexpectedMessage

from ._app import EdgeRouter, new_request_id
from ._config import DEFAULT_CORS
from ._lambda_events import (
    NON_HTTP_HANDLERS,
    FunctionUrlHandler,
    FunctionUrlResponse,
    function_url_error,
    is_http_event,
    unknown_event,
    validate_function_url_event,
)
from ._observability import logger
from ._proxy import Receive, Scope, Send
from ._settings import Settings

# application/*+json and *+xml bodies (problem+json, hal+json, ...) go back as text, not base64.
TEXT_MIME_TYPES = [*DEFAULT_TEXT_MIME_TYPES, "+json", "+xml"]


class LambdaAdapter:
    def __init__(self, router: EdgeRouter) -> None:
        self.router = router
        # Plain asyncio, not uvloop: measured here, a Lambda invocation is one run_until_complete
        # per request and uvloop's loop start/stop costs more than it saves (~+50 us per invoke).
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._mangum = Mangum(
            self._guarded_router,
            lifespan="off",
            custom_handlers=[FunctionUrlHandler],
            text_mime_types=TEXT_MIME_TYPES,
        )
        self._router_failed = False  # one invocation at a time per Lambda process

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        try:
            return self._handle(event, context)
        except Exception:  # the last resort: a Lambda error is never the answer
            logger.exception("unexpected error handling a Lambda event; answering 500")
            # Built from nothing that might itself be broken: the default CORS, not the config's.
            message = "The router failed to handle this request"
            return dict(function_url_error(500, message, _request_id(event, context), DEFAULT_CORS))

    def _handle(self, event: Any, context: Any) -> dict[str, Any]:
        asyncio.set_event_loop(self.loop)
        if not is_http_event(event):
            return self._non_http(event)
        problem = validate_function_url_event(event)
        if problem is not None:
            logger.warning("refusing a malformed function URL event: %s", problem)
            return dict(self._error(400, problem, event, context))
        logger.set_correlation_id(event["requestContext"].get("requestId"))
        self._router_failed = False
        try:
            response: dict[str, Any] = self._mangum(event, context)
        finally:
            self.router.recorder.flush()  # the request's log+metrics line leaves before we return
        if self._router_failed:
            return dict(self._error(500, "The router failed to handle this request", event, context))
        return response

    async def _guarded_router(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The router as Mangum runs it. An exception escaping the router is logged here and the
        exchange completed, so Mangum returns normally and `_handle` answers JSON 500 instead of
        Mangum's text/plain 500 (or, after the answer started, a half-sent answer as if whole)."""
        try:
            await self.router(scope, receive, send)
        except Exception:
            self._router_failed = True
            logger.exception("unexpected error in the router; answering 500")
            # Mangum refuses (UnexpectedMessage) a start or a final body it already has: each
            # message is sent only if the exchange still needs it.
            with suppress(UnexpectedMessage):
                await send({"type": "http.response.start", "status": 500, "headers": []})
            with suppress(UnexpectedMessage):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _error(self, status: int, message: str, event: Any, context: Any) -> FunctionUrlResponse:
        config = self.router.config.status().config
        cors = config.cors_headers if config else DEFAULT_CORS
        return function_url_error(status, message, _request_id(event, context), cors)

    def _non_http(self, event: Any) -> dict[str, Any]:
        for handler in NON_HTTP_HANDLERS:
            if handler.infer(event):
                return self.loop.run_until_complete(handler.handle(event, self))
        logger.warning(
            "ignoring an event that is not a function URL request", extra={"event": unknown_event(event)}
        )
        return unknown_event(event)

    async def on_schedule(self, event: Any) -> dict[str, Any]:
        """A scheduled tick keeps the config warm (health checks join it in a later issue)."""
        config = await self.router.config.get()
        status = self.router.config.status()
        return {
            "handled": True,
            "event": "schedule",
            "config_loaded": config is not None,
            "error": status.last_error,
        }


def _request_id(event: Any, context: Any) -> str:
    """The function URL's request id when the event has a usable one, else Lambda's, else a new one."""
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    request_id = request_context.get("requestId") if isinstance(request_context, dict) else None
    if not (isinstance(request_id, str) and request_id.isascii() and request_id.isprintable()):
        request_id = getattr(context, "aws_request_id", None)
    return request_id if isinstance(request_id, str) and request_id else new_request_id()


_adapter: LambdaAdapter | None = None


def build_handler(settings: Settings | None = None) -> LambdaAdapter:
    return LambdaAdapter(EdgeRouter(settings or Settings.from_env()))


def handler(event: Any, context: Any) -> dict[str, Any]:
    global _adapter
    if _adapter is None:
        _adapter = build_handler()
    return _adapter(event, context)
