"""Where API keys created through the admin API live: in the process, or in the state table.

    store = LocalKeyStore()                       # no STATE_TABLE: this process only
    store = DynamoDBKeyStore("state")             # STATE_TABLE: every instance shares them
    stored, key = await store.create("ci", rate_limit_multiplier=2.0)  # `key` is shown this once
    await store.find(hash_key(key))               # -> stored
    await store.delete(stored.id)                 # -> True; refused everywhere within 60 s

Both keep only the key's SHA-256 hash (`StoredKey`); the key itself is made with `secrets`
(`"erk_"` + 32 random bytes, URL-safe base64) and returned once by `create`. Ids are 16 hex digits
(`secrets.token_hex(8)`). A store holds at most `MAX_KEYS` keys, each named by printable text of at
most `MAX_NAME_CHARS` characters, with a `rate_limit_multiplier` in (0, `MAX_MULTIPLIER`]; a full
store raises `KeyLimitReached` (the admin API answers 409), a bad name or multiplier ValueError.

On DynamoDB (`STATE_TABLE`, partition key `id`, see `resilience/dynamodb_store.py`) every key is
one entry of ONE item, so one GetItem reads them all:

    api keys  id     S  "er#apikeys"
              keys   M  key id -> {hash: S (lower-case hex SHA-256), name: S,
                                   created_at: N (epoch seconds), rate_limit_multiplier: N}

(no `expires_at`: keys never expire; a deleted key's entry is removed). DynamoDB holds at most
400 KB per item; an entry takes at most ~570 bytes (a 100-character name of 4-byte UTF-8
characters, ~270 with an ASCII one), so `MAX_KEYS` = 500 keys fit in ~285 KB whatever their names.

* `create`: UpdateItem `SET keys.<id> = :entry`, conditional on the map existing, holding fewer
  than `MAX_KEYS` entries and not this id. The first key ever written finds no map: the
  condition fails, one UpdateItem `SET keys = if_not_exists(keys, {})` makes it, and the first
  update is tried once more (two instances doing this at once both succeed: `if_not_exists`).
* `delete`: UpdateItem `REMOVE keys.<id>`, conditional on the entry existing (False otherwise).
* `list`: a consistent GetItem.
* `find(hash)` never reads the table per request. It answers from an in-process copy of the item:
  - older than `refresh_s` (30 s): answered from the copy, and a read starts beside the request;
  - no copy yet, or one older than `max_staleness_s` = 2 x `refresh_s` (60 s; a Lambda instance
    thawed after minutes): the request waits for a read, within the shield's budget (0.25 s);
  - a hash the copy does not know: one read, waited for within the budget, at most once every
    `MISS_REFRESH_S` (5 s), so a key created on another instance works within ~5 s while wrong
    keys cost at most one read per 5 s, however many are sent.
  So a key deleted on one instance is refused on every other within `max_staleness_s` (the copy it
  is answered from started being read at most that long ago); on the instance that deleted it, at
  once. Every read is consistent (strongly), and goes through the `StoreShield`: a table that
  fails or hangs is backed off, and `find` then raises `StateStoreError` without waiting (the
  API-key guard refuses keys it cannot check: fail closed), until the shield's trial read succeeds.

Every AWS call runs in a worker thread (`asyncio.to_thread`) through the process's state-table
client (`CLIENT_SETTINGS`: bounded timeouts and retries), its failures mapped to `StateStoreError`
naming the table (`aws_errors`). The client is made with the store, as `DynamoDBStateStore` does:
importing boto3 and making a client take ~250 ms, more than the first request's budget. An entry
this code cannot read (hand edits) is skipped with a warning and never rewritten.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from ..aws.clients import aws_errors, client, error_code
from ..aws.shield import StoreShield
from ..aws.state_table import CLIENT_SETTINGS, ITEM_PREFIX
from ..exceptions import KeyLimitReached, StateStoreError
from .api_keys import hash_key
from .services import StoredKey

logger = logging.getLogger("edge_router.guards")

KEYS_ID = ITEM_PREFIX + "apikeys"
MAX_KEYS = 500
MAX_NAME_CHARS = 100
MAX_MULTIPLIER = 1000.0
KEY_PREFIX = "erk_"
MISS_REFRESH_S = 5.0  # an unknown hash reads the table again at most this often
BACKGROUND_BUDGET_S = 10.0  # a read beside the requests: longer than botocore's bound (2 x 2 s + 1 s)
MIN_RETRY_S = 1.0  # a stale copy whose read failed is read again at most this often


def new_key(name: str, rate_limit_multiplier: float, created_at: float) -> tuple[StoredKey, str]:
    """A fresh key (from `secrets`) and its record; ValueError for a name or multiplier not allowed."""
    check_key_fields(name, rate_limit_multiplier)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    stored = StoredKey(
        id=secrets.token_hex(8),
        name=name,
        hash=hash_key(key),
        created_at=created_at,
        rate_limit_multiplier=float(rate_limit_multiplier),
    )
    return stored, key


def check_key_fields(name: str, rate_limit_multiplier: float) -> None:
    """ValueError unless `name` is 1-100 printable characters and the multiplier in (0, 1000]."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise ValueError(f"an API key's name must be 1 to {MAX_NAME_CHARS} printable characters")
    if not (math.isfinite(rate_limit_multiplier) and 0 < rate_limit_multiplier <= MAX_MULTIPLIER):
        raise ValueError(f"rate_limit_multiplier must be > 0 and <= {MAX_MULTIPLIER:g}")


