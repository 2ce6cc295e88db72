"""Backend registries for header routing (seed 001, CONTRACT section 4).

A client names a backend with `x-backend`; a registry turns that name into a URL the operator
registered. A client can only choose among registered backends, never supply a URL: the header
is only ever used as a lookup key.

    EnvRegistry       local: every BACKEND_<ID>_URL variable (BACKEND_BUN_SQLITE_URL is bun-sqlite)
    ConfigRegistry    cloud: the config's `backends` object
    DynamoDBRegistry  cloud: items `backend:<id>` whose `value` is {"id","name","url","type"} (the
                      seed's KV entries, ported), cached for a TTL so requests do not each cost a read
    ChainRegistry     the first registry that knows an id wins (cloud = config, then DynamoDB)

Registries are synchronous (boto3 is); the caller decides whether to run them in a worker thread.
`choose_backend` is the pure routing decision over them. Bad entries (a malformed DynamoDB item, a
BACKEND_X_URL that is not an http(s) URL) are skipped with a warning naming them, so one typo
cannot take header routing down; an AWS failure is a RegistryError naming the table.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ._exceptions import EdgeRouterError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

logger = logging.getLogger("edge_router.registry")

Location = Literal["local", "cloud"]

# CONTRACT section 2: DEFAULT_BACKEND defaults per registry.
DEFAULT_BACKENDS: Mapping[Location, str] = {"local": "bun-sqlite", "cloud": "cf-d1"}

DYNAMODB_PREFIX = "backend:"
# A DynamoDB partition key is at most 2048 bytes; a longer id cannot be registered, and asking
# for it would be a ValidationException (a 5xx) triggered by nothing but a client's header.
_MAX_KEY_BYTES = 2048

_ENV_NAME = re.compile(r"BACKEND_([A-Z0-9]+(?:_[A-Z0-9]+)*)_URL")


class RegistryError(EdgeRouterError):
    """A registry could not be read (a DynamoDB error); the message names the table."""


@dataclass(frozen=True, slots=True)
class Backend:
    """A registered backend: what `x-backend` may name and where its requests go."""

    id: str
    name: str
    url: str
    location: Location
    health_path: str = "/health"


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


class BackendSpecLike(Protocol):
    """What ConfigRegistry needs of a config `backends` entry (edge_router._config.BackendSpec)."""

    @property
    def url(self) -> str: ...

    @property
    def name(self) -> str | None: ...

    @property
    def location(self) -> str: ...

    @property
    def health_path(self) -> str: ...


def validate_backend_url(url: str) -> str | None:
    """Return why `url` cannot be a backend's URL, or None when it can.

    Uses the same rule as config targets (`parse_target`): http(s), a host, no query or fragment,
    so a URL accepted here is one the proxy can forward to.
    """
    from ._config import parse_target  # lazily: _config may come to import this module

    try:
        parse_target(url)
    except ValueError as exc:
        return str(exc)
    return None


def _location(value: object) -> Location:
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
    configs, so this only guards other callers). `name` falls back to the id.
    """

    def __init__(self, backends: Mapping[str, BackendSpecLike]) -> None:
        kept: list[Backend] = []
        for backend_id, spec in backends.items():
            url = spec.url.strip()
            if not url:
                continue
            problem = validate_backend_url(url)
            if problem is not None:
                logger.warning("registry: backends.%s is skipped: %s", backend_id, problem)
                continue
            kept.append(
                Backend(
                    id=backend_id,
                    name=spec.name or backend_id,
                    url=url,
                    location=_location(spec.location),
                    health_path=spec.health_path,
                )
            )
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


def _backend_from_item(item: Mapping[str, Any]) -> Backend | None:
    """The Backend a DynamoDB item describes; None (with a warning naming the item) when malformed."""
    key = item.get("id")
    try:
        if not isinstance(key, str) or not key.startswith(DYNAMODB_PREFIX) or key == DYNAMODB_PREFIX:
            raise ValueError("the key is not backend:<id>")
        backend_id = key[len(DYNAMODB_PREFIX) :]
        value = item.get("value")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"value is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError("value is not a JSON object (a string holding one, or a map)")
        if value.get("id", backend_id) != backend_id:
            # The key is what GetItem looks up; a value naming another id is a copy-paste slip that
            # would make get_backend and list_backends disagree, so it is refused, not guessed at.
            raise ValueError(f"value names id {value.get('id')!r}, the key names {backend_id!r}")
        url = value.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ValueError("value has no url")
        problem = validate_backend_url(url.strip())
        if problem is not None:
            raise ValueError(problem)
        name = value.get("name")
        health_path = value.get("health_path", value.get("healthEndpoint", "/health"))
        if not isinstance(health_path, str) or not health_path.startswith("/"):
            raise ValueError(f"health path {health_path!r} does not start with '/'")
    except ValueError as exc:
        logger.warning("registry: DynamoDB item %r is skipped: %s", key, exc)
        return None
    return Backend(
        id=backend_id,
        name=name if isinstance(name, str) and name else backend_id,
        url=url.strip(),
        location=_location(value.get("type")),
        health_path=health_path,
    )


