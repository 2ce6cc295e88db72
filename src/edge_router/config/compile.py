"""What both config formats share when they compile a validated spec into a `RouterConfig`.

* `Diagnostics` collects problems (the config is refused, each naming its field) and warnings
  (it loads, and they are logged), so one pass reports everything wrong at once;
* `TargetResolver` turns a reference (URL, backend id, `lambda:FUNCTION`) into a `Target`;
* `finish` builds the guards in the order `guards/__init__.py` gives and the CORS headers, and
  returns the config, or raises `ConfigInvalidError` with every problem found.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..exceptions import ConfigInvalidError
from ..guards.base import Guard
from ..guards.loop import LoopGuard
from ..guards.preflight import PreflightGuard
from .model import (
    POOL_BREAKER,
    BackendEntry,
    BreakerPolicy,
    HealthPolicy,
    RetryBudgetPolicy,
    Route,
    RouterConfig,
    Target,
    cors_headers,
    lambda_target,
    parse_target,
)
from .schema import BackendSpec, CircuitBreakerSpec, HealthChecksSpec, PriorityConfigSpec, RoutesConfigSpec

logger = logging.getLogger("edge_router.config")


@dataclass
class Diagnostics:
    """Problems (the config is refused) and warnings (it loads; they are logged), field by field."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, where: str, message: object) -> None:
        self.problems.append(f"{where}: {message}")

    def warn(self, where: str, message: object) -> None:
        self.warnings.append(f"{where}: {message}")


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
    if isinstance(value, str):
        profile = profiles.get(value)
        if profile is None:
            known = ", ".join(sorted(profiles)) or "none"
            diagnostics.problem(
                where, f"no profile {value!r} in features.circuitBreaker.profiles (known: {known})"
            )
            return None
        value = profile
    if not value.enabled:
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
    routes: list[Route],
    document: Mapping[str, Any],
    diagnostics: Diagnostics,
    format: Literal["routes", "priority"],
) -> RouterConfig:
    """The compiled config, or ConfigInvalidError listing every problem; warnings are logged."""
    cors, via = spec.cors, spec.via
    backends = backend_entries(spec.backends, diagnostics)
    health = health_policy(spec.health_checks, "health_checks", diagnostics)
    if diagnostics.problems:
        raise ConfigInvalidError(diagnostics.problems)
    for warning in diagnostics.warnings:
        logger.warning("config: %s", warning)
    every, preflight = cors_headers(
        allow_origin=cors.allow_origin,
        allow_methods=cors.allow_methods,
        allow_headers=cors.allow_headers,
        expose_headers=cors.expose_headers,
        max_age=cors.max_age,
        allow_credentials=cors.allow_credentials,
    )
    # The order of each stage is CONTRACT section 8's (see guards/__init__.py).
    route_guards: tuple[Guard, ...] = (LoopGuard(via),)
    return RouterConfig(
        routes=tuple(replace(route, guards=(*route_guards, *route.guards)) for route in routes),
        backends=backends,
        cors_headers=every,
        cors_preflight_headers=preflight,
        via_pseudonym=via,
        document=document,
        request_guards=(PreflightGuard(preflight),),
        health=health,
        retry_budget=RetryBudgetPolicy(spec.retry_budget.percent, spec.retry_budget.min_retries),
        warnings=tuple(diagnostics.warnings),
        format=format,
    )
