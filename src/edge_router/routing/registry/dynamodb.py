"""The DynamoDB backend registry: items `backend:<id>` (seed 001's KV entries, ported).

Each item's `value` is `{"id","name","url","type"}` as a JSON string or a map; `type` "local"
or "cloud" gives the location (default cloud). Answers are cached for `ttl_seconds` on `clock`
(seed: "cache 30 s to reduce KV hits"), misses included, and a fresh listing also answers lookups,
so a client cycling through made-up ids costs at most one Scan per TTL. The same table may hold
config items (`dynamodb:TABLE/ID`): only `backend:` items are read. A malformed item is skipped
with a warning naming it; an AWS failure is a RegistryError naming the table.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...aws.clients import aws_errors, resource
from ...exceptions import RegistryError
from .base import Backend, location_of, validate_backend_url

logger = logging.getLogger("edge_router.registry")

DYNAMODB_PREFIX = "backend:"
# A DynamoDB partition key is at most 2048 bytes; a longer id cannot be registered, and asking
# for it would be a ValidationException (a 5xx) triggered by nothing but a client's header.
_MAX_KEY_BYTES = 2048


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
        location=location_of(value.get("type")),
        health_path=health_path,
    )


class DynamoDBRegistry:
    """Backends held in a DynamoDB table as items `backend:<id>` (see the module docstring)."""

    _MAX_CACHED_IDS = 1024

    def __init__(
        self, table: str, *, ttl_seconds: float = 30, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError(f"ttl_seconds={ttl_seconds!r} must not be negative")
        self.table_name = table
        self._where = f"DynamoDB table {table!r}"
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # id -> (expires, answer), misses included; (expires, backends) of the last Scan
        self._ids: dict[str, tuple[float, Backend | None]] = {}
        self._listing: tuple[float, list[Backend]] | None = None

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
        with aws_errors(RegistryError, f"cannot read backend {backend_id!r} from {self._where}"):
            item = self._table().get_item(Key={"id": key}).get("Item")
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

        items: list[Mapping[str, Any]] = []
        arguments: dict[str, Any] = {"FilterExpression": Attr("id").begins_with(DYNAMODB_PREFIX)}
        with aws_errors(RegistryError, f"cannot list backends from {self._where}"):
            table = self._table()
            while True:
                page = table.scan(**arguments)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        backends = sorted(
            (backend for backend in map(_backend_from_item, items) if backend is not None),
            key=lambda backend: backend.id,
        )
        with self._lock:
            self._listing = (now + self.ttl_seconds, backends)
        return list(backends)

    def _table(self) -> Any:
        return resource("dynamodb").Table(self.table_name)
