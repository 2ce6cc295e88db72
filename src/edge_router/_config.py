"""The config schema (pydantic v2) and its compiled, request-ready form.

`load_config(data)` validates a parsed document and returns a `RouterConfig`: everything a
request needs (parsed target URLs, host headers, timeouts) is computed here once, so the data
plane does no parsing per request. Validation errors become `ConfigInvalidError`, one line per
problem, each naming its field path (``routes[2].target: ...``).

Keys are accepted in camelCase (as the seeds write them) and snake_case.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ._balancing import RoundRobin, SmoothWeighted
from ._exceptions import ConfigInvalidError
from ._paths import join_path

logger = logging.getLogger("edge_router.config")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_VIA = "edge-router"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
    )


class BackendSpec(_Model):
    """A named backend, usable by id in `target` and (later) for header routing."""

    url: str
    name: str | None = None
    location: Literal["local", "cloud"] = "cloud"
    health_path: str = "/health"
    id: str | None = None
    type: str | None = None


class CorsSpec(_Model):
    allow_origin: str = "*"
    allow_methods: list[str] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    allow_headers: list[str] = [
        "Content-Type",
        "Authorization",
        "x-backend",
        "x-backend-location",
        "X-Request-Id",
    ]
    expose_headers: list[str] = ["X-Backend-Source", "X-Request-Id"]
    max_age: int | None = Field(default=600, ge=0)
    allow_credentials: bool = False


# Feature blocks the seeds write and later issues implement: accepted so those configs load
# unchanged, and named in a warning so nobody believes they are enforced yet.
_PENDING_FEATURES = ("cache", "circuit_breaker", "size_limits", "rate_limit", "deduplication", "auth")
DEFAULT_REPLAY_LIMIT = 1024 * 1024


class TargetSpec(_Model):
    """One member of a pool: a URL, a backend id or `lambda:FUNCTION`, with a weight."""

    url: str
    weight: int = Field(default=1, ge=0)
    enabled: bool = True


TargetRef = str | TargetSpec


class GeoSpec(_Model):
    """Targets by viewer country (ISO 3166 alpha-2) or continent (AF AN AS EU NA OC SA)."""

    countries: dict[str, TargetRef | list[TargetRef]] = {}
    continents: dict[str, TargetRef | list[TargetRef]] = {}


class RouteSpec(_Model):
    prefix: str
    target: str | None = None
    targets: list[TargetRef] | None = None
    strategy: Literal["failover", "round_robin", "weighted"] = "failover"
    select_by_header: str | None = None
    default: str | None = None
    geo: GeoSpec | None = None
    timeout_ms: PositiveInt | None = None
    # nginx/Traefik practice: a POST is not re-sent to another backend after it may have been
    # processed, unless the route says it is safe (CONTRACT section 3).
    retry_non_idempotent: bool = False
    replay_limit_bytes: int = Field(default=DEFAULT_REPLAY_LIMIT, ge=0)
    cache: Any = None
    circuit_breaker: Any = None
    size_limits: Any = None
    rate_limit: Any = None
    deduplication: Any = None
    auth: Any = None

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        if "?" in value or "#" in value:
            raise ValueError("must be a path, without '?' or '#'")
        return value

    @model_validator(mode="after")
    def _one_way_to_pick(self) -> RouteSpec:
        if self.target is not None and self.targets is not None:
            raise ValueError("give either 'target' or 'targets', not both")
        if self.target is None and self.targets is None and self.select_by_header is None:
            raise ValueError("needs 'target', 'targets' or 'select_by_header'")
        return self


class RoutesConfigSpec(_Model):
    """The routes-list format (seed 000/002): routes are tried in order, the first match wins."""

    version: str = "1.0"
    routes: list[RouteSpec]
    backends: dict[str, BackendSpec] = {}
    cors: CorsSpec = CorsSpec()
    via: str = Field(default=DEFAULT_VIA, pattern=r"^[A-Za-z0-9._-]+$")
    metrics: Any = None
    rate_limit: Any = None


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed upstream: where to connect, what Host to send, and what to report as the source.

    A `lambda:FUNCTION` target has `function` set; it is invoked, not connected to.
    """

    origin: str  # scheme://host[:port], or "lambda:FUNCTION"
    host_header: str
    base_path: str
    source: str  # X-Backend-Source: backend id, else the origin
    weight: int = 1
    function: str | None = None

    def url(self, rest: str, query_suffix: str) -> str:
        """The upstream URL for what followed the route's prefix (`query_suffix` is "" or "?...").

        For a Lambda target it is `lambda:FUNCTION/path?query`: only path and query are used.
        """
        return self.origin + join_path(self.base_path, rest) + query_suffix


