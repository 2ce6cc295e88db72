"""The guard blocks of a config (CONTRACT section 8) compiled into guards, in the contract's order.

The order of both stages is written once, here:

* before routing, on every path (`request_stage`): framing and path safety, the client address
  (`trusted_proxies`), the top-level IP rules, the CORS preflight answer, the admin gate;
* after the route is matched (`route_stage`): the proxy-loop check, the route's IP rules, origin
  checks, size limits, API key, rate limit. A route without a block gets no guard for it, so it
  pays nothing.

Which block a route gets: its own (inline, or a profile's name), else the config's default for it
(`features.sizeLimits.default`, `features.rateLimit.default` or the top-level `rateLimit`; the
top-level `api_keys`/`auth`, origin lists). A route's `ip_rules` add to the top-level ones, which
run before routing for every path. `"enabled": false` turns a block off for that route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..guards.api_keys import ApiKeyGuard
from ..guards.base import Guard
from ..guards.cors import OriginGuard
from ..guards.framing import RequestFramingGuard
from ..guards.ip_rules import ClientAddressStage, IpRulesGuard
from ..guards.loop import LoopGuard
from ..guards.rate_limit import RateLimitGuard
from ..guards.services import GuardServices, StoredKey
from ..guards.size_limits import SizeLimitsGuard
from .diagnostics import Diagnostics
from .guard_specs import (
    API_KEY_AUTH_TYPES,
    ApiKeysSpec,
    GuardBlocks,
    IpRulesSpec,
    RateLimitSpec,
    SizeLimitsSpec,
)
from .schema import FeaturesSpec

_FRAMING = RequestFramingGuard()
G = TypeVar("G")


@dataclass(frozen=True)
class GuardDefaults:
    """What a route without its own block gets (from the top level and `features`)."""

    top: GuardBlocks
    features: FeaturesSpec
    rate_limit: RateLimitSpec | None  # features.rateLimit.default, else the top-level rateLimit


def request_stage(
    top: GuardBlocks,
    trusted_proxies: Sequence[str],
    preflight: Guard,
    services: GuardServices,
    diagnostics: Diagnostics,
) -> tuple[Guard, ...]:
    """The guards every request passes before routing, in order."""
    stage: list[Guard | None] = [_FRAMING]
    if trusted_proxies:
        stage.append(_built("trusted_proxies", diagnostics, lambda: ClientAddressStage(trusted_proxies)))
    stage.append(_ip_rules("ip_rules", top.ip_rules, diagnostics))
    stage += [preflight, services.admin_gate]
    return tuple(guard for guard in stage if guard is not None)


def route_stage(
    where: str,
    prefix: str,
    route: GuardBlocks,
    multiplier: float,
    defaults: GuardDefaults,
    loop: LoopGuard,
    services: GuardServices,
    diagnostics: Diagnostics,
) -> tuple[Guard, ...]:
    """A route's guards after matching, in CONTRACT order; only the blocks it has."""
    top = defaults.top
    allowed = route.allowed_origins if route.allowed_origins is not None else top.allowed_origins
    blocked = route.blocked_origins if route.blocked_origins is not None else top.blocked_origins
    origin = None
    if allowed is not None or blocked is not None:
        origin = _built(
            f"{where}.allowed_origins", diagnostics, lambda: OriginGuard(allowed=allowed, blocked=blocked)
        )
    stage: list[Guard | None] = [
        loop,
        _ip_rules(f"{where}.ip_rules", route.ip_rules, diagnostics),
        origin,
        _size_limits(where, route.size_limits, defaults.features, diagnostics),
        _api_keys(where, route, top, services, diagnostics),
        _rate_limit(where, prefix, route.rate_limit, multiplier, defaults, services, diagnostics),
    ]
    return tuple(guard for guard in stage if guard is not None)


def _built(where: str, diagnostics: Diagnostics, build: Callable[[], G]) -> G | None:
    """A guard built from validated values; a value only the guard can judge is a problem named
    by its field (a CIDR, an origin pattern)."""
    try:
        return build()
    except ValueError as exc:
        diagnostics.problem(where, exc)
        return None


