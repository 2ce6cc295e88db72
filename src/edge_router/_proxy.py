"""The data plane: a lean ASGI pipeline, match -> forward -> record.

No framework, no dependency injection: everything a request needs was compiled when the config
was loaded (`_config.RouterConfig`), and each step below is a plain function call. Under a server
(uvicorn) both bodies stream; under Mangum (the ASGI scope carries "aws.event") the request body is
already whole and the response is buffered, because a buffered function URL answer must be
complete, and is capped so that an oversized answer becomes a clear 502 instead of a Lambda error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from . import _headers, _paths
from ._balancing import Failure, is_failure_status, may_fall_back
from ._config import DEFAULT_CORS, Route, RouterConfig, Target
from ._config_cache import ConfigCache
from ._exceptions import UpstreamConnectError, UpstreamError, UpstreamTimeout
from ._header_routing import HeaderRouting
from ._observability import RequestRecorder, logger
from ._registry import InvalidBackend, RegistryError
from ._responses import CLIENT_REFUSAL, Header, send_error
from ._selection import plan
from ._settings import Settings
from ._upstream import Upstream, UpstreamResponse

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# A buffered function URL answer is at most 6 MB of JSON envelope; binary bodies are base64
# (x4/3). Past this the answer cannot fit, so reading more would only waste memory.
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
MAX_VIA_HOPS = 3
SMALL_BODY = 64 * 1024
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


class ClientDisconnected(Exception):
    """The client went away (or its server refused the rest of it) before its request body was complete."""


def match_route(routes: tuple[Route, ...], path: str) -> Route | None:
    for route in routes:
        if _paths.prefix_matches(route.prefix, path):
            return route
    return None


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class ProxyApp:
    def __init__(
        self,
        *,
        config: ConfigCache,
        upstream: Upstream,
        recorder: RequestRecorder,
        settings: Settings,
        lambda_response_limit: int = LAMBDA_RESPONSE_LIMIT,
        header_routing: HeaderRouting | None = None,
    ) -> None:
        self._config = config
        self._upstream = upstream
        self._recorder = recorder
        self._default_timeout = settings.request_timeout_ms / 1000
        self._debug = settings.debug_errors
        self._lambda_limit = lambda_response_limit
        self._header_routing = header_routing
        self._lambda_upstreams: dict[str, Upstream] = {}

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        config: RouterConfig | None,
        path: str,
        request_id: str,
    ) -> None:
        """Proxy one request; `path` is already normalised and `config` fetched by the caller."""
        started = time.perf_counter()
        outcome = _Outcome(method=scope["method"], path=path, request_id=request_id)
        try:
            await self._handle(scope, receive, send, config, outcome, buffered="aws.event" in scope)
        except ClientDisconnected as exc:
            # Nothing to answer and nothing against the backend: 499 (nginx's "client closed
            # request"), or the status the server refused the request's body with.
            outcome.status = scope.get(CLIENT_REFUSAL, 499)
            outcome.error = str(exc)
        finally:
            outcome.duration_ms = (time.perf_counter() - started) * 1000
            self._recorder.record(**outcome.as_record())

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        config: RouterConfig | None,
        outcome: _Outcome,
        *,
        buffered: bool,
    ) -> None:
        request_id, path = outcome.request_id, outcome.path
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if config is None:
            outcome.status, outcome.error = 503, "no valid config loaded"
            reason = self._config.status().last_error if self._debug else None
            await send_error(
                send,
                503,
                "No valid routing config is loaded",
                request_id=request_id,
                headers=DEFAULT_CORS,
                detail=reason,
            )
            return
        cors = config.cors_headers
        route = match_route(config.routes, path)
        if route is None:
            outcome.status = 404
            await send_error(send, 404, f"No route matches {path}", request_id=request_id, headers=cors)
            return
        outcome.route = route.prefix
        if _headers.via_count(header_value(headers, b"via"), config.via[4:]) >= MAX_VIA_HOPS:
            outcome.status, outcome.error = 508, "proxy loop"
            await send_error(
                send,
                508,
                "The request has passed through this router too many times",
                request_id=request_id,
                headers=cors,
            )
            return
        if route.select_by_header is not None:
            try:
                choice = await self._choose_by_header(route, config, headers)
            except RegistryError as exc:
                outcome.status, outcome.error = 503, str(exc)
                await send_error(
                    send,
                    503,
                    "The backend registry cannot be read",
                    request_id=request_id,
                    headers=cors,
                    backend=None,
                    detail=str(exc) if self._debug else None,
                )
                return
            if not isinstance(choice, Target):
                outcome.status, outcome.error = 400, f"invalid backend {choice.requested!r}"
                await send_error(
                    send,
                    400,
                    f"Backend '{choice.requested}' is not configured",
                    request_id=request_id,
                    headers=cors,
                    error="Invalid Backend",
                    valid_backends=choice.valid,
                )
                return
            targets: tuple[Target, ...] = (choice,)
        elif len(route.targets) == 1 and route.geo is None:
            targets = route.targets
        else:
            targets = plan(route, _lower_headers(headers)).targets
        if not targets:
            outcome.status, outcome.error = 503, "no target available"
            await send_error(
                send,
                503,
                f"No backend is available for {route.prefix}",
                request_id=request_id,
                headers=cors,
                backend=None,
            )
            return
        failover = len(targets) > 1
        body = await _request_body(receive, buffered, route.replay_limit if failover else None)
        replayable = not isinstance(body, _OneShotBody)
        if failover and not replayable:
            logger.warning(
                "request body over the replay limit (%d bytes): sent once, no fallback after it was sent",
                route.replay_limit,
                extra={"request_id": request_id, "route": route.prefix},
            )
        query: bytes = scope.get("query_string", b"")
        rest = path[len(route.prefix) :] if route.strip_prefix else path
        suffix = "?" + _paths.escape_query(query) if query else ""
        client = scope.get("client")
        try:
            base_headers = _headers.upstream_request_headers(
                headers,
                host="",
                client=client[0] if client else None,
                scheme=scope.get("scheme", "http"),
                request_id=request_id,
                via=config.via,
                keep_content_length=not isinstance(body, bytes),
            )
        except _headers.InvalidHeader as exc:
            outcome.status, outcome.error = 400, str(exc)
            await send_error(send, 400, str(exc), request_id=request_id, headers=cors)
            return
        if failover:
            base_headers.append(("x-no-fallback", "1"))  # the next router must not fan out again
        timeout = route.timeout_ms / 1000 if route.timeout_ms else self._default_timeout
        attempts: list[dict[str, Any]] = []
        for index, target in enumerate(targets):
            last = index == len(targets) - 1
            url = target.url(rest, suffix)
            outcome.target, outcome.backend = url, target.source
            base_headers[0] = ("host", target.host_header)
            try:
                response = await self._upstream_for(target).send(
                    outcome.method, url, base_headers, body, timeout
                )
            except UpstreamError as exc:
                if isinstance(body, _OneShotBody) and body.client_gone:
                    raise ClientDisconnected("client disconnected during the request body") from None
                failure = _failure_kind(exc)
                attempts.append({"backend": target.source, "error": failure, "message": str(exc)})
                body_gone = isinstance(body, _OneShotBody) and body.started
                if (
                    not last
                    and not body_gone
                    and may_fall_back(
                        method=outcome.method,
                        failure=failure,
                        status=None,
                        retry_non_idempotent=route.retry_non_idempotent,
                        body_replayable=replayable,
                    )
                ):
                    continue
                if len(attempts) > 1:
                    await self._all_failed(send, attempts, outcome, cors)
                else:
                    await self._upstream_failed(send, exc, outcome, cors, timeout)
                return
            if failover and is_failure_status(response.status):
                attempts.append({"backend": target.source, "status": response.status})
                can_retry = not last and may_fall_back(
                    method=outcome.method,
                    failure="status",
                    status=response.status,
                    retry_non_idempotent=route.retry_non_idempotent,
                    body_replayable=replayable,
                )
                if can_retry or (last and len(attempts) == len(targets)):
                    response.release()
                    if can_retry:
                        continue
                    await self._all_failed(send, attempts, outcome, cors)
                    return
            await self._deliver(send, response, target, outcome, cors, buffered=buffered)
            return

    async def _deliver(
        self,
        send: Send,
        response: UpstreamResponse,
        target: Target,
        outcome: _Outcome,
        cors: tuple[Header, ...],
        *,
        buffered: bool,
    ) -> None:
        try:
            response_headers = _headers.downstream_response_headers(response.raw_headers, drop=_ROUTER_SET)
            response_headers += [
                (b"x-backend-source", target.source.encode()),
                (b"x-request-id", outcome.request_id.encode()),
                *cors,
            ]
            outcome.status = response.status
            if buffered:
                await self._send_buffered(send, response, response_headers, outcome, self._lambda_limit)
            elif response.content_length is not None and response.content_length <= SMALL_BODY:
                # A small body with a known length goes out in one message: same bytes, one
                # await and one ASGI message fewer than streaming it (~8% of server CPU).
                await self._send_buffered(send, response, response_headers, outcome, SMALL_BODY)
            else:
                await _send_streaming(send, response.stream(), response.status, response_headers, outcome)
        finally:
            response.release()

    def _upstream_for(self, target: Target) -> Upstream:
        if target.function is None:
            return self._upstream
        upstream = self._lambda_upstreams.get(target.function)
        if upstream is None:
            from ._lambda_upstream import LambdaInvokeUpstream

            upstream = self._lambda_upstreams[target.function] = LambdaInvokeUpstream(target.function)
        return upstream

    async def _choose_by_header(
        self, route: Route, config: RouterConfig, headers: list[tuple[bytes, bytes]]
    ) -> Target | InvalidBackend:
        assert route.select_by_header is not None and self._header_routing is not None
        return await self._header_routing.choose(
            config,
            header=header_value(headers, route.select_by_header.encode()),
            location_header=header_value(headers, b"x-backend-location"),
            default_backend=route.default_backend,
        )

    async def _upstream_failed(
        self, send: Send, exc: UpstreamError, outcome: _Outcome, cors: tuple[Header, ...], timeout: float
    ) -> None:
        backend = outcome.backend
        if isinstance(exc, UpstreamTimeout):
            status, message = 504, f"Backend did not respond within {timeout:g}s"
            outcome.timed_out = True
        elif isinstance(exc, UpstreamConnectError):
            status, message = 503, f"The requested backend '{backend}' is not responding"
        else:
            status, message = 502, f"The backend '{backend}' broke off the exchange"
        outcome.status, outcome.error = status, str(exc)
        await send_error(
            send,
            status,
            message,
            request_id=outcome.request_id,
            headers=cors,
            backend=backend,
            detail=str(exc) if self._debug else None,
        )

    async def _all_failed(
        self, send: Send, attempts: list[dict[str, Any]], outcome: _Outcome, cors: tuple[Header, ...]
    ) -> None:
        outcome.status = 502
        outcome.error = "; ".join(f"{a['backend']}: {a.get('error') or a.get('status')}" for a in attempts)
        outcome.timed_out = any(a.get("error") == "timeout" for a in attempts)
        shown = (
            attempts if self._debug else [{k: v for k, v in a.items() if k != "message"} for a in attempts]
        )
        await send_error(
            send,
            502,
            f"All {len(attempts)} backends failed",
            request_id=outcome.request_id,
            headers=cors,
            attempts=shown,
        )

    async def _send_buffered(
        self,
        send: Send,
        response: UpstreamResponse,
        headers: list[Header],
        outcome: _Outcome,
        limit: int,
    ) -> None:
        try:
            body = await response.read(limit)
        except UpstreamError as exc:
            outcome.status, outcome.error = 502, str(exc)
            await send_error(
                send,
                502,
                "The backend broke off its response",
                request_id=outcome.request_id,
                backend=outcome.backend,
                detail=str(exc) if self._debug else None,
            )
            return
        if body is None:
            outcome.status, outcome.error = 502, f"response body over {limit} bytes"
            await send_error(
                send,
                502,
                "The backend's response is larger than a function URL can return "
                f"({limit // (1024 * 1024)} MB)",
                request_id=outcome.request_id,
                backend=outcome.backend,
                headers=[h for h in headers if h[0].startswith(b"access-")],
            )
            return
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _send_streaming(
    send: Send, chunks: AsyncIterator[bytes], status: int, headers: list[Header], outcome: _Outcome
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    try:
        async for chunk in chunks:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        # Headers are gone already: the only honest signal left is to end the connection
        # without completing the body (the ASGI server closes it).
        outcome.error = f"response body broke off: {exc}"
        return
    await send({"type": "http.response.body", "body": b""})


class _OneShotBody:
    """A streamed request body that cannot be sent twice (larger than the route's replay limit)."""

    def __init__(self, head: list[bytes], receive: Receive | None) -> None:
        self._head = head
        self._receive = receive
        self.started = False  # once read, the body is gone: no other target may be tried
        self.client_gone = False  # the client left mid-body: the upstream request was aborted

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        for chunk in self._head:
            yield chunk
        more = self._receive is not None
        while more and self._receive is not None:
            try:
                chunk, more = await _next_chunk(self._receive)
            except ClientDisconnected:
                self.client_gone = True
                raise
            if chunk:
                yield chunk


async def _next_chunk(receive: Receive) -> tuple[bytes, bool]:
    """The next part of the request body and whether more follows."""
    message = await receive()
    if message["type"] == "http.disconnect":
        # Raising (not returning) makes the client abort the upstream request, so the backend
        # never mistakes a truncated upload for a complete one.
        raise ClientDisconnected("client disconnected during the request body")
    return message.get("body", b""), bool(message.get("more_body", False))


async def _request_body(
    receive: Receive, buffered: bool, replay_limit: int | None
) -> bytes | _OneShotBody | None:
    """The request body, read as little as needed.

    * whole already (Lambda), or no fallback possible (`replay_limit` None) and it came in one
      message: bytes;
    * up to `replay_limit` bytes: buffered as bytes, so a fallback can send it again;
    * larger: a one-shot body, forwarded as it arrives and never sent twice.
    """
    first, more = await _next_chunk(receive)
    head: list[bytes] = [first]
    if buffered or (replay_limit is None and not more):
        return head[0] or None
    if replay_limit is None:
        return _OneShotBody(head, receive)
    size = len(head[0])
    while more and size <= replay_limit:
        chunk, more = await _next_chunk(receive)
        head.append(chunk)
        size += len(chunk)
    if more or size > replay_limit:
        return _OneShotBody(head, receive if more else None)
    return b"".join(head) or None


def _failure_kind(exc: UpstreamError) -> Failure:
    if isinstance(exc, UpstreamConnectError):
        return "connect"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    return "protocol"


def _lower_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}


class _Outcome:
    """What happened to one request, for the log line and the metrics."""

    __slots__ = (
        "backend",
        "duration_ms",
        "error",
        "method",
        "path",
        "request_id",
        "route",
        "status",
        "target",
        "timed_out",
    )

    def __init__(self, *, method: str, path: str, request_id: str) -> None:
        self.method, self.path, self.request_id = method, path, request_id
        self.route: str | None = None
        self.target: str | None = None
        self.backend: str | None = None
        self.status = 500
        self.duration_ms = 0.0
        self.error: str | None = None
        self.timed_out = False

    def as_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}
