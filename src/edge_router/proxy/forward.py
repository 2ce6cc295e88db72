"""The data plane: one request through the pipeline, route -> guards -> candidates -> attempts -> deliver.

No framework, no dependency injection: everything a request needs was compiled when the config was
loaded (`config/model.py`), and each stage is a plain call. The app has already run the stages
before routing (framing, preflight); here:

1. route: the first matching route, else 404;
2. the route's guards (`Route.guards`, compiled per route; a route without one pays nothing);
3. candidates: `routing.choose_candidates`, the one decision of where the request may go;
4. attempts: each candidate in turn, while `routing.fallback.may_fall_back` allows another;
5. deliver: the answer relayed (`deliver.py`);
6. record: the outcome written once, as the request's log line and metrics.

Every refusal on the way is a `Refusal`, rendered by the one error path (`send_refusal`). A client
that leaves before its body is complete stops the request (499), and is never held against a backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..config.model import DEFAULT_CORS, Route, RouterConfig, Target
from ..exceptions import (
    ClientDisconnected,
    Refusal,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from ..guards.base import run_guards
from ..http.context import RequestContext
from ..http.headers import InvalidHeader, upstream_request_headers
from ..http.responses import CLIENT_REFUSAL, send_refusal
from ..observability.access_log import RequestRecorder
from ..observability.outcome import RequestOutcome
from ..observability.redact import redact_text
from ..resilience.breaker import Verdict
from ..resilience.budget import RetryBudget
from ..resilience.tracker import BackendTracker
from ..routing.candidates import Candidates, choose_candidates, upstream_parts
from ..routing.fallback import Failure, is_failure_status, may_fall_back
from ..routing.header_routing import HeaderRouting
from ..routing.match import match_route
from ..settings import Settings
from ..types import Header, Receive, Send
from ..upstream.base import Upstream
from ..upstream.lambda_invoke import LambdaInvokeUpstream
from .body import OneShotBody, read_body
from .deliver import LAMBDA_RESPONSE_LIMIT, deliver

logger = logging.getLogger("edge_router.proxy")


class ProxyApp:
    def __init__(
        self,
        *,
        upstream: Upstream,
        recorder: RequestRecorder,
        settings: Settings,
        header_routing: HeaderRouting,
        tracker: BackendTracker | None = None,
        config_error: Callable[[], str | None] = lambda: None,
        lambda_response_limit: int = LAMBDA_RESPONSE_LIMIT,
    ) -> None:
        self._upstream = upstream
        self._tracker = tracker or BackendTracker()
        self._budget = RetryBudget()
        self._recorder = recorder
        self._default_timeout = settings.request_timeout_ms / 1000
        self._debug = settings.debug_errors
        self._lambda_limit = lambda_response_limit
        self._header_routing = header_routing
        self._config_error = config_error  # why no config is loaded (shown with DEBUG_ERRORS only)
        self._lambda_upstreams: dict[str, Upstream] = {}

    async def handle(
        self, ctx: RequestContext, receive: Receive, send: Send, config: RouterConfig | None
    ) -> None:
        """Proxy one request and record its outcome, whatever happens."""
        outcome = RequestOutcome(method=ctx.method, path=ctx.path, request_id=ctx.request_id)
        cors = config.cors_headers if config else DEFAULT_CORS
        self._budget.started()
        try:
            await self._forward(ctx, receive, send, config, outcome, cors)
        except Refusal as refusal:
            outcome.status, outcome.error = refusal.status, refusal.log_error
            await send_refusal(send, refusal, request_id=ctx.request_id, cors=cors, debug=self._debug)
        except ClientDisconnected as exc:
            # Nothing to answer and nothing against the backend: 499 (nginx's "client closed
            # request"), or the status the server refused the request's body with.
            outcome.status = ctx.scope.get(CLIENT_REFUSAL, 499)
            outcome.error = str(exc)
        finally:
            self._budget.finished()
            outcome.duration_ms = (time.perf_counter() - ctx.started) * 1000
            self._recorder.record(outcome)

    async def _forward(
        self,
        ctx: RequestContext,
        receive: Receive,
        send: Send,
        config: RouterConfig | None,
        outcome: RequestOutcome,
        cors: tuple[Header, ...],
    ) -> None:
        if config is None:
            reason = self._config_error()
            raise Refusal(
                503,
                "No valid routing config is loaded",
                log_error="no valid config loaded",
                detail=redact_text(reason) if reason else None,
            )
        route = match_route(config.routes, ctx.path)
        if route is None:
            raise Refusal(404, f"No route matches {ctx.path}")
        outcome.route = route.prefix
        if route.guards and (refusal := await run_guards(route.guards, ctx)) is not None:
            raise refusal
        self._tracker.configure(config)
        candidates = await choose_candidates(
            config, route, ctx, header_routing=self._header_routing, tracker=self._tracker
        )
        if ctx.deadline is None:
            await self._attempts(ctx, receive, send, config, route, candidates, outcome, cors)
            return
        # On Lambda the attempts end before the invocation would: the last one is cut to what is
        # left, and running out of time is the router's own 504, not Lambda's bare 502.
        try:
            async with asyncio.timeout(max(0.0, ctx.deadline - time.monotonic())):
                await self._attempts(ctx, receive, send, config, route, candidates, outcome, cors)
        except TimeoutError:
            outcome.timed_out = True
            raise Refusal(
                504,
                "The backend did not answer before the function's time ran out",
                log_error="deadline: the invocation's remaining time ran out",
                backend=outcome.backend,
            ) from None

    async def _attempts(
        self,
        ctx: RequestContext,
        receive: Receive,
        send: Send,
        config: RouterConfig,
        route: Route,
        candidates: Candidates,
        outcome: RequestOutcome,
        cors: tuple[Header, ...],
    ) -> None:
        targets, gate = candidates.targets, candidates.gate
        failover = len(targets) > 1
        replay_limit = route.replay_limit if failover else None
        body = await read_body(receive, buffered=ctx.buffered, replay_limit=replay_limit)
        replayable = not isinstance(body, OneShotBody)
        if failover and not replayable:
            logger.warning(
                "request body over the replay limit (%d bytes): sent once, no fallback after it was sent",
                route.replay_limit,
                extra={"request_id": ctx.request_id, "route": route.prefix},
            )
        try:
            headers = upstream_request_headers(
                ctx.headers,
                client=ctx.client,
                scheme=ctx.scheme,
                request_id=ctx.request_id,
                via=config.via,
                keep_content_length=not isinstance(body, bytes),
            )
        except InvalidHeader as exc:
            raise Refusal(400, str(exc), log_error=str(exc)) from None
        if failover:
            headers.append(("x-no-fallback", "1"))  # the next router must not fan out again
        parts = upstream_parts(route, ctx.path, ctx.query)
        route_timeout = route.timeout_ms / 1000 if route.timeout_ms else self._default_timeout
        attempts: list[dict[str, Any]] = []
        last_error: UpstreamError | None = None
        budget_spent = False
        for index, target in enumerate(targets):
            last = index == len(targets) - 1
            permit = await self._tracker.acquire(route, target, gate)
            if permit is None:  # its circuit filled up since the gate looked: skip it
                attempts.append({"backend": target.source, "error": "circuit_open"})
                if last:
                    break
                continue
            # Only a fallback after an attempt that may have reached its backend spends the retry
            # budget: after a refused connection (or a skipped circuit) nothing was delivered, so
            # the next target does the request's work once, not twice.
            retry = bool(attempts) and attempts[-1].get("error") not in ("connect", "circuit_open")
            if retry and not self._budget.try_retry(config.retry_budget):
                await self._tracker.release(route, target, permit, Verdict.NEUTRAL)
                budget_spent = True
                logger.warning(
                    "retry budget exhausted: no fallback to %s",
                    target.source,
                    extra={"request_id": ctx.request_id},
                )
                break
            timeout = route_timeout
            if ctx.deadline is not None:
                timeout = max(0.001, min(timeout, ctx.deadline - time.monotonic()))
            url = target.url(*parts)
            outcome.target, outcome.backend = url, target.source
            verdict = Verdict.FAILURE  # unless the attempt says otherwise
            try:
                try:
                    response = await self._upstream_for(target).send(
                        ctx.method, url, [("host", target.host_header), *headers], body, timeout
                    )
                except UpstreamError as exc:
                    if isinstance(body, OneShotBody) and body.client_gone:
                        verdict = Verdict.NEUTRAL
                        raise ClientDisconnected("client disconnected during the request body") from None
                    last_error = exc
                    outcome.upstream_errors += 1
                    failure = _failure_kind(exc)
                    attempts.append({"backend": target.source, "error": failure, "message": str(exc)})
                    body_gone = isinstance(body, OneShotBody) and body.started
                    if (
                        not last
                        and not body_gone
                        and may_fall_back(
                            method=ctx.method,
                            failure=failure,
                            status=None,
                            retry_non_idempotent=route.retry_non_idempotent,
                            body_replayable=replayable,
                        )
                    ):
                        continue
                    break
                verdict = Verdict.FAILURE if response.status >= 500 else Verdict.SUCCESS
                if response.status >= 500:
                    outcome.upstream_errors += 1
                if failover and is_failure_status(response.status):
                    attempts.append({"backend": target.source, "status": response.status})
                    can_retry = not last and may_fall_back(
                        method=ctx.method,
                        failure="status",
                        status=response.status,
                        retry_non_idempotent=route.retry_non_idempotent,
                        body_replayable=replayable,
                    )
                    if can_retry or (last and len(attempts) == len(targets)):
                        response.release()
                        if can_retry:
                            continue
                        break
                errors_before = outcome.upstream_errors
                await deliver(
                    send,
                    response,
                    target,
                    outcome,
                    cors,
                    buffered=ctx.buffered,
                    buffer_limit=self._lambda_limit,
                )
                if outcome.upstream_errors > errors_before:  # the answer broke off on its way
                    verdict = Verdict.FAILURE
                return
            except ClientDisconnected:
                verdict = Verdict.NEUTRAL
                raise
            finally:
                await self._tracker.release(route, target, permit, verdict)
                if retry:
                    self._budget.retry_done()
        refusal = self._failed(attempts, last_error, outcome, route_timeout)
        if budget_spent:
            refusal.message += "; no fallback was tried: the retry budget is spent"
        raise refusal

    def _upstream_for(self, target: Target) -> Upstream:
        if target.function is None:
            return self._upstream
        upstream = self._lambda_upstreams.get(target.function)
        if upstream is None:
            upstream = self._lambda_upstreams[target.function] = LambdaInvokeUpstream(target.function)
        return upstream

    def _failed(
        self,
        attempts: list[dict[str, Any]],
        last_error: UpstreamError | None,
        outcome: RequestOutcome,
        timeout: float,
    ) -> Refusal:
        """The answer when no attempt could be delivered."""
        if len(attempts) > 1:
            return self._all_failed(attempts, outcome)
        backend = outcome.backend
        if last_error is None:  # the one candidate's circuit refused at the last moment
            return Refusal(
                503,
                f"The backend '{backend}' is unavailable: circuit open",
                headers=((b"retry-after", b"1"),),
                log_error="circuit open",
                backend=backend,
            )
        if isinstance(last_error, UpstreamTimeout):
            status, message = 504, f"Backend did not respond within {timeout:g}s"
            outcome.timed_out = True
        elif isinstance(last_error, UpstreamConnectError):
            status, message = 503, f"The requested backend '{backend}' is not responding"
        else:
            status, message = 502, f"The backend '{backend}' broke off the exchange"
        return Refusal(status, message, log_error=str(last_error), detail=str(last_error), backend=backend)

    def _all_failed(self, attempts: list[dict[str, Any]], outcome: RequestOutcome) -> Refusal:
        outcome.timed_out = any(attempt.get("error") == "timeout" for attempt in attempts)
        shown = attempts
        if not self._debug:
            shown = [{key: value for key, value in a.items() if key != "message"} for a in attempts]
        return Refusal(
            502,
            f"All {len(attempts)} backends failed",
            log_error="; ".join(f"{a['backend']}: {a.get('error') or a.get('status')}" for a in attempts),
            attempts=shown,
        )


def _failure_kind(exc: UpstreamError) -> Failure:
    if isinstance(exc, UpstreamConnectError):
        return "connect"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    return "protocol"


__all__ = ["ProxyApp"]
