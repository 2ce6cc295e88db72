"""Which route a request takes: routes are tried in order and the first match wins (CONTRACT
section 3); a prefix matches segment-wise (`http.paths.prefix_matches`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..config.model import Route
from ..http.paths import prefix_matches


def match_route(routes: Sequence[Route], path: str) -> Route | None:
    for route in routes:
        if prefix_matches(route.prefix, path):
            return route
    return None
