"""`edge-router flip` on the priority format (seed 003): pure functions on the raw document.

Placeholders (`${VAR}`) are never substituted here: the document written back is the one read plus
the change (CONTRACT section 2).
"""

from __future__ import annotations

import copy
from typing import Any

from ...exceptions import ConfigInvalidError
from .base import Document

GLOBAL_APPS = ("*", "global")  # `flip * 21` / `flip global 21` set global_priority
_DIGITS = "0123456789"


def _priority_problem(field: str, value: Any, providers: set[str], *, allow_empty: bool) -> str | None:
    """One line naming what is wrong with one priority field, or None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return f"{field}: expected a string of provider digits such as '21', got {type(value).__name__}"
    text = str(value)
    if not text:
        return None if allow_empty else f"{field}: is empty; give at least one provider digit, e.g. '21'"
    reasons = []
    others = [char for char in dict.fromkeys(text) if char not in _DIGITS]
    if others:
        listed = ", ".join(repr(char) for char in others)
        reasons.append(f"{text!r} has non-digit character{'s' if len(others) > 1 else ''} {listed}")
    unknown = [char for char in dict.fromkeys(text) if char in _DIGITS and char not in providers]
    if unknown:
        listed = ", ".join(repr(char) for char in unknown)
        known = ", ".join(sorted(providers)) or "none"
        verb = "names" if len(unknown) == 1 else "name"
        noun = "digit" if len(unknown) == 1 else "digits"
        reasons.append(f"{noun} {listed} {verb} no provider (providers: {known})")
    return f"{field}: {'; '.join(reasons)}" if reasons else None


def _provider_keys(document: Document, problems: list[str]) -> set[str]:
    providers = document.get("providers")
    if not isinstance(providers, dict):
        problems.append(
            'providers: expected an object mapping digits to URLs, e.g. {"1": "https://..."} '
            "(the priority format, seed 003)"
        )
        return set()
    # YAML reads an unquoted `1:` as the integer 1; the router looks providers up by the character.
    # A provider whose URL is a ${VAR} placeholder exists: it resolves when the config is loaded.
    return {str(key) for key in providers}


def validate_priority_document(document: dict[str, Any]) -> None:
    """Check that every priority (global and per app) names only existing providers.

    Raises ConfigInvalidError with one line per bad field. An empty or absent per-app priority is
    accepted: as in seed 003 the app then uses `global_priority`.
    """
    if not isinstance(document, dict):
        raise ConfigInvalidError([f"(document): expected a JSON object, got {type(document).__name__}"])
    problems: list[str] = []
    providers = _provider_keys(document, problems)
    checked = bool(providers) or not problems  # with no providers object, every digit would be noise
    if "global_priority" in document and checked:
        problem = _priority_problem(
            "global_priority", document["global_priority"], providers, allow_empty=True
        )
        if problem:
            problems.append(problem)
    routes = document.get("routes", {})
    if not isinstance(routes, dict):
        problems.append("routes: expected an object keyed by app name (the priority format, seed 003)")
    else:
        for app, entry in routes.items():
            if not isinstance(entry, dict):
                problems.append(f'routes.{app}: expected an object such as {{"priority": "21"}}')
            elif "priority" in entry and checked:
                problem = _priority_problem(
                    f"routes.{app}.priority", entry["priority"], providers, allow_empty=True
                )
                if problem:
                    problems.append(problem)
    if problems:
        raise ConfigInvalidError(problems)


def set_priority(document: dict[str, Any], app: str, priority: str) -> dict[str, Any]:
    """A new document (deep copy) with APP's priority set; `app` "*" or "global" sets global_priority.

    Creates `routes` and `routes[app]` when absent (new apps go last); every other key, placeholders
    included, is kept verbatim and in order. Raises ConfigInvalidError naming the field when the
    priority is empty, has a non-digit, or has a digit that names no key of `providers`.
    """
    if not isinstance(document, dict):
        raise ConfigInvalidError([f"(document): expected a JSON object, got {type(document).__name__}"])
    if not isinstance(app, str) or not app or "/" in app:
        raise ConfigInvalidError(
            [f"app: {app!r} is not an app name (the first path segment, e.g. 'task'), '*' or 'global'"]
        )
    is_global = app in GLOBAL_APPS
    field = "global_priority" if is_global else f"routes.{app}.priority"
    problems: list[str] = []
    providers = _provider_keys(document, problems)
    if not problems:
        problem = _priority_problem(field, priority, providers, allow_empty=False)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigInvalidError(problems)
    result = copy.deepcopy(document)
    if is_global:
        result["global_priority"] = priority
        return result
    routes = result.setdefault("routes", {})
    if not isinstance(routes, dict):
        raise ConfigInvalidError(
            ["routes: is a list here; flip sets priorities in the priority format (seed 003) only"]
        )
    entry = routes.get(app)
    if entry is None:
        routes[app] = {"priority": priority}
    elif isinstance(entry, dict):
        entry["priority"] = priority
    else:
        raise ConfigInvalidError([f'routes.{app}: expected an object such as {{"priority": "21"}}'])
    return result
