"""The state table on DynamoDB: `DynamoDBStateStore`, the shared `StateStore` (see `store.py`).

The table (`STATE_TABLE`) has the string partition key `id` and the TTL attribute `expires_at`
(epoch seconds); the router owns the items whose id starts with `er#` (`ITEM_PREFIX`):

    circuit  id          S  "er#circuit#" + backend id (`er#circuit#api-1`, `er#circuit#http://h:80`)
             state       S  CLOSED | OPEN | HALF_OPEN
             opened_at   N  epoch seconds; absent when None
             version     N  1 for the first transition ever written, +1 for each one after it
             updated_at  N  epoch seconds of the transition
             expires_at  N  ceil(updated_at) + 7 days: a circuit nobody moves for a week goes away
    health   id          S  "er#health" (one item: the last round of probes)
             checked_at  N  epoch seconds of the round
             backends    M  backend id -> HealthStatus.as_dict() without its None values
                            {health: S, streak: N, last_check: N, latency_ms: N, reason: S}
             expires_at  N  ceil(checked_at) + 1 day

Numbers are stored exactly as Python writes the float (`Decimal(str(x))`), so they read back equal.

Writes are conditional PutItems, atomic per item in DynamoDB, so of two writers that read the same
thing at most one succeeds (the other gets False: ConditionalCheckFailedException is the lost race,
not an error):

* `write_circuit(expected_version=0)`: `attribute_not_exists(id)`; N > 0: `version = N`. The record
  must carry version N + 1 (ValueError otherwise): a write that kept the version would leave the
  condition true for a second writer that read N, and one of the two transitions would be lost.
* `write_health(previous=None)`: `attribute_not_exists(id)`; else `checked_at = previous.checked_at`
  (the new snapshot must have another `checked_at`, for the same reason).

An item this code cannot read (a `state` it does not know, a field of the wrong type: hand edits, or
a newer router during a rolling deploy) is skipped with a warning and never overwritten: every
conditional write against it returns False until it expires or is deleted.

boto3 is synchronous: each method runs its calls in one worker thread (`asyncio.to_thread`), through
the process's one low-level client for the state table (`aws.clients.client` with `CLIENT_SETTINGS`;
clients, unlike resources, are safe to share between threads). Those settings bound a call, because
a worker thread cannot be cancelled and botocore's defaults (legacy retries: 10 attempts on
DynamoDB, 60 s connect and read timeouts) would hold one for minutes while the table is throttled
or unreachable: 2 s to connect, 2 s to read, at most `total_max_attempts` 2 in botocore's standard
mode (throttling and 5xx are retried once, after up to 1 s; its retry quota stops retrying while
the table keeps failing). A retried conditional PutItem whose first attempt did land answers False
(the condition no longer holds): the caller's re-read then finds its own record.

The store is made with its client: importing boto3 and making a client take ~250 ms, more than the
budget a request may wait for the table (`aws/shield.py`), so they are paid when the router
starts, not by the first request's read (which would overrun its budget on every cold start and
back the table off for nothing). Without a region or boto3 at that point, the client is made on
first use, as before.

Every AWS failure is a `StateStoreError` naming the table; so are numbers DynamoDB cannot hold (NaN,
infinities) and keys left unprocessed by BatchGetItem after `_BATCH_RETRIES` retries.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from ..aws.clients import aws_errors, client, error_code
from ..aws.state_table import CLIENT_SETTINGS, ITEM_PREFIX
from ..exceptions import StateStoreError
from .breaker import CircuitState
from .health import HealthStatus
from .store import CircuitRecord, HealthSnapshot

logger = logging.getLogger("edge_router.resilience")

CIRCUIT_PREFIX = ITEM_PREFIX + "circuit#"
HEALTH_ID = ITEM_PREFIX + "health"
CIRCUIT_TTL_S = 7 * 24 * 3600
HEALTH_TTL_S = 24 * 3600

_BATCH_SIZE = 100  # BatchGetItem's limit on keys per request
_BATCH_RETRIES = 3  # further requests for UnprocessedKeys before giving up
_BATCH_BACKOFF_S = 0.05  # doubled on each retry
# A partition key holds at most 2048 bytes: a longer one can never have been written, and asking
# for it would fail the whole BatchGetItem with a ValidationException.
_MAX_KEY_BYTES = 2048
_STATES = {state.value: state for state in CircuitState}


def circuit_id(backend: str) -> str:
    """The id of `backend`'s circuit item."""
    return CIRCUIT_PREFIX + backend


