"""In-process metrics windows (CONTRACT section 10): what this instance proxied in the last minute,
five minutes, hour, or since it started (or was reset), as `GET /admin/metrics` shows it.

Shape: a ring of `RING_SECONDS` (3600) per-second buckets plus an archive. A request adds to the
bucket of its epoch second only, so recording is O(1) (a few dict and integer updates, no lock:
the router runs one event loop per process, and the control plane answers on the same loop).
Each bucket stores the second it belongs to. A slot is reset lazily, when a request of a newer
second lands on it after the ring has wrapped: its old content is first folded into the archive,
so "all" (archive + every slot) stays exact, and memory stays bounded by the ring whatever the
traffic. A window of N seconds merges exactly the buckets whose stored second is one of the last N
(the current one included); a slot still holding an older second (an idle spell, a wrap-around)
is stale and skipped, never counted.

Latencies go into a log-scaled histogram per bucket, not a list of samples: `BINS` (458) bins of
ratio `GROWTH` (1.04) from `LOWEST_MS` (0.01 ms) to `HIGHEST_MS` (10 min), so a percentile is
read from bin counts within `sqrt(GROWTH) - 1` (2 %) of the exact nearest-rank value. Faster than
0.01 ms reads as ~0.01; 10 min or slower reads as 600000. A bucket stores only the bins it used:
measured, a full ring of steady traffic (3 routes, 3 statuses, spread latencies) holds ~4 MB, and
further hours add nothing. Recording costs ~0.7 us; a 1h or "all" answer merges up to 3600 buckets
(~10 ms at 20 requests/s of varied traffic, on the loop, for an admin request only).

Routes are config prefixes (bounded by the config), "(none)" for a request that matched no route;
still, a bucket (and a merged answer) keeps at most `MAX_ROUTES` names, the rest add to "(other)".

With no request in a window its percentiles are null (there is no latency to report; 0 would read
as "instant"), and its cache `hit_rate` is 0.0.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .outcome import RequestOutcome
from .redact import redact_text

RING_SECONDS = 3600
RECENT_ERRORS = 20
WINDOWS: dict[str, int | None] = {"1m": 60, "5m": 300, "1h": 3600, "all": None}
MAX_ROUTES = 1000
NO_ROUTE = "(none)"
OTHER_ROUTE = "(other)"

LOWEST_MS = 0.01
HIGHEST_MS = 600_000.0
GROWTH = 1.04
_INV_LOWEST = 1 / LOWEST_MS
_INV_LOG_GROWTH = 1 / math.log(GROWTH)
BINS = math.ceil(math.log(HIGHEST_MS / LOWEST_MS) * _INV_LOG_GROWTH) + 1
PERCENTILES = (50, 95, 99)


def latency_bin(ms: float) -> int:
    """The histogram bin of a latency: bin i holds [LOWEST_MS * GROWTH**i, LOWEST_MS * GROWTH**(i+1))."""
    if ms <= LOWEST_MS:
        return 0
    if ms >= HIGHEST_MS:
        return BINS - 1
    return int(math.log(ms * _INV_LOWEST) * _INV_LOG_GROWTH)


def bin_value(index: int) -> float:
    """What a bin reads as: its geometric middle (the top bin: HIGHEST_MS)."""
    if index >= BINS - 1:
        return HIGHEST_MS
    return float(LOWEST_MS * GROWTH ** (index + 0.5))


class _Bucket:
    """The counts of one second (or, merged, of a window; the archive: of slots reused)."""

    __slots__ = (
        "by_route",
        "by_status",
        "hits",
        "latency",
        "misses",
        "rate_limited",
        "requests",
        "second",
        "upstream_errors",
    )

    def __init__(self, second: int) -> None:
        self.second = second
        self.requests = 0
        self.by_status: dict[int, int] = {}
        self.by_route: dict[str, list[int]] = {}  # prefix -> [requests, errors (status >= 500)]
        self.latency: dict[int, int] = {}  # histogram bin -> requests
        self.hits = 0
        self.misses = 0
        self.rate_limited = 0
        self.upstream_errors = 0

    def route(self, name: str) -> list[int]:
        """The [requests, errors] of `name`, made on first use; past MAX_ROUTES names, "(other)"'s."""
        counts = self.by_route.get(name)
        if counts is None:
            if len(self.by_route) >= MAX_ROUTES:
                name = OTHER_ROUTE
                counts = self.by_route.get(name)
            if counts is None:
                counts = self.by_route[name] = [0, 0]
        return counts

    def add(self, other: _Bucket) -> None:
        """Add another bucket's counts to this one."""
        self.requests += other.requests
        self.hits += other.hits
        self.misses += other.misses
        self.rate_limited += other.rate_limited
        self.upstream_errors += other.upstream_errors
        for status, n in other.by_status.items():
            self.by_status[status] = self.by_status.get(status, 0) + n
        for index, n in other.latency.items():
            self.latency[index] = self.latency.get(index, 0) + n
        for name, (requests, errors) in other.by_route.items():
            counts = self.route(name)
            counts[0] += requests
            counts[1] += errors

    def percentiles(self) -> dict[str, float | None]:
        """p50/p95/p99 by nearest rank over the histogram; null with no request."""
        total = sum(self.latency.values())
        answer: dict[str, float | None] = {f"p{p}": None for p in PERCENTILES}
        if total == 0:
            return answer
        ranks = [(f"p{p}", max(1, (total * p + 99) // 100)) for p in PERCENTILES]
        seen = 0
        for index in sorted(self.latency):
            seen += self.latency[index]
            while ranks and seen >= ranks[0][1]:
                answer[ranks.pop(0)[0]] = round(bin_value(index), 3)
        return answer

    def answer(self, window: str) -> dict[str, Any]:
        """The CONTRACT section 10 shape."""
        looked_up = self.hits + self.misses
        return {
            "window": window,
            "requests": self.requests,
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "by_route": {
                name: {"requests": requests, "errors": errors}
                for name, (requests, errors) in sorted(self.by_route.items())
            },
            "latency_ms": self.percentiles(),
            "cache": {
                "hits": self.hits,
                "misses": self.misses,
                "hit_rate": round(self.hits / looked_up, 4) if looked_up else 0.0,
            },
            "rate_limited": self.rate_limited,
            "upstream_errors": self.upstream_errors,
        }


class MetricsWindows:
    """The last hour per second, and everything since start or `reset()` (see the module docstring)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._ring: list[_Bucket | None] = [None] * RING_SECONDS
        self._archive = _Bucket(-1)
        # the last RECENT_ERRORS failed requests (a 5xx or a failed attempt), for the status page;
        # their error text redacted as /health redacts (it may quote a backend URL with credentials)
        self.recent_errors: deque[dict[str, Any]] = deque(maxlen=RECENT_ERRORS)

    def record(self, outcome: RequestOutcome) -> None:
        """Count one proxied request in the bucket of the current second."""
        second = int(self._clock())
        bucket = self._ring[second % RING_SECONDS]
        if bucket is None or bucket.second != second:
            bucket = self._roll(second)
        bucket.requests += 1
        status = outcome.status
        by_status = bucket.by_status
        by_status[status] = by_status.get(status, 0) + 1
        counts = bucket.by_route.get(outcome.route or NO_ROUTE) or bucket.route(outcome.route or NO_ROUTE)
        counts[0] += 1
        if status >= 500:
            counts[1] += 1
        latency = bucket.latency
        index = latency_bin(outcome.duration_ms)
        latency[index] = latency.get(index, 0) + 1
        if outcome.cache is not None:
            if outcome.cache == "HIT":
                bucket.hits += 1
            elif outcome.cache == "MISS":
                bucket.misses += 1
        if outcome.rate_limited:
            bucket.rate_limited += 1
        bucket.upstream_errors += outcome.upstream_errors
        if status >= 500 or outcome.upstream_errors:
            self._failed(outcome)

    def _failed(self, outcome: RequestOutcome) -> None:
        self.recent_errors.append(
            {
                "time": round(self._clock(), 3),
                "route": outcome.route,
                "method": outcome.method,
                "path": redact_text(outcome.path),
                "status": outcome.status,
                "backend": redact_text(outcome.backend) if outcome.backend else None,
                "error": redact_text(outcome.error) if outcome.error else None,
            }
        )

    def _roll(self, second: int) -> _Bucket:
        """A fresh bucket for `second` in its slot; what the slot held goes to the archive first."""
        slot = second % RING_SECONDS
        old = self._ring[slot]
        if old is not None:
            self._archive.add(old)
        bucket = self._ring[slot] = _Bucket(second)
        return bucket

    def snapshot(self, window: str) -> dict[str, Any]:
        """The figures of `window` ("1m", "5m", "1h" or "all"); ValueError for any other name."""
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}: expected one of {', '.join(WINDOWS)}")
        span = WINDOWS[window]
        total = _Bucket(-1)
        if span is None:  # all: what reused slots left in the archive, and every slot, whatever its age
            total.add(self._archive)
            for bucket in self._ring:
                if bucket is not None:
                    total.add(bucket)
        else:
            now = int(self._clock())
            for second in range(now - span + 1, now + 1):
                bucket = self._ring[second % RING_SECONDS]
                if bucket is not None and bucket.second == second:  # else stale (or empty): skipped
                    total.add(bucket)
        return total.answer(window)

    def reset(self) -> None:
        """Zero every figure (`POST /admin/metrics/reset`)."""
        self._ring = [None] * RING_SECONDS
        self._archive = _Bucket(-1)
        self.recent_errors.clear()

    @property
    def slots_in_use(self) -> int:
        """How many of the ring's `RING_SECONDS` slots hold a bucket (never more: memory is bounded)."""
        return sum(bucket is not None for bucket in self._ring)
