"""The config schema, both formats (pydantic v2), and the one place pydantic's errors are mapped.

`validate(spec, document)` returns the validated spec or raises `ConfigInvalidError` with one line
per problem, each naming its field path (``routes[2].target: ...``). Keys are accepted in camelCase
(as the seeds write them) and snake_case; unknown keys are errors, so a typo is named, not ignored.
`config_json_schema()` is what `edge-router schema` publishes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    Discriminator,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ..exceptions import ConfigInvalidError
from .cache_specs import CacheFeature, CacheSpec, DeduplicationFeature, DeduplicationSpec
from .guard_specs import GuardBlocks, RateLimitFeature, SizeLimitsFeature
from .model import (
    DEFAULT_ALLOW_HEADERS,
    DEFAULT_ALLOW_METHODS,
    DEFAULT_EXPOSE_HEADERS,
    DEFAULT_MAX_AGE,
    DEFAULT_REPLAY_LIMIT,
    DEFAULT_VIA,
)
from .spec_base import Model

_PSEUDONYM = r"^[A-Za-z0-9._-]+$"


_Model = Model


_STATUS_RANGES = (
    r"^\s*([1-5][0-9x]{2}(\s*-\s*[1-5][0-9]{2})?)(\s*,\s*[1-5][0-9x]{2}(\s*-\s*[1-5][0-9]{2})?)*\s*$"
)


class HealthChecksSpec(_Model):
    """Active health checks (CONTRACT section 7), at top level or for one backend."""

    enabled: bool = True
    interval_s: PositiveFloat = 10.0
    timeout_ms: PositiveInt = 2000
    healthy_threshold: PositiveInt = 2
    unhealthy_threshold: PositiveInt = 3
    expected_status: str = Field(default="200-399", pattern=_STATUS_RANGES)  # "200-399", "200,204", "2xx"


class BackendSpec(_Model):
    """A named backend, usable by id in `target`/`targets` and for header routing."""

    url: str
    name: str | None = None
    location: Literal["local", "cloud"] = "cloud"
    # seed 001 calls it healthEndpoint
    health_path: str = Field(
        default="/health",
        validation_alias=AliasChoices("health_path", "healthPath", "healthEndpoint", "health_endpoint"),
        pattern=r"^/",
    )
    health_checks: HealthChecksSpec | None = None
    id: str | None = None
    type: str | None = None


class CircuitBreakerSpec(_Model):
    """Seed 002's `circuitBreaker` block; times in milliseconds, as the seed writes them."""

    enabled: bool = True
    failure_threshold: PositiveInt = 5
    monitoring_period: PositiveInt = 60000
    timeout: PositiveInt = 60000
    half_open_attempts: PositiveInt = 3
    success_threshold: PositiveInt = 2


class CircuitBreakerFeature(_Model):
    profiles: dict[str, CircuitBreakerSpec] = {}


class FeaturesSpec(_Model):
    """Seed 002's `features`: named profiles routes refer to (`"circuitBreaker": "NAME"`)."""

    circuit_breaker: CircuitBreakerFeature = CircuitBreakerFeature()
    size_limits: SizeLimitsFeature = SizeLimitsFeature()
    rate_limit: RateLimitFeature = RateLimitFeature()
    cache: CacheFeature = CacheFeature()
    deduplication: DeduplicationFeature = DeduplicationFeature()


class RetryBudgetSpec(_Model):
    percent: float = Field(default=20.0, gt=0, le=100)
    min_retries: int = Field(default=3, ge=0)


class CorsSpec(_Model):
    allow_origin: str = "*"
    allow_methods: list[str] = list(DEFAULT_ALLOW_METHODS)
    allow_headers: list[str] = list(DEFAULT_ALLOW_HEADERS)
    expose_headers: list[str] = list(DEFAULT_EXPOSE_HEADERS)
    max_age: int | None = Field(default=DEFAULT_MAX_AGE, ge=0)
    allow_credentials: bool = False
    # False: a backend's answer that carries its own Access-Control-Allow-Origin keeps its own
    # CORS headers (CONTRACT section 6); True: the router's replace them.
    override: bool = False

    @model_validator(mode="after")
    def _credentials_need_an_origin(self) -> CorsSpec:
        # The Fetch standard: a credentialed request fails when the allowed origin is "*", so this
        # pair would only ever break the browsers it was meant to let in.
        if self.allow_credentials and self.allow_origin == "*":
            raise ValueError(
                "allow_credentials true needs a named allow_origin: browsers refuse credentials with '*'"
            )
        return self


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


