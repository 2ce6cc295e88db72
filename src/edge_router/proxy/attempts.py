"""The attempts of one exchange: each candidate in turn, while the fallback rules allow another.

`AttemptLoop.run` is policy only (which target next, the circuit's permit, the retry budget);
`_try` makes one attempt at one target and says what came of it (`Tried`), and `failed_answer`
turns attempts that delivered nothing into the one error the client gets.

Only a fallback after an attempt that may have reached its backend spends the retry budget: after
a refused connection (or a skipped circuit) nothing was delivered, so the next target does the
request's work once, not twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..config.model import Route, Target
from ..exceptions import ClientDisconnected, Refusal, UpstreamConnectError, UpstreamError, UpstreamTimeout
from ..http.headers import InvalidHeader, upgrade_asked, upstream_request_headers
from ..resilience.breaker import Permit, Verdict
from ..resilience.budget import RetryBudget
from ..resilience.tracker import BackendTracker
from ..routing.candidates import Candidates, upstream_parts
from ..routing.fallback import is_failure_status, may_fall_back
from ..upstream.base import Upstream, UpstreamResponse
from .body import OneShotBody, RequestBody, read_body
from .deliver import deliver
from .exchange import Attempt, Exchange

logger = logging.getLogger("edge_router.proxy")


@dataclass(slots=True)
class Prepared:
    """What every attempt of one exchange sends: the body, the headers, the URL's parts, the timeout."""

    body: RequestBody
    headers: list[tuple[str, str]]
    parts: tuple[str, str]
    timeout: float
    candidates: int
    route: Route

    @property
    def replayable(self) -> bool:
        return not isinstance(self.body, OneShotBody)

    @property
    def body_gone(self) -> bool:
        """A streamed body that has been read cannot be sent to another target."""
        return isinstance(self.body, OneShotBody) and self.body.started


@dataclass(slots=True)
class Tried:
    """An attempt that delivered nothing: what it was, its error, and whether another may follow."""

    attempt: Attempt
    error: UpstreamError | None
    fall_back: bool


