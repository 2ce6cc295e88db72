"""`explain`: what the router would do with a request, without sending it.

Operators run it before flipping a priority: the matched route, the upstream URL for each
candidate in the order it would be tried, and why that order. It asks `choose_candidates` and
`upstream_parts`, the functions the proxy asks, so it cannot drift from what is sent. Rotation
state is not advanced, and no guard runs (a rate limit would spend a token).
"""

from __future__ import annotations

from typing import Any

from ..config.model import RouterConfig
from ..exceptions import Refusal
from ..http.context import RequestContext
from ..http.responses import REASONS
from ..resilience.tracker import BackendTracker
from .candidates import InvalidBackendRefusal, choose_candidates, upstream_parts
from .fallback import IDEMPOTENT_METHODS
from .header_routing import HeaderRouting
from .match import match_route


async def explain(
    config: RouterConfig,
    header_routing: HeaderRouting,
    *,
    method: str,
    target: str,
    headers: dict[str, str],
    tracker: BackendTracker | None = None,
) -> dict[str, Any]:
    """`target` is the request target as a client sends it: path and optional `?query`; with a
    `tracker` the candidates reflect what this router knows of health and circuits."""
    raw_path, _, query = target.partition("?")
    ctx = RequestContext(
        method=method,
        raw_path=raw_path,
        query=query.encode("utf-8", "surrogateescape"),
        raw_headers=[(name.lower().encode(), value.encode()) for name, value in headers.items()],
    )
    answer: dict[str, Any] = {"method": method, "path": ctx.path, "query": query, "format": config.format}
    if ctx.unsafe_path is not None:
        answer.update(route=None, outcome=f"400 Bad Request: {ctx.unsafe_path}")
        return answer
    route = match_route(config.routes, ctx.path)
    if route is None:
        answer.update(route=None, outcome="404 Not Found: no route matches")
        return answer
    answer["route"] = {
        "prefix": route.prefix,
        "strategy": "select_by_header" if route.select_by_header else route.strategy,
        "timeout_ms": route.timeout_ms,
        "retry_non_idempotent": route.retry_non_idempotent,
        # what runs before any backend is contacted, in order (CONTRACT section 8)
        "guards": [type(guard).__name__ for guard in route.guards],
    }
    try:
        candidates = await choose_candidates(
            config, route, ctx, header_routing=header_routing, tracker=tracker, advance=False
        )
    except Refusal as refusal:
        answer["outcome"] = _refused(refusal)
        return answer
    parts = upstream_parts(route, ctx.path, ctx.query)
    answer["candidates"] = [
        {"backend": target.source, "url": target.url(*parts)} for target in candidates.targets
    ]
    reasons = list(candidates.reasons)
    if len(candidates.targets) > 1:
        if method in IDEMPOTENT_METHODS or route.retry_non_idempotent:
            reasons.append("falls back on connection failure, timeout, 404 and 5xx; 401/403 are returned")
        else:
            reasons.append(f"{method} falls back only on connection failure (retry_non_idempotent is off)")
    answer["reasons"] = reasons
    answer["outcome"] = "proxied"
    return answer


def _refused(refusal: Refusal) -> str:
    if isinstance(refusal, InvalidBackendRefusal):
        choice = refusal.choice
        return f"400 Invalid Backend: {choice.requested!r}; valid: {', '.join(choice.valid)}"
    return f"{refusal.status} {refusal.error or REASONS.get(refusal.status, 'Error')}: {refusal.message}"
