"""Relaying a backend's answer to the client: streamed (server), or whole and capped (Lambda).

Under a server both bodies stream; under Mangum the answer is buffered, because a buffered function
URL answer must be complete, and capped so that an oversized answer becomes a clear 502 instead of
a Lambda error. An answer that breaks off after its head was sent cannot become an error any more:
it ends without its terminator (the server closes the connection) and the log says why.

The answer's head is the backend's, minus hop-by-hop headers, with `Location`/`Content-Location`
that point at the target rewritten under the route's prefix (`http.redirects`), CORS as the
route's policy says (`guards.cors`: a backend's own CORS headers win unless the policy overrides
them), and what the guards added (RateLimit-*).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..config.model import Target
from ..exceptions import Refusal, UpstreamError
from ..http.channel import AnswerWriter
from ..http.headers import downstream_response_headers
from ..http.redirects import rewrite_response_locations
from ..observability.outcome import RequestOutcome
from ..types import Header
from ..upstream.base import UpstreamResponse
from .exchange import AnswerTap, Exchange

# A buffered function URL answer is at most 6 MB of JSON envelope; binary bodies are base64
# (x4/3). Past this the answer cannot fit, so reading more would only waste memory.
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
SMALL_BODY = 64 * 1024
# Set by the router on every answer: a backend's own copy is dropped.
_ROUTER_SET = frozenset({b"x-backend-source", b"x-request-id"})


def relayed_headers(ex: Exchange, response: UpstreamResponse, target: Target) -> tuple[list[Header], bool]:
    """The backend's headers as they are relayed (hop-by-hop gone, Location under the route), and
    whether the backend sent CORS headers of its own."""
    route = ex.route
    assert route is not None
    headers = downstream_response_headers(response.raw_headers, drop=_ROUTER_SET)
    # One C-level look at every name decides which rewrites can apply: most answers carry
    # neither a Location nor CORS headers of their own, and then both are skipped.
    names = b"\0".join([name for name, _ in headers]).lower()
    if b"location" in names:
        prefix = route.prefix if route.strip_prefix else ""
        headers = rewrite_response_locations(
            headers, origin=target.origin, base_path=target.base_path, prefix=prefix
        )
    return headers, b"access-control-" in names


def finish_head(ex: Exchange, headers: list[Header], source: str, has_cors: bool) -> list[Header]:
    """What the router adds to a relayed (or stored) head for this request: CORS for its origin,
    X-Backend-Source, X-Request-Id and what the stages added (RateLimit-*, X-Cache). `headers` is
    extended in place."""
    ctx, cors = ex.ctx, ex.cors
    if cors.needs_origin or cors.mode == "backend" or has_cors:
        headers = cors.proxied(headers, ctx.header("origin") if cors.needs_origin else None)
    else:
        headers.extend(cors.answer_headers(None))
    headers += [(b"x-backend-source", source.encode()), (b"x-request-id", ctx.request_id.encode())]
    if ctx.answer_headers:
        headers += ctx.answer_headers
    return headers


async def deliver(
    ex: Exchange, response: UpstreamResponse, target: Target, *, buffer_limit: int = LAMBDA_RESPONSE_LIMIT
) -> None:
    """Send `response` on; raises a 502 Refusal when a buffered answer broke off or cannot fit
    (nothing has been sent then). Always releases the response."""
    answer, outcome, tap = ex.answer, ex.outcome, ex.tap
    try:
        headers, has_cors = relayed_headers(ex, response, target)
        outcome.status = response.status
        if response.status == 101:
            await _splice(ex, response, headers, target)
            return
        if tap is not None and not tap.head(
            response.status, headers, target.source, has_cors, response.content_length
        ):
            return  # the cache's own revalidation came back 304: it answers from its refreshed entry
        headers = finish_head(ex, headers, target.source, has_cors)
        if ex.ctx.buffered:
            await _send_whole(answer, response, headers, outcome, buffer_limit, tap)
        elif response.content_length is not None and response.content_length <= SMALL_BODY:
            # A small body with a known length goes out in one write: the head and body together.
            await _send_whole(answer, response, headers, outcome, SMALL_BODY, tap)
        else:
            await _send_streaming(answer, response.stream(), headers, outcome, tap)
    finally:
        response.release()


async def _splice(ex: Exchange, response: UpstreamResponse, headers: list[Header], target: Target) -> None:
    """The backend agreed to upgrade (101): its head goes to the client with the upgrade headers
    the hop-by-hop filter took out, then bytes flow both ways until either side closes."""
    upgrader, asked = ex.answer.upgrade, ex.upgrade
    if upgrader is None or asked is None:  # the client lets any 101 through: this is the check
        raise Refusal(502, "The backend answered 101 to a request that did not ask to upgrade")
    headers = finish_head(ex, headers, target.source, False)
    headers += [(b"connection", b"upgrade"), (b"upgrade", _upgrade_token(response))]
    await upgrader.splice(101, headers, response.upgraded(), ex.idle_timeout)


def _upgrade_token(response: UpstreamResponse) -> bytes:
    for name, value in response.raw_headers:
        if name.lower() == b"upgrade":
            return value
    return b"websocket"


async def _send_whole(
    answer: AnswerWriter,
    response: UpstreamResponse,
    headers: list[Header],
    outcome: RequestOutcome,
    limit: int,
    tap: AnswerTap | None,
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
    if tap is not None:
        tap.chunk(body)
        tap.complete()
    await answer.whole(outcome.status, headers, body)


async def _send_streaming(
    answer: AnswerWriter,
    chunks: AsyncIterator[bytes],
    headers: list[Header],
    outcome: RequestOutcome,
    tap: AnswerTap | None,
) -> None:
    await answer.start(outcome.status, headers)
    try:
        async for chunk in chunks:
            if chunk:
                if tap is not None:
                    tap.chunk(chunk)
                await answer.body(chunk, True)
    except UpstreamError as exc:
        # Headers are gone already: the only honest signal left is to end the connection
        # without completing the body (the host closes it without a terminator).
        outcome.error = f"response body broke off: {exc}"
        outcome.upstream_errors += 1
        return
    if tap is not None:
        tap.complete()
    await answer.body(b"", False)
