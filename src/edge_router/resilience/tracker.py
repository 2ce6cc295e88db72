"""What the router remembers of each backend: its circuit and its health (CONTRACT section 7).

One `BackendTracker` per router. `routing.candidates` asks it which candidates to keep (`gate`);
the attempt loop takes a permit before each attempt and hands back the attempt's verdict
(Envoy's outlier detection, fed by every attempt); the health monitor writes probe results into it.

* A backend has a circuit breaker when a route that reaches it has one (`Route.breaker`: pools and
  the priority format by default); every route to that backend then honours and feeds it. The
  policy is the first such route's, in config order.
* Pools skip backends that are unhealthy or whose circuit refuses; when that leaves nothing, every
  candidate is tried anyway, in order (fail open), and that is logged. A single backend chosen
  explicitly (one target, or `x-backend`) is refused with 503 and `Retry-After` instead, without
  being contacted.
* With a shared store (STATE_TABLE), circuits are read through a cache of `circuit_cache_s` (5 s)
  and transitions written with conditional writes; health through a cache of `health_cache_s`
  (30 s). A store error is logged and routing goes on with what this instance knows.

The state table never holds a request up. Every call to it goes through one `StoreShield` (one per
table: pass the process's, so that a hang seen here also backs off the rate-limit and key stores):
* Reads are refreshed beside the requests, as `config/cache.py` refreshes the config: once a read
  is `REFRESH_AT` (80 %) through its cache life, the next request starts a new one in the
  background and routes with what it knows. A request waits for a read only when what it knows is
  older than the cache allows (a backend's first read, or after an idle spell; the contract's
  "every instance honours an OPEN circuit within 5 s" stays a bound), and then at most the
  shield's budget (0.25 s) in all. A read already under way is never started again: a request
  that needs it waits for that one (through the shield, so a read that hangs backs the table off
  whoever started it). A read nobody waits for any more still applies its answer when it comes.
  On Lambda a refresh begun beside one invocation's request answers while the process is frozen
  and serves the next invocation; it has no budget of its own, so a freeze is never taken for a
  hang (see `shield.py`).
* A transition is written through the shield too: a failure (or a backed-off table) is logged and
  the circuit kept in this instance.
* A table that failed is backed off: calls fail fast (no I/O, logged at debug) until the shield's
  background trial finds it answering again. So with a hanging table the first request waits its
  budget, and the ones after it wait for nothing.
* `aclose()` ends the background work (server shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ..aws.shield import BackedOff, StoreShield
from ..config.model import BreakerPolicy, HealthPolicy, Route, RouterConfig, Target
from ..exceptions import Refusal, StateStoreError
from .breaker import CircuitBreaker, CircuitState, Permit, Transition, Verdict
from .health import HealthStatus, next_probe_in
from .store import CircuitRecord, HealthSnapshot, LocalStateStore, StateStore

logger = logging.getLogger("edge_router.resilience")

REFRESH_AT = 0.8  # a cached read is refreshed in the background this far through its life


@dataclass(frozen=True, slots=True)
class Gate:
    """The candidates to try, in order, and what was skipped and why (for `explain` and the log)."""

    targets: tuple[Target, ...]
    skipped: tuple[tuple[Target, str], ...] = ()
    fail_open: bool = False  # every candidate was skipped, so all are tried anyway
    forced: frozenset[str] = field(default_factory=frozenset)  # tried without a permit (fail open)


class BackendTracker:
    def __init__(
        self,
        *,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        circuit_cache_s: float = 5.0,
        health_cache_s: float = 30.0,
        shield: StoreShield | None = None,
    ) -> None:
        self.store: StateStore = store or LocalStateStore()
        self.shared = store is not None and not isinstance(store, LocalStateStore)
        self.shield = shield or StoreShield("the state table")
        self.clock = clock
        self._circuit_cache_s = circuit_cache_s
        self._health_cache_s = health_cache_s
        self.breakers: dict[str, CircuitBreaker] = {}
        self._versions: dict[str, int] = {}  # the shared version of each circuit last seen
        self._circuits_read: dict[str, float] = {}  # when each circuit's last good read began
        self._reading: dict[str, asyncio.Future[None]] = {}  # the read under way for a circuit
        self.health: dict[str, HealthStatus] = {}
        self.health_snapshot: HealthSnapshot | None = None
        self._health_read = -math.inf
        self._health_reading: asyncio.Future[None] | None = None
        self._config: RouterConfig | None = None
        self._policies: dict[str, BreakerPolicy] = {}
        self._health_policies: dict[str, HealthPolicy] = {}

    # -- configuration --------------------------------------------------------------------------

    def configure(self, config: RouterConfig) -> None:
        """Take the breaker and health policies of a (new) config; state is kept across configs."""
        if config is self._config:
            return
        self._config = config
        policies: dict[str, BreakerPolicy] = {}
        for route in config.routes:
            if route.breaker is not None:
                for target in _all_targets(route):
                    policies.setdefault(target.source, route.breaker)
        self._policies = policies
        for backend, breaker in self.breakers.items():
            if backend in policies:
                breaker.policy = policies[backend]
        self._health_policies = {
            backend: entry.health for backend, entry in config.backends.items() if entry.health is not None
        }

    def policy_for(self, route: Route, target: Target) -> BreakerPolicy | None:
        return self._policies.get(target.source) or route.breaker

    def breaker_for(self, route: Route, target: Target) -> CircuitBreaker | None:
        policy = self.policy_for(route, target)
        if policy is None:
            return self.breakers.get(target.source)
        breaker = self.breakers.get(target.source)
        if breaker is None:
            breaker = self.breakers[target.source] = CircuitBreaker(policy)
        return breaker

    def health_policy(self, backend: str) -> HealthPolicy | None:
        return self._health_policies.get(backend) or (self._config.health if self._config else None)

    # -- the gate (routing.candidates) ----------------------------------------------------------

    async def gate(self, route: Route, targets: tuple[Target, ...], *, explicit: bool) -> Gate:
        """Which of `targets` to try (see the module docstring); raises the 503 for an explicit one."""
        if self.shared:
            await self.sync([target.source for target in targets])
        now = self.clock()
        kept: list[Target] = []
        skipped: list[tuple[Target, str]] = []
        retry_after = 1.0
        for target in targets:
            why = self._unavailable(route, target, now)
            if why is None:
                kept.append(target)
            else:
                skipped.append((target, why[0]))
                retry_after = why[1]
        if not skipped:
            return Gate(targets)
        if explicit:  # one target (a header's choice, or a route's only one): it was skipped
            target, reason = skipped[0]
            raise Refusal(
                503,
                f"The backend '{target.source}' is unavailable: {reason}",
                headers=((b"retry-after", str(max(1, math.ceil(retry_after))).encode()),),
                log_error=reason,
                backend=target.source,
            )
        if kept:
            return Gate(tuple(kept), tuple(skipped))
        logger.warning(
            "every candidate of %s is unavailable (%s); trying them anyway",
            route.prefix,
            "; ".join(f"{target.source}: {why}" for target, why in skipped),
        )
        return Gate(targets, tuple(skipped), fail_open=True, forced=frozenset(t.source for t in targets))

    def _unavailable(self, route: Route, target: Target, now: float) -> tuple[str, float] | None:
        """(why, seconds until it may be available again) for a backend to skip, else None."""
        breaker = self.breaker_for(route, target)
        if breaker is not None and not breaker.available(now):
            state = breaker.current(now)
            why = (
                "circuit open" if state is CircuitState.OPEN else "circuit half-open, every probe slot taken"
            )
            return why, breaker.retry_after(now)
        status = self.health.get(target.source)
        if status is not None and status.health == "unhealthy":
            policy = self.health_policy(target.source)
            wait = next_probe_in(status, policy, now) if policy else 1.0
            return f"unhealthy ({status.reason or 'failed probes'})", wait
        return None

    # -- attempts (proxy.forward) ---------------------------------------------------------------

    async def acquire(self, route: Route, target: Target, gate: Gate) -> Permit | None:
        """Leave for one attempt: a Permit, None to skip the target, or a permit-less pass when the
        gate failed open (returned as `FORCED`)."""
        if target.source in gate.forced:
            return FORCED
        breaker = self.breaker_for(route, target)
        if breaker is None:
            return FORCED
        permit, transition = breaker.acquire(self.clock())
        if transition is not None:
            await self._share(target.source, breaker, transition)
        return permit

    async def release(self, route: Route, target: Target, permit: Permit, verdict: Verdict) -> None:
        if permit is FORCED:
            return
        breaker = self.breaker_for(route, target)
        if breaker is None:
            return
        transition = breaker.release(permit, verdict, self.clock())
        if transition is not None:
            await self._share(target.source, breaker, transition)

    async def reset(self, backend: str) -> bool:
        """Close a backend's circuit by hand; False when no circuit is known for it."""
        breaker = self.breakers.get(backend)
        if breaker is None:
            policy = self._policies.get(backend)
            if policy is None:
                return False
            breaker = self.breakers[backend] = CircuitBreaker(policy)
        transition = breaker.reset(self.clock())
        if transition is not None or self.shared:
            await self._share(
                backend, breaker, transition or Transition(breaker.state, breaker.state, self.clock())
            )
        return True

    def circuit_status(self) -> list[dict[str, object]]:
        now = self.clock()
        backends = sorted(set(self._policies) | set(self.breakers))
        out = []
        for backend in backends:
            breaker = self.breakers.get(backend)
            if breaker is None:
                breaker = CircuitBreaker(self._policies[backend])
            out.append({"backend": backend, **breaker.status(now)})
        return out

    # -- health (resilience.monitor) ------------------------------------------------------------

    def set_health(self, snapshot: HealthSnapshot) -> None:
        self.health_snapshot = snapshot
        self.health = dict(snapshot.statuses)

    # -- the shared store -----------------------------------------------------------------------

    async def sync(self, backends: Sequence[str]) -> None:
        """Bring the shared circuits (<= 5 s old) and health (<= 30 s old) these backends need up
        to date, waiting at most the shield's budget, and only for what is too old to route with."""
        if not self.shared:
            return
        now = self.clock()
        wait, ahead, under_way = self._due_circuits(backends, now)
        health_wait, health_ahead, health_under_way = self._due_health(now)
        if health_under_way is not None:
            under_way.add(health_under_way)
        if ahead or health_ahead:
            self.shield.start(self._reader(ahead, health_ahead))
        deadline = time.monotonic() + self.shield.budget_s
        if wait or health_wait:  # awaited at once: marked under way before another request runs
            await self._wait(self._reader(wait, health_wait), self.shield.budget_s)
        left = deadline - time.monotonic()
        if under_way and left > 0:  # begun beside an earlier request, or by another one now
            await self._wait(lambda: asyncio.gather(*under_way), left)

    async def _wait(self, make: Callable[[], Awaitable[object]], budget_s: float) -> None:
        """Wait for a read through the shield: an overrun backs the table off like any other."""
        try:
            await self.shield.call(make, budget_s=budget_s)
        except StateStoreError as exc:
            _store_error("state table unavailable, using this instance's state", exc)

    def _due_circuits(
        self, backends: Sequence[str], now: float
    ) -> tuple[tuple[str, ...], tuple[str, ...], set[asyncio.Future[None]]]:
        """(the circuits too old to route with, those to refresh in the background, the reads
        already under way of circuits too old to route with)."""
        wait: list[str] = []
        ahead: list[str] = []
        under_way: set[asyncio.Future[None]] = set()
        for backend in dict.fromkeys(backends):
            age = now - self._circuits_read.get(backend, -math.inf)
            if age < self._circuit_cache_s * REFRESH_AT:
                continue
            reading = self._reading.get(backend)
            if _running(reading):
                if age >= self._circuit_cache_s and reading is not None:
                    under_way.add(reading)
            else:
                (wait if age >= self._circuit_cache_s else ahead).append(backend)
        return tuple(wait), tuple(ahead), under_way

    def _due_health(self, now: float) -> tuple[bool, bool, asyncio.Future[None] | None]:
        """(health is too old to route with, it is to be refreshed in the background, the read of
        health under way when it is too old to route with)."""
        age = now - self._health_read
        if age < self._health_cache_s * REFRESH_AT:
            return False, False, None
        too_old = age >= self._health_cache_s
        if _running(self._health_reading):
            return False, False, self._health_reading if too_old else None
        return too_old, not too_old, None

    def _reader(self, backends: tuple[str, ...], health: bool) -> Callable[[], Awaitable[None]]:
        """The shield's `make` for one read; the read is marked as under way once it starts."""

        def make() -> asyncio.Future[None]:
            task = asyncio.ensure_future(self._read(backends, health))
            for backend in backends:
                self._reading[backend] = task
            if health:
                self._health_reading = task
            return task

        return make

    async def _read(self, backends: tuple[str, ...], health: bool) -> None:
        """Read these circuits (and health) concurrently and adopt what was read, even when the
        request that started the read has stopped waiting for it."""
        started = self.clock()
        circuits, snapshot = await asyncio.gather(
            self.store.read_circuits(backends) if backends else _nothing(),
            self.store.read_health() if health else _nothing(),
            return_exceptions=True,
        )
        if isinstance(circuits, dict):
            for backend in backends:
                self._circuits_read[backend] = started
                if backend in circuits:
                    self._adopt(backend, circuits[backend])
        if health and not isinstance(snapshot, BaseException):
            self._health_read = started
            if isinstance(snapshot, HealthSnapshot):
                self.set_health(snapshot)
        errors = [outcome for outcome in (circuits, snapshot) if isinstance(outcome, BaseException)]
        if errors:  # a bug before a table error: the shield only counts (and logs) the latter
            raise next((e for e in errors if not isinstance(e, StateStoreError)), errors[0])

    def _adopt(self, backend: str, record: CircuitRecord) -> None:
        if record.version <= self._versions.get(backend, 0):
            return
        self._versions[backend] = record.version
        breaker = self.breakers.get(backend)
        policy = self._policies.get(backend)
        if breaker is None and policy is not None:
            breaker = self.breakers[backend] = CircuitBreaker(policy)
        if breaker is not None:
            breaker.adopt(record.state, record.opened_at)

    async def _share(self, backend: str, breaker: CircuitBreaker, transition: Transition) -> None:
        if transition.previous is not transition.state:
            logger.info(
                "circuit %s: %s -> %s",
                backend,
                transition.previous,
                transition.state,
                extra={"backend": backend},
            )
        if not self.shared:
            return
        try:
            await self.shield.call(lambda: self._write(backend, breaker, transition.at))
        except StateStoreError as exc:  # a warning even when backed off: transitions are few
            logger.warning("state table unavailable, circuit %s kept in this instance: %s", backend, exc)

    async def _write(self, backend: str, breaker: CircuitBreaker, at: float) -> None:
        """Write the breaker's state as the circuit's next version; on a lost race, adopt the winner."""
        expected = self._versions.get(backend, 0)
        record = CircuitRecord(breaker.state, breaker.opened_at, expected + 1, at)
        if await self.store.write_circuit(backend, record, expected_version=expected):
            self._versions[backend] = record.version
            return
        # Another instance wrote first: take what won, never overwrite it. What is stored is the
        # truth even when its version is lower than the one known here (the item expired and was
        # written anew): the next transition builds on it, or on nothing.
        records = await self.store.read_circuits([backend])
        self._versions[backend] = 0
        if backend in records:
            self._adopt(backend, records[backend])

    async def aclose(self) -> None:
        """Stop the state table's background work (reads and trials still running)."""
        await self.shield.aclose()


# The permit of an attempt made without asking the breaker (no breaker, or the gate failed open).
FORCED = Permit(probe=False, generation=-1)


def _all_targets(route: Route) -> tuple[Target, ...]:
    targets = list(route.targets)
    if route.geo is not None:
        for pool in (*route.geo.countries.values(), *route.geo.continents.values()):
            targets.extend(pool)
    return tuple(targets)


async def _nothing() -> None:
    return None


def _running(task: asyncio.Future[None] | None) -> bool:
    """Whether a read is under way (a read begun on a loop since closed never ends: it is not)."""
    return task is not None and not task.done() and not task.get_loop().is_closed()


def _store_error(what: str, exc: StateStoreError) -> None:
    """Log a state-table failure: once per outage (the shield then fails fast, logged at debug)."""
    if isinstance(exc, BackedOff):
        logger.debug("%s: %s", what, exc)
    else:
        logger.warning("%s: %s", what, exc)
