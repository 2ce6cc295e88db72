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
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..config.model import BreakerPolicy, HealthPolicy, Route, RouterConfig, Target
from ..exceptions import Refusal, StateStoreError
from .breaker import CircuitBreaker, CircuitState, Permit, Transition, Verdict
from .health import HealthStatus, next_probe_in
from .store import CircuitRecord, HealthSnapshot, LocalStateStore, StateStore

logger = logging.getLogger("edge_router.resilience")


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
    ) -> None:
        self.store: StateStore = store or LocalStateStore()
        self.shared = store is not None and not isinstance(store, LocalStateStore)
        self.clock = clock
        self._circuit_cache_s = circuit_cache_s
        self._health_cache_s = health_cache_s
        self.breakers: dict[str, CircuitBreaker] = {}
        self._versions: dict[str, int] = {}  # the shared version of each circuit last seen
        self._circuits_read: dict[str, float] = {}
        self.health: dict[str, HealthStatus] = {}
        self.health_snapshot: HealthSnapshot | None = None
        self._health_read = -math.inf
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
        """Read the shared circuits (<= 5 s old) and health (<= 30 s old) these backends need."""
        if not self.shared:
            return
        now = self.clock()
        stale = [b for b in backends if now - self._circuits_read.get(b, -math.inf) >= self._circuit_cache_s]
        try:
            if stale:
                records = await self.store.read_circuits(stale)
                for backend in stale:
                    self._circuits_read[backend] = now
                    if backend in records:
                        self._adopt(backend, records[backend])
            if now - self._health_read >= self._health_cache_s:
                self._health_read = now
                snapshot = await self.store.read_health()
                if snapshot is not None:
                    self.set_health(snapshot)
        except StateStoreError as exc:
            logger.warning("state table unavailable, using this instance's state: %s", exc)

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
        expected = self._versions.get(backend, 0)
        record = CircuitRecord(breaker.state, breaker.opened_at, expected + 1, transition.at)
        try:
            if await self.store.write_circuit(backend, record, expected_version=expected):
                self._versions[backend] = record.version
                return
            # Another instance wrote first: take what won, never overwrite it. What is stored is
            # the truth even when its version is lower than the one known here (the item expired
            # and was written anew): the next transition builds on it, or on nothing.
            records = await self.store.read_circuits([backend])
            self._versions[backend] = 0
            if backend in records:
                self._adopt(backend, records[backend])
        except StateStoreError as exc:
            logger.warning("state table unavailable, circuit %s kept in this instance: %s", backend, exc)


# The permit of an attempt made without asking the breaker (no breaker, or the gate failed open).
FORCED = Permit(probe=False, generation=-1)


def _all_targets(route: Route) -> tuple[Target, ...]:
    targets = list(route.targets)
    if route.geo is not None:
        for pool in (*route.geo.countries.values(), *route.geo.continents.values()):
            targets.extend(pool)
    return tuple(targets)
