"""The DynamoDB state table (`DynamoDBStateStore`, CONTRACT section 7) against moto over real HTTP.

The `aws` fixture points boto3 at moto's server, so the real path runs: BatchGetItem in chunks,
conditional PutItems, GetItem, and botocore's errors mapped to StateStoreError. Races are real:
two threads released together by a Barrier, each with its own event loop, as two instances are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from edge_router.aws.clients import client
from edge_router.exceptions import StateStoreError
from edge_router.resilience import dynamodb_store
from edge_router.resilience.breaker import CircuitState
from edge_router.resilience.dynamodb_store import DynamoDBStateStore
from edge_router.resilience.health import HealthStatus
from edge_router.resilience.store import CircuitRecord, HealthSnapshot, StateStore
from support import closed_port, dynamodb_table, run

TABLE = "edge-router-state"
WEEK = 7 * 24 * 3600
DAY = 24 * 3600


@pytest.fixture
def table(aws: str) -> Any:
    return dynamodb_table(TABLE)


@pytest.fixture
def store(table: Any) -> DynamoDBStateStore:
    return DynamoDBStateStore(TABLE)


def record(
    state: CircuitState, version: int, *, opened_at: float | None = None, at: float = 0.0
) -> CircuitRecord:
    return CircuitRecord(state=state, opened_at=opened_at, version=version, updated_at=at or time.time())


def test_it_is_a_state_store() -> None:
    store: StateStore = DynamoDBStateStore(TABLE)
    assert store is not None


# --- circuits ------------------------------------------------------------------------------------


def test_circuits_round_trip(store: DynamoDBStateStore) -> None:
    now = time.time()
    opened = record(CircuitState.OPEN, 1, opened_at=now - 0.123456789, at=now)
    closed = record(CircuitState.CLOSED, 1, opened_at=None, at=now + 1e-6)
    half = record(CircuitState.HALF_OPEN, 1, opened_at=1700000000.0, at=1700000000.5 + WEEK * 1000)
    assert run(store.write_circuit("api-1", opened, expected_version=0))
    assert run(store.write_circuit("http://127.0.0.1:8080", closed, expected_version=0))
    assert run(store.write_circuit("https://x.example/a?b=c#d", half, expected_version=0))
    later = record(CircuitState.HALF_OPEN, 2, opened_at=opened.opened_at, at=now + 60)
    assert run(store.write_circuit("api-1", later, expected_version=1))

    read = run(store.read_circuits(["api-1", "http://127.0.0.1:8080", "https://x.example/a?b=c#d"]))

    assert read == {"api-1": later, "http://127.0.0.1:8080": closed, "https://x.example/a?b=c#d": half}
    assert read["http://127.0.0.1:8080"].opened_at is None
    assert isinstance(read["api-1"].opened_at, float) and isinstance(read["api-1"].updated_at, float)
    assert type(read["api-1"].version) is int and read["api-1"].state is CircuitState.HALF_OPEN


def test_reading_backends_never_written_gives_nothing(store: DynamoDBStateStore) -> None:
    assert run(store.read_circuits([])) == {}
    assert run(store.read_circuits(["api-1", "http://127.0.0.1:8080"])) == {}
    written = record(CircuitState.OPEN, 1, opened_at=time.time())
    assert run(store.write_circuit("api-1", written, expected_version=0))
    # duplicates and an id too long to be a key are asked for without failing the batch
    assert run(store.read_circuits(["api-2", "api-1", "api-1", "x" * 3000])) == {"api-1": written}


def test_more_than_100_backends_in_one_read(store: DynamoDBStateStore) -> None:
    backends = [f"api-{n}" for n in range(250)]
    records = {b: record(CircuitState.OPEN, 1, opened_at=1700000000.0 + n) for n, b in enumerate(backends)}

    async def write_all() -> list[bool]:
        return [await store.write_circuit(b, r, expected_version=0) for b, r in records.items()]

    assert all(run(write_all()))
    asked = [*backends, *(f"never-{n}" for n in range(30))]

    assert run(store.read_circuits(asked)) == records


def test_a_second_writer_that_read_nothing_loses(store: DynamoDBStateStore) -> None:
    first = record(CircuitState.OPEN, 1, opened_at=time.time())
    second = record(CircuitState.OPEN, 1, opened_at=time.time() + 5)

    assert run(store.write_circuit("api-1", first, expected_version=0)) is True
    assert run(store.write_circuit("api-1", second, expected_version=0)) is False

    assert run(store.read_circuits(["api-1"])) == {"api-1": first}


def test_a_writer_from_a_stale_version_loses(store: DynamoDBStateStore) -> None:
    v1 = record(CircuitState.OPEN, 1, opened_at=time.time())
    v2 = record(CircuitState.HALF_OPEN, 2, opened_at=v1.opened_at)
    assert run(store.write_circuit("api-1", v1, expected_version=0))
    assert run(store.write_circuit("api-1", v2, expected_version=1))

    assert run(store.write_circuit("api-1", record(CircuitState.CLOSED, 2), expected_version=1)) is False
    assert run(store.write_circuit("api-1", record(CircuitState.CLOSED, 6), expected_version=5)) is False
    assert run(store.write_circuit("api-9", record(CircuitState.CLOSED, 2), expected_version=1)) is False
    assert run(store.read_circuits(["api-1", "api-9"])) == {"api-1": v2}


def test_a_record_must_carry_the_next_version(store: DynamoDBStateStore) -> None:
    # A write that kept version N would leave `version = N` true for a second writer that read N.
    with pytest.raises(ValueError, match="version 2"):
        run(store.write_circuit("api-1", record(CircuitState.OPEN, 1), expected_version=1))
    with pytest.raises(ValueError):
        run(store.write_circuit("api-1", record(CircuitState.OPEN, 0), expected_version=-1))


def race(*writes: Callable[[], bool]) -> list[bool]:
    """Run the writes in threads released at the same instant; their results in order."""
    barrier = threading.Barrier(len(writes))
    results: list[bool | None] = [None] * len(writes)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = writes[index]()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(writes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert all(result is not None for result in results)
    return [bool(result) for result in results]


@pytest.mark.usefixtures("atomic_puts")
def test_two_writers_racing_from_the_same_version_exactly_one_wins(store: DynamoDBStateStore) -> None:
    run(store.read_circuits(["api-1"]))  # the client exists before the race, as in a warm instance
    for round_ in range(20):
        version = round_  # the winner of the previous round wrote it
        now = time.time()
        # each writer's own transition, told apart by opened_at and updated_at
        candidates = [
            record(
                CircuitState.OPEN if round_ % 2 == 0 else CircuitState.HALF_OPEN,
                version + 1,
                opened_at=now + writer,
                at=now + writer / 10,
            )
            for writer in range(2)
        ]

        results = race(
            *(
                lambda c=candidate, v=version: run(store.write_circuit("api-1", c, expected_version=v))
                for candidate in candidates
            )
        )

        assert sorted(results) == [False, True], f"round {round_}: {results}"
        winner, loser = (0, 1) if results[0] else (1, 0)
        # nothing lost: the loser reads the winner's transition, and the next round builds on it
        stored = run(store.read_circuits(["api-1"]))
        assert stored == {"api-1": candidates[winner]}, f"round {round_}"
        assert stored["api-1"] != candidates[loser]
    assert run(store.read_circuits(["api-1"]))["api-1"].version == 20


@pytest.mark.usefixtures("atomic_puts")
def test_two_first_writers_racing_exactly_one_wins(store: DynamoDBStateStore) -> None:
    run(store.read_circuits(["warm"]))
    for round_ in range(20):
        backend = f"api-{round_}"
        candidates = [record(CircuitState.OPEN, 1, opened_at=1700000000.0 + w) for w in range(2)]
        results = race(
            *(
                lambda c=candidate, b=backend: run(store.write_circuit(b, c, expected_version=0))
                for candidate in candidates
            )
        )
        assert sorted(results) == [False, True], f"round {round_}: {results}"
        assert run(store.read_circuits([backend])) == {backend: candidates[results.index(True)]}


def test_an_unreadable_circuit_is_skipped_and_never_overwritten(
    store: DynamoDBStateStore, table: Any, caplog: pytest.LogCaptureFixture
) -> None:
    table.put_item(Item={"id": "er#circuit#api-1", "state": "FORCED_OPEN", "version": 3, "updated_at": 1})
    table.put_item(Item={"id": "er#circuit#api-2", "state": "OPEN", "version": "three", "updated_at": 1})
    good = record(CircuitState.OPEN, 1, opened_at=time.time())
    assert run(store.write_circuit("api-3", good, expected_version=0))

    with caplog.at_level(logging.WARNING, logger="edge_router.resilience"):
        read = run(store.read_circuits(["api-1", "api-2", "api-3"]))

    assert read == {"api-3": good}
    assert "'er#circuit#api-1'" in caplog.text and "FORCED_OPEN" in caplog.text
    assert "'er#circuit#api-2'" in caplog.text
    assert run(store.write_circuit("api-1", record(CircuitState.OPEN, 1), expected_version=0)) is False
    assert table.get_item(Key={"id": "er#circuit#api-1"})["Item"]["state"] == "FORCED_OPEN"


# --- health --------------------------------------------------------------------------------------


def snapshot(at: float, **statuses: HealthStatus) -> HealthSnapshot:
    return HealthSnapshot(checked_at=at, statuses=statuses)


def test_health_round_trips(store: DynamoDBStateStore) -> None:
    now = time.time()
    statuses = {
        "api-1": HealthStatus("healthy", last_check=now - 0.5, latency_ms=12.345678, reason=None, streak=4),
        "http://127.0.0.1:8080": HealthStatus(
            "unhealthy", last_check=now, latency_ms=None, reason="connect: refused (errno 111)", streak=-3
        ),
        "lambda:arn:aws:lambda:us-east-1:1:function:f": HealthStatus("unhealthy", now, 2000.0, "", -1),
        "never-probed": HealthStatus(),
        "a.b c": HealthStatus("healthy", 1700000000, 0.001, None, 1),
    }
    written = HealthSnapshot(checked_at=now, statuses=statuses)
    assert run(store.read_health()) is None

    assert run(store.write_health(written, previous=None)) is True
    read = run(store.read_health())

    assert read == written
    assert read is not None and dict(read.statuses) == statuses
    assert read.statuses["never-probed"] == HealthStatus("unknown", None, None, None, 0)
    assert read.statuses["http://127.0.0.1:8080"].latency_ms is None
    assert isinstance(read.checked_at, float)


def test_an_empty_snapshot_round_trips(store: DynamoDBStateStore) -> None:
    empty = snapshot(time.time())
    assert run(store.write_health(empty, previous=None))
    assert run(store.read_health()) == empty


def test_health_writes_are_conditional_on_the_previous_snapshot(store: DynamoDBStateStore) -> None:
    now = time.time()
    first = snapshot(now, a=HealthStatus("healthy", now, 1.0, None, 2))
    rival = snapshot(now + 0.1, a=HealthStatus("unhealthy", now, None, "timeout", -1))
    assert run(store.write_health(first, previous=None)) is True
    assert run(store.write_health(rival, previous=None)) is False  # it also started from nothing
    assert run(store.read_health()) == first

    second = snapshot(now + 10, a=HealthStatus("healthy", now + 10, 2.0, None, 3))
    stale = snapshot(now + 11, a=HealthStatus("unhealthy", now + 11, None, "5xx", -1))
    assert run(store.write_health(second, previous=first)) is True
    assert run(store.write_health(stale, previous=first)) is False  # first is no longer stored
    assert run(store.write_health(stale, previous=rival)) is False  # rival never was
    assert run(store.read_health()) == second

    with pytest.raises(ValueError, match="checked_at"):
        run(store.write_health(snapshot(now + 10), previous=second))


@pytest.mark.usefixtures("atomic_puts")
def test_two_health_rounds_racing_from_the_same_snapshot_exactly_one_wins(store: DynamoDBStateStore) -> None:
    previous: HealthSnapshot | None = None
    for round_ in range(10):
        now = time.time()
        candidates = [
            snapshot(now + w / 10, a=HealthStatus("healthy", now, float(w), None, w)) for w in range(2)
        ]
        results = race(
            *(
                lambda c=candidate, p=previous: run(store.write_health(c, previous=p))
                for candidate in candidates
            )
        )
        assert sorted(results) == [False, True], f"round {round_}: {results}"
        previous = run(store.read_health())
        assert previous == candidates[results.index(True)]


# --- the items as stored ---------------------------------------------------------------------------


def test_items_have_the_documented_layout_and_expire(store: DynamoDBStateStore, table: Any) -> None:
    now = time.time()
    assert run(store.write_circuit("api-1", record(CircuitState.CLOSED, 1, at=now), expected_version=0))
    assert run(
        store.write_circuit("api-2", record(CircuitState.OPEN, 1, opened_at=now, at=now), expected_version=0)
    )
    assert run(store.write_health(snapshot(now, a=HealthStatus("healthy", now, 1.5, None, 2)), previous=None))

    closed = table.get_item(Key={"id": "er#circuit#api-1"})["Item"]
    opened = table.get_item(Key={"id": "er#circuit#api-2"})["Item"]
    health = table.get_item(Key={"id": "er#health"})["Item"]

    assert set(closed) == {"id", "state", "version", "updated_at", "expires_at"}  # no opened_at: None
    assert set(opened) == {"id", "state", "opened_at", "version", "updated_at", "expires_at"}
    assert opened["state"] == "OPEN" and opened["version"] == 1 and opened["opened_at"] == Decimal(str(now))
    assert set(health) == {"id", "checked_at", "backends", "expires_at"}
    assert health["backends"] == {
        "a": {"health": "healthy", "last_check": Decimal(str(now)), "latency_ms": Decimal("1.5"), "streak": 2}
    }
    for item, ttl in ((closed, WEEK), (opened, WEEK), (health, DAY)):
        expires_at = item["expires_at"]
        assert isinstance(expires_at, Decimal) and expires_at == expires_at.to_integral_value()
        assert time.time() + ttl - 5 < expires_at <= now + ttl + 1
    assert {item["id"] for item in table.scan()["Items"]} == {
        "er#circuit#api-1",
        "er#circuit#api-2",
        "er#health",
    }


# --- failures ------------------------------------------------------------------------------------


def test_a_missing_table_is_a_state_store_error_naming_it(aws: str) -> None:
    store = DynamoDBStateStore("no-such-table")
    calls = [
        store.read_circuits(["api-1"]),
        store.write_circuit("api-1", record(CircuitState.OPEN, 1), expected_version=0),
        store.read_health(),
        store.write_health(snapshot(time.time()), previous=None),
    ]
    for call in calls:
        with pytest.raises(
            StateStoreError, match=r"DynamoDB table 'no-such-table'.*ResourceNotFoundException"
        ):
            run(call)


def test_an_unreachable_table_fails_fast(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a worker thread cannot be cancelled: the store's client bounds each call (CLIENT_SETTINGS)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    store = DynamoDBStateStore(TABLE)
    started = time.monotonic()
    with pytest.raises(StateStoreError, match=rf"cannot read circuits from DynamoDB table '{TABLE}'"):
        run(store.read_circuits(["api-1"]))
    with pytest.raises(StateStoreError, match=rf"cannot write health to DynamoDB table '{TABLE}'"):
        run(store.write_health(snapshot(time.time()), previous=None))
    assert time.monotonic() - started < 6


def test_numbers_dynamodb_cannot_hold_are_state_store_errors(store: DynamoDBStateStore) -> None:
    nan = float("nan")
    with pytest.raises(StateStoreError, match=TABLE):
        run(
            store.write_circuit(
                "api-1", record(CircuitState.OPEN, 1, opened_at=float("inf")), expected_version=0
            )
        )
    with pytest.raises(StateStoreError, match=TABLE):
        run(store.write_circuit("api-1", CircuitRecord(CircuitState.OPEN, None, 1, nan), expected_version=0))
    with pytest.raises(StateStoreError, match=TABLE):
        run(
            store.write_health(
                snapshot(time.time(), a=HealthStatus("healthy", latency_ms=nan)), previous=None
            )
        )
    assert run(store.read_circuits(["api-1"])) == {} and run(store.read_health()) is None


class HoldingBack:
    """The real client, except that its first `stingy_calls` BatchGetItems answer one key each."""

    def __init__(self, real: Any, stingy_calls: int) -> None:
        self.real, self.stingy_calls, self.batch_calls = real, stingy_calls, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.batch_calls += 1
        if self.batch_calls > self.stingy_calls:
            return dict(self.real.batch_get_item(RequestItems=RequestItems))
        ((name, request),) = RequestItems.items()
        keys = request["Keys"]
        answer = dict(self.real.batch_get_item(RequestItems={name: {**request, "Keys": keys[:1]}}))
        answer["UnprocessedKeys"] = {name: {**request, "Keys": keys[1:]}} if keys[1:] else {}
        return answer


@pytest.fixture
def holding_back(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], HoldingBack]:

    def install(stingy_calls: int) -> HoldingBack:
        fake = HoldingBack(client("dynamodb", settings=dynamodb_store.CLIENT_SETTINGS), stingy_calls)
        monkeypatch.setattr(dynamodb_store, "client", lambda service, **settings: fake)
        return fake

    return install


def test_unprocessed_keys_are_asked_for_again(
    store: DynamoDBStateStore, holding_back: Callable[[int], HoldingBack]
) -> None:
    records = {f"api-{n}": record(CircuitState.OPEN, 1, opened_at=float(n)) for n in range(5)}
    for backend, written in records.items():
        assert run(store.write_circuit(backend, written, expected_version=0))
    fake = holding_back(3)  # three stingy answers, then a full one: within the 3 retries

    assert run(store.read_circuits(list(records))) == records
    assert fake.batch_calls == 4


def test_keys_left_unprocessed_after_the_retries_are_a_state_store_error(
    store: DynamoDBStateStore, holding_back: Callable[[int], HoldingBack]
) -> None:
    for n in range(10):
        assert run(store.write_circuit(f"api-{n}", record(CircuitState.OPEN, 1), expected_version=0))
    fake = holding_back(1000)

    with pytest.raises(StateStoreError, match=rf"'{TABLE}'.*6 keys still unprocessed after 3 retries"):
        run(store.read_circuits([f"api-{n}" for n in range(10)]))
    assert fake.batch_calls == 4
