"""Shared rate limits (`DynamoDBBuckets`) against moto's DynamoDB over real HTTP: instances on one
table share one limit, never admit more than it together, and a refused client costs no call.

Each `DynamoDBBuckets` is one router instance (its own remembered tats and shield); the race test
runs them in threads released together by a Barrier, each with its own event loop, as instances
are. Clocks are injected and fixed unless a test moves them, so no token refills by accident.
"""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from edge_router.aws.clients import client
from edge_router.aws.shield import StoreShield
from edge_router.aws.state_table import CLIENT_SETTINGS
from edge_router.exceptions import StateStoreError
from edge_router.guards.services import Rate, Take
from edge_router.guards.shared_buckets import DynamoDBBuckets, bucket_id
from support import Clock, closed_port, dynamodb_table, run

TABLE = "edge-router-state"
EPOCH = 1_700_000_000.0
TEN_PER_MINUTE = Rate(interval_s=6.0, capacity=10)
KEY = "/api#ip:127.0.0.2"


@pytest.fixture
def table(aws: str, atomic_updates: None) -> Any:
    return dynamodb_table(TABLE)


class Calls:
    """Counts the DynamoDB API calls this process's state-table client makes."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        client("dynamodb", settings=CLIENT_SETTINGS).meta.events.register("before-call.dynamodb", self._seen)

    def _seen(self, **_: Any) -> None:
        with self._lock:
            self.count += 1


@pytest.fixture
def calls(table: Any) -> Calls:
    return Calls()


def instance(clock: Clock, budget_s: float = 5.0) -> DynamoDBBuckets:
    # a generous budget: moto on a busy test machine is slower than DynamoDB, and this file tests
    # the shared limit, not the shield (tests/test_shield.py does)
    return DynamoDBBuckets(TABLE, clock=clock, shield=StoreShield("rate limits", budget_s=budget_s))


def takes(buckets: DynamoDBBuckets, count: int, key: str = KEY, rate: Rate = TEN_PER_MINUTE) -> list[Take]:
    async def all_of_them() -> list[Take]:
        return [await buckets.take(key, rate) for _ in range(count)]

    return run(all_of_them())


def test_one_instance_admits_the_limit_then_refills(table: Any) -> None:
    clock = Clock(EPOCH)
    buckets = instance(clock)

    answers = takes(buckets, 12)

    assert [a.allowed for a in answers] == [True] * 10 + [False] * 2
    assert [a.remaining for a in answers] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0]
    assert answers[-1].retry_after_s == pytest.approx(6.0)
    item = table.get_item(Key={"id": "er#bucket#" + KEY})["Item"]
    assert item["tat"] == Decimal(str(EPOCH + 60.0))
    assert item["expires_at"] == EPOCH + 60 + 60 + 60  # ceil(tat) + capacity x interval + 60 s
    clock.now += 6.0
    assert [a.allowed for a in takes(buckets, 2)] == [True, False]
    clock.now += 3600.0  # idle for an hour: a full bucket again, never more
    assert [a.allowed for a in takes(buckets, 11)] == [True] * 10 + [False]


def test_two_instances_alternating_admit_exactly_the_limit(calls: Calls) -> None:
    clock = Clock(EPOCH)
    first, second = instance(clock), instance(clock)

    async def alternate(count: int) -> list[Take]:
        return [await (first if n % 2 == 0 else second).take(KEY, TEN_PER_MINUTE) for n in range(count)]

    answers = run(alternate(40))

    assert sum(a.allowed for a in answers) == 10
    assert [a.allowed for a in answers[:10]] == [True] * 10
    # 10 updates for the tokens, one more for the second instance's first (idle) guess, one for
    # the first instance's stale view when the bucket ran out; the other 29 refusals cost nothing
    assert calls.count == 12
    clock.now += 2.5
    refused = run(alternate(2))
    assert [a.retry_after_s for a in refused] == [pytest.approx(3.5), pytest.approx(3.5)]
    clock.now += 3.5
    assert sum(a.allowed for a in run(alternate(10))) == 1


def test_instances_racing_never_admit_more_than_the_limit(table: Any) -> None:
    clock = Clock(EPOCH)
    threads, per_thread = 4, 10
    barrier = threading.Barrier(threads)
    allowed: list[int] = []

    def one_instance() -> None:
        buckets = instance(clock, budget_s=20.0)
        loop = asyncio.new_event_loop()
        try:
            barrier.wait(timeout=10)

            async def burst() -> list[Take]:
                return await asyncio.gather(*(buckets.take(KEY, TEN_PER_MINUTE) for _ in range(per_thread)))

            allowed.append(sum(answer.allowed for answer in loop.run_until_complete(burst())))
        finally:
            loop.close()

    for _ in range(3):  # three rounds, each a fresh bucket
        allowed.clear()
        racers = [threading.Thread(target=one_instance) for _ in range(threads)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=60)
        assert len(allowed) == threads
        assert sum(allowed) == 10, allowed  # never more; and no token lost to the race either
        clock.now += 3600.0


def test_a_refused_client_costs_no_dynamodb_call(calls: Calls) -> None:
    clock = Clock(EPOCH)
    buckets, other = instance(clock), instance(clock)
    assert sum(a.allowed for a in takes(buckets, 10)) == 10
    assert calls.count == 10

    assert not any(a.allowed for a in takes(buckets, 500))
    assert calls.count == 10
    assert not any(a.allowed for a in takes(other, 500))  # it learns the stored tat once
    assert calls.count == 11

    clock.now += 5.9
    assert not any(a.allowed for a in takes(buckets, 100))
    assert calls.count == 11
    clock.now += 0.1  # a token exists now: the next request asks, and gets it
    assert [a.allowed for a in takes(buckets, 3)] == [True, False, False]
    assert calls.count == 12


def test_buckets_are_per_key_and_any_key_has_an_item(table: Any) -> None:
    clock = Clock(EPOCH)
    buckets = instance(clock)
    one = Rate(interval_s=60.0, capacity=1)
    long_key = "/api#key:" + "k" * 3000  # longer than a partition key may be
    odd_key = "/api#ip:\udcff"  # a lone surrogate (bytes that were not UTF-8)
    for key in (KEY, "/api#ip:127.0.0.3", "/other#ip:127.0.0.2", long_key, odd_key):
        assert [a.allowed for a in takes(buckets, 2, key, one)] == [True, False], key
    assert bucket_id(long_key).startswith("er#bucket#sha256:") and bucket_id(long_key) != bucket_id(odd_key)
    assert len(table.scan()["Items"]) == 5


async def _settled(coro: Any) -> Any:
    """Await `coro`; then let any call the shield left running finish before the loop closes."""
    try:
        return await coro
    finally:
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        if pending:
            await asyncio.wait(pending, timeout=15)


def test_a_missing_table_is_a_state_store_error(aws: str) -> None:
    buckets = DynamoDBBuckets("no-such-table", clock=Clock(EPOCH))
    started = time.monotonic()
    with pytest.raises(StateStoreError, match="no-such-table"):
        run(_settled(buckets.take(KEY, TEN_PER_MINUTE)))
    assert time.monotonic() - started < 2.0


def test_an_unreachable_table_fails_fast_and_then_at_once(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    buckets = DynamoDBBuckets(TABLE, clock=Clock(EPOCH))  # the default shield: 250 ms, then backed off

    async def twice() -> list[float]:
        spent = []
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(StateStoreError, match=TABLE):
                await buckets.take(KEY, TEN_PER_MINUTE)
            spent.append(time.monotonic() - started)
        return spent

    first, second = run(_settled(twice()))
    assert first < 1.0  # within the shield's budget (or botocore's own quick refusal)
    assert second < 0.05  # backed off: no call at all
