"""What both config formats share when they compile a validated spec into a `RouterConfig`.

* `Diagnostics` collects problems (the config is refused, each naming its field) and warnings
  (it loads, and they are logged), so one pass reports everything wrong at once;
* `TargetResolver` turns a reference (URL, backend id, `lambda:FUNCTION`) into a `Target`;
* `finish` builds the guards (in the order `compile_guards` writes once, with the process's
  `GuardServices`) and the CORS policies, and returns the config, or raises `ConfigInvalidError`
  with every problem found.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from ..exceptions import ConfigInvalidError
from ..guards.cors import DEFAULT_POLICY, CorsPolicy
from ..guards.loop import LoopGuard
from ..guards.preflight import PreflightGuard
from ..guards.services import GuardServices
from .compile_guards import GuardDefaults, named_profile, request_stage, route_stage
from .diagnostics import Diagnostics
from .guard_specs import GuardBlocks
from .model import (
    POOL_BREAKER,
    BackendEntry,
    BreakerPolicy,
    HealthPolicy,
    RetryBudgetPolicy,
    Route,
    RouterConfig,
    Target,
    lambda_target,
    parse_target,
)
from .schema import (
    BackendSpec,
    CircuitBreakerSpec,
    CorsSpec,
    HealthChecksSpec,
    PriorityConfigSpec,
    RoutesConfigSpec,
)

logger = logging.getLogger("edge_router.config")


class TargetResolver:
    """Turns a target reference (URL, backend id, `lambda:FUNCTION`) into a Target.

    Returns None for a reference that came out empty after `${VAR}` substitution, or a backend
    declared without a URL: seed 003 skips such providers with a warning.
    """

    def __init__(self, backends: Mapping[str, Target], declared: set[str]) -> None:
        self._backends = backends
        self._declared = declared

    def resolve(self, ref: str, weight: int = 1) -> Target | None:
        if not ref:
            return None
        if ref.startswith("lambda:"):
            return lambda_target(ref, weight)
        if ref in self._backends:
            return replace(self._backends[ref], weight=weight)
        if ref in self._declared:
            return None
        return replace(parse_target(ref), weight=weight)


def compile_backends(specs: Mapping[str, BackendSpec], diagnostics: Diagnostics) -> dict[str, Target]:
    backends: dict[str, Target] = {}
    for backend_id, backend in specs.items():
        if not backend.url:
            diagnostics.warn(f"backends.{backend_id}", "url is empty; the backend is skipped")
            continue
        try:
            backends[backend_id] = parse_target(backend.url, source=backend_id)
        except ValueError as exc:
            diagnostics.problem(f"backends.{backend_id}.url", exc)
    return backends


def backend_entries(
    specs: Mapping[str, BackendSpec], diagnostics: Diagnostics | None = None
) -> dict[str, BackendEntry]:
    diagnostics = diagnostics or Diagnostics()
    return {
        backend_id: BackendEntry(
            id=backend_id,
            url=spec.url,
            name=spec.name or backend_id,
            location=spec.location,
            health_path=spec.health_path,
            health=health_policy(spec.health_checks, f"backends.{backend_id}.health_checks", diagnostics),
        )
        for backend_id, spec in specs.items()
    }


def health_policy(spec: HealthChecksSpec | None, where: str, diagnostics: Diagnostics) -> HealthPolicy | None:
    """A `health_checks` block as a policy (None: no block, or `enabled: false`)."""
    if spec is None or not spec.enabled:
        return None
    expected = []
    for part in spec.expected_status.split(","):
        low, _, high = part.strip().partition("-")
        if low.endswith("xx"):  # "2xx"
            expected.append((int(low[0]) * 100, int(low[0]) * 100 + 99))
        else:
            expected.append((int(low), int(high or low)))
    if any(low > high for low, high in expected):
        diagnostics.problem(
            f"{where}.expected_status", f"{spec.expected_status!r} has a range that runs backwards"
        )
    return HealthPolicy(
        interval_s=spec.interval_s,
        timeout_ms=spec.timeout_ms,
        healthy_threshold=spec.healthy_threshold,
        unhealthy_threshold=spec.unhealthy_threshold,
        expected=tuple(expected),
    )


def breaker_policy(
    value: CircuitBreakerSpec | str | None,
    *,
    pool: bool,
    profiles: Mapping[str, CircuitBreakerSpec],
    where: str,
    diagnostics: Diagnostics,
) -> BreakerPolicy | None:
    """A route's circuit breaker: its block, or the profile it names; pools get one by default."""
    if value is None:
        return POOL_BREAKER if pool else None
    value = named_profile(value, profiles, where, "circuitBreaker", diagnostics)
    if value is None or not value.enabled:
        return None
    return BreakerPolicy(
        failure_threshold=value.failure_threshold,
        monitoring_period_s=value.monitoring_period / 1000,
        open_timeout_s=value.timeout / 1000,
        half_open_attempts=value.half_open_attempts,
        success_threshold=value.success_threshold,
    )


