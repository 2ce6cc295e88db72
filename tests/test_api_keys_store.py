"""API keys (CONTRACT section 8): the guard, the in-process store, and the state-table store against
moto over real HTTP, with two store instances on one table standing for two Lambda instances."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from typing import Any

import pytest

from edge_router.aws.clients import client
from edge_router.aws.shield import StoreShield
from edge_router.exceptions import KeyLimitReached, Refusal, StateStoreError
from edge_router.guards import key_store
from edge_router.guards.api_keys import ApiKeyGuard, hash_key
from edge_router.guards.key_store import DynamoDBKeyStore, LocalKeyStore
from edge_router.guards.services import KeyStore, StoredKey
from edge_router.http.context import Principal, RequestContext
from support import Clock, HangingServer, dynamodb_table, run

TABLE = "edge-router-state"
CONFIG_KEY = "config-key-1"
CONFIG = StoredKey(id="ops", name="ops", hash=hash_key(CONFIG_KEY), created_at=0.0, rate_limit_multiplier=3.0)


def request(
    headers: dict[str, str] | None = None, *, raw: list[tuple[bytes, bytes]] | None = None
) -> RequestContext:
    raw_headers = raw or [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    return RequestContext(method="GET", raw_path="/api/x", raw_headers=raw_headers, client="127.0.0.1")


def check(guard: ApiKeyGuard, ctx: RequestContext) -> Refusal | None:
    return run(guard.on_request(ctx))


class FailingStore:
    """A key store whose table cannot be reached."""

    def __init__(self) -> None:
        self.calls = 0

    async def find(self, key_hash: str) -> StoredKey | None:
        self.calls += 1
        raise StateStoreError("DynamoDB table 'state': unreachable")

    async def create(self, name: str, rate_limit_multiplier: float = 1.0) -> tuple[StoredKey, str]:
        raise StateStoreError("unreachable")

    async def list(self) -> list[StoredKey]:
        raise StateStoreError("unreachable")

    async def delete(self, key_id: str) -> bool:
        raise StateStoreError("unreachable")


# --- hash_key and the guard ----------------------------------------------------------------------


def test_hash_key_is_sha256_hex_of_utf8() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert hash_key("ключ") == hashlib.sha256("ключ".encode()).hexdigest()


def test_a_config_key_names_its_caller_and_never_reaches_the_backend() -> None:
    guard = ApiKeyGuard(header="X-API-Key", config_keys=[CONFIG], store=LocalKeyStore())
    ctx = request({"X-API-Key": CONFIG_KEY})
    assert check(guard, ctx) is None
    assert ctx.principal == Principal("ops", 3.0)
    assert "x-api-key" in ctx.hidden_headers


def test_forward_key_lets_the_header_through() -> None:
    guard = ApiKeyGuard(config_keys=[CONFIG], store=LocalKeyStore(), forward_key=True)
    ctx = request({"x-api-key": CONFIG_KEY})
    assert check(guard, ctx) is None
    assert "x-api-key" not in ctx.hidden_headers


def test_other_hidden_headers_are_kept() -> None:
    guard = ApiKeyGuard(header="x-token", config_keys=[CONFIG], store=LocalKeyStore())
    ctx = request({"x-token": CONFIG_KEY})
    ctx.hidden_headers = frozenset({"x-other"})
    assert check(guard, ctx) is None
    assert ctx.hidden_headers == {"x-other", "x-token"}


@pytest.mark.parametrize("headers", [{}, {"x-api-key": ""}, {"authorization": CONFIG_KEY}])
def test_a_missing_key_is_401_when_required(headers: dict[str, str]) -> None:
    guard = ApiKeyGuard(config_keys=[CONFIG], store=LocalKeyStore())
    ctx = request(headers)
    refusal = check(guard, ctx)
    assert refusal is not None and refusal.status == 401
    assert "Missing API key" in refusal.message and "x-api-key" in refusal.message
    assert (b"www-authenticate", b'ApiKey header="x-api-key"') in refusal.headers
    assert ctx.principal is None


def test_a_missing_key_passes_anonymously_when_optional() -> None:
    guard = ApiKeyGuard(required=False, config_keys=[CONFIG], store=LocalKeyStore())
    ctx = request({})
    assert check(guard, ctx) is None
    assert ctx.principal is None


@pytest.mark.parametrize("required", [True, False])
@pytest.mark.parametrize(
    "presented", ["wrong", CONFIG_KEY + "x", CONFIG_KEY[:-1], CONFIG.hash, " " + CONFIG_KEY]
)
def test_an_unknown_key_is_401_even_when_optional(required: bool, presented: str) -> None:
    guard = ApiKeyGuard(required=required, config_keys=[CONFIG], store=LocalKeyStore())
    ctx = request({"x-api-key": presented})
    refusal = check(guard, ctx)
    assert refusal is not None and refusal.status == 401
    assert refusal.message == "Invalid API key"
    assert ctx.principal is None
    assert "x-api-key" in ctx.hidden_headers


def test_a_key_created_in_the_store_is_accepted_with_its_multiplier_until_deleted() -> None:
    store = LocalKeyStore()
    stored, key = run(store.create("ci", rate_limit_multiplier=0.5))
    guard = ApiKeyGuard(config_keys=[CONFIG], store=store)
    ctx = request({"x-api-key": key})
    assert check(guard, ctx) is None
    assert ctx.principal == Principal(stored.id, 0.5)
    assert run(store.delete(stored.id)) is True
    refusal = check(guard, request({"x-api-key": key}))
    assert refusal is not None and refusal.status == 401


def test_a_key_that_is_not_utf8_is_hashed_as_its_bytes() -> None:
    raw_key = b"k\xff\xfe-1"
    stored = StoredKey(id="bin", name="bin", hash=hashlib.sha256(raw_key).hexdigest(), created_at=0.0)
    guard = ApiKeyGuard(config_keys=[stored], store=LocalKeyStore())
    ctx = request(raw=[(b"x-api-key", raw_key)])
    assert check(guard, ctx) is None
    assert ctx.principal == Principal("bin", 1.0)


def test_when_the_store_fails_config_keys_still_work_and_others_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingStore()
    clock = Clock()
    guard = ApiKeyGuard(config_keys=[CONFIG], store=store, clock=clock)
    with caplog.at_level(logging.WARNING, logger="edge_router.guards"):
        assert check(guard, request({"x-api-key": CONFIG_KEY})) is None
        assert store.calls == 0  # a config key never asks the store
        for _ in range(3):
            refusal = check(guard, request({"x-api-key": "erk_created-elsewhere"}))
            assert refusal is not None and refusal.status == 401
        assert len([r for r in caplog.records if "key store" in r.getMessage()]) == 1
        clock.now += 60
        check(guard, request({"x-api-key": "erk_created-elsewhere"}))
    assert store.calls == 4
    assert len([r for r in caplog.records if "key store" in r.getMessage()]) == 2


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"header": "x api key"}, "cannot carry an API key"),
        ({"header": ""}, "cannot carry an API key"),
        ({"header": "Host"}, "cannot carry an API key"),
        ({"header": "content-length"}, "cannot carry an API key"),
        ({"config_keys": [StoredKey("a", "a", "ABC", 0.0)]}, "64 lower-case hex"),
        ({"config_keys": [StoredKey("a", "a", CONFIG.hash.upper(), 0.0)]}, "64 lower-case hex"),
        ({"config_keys": [CONFIG, StoredKey("b", "b", CONFIG.hash, 0.0)]}, "listed twice"),
        ({"config_keys": [CONFIG, StoredKey("ops", "b", hash_key("other"), 0.0)]}, "listed twice"),
        ({"config_keys": [StoredKey("a", "a", hash_key("x"), 0.0, 0.0)]}, "rate_limit_multiplier"),
        ({"config_keys": [StoredKey("a", "a", hash_key("x"), 0.0, float("nan"))]}, "rate_limit_multiplier"),
    ],
)
def test_the_guard_refuses_what_it_cannot_enforce(arguments: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ApiKeyGuard(store=LocalKeyStore(), **arguments)


# --- LocalKeyStore -------------------------------------------------------------------------------


def test_local_store_keeps_only_the_hash_and_shows_the_key_once() -> None:
    store: KeyStore = LocalKeyStore(clock=lambda: 1_700_000_000.5)
    stored, key = run(store.create("ci"))
    other, other_key = run(store.create("ci"))
    assert key.startswith("erk_") and len(key) >= 4 + 43
    assert key != other_key and stored.id != other.id
    assert len(stored.id) == 16 and int(stored.id, 16) >= 0
    assert stored.hash == hash_key(key)
    assert stored.created_at == 1_700_000_000.5
    assert stored.rate_limit_multiplier == 1.0
    assert run(store.find(hash_key(key))) == stored
    assert run(store.list()) == sorted([stored, other], key=lambda s: (s.created_at, s.id))
    assert all(key not in repr(listed) for listed in run(store.list()))


def test_local_store_delete() -> None:
    store = LocalKeyStore()
    stored, key = run(store.create("ci"))
    assert run(store.delete(stored.id)) is True
    assert run(store.delete(stored.id)) is False
    assert run(store.find(hash_key(key))) is None
    assert run(store.list()) == []


def test_local_store_is_bounded() -> None:
    store = LocalKeyStore()
    for index in range(key_store.MAX_KEYS):
        run(store.create(f"k{index}"))
    with pytest.raises(KeyLimitReached):
        run(store.create("one too many"))
    first = run(store.list())[0]
    run(store.delete(first.id))
    run(store.create("room again"))


@pytest.mark.parametrize(
    ("name", "multiplier"),
    [
        ("", 1.0),
        ("x" * 101, 1.0),
        ("tab\there", 1.0),
        ("ok", 0.0),
        ("ok", -1.0),
        ("ok", float("inf")),
        ("ok", 1001.0),
    ],
)
def test_a_key_needs_a_printable_name_and_a_positive_multiplier(name: str, multiplier: float) -> None:
    with pytest.raises(ValueError):
        run(LocalKeyStore().create(name, multiplier))


# --- DynamoDBKeyStore ----------------------------------------------------------------------------


@pytest.fixture
def table(aws: str) -> Any:
    return dynamodb_table(TABLE)


def raw_item() -> dict[str, Any]:
    answer = client("dynamodb").get_item(
        TableName=TABLE, Key={"id": {"S": "er#apikeys"}}, ConsistentRead=True
    )
    return dict(answer.get("Item", {}))


def test_the_default_refresh_refuses_a_deleted_key_within_60_s(table: Any) -> None:
    store = DynamoDBKeyStore(TABLE)
    assert store.refresh_s <= 30
    assert store.max_staleness_s <= 60


def test_keys_live_in_one_item_as_hashes(table: Any) -> None:
    times = iter([1_700_000_000.25, 1_700_000_001.5])
    store = DynamoDBKeyStore(TABLE, clock=lambda: next(times))

    async def scenario() -> tuple[Any, str, Any, str]:
        first, first_key = await store.create("ci", rate_limit_multiplier=2.5)
        second, second_key = await store.create("deploy")
        return first, first_key, second, second_key

    first, first_key, second, second_key = run(scenario())
    item = raw_item()
    assert set(item) == {"id", "keys"}
    assert item["keys"]["M"][first.id] == {
        "M": {
            "hash": {"S": hash_key(first_key)},
            "name": {"S": "ci"},
            "created_at": {"N": "1700000000.25"},
            "rate_limit_multiplier": {"N": "2.5"},
        }
    }
    assert set(item["keys"]["M"]) == {first.id, second.id}
    assert first_key not in str(item) and second_key not in str(item)
    listed = run(DynamoDBKeyStore(TABLE).list())
    assert listed == [first, second]


def test_a_key_created_on_one_instance_works_on_another_within_5_s(table: Any) -> None:
    clock = Clock()
    creator, other = DynamoDBKeyStore(TABLE), DynamoDBKeyStore(TABLE, monotonic=clock)

    async def scenario() -> list[StoredKey | None]:
        seen = [await other.find(hash_key("not a key"))]  # loads the (empty) copy
        stored, key = await creator.create("ci")
        clock.now += 1
        seen.append(await other.find(hash_key(key)))  # a miss read 1 s ago: not read again yet
        clock.now += key_store.MISS_REFRESH_S
        seen.append(await other.find(hash_key(key)))  # a miss: read again, waited for
        seen.append(stored)
        return seen

    nothing, too_soon, found, stored = run(scenario())
    assert nothing is None and too_soon is None
    assert found == stored


def test_wrong_keys_cost_at_most_one_read_per_5_s(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    store = DynamoDBKeyStore(TABLE, monotonic=clock)
    reads: list[float] = []
    real = store._get_entries

    def counted() -> dict[str, StoredKey]:
        reads.append(clock.now)
        return real()

    monkeypatch.setattr(store, "_get_entries", counted)

    async def scenario() -> None:
        for index in range(200):
            assert await store.find(hash_key(f"guess {index}")) is None
            clock.now += 0.1  # 20 s of guessing, ten a second

    run(scenario())
    assert 1 < len(reads) <= 20 / key_store.MISS_REFRESH_S + 1


def test_a_key_deleted_on_one_instance_is_refused_on_another_within_max_staleness(table: Any) -> None:
    clock = Clock()
    deleter, other = DynamoDBKeyStore(TABLE), DynamoDBKeyStore(TABLE, refresh_s=30, monotonic=clock)

    async def scenario() -> list[StoredKey | None]:
        stored, key = await deleter.create("ci")
        seen = [await other.find(hash_key(key))]
        assert await deleter.delete(stored.id) is True
        seen.append(await deleter.find(hash_key(key)))  # the deleting instance: at once
        clock.now += other.max_staleness_s  # the copy is as old as it may be: read, waited for
        seen.append(await other.find(hash_key(key)))
        return seen

    before, on_deleter, after = run(scenario())
    assert before is not None
    assert on_deleter is None
    assert after is None


def test_a_read_that_predates_this_instances_own_delete_does_not_bring_the_key_back(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    store = DynamoDBKeyStore(TABLE, refresh_s=30, monotonic=clock)
    read_done, release = threading.Event(), threading.Event()
    real = store._get_entries

    def slow() -> dict[str, StoredKey]:
        entries = real()  # read before the delete below...
        read_done.set()
        release.wait(10)  # ...and answered after it
        return entries

    async def scenario() -> list[StoredKey | None]:
        stored, key = await store.create("ci")
        seen = [await store.find(hash_key(key))]
        monkeypatch.setattr(store, "_get_entries", slow)
        clock.now += store.refresh_s  # stale: a read starts beside this request
        seen.append(await store.find(hash_key(key)))
        await asyncio.to_thread(read_done.wait, 10)
        monkeypatch.setattr(store, "_get_entries", real)
        assert await store.delete(stored.id) is True
        release.set()
        for _ in range(500):  # until the slow read has landed
            if store._reading is None:
                break
            await asyncio.sleep(0.01)
        seen.append(await store.find(hash_key(key)))
        await store.aclose()
        return seen

    before, while_reading, after = run(scenario())
    assert before is not None and while_reading is not None
    assert after is None


def test_a_stale_copy_is_read_again_beside_the_requests(table: Any) -> None:
    """With a short refresh, in real time: the other instance refuses the key soon after the delete."""
    deleter, other = DynamoDBKeyStore(TABLE), DynamoDBKeyStore(TABLE, refresh_s=0.5)

    async def scenario() -> tuple[StoredKey | None, float]:
        stored, key = await deleter.create("ci")
        found = await other.find(hash_key(key))
        await deleter.delete(stored.id)
        deleted_at = time.monotonic()
        while await other.find(hash_key(key)) is not None:
            assert time.monotonic() - deleted_at < 10, "the deleted key was still accepted"
            await asyncio.sleep(0.02)
        await other.aclose()
        return found, time.monotonic() - deleted_at

    found, _ = run(scenario())
    assert found is not None


def test_deleting_an_unknown_key_is_false(table: Any) -> None:
    store = DynamoDBKeyStore(TABLE)
    assert run(store.delete("0123456789abcdef")) is False  # no item at all yet
    stored, _ = run(store.create("ci"))
    assert run(store.delete("0123456789abcdef")) is False
    assert [s.id for s in run(store.list())] == [stored.id]


def test_the_table_holds_at_most_max_keys(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(key_store, "MAX_KEYS", 3)
    store = DynamoDBKeyStore(TABLE)
    made = [run(store.create(f"k{index}"))[0] for index in range(3)]
    with pytest.raises(KeyLimitReached):
        run(store.create("one too many"))
    run(store.delete(made[0].id))
    run(store.create("room again"))
    assert len(run(store.list())) == 3


def test_an_unreadable_entry_is_skipped_and_kept(table: Any, caplog: pytest.LogCaptureFixture) -> None:
    store = DynamoDBKeyStore(TABLE)
    stored, _ = run(store.create("ci"))
    client("dynamodb").update_item(
        TableName=TABLE,
        Key={"id": {"S": "er#apikeys"}},
        UpdateExpression="SET #keys.#bad = :bad",
        ExpressionAttributeNames={"#keys": "keys", "#bad": "hand-edited"},
        ExpressionAttributeValues={":bad": {"M": {"hash": {"N": "1"}}}},
    )
    with caplog.at_level(logging.WARNING, logger="edge_router.guards"):
        listed = run(DynamoDBKeyStore(TABLE).list())
    assert listed == [stored]
    assert "hand-edited" in caplog.text
    assert "hand-edited" in raw_item()["keys"]["M"]


def test_a_missing_table_is_a_state_store_error(aws: str) -> None:
    store = DynamoDBKeyStore("no-such-table")
    for call in (
        store.find(hash_key("k")),
        store.create("ci"),
        store.list(),
        store.delete("0123456789abcdef"),
    ):
        with pytest.raises(StateStoreError, match="no-such-table"):
            run(call)


def test_a_hanging_table_holds_up_one_request_at_most_once(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first request waits the shield's budget; the ones after it fail fast (and the guard
    refuses the store's keys meanwhile, while the config's keys still pass)."""
    with HangingServer() as hanging:
        monkeypatch.setenv("AWS_ENDPOINT_URL", hanging.url)
        store = DynamoDBKeyStore(TABLE, shield=StoreShield("keys", budget_s=0.25))
        guard = ApiKeyGuard(config_keys=[CONFIG], store=store)

        async def scenario() -> list[float]:
            waits = []
            for _ in range(20):
                started = time.monotonic()
                refusal = await guard.on_request(request({"x-api-key": "erk_elsewhere"}))
                waits.append(time.monotonic() - started)
                assert refusal is not None and refusal.status == 401
            assert await guard.on_request(request({"x-api-key": CONFIG_KEY})) is None
            await store.aclose()
            return waits

        waits = run(scenario())
    assert waits[0] < 2.0  # the budget (0.25 s), not botocore's 2 s read timeout
    assert max(waits[1:]) < 0.1
    assert len(hanging.operations) <= 2