@dataclass(frozen=True, slots=True)
class GeoRule:
    countries: Mapping[str, tuple[Target, ...]]
    continents: Mapping[str, tuple[Target, ...]]


Strategy = Literal["failover", "round_robin", "weighted"]


@dataclass(frozen=True, eq=False)
class Route:
    """A compiled route. `balancer` holds the pool's rotation state for this config's lifetime."""

    prefix: str
    targets: tuple[Target, ...]
    timeout_ms: float | None
    strategy: Strategy = "failover"
    strip_prefix: bool = True  # False: the full path is forwarded (priority format)
    retry_non_idempotent: bool = False
    replay_limit: int = DEFAULT_REPLAY_LIMIT
    select_by_header: str | None = None
    default_backend: str | None = None
    geo: GeoRule | None = None
    balancer: Any = None

    @property
    def target(self) -> Target:
        return self.targets[0]

    @property
    def is_pool(self) -> bool:
        return len(self.targets) > 1 or self.geo is not None or self.select_by_header is not None


@dataclass(frozen=True, slots=True)
class RouterConfig:
    routes: tuple[Route, ...]
    backends: Mapping[str, BackendSpec]
    cors_headers: tuple[tuple[bytes, bytes], ...]
    cors_preflight_headers: tuple[tuple[bytes, bytes], ...]
    via: str
    document: Mapping[str, Any]  # as loaded, with ${VAR} substituted (redacted before display)
    warnings: tuple[str, ...] = field(default=())
    format: Literal["routes", "priority"] = "routes"


def substitute_env(value: Any, env: Mapping[str, str], missing: set[str]) -> Any:
    """Replace ``${VAR}`` in every string; an unset variable becomes empty and is reported."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                missing.add(name)
            return env.get(name, "")

        return _VAR.sub(replace, value)
    if isinstance(value, list):
        return [substitute_env(item, env, missing) for item in value]
    if isinstance(value, dict):
        return {key: substitute_env(item, env, missing) for key, item in value.items()}
    return value


def parse_target(url: str, source: str | None = None) -> Target:
    """Parse an http(s) URL into a Target; ValueError names what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL or a backend id")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r} must not carry a query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default_port = 443 if parts.scheme == "https" else 80
    host_header = host if port in (None, default_port) else f"{host}:{port}"
    origin = f"{parts.scheme}://{host_header}"
    return Target(origin=origin, host_header=host_header, base_path=parts.path, source=source or origin)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _cors_headers(spec: CorsSpec) -> tuple[tuple[tuple[bytes, bytes], ...], tuple[tuple[bytes, bytes], ...]]:
    """(headers on every response, headers on a preflight answer).

    Every answer carries origin, methods and headers, as seed 001 does; a preflight adds max-age.
    """
    every = [
        (b"access-control-allow-origin", spec.allow_origin.encode()),
        (b"access-control-allow-methods", ", ".join(spec.allow_methods).encode()),
        (b"access-control-allow-headers", ", ".join(spec.allow_headers).encode()),
    ]
    if spec.expose_headers:
        every.append((b"access-control-expose-headers", ", ".join(spec.expose_headers).encode()))
    if spec.allow_credentials:
        every.append((b"access-control-allow-credentials", b"true"))
    preflight = list(every)
    if spec.max_age is not None:
        preflight.append((b"access-control-max-age", str(spec.max_age).encode()))
    return tuple(every), tuple(preflight)


