"""A route's `cache` and `deduplication` blocks compiled into one `Caching` (CONTRACT section 9)."""

from __future__ import annotations

from ..cache.policy import CacheRules, Caching
from .cache_specs import CacheSpec, DeduplicationSpec
from .compile_guards import named_profile
from .diagnostics import Diagnostics
from .schema import FeaturesSpec


def caching_policy(
    cache: CacheSpec | str | None,
    deduplication: DeduplicationSpec | str | None,
    features: FeaturesSpec,
    where: str,
    diagnostics: Diagnostics,
) -> Caching | None:
    """The route's cache and coalescing; None when it has neither (it then pays nothing)."""
    cache_spec = named_profile(cache, features.cache.profiles, f"{where}.cache", "cache", diagnostics)
    dedup_spec = named_profile(
        deduplication, features.deduplication.profiles, f"{where}.deduplication", "deduplication", diagnostics
    )
    rules = cache_rules(cache_spec) if cache_spec is not None and cache_spec.enabled else None
    window = dedup_spec.window_ms / 1000 if dedup_spec is not None and dedup_spec.enabled else None
    if rules is None and window is None:
        return None
    return Caching(rules=rules, coalesce_window_s=window)


def cache_rules(spec: CacheSpec) -> CacheRules:
    return CacheRules(
        ttl_s=spec.ttl,
        respect_cache_control=spec.respect_cache_control,
        vary_by=tuple(name.strip().lower() for name in spec.vary_by if name.strip()),
        bypass_header=spec.bypass_header.lower() if spec.bypass_header else None,
        stale_while_revalidate_s=spec.stale_while_revalidate,
        stale_if_error_s=spec.stale_if_error,
        public=spec.public,
        max_entry_bytes=spec.max_entry_bytes,
    )


def priority_caching(
    cache: bool | CacheSpec | str | None,
    ttl_seconds: float | None,
    features: FeaturesSpec,
    where: str,
    diagnostics: Diagnostics,
) -> Caching | None:
    """Seed 003's app `"cache": true, "cache_ttl_seconds": 60` (or a cache block, or a profile)."""
    if cache is True:
        spec: CacheSpec | str | None = CacheSpec() if ttl_seconds is None else CacheSpec(ttl=ttl_seconds)
    elif cache is False or cache is None:
        if ttl_seconds is not None:
            diagnostics.warn(f"{where}.cache_ttl_seconds", 'has no effect without "cache": true')
        return None
    else:
        spec = cache
    return caching_policy(spec, None, features, where, diagnostics)
