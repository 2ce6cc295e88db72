"""The compiled config: what a request is routed with, as frozen dataclasses (no pydantic here).

`config/load.py` turns a document into a `RouterConfig` once per load; the data plane then reads
these objects and parses nothing per request: target URLs are split, Host headers and CORS headers
built, guards constructed. The only mutable part is `Route.state`, which lives as long as the
compiled config (a pool's rotation position).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from ..cache.policy import DEFAULT_TOTAL_BYTES, Caching
from ..guards.base import Guard
from ..http.paths import join_path
from ..types import Header

if TYPE_CHECKING:
    from ..guards.cors import CorsPolicy

DEFAULT_VIA = "edge-router"
DEFAULT_REPLAY_LIMIT = 1024 * 1024
# CONTRACT section 6: the CORS headers of every answer when the config says nothing else.
DEFAULT_ALLOW_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
DEFAULT_ALLOW_HEADERS = ("Content-Type", "Authorization", "x-backend", "x-backend-location", "X-Request-Id")
DEFAULT_EXPOSE_HEADERS = ("X-Backend-Source", "X-Request-Id")
DEFAULT_MAX_AGE = 600

Strategy = Literal["failover", "round_robin", "weighted"]
Location = Literal["local", "cloud"]


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


def lambda_target(ref: str, weight: int = 1) -> Target:
    """`lambda:FUNCTION_NAME_OR_ARN` as a Target; ValueError when no function is named."""
    function = ref.removeprefix("lambda:")
    if not function:
        raise ValueError("'lambda:' needs a function name or ARN")
    return Target(
        origin=ref, host_header="lambda", base_path="", source=ref, weight=weight, function=function
    )


@dataclass(frozen=True, slots=True)
class BackendEntry:
    """A named backend of the config's `backends` object (also the cloud registry's entries)."""

    id: str
    name: str
    url: str
    location: Location = "cloud"
    health_path: str = "/health"
    health: HealthPolicy | None = None  # this backend's own `health_checks`, else the config's


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """A circuit breaker's settings, seed 002's names and defaults (CONTRACT section 7).

    `failure_threshold` failures within `monitoring_period_s` open the circuit; after
    `open_timeout_s` it is HALF_OPEN and admits at most `half_open_attempts` requests at once;
    `success_threshold` successes close it, and a failure while HALF_OPEN opens it again.
    """

    failure_threshold: int = 5
    monitoring_period_s: float = 60.0
    open_timeout_s: float = 60.0
    half_open_attempts: int = 3
    success_threshold: int = 2

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "half_open_attempts", "success_threshold"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("monitoring_period_s", "open_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be greater than 0")


# Pools and the priority format get a breaker unless a route turns it off: a dead or hanging
# provider must stop costing each request its timeout (CONTRACT section 7).
POOL_BREAKER = BreakerPolicy(failure_threshold=5, open_timeout_s=30.0)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Active health checks (`health_checks`, CONTRACT section 7): a probe every `interval_s`,
    `unhealthy_threshold` failed probes in a row make a backend unhealthy, `healthy_threshold`
    good ones healthy again; a probe is good when it answers an `expected` status in time."""

    interval_s: float = 10.0
    timeout_ms: float = 2000.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    expected: tuple[tuple[int, int], ...] = ((200, 399),)  # inclusive status ranges

    def expects(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expected)


@dataclass(frozen=True, slots=True)
class RetryBudgetPolicy:
    """Envoy's retry budget: fallback attempts in flight are at most `percent` of the requests in
    flight, but never fewer than `min_retries` at once, so an outage cannot multiply the load on
    the backends that are left."""

    percent: float = 20.0
    min_retries: int = 3


@dataclass(frozen=True, slots=True)
class GeoRule:
    countries: Mapping[str, tuple[Target, ...]]
    continents: Mapping[str, tuple[Target, ...]]


@dataclass(eq=False, slots=True)
class RouteState:
    """What routing keeps per route for the compiled config's lifetime (`routing.balancing`)."""

    balancer: Any = None


@dataclass(frozen=True, eq=False)
class Route:
    """A compiled route: where it sends requests, how, and the guards it runs once matched."""

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
    breaker: BreakerPolicy | None = None  # the circuit breaker of this route's backends, if any
    guards: tuple[Guard, ...] = ()  # run after matching, in CONTRACT order; empty: nothing to pay
    cors: CorsPolicy | None = None  # its own (an origin list of its own); None: the config's
    caching: Caching | None = None  # its response cache and coalescing; None: neither
    state: RouteState = field(default_factory=RouteState)

    @property
    def target(self) -> Target:
        """The first (or only) target."""
        return self.targets[0]


@dataclass(frozen=True, slots=True)
class RouterConfig:
    routes: tuple[Route, ...]
    backends: Mapping[str, BackendEntry]
    cors: CorsPolicy  # the router's CORS answers (`guards.cors`), for paths no route has its own for
    via_pseudonym: str  # this router's name in Via (`edge-router`)
    document: Mapping[str, Any]  # as loaded, with ${VAR} substituted (redacted before display)
    request_guards: tuple[Guard, ...] = ()  # stage 1, every path (`config.compile_guards`)
    health: HealthPolicy | None = None  # the top-level `health_checks`; None: no active checks
    retry_budget: RetryBudgetPolicy = RetryBudgetPolicy()
    warnings: tuple[str, ...] = ()
    format: Literal["routes", "priority"] = "routes"
    cache_max_bytes: int = DEFAULT_TOTAL_BYTES  # the response cache's total cap (`features.cache.maxBytes`)

    @property
    def cors_headers(self) -> tuple[Header, ...]:
        """The CORS headers of an answer to a request without an Origin (errors outside routing)."""
        return self.cors.answer_headers(None)

    @property
    def via(self) -> str:
        """The Via entry this router adds (`1.1 edge-router`)."""
        return f"1.1 {self.via_pseudonym}"


def cors_headers(
    *,
    allow_origin: str = "*",
    allow_methods: tuple[str, ...] | list[str] = DEFAULT_ALLOW_METHODS,
    allow_headers: tuple[str, ...] | list[str] = DEFAULT_ALLOW_HEADERS,
    expose_headers: tuple[str, ...] | list[str] = DEFAULT_EXPOSE_HEADERS,
    max_age: int | None = DEFAULT_MAX_AGE,
    allow_credentials: bool = False,
) -> tuple[tuple[Header, ...], tuple[Header, ...]]:
    """(headers on every answer, headers on a preflight answer).

    Every answer carries origin, methods and headers, as seed 001 does; a preflight adds max-age.
    """
    every = [
        (b"access-control-allow-origin", allow_origin.encode()),
        (b"access-control-allow-methods", ", ".join(allow_methods).encode()),
        (b"access-control-allow-headers", ", ".join(allow_headers).encode()),
    ]
    if expose_headers:
        every.append((b"access-control-expose-headers", ", ".join(expose_headers).encode()))
    if allow_credentials:
        every.append((b"access-control-allow-credentials", b"true"))
    preflight = list(every)
    if max_age is not None:
        preflight.append((b"access-control-max-age", str(max_age).encode()))
    return tuple(every), tuple(preflight)


DEFAULT_CORS, DEFAULT_CORS_PREFLIGHT = cors_headers()
