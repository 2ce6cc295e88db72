"""The routes-list format (seeds 000 and 002, the native one), compiled into a `RouterConfig`.

    {"version": "1.0",
     "backends": {"users-svc": {"url": "${USERS_URL}"}},
     "routes": [{"prefix": "/api", "targets": ["https://a.example", "users-svc"], "strategy": "failover"}]}

Routes keep their order (the first match wins). A target is a URL, a backend id or
`lambda:FUNCTION`; a pool member with weight 0 or `enabled: false` is drained (left out); a
reference that comes out empty after `${VAR}` substitution is skipped with a warning, and a route
left with no target at all is skipped too.
"""

from __future__ import annotations

from typing import Any

from ...guards.services import GuardServices
from ..compile import TargetResolver, breaker_policy, compile_backends, finish
from ..compile_cache import caching_policy
from ..diagnostics import Diagnostics
from ..guard_specs import GuardBlocks
from ..model import GeoRule, Route, RouterConfig, Target
from ..schema import FeaturesSpec, RoutesConfigSpec, RouteSpec, TargetRef, validate


def compile_routes_config(
    document: dict[str, Any], diagnostics: Diagnostics, services: GuardServices
) -> RouterConfig:
    spec = validate(RoutesConfigSpec, document)
    backends = compile_backends(spec.backends, diagnostics)
    resolver = TargetResolver(backends, set(spec.backends))
    routes: list[tuple[Route, GuardBlocks]] = []
    for index, route_spec in enumerate(spec.routes):
        route = _compile_route(index, route_spec, resolver, set(spec.backends), spec.features, diagnostics)
        if route is not None:
            routes.append((route, route_spec))
    return finish(spec, routes, document, diagnostics, "routes", services)


def _pool(
    refs: list[tuple[str, str, int, bool]], resolver: TargetResolver, diagnostics: Diagnostics
) -> tuple[Target, ...]:
    """Resolve (field, ref, weight, enabled) entries; drained ones (weight 0, disabled) are left out."""
    targets = []
    for where, ref, weight, enabled in refs:
        try:
            target = resolver.resolve(ref, weight)
        except ValueError as exc:
            diagnostics.problem(where, exc)
            continue
        if target is None:
            diagnostics.warn(where, "empty after substitution (or a backend without url); skipped")
        elif enabled and weight > 0:
            targets.append(target)
    return tuple(targets)


def _refs(where: str, value: TargetRef | list[TargetRef]) -> list[tuple[str, str, int, bool]]:
    items = value if isinstance(value, list) else [value]
    out = []
    for index, item in enumerate(items):
        at = f"{where}[{index}]" if isinstance(value, list) else where
        if isinstance(item, str):
            out.append((at, item, 1, True))
        else:
            out.append((f"{at}.url", item.url, item.weight, item.enabled))
    return out


def _compile_route(
    index: int,
    route: RouteSpec,
    resolver: TargetResolver,
    backend_ids: set[str],
    features: FeaturesSpec,
    diagnostics: Diagnostics,
) -> Route | None:
    where = f"routes[{index}]"
    if route.target is not None:
        targets = _pool(_refs(f"{where}.target", route.target), resolver, diagnostics)
        if not targets:
            diagnostics.warn(where, f"route {route.prefix} has no target and is skipped")
            return None
    else:
        targets = _pool(_refs(f"{where}.targets", route.targets or []), resolver, diagnostics)
    geo = None
    if route.geo is not None:
        countries = {
            code.upper(): _pool(_refs(f"{where}.geo.countries.{code}", refs), resolver, diagnostics)
            for code, refs in route.geo.countries.items()
        }
        continents = {
            code.upper(): _pool(_refs(f"{where}.geo.continents.{code}", refs), resolver, diagnostics)
            for code, refs in route.geo.continents.items()
        }
        geo = GeoRule(countries, continents)
    if route.select_by_header is not None and route.default is not None and route.default not in backend_ids:
        diagnostics.problem(f"{where}.default", f"{route.default!r} is not one of the backends")
    pool = route.select_by_header is None and (
        len(targets) > 1 or geo is not None or route.targets is not None
    )
    breaker = breaker_policy(
        route.circuit_breaker,
        pool=pool,
        profiles=features.circuit_breaker.profiles,
        where=f"{where}.circuit_breaker",
        diagnostics=diagnostics,
    )
    return Route(
        prefix=route.prefix,
        targets=targets,
        timeout_ms=route.timeout_ms,
        strategy=route.strategy,
        breaker=breaker,
        retry_non_idempotent=route.retry_non_idempotent,
        replay_limit=route.replay_limit_bytes,
        select_by_header=route.select_by_header.lower() if route.select_by_header else None,
        default_backend=route.default,
        geo=geo,
        caching=caching_policy(route.cache, route.deduplication, features, where, diagnostics),
    )