class LocalKeyStore:
    """Keys in this process only (no STATE_TABLE): lost on restart, unknown to other instances."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._by_id: dict[str, StoredKey] = {}
        self._by_hash: dict[str, StoredKey] = {}

    async def find(self, key_hash: str) -> StoredKey | None:
        return self._by_hash.get(key_hash)

    async def create(self, name: str, rate_limit_multiplier: float = 1.0) -> tuple[StoredKey, str]:
        if len(self._by_id) >= MAX_KEYS:
            raise KeyLimitReached(f"the key store holds its maximum of {MAX_KEYS} keys")
        stored, key = new_key(name, rate_limit_multiplier, self._clock())
        self._by_id[stored.id] = self._by_hash[stored.hash] = stored
        return stored, key

    async def list(self) -> list[StoredKey]:
        return sorted(self._by_id.values(), key=lambda stored: (stored.created_at, stored.id))

    async def delete(self, key_id: str) -> bool:
        stored = self._by_id.pop(key_id, None)
        if stored is None:
            return False
        del self._by_hash[stored.hash]
        return True

    async def aclose(self) -> None:
        """Nothing runs beside the requests here."""


class DynamoDBKeyStore:
    """Keys in the state table `table`, shared by every instance (see the module docstring)."""

    def __init__(
        self,
        table: str,
        *,
        refresh_s: float = 30.0,
        shield: StoreShield | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(refresh_s) and refresh_s > 0):
            raise ValueError(f"refresh_s must be a number of seconds > 0, got {refresh_s!r}")
        self.table_name = table
        self.refresh_s = refresh_s
        self._where = f"DynamoDB table {table!r}"
        self._own_shield = shield is None  # a shield shared with other stores is closed by its owner
        self._shield = shield or StoreShield(f"{self._where} (API keys)")
        self._clock = clock
        self._monotonic = monotonic
        self._by_hash: dict[str, StoredKey] | None = None  # the copy; None: never read
        self._loaded_at = -math.inf  # when the read that made the copy started
        self._last_read = -math.inf  # when the last read was started (or asked for)
        self._version = 0  # this instance's own writes, counted
        self._writes: list[tuple[int, str, StoredKey | None]] = []  # (version, id, key or None: deleted)
        self._reading: asyncio.Task[None] | None = None
        self._skipped: frozenset[str] = frozenset()
        try:  # made now: importing boto3 and making a client take longer than a request's budget
            client("dynamodb", settings=CLIENT_SETTINGS)
        except Exception as exc:  # no region yet, a broken install: the first call will say so
            logger.debug("API keys: no DynamoDB client yet (%s); made on first use", exc)

    @property
    def max_staleness_s(self) -> float:
        """The oldest copy `find` answers from: a deleted key is refused everywhere within this."""
        return 2 * self.refresh_s

    # -- find: the request path ----------------------------------------------------------------

    async def find(self, key_hash: str) -> StoredKey | None:
        """The key with this hash, from the copy (see the module docstring); StateStoreError when the
        copy is missing or too old and the table cannot be read within the budget."""
        now = self._monotonic()
        age = now - self._loaded_at
        if self._by_hash is None or age >= self.max_staleness_s:
            await self._shield.call(self._read_once)
        elif age >= self.refresh_s and now - self._last_read >= MIN_RETRY_S:
            self._last_read = now  # a read beside the requests; its failure backs the table off
            self._shield.start(self._read_once)
        found = (self._by_hash or {}).get(key_hash)
        if found is None and self._monotonic() - self._last_read >= MISS_REFRESH_S:
            await self._shield.call(self._read_once)
            found = (self._by_hash or {}).get(key_hash)
        return found

    def _read_once(self) -> asyncio.Task[None]:
        """The read in progress, or a new one (so concurrent requests share one GetItem)."""
        if self._reading is None or self._reading.get_loop().is_closed():
            self._last_read = self._monotonic()
            self._reading = asyncio.ensure_future(self._refresh(self._version, self._last_read))
            self._reading.add_done_callback(self._read_done)
        return self._reading

    def _read_done(self, task: asyncio.Task[None]) -> None:
        if self._reading is task:
            self._reading = None
        if not task.cancelled():
            task.exception()  # retrieved here; whoever waited (the shield) has seen it

    async def aclose(self) -> None:
        """Cancel the read still running on this loop, if any (server shutdown, the end of a test)."""
        reading, self._reading = self._reading, None
        if reading is not None and reading.get_loop() is asyncio.get_running_loop():
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        if self._own_shield:
            await self._shield.aclose()

    async def _refresh(self, version: int, started: float) -> None:
        entries = await asyncio.to_thread(self._get_entries)
        for written, key_id, stored in self._writes:  # this instance's writes the read may predate
            if written > version:
                entries.pop(key_id, None)
                if stored is not None:
                    entries[key_id] = stored
        self._writes.clear()  # one read at a time: the next one starts after every write so far
        self._by_hash = {stored.hash: stored for stored in entries.values()}
        self._loaded_at = started

    def _wrote(self, key_id: str, stored: StoredKey | None) -> None:
        """Apply this instance's own write to its copy at once (and to a read in progress)."""
        self._version += 1
        self._writes.append((self._version, key_id, stored))
        if self._by_hash is not None:
            copy = {h: known for h, known in self._by_hash.items() if known.id != key_id}
            self._by_hash = copy if stored is None else {**copy, stored.hash: stored}

    # -- admin ---------------------------------------------------------------------------------

    async def create(self, name: str, rate_limit_multiplier: float = 1.0) -> tuple[StoredKey, str]:
        """A new key, stored; KeyLimitReached when MAX_KEYS are stored, StateStoreError on AWS errors."""
        stored, key = new_key(name, rate_limit_multiplier, self._clock())
        await asyncio.to_thread(self._put_entry, stored)
        self._wrote(stored.id, stored)
        return stored, key

    async def list(self) -> list[StoredKey]:
        """Every stored key (a consistent read), oldest first."""
        entries = await asyncio.to_thread(self._get_entries)
        return sorted(entries.values(), key=lambda stored: (stored.created_at, stored.id))

    async def delete(self, key_id: str) -> bool:
        """Remove the key `key_id`; False when no such key is stored."""
        if not await asyncio.to_thread(self._remove_entry, key_id):
            return False
        self._wrote(key_id, None)
        return True

    # -- the item (these run in a worker thread) -----------------------------------------------

    def _get_entries(self) -> dict[str, StoredKey]:
        from boto3.dynamodb.types import TypeDeserializer

        with aws_errors(StateStoreError, f"cannot read API keys from {self._where}"):
            answer = client("dynamodb", settings=CLIENT_SETTINGS).get_item(
                TableName=self.table_name, Key={"id": {"S": KEYS_ID}}, ConsistentRead=True
            )
        raw = answer.get("Item", {}).get("keys", {"M": {}})
        keys = TypeDeserializer().deserialize(raw)
        return self._entries_of(keys)

    def _put_entry(self, stored: StoredKey) -> None:
        what = f"cannot store an API key in {self._where}"
        entry = {
            "M": {
                "hash": {"S": stored.hash},
                "name": {"S": stored.name},
                "created_at": {"N": str(stored.created_at)},
                "rate_limit_multiplier": {"N": str(stored.rate_limit_multiplier)},
            }
        }
        arguments: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"id": {"S": KEYS_ID}},
            "UpdateExpression": "SET #keys.#id = :entry",
            "ConditionExpression": "attribute_exists(#keys) AND size(#keys) < :max "
            "AND attribute_not_exists(#keys.#id)",
            "ExpressionAttributeNames": {"#keys": "keys", "#id": stored.id},
            "ExpressionAttributeValues": {":entry": entry, ":max": {"N": str(MAX_KEYS)}},
        }
        dynamodb = client("dynamodb", settings=CLIENT_SETTINGS)
        if self._conditional(what, dynamodb.update_item, arguments):
            return
        with aws_errors(StateStoreError, what):  # no map yet (the first key ever), or a full one
            dynamodb.update_item(
                TableName=self.table_name,
                Key={"id": {"S": KEYS_ID}},
                UpdateExpression="SET #keys = if_not_exists(#keys, :empty)",
                ExpressionAttributeNames={"#keys": "keys"},
                ExpressionAttributeValues={":empty": {"M": {}}},
            )
        if not self._conditional(what, dynamodb.update_item, arguments):
            raise KeyLimitReached(f"the key store holds its maximum of {MAX_KEYS} keys")

    def _remove_entry(self, key_id: str) -> bool:
        return self._conditional(
            f"cannot delete an API key from {self._where}",
            client("dynamodb", settings=CLIENT_SETTINGS).update_item,
            {
                "TableName": self.table_name,
                "Key": {"id": {"S": KEYS_ID}},
                "UpdateExpression": "REMOVE #keys.#id",
                "ConditionExpression": "attribute_exists(#keys.#id)",
                "ExpressionAttributeNames": {"#keys": "keys", "#id": key_id},
            },
        )

    @staticmethod
    def _conditional(what: str, call: Callable[..., Any], arguments: dict[str, Any]) -> bool:
        """Run a conditional write: False when its condition failed (nothing written)."""
        try:
            with aws_errors(StateStoreError, what):
                call(**arguments)
        except StateStoreError as exc:
            if error_code(exc.__cause__ or exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _entries_of(self, keys: Any) -> dict[str, StoredKey]:
        """Key id -> StoredKey for every readable entry (the rest skipped, with a warning once)."""
        found: dict[str, StoredKey] = {}
        skipped = set()
        if not isinstance(keys, Mapping):
            keys, skipped = {}, {"(the keys attribute is not a map)"}
        for key_id, entry in keys.items():
            stored = _stored_of(str(key_id), entry)
            if stored is None:
                skipped.add(str(key_id))
            else:
                found[stored.id] = stored
        if skipped - self._skipped:
            logger.warning(
                "API keys in %s: entries skipped (not a key this router can read): %s",
                self._where,
                ", ".join(sorted(skipped)),
            )
        self._skipped = frozenset(skipped)
        return found


def _stored_of(key_id: str, entry: Any) -> StoredKey | None:
    """The StoredKey an item's entry holds; None when it is malformed."""
    if not isinstance(entry, Mapping):
        return None
    key_hash, name = entry.get("hash"), entry.get("name")
    created_at, multiplier = entry.get("created_at"), entry.get("rate_limit_multiplier", Decimal(1))
    if not (
        isinstance(key_hash, str)
        and len(key_hash) == 64
        and isinstance(name, str)
        and isinstance(created_at, Decimal)
        and isinstance(multiplier, Decimal)
        and multiplier.is_finite()
        and multiplier > 0
    ):
        return None
    return StoredKey(
        id=key_id,
        name=name,
        hash=key_hash.lower(),
        created_at=float(created_at),
        rate_limit_multiplier=float(multiplier),
    )
