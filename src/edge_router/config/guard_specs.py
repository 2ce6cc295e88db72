"""The schema of the guard blocks (CONTRACT section 8), seed 002's names and defaults.

Each block is accepted at top level and per route (a route's own wins), inline or, for size and
rate limits, as the name of a profile under `features.<name>.profiles`; `features.sizeLimits.default`
and a top-level `rateLimit` apply to every route that sets none of its own. Values are checked
here (types, ranges); what only a guard can check (CIDRs, origin patterns) is checked when the
guard is built, and the error names the field either way.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from .spec_base import Model

# Seed 002's defaults (CONTRACT section 8).
MAX_BODY_SIZE = 10 * 1024 * 1024
MAX_URL_LENGTH = 8192
MAX_HEADER_SIZE = 16384
MAX_HEADER_COUNT = 100


class IpRulesSpec(Model):
    """`{"allow": [CIDR...], "deny": [CIDR...]}`: deny wins; an allow list admits only its members."""

    allow: list[str] | None = None
    deny: list[str] = []


class SizeLimitsSpec(Model):
    enabled: bool = True
    max_body_size: PositiveInt = MAX_BODY_SIZE
    max_url_length: PositiveInt = MAX_URL_LENGTH
    max_header_size: PositiveInt = MAX_HEADER_SIZE
    max_header_count: PositiveInt = MAX_HEADER_COUNT


class RateLimitSpec(Model):
    """A token bucket per client (per API key when a valid one is sent) and per route."""

    enabled: bool = True
    requests_per_window: PositiveInt = 100
    window_seconds: PositiveFloat = 60.0
    burst: PositiveInt | None = None  # the bucket's capacity; default requests_per_window
    shared: bool = False  # with STATE_TABLE: one bucket for the whole fleet
    on_store_error: Literal["allow", "deny"] = "allow"


class ApiKeySpec(Model):
    id: str = Field(min_length=1)
    hash: str = Field(pattern=r"^[0-9a-fA-F]{64}$")  # SHA-256 of the key, hex
    name: str | None = None
    rate_limit_multiplier: PositiveFloat = 1.0


class ApiKeysSpec(Model):
    enabled: bool = True
    required: bool = True
    header: str = Field(default="X-API-Key", pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
    keys: list[ApiKeySpec] = []
    forward_key: bool = False


# Spellings of seed 002's `auth.type` that mean API keys; any other type is refused at load.
API_KEY_AUTH_TYPES = frozenset({"api_key", "api_keys", "apikey", "api-key", "apikeys"})


class SizeLimitsFeature(Model):
    default: SizeLimitsSpec | None = None
    profiles: dict[str, SizeLimitsSpec] = {}


class RateLimitFeature(Model):
    default: RateLimitSpec | None = None
    profiles: dict[str, RateLimitSpec] = {}


class GuardBlocks(Model):
    """The guard blocks a route and the top level share."""

    ip_rules: IpRulesSpec | None = None
    allowed_origins: list[str] | None = None
    blocked_origins: list[str] | None = None
    size_limits: SizeLimitsSpec | str | None = None
    rate_limit: RateLimitSpec | str | None = None
    api_keys: ApiKeysSpec | None = None
    # seed 002's `auth`: {"type": "api_key", ...the api_keys fields}; any other type is refused
    auth: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_key_block(self) -> GuardBlocks:
        if self.api_keys is not None and self.auth is not None:
            raise ValueError("give either 'api_keys' or 'auth', not both")
        return self