class DynamoDBStateStore:
    """The `StateStore` on the DynamoDB table `table` (see the module docstring for its items)."""

    def __init__(self, table: str) -> None:
        self.table_name = table
        self._where = f"DynamoDB table {table!r}"
        try:
            client("dynamodb", settings=CLIENT_SETTINGS)  # made now: see the module docstring
        except Exception as exc:  # no region yet, a broken install: the first call will say so
            logger.debug("state store: no DynamoDB client yet (%s); made on first use", exc)

    # -- circuits ------------------------------------------------------------------------------

    async def read_circuits(self, backends: Sequence[str]) -> dict[str, CircuitRecord]:
        """The stored circuits of these backends (never written, or unreadable: absent)."""
        by_id = {circuit_id(backend): backend for backend in backends}  # duplicates fail a batch
        keys = [key for key in by_id if len(key.encode()) <= _MAX_KEY_BYTES]
        if not keys:
            return {}
        items = await asyncio.to_thread(self._batch_get, keys)
        found: dict[str, CircuitRecord] = {}
        for item in items:
            backend = by_id.get(str(item.get("id")))
            record = None if backend is None else self._record_of(item)
            if backend is not None and record is not None:
                found[backend] = record
        return found

    async def write_circuit(self, backend: str, record: CircuitRecord, *, expected_version: int) -> bool:
        """Store `record` if the stored version is still `expected_version` (0: none); else False.

        `record.version` must be `expected_version + 1` (ValueError otherwise).
        """
        if expected_version < 0 or record.version != expected_version + 1:
            raise ValueError(
                f"circuit of {backend!r}: a record written over version {expected_version} must have "
                f"version {expected_version + 1}, not {record.version}"
            )
        what = f"cannot write the circuit of {backend!r} to {self._where}"
        item: dict[str, Any] = {
            "id": circuit_id(backend),
            "state": CircuitState(record.state).value,
            "version": record.version,
            "updated_at": _decimal(record.updated_at),
            "expires_at": _expiry(what, record.updated_at, CIRCUIT_TTL_S),
        }
        if record.opened_at is not None:
            item["opened_at"] = _decimal(record.opened_at)
        if expected_version == 0:
            condition, names, values = "attribute_not_exists(#id)", {"#id": "id"}, {}
        else:
            condition, names = "#version = :expected", {"#version": "version"}
            values = {":expected": expected_version}
        return await asyncio.to_thread(self._put, what, item, condition, names, values)

    # -- health --------------------------------------------------------------------------------

    async def read_health(self) -> HealthSnapshot | None:
        """The last snapshot stored (None: none, or one this code cannot read)."""
        item = await asyncio.to_thread(self._get, HEALTH_ID, f"cannot read health from {self._where}")
        return None if item is None else self._snapshot_of(item)

    async def write_health(self, snapshot: HealthSnapshot, *, previous: HealthSnapshot | None) -> bool:
        """Store `snapshot` if the stored one is still `previous` (None: none); else False.

        `snapshot.checked_at` must differ from `previous.checked_at` (ValueError otherwise).
        """
        if previous is not None and snapshot.checked_at == previous.checked_at:
            raise ValueError(
                f"a health snapshot written over the one of {previous.checked_at} must have another "
                "checked_at: the condition could not tell the two apart"
            )
        what = f"cannot write health to {self._where}"
        item: dict[str, Any] = {
            "id": HEALTH_ID,
            "checked_at": _decimal(snapshot.checked_at),
            "backends": {
                backend: {
                    key: _decimal(value) if isinstance(value, float) else value
                    for key, value in status.as_dict().items()
                    if value is not None
                }
                for backend, status in snapshot.statuses.items()
            },
            "expires_at": _expiry(what, snapshot.checked_at, HEALTH_TTL_S),
        }
        if previous is None:
            condition, names, values = "attribute_not_exists(#id)", {"#id": "id"}, {}
        else:
            condition, names = "#checked_at = :previous", {"#checked_at": "checked_at"}
            values = {":previous": _decimal(previous.checked_at)}
        return await asyncio.to_thread(self._put, what, item, condition, names, values)

    # -- items (these run in a worker thread) --------------------------------------------------

    def _batch_get(self, keys: list[str]) -> list[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        what = f"cannot read circuits from {self._where}"
        raw: list[Mapping[str, Any]] = []
        dynamodb = client("dynamodb", settings=CLIENT_SETTINGS)
        for start in range(0, len(keys), _BATCH_SIZE):
            request: dict[str, Any] = {
                self.table_name: {"Keys": [{"id": {"S": key}} for key in keys[start : start + _BATCH_SIZE]]}
            }
            for retry in range(_BATCH_RETRIES + 1):
                if retry:
                    time.sleep(_BATCH_BACKOFF_S * 2 ** (retry - 1))
                with aws_errors(StateStoreError, what):
                    answer = dynamodb.batch_get_item(RequestItems=request)
                raw.extend(answer.get("Responses", {}).get(self.table_name, []))
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                left = len(request.get(self.table_name, {}).get("Keys", []))
                raise StateStoreError(f"{what}: {left} keys still unprocessed after {_BATCH_RETRIES} retries")
        deserializer = TypeDeserializer()
        return [{name: deserializer.deserialize(value) for name, value in item.items()} for item in raw]

    def _get(self, item_id: str, what: str) -> dict[str, Any] | None:
        from boto3.dynamodb.types import TypeDeserializer

        with aws_errors(StateStoreError, what):
            answer = client("dynamodb", settings=CLIENT_SETTINGS).get_item(
                TableName=self.table_name, Key={"id": {"S": item_id}}
            )
        item = answer.get("Item")
        if item is None:
            return None
        deserializer = TypeDeserializer()
        return {name: deserializer.deserialize(value) for name, value in item.items()}

    def _put(
        self, what: str, item: dict[str, Any], condition: str, names: dict[str, str], values: dict[str, Any]
    ) -> bool:
        from boto3.dynamodb.types import TypeSerializer

        serializer = TypeSerializer()
        try:
            wire = {name: serializer.serialize(value) for name, value in item.items()}
            wire_values = {name: serializer.serialize(value) for name, value in values.items()}
        except (TypeError, ArithmeticError) as exc:  # NaN, infinities, numbers out of DynamoDB's range
            raise StateStoreError(f"{what}: a number DynamoDB cannot hold: {exc}") from exc
        arguments: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": wire,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
        }
        if wire_values:
            arguments["ExpressionAttributeValues"] = wire_values
        try:
            with aws_errors(StateStoreError, what):
                client("dynamodb", settings=CLIENT_SETTINGS).put_item(**arguments)
        except StateStoreError as exc:
            if error_code(exc.__cause__ or exc) == "ConditionalCheckFailedException":
                return False  # another writer got there first: nothing was written
            raise
        return True

    # -- decoding ------------------------------------------------------------------------------

    def _record_of(self, item: Mapping[str, Any]) -> CircuitRecord | None:
        """The CircuitRecord an item holds; None (with a warning naming it) when unreadable."""
        state = _STATES.get(item["state"]) if isinstance(item.get("state"), str) else None
        version, updated_at, opened_at = item.get("version"), item.get("updated_at"), item.get("opened_at")
        if state is None:
            problem = f"unknown state {item.get('state')!r}"
        elif not isinstance(version, Decimal) or version != version.to_integral_value() or version < 1:
            problem = f"version {version!r} is not a positive integer"
        elif not isinstance(updated_at, Decimal):
            problem = f"updated_at {updated_at!r} is not a number"
        elif opened_at is not None and not isinstance(opened_at, Decimal):
            problem = f"opened_at {opened_at!r} is not a number"
        else:
            return CircuitRecord(
                state=state,
                opened_at=None if opened_at is None else float(opened_at),
                version=int(version),
                updated_at=float(updated_at),
            )
        logger.warning("state store: item %r in %s is skipped: %s", item.get("id"), self._where, problem)
        return None

    def _snapshot_of(self, item: Mapping[str, Any]) -> HealthSnapshot | None:
        """The HealthSnapshot the health item holds; None (with a warning) when unreadable."""
        checked_at, backends = item.get("checked_at"), item.get("backends", {})
        if not isinstance(checked_at, Decimal) or not isinstance(backends, dict):
            logger.warning(
                "state store: item %r in %s is skipped: checked_at %r or backends is malformed",
                HEALTH_ID,
                self._where,
                checked_at,
            )
            return None
        statuses: dict[str, HealthStatus] = {}
        for backend, status in backends.items():
            if isinstance(status, dict):
                statuses[str(backend)] = HealthStatus.from_dict(status)
            else:
                logger.warning("state store: health of %r in %s is skipped: not a map", backend, self._where)
        return HealthSnapshot(checked_at=float(checked_at), statuses=statuses)


def _decimal(value: float) -> Decimal:
    """A float as DynamoDB stores it (the shortest decimal that reads back as the same float)."""
    return Decimal(str(value))


def _expiry(what: str, at: float, ttl_s: int) -> int:
    """The `expires_at` of an item written at `at`: whole epoch seconds, `ttl_s` later."""
    if not math.isfinite(at):
        raise StateStoreError(f"{what}: its time {at!r} is not a number DynamoDB can hold")
    return math.ceil(at) + ttl_s
