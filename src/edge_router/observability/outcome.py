"""`RequestOutcome`: what happened to one proxied request, filled in by the pipeline's stages and
written once, as the request's log line and metrics, when it ends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RequestOutcome:
    method: str
    path: str
    request_id: str
    route: str | None = None
    target: str | None = None  # the upstream URL of the last attempt
    backend: str | None = None  # the last attempt's X-Backend-Source
    status: int = 500
    duration_ms: float = 0.0
    error: str | None = None
    timed_out: bool = False
    # Failed attempts: a connection error, a timeout, a broken exchange or a 5xx from a backend.
    # A client that leaves, or a refusal by the router itself, is never counted against a backend.
    upstream_errors: int = 0
    # The response cache's verdict: "HIT", "MISS" or "BYPASS"; None on a route without a cache.
    # The metrics count HIT and MISS (BYPASS is neither: the cache was not consulted).
    cache: str | None = None
    rate_limited: bool = False  # refused (429) by the route's rate limit
