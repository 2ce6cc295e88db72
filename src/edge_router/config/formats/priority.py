"""Seed 003's priority format, loaded unchanged and compiled into ordinary failover routes.

    {"global_priority": "21",
     "routes": {"task": {"priority": "213", "cache": false}},
     "providers": {"1": "https://api.example", "2": "${WORKER_BASE}"}}

The first path segment picks the app (`/task/...` -> routes.task); apps not listed use
`global_priority`. Digits pick providers in order; a provider whose URL is empty (an unset
`${VAR}`) or a digit naming no provider is skipped with a warning. The full path is forwarded
(appended to the provider URL's own path, which is usually empty). Per-attempt timeout defaults
to 2500 ms (seed 003) and POST/PATCH fall back on status and timeout too (`retry_non_idempotent`
true: the seed's stated behaviour).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...guards.services import GuardServices
from ..compile import breaker_policy, compile_backends, finish
from ..compile_cache import priority_caching
from ..diagnostics import Diagnostics
from ..guard_specs import GuardBlocks
from ..model import Route, RouterConfig, Target, parse_target
from ..schema import PriorityAppSpec, PriorityConfigSpec, validate


def parse_priority(priority: str, providers: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Seed 003's priority digits -> the provider keys to try, in order, and warnings for what was skipped.

    ``"213"`` with providers 1, 2 and 3 gives ``["2", "1", "3"]``. Skipped, each with a warning naming
    the character: a digit with no provider, a provider whose URL is empty or blank (an unset
    ``${VAR}``), and any character that is not an ASCII digit. A repeated digit is tried once, at its
    first position: trying the same provider twice in one request only doubles the wait. Each problem
    is warned about once, however often the character repeats.
    """
    keys: list[str] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for char in priority:
        if char in seen:
            continue
        seen.add(char)
        if char not in "0123456789":
            warnings.append(f"priority character {char!r} is not a digit; skipped")
        elif char not in providers:
            warnings.append(f"priority digit {char!r} names no provider; skipped")
        elif not providers[char].strip():
            warnings.append(f"priority digit {char!r}: provider URL is empty; skipped")
        else:
            keys.append(char)
    return keys, warnings


def compile_priority_config(
    document: dict[str, Any], diagnostics: Diagnostics, services: GuardServices
) -> RouterConfig:
    spec = validate(PriorityConfigSpec, document)
    providers: dict[str, Target] = {}
    for key, url in spec.providers.items():
        if not url:
            diagnostics.warn(f"providers.{key}", f"url is empty; provider {key} is skipped")
            continue
        try:
            providers[key] = parse_target(url)
        except ValueError as exc:
            diagnostics.problem(f"providers.{key}", exc)
    compile_backends(spec.backends, diagnostics)
    urls = {key: target.origin for key, target in providers.items()}

    def route(prefix: str, where: str, priority: str, app: PriorityAppSpec | None) -> Route:
        keys, skipped = parse_priority(priority, urls)
        for warning in skipped:
            diagnostics.warn(where, warning)
        retry = app.retry_non_idempotent if app and app.retry_non_idempotent is not None else None
        breaker = app.circuit_breaker if app and app.circuit_breaker is not None else spec.circuit_breaker
        return Route(
            prefix=prefix,
            targets=tuple(providers[key] for key in keys),
            timeout_ms=(app.timeout_ms if app and app.timeout_ms else spec.timeout_ms),
            strategy="failover",
            strip_prefix=False,
            retry_non_idempotent=spec.retry_non_idempotent if retry is None else retry,
            replay_limit=spec.replay_limit_bytes,
            # every app is a provider pool: a breaker by default (CONTRACT section 7)
            breaker=breaker_policy(
                breaker,
                pool=True,
                profiles=spec.features.circuit_breaker.profiles,
                where=f"{where.rpartition('.')[0] or where}.circuit_breaker",
                diagnostics=diagnostics,
            ),
            caching=priority_caching(
                app.cache if app else None,
                app.cache_ttl_seconds if app else None,
                spec.features,
                where.rpartition(".")[0] or where,
                diagnostics,
            ),
        )

    routes = [
        route(f"/{name}", f"routes.{name}.priority", app.priority or spec.global_priority, app)
        for name, app in spec.routes.items()
    ]
    if spec.global_priority:
        routes.append(route("/", "global_priority", spec.global_priority, None))
    no_blocks = GuardBlocks()  # apps have none of their own: the top level's apply to each
    return finish(spec, [(route, no_blocks) for route in routes], document, diagnostics, "priority", services)