DEFAULT_CORS, DEFAULT_CORS_PREFLIGHT = _cors_headers(CorsSpec())


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
            function = ref.removeprefix("lambda:")
            if not function:
                raise ValueError("'lambda:' needs a function name or ARN")
            return Target(
                origin=ref, host_header="lambda", base_path="", source=ref, weight=weight, function=function
            )
        if ref in self._backends:
            return replace(self._backends[ref], weight=weight)
        if ref in self._declared:
            return None
        return replace(parse_target(ref), weight=weight)


def compile_backends(
    specs: Mapping[str, BackendSpec], problems: list[str], warnings: list[str]
) -> dict[str, Target]:
    backends: dict[str, Target] = {}
    for backend_id, backend in specs.items():
        if not backend.url:
            warnings.append(f"backends.{backend_id}: url is empty; the backend is skipped")
            continue
        try:
            backends[backend_id] = parse_target(backend.url, source=backend_id)
        except ValueError as exc:
            problems.append(f"backends.{backend_id}.url: {exc}")
    return backends


def make_balancer(strategy: Strategy, targets: tuple[Target, ...]) -> Any:
    if strategy == "round_robin":
        # A random start: every new Lambda instance would otherwise send its first request to target 0.
        return RoundRobin(start=random.randrange(max(len(targets), 1)))  # noqa: S311 - not security
    if strategy == "weighted":
        return SmoothWeighted([target.weight for target in targets])
    return None


def _pool(
    refs: list[tuple[str, str, int, bool]], resolver: TargetResolver, problems: list[str], warnings: list[str]
) -> tuple[Target, ...]:
    """Resolve (field, ref, weight, enabled) entries; drained ones (weight 0, disabled) are left out."""
    targets = []
    for where, ref, weight, enabled in refs:
        try:
            target = resolver.resolve(ref, weight)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if target is None:
            warnings.append(f"{where}: empty after substitution (or a backend without url); skipped")
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
    problems: list[str],
    warnings: list[str],
) -> Route | None:
    where = f"routes[{index}]"
    if route.target is not None:
        targets = _pool(_refs(f"{where}.target", route.target), resolver, problems, warnings)
        if not targets:
            warnings.append(f"{where}: route {route.prefix} has no target and is skipped")
            return None
    else:
        targets = _pool(_refs(f"{where}.targets", route.targets or []), resolver, problems, warnings)
    geo = None
    if route.geo is not None:
        countries = {
            code.upper(): _pool(_refs(f"{where}.geo.countries.{code}", refs), resolver, problems, warnings)
            for code, refs in route.geo.countries.items()
        }
        continents = {
            code.upper(): _pool(_refs(f"{where}.geo.continents.{code}", refs), resolver, problems, warnings)
            for code, refs in route.geo.continents.items()
        }
        geo = GeoRule(countries, continents)
    if route.select_by_header is not None and route.default is not None and route.default not in backend_ids:
        problems.append(f"{where}.default: {route.default!r} is not one of the backends")
    for feature in _PENDING_FEATURES:
        if getattr(route, feature) is not None:
            warnings.append(f"{where}.{feature}: accepted but not enforced by this version")
    return Route(
        prefix=route.prefix,
        targets=targets,
        timeout_ms=route.timeout_ms,
        strategy=route.strategy,
        retry_non_idempotent=route.retry_non_idempotent,
        replay_limit=route.replay_limit_bytes,
        select_by_header=route.select_by_header.lower() if route.select_by_header else None,
        default_backend=route.default,
        geo=geo,
        balancer=make_balancer(route.strategy, targets),
    )


