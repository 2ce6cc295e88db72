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

from typing import Any

from pydantic import Field, PositiveInt, ValidationError

from ._balancing import parse_priority
from ._config import (
    DEFAULT_REPLAY_LIMIT,
    DEFAULT_VIA,
    BackendSpec,
    CorsSpec,
    Route,
    RouterConfig,
    Target,
    _Model,
    compile_backends,
    finish,
    parse_target,
    validation_problems,
)

PRIORITY_TIMEOUT_MS = 2500


class PriorityAppSpec(_Model):
    priority: str = ""
    cache: Any = None
    cache_ttl_seconds: Any = None
    timeout_ms: PositiveInt | None = None
    retry_non_idempotent: bool | None = None


class PriorityConfigSpec(_Model):
    """The priority format (seed 003)."""

    global_priority: str = ""
    routes: dict[str, PriorityAppSpec] = {}
    providers: dict[str, str]
    backends: dict[str, BackendSpec] = {}
    cors: CorsSpec = CorsSpec()
    via: str = Field(default=DEFAULT_VIA, pattern=r"^[A-Za-z0-9._-]+$")
    timeout_ms: PositiveInt = PRIORITY_TIMEOUT_MS
    retry_non_idempotent: bool = True
    replay_limit_bytes: int = Field(default=DEFAULT_REPLAY_LIMIT, ge=0)


def _ordered(
    where: str, priority: str, providers: dict[str, Target], warnings: list[str]
) -> tuple[Target, ...]:
    urls = {key: target.origin for key, target in providers.items()}
    keys, problems = parse_priority(priority, urls)
    warnings.extend(f"{where}: {problem}; skipped" for problem in problems)
    return tuple(providers[key] for key in keys)


def load_priority_config(document: dict[str, Any], warnings: list[str]) -> RouterConfig:
    try:
        spec = PriorityConfigSpec.model_validate(document)
    except ValidationError as exc:
        raise validation_problems(exc) from None
    problems: list[str] = []
    providers: dict[str, Target] = {}
    for key, url in spec.providers.items():
        if not url:
            warnings.append(f"providers.{key}: url is empty; provider {key} is skipped")
            continue
        try:
            providers[key] = parse_target(url)
        except ValueError as exc:
            problems.append(f"providers.{key}: {exc}")
    compile_backends(spec.backends, problems, warnings)

    def route(prefix: str, where: str, priority: str, app: PriorityAppSpec | None) -> Route:
        retry = app.retry_non_idempotent if app and app.retry_non_idempotent is not None else None
        return Route(
            prefix=prefix,
            targets=_ordered(where, priority, providers, warnings),
            timeout_ms=(app.timeout_ms if app and app.timeout_ms else spec.timeout_ms),
            strategy="failover",
            strip_prefix=False,
            retry_non_idempotent=spec.retry_non_idempotent if retry is None else retry,
            replay_limit=spec.replay_limit_bytes,
        )

    routes = [
        route(f"/{name}", f"routes.{name}.priority", app.priority or spec.global_priority, app)
        for name, app in spec.routes.items()
    ]
    if spec.global_priority:
        routes.append(route("/", "global_priority", spec.global_priority, None))
    for name, app in spec.routes.items():
        if app.cache is not None or app.cache_ttl_seconds is not None:
            warnings.append(f"routes.{name}.cache: accepted but not enforced by this version")
    return finish(
        routes=routes,
        backends=spec.backends,
        cors=spec.cors,
        via=spec.via,
        document=document,
        problems=problems,
        warnings=warnings,
        format="priority",
    )