class DynamoDBRegistry:
    """Backends held in a DynamoDB table as items `backend:<id>` (seed 001's KV entries, ported).

    Each item's `value` is `{"id","name","url","type"}` as a JSON string or a map; `type` "local"
    or "cloud" gives the location (default cloud). Answers are cached for `ttl_seconds` on `clock`
    (seed: "cache 30 s to reduce KV hits"), misses included, and a fresh listing also answers
    lookups, so a client cycling through made-up ids costs at most one Scan per TTL. The same
    table may hold config items (`dynamodb:TABLE/ID`): only `backend:` items are read.
    """

    _MAX_CACHED_IDS = 1024

    def __init__(
        self, table: str, *, ttl_seconds: float = 30, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError(f"ttl_seconds={ttl_seconds!r} must not be negative")
        self.table_name = table
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._table: Table | None = None
        # id -> (expires, answer), misses included; (expires, backends) of the last Scan
        self._ids: dict[str, tuple[float, Backend | None]] = {}
        self._listing: tuple[float, list[Backend]] | None = None

    def clear_cache(self) -> None:
        """Forget every cached answer; the next lookup reads the table."""
        with self._lock:
            self._ids.clear()
            self._listing = None

    def get_backend(self, backend_id: str) -> Backend | None:
        key = DYNAMODB_PREFIX + backend_id
        if not backend_id or len(key.encode()) > _MAX_KEY_BYTES:
            return None
        now = self._clock()
        with self._lock:
            cached = self._ids.get(backend_id)
            if cached is not None and now < cached[0]:
                return cached[1]
            if self._listing is not None and now < self._listing[0]:
                return next((backend for backend in self._listing[1] if backend.id == backend_id), None)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            item = self._resource().get_item(Key={"id": key}).get("Item")
        except (BotoCoreError, ClientError) as exc:
            raise self._error(f"cannot read backend {backend_id!r}", exc) from exc
        backend = None if item is None else _backend_from_item(item)
        with self._lock:
            if len(self._ids) >= self._MAX_CACHED_IDS:
                self._ids = {k: v for k, v in self._ids.items() if now < v[0]}
                if len(self._ids) >= self._MAX_CACHED_IDS:
                    self._ids.clear()
            self._ids[backend_id] = (now + self.ttl_seconds, backend)
        return backend

    def list_backends(self) -> list[Backend]:
        now = self._clock()
        with self._lock:
            if self._listing is not None and now < self._listing[0]:
                return list(self._listing[1])
        from boto3.dynamodb.conditions import Attr
        from botocore.exceptions import BotoCoreError, ClientError

        items: list[Mapping[str, Any]] = []
        arguments: dict[str, Any] = {"FilterExpression": Attr("id").begins_with(DYNAMODB_PREFIX)}
        try:
            table = self._resource()
            while True:
                page = table.scan(**arguments)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (BotoCoreError, ClientError) as exc:
            raise self._error("cannot list backends", exc) from exc
        backends = sorted(
            (backend for backend in map(_backend_from_item, items) if backend is not None),
            key=lambda backend: backend.id,
        )
        with self._lock:
            self._listing = (now + self.ttl_seconds, backends)
        return list(backends)

    def _resource(self) -> Table:
        # One boto3 resource per registry, made on first use (creating one costs ~60 ms) and under
        # the lock: resources are not safe to build concurrently. Table calls go to the
        # resource's client, which is thread-safe.
        with self._lock:
            if self._table is None:
                import boto3

                self._table = boto3.resource("dynamodb").Table(self.table_name)
            return self._table

    def _error(self, what: str, exc: Exception) -> RegistryError:
        from botocore.exceptions import ClientError

        reason = str(exc)
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            reason = f"{error.get('Code', 'error')}: {error.get('Message') or exc}"
        return RegistryError(f"{what} from DynamoDB table {self.table_name!r}: {reason}")


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
        location = _location(location_header)
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
