"""The schema of the response cache and coalescing blocks (CONTRACT section 9), seed 002's names.

    "cache": {"enabled": true, "ttl": 300, "respectCacheControl": true, "varyBy": ["Accept-Language"],
              "bypassHeader": "X-No-Cache", "staleWhileRevalidate": 60, "public": false}
    "deduplication": {"enabled": true, "windowMs": 5000}

Either block may instead name a profile under `features.cache.profiles` /
`features.deduplication.profiles`; `features.cache.maxBytes` caps the whole cache (64 MiB).
"""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveInt

from ..cache.policy import DEFAULT_ENTRY_BYTES, DEFAULT_STALE_IF_ERROR_S, DEFAULT_TOTAL_BYTES, DEFAULT_TTL_S
from .spec_base import Model

_FIELD_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


class CacheSpec(Model):
    enabled: bool = True
    ttl: NonNegativeFloat = DEFAULT_TTL_S  # seconds: the freshness of answers that carry none
    respect_cache_control: bool = True
    vary_by: list[str] = Field(default=[], max_length=16)
    bypass_header: str | None = Field(default=None, pattern=_FIELD_NAME)
    stale_while_revalidate: NonNegativeFloat = 0.0  # seconds
    stale_if_error: NonNegativeFloat = DEFAULT_STALE_IF_ERROR_S  # seconds; 0: a failure is never hidden
    public: bool = False  # one entry for every caller: no Authorization/Cookie/API key in the key
    max_entry_bytes: PositiveInt = DEFAULT_ENTRY_BYTES


class DeduplicationSpec(Model):
    enabled: bool = True
    window_ms: PositiveInt = 5000  # the longest a follower waits for its leader


class CacheFeature(Model):
    profiles: dict[str, CacheSpec] = {}
    max_bytes: PositiveInt = DEFAULT_TOTAL_BYTES


class DeduplicationFeature(Model):
    profiles: dict[str, DeduplicationSpec] = {}