def is_priority_format(document: Mapping[str, Any]) -> bool:
    """Seed 003's shape: `providers`/`global_priority`, or `routes` as an object keyed by app."""
    return (
        "providers" in document or "global_priority" in document or isinstance(document.get("routes"), dict)
    )


def validation_problems(exc: ValidationError) -> ConfigInvalidError:
    return ConfigInvalidError([f"{_format_loc(err['loc'])}: {err['msg']}" for err in exc.errors()])


def finish(
    *,
    routes: list[Route],
    backends: Mapping[str, BackendSpec],
    cors: CorsSpec,
    via: str,
    document: Mapping[str, Any],
    problems: list[str],
    warnings: list[str],
    format: Literal["routes", "priority"],
) -> RouterConfig:
    if problems:
        raise ConfigInvalidError(problems)
    for warning in warnings:
        logger.warning("config: %s", warning)
    every, preflight = _cors_headers(cors)
    return RouterConfig(
        routes=tuple(routes),
        backends=dict(backends),
        cors_headers=every,
        cors_preflight_headers=preflight,
        via=f"1.1 {via}",
        document=document,
        warnings=tuple(warnings),
        format=format,
    )


# Real configs nest a handful of levels. Every step after parsing (env substitution, pydantic, the
# redaction of /_config/route) recurses per level, so a deeper document is refused at the door.
MAX_DOCUMENT_DEPTH = 64
TOO_DEEP = f"nested more than {MAX_DOCUMENT_DEPTH} levels deep"


def _nested_too_deep(document: Any, limit: int = MAX_DOCUMENT_DEPTH) -> bool:
    """Whether objects/lists nest more than `limit` levels deep (the document itself is level 1).

    Iterative, so no document can exhaust the stack here. A container shared through YAML anchors is
    expanded again only when reached deeper than before, so aliases cannot make the walk exponential,
    and a self-referencing one is stopped by the limit.
    """
    expanded_at: dict[int, int] = {}
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if not isinstance(value, dict | list) or expanded_at.get(id(value), 0) >= depth:
            continue
        if depth > limit:
            return True
        expanded_at[id(value)] = depth
        pending.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return False


def load_config(document: Any, env: Mapping[str, str]) -> RouterConfig:
    """Validate a parsed document (either format) and compile it.

    Raises ConfigInvalidError naming every bad field.
    """
    if _nested_too_deep(document):
        raise ConfigInvalidError([f"(document): {TOO_DEEP}"])
    if not isinstance(document, dict):
        raise ConfigInvalidError([f"(document): expected a JSON object, got {type(document).__name__}"])
    missing: set[str] = set()
    substituted = substitute_env(document, env, missing)
    warnings = [f"environment variable {name} is not set; it was replaced by ''" for name in sorted(missing)]
    if is_priority_format(substituted):
        from ._priority_format import load_priority_config

        return load_priority_config(substituted, warnings)
    try:
        spec = RoutesConfigSpec.model_validate(substituted)
    except ValidationError as exc:
        raise validation_problems(exc) from None
    problems: list[str] = []
    backends = compile_backends(spec.backends, problems, warnings)
    resolver = TargetResolver(backends, set(spec.backends))
    routes = []
    for index, route_spec in enumerate(spec.routes):
        route = _compile_route(index, route_spec, resolver, set(spec.backends), problems, warnings)
        if route is not None:
            routes.append(route)
    return finish(
        routes=routes,
        backends=spec.backends,
        cors=spec.cors,
        via=spec.via,
        document=substituted,
        problems=problems,
        warnings=warnings,
        format="routes",
    )


def config_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the config file, both formats (`edge-router schema`)."""
    from pydantic import TypeAdapter

    from ._priority_format import PriorityConfigSpec

    schema: dict[str, Any] = TypeAdapter(RoutesConfigSpec | PriorityConfigSpec).json_schema(by_alias=False)
    schema["title"] = "edge-router config"
    return schema
