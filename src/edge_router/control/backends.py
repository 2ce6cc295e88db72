"""`GET /backends` (CONTRACT section 5): every backend the router can reach, with its health and
circuit as this instance knows them (synced from the state table first, when there is one).
URLs are shown with their credentials redacted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..observability.redact import redact_url
from ..resilience.tracker import BackendTracker
from ..routing.inventory import KnownBackend
from .common import Host, iso

router = APIRouter()


@router.get("/backends", summary="Every backend the router can reach, with its health and circuit")
async def backends(host: Host) -> dict[str, Any]:
    tracker = host.tracker
    known = await host.backends()
    await tracker.sync([backend.id for backend in known])
    now = tracker.clock()
    return {"backends": [_described(backend, tracker, now) for backend in known]}


def _described(backend: KnownBackend, tracker: BackendTracker, now: float) -> dict[str, Any]:
    health = tracker.health.get(backend.id)
    breaker = tracker.breakers.get(backend.id)
    return {
        "id": backend.id,
        "name": backend.name,
        "url": redact_url(backend.url),
        "location": backend.location,
        "listed_by": backend.listed_by,
        "health": health.health if health else "unknown",
        "last_check": iso(health.last_check) if health else None,
        "latency_ms": health.latency_ms if health else None,
        "reason": health.reason if health else None,
        "circuit": str(breaker.current(now)) if breaker else "CLOSED",
    }
