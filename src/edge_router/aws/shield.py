"""`StoreShield`: what a shared dependency (the state table) may cost a request — a small budget,
once — and a failing one remembered (backed off) instead of retried on every request.

    shield = StoreShield("DynamoDB table 'state'")
    value = await shield.call(lambda: store.read_something(), budget_s=0.25)
    shield.start(lambda: store.refresh_something())  # beside the request, never awaited by it

* `call` runs the coroutine `make()` returns and waits for it at most `budget_s`. An answer within
  the budget is returned; a `StateStoreError` or a budget overrun is raised as `StateStoreError`,
  and the dependency is *backed off*: for the next `backoff_s` (1 s, doubled after each failed
  trial, at most `max_backoff_s` 30 s) every `call` raises `BackedOff` (a `StateStoreError`) at
  once, without touching the dependency. The caller decides what that means (fail open, or 503).
* Once the backoff has passed, the next `call` still fails fast, but starts one *trial* call in the
  background (never awaited by a request); its answer ends the backoff, its failure doubles it.
  So while the table hangs only the first request ever waits (its budget), and a recovered table
  is used again within one backoff period. At most one trial runs at a time. A `make` may apply
  what it reads itself (the tracker's do): then even an overrun call or a trial is not wasted
  when it does answer.
* `start` is for work no request waits for (a refresh ahead of need): it runs as a task the shield
  keeps, with no budget (nobody waits for it); its failure (botocore's own timeouts end a hung
  call) counts like any other and is logged, never raised into nothing.
* Time is only what a request waits. On Lambda the event loop stops between invocations and the
  process may stay frozen for minutes: a timer running across that gap fires as soon as the loop
  runs again, so a budget on a call that outlives its invocation, or a trial judged by how long
  it took, would count a freeze as a failure. Hence no budget in `start`, and a trial judged only
  by its outcome. (A table slower than the budget thus costs at most one request's budget per
  backoff period, and only a request that had to wait for it.)
* An overrun call is not cancelled (boto3 runs in a worker thread, which cannot be); it finishes or
  fails on its own, within botocore's own timeouts, and its outcome is only logged. Concurrent
  calls that fail together count as one failure, not one doubling each.
* `aclose()` cancels whatever still runs (server shutdown, the end of a test), so no task is left
  pending when the loop closes.

Why by hand: a circuit breaker in `resilience.breaker` counts failures over a window for a backend
it still sends requests to; here one failure is enough to stop waiting, and what matters is a
bounded wait plus a background re-check, which no library in the dependency set offers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..exceptions import StateStoreError

logger = logging.getLogger("edge_router.resilience")

T = TypeVar("T")

DEFAULT_BUDGET_S = 0.25  # a healthy DynamoDB call takes a few ms; a request waits at most this once
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


class BackedOff(StateStoreError):
    """`StoreShield.call` failed fast: the dependency failed recently and was not touched."""


class StoreShield:
    def __init__(
        self,
        what: str,
        *,
        budget_s: float = DEFAULT_BUDGET_S,
        backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if budget_s <= 0 or backoff_s <= 0 or max_backoff_s < backoff_s:
            raise ValueError("budget_s and backoff_s must be > 0, and max_backoff_s >= backoff_s")
        self.what = what
        self.budget_s = budget_s
        self._first_backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._backoff_s = 0.0  # 0: healthy
        self._until = 0.0  # backed off until this clock value
        self._trial: asyncio.Future[Any] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()  # every call still running
        self.last_error: str | None = None

    @property
    def backed_off(self) -> bool:
        """Whether calls currently fail fast."""
        return self._backoff_s > 0

    @property
    def backoff_s(self) -> float:
        """The current backoff period (0 while healthy)."""
        return self._backoff_s

    async def call(self, make: Callable[[], Awaitable[T]], *, budget_s: float | None = None) -> T:
        """`make()`'s answer within the budget, else StateStoreError (see the module docstring)."""
        budget = budget_s or self.budget_s
        if self._backoff_s > 0:
            self._maybe_trial(make)
            raise BackedOff(f"{self.what}: backed off after a failure ({self.last_error})")
        return await self._wait(self._track(make()), budget)

    def start(self, make: Callable[[], Awaitable[Any]]) -> None:
        """Run `make()` in the background, with no budget: a failure is counted and logged. While
        backed off, nothing runs (but the trial may start). `make()` is called at once (so what it
        marks as under way is marked before this returns)."""
        if self._backoff_s > 0:
            self._maybe_trial(make)
            return
        self._track(self._background(self._track(make()))).add_done_callback(self._report)

    async def _wait(self, task: asyncio.Future[T], budget: float) -> T:
        try:
            return await asyncio.wait_for(asyncio.shield(task), budget)
        except TimeoutError:
            task.add_done_callback(self._report)  # it goes on alone: its outcome is only logged
            self._failed(f"no answer within {budget * 1000:.0f} ms")
            raise StateStoreError(f"{self.what}: no answer within {budget * 1000:.0f} ms") from None
        except StateStoreError as exc:
            self._failed(str(exc))
            raise

    async def aclose(self) -> None:
        """Cancel every call still running on this loop (the others' loops are gone)."""
        loop = asyncio.get_running_loop()
        mine = [task for task in self._tasks if task.get_loop() is loop]
        self._tasks.clear()
        self._trial = None
        for task in mine:
            task.cancel()
        await asyncio.gather(*mine, return_exceptions=True)

    async def _background(self, call: asyncio.Future[Any]) -> None:
        try:
            await call
        except StateStoreError as exc:
            self._failed(str(exc))  # logged (a warning) when it begins an outage
            logger.debug("%s: a background call failed: %s", self.what, exc)

    def _track(self, awaitable: Awaitable[T]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _maybe_trial(self, make: Callable[[], Awaitable[Any]]) -> None:
        if self._trial is not None and not self._trial.get_loop().is_closed():
            return
        if self._clock() < self._until:
            return
        self._trial = trial = self._track(make())
        trial.add_done_callback(self._trial_done)

    def _trial_done(self, trial: asyncio.Future[Any]) -> None:
        if self._trial is trial:
            self._trial = None
        if trial.cancelled():
            return
        exc = trial.exception()
        if exc is None:
            if self._backoff_s:
                logger.info("%s answers again", self.what)
            self._backoff_s, self.last_error = 0.0, None
            return
        if not isinstance(exc, StateStoreError):
            logger.error("%s: a trial call failed unexpectedly", self.what, exc_info=exc)
        self._failed(str(exc), trial=True)

    def _failed(self, reason: str, *, trial: bool = False) -> None:
        if self._backoff_s > 0 and not trial:
            return  # a call begun before the backoff: this failure is already counted
        first = self._backoff_s == 0
        self._backoff_s = self._first_backoff_s if first else min(self._backoff_s * 2, self._max_backoff_s)
        self._until = self._clock() + self._backoff_s
        self.last_error = reason
        if first:
            logger.warning("%s failed (%s): backed off, requests go on without it", self.what, reason)

    def _report(self, task: asyncio.Future[Any]) -> None:
        """Log the outcome of a call nobody awaits any more."""
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, StateStoreError):
            logger.debug("%s: a call nobody waits for failed: %s", self.what, exc)
        elif exc is not None:
            logger.error("%s: a call failed unexpectedly", self.what, exc_info=exc)