class RouteSpec(GuardBlocks):
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
    circuit_breaker: CircuitBreakerSpec | str | None = None  # a block, or a features profile name
    rate_limit_multiplier: float = Field(default=1.0, gt=0)
    cache: CacheSpec | str | None = None  # a block, or a features profile name
    deduplication: DeduplicationSpec | str | None = None

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


# `"cors": "backend"` leaves CORS to the backends; otherwise a block. A discriminator, so that an
# error in the block is reported against the block alone (not also as "not 'backend'").
_CORS_TAGS = ("cors block", "cors mode")
CorsBlock = Annotated[
    Annotated[CorsSpec, Tag(_CORS_TAGS[0])] | Annotated[Literal["backend"], Tag(_CORS_TAGS[1])],
    Discriminator(lambda value: _CORS_TAGS[1] if isinstance(value, str) else _CORS_TAGS[0]),
]


class RoutesConfigSpec(GuardBlocks):
    """The routes-list format (seed 000/002): routes are tried in order, the first match wins."""

    version: str = "1.0"
    routes: list[RouteSpec]
    backends: dict[str, BackendSpec] = {}
    cors: CorsBlock = CorsSpec()
    via: str = Field(default=DEFAULT_VIA, pattern=_PSEUDONYM)
    health_checks: HealthChecksSpec | None = None
    retry_budget: RetryBudgetSpec = RetryBudgetSpec()
    features: FeaturesSpec = FeaturesSpec()
    trusted_proxies: list[str] = []
    metrics: Any = None


PRIORITY_TIMEOUT_MS = 2500


class PriorityAppSpec(_Model):
    priority: str = ""
    cache: bool | CacheSpec | str | None = None  # seed 003: true, with cache_ttl_seconds
    cache_ttl_seconds: NonNegativeFloat | None = None
    timeout_ms: PositiveInt | None = None
    retry_non_idempotent: bool | None = None
    circuit_breaker: CircuitBreakerSpec | str | None = None


class PriorityConfigSpec(GuardBlocks):
    """The priority format (seed 003); guard blocks at top level apply to every app."""

    global_priority: str = ""
    routes: dict[str, PriorityAppSpec] = {}
    providers: dict[str, str]
    backends: dict[str, BackendSpec] = {}
    cors: CorsBlock = CorsSpec()
    trusted_proxies: list[str] = []
    via: str = Field(default=DEFAULT_VIA, pattern=_PSEUDONYM)
    timeout_ms: PositiveInt = PRIORITY_TIMEOUT_MS
    retry_non_idempotent: bool = True
    replay_limit_bytes: int = Field(default=DEFAULT_REPLAY_LIMIT, ge=0)
    circuit_breaker: CircuitBreakerSpec | str | None = None  # every app's, unless the app sets its own
    health_checks: HealthChecksSpec | None = None
    retry_budget: RetryBudgetSpec = RetryBudgetSpec()
    features: FeaturesSpec = FeaturesSpec()


Spec = TypeVar("Spec", bound=_Model)


def validate(spec: type[Spec], document: Any) -> Spec:
    """`document` as a `spec`, or ConfigInvalidError naming every bad field."""
    try:
        return spec.model_validate(document)
    except ValidationError as exc:
        raise ConfigInvalidError(
            [f"{_format_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
        ) from None


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part in _CORS_TAGS or (isinstance(part, str) and part.startswith("function-")):
            continue  # pydantic's names for a union member or a validator, not a field
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def config_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the config file, both formats (`edge-router schema`)."""
    schema: dict[str, Any] = TypeAdapter(RoutesConfigSpec | PriorityConfigSpec).json_schema(by_alias=False)
    schema["title"] = "edge-router config"
    return schema
