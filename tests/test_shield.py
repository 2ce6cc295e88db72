"""`StoreShield` (aws/shield.py): what a request may wait for the state table, and how a failing
table is remembered. A fake dependency (a coroutine that answers, fails or hangs) and a clock the
test moves by hand; the budget itself is real time (asyncio), kept small."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from edge_router.aws.shield import BackedOff, StoreShield
from edge_router.exceptions import StateStoreError
from support import Clock, run

BUDGET_S = 0.05


class Dependency:
    """The table, as the shield sees it: `make()` starts one call, which answers as `mode` says."""

    def __init__(self, clock: Clock, mode: str = "answer") -> None:
        self.clock = clock
        self.mode = mode
        self.calls = 0
        self.finished = 0  # calls that ran to their end (answered or failed), not cancelled
        self.takes_s = 0.0  # what a call moves the clock by (a slow answer, in the shield's time)
        self.release = asyncio.Event()  # a hanging call waits for this

    def make(self) -> Awaitable[str]:
        self.calls += 1
        return self._call(self.mode)

    async def _call(self, mode: str) -> str:
        self.clock.now += self.takes_s
        if mode.startswith("hang"):
            await self.release.wait()
        if mode == "thread":  # boto3's way: the answer comes from a worker thread
            await asyncio.to_thread(time.sleep, 0.02)
        self.finished += 1
        if mode in ("fail", "hang, then fail"):
            raise StateStoreError("ThrottlingException: rate exceeded")
        if mode == "bug":
            raise KeyError("a bug in the caller's make")
        return "answer"


def shielded(
    test: Callable[[StoreShield, Dependency, Clock], Awaitable[None]], *, max_backoff_s: float = 30.0
) -> None:
    clock = Clock()
    shield = StoreShield("the table", budget_s=BUDGET_S, max_backoff_s=max_backoff_s, clock=clock)

    async def body() -> None:
        dependency = Dependency(clock)
        try:
            await test(shield, dependency, clock)
        finally:
            dependency.release.set()
            await shield.aclose()

    run(body())


async def settle() -> None:
    """Let the background tasks the shield started run to their end."""
    for _ in range(50):  # each hop (task, shield, wait_for, callbacks) takes a turn of the loop
        await asyncio.sleep(0)


async def back_off(shield: StoreShield, dependency: Dependency) -> None:
    """Make the dependency fail once, so the shield backs it off."""
    dependency.mode = "fail"
    with pytest.raises(StateStoreError):
        await shield.call(dependency.make)
    assert shield.backed_off


def test_an_answer_within_the_budget_is_returned_and_nothing_backs_off() -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        assert await shield.call(dependency.make) == "answer"
        assert await shield.call(dependency.make) == "answer"
        assert (dependency.calls, shield.backed_off) == (2, False)

    shielded(test)


def test_a_hanging_call_costs_the_budget_once_then_calls_fail_fast_without_touching_it() -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        dependency.mode = "hang"
        started = time.monotonic()
        with pytest.raises(StateStoreError, match="no answer within 50 ms") as overrun:
            await shield.call(dependency.make)
        waited = time.monotonic() - started
        assert BUDGET_S * 0.8 <= waited < 1.0
        assert not isinstance(overrun.value, BackedOff)
        assert shield.backed_off and shield.backoff_s == 1.0
        started = time.monotonic()
        for _ in range(100):
            with pytest.raises(BackedOff, match="backed off"):
                await shield.call(dependency.make)
        assert time.monotonic() - started < BUDGET_S  # a hundred calls cost less than one wait
        assert dependency.calls == 1  # none of them reached the dependency
        dependency.release.set()  # the overrun call was not cancelled: it ends on its own
        await settle()
        assert dependency.finished == 1

    shielded(test)


def test_a_failing_call_backs_off_too_and_is_raised_as_itself() -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        dependency.mode = "fail"
        with pytest.raises(StateStoreError, match="ThrottlingException"):
            await shield.call(dependency.make)
        assert shield.backed_off and "ThrottlingException" in (shield.last_error or "")
        with pytest.raises(BackedOff, match="ThrottlingException"):
            await shield.call(dependency.make)
        assert dependency.calls == 1

    shielded(test)


def test_after_the_backoff_a_call_still_fails_fast_but_starts_one_background_trial() -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        await back_off(shield, dependency)
        dependency.mode = "hang"
        clock.now += 0.99
        with pytest.raises(BackedOff):
            await shield.call(dependency.make)
        assert dependency.calls == 1  # not yet: the backoff lasts 1 s
        clock.now += 0.01
        started = time.monotonic()
        for _ in range(10):
            with pytest.raises(BackedOff):
                await shield.call(dependency.make)
        assert time.monotonic() - started < BUDGET_S  # nobody waited for the trial
        await settle()
        assert dependency.calls == 2  # one trial, however many calls came while it ran

    shielded(test)


def test_a_trial_that_answers_within_the_budget_ends_the_backoff() -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        await back_off(shield, dependency)
        dependency.mode = "answer"
        clock.now += 1.0
        with pytest.raises(BackedOff):
            await shield.call(dependency.make)  # starts the trial
        await settle()
        assert not shield.backed_off and shield.last_error is None
        assert await shield.call(dependency.make) == "answer"  # waited for again, as before
        assert dependency.calls == 3

    shielded(test)


def test_each_failed_trial_doubles_the_backoff_up_to_the_maximum() -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        await back_off(shield, dependency)
        seen = [shield.backoff_s]
        for _ in range(4):
            clock.now += shield.backoff_s
            with pytest.raises(BackedOff):
                await shield.call(dependency.make)
            await settle()
            seen.append(shield.backoff_s)
        assert seen == [1.0, 2.0, 4.0, 5.0, 5.0]
        with pytest.raises(BackedOff):  # no trial before the (doubled) backoff has passed
            clock.now += 4.9
            await shield.call(dependency.make)
        assert dependency.calls == 5

    shielded(test, max_backoff_s=5.0)


def test_a_trial_is_judged_by_its_answer_not_by_how_long_it_took() -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        await back_off(shield, dependency)
        dependency.mode, dependency.takes_s = "answer", 600.0  # a Lambda freeze between start and end
        clock.now += 1.0
        with pytest.raises(BackedOff):
            await shield.call(dependency.make)
        await settle()
        assert not shield.backed_off

    shielded(test)


def test_calls_that_fail_together_count_as_one_failure() -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        dependency.mode = "hang"
        outcomes = await asyncio.gather(
            *(shield.call(dependency.make) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(outcome, StateStoreError) for outcome in outcomes)
        assert shield.backoff_s == 1.0  # not 2 ** 4

    shielded(test)


def test_a_background_call_is_never_awaited_and_its_failure_is_counted_not_raised() -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        dependency.mode = "hang, then fail"
        started = time.monotonic()
        shield.start(dependency.make)
        assert time.monotonic() - started < BUDGET_S
        await asyncio.sleep(BUDGET_S * 2)
        assert not shield.backed_off  # nobody waits for it: no budget to overrun
        dependency.release.set()  # botocore gives up on it
        await settle()
        assert shield.backed_off and "ThrottlingException" in (shield.last_error or "")
        shield.start(dependency.make)  # backed off: nothing runs
        assert dependency.calls == 1

    shielded(test)


def test_a_background_call_that_answered_while_the_loop_was_stopped_is_no_failure() -> None:
    """On Lambda the loop runs only during an invocation (Mangum's `run_until_complete`) and the
    process may be frozen between two: a call begun in one invocation is seen to end in the next."""
    clock = Clock()
    shield = StoreShield("the table", budget_s=BUDGET_S, clock=clock)
    dependency = Dependency(clock, mode="thread")
    loop = asyncio.new_event_loop()
    try:

        async def invocation() -> None:
            shield.start(dependency.make)

        loop.run_until_complete(invocation())  # ends with the call under way in its worker thread
        time.sleep(BUDGET_S * 4)  # between invocations: the thread answers, the loop stands still
        loop.run_until_complete(settle())  # the next invocation
        assert dependency.finished == 1 and not shield.backed_off
        loop.run_until_complete(shield.aclose())
    finally:
        loop.close()


def test_a_bug_in_a_background_call_is_logged_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        dependency.mode = "bug"
        with caplog.at_level(logging.ERROR, logger="edge_router.resilience"):
            shield.start(dependency.make)
            await settle()
        assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [KeyError]
        assert not shield.backed_off  # a bug is not the table failing

    shielded(test)


def test_aclose_leaves_nothing_running() -> None:
    async def test(shield: StoreShield, dependency: Dependency, clock: Clock) -> None:
        dependency.mode = "hang"
        with pytest.raises(StateStoreError):
            await shield.call(dependency.make)  # overran, still running
        clock.now += 1.0
        with pytest.raises(BackedOff):
            await shield.call(dependency.make)  # a trial, running too
        await shield.aclose()
        pending: list[Any] = [
            task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done()
        ]
        assert pending == [] and dependency.finished == 0

    shielded(test)


def test_budgets_and_backoffs_must_be_positive() -> None:
    for kwargs in ({"budget_s": 0}, {"backoff_s": 0}, {"backoff_s": 2.0, "max_backoff_s": 1.0}):
        with pytest.raises(ValueError, match="must be > 0"):
            StoreShield("the table", **kwargs)
