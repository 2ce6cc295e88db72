"""Mangum, for the requests the Lambda adapter hands it: control-plane paths and API Gateway's
payload 1.0 (proxied function URL requests skip it: `aws_lambda.LambdaAdapter`). Imported on the
first such request, so a cold start that only proxies never pays for Mangum.

`FunctionUrlHandler` is Mangum's handler for function URL events speaking `function_url.py`'s
codec: the scope is built once (Mangum's property rebuilds it per access) from `rawPath`, and the
answer is encoded without inventing a content type or exceeding the 6 MB envelope.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from mangum import Mangum
from mangum.exceptions import UnexpectedMessage
from mangum.handlers.api_gateway import HTTPGateway

from ..types import Send
from .function_url import TEXT_MIME_TYPES, encode_response, is_http_event, scope_from_event


class FunctionUrlHandler(HTTPGateway):
    """Mangum's handler for function URL events, speaking `function_url.py`'s codec: the scope is
    built once (Mangum's property rebuilds it per access) from `rawPath`, and the answer is encoded
    without inventing a content type or exceeding the 6 MB envelope."""

    @classmethod
    def infer(cls, event: Any, context: Any, config: Any) -> bool:
        return is_http_event(event)

    def __init__(self, event: Any, context: Any, config: Any) -> None:
        super().__init__(event, context, config)
        self._scope = scope_from_event(event, context)

    @property
    def scope(self) -> Any:
        return self._scope

    def __call__(self, response: Any) -> dict[str, Any]:
        return dict(encode_response(response["status"], response["headers"], response["body"]))


def make_mangum(app: Any) -> Mangum:
    """Mangum around `app`: lifespan off (it would run startup and shutdown on every invocation)."""
    return Mangum(
        app,
        lifespan="off",
        custom_handlers=[FunctionUrlHandler],  # API Gateway's payload 1.0: Mangum's own handlers
        text_mime_types=list(TEXT_MIME_TYPES),
    )


async def complete_with_500(send: Send) -> None:
    """After an exception in the app: complete the exchange so Mangum returns normally. Mangum
    refuses (UnexpectedMessage) a start or a final body it already has: each message is sent only
    if the exchange still needs it."""
    with suppress(UnexpectedMessage):
        await send({"type": "http.response.start", "status": 500, "headers": []})
    with suppress(UnexpectedMessage):
        await send({"type": "http.response.body", "body": b"", "more_body": False})
