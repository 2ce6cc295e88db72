"""The data plane: one request through the pipeline, route -> guards -> candidates -> attempts -> deliver.

No framework, no dependency injection: everything a request needs was compiled when the config was
loaded (`config/model.py`), and each stage is a plain call. The app has already run the stages
before routing (framing, preflight); here:

1. route: the first matching route, else 404;
2. the route's guards (`Route.guards`, compiled per route; a route without one pays nothing);
   then its cache (`caching.py`, only on a route with a `cache` or `deduplication` block), which
   may answer here, or sends the request on with a tap that keeps a copy of the answer;
3. candidates: `routing.choose_candidates`, the one decision of where the request may go;
4. attempts: each candidate in turn, while `routing.fallback.may_fall_back` allows another
   (`attempts.py`);
5. deliver: the answer relayed (`deliver.py`);
6. record: the outcome written once, as the request's log line and metrics.

Every refusal on the way is a `Refusal`, rendered by the one error path (`send_refusal`). A client
that leaves before its body is complete stops the request (499), and is never held against a backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..cache.flights import Coalescer
from ..cache.store import ResponseCache
from ..config.model import Route, RouterConfig, Target
from ..exceptions import ClientDisconnected, Refusal
from ..guards.base import run_guards
from ..guards.cors import DEFAULT_POLICY
from ..http.channel import AnswerWriter, BodyReader
from ..http.context import RequestContext
from ..http.headers import upgrade_asked
from ..http.responses import send_refusal
from ..observability.access_log import RequestRecorder
from ..observability.outcome import RequestOutcome
from ..observability.redact import redact_text
from ..resilience.tracker import BackendTracker
from ..routing.candidates import choose_candidates
from ..routing.header_routing import HeaderRouting
from ..routing.match import match_route
from ..settings import Settings
from ..upstream.base import Upstream
from ..upstream.lambda_invoke import LambdaInvokeUpstream
from .attempts import AttemptLoop
from .body import discard
from .caching import CacheStage
from .deliver import LAMBDA_RESPONSE_LIMIT
from .exchange import Exchange


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
        cache: CacheStage | None = None,
    ) -> None:
        self.cache = cache or CacheStage(ResponseCache(), Coalescer())
        self._upstream = upstream
        self._tracker = tracker or BackendTracker()
        self._recorder = recorder
        self._debug = settings.debug_errors
        self._header_routing = header_routing
        self._config_error = config_error  # why no config is loaded (shown with DEBUG_ERRORS only)
        self._lambda_upstreams: dict[str, Upstream] = {}
        self._attempts = AttemptLoop(
            upstream_for=self._upstream_for,
            tracker=self._tracker,
            default_timeout_s=settings.request_timeout_ms / 1000,
            lambda_limit=lambda_response_limit,
            debug=settings.debug_errors,
        )

    async def handle(
        self, ctx: RequestContext, reader: BodyReader, answer: AnswerWriter, config: RouterConfig | None
    ) -> None:
        """Proxy one request and record its outcome, whatever happens."""
        outcome = RequestOutcome(method=ctx.method, path=ctx.path, request_id=ctx.request_id)
        ex = Exchange(ctx, reader, answer, config, outcome, config.cors if config else DEFAULT_POLICY)
        budget = self._attempts.budget
        budget.started()
        try:
            route = self._route(ex)
            if route.guards and (refusal := await run_guards(route.guards, ctx)) is not None:
                raise refusal
            if route.caching is None or upgrade_asked(ctx.headers) is not None:
                await self._to_backends(ex)  # an upgrade is never cached nor coalesced
            else:
                await self.cache.serve(ex, route.caching, self._to_backends)
        except Refusal as refusal:
            outcome.status, outcome.error = refusal.status, refusal.log_error
            outcome.rate_limited = refusal.status == 429  # the router's only 429 is its rate limit
            if not ctx.buffered and _body_unread(ex, refusal):
                await discard(reader)
            await send_refusal(
                answer, refusal, request_id=ctx.request_id, cors=ex.answer_headers(), debug=self._debug
            )
        except ClientDisconnected as exc:
            # Nothing to answer and nothing against the backend: 499 (nginx's "client closed
            # request"), or the status the server refused the request's body with.
            outcome.status = reader.refused or 499
            outcome.error = str(exc)
        finally:
            budget.finished()
            outcome.duration_ms = (time.perf_counter() - ctx.started) * 1000
            self._recorder.record(outcome)

    def _route(self, ex: Exchange) -> Route:
        """The route the request matched (a plain function: the stages after it are awaited
        from `handle`, so an unguarded, uncached route costs one coroutine, as before)."""
        ctx, config = ex.ctx, ex.config
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
        ex.route, ex.cors, ex.outcome.route = route, route.cors or config.cors, route.prefix
        return route

    async def _to_backends(self, ex: Exchange) -> None:
        """Candidates, then attempts: the request goes to a backend."""
        ctx, config, route = ex.ctx, ex.config, ex.route
        assert config is not None and route is not None
        candidates = await choose_candidates(
            config, route, ctx, header_routing=self._header_routing, tracker=self._tracker
        )
        if ctx.deadline is None:
            await self._attempts.run(ex, candidates)
            return
        # On Lambda the attempts end before the invocation would: the last one is cut to what is
        # left, and running out of time is the router's own 504, not Lambda's bare 502.
        try:
            async with asyncio.timeout(max(0.0, ctx.deadline - time.monotonic())):
                await self._attempts.run(ex, candidates)
        except TimeoutError:
            ex.outcome.timed_out = True
            raise Refusal(
                504,
                "The backend did not answer before the function's time ran out",
                log_error="deadline: the invocation's remaining time ran out",
                backend=ex.outcome.backend,
            ) from None

    def _upstream_for(self, target: Target) -> Upstream:
        if target.function is None:
            return self._upstream
        upstream = self._lambda_upstreams.get(target.function)
        if upstream is None:
            upstream = self._lambda_upstreams[target.function] = LambdaInvokeUpstream(target.function)
        return upstream


def _body_unread(ex: Exchange, refusal: Refusal) -> bool:
    """Whether a refused request's body is still (partly) unread: then it is read and dropped,
    bounded, before the answer, so that closing the connection cannot reset the answer away."""
    if refusal.body_pending is not None:
        return refusal.body_pending
    if ex.body_started:
        return False
    length = ex.ctx.header("content-length")
    return (length is not None and length.strip() not in ("", "0")) or (
        ex.ctx.header("transfer-encoding") is not None
    )


__all__ = ["ProxyApp"]
