"""`DynamoDBBuckets`: token buckets a Lambda fleet shares through the state table (`STATE_TABLE`).

One bucket is one item (CONTRACT section 7's table, the router's `er#` items):

    bucket   id          S  "er#bucket#" + bucket key (`er#bucket#/api#ip:203.0.113.7`); a key over
                            2048 bytes, or one that is not valid Unicode, as `er#bucket#sha256:<hex>`
             tat         N  the bucket's theoretical arrival time (`token_bucket`), epoch seconds
             expires_at  N  a TTL past which the bucket is full again anyway: at most
                            ceil(tat) + capacity x interval + 60 s

**One conditional UpdateItem per request**, refill and take in one atomic step. GCRA keeps one
number per bucket, so taking a token is moving it, in one of two forms:

* busy (the bucket's tat is still ahead of `now`): `SET tat = tat + :T` if
  `tat >= :now AND tat <= :now + (C - 1)·T`. The condition is a range, not an equality, so any
  number of instances taking from one bucket at once all succeed while tokens last: no read, no
  compare-and-swap retry loop, and DynamoDB's atomic update is what keeps the fleet within the
  limit;
* idle (no item, or its tat has passed: a full bucket): `SET tat = :now + :T` if
  `attribute_not_exists(tat) OR tat < :now`.

The form is picked from the last tat this instance saw for the bucket (none: idle). When the
condition fails, `ReturnValuesOnConditionCheckFailure=ALL_OLD` hands back the stored tat in the same
call: passed -> idle, a token left -> busy, none -> refused with its `Retry-After`, no write. The
stored tat changes the answer each time, so at most `MAX_CALLS` (3) calls decide a request (idle
fails, busy fails because others took the last tokens meanwhile: refused). If a third call still
fails (the item vanished by TTL under a race), the request is refused: the fleet must never admit
more than its limit.

**A refused client costs no call.** This instance remembers the last tat it saw per bucket (an LRU
of `MAX_KNOWN` entries, as `LocalBuckets`). A stored tat only grows, except through the idle form,
which needs it to have passed; so while the remembered tat says "no token yet", the stored one says
so too, and the request is refused locally until a token could exist. A client hammering a
limited route costs one call per token it gets, plus about one per instance per refill.

**Numbers**: written as `Decimal(str(float))` (read back equal); DynamoDB adds `:T` in decimal, read
back rounded to the float nearest. Comparisons allow `token_bucket.EPSILON_S` (1 µs).

**Clocks**: every instance compares tats with its own wall clock (`time.time`). Lambda's and EC2's
clocks are NTP-synced (typically within a millisecond); a skew of s seconds lets one instance see a
bucket s seconds fuller or emptier than another: at most s/T tokens of difference, never a runaway.

**Failures**: every call runs through `StoreShield.call` (default budget 250 ms, then backed off:
while the table is unreachable, a take raises StateStoreError at once instead of waiting; the
rate-limit guard applies `on_store_error`) and `aws_errors`, through the process's one DynamoDB
client with the state store's bounded `CLIENT_SETTINGS`, in a worker thread. Three ways a token
is spent for a request that did not get it, all on the side of fewer requests, never more: a call
that overran its budget is not cancelled and may still land; the shield's background trial of a
backed-off table is a real take; a retried UpdateItem whose first attempt landed spends a second
token. An item whose `tat` is not a number (a hand edit) is a StateStoreError naming it, until fixed
or expired.

**Measured** (two instances alternating on one table in moto, 10 per 60 s, simulated time): ~1.2
UpdateItems per allowed request (the extra is a wrong idle/busy guess by an instance whose view is
stale) and almost none per refused one: 1,194 calls per 1,000 requests when every client stays
under its limit, 750 when 100 clients send twice their limit, 196 for a 15 %-allowed mix, 36 for
one client sending 10 per second. The added latency is one UpdateItem round trip plus a thread hop
for a request that gets a token (DynamoDB in-region: single-digit ms; moto: ~5 ms), ~2 µs for one
refused locally.

**A shrunk limit** (a reload lowers capacity x interval): a stored tat further ahead than the new
capacity allows is refused until it drains, at most the old window; `LocalBuckets` clamps instead.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from ..aws.clients import aws_errors, client, error_code
from ..aws.shield import StoreShield
from ..aws.state_table import CLIENT_SETTINGS, ITEM_PREFIX
from ..exceptions import StateStoreError
from . import token_bucket
from .services import Rate, Take

BUCKET_PREFIX = ITEM_PREFIX + "bucket#"
MAX_CALLS = 3  # UpdateItems that decide one request (see the module docstring)
MAX_KNOWN = 100_000  # buckets whose last tat this instance remembers (LRU)
TTL_MARGIN_S = 60  # kept this long after the bucket is full again (clock skew, lazy readers)
_MAX_KEY_BYTES = 2048  # DynamoDB's limit on a partition key
_NAMES = {"#tat": "tat", "#exp": "expires_at"}


def bucket_id(key: str) -> str:
    """The id of bucket `key`'s item (see the module docstring)."""
    item_id = BUCKET_PREFIX + key
    try:
        encoded = item_id.encode()
    except UnicodeEncodeError:  # a lone surrogate (bytes that were not UTF-8)
        encoded = b""
    if not encoded or len(encoded) > _MAX_KEY_BYTES:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{BUCKET_PREFIX}sha256:{digest}"
    return item_id


