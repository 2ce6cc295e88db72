"""`explain`: what the router would do with a request, without sending it.

Operators run it before flipping a priority: the matched route, the upstream URL for each
candidate in the order it would be tried, and why that order. Rotation state is not advanced.
"""

from __future__ import annotations

from typing import Any

from . import _paths
from ._balancing import IDEMPOTENT_METHODS
from ._config import RouterConfig, Target
from ._header_routing import HeaderRouting
from ._proxy import match_route
from ._registry import InvalidBackend
from ._selection import plan


async def explain(
    config: RouterConfig,
    header_routing: HeaderRouting,
    *,
    method: str,
    target: str,
    headers: dict[str, str],
) -> dict[str, Any]:
    """`target` is the request target as a client sends it: path and optional `?query`."""
    raw_path, _, query = target.partition("?")
    headers = {name.lower(): value for name, value in headers.items()}
    try:
        path = _paths.normalize_path(raw_path)
    except _paths.UnsafePath as exc:
        return {
            "method": method,
            "path": raw_path,
            "query": query,
            "format": config.format,
            "route": None,
            "outcome": f"400 Bad Request: {exc}",
        }
    answer: dict[str, Any] = {"method": method, "path": path, "query": query, "format": config.format}
    route = match_route(config.routes, path)
    if route is None:
        answer.update(route=None, outcome="404 Not Found: no route matches")
        return answer
    answer["route"] = {
        "prefix": route.prefix,
        "strategy": "select_by_header" if route.select_by_header else route.strategy,
        "timeout_ms": route.timeout_ms,
        "retry_non_idempotent": route.retry_non_idempotent,
    }
    reasons: list[str] = []
    targets: tuple[Target, ...]
    if route.select_by_header is not None:
        choice = await header_routing.choose(
            config,
            header=headers.get(route.select_by_header),
            location_header=headers.get("x-backend-location"),
            default_backend=route.default_backend,
        )
        if isinstance(choice, InvalidBackend):
            answer["outcome"] = f"400 Invalid Backend: {choice.requested!r}; valid: {', '.join(choice.valid)}"
            return answer
        targets = (choice,)
        reasons.append(f"{route.select_by_header} selects backend {choice.source!r}")
    else:
        chosen = plan(route, headers, advance=False)
        targets, reasons = chosen.targets, list(chosen.reasons)
    rest = path[len(route.prefix) :] if route.strip_prefix else path
    suffix = f"?{query}" if query else ""
    answer["candidates"] = [
        {
            "backend": candidate.source,
            "url": candidate.url(rest, suffix),
        }
        for candidate in targets
    ]
    if len(targets) > 1:
        if method in IDEMPOTENT_METHODS or route.retry_non_idempotent:
            reasons.append("falls back on connection failure, timeout, 404 and 5xx; 401/403 are returned")
        else:
            reasons.append(f"{method} falls back only on connection failure (retry_non_idempotent is off)")
    answer["reasons"] = reasons
    answer["outcome"] = "proxied" if targets else "503: no backend available"
    return answer
