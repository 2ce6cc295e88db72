"""The AWS Lambda entry point: `edge_router.aws_lambda.handler` (named in template.yaml).

One event loop, one router and one upstream client per process, built on the first invocation
and reused by every warm invocation after it. Mangum runs with lifespan="off" (it would otherwise
run startup and shutdown on every invocation) and its loop is ours: we set it as the current loop
before every call, so nothing else in the process (an `asyncio.run` in a library) can leave
Mangum without one. Each request's log line (with its EMF metrics) is flushed before the invocation returns.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES

from ._app import EdgeRouter
from ._lambda_events import NON_HTTP_HANDLERS, FunctionUrlHandler, is_http_event, unknown_event
from ._observability import logger
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
            router,
            lifespan="off",
            custom_handlers=[FunctionUrlHandler],
            text_mime_types=TEXT_MIME_TYPES,
        )

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        asyncio.set_event_loop(self.loop)
        if not is_http_event(event):
            return self._non_http(event)
        logger.set_correlation_id(event["requestContext"].get("requestId"))
        try:
            response: dict[str, Any] = self._mangum(event, context)
            return response
        finally:
            self.router.recorder.flush()  # the request's log+metrics line leaves before we return

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


_adapter: LambdaAdapter | None = None


def build_handler(settings: Settings | None = None) -> LambdaAdapter:
    return LambdaAdapter(EdgeRouter(settings or Settings.from_env()))


def handler(event: Any, context: Any) -> dict[str, Any]:
    global _adapter
    if _adapter is None:
        _adapter = build_handler()
    return _adapter(event, context)
