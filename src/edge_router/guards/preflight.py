"""The CORS preflight: an `OPTIONS` with `Access-Control-Request-Method` is answered by the router
(204 with the CORS headers and max-age of the policy that governs the path), never forwarded
(CONTRACT section 6) — unless that policy leaves CORS to the backends (`"cors": "backend"`), when the
preflight is routed like any request. A preflight from an origin the policy's origin list refuses
is answered 403. Route-level IP rules, API keys and rate limits do not apply to preflights: they
carry no credentials and reach no backend.

The policy is the matched route's own (a route with its own origin list), else the config's; only
preflights pay for the route match.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..exceptions import Refusal
from ..http.context import RequestContext
from ..http.paths import prefix_matches
from .cors import CorsPolicy


class Route(Protocol):
    """What the preflight needs of a compiled route (`config.model.Route` is one)."""

    @property
    def prefix(self) -> str: ...

    @property
    def cors(self) -> CorsPolicy | None: ...


class PreflightGuard:
    def __init__(self, policy: CorsPolicy, routes: Sequence[Route] = ()) -> None:
        self._policy = policy
        # only routes with their own policy matter, but the first match over all routes decides
        self._routes = tuple(routes) if any(route.cors is not None for route in routes) else ()

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        if ctx.method != "OPTIONS" or ctx.header("access-control-request-method") is None:
            return None
        return self._policy_for(ctx.path).preflight(ctx)

    def _policy_for(self, path: str) -> CorsPolicy:
        for route in self._routes:
            if prefix_matches(route.prefix, path):
                return route.cors or self._policy
        return self._policy
