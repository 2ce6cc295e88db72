"""`load_config(document, env)`: a parsed document, in either format, to a `RouterConfig`.

The door every document passes, from every source (file, SSM, DynamoDB, `edge-router validate`,
flip/push): a depth limit, `${VAR}` substitution, format detection, then the format's compiler.
Raises `ConfigInvalidError` naming every bad field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigInvalidError
from ..guards.services import GuardServices
from .diagnostics import Diagnostics
from .formats.priority import compile_priority_config
from .formats.routes import compile_routes_config
from .model import RouterConfig

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Real configs nest a handful of levels. Every step after parsing (env substitution, pydantic, the
# redaction of /_config/route) recurses per level, so a deeper document is refused at the door.
MAX_DOCUMENT_DEPTH = 64
TOO_DEEP = f"nested more than {MAX_DOCUMENT_DEPTH} levels deep"


def load_config(document: Any, env: Mapping[str, str], services: GuardServices | None = None) -> RouterConfig:
    """Validate a parsed document (either format) and compile it, its guards using `services` (the
    router's; None: per-process stores of their own, for validation and tests)."""
    if _nested_too_deep(document):
        raise ConfigInvalidError([f"(document): {TOO_DEEP}"])
    if not isinstance(document, dict):
        raise ConfigInvalidError([f"(document): expected a JSON object, got {type(document).__name__}"])
    missing: set[str] = set()
    substituted = substitute_env(document, env, missing)
    diagnostics = Diagnostics(
        warnings=[
            f"environment variable {name} is not set; it was replaced by ''" for name in sorted(missing)
        ]
    )
    if services is None:
        from ..guards.local import local_services

        services = local_services()
    if is_priority_format(substituted):
        return compile_priority_config(substituted, diagnostics, services)
    return compile_routes_config(substituted, diagnostics, services)


def is_priority_format(document: Mapping[str, Any]) -> bool:
    """Seed 003's shape: `providers`/`global_priority`, or `routes` as an object keyed by app."""
    return (
        "providers" in document or "global_priority" in document or isinstance(document.get("routes"), dict)
    )


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