def _ip_rules(where: str, spec: IpRulesSpec | None, diagnostics: Diagnostics) -> Guard | None:
    if spec is None or (spec.allow is None and not spec.deny):
        return None
    return _built(where, diagnostics, lambda: IpRulesGuard(allow=spec.allow, deny=spec.deny))


def named_profile(
    value: G | str | None, profiles: Mapping[str, G], where: str, feature: str, diagnostics: Diagnostics
) -> G | None:
    """`value` itself, or the profile of `features.<feature>.profiles` it names (a problem at
    `where` when there is none)."""
    if not isinstance(value, str):
        return value
    if value not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        diagnostics.problem(where, f"no profile {value!r} in features.{feature}.profiles (known: {known})")
        return None
    return profiles[value]


def _size_limits(
    where: str, value: SizeLimitsSpec | str | None, features: FeaturesSpec, diagnostics: Diagnostics
) -> Guard | None:
    profiles = features.size_limits.profiles
    spec = named_profile(value, profiles, f"{where}.size_limits", "sizeLimits", diagnostics)
    if value is None:
        spec = features.size_limits.default
    if spec is None or not spec.enabled:
        return None
    return _built(
        f"{where}.size_limits",
        diagnostics,
        lambda: SizeLimitsGuard(
            max_body_size=spec.max_body_size,
            max_url_length=spec.max_url_length,
            max_header_size=spec.max_header_size,
            max_header_count=spec.max_header_count,
        ),
    )


def _api_keys(
    where: str, route: GuardBlocks, top: GuardBlocks, services: GuardServices, diagnostics: Diagnostics
) -> Guard | None:
    spec = _key_block(f"{where}.auth", route, diagnostics)
    if spec is None and route.api_keys is None and route.auth is None:
        spec = _key_block("auth", top, diagnostics)
    if spec is None or not spec.enabled:
        return None
    keys = [
        StoredKey(
            id=key.id,
            name=key.name or key.id,
            hash=key.hash.lower(),
            created_at=0.0,
            rate_limit_multiplier=key.rate_limit_multiplier,
        )
        for key in spec.keys
    ]
    return _built(
        f"{where}.api_keys",
        diagnostics,
        lambda: ApiKeyGuard(
            header=spec.header.lower(),
            required=spec.required,
            config_keys=keys,
            store=services.keys,
            forward_key=spec.forward_key,
        ),
    )


def _key_block(where: str, blocks: GuardBlocks, diagnostics: Diagnostics) -> ApiKeysSpec | None:
    """The API-key block of `blocks`: `api_keys`, or seed 002's `auth` when it names API keys.

    An `auth` block of any other type (a JWT or forward-auth adapter of the seed project's later
    versions) refuses the config: a route its operator believes protected must not load open.
    """
    if blocks.auth is None:
        return blocks.api_keys
    fields = dict(blocks.auth)
    kind = str(fields.pop("type", "api_key")).strip().lower()
    if kind not in API_KEY_AUTH_TYPES:
        diagnostics.problem(
            where,
            f"type {kind!r} is not enforced by this version (only API keys are); refusing the config "
            "rather than serving the route unprotected",
        )
        return None
    try:
        return ApiKeysSpec.model_validate(fields)
    except ValueError as exc:
        diagnostics.problem(where, str(exc).replace("\n", " "))
        return None


def _rate_limit(
    where: str,
    prefix: str,
    value: RateLimitSpec | str | None,
    multiplier: float,
    defaults: GuardDefaults,
    services: GuardServices,
    diagnostics: Diagnostics,
) -> Guard | None:
    profiles = defaults.features.rate_limit.profiles
    spec = named_profile(value, profiles, f"{where}.rate_limit", "rateLimit", diagnostics)
    if value is None:
        spec = defaults.rate_limit
    if spec is None or not spec.enabled:
        return None
    store = services.buckets
    if spec.shared:
        if services.shared_buckets is None:
            diagnostics.warn(f"{where}.rate_limit.shared", "STATE_TABLE is not set: buckets are per instance")
        else:
            store = services.shared_buckets
    return _built(
        f"{where}.rate_limit",
        diagnostics,
        lambda: RateLimitGuard(
            scope=prefix,
            requests=spec.requests_per_window,
            window_s=spec.window_seconds,
            burst=spec.burst,
            multiplier=multiplier,
            store=store,
            on_store_error=spec.on_store_error,
        ),
    )