def finish(
    spec: RoutesConfigSpec | PriorityConfigSpec,
    routes: list[tuple[Route, GuardBlocks]],
    document: Mapping[str, Any],
    diagnostics: Diagnostics,
    format: Literal["routes", "priority"],
    services: GuardServices,
) -> RouterConfig:
    """The compiled config, or ConfigInvalidError listing every problem; warnings are logged."""
    backends = backend_entries(spec.backends, diagnostics)
    health = health_policy(spec.health_checks, "health_checks", diagnostics)
    cors = cors_policy(spec.cors, spec.allowed_origins, "allowed_origins", diagnostics)
    features = spec.features
    top_rate_limit = named_profile(
        spec.rate_limit, features.rate_limit.profiles, "rate_limit", "rateLimit", diagnostics
    )
    defaults = GuardDefaults(spec, features, features.rate_limit.default or top_rate_limit)
    loop = LoopGuard(spec.via)
    compiled = []
    for index, (route, blocks) in enumerate(routes):
        where = f"routes[{index}]" if format == "routes" else f"routes.{route.prefix.strip('/') or '*'}"
        guards = route_stage(
            where,
            route.prefix,
            blocks,
            getattr(blocks, "rate_limit_multiplier", 1.0),
            defaults,
            loop,
            services,
            diagnostics,
        )
        own_cors = None
        if blocks.allowed_origins is not None:
            own_cors = cors_policy(spec.cors, blocks.allowed_origins, f"{where}.allowed_origins", diagnostics)
        compiled.append(replace(route, guards=guards, cors=own_cors))
    stage = request_stage(spec, spec.trusted_proxies, PreflightGuard(cors, compiled), services, diagnostics)
    if diagnostics.problems:
        raise ConfigInvalidError(diagnostics.problems)
    for warning in diagnostics.warnings:
        logger.warning("config: %s", warning)
    return RouterConfig(
        routes=tuple(compiled),
        backends=backends,
        cors=cors,
        via_pseudonym=spec.via,
        document=document,
        request_guards=stage,
        health=health,
        retry_budget=RetryBudgetPolicy(spec.retry_budget.percent, spec.retry_budget.min_retries),
        warnings=tuple(diagnostics.warnings),
        format=format,
        cache_max_bytes=features.cache.max_bytes,
    )


def cors_policy(
    spec: CorsSpec | str, allowed: Sequence[str] | None, where: str, diagnostics: Diagnostics
) -> CorsPolicy:
    """The router's CORS answers for a `cors` block and an origin list (see `guards.cors`)."""
    try:
        if isinstance(spec, str):  # "backend": CORS is the backends' entirely
            return CorsPolicy(mode="backend")
        return CorsPolicy(
            allow_origin=spec.allow_origin,
            allow_methods=spec.allow_methods,
            allow_headers=spec.allow_headers,
            expose_headers=spec.expose_headers,
            max_age=spec.max_age,
            allow_credentials=spec.allow_credentials,
            override=spec.override,
            allowed_origins=allowed,
        )
    except ValueError as exc:
        diagnostics.problem(where, exc)
        return DEFAULT_POLICY