class DynamoDBBuckets:
    """The shared `BucketStore` on the DynamoDB table `table` (see the module docstring)."""

    def __init__(
        self, table: str, *, clock: Callable[[], float] = time.time, shield: StoreShield | None = None
    ) -> None:
        self.table_name = table
        self._clock = clock
        self._shield = shield or StoreShield(f"DynamoDB table {table!r} (rate limits)")
        self._known: OrderedDict[str, float] = OrderedDict()  # item id -> last stored tat seen
        self._what = f"cannot take from a rate-limit bucket in DynamoDB table {table!r}"

    async def take(self, key: str, rate: Rate) -> Take:
        """Take one token from the shared bucket `key`; StateStoreError when the table cannot answer."""
        now = self._clock()
        item_id = bucket_id(key)
        known = self._known.get(item_id)
        if known is not None:
            answer, _ = token_bucket.take(known, now, rate)
            if not answer.allowed:
                return answer  # the stored tat is at least `known`: refused without asking
        busy = known is not None and known >= now
        for _ in range(MAX_CALLS):
            update = functools.partial(asyncio.to_thread, self._update, item_id, busy, now, rate)
            written, stored = await self._shield.call(update)
            if stored is not None:
                self._remember(item_id, stored)
            if written and stored is not None:  # (_update never answers written without a tat)
                return Take(allowed=True, remaining=token_bucket.remaining(stored, now, rate))
            if stored is None or stored < now:
                busy = False  # no bucket, or a full one: the idle form
                continue
            answer, _ = token_bucket.take(stored, now, rate)
            if not answer.allowed:
                return answer
            busy = True
        return Take(allowed=False, remaining=0, retry_after_s=rate.interval_s)

    async def aclose(self) -> None:
        """Cancel the shield's calls still running on this loop (shutdown, the end of a test)."""
        await self._shield.aclose()

    def _remember(self, item_id: str, tat: float) -> None:
        known = self._known
        known[item_id] = tat
        known.move_to_end(item_id)
        if len(known) > MAX_KNOWN:
            known.popitem(last=False)

    # -- the call (runs in a worker thread) -----------------------------------------------------

    def _update(self, item_id: str, busy: bool, now: float, rate: Rate) -> tuple[bool, float | None]:
        """One conditional UpdateItem: (written, the tat stored after it or found instead of it)."""
        interval, burst_s = rate.interval_s, rate.capacity * rate.interval_s
        values: dict[str, Any] = {
            ":now": _number(now),
            ":exp": {"N": str(math.ceil(now + burst_s) + math.ceil(burst_s) + TTL_MARGIN_S)},
        }
        if busy:
            update, condition = "SET #tat = #tat + :t, #exp = :exp", "#tat >= :now AND #tat <= :max"
            values[":t"] = _number(interval)
            values[":max"] = _number(now + burst_s - interval + token_bucket.EPSILON_S)
        else:
            update, condition = "SET #tat = :tat, #exp = :exp", "attribute_not_exists(#tat) OR #tat < :now"
            values[":tat"] = _number(now + interval)
        try:
            with aws_errors(StateStoreError, self._what):
                answer = client("dynamodb", settings=CLIENT_SETTINGS).update_item(
                    TableName=self.table_name,
                    Key={"id": {"S": item_id}},
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=_NAMES,
                    ExpressionAttributeValues=values,
                    ReturnValues="UPDATED_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except StateStoreError as exc:
            cause = exc.__cause__
            if cause is None or error_code(cause) != "ConditionalCheckFailedException":
                raise
            return False, self._tat_of(item_id, getattr(cause, "response", {}).get("Item"))
        tat = self._tat_of(item_id, answer.get("Attributes"))
        if tat is None:
            raise StateStoreError(f"{self._what}: UpdateItem answered without the bucket's new tat")
        return True, tat

    def _tat_of(self, item_id: str, item: Mapping[str, Any] | None) -> float | None:
        """The tat an item holds (wire format); None: no item, or no tat in it."""
        if not item or "tat" not in item:
            return None
        value = item["tat"]
        try:
            tat = float(Decimal(value["N"]))
        except (TypeError, KeyError, ArithmeticError, ValueError):
            tat = math.nan
        if not math.isfinite(tat):
            raise StateStoreError(f"{self._what}: item {item_id!r} holds tat {value!r}, not a number")
        return tat


def _number(value: float) -> dict[str, str]:
    """A float as a DynamoDB number (wire format), exactly as Python writes it."""
    if not math.isfinite(value):
        raise StateStoreError(f"a rate-limit bucket cannot hold {value!r}")
    return {"N": str(Decimal(str(value)))}