class AttemptLoop:
    def __init__(
        self,
        *,
        upstream_for: Callable[[Target], Upstream],
        tracker: BackendTracker,
        default_timeout_s: float,
        lambda_limit: int,
        debug: bool,
    ) -> None:
        self._upstream_for = upstream_for
        self._tracker = tracker
        self.budget = RetryBudget()
        self._default_timeout_s = default_timeout_s
        self._lambda_limit = lambda_limit
        self._debug = debug

    async def run(self, ex: Exchange, candidates: Candidates) -> None:
        """Deliver one target's answer, or raise the Refusal that says why none could be."""
        config, route = ex.config, ex.route
        assert config is not None and route is not None
        targets, gate = candidates.targets, candidates.gate
        ex.body_started = True
        replay_limit = route.replay_limit if len(targets) > 1 else None
        ctx = ex.ctx
        body = await read_body(
            ex.reader, buffered=ctx.buffered, replay_limit=replay_limit, limit=ctx.body_limit
        )
        prepared = self._prepare(ex, body, targets)
        attempts: list[Attempt] = []
        last_error: UpstreamError | None = None
        budget_spent = False
        for index, target in enumerate(targets):
            permit = await self._tracker.acquire(route, target, gate)
            if permit is None:  # its circuit filled up since the gate looked: skip it
                attempts.append(Attempt(target.source, "circuit_open"))
                continue
            retry = bool(attempts) and attempts[-1].reached_backend
            if retry and not self.budget.try_retry(config.retry_budget):
                await self._tracker.release(route, target, permit, Verdict.NEUTRAL)
                budget_spent = True
                logger.warning(
                    "retry budget exhausted: no fallback to %s",
                    target.source,
                    extra={"request_id": ex.ctx.request_id},
                )
                break
            try:
                tried = await self._try(
                    ex, prepared, target, permit, last=index == len(targets) - 1, earlier=len(attempts)
                )
            finally:
                if retry:
                    self.budget.retry_done()
            if tried is None:
                return
            attempts.append(tried.attempt)
            last_error = tried.error or last_error
            if not tried.fall_back:
                break
        raise self.failed_answer(ex, attempts, last_error, prepared.timeout, budget_spent)

    def _prepare(self, ex: Exchange, body: RequestBody, targets: Sequence[Target]) -> Prepared:
        """What every attempt sends, once the body is read (a plain function: no coroutine)."""
        ctx, config, route = ex.ctx, ex.config, ex.route
        assert config is not None and route is not None
        candidates = len(targets)
        failover = candidates > 1
        if failover and isinstance(body, OneShotBody):
            logger.warning(
                "request body over the replay limit (%d bytes): sent once, no fallback after it was sent",
                route.replay_limit,
                extra={"request_id": ctx.request_id, "route": route.prefix},
            )
        ex.upgrade = _upgrade(ex)
        try:
            headers = upstream_request_headers(
                ctx.headers,
                client=ctx.client,
                scheme=ctx.scheme,
                request_id=ctx.request_id,
                via=config.via,
                keep_content_length=not isinstance(body, bytes),
                hidden=ctx.hidden_headers,
                utf8_only=any(target.function is not None for target in targets),
                upgrade=ex.upgrade,
            )
        except InvalidHeader as exc:
            raise Refusal(400, str(exc), log_error=str(exc)) from None
        if failover:
            headers.append(("x-no-fallback", "1"))  # the next router must not fan out again
        if ex.tap is not None and ex.tap.upstream_headers:
            headers += ex.tap.upstream_headers  # the cache revalidating its stored answer
        timeout = route.timeout_ms / 1000 if route.timeout_ms else self._default_timeout_s
        ex.idle_timeout = timeout
        parts = upstream_parts(route, ctx.path, ctx.query)
        return Prepared(body, headers, parts, timeout, candidates, route)

    async def _try(
        self, ex: Exchange, prepared: Prepared, target: Target, permit: Permit, *, last: bool, earlier: int
    ) -> Tried | None:
        """One attempt at `target`: None once its answer is delivered, else what it was."""
        verdict = Verdict.FAILURE  # unless the attempt says otherwise
        try:
            try:
                response = await self._send(ex, prepared, target)
            except UpstreamError as exc:
                if isinstance(prepared.body, OneShotBody):
                    verdict = Verdict.NEUTRAL
                    prepared.body.stopped()  # raises when the client left or the body grew too large
                    verdict = Verdict.FAILURE
                return self._upstream_failed(ex, prepared, target, exc, last=last)
            verdict = Verdict.FAILURE if response.status >= 500 else Verdict.SUCCESS
            if response.status >= 500:
                ex.outcome.upstream_errors += 1
            if prepared.candidates > 1 and is_failure_status(response.status):
                tried = self._failure_status(ex, prepared, target, response, last=last, earlier=earlier)
                if tried is not None:
                    return tried
            errors_before = ex.outcome.upstream_errors
            try:
                await deliver(ex, response, target, buffer_limit=self._lambda_limit)
            finally:
                if ex.outcome.upstream_errors > errors_before:  # the answer broke off on its way
                    verdict = Verdict.FAILURE
            return None
        except ClientDisconnected:
            verdict = Verdict.NEUTRAL
            raise
        finally:
            await self._tracker.release(prepared.route, target, permit, verdict)

    def _send(self, ex: Exchange, prepared: Prepared, target: Target) -> Awaitable[UpstreamResponse]:
        """The attempt's upstream request (a plain function: one coroutine less per attempt)."""
        timeout = prepared.timeout
        if ex.ctx.deadline is not None:
            timeout = max(0.001, min(timeout, ex.ctx.deadline - time.monotonic()))
        url = target.url(*prepared.parts)
        ex.outcome.target, ex.outcome.backend = url, target.source
        headers = [("host", target.host_header), *prepared.headers]
        interim = None if ex.ctx.buffered else ex.relay_interim  # 1xx answers, where the host relays them
        return self._upstream_for(target).send(
            ex.ctx.method, url, headers, prepared.body, timeout, interim=interim
        )

    def _upstream_failed(
        self, ex: Exchange, prepared: Prepared, target: Target, exc: UpstreamError, *, last: bool
    ) -> Tried:
        ex.outcome.upstream_errors += 1
        failure = failure_kind(exc)
        fall_back = (
            not last
            and not prepared.body_gone
            and may_fall_back(
                method=ex.ctx.method,
                failure=failure,
                status=None,
                retry_non_idempotent=prepared.route.retry_non_idempotent,
                body_replayable=prepared.replayable,
            )
        )
        return Tried(Attempt(target.source, failure, message=str(exc)), exc, fall_back)

    def _failure_status(
        self,
        ex: Exchange,
        prepared: Prepared,
        target: Target,
        response: UpstreamResponse,
        *,
        last: bool,
        earlier: int,
    ) -> Tried | None:
        """A pool's 404/5xx answer: the next target, or the 502 once every one answered so, instead
        of delivering it. None: deliver it (no other may be tried and not every candidate answered)."""
        can_retry = not last and may_fall_back(
            method=ex.ctx.method,
            failure="status",
            status=response.status,
            retry_non_idempotent=prepared.route.retry_non_idempotent,
            body_replayable=prepared.replayable,
        )
        if not can_retry and not (last and earlier + 1 == prepared.candidates):
            return None
        response.release()
        return Tried(Attempt(target.source, status=response.status), None, can_retry)

    def failed_answer(
        self,
        ex: Exchange,
        attempts: list[Attempt],
        last_error: UpstreamError | None,
        timeout: float,
        budget_spent: bool,
    ) -> Refusal:
        """The answer when no attempt could be delivered."""
        outcome = ex.outcome
        if len(attempts) > 1:
            outcome.timed_out = any(attempt.error == "timeout" for attempt in attempts)
            refusal = Refusal(
                502,
                f"All {len(attempts)} backends failed",
                log_error="; ".join(attempt.summary() for attempt in attempts),
                attempts=[attempt.shown(self._debug) for attempt in attempts],
            )
        else:
            refusal = _single_failure(outcome.backend, last_error, timeout)
            outcome.timed_out = isinstance(last_error, UpstreamTimeout)
        if budget_spent:
            refusal.message += "; no fallback was tried: the retry budget is spent"
        return refusal


def _upgrade(ex: Exchange) -> str | None:
    """The protocol the request asks to upgrade to, when its host can splice the connection; a
    host that cannot (a function URL) answers 501."""
    asked = upgrade_asked(ex.ctx.headers)
    if asked is not None and ex.answer.upgrade is None:
        raise Refusal(
            501,
            "Upgrading the connection (WebSocket) is not available here: Lambda function URLs cannot "
            "upgrade; run the router as a server (edge-router serve) for WebSocket routes",
            log_error="upgrade asked where the host cannot splice",
        )
    return asked


def _single_failure(backend: str | None, last_error: UpstreamError | None, timeout: float) -> Refusal:
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
    elif isinstance(last_error, UpstreamConnectError):
        status, message = 503, f"The requested backend '{backend}' is not responding"
    else:
        status, message = 502, f"The backend '{backend}' broke off the exchange"
    return Refusal(status, message, log_error=str(last_error), detail=str(last_error), backend=backend)


def failure_kind(exc: UpstreamError) -> Literal["connect", "timeout", "protocol"]:
    if isinstance(exc, UpstreamConnectError):
        return "connect"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    return "protocol"
