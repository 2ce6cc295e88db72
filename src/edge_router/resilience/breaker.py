"""The circuit breaker of one backend: a pure state machine on an injected clock (CONTRACT section 7).

Seed 002's names and defaults (`BreakerPolicy`), with its bugs fixed:

* HALF_OPEN admits at most `half_open_attempts` requests *at a time* (the seed counted completed
  ones, so concurrent requests slipped through): a request takes a `Permit` before it contacts the
  backend and gives it back with its verdict;
* `retry_after` is the real time left until the circuit half-opens (the seed hard-coded 60 s);
* a failure is a connection error, a timeout, a broken exchange or a 5xx; a 4xx is a success (the
  backend is alive), a client abort is neither (`Verdict.NEUTRAL`).

CLOSED counts failures in a sliding window of `monitoring_period_s` (the seed's window, where
Envoy's outlier detection counts consecutive ones); `failure_threshold` of them open it. OPEN turns
HALF_OPEN once `open_timeout_s` has passed; `success_threshold` probe successes close it, one probe
failure opens it again for a full `open_timeout_s`, so a flapping backend cannot make it oscillate
faster than that.

Why not Powertools' circuit breaker utility (3.37): it is synchronous and decorator-shaped (one
protected function per circuit), counts consecutive failures and elects a single half-open prober,
where a proxy needs an awaitable permit per attempt, seed 002's windowed count and N concurrent
probes. Its fleet design is kept: failures are counted per instance and only transitions are
shared (`resilience/store.py`), so the healthy path never writes.

Times are wall-clock seconds (`time.time`): the state table shares them between instances.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from ..config.model import BreakerPolicy


class CircuitState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class Verdict(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # says nothing about the backend (a client that left)


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to contact the backend once; hand it back to `release` with the attempt's verdict."""

    probe: bool  # taken while HALF_OPEN: one of the `half_open_attempts` slots
    generation: int  # the circuit's transition count when it was taken


@dataclass(frozen=True, slots=True)
class Transition:
    previous: CircuitState
    state: CircuitState
    at: float


class CircuitBreaker:
    """One backend's breaker. Every method takes `now` (seconds); nothing here does I/O."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = CircuitState.CLOSED
        self.generation = 0  # bumped on every transition; stale permits are told apart by it
        self.failures: deque[float] = deque()  # when each failure in the monitoring window happened
        self.total_failures = 0
        self.successes = 0  # probe successes in this HALF_OPEN round
        self.probes = 0  # probes in flight in this HALF_OPEN round
        self.opened_at: float | None = None
        self.last_failure: float | None = None

    @property
    def next_attempt(self) -> float | None:
        """When an OPEN circuit lets the first probe through."""
        if self.opened_at is None or self.state is CircuitState.CLOSED:
            return None
        return self.opened_at + self.policy.open_timeout_s

    def current(self, now: float) -> CircuitState:
        """The state as a caller sees it now (an OPEN circuit past its timeout is HALF_OPEN)."""
        if self.state is CircuitState.OPEN and now >= (self.next_attempt or now):
            return CircuitState.HALF_OPEN
        return self.state

    def available(self, now: float) -> bool:
        """Whether `acquire` would give a permit now (nothing changes)."""
        state = self.current(now)
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN:
            return False
        probes = self.probes if self.state is CircuitState.HALF_OPEN else 0
        return probes < self.policy.half_open_attempts

    def retry_after(self, now: float) -> float:
        """Seconds until a refused request could be let through (≥ 0)."""
        next_attempt = self.next_attempt
        if self.state is CircuitState.OPEN and next_attempt is not None and now < next_attempt:
            return next_attempt - now
        return 0.0 if self.available(now) else 1.0  # HALF_OPEN and every probe slot taken

    def acquire(self, now: float) -> tuple[Permit | None, Transition | None]:
        """A permit to contact the backend (None: refused), and the transition taking it caused."""
        transition = None
        if self.state is CircuitState.OPEN and self.current(now) is CircuitState.HALF_OPEN:
            transition = self._move(CircuitState.HALF_OPEN, now)
        if self.state is CircuitState.CLOSED:
            return Permit(probe=False, generation=self.generation), transition
        if self.state is CircuitState.HALF_OPEN and self.probes < self.policy.half_open_attempts:
            self.probes += 1
            return Permit(probe=True, generation=self.generation), transition
        return None, transition

    def release(self, permit: Permit, verdict: Verdict, now: float) -> Transition | None:
        """Record the verdict of the attempt `permit` allowed; the transition it caused, if any."""
        current = permit.generation == self.generation
        if permit.probe and current:
            self.probes = max(0, self.probes - 1)
        if verdict is Verdict.FAILURE:
            self.total_failures += 1
            self.last_failure = now
            if not current:
                return None  # an attempt from an earlier round says nothing about this one
            if self.state is CircuitState.HALF_OPEN:
                return self._move(CircuitState.OPEN, now)
            if self.state is CircuitState.CLOSED:
                self.failures.append(now)
                self._forget_old_failures(now)
                if len(self.failures) >= self.policy.failure_threshold:
                    return self._move(CircuitState.OPEN, now)
        elif verdict is Verdict.SUCCESS and current and permit.probe and self.state is CircuitState.HALF_OPEN:
            self.successes += 1
            if self.successes >= self.policy.success_threshold:
                return self._move(CircuitState.CLOSED, now)
        return None

    def reset(self, now: float) -> Transition | None:
        """Close the circuit by hand (`POST /admin/circuit-breaker-reset`)."""
        if self.state is CircuitState.CLOSED:
            self.failures.clear()
            return None
        return self._move(CircuitState.CLOSED, now)

    def adopt(self, state: CircuitState, opened_at: float | None) -> None:
        """Take on a state another instance decided (read from the shared store)."""
        if state is self.state and opened_at == self.opened_at:
            return
        if state is CircuitState.CLOSED:
            self.failures.clear()  # a stale local streak must not re-trip a circuit another closed
        self.state, self.opened_at = state, opened_at
        self.generation += 1
        self.successes = self.probes = 0

    def status(self, now: float) -> dict[str, Any]:
        """What `GET /admin/circuit-breaker-status` shows of this circuit (times as epoch seconds)."""
        self._forget_old_failures(now)
        return {
            "state": str(self.current(now)),
            "failures": len(self.failures),
            "total_failures": self.total_failures,
            "successes": self.successes,
            "last_failure": self.last_failure,
            "next_attempt": self.next_attempt,
        }

    def _forget_old_failures(self, now: float) -> None:
        horizon = now - self.policy.monitoring_period_s
        while self.failures and self.failures[0] <= horizon:
            self.failures.popleft()

    def _move(self, state: CircuitState, now: float) -> Transition:
        previous = self.state
        self.state = state
        self.generation += 1
        self.successes = self.probes = 0
        if state is CircuitState.OPEN:
            self.opened_at = now
        elif state is CircuitState.CLOSED:
            self.failures.clear()
            self.opened_at = None
        return Transition(previous, state, now)
