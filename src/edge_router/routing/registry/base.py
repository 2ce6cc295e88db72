"""Backend registries for header routing (seed 001, CONTRACT section 4).

A client names a backend with `x-backend`; a registry turns that name into a URL the operator
registered. A client can only choose among registered backends, never supply a URL: the header
is only ever used as a lookup key.

    EnvRegistry       local: every BACKEND_<ID>_URL variable (BACKEND_BUN_SQLITE_URL is bun-sqlite)
    ConfigRegistry    cloud: the config's `backends` object
    DynamoDBRegistry  cloud: items `backend:<id>` (seed 001's KV entries, ported): `dynamodb.py`
    ChainRegistry     the first registry that knows an id wins (cloud = config, then DynamoDB)

Registries are synchronous (boto3 is); the caller decides whether to run them in a worker thread.
`choose_backend` is the pure routing decision over them. Bad entries (a malformed DynamoDB item, a
BACKEND_X_URL that is not an http(s) URL) are skipped with a warning naming them, so one typo
cannot take header routing down; an AWS failure is a RegistryError naming the table.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from ...config.model import BackendEntry, Location, parse_target

logger = logging.getLogger("edge_router.registry")

# A registered backend: what `x-backend` may name and where its requests go. The same record as
# the config's `backends` entries, so the config registry passes them through.
Backend = BackendEntry

# CONTRACT section 2: DEFAULT_BACKEND defaults per registry.
DEFAULT_BACKENDS: Mapping[Location, str] = {"local": "bun-sqlite", "cloud": "cf-d1"}

_ENV_NAME = re.compile(r"BACKEND_([A-Z0-9]+(?:_[A-Z0-9]+)*)_URL")


@dataclass(frozen=True, slots=True)
class InvalidBackend:
    """The decision when the named backend is not registered: the caller answers 400 `Invalid Backend`.

    `valid` is what the answer lists as `valid_backends`. `defaulted` is True when nobody named
    the backend: the default (DEFAULT_BACKEND or the built-in one) is not registered, which is
    the operator's mistake rather than the client's, so the caller may want to log it as such.
    """

    requested: str
    valid: list[str]
    defaulted: bool = False


class BackendRegistry(Protocol):
    """Where backends are looked up by id. Synchronous; the caller decides threading."""

    def get_backend(self, backend_id: str) -> Backend | None: ...

    def list_backends(self) -> list[Backend]: ...


def validate_backend_url(url: str) -> str | None:
    """Return why `url` cannot be a backend's URL, or None when it can.

    Uses the same rule as config targets (`parse_target`): http(s), a host, no query or fragment,
    so a URL accepted here is one the proxy can forward to.
    """
    try:
        parse_target(url)
    except ValueError as exc:
        return str(exc)
    return None


def location_of(value: object) -> Location:
    return "local" if isinstance(value, str) and value.strip().lower() == "local" else "cloud"


class _Static:
    """A registry fixed at construction: lookups are dict reads, listing keeps insertion order."""

    def __init__(self, backends: Iterable[Backend]) -> None:
        self._backends: dict[str, Backend] = {backend.id: backend for backend in backends}

    def get_backend(self, backend_id: str) -> Backend | None:
        return self._backends.get(backend_id)

    def list_backends(self) -> list[Backend]:
        return list(self._backends.values())


class EnvRegistry(_Static):
    """The local registry: `BACKEND_<ID>_URL` variables, read once from `env`.

    `<ID>` is upper-case with `_` for `-`, so BACKEND_BUN_SQLITE_URL is `bun-sqlite`. An empty
    value is how docker-compose files switch a backend off, so it is skipped silently; a value that
    is not an http(s) URL is skipped with a warning naming the variable. Listed in id order.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        backends: list[Backend] = []
        for variable in sorted(env):
            match = _ENV_NAME.fullmatch(variable)
            url = env[variable].strip()
            if match is None or not url:
                continue
            problem = validate_backend_url(url)
            if problem is not None:
                logger.warning("registry: %s is skipped: %s", variable, problem)
                continue
            backend_id = match.group(1).lower().replace("_", "-")
            backends.append(Backend(id=backend_id, name=backend_id, url=url, location="local"))
        super().__init__(sorted(backends, key=lambda backend: backend.id))


class ConfigRegistry(_Static):
    """The cloud registry of a config's `backends` object, in the order the config names them.

    A backend whose URL is empty (a `${VAR}` that was not set) is skipped; load_config has already
    warned about it. A URL that is not http(s) is skipped with a warning (load_config refuses such
    configs, so this only guards other callers).
    """

    def __init__(self, backends: Mapping[str, BackendEntry]) -> None:
        kept: list[Backend] = []
        for backend_id, entry in backends.items():
            url = entry.url.strip()
            if not url:
                continue
            problem = validate_backend_url(url)
            if problem is not None:
                logger.warning("registry: backends.%s is skipped: %s", backend_id, problem)
                continue
            kept.append(replace(entry, url=url))
        super().__init__(kept)


class ChainRegistry:
    """Several registries as one: the first that knows an id wins.

    `list_backends` merges by id in registry order, so a backend named in two registries is listed
    once, as the registry that `get_backend` would answer from. Errors (RegistryError) pass through.
    """

    def __init__(self, *registries: BackendRegistry) -> None:
        self.registries = registries

    def get_backend(self, backend_id: str) -> Backend | None:
        for registry in self.registries:
            backend = registry.get_backend(backend_id)
            if backend is not None:
                return backend
        return None

    def list_backends(self) -> list[Backend]:
        merged: dict[str, Backend] = {}
        for registry in self.registries:
            for backend in registry.list_backends():
                merged.setdefault(backend.id, backend)
        return list(merged.values())


def choose_backend(
    *,
    header: str | None,
    location_header: str | None,
    environment: Location,
    default_backend: str | None,
    registries: Mapping[str, BackendRegistry],
) -> Backend | InvalidBackend:
    """Decide which backend a header-routed request goes to (seed 001, CONTRACT section 4).

    `x-backend-location` (local|cloud, any case) picks the registry; any other value is ignored
    and `environment` decides, so a typo cannot route around the operator's choice. With no
    `x-backend` (or an empty one), `default_backend` is used (DEFAULT_BACKEND); when that is unset,
    the built-in default of the registry being asked (bun-sqlite local, cf-d1 cloud), so
    `x-backend-location: cloud` alone reaches the cloud default. Ids match exactly. The header is
    only a lookup key: a URL-shaped value is an unknown id like any other. A location with no
    registry in `registries` is an empty one. RegistryError from a registry passes through.
    """
    location = environment
    if location_header is not None and location_header.strip().lower() in ("local", "cloud"):
        location = location_of(location_header)
    requested = (header or "").strip()
    defaulted = not requested
    if defaulted:
        requested = default_backend or DEFAULT_BACKENDS[location]
    registry = registries.get(location)
    backend = registry.get_backend(requested) if registry is not None else None
    if backend is not None:
        return backend
    valid = sorted(backend.id for backend in registry.list_backends()) if registry is not None else []
    return InvalidBackend(requested=requested, valid=valid, defaulted=defaulted)
