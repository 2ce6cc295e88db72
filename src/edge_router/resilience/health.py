"""A backend's health from active probes: pure decisions on an injected clock (CONTRACT section 7).

`observe` folds one probe's result into a backend's `HealthStatus`: `unhealthy_threshold` failed
probes in a row make it unhealthy, `healthy_threshold` good ones healthy (seed 001's periodic
ping, with Envoy's thresholds so one lost probe does not flap a pool). A backend nobody has probed
is `unknown` and is routed to like a healthy one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..config.model import HealthPolicy

Health = Literal["healthy", "unhealthy", "unknown"]


@dataclass(frozen=True, slots=True)
class HealthStatus:
    health: Health = "unknown"
    last_check: float | None = None  # epoch seconds of the last probe
    latency_ms: float | None = None
    reason: str | None = None  # why the last probe failed
    streak: int = 0  # consecutive good probes (> 0) or failed ones (< 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "health": self.health,
            "last_check": self.last_check,
            "latency_ms": self.latency_ms,
            "reason": self.reason,
            "streak": self.streak,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealthStatus:
        health = data.get("health")
        return cls(
            health=health if health in ("healthy", "unhealthy") else "unknown",
            last_check=_number(data.get("last_check")),
            latency_ms=_number(data.get("latency_ms")),
            reason=str(data["reason"]) if data.get("reason") is not None else None,
            streak=int(data.get("streak") or 0),
        )


def observe(
    status: HealthStatus,
    *,
    ok: bool,
    now: float,
    latency_ms: float | None,
    reason: str | None,
    policy: HealthPolicy,
) -> HealthStatus:
    """`status` after one more probe."""
    streak = max(status.streak, 0) + 1 if ok else min(status.streak, 0) - 1
    health = status.health
    if ok and streak >= policy.healthy_threshold:
        health = "healthy"
    elif not ok and -streak >= policy.unhealthy_threshold:
        health = "unhealthy"
    return HealthStatus(health, now, latency_ms, None if ok else reason, streak)


def next_probe_in(status: HealthStatus, policy: HealthPolicy, now: float) -> float:
    """Seconds until the next probe of a backend, for `Retry-After` (at least 1)."""
    if status.last_check is None:
        return max(1.0, policy.interval_s)
    return max(1.0, status.last_check + policy.interval_s - now)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) or hasattr(value, "to_integral_value") else None
