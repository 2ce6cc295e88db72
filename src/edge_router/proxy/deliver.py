"""Relaying a backend's answer to the client: streamed (server), or whole and capped (Lambda).

Under a server both bodies stream; under Mangum the answer is buffered, because a buffered function
URL answer must be complete, and capped so that an oversized answer becomes a clear 502 instead of
a Lambda error. An answer that breaks off after its head was sent cannot become an error any more:
it ends without its terminator (the server closes the connection) and the log says why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..config.model import Target
from ..exceptions import Refusal, UpstreamError
from ..http.headers import downstream_response_headers
from ..observability.outcome import RequestOutcome
from ..types import Header, Send
from ..upstream.base import UpstreamResponse

# A buffered function URL answer is at most 6 MB of JSON envelope; binary bodies are base64
# (x4/3). Past this the answer cannot fit, so reading more would only waste memory.
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
SMALL_BODY = 64 * 1024
# Set by the router on every answer: a backend's own copy is dropped.
_ROUTER_SET = frozenset(
    {
        b"x-backend-source",
        b"x-request-id",
        b"access-control-allow-origin",
        b"access-control-allow-methods",
        b"access-control-allow-headers",
        b"access-control-expose-headers",
        b"access-control-allow-credentials",
        b"access-control-max-age",
    }
)


async def deliver(
    send: Send,
    response: UpstreamResponse,
    target: Target,
    outcome: RequestOutcome,
    cors: tuple[Header, ...],
    *,
    buffered: bool,
    buffer_limit: int = LAMBDA_RESPONSE_LIMIT,
) -> None:
    """Send `response` on; raises a 502 Refusal when a buffered answer broke off or cannot fit
    (nothing has been sent then). Always releases the response."""
    try:
        headers = downstream_response_headers(response.raw_headers, drop=_ROUTER_SET)
        headers += [
            (b"x-backend-source", target.source.encode()),
            (b"x-request-id", outcome.request_id.encode()),
            *cors,
        ]
        outcome.status = response.status
        if buffered:
            await _send_whole(send, response, headers, outcome, buffer_limit)
        elif response.content_length is not None and response.content_length <= SMALL_BODY:
            # A small body with a known length goes out in one message: same bytes, one
            # await and one ASGI message fewer than streaming it (~8% of server CPU).
            await _send_whole(send, response, headers, outcome, SMALL_BODY)
        else:
            await _send_streaming(send, response.stream(), headers, outcome)
    finally:
        response.release()


async def _send_whole(
    send: Send, response: UpstreamResponse, headers: list[Header], outcome: RequestOutcome, limit: int
) -> None:
    try:
        body = await response.read(limit)
    except UpstreamError as exc:
        outcome.upstream_errors += 1
        raise Refusal(
            502,
            "The backend broke off its response",
            log_error=str(exc),
            detail=str(exc),
            backend=outcome.backend,
        ) from None
    if body is None:
        raise Refusal(
            502,
            f"The backend's response is larger than a function URL can return ({limit // (1024 * 1024)} MB)",
            log_error=f"response body over {limit} bytes",
            backend=outcome.backend,
        )
    await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_streaming(
    send: Send, chunks: AsyncIterator[bytes], headers: list[Header], outcome: RequestOutcome
) -> None:
    await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
    try:
        async for chunk in chunks:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        # Headers are gone already: the only honest signal left is to end the connection
        # without completing the body (the ASGI server closes it).
        outcome.error = f"response body broke off: {exc}"
        outcome.upstream_errors += 1
        return
    await send({"type": "http.response.body", "body": b""})
