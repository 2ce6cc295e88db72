"""Active health checks: probe every backend that has a health policy, all at once, and keep the
results in the tracker (CONTRACT section 7).

A probe is a GET of the backend's `health_path` (relative to the backend's URL, as seed 001 joins
them) through the router's own upstream client; it is good when the backend answers an expected
status within `timeout_ms`. One round probes concurrently, so a hanging backend costs the round
its timeout, not the sum of them. In server mode `run()` repeats rounds until cancelled (stopped
cleanly at shutdown); on Lambda the scheduled event runs one `round()` and the result goes to the
state table for every instance to read.

The write goes through the tracker's `StoreShield`, like every other call to the state table, but
with a budget of its own (`SHARE_BUDGET_S`): a round is off the request path and may wait for the
table as long as botocore's own bound, while a table the shield has backed off is not waited for
at all (the round's results stay in this instance, and the shield's trial finds the table again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..aws.shield import BackedOff
from ..config.model import HealthPolicy, Target
from ..exceptions import StateStoreError, UpstreamError
from ..upstream.base import Upstream
from .health import HealthStatus, observe
from .store import HealthSnapshot
from .tracker import BackendTracker

logger = logging.getLogger("edge_router.resilience")

IDLE_INTERVAL_S = 10.0  # how often a router with nothing to probe looks again (config may change)
SHARE_BUDGET_S = 5.0  # two botocore attempts of 2 s each, and the retry's pause between them


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    backend: str
    target: Target  # where to connect; its base path is the backend URL's path
    health_path: str
    policy: HealthPolicy

    @property
    def url(self) -> str:
        return self.target.url(self.health_path, "")


class HealthMonitor:
    def __init__(self, tracker: BackendTracker, upstream: Upstream) -> None:
        self._tracker = tracker
        self._upstream = upstream

    async def round(self, targets: Sequence[ProbeTarget]) -> HealthSnapshot:
        """Probe every target once, concurrently; fold the results in, share them, return them."""
        previous = self._tracker.health_snapshot
        statuses = dict(previous.statuses) if previous else dict(self._tracker.health)
        results = await asyncio.gather(*(self._probe(target) for target in targets))
        now = time.time()
        for target, (ok, latency_ms, reason) in zip(targets, results, strict=True):
            before = statuses.get(target.backend, HealthStatus())
            after = observe(
                before, ok=ok, now=now, latency_ms=latency_ms, reason=reason, policy=target.policy
            )
            if after.health != before.health and after.health != "unknown":
                logger.info(
                    "backend %s is %s%s", target.backend, after.health, f" ({reason})" if reason else ""
                )
            statuses[target.backend] = after
        snapshot = HealthSnapshot(checked_at=now, statuses=statuses)
        self._tracker.set_health(snapshot)
        if self._tracker.shared:
            try:
                await self._tracker.shield.call(
                    lambda: self._share(snapshot, previous), budget_s=SHARE_BUDGET_S
                )
            except BackedOff as exc:  # the shield logged the outage once
                logger.debug("health results not shared: %s", exc)
            except StateStoreError as exc:
                logger.warning("health results not shared: %s", exc)
        return snapshot

    async def _share(self, snapshot: HealthSnapshot, previous: HealthSnapshot | None) -> None:
        if not await self._tracker.store.write_health(snapshot, previous=previous):
            # Another round was stored first (or `previous` was never stored): the stored one is
            # the fleet's, and the next round builds on it.
            logger.info("another round of health checks was stored first; taking that one")
            stored = await self._tracker.store.read_health()
            if stored is not None:
                self._tracker.set_health(stored)

    async def run(
        self, targets_of: Callable[[], Awaitable[Sequence[ProbeTarget]]], *, sleep: float = IDLE_INTERVAL_S
    ) -> None:
        """Rounds until cancelled, every shortest `interval_s` among the targets."""
        while True:
            try:
                targets = await targets_of()
                if targets:
                    await self.round(targets)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one round must not stop health checking for good
                logger.exception("health check round failed")
                targets = []
            await asyncio.sleep(min((t.policy.interval_s for t in targets), default=sleep))

    async def _probe(self, target: ProbeTarget) -> tuple[bool, float | None, str | None]:
        timeout = target.policy.timeout_ms / 1000
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):  # the whole probe, body included
                response = await self._upstream.send(
                    "GET", target.url, [("host", target.target.host_header)], None, timeout
                )
                try:
                    await response.read(64 * 1024)
                finally:
                    response.release()
        except TimeoutError:
            return False, None, f"no answer within {target.policy.timeout_ms:g} ms"
        except UpstreamError as exc:
            return False, None, str(exc)
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        if target.policy.expects(response.status):
            return True, latency_ms, None
        return False, latency_ms, f"status {response.status}"
