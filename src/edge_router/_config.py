"""The config schema (pydantic v2) and its compiled, request-ready form.

`load_config(data)` validates a parsed document and returns a `RouterConfig`: everything a
request needs (parsed target URLs, host headers, timeouts) is computed here once, so the data
plane does no parsing per request. Validation errors become `ConfigInvalidError`, one line per
problem, each naming its field path (``routes[2].target: ...``).

Keys are accepted in camelCase (as the seeds write them) and snake_case.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from ._exceptions import ConfigInvalidError

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
_PENDING_FEATURES = ("cache", "circuit_breaker", "size_limits", "rate_limit", "deduplication", "geo", "auth")


class RouteSpec(_Model):
    prefix: str
    target: str
    timeout_ms: PositiveInt | None = None
    cache: Any = None
    circuit_breaker: Any = None
    size_limits: Any = None
    rate_limit: Any = None
    deduplication: Any = None
    geo: Any = None
    auth: Any = None

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        if "?" in value or "#" in value:
            raise ValueError("must be a path, without '?' or '#'")
        return value


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
    """A parsed upstream: where to connect, what Host to send, and what to report as the source."""

    origin: str  # scheme://host[:port]
    host_header: str
    base_path: str
    source: str  # X-Backend-Source: backend id, else the origin


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    target: Target
    timeout_ms: float | None
    metric_name: str


@dataclass(frozen=True, slots=True)
class RouterConfig:
    routes: tuple[Route, ...]
    backends: Mapping[str, BackendSpec]
    cors_headers: tuple[tuple[bytes, bytes], ...]
    cors_preflight_headers: tuple[tuple[bytes, bytes], ...]
    via: str
    document: Mapping[str, Any]  # as loaded, with ${VAR} substituted (redacted before display)
    warnings: tuple[str, ...] = field(default=())


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


def load_config(document: Any, env: Mapping[str, str]) -> RouterConfig:
    """Validate a parsed document and compile it; raises ConfigInvalidError naming every bad field."""
    if not isinstance(document, dict):
        raise ConfigInvalidError([f"(document): expected a JSON object, got {type(document).__name__}"])
    missing: set[str] = set()
    substituted = substitute_env(document, env, missing)
    try:
        spec = RoutesConfigSpec.model_validate(substituted)
    except ValidationError as exc:
        raise ConfigInvalidError(
            [f"{_format_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
        ) from None

    problems: list[str] = []
    warnings = [f"environment variable {name} is not set; it was replaced by ''" for name in sorted(missing)]
    backends: dict[str, Target] = {}
    for backend_id, backend in spec.backends.items():
        if not backend.url:
            warnings.append(f"backends.{backend_id}: url is empty; the backend is skipped")
            continue
        try:
            backends[backend_id] = parse_target(backend.url, source=backend_id)
        except ValueError as exc:
            problems.append(f"backends.{backend_id}.url: {exc}")

    routes: list[Route] = []
    for index, route in enumerate(spec.routes):
        if not route.target:
            warnings.append(
                f"routes[{index}].target: empty after substitution; route {route.prefix} is skipped"
            )
            continue
        if route.target in backends:
            target = backends[route.target]
        elif route.target in spec.backends:
            warnings.append(f"routes[{index}].target: backend {route.target!r} has no url; route skipped")
            continue
        else:
            try:
                target = parse_target(route.target)
            except ValueError as exc:
                problems.append(f"routes[{index}].target: {exc}")
                continue
        for feature in _PENDING_FEATURES:
            if getattr(route, feature) is not None:
                warnings.append(f"routes[{index}].{feature}: accepted but not enforced by this version")
        routes.append(Route(route.prefix, target, route.timeout_ms, route.prefix))
    if problems:
        raise ConfigInvalidError(problems)
    for warning in warnings:
        logger.warning("config: %s", warning)
    every, preflight = _cors_headers(spec.cors)
    return RouterConfig(
        routes=tuple(routes),
        backends=dict(spec.backends),
        cors_headers=every,
        cors_preflight_headers=preflight,
        via=f"1.1 {spec.via}",
        document=substituted,
        warnings=tuple(warnings),
    )


def config_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the config file (`edge-router schema`)."""
    return RoutesConfigSpec.model_json_schema(by_alias=False)
