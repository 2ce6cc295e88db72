"""Issue 12, its first defect: a state table that hangs (accepts connections, never answers: a
partition, a DynamoDB brownout) must never hold a request up — in server mode and on the Lambda
handler, the median latency stays within a few milliseconds of a healthy table's and at most the
first few requests wait (each at most the shield's budget, 250 ms), where before every request
waited for botocore's two 2 s read timeouts.

The harness is reusable for any state-table user (circuits and health here; rate-limit buckets
and API keys later): `healthy_then_hanging(mode, config, env, monkeypatch)` sends paced requests
through a router on a healthy table (moto, the `aws` fixture) and then through a new one on a
`HangingServer` as `AWS_ENDPOINT_URL`, and returns both runs; `assert_never_held_up` judges them.
`mode` is `server_mode` (`edge-router serve`) or `lambda_mode(lambda_adapter)` (the Lambda handler).

Why 20 s of hanging: it spans four lives of the circuit cache (5 s), so requests keep finding
their shared state too old, and three failed background trials of the table (after backoffs of
1, 2 and 4 s, each trial hanging ~4 s beside the requests). Print the numbers with
`.venv/bin/python -m pytest -q -s tests/test_state_table_hang.py`.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edge_router.aws.shield import StoreShield
from edge_router.config.load import load_config
from edge_router.config.model import Route
from edge_router.resilience.breaker import CircuitState, Verdict
from edge_router.resilience.store import CircuitRecord, HealthSnapshot
from edge_router.resilience.tracker import BackendTracker
from support import (
    Backend,
    Clock,
    HangingServer,
    RouterServer,
    dynamodb_table,
    function_url_event,
    run,
    write_config,
)

TABLE = "edge-router-state"
HANG_SECONDS = 20.0
BASELINE_SECONDS = 4.0  # enough requests for a stable median of the healthy table
PACE_S = 0.05  # one request every 50 ms: ~400 requests over 20 s
WAITED_MS = 100.0  # a request that waited for the table waited its budget (250 ms); healthy: ~2 ms
FIRST_FEW = 5  # waiting is allowed only among the first requests
MEDIAN_MARGIN_MS = 5.0

Send = Callable[[int], int]  # send request number i; its status
Mode = Callable[[str, dict[str, str]], AbstractContextManager[Send]]


@dataclass
class Run:
    """Requests sent at a steady pace: each one's latency and status, and what the table saw."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)  # calls the hanging table received

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def waited(self) -> list[int]:
        """The numbers of the requests that waited (for the table)."""
        return [i for i, ms in enumerate(self.latencies_ms) if ms >= WAITED_MS]

    def summary(self) -> str:
        waits = ", ".join(f"#{i} {self.latencies_ms[i]:.0f} ms" for i in self.waited) or "none"
        return (
            f"{len(self.latencies_ms)} requests, median {self.median_ms:.2f} ms, "
            f"max {max(self.latencies_ms):.0f} ms, waited: {waits}"
        )


def paced(send: Send, seconds: float) -> Run:
    """Send requests every PACE_S for `seconds` (a request that takes longer delays the next).

    The objects alive at the start (moto's server and its models run in this process: millions)
    are frozen out of the garbage collector meanwhile: a full collection over them pauses every
    thread for 100-500 ms, which would be the test process's pause, not the router's waiting."""
    run = Run()
    gc.collect()
    gc.freeze()
    try:
        end = time.monotonic() + seconds
        for i in range(int(seconds / PACE_S) + 1):
            if time.monotonic() >= end:
                break
            started = time.perf_counter()
            run.statuses.append(send(i))
            took = time.perf_counter() - started
            run.latencies_ms.append(took * 1000)
            time.sleep(max(0.0, PACE_S - took))
    finally:
        gc.unfreeze()
    return run


@contextmanager
def server_mode(config: str, env: dict[str, str]) -> Iterator[Send]:
    """The router under `edge-router serve`; its background work on the table is ended before it stops."""
    with RouterServer(config, env) as router, router.client() as http:
        yield lambda i: http.get(f"/api/{i}").status_code
        asyncio.run_coroutine_threadsafe(router.app.tracker.aclose(), router.loop).result(5)


def lambda_mode(lambda_adapter: Callable[..., Any]) -> Mode:
    """The Lambda handler (one instance: its own loop, one invocation at a time)."""

    @contextmanager
    def mode(config: str, env: dict[str, str]) -> Iterator[Send]:
        handler = lambda_adapter(config, **env)
        yield lambda i: int(handler(function_url_event("GET", f"/api/{i}"), None)["statusCode"])
        handler.loop.run_until_complete(handler.router.tracker.aclose())

    return mode


def healthy_then_hanging(
    mode: Mode,
    config: str,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    seconds: float = HANG_SECONDS,
) -> tuple[Run, Run]:
    """Paced requests on a healthy state table (moto: use with the `aws` fixture), then on a new
    router (cold, as after a deploy) whose table hangs. `env` is the router's settings."""
    env = {"STATE_TABLE": TABLE, **env}
    dynamodb_table(env["STATE_TABLE"])
    with mode(config, env) as send:
        healthy = paced(send, BASELINE_SECONDS)
    with HangingServer() as table:
        monkeypatch.setenv("AWS_ENDPOINT_URL", table.url)
        with mode(config, env) as send:
            hanging = paced(send, seconds)
        hanging.operations = list(table.operations)
    print(f"\n  healthy table: {healthy.summary()}\n  hanging table: {hanging.summary()}")
    print(f"  calls the hanging table received: {len(hanging.operations)}")
    return healthy, hanging


def assert_never_held_up(healthy: Run, hanging: Run) -> None:
    """What a user of the router notices: every answer as usual, as fast as with a healthy table,
    and only the first few requests ever waiting."""
    assert set(healthy.statuses) == {200} and set(hanging.statuses) == {200}  # fail open
    assert hanging.median_ms <= healthy.median_ms + MEDIAN_MARGIN_MS
    assert all(i < FIRST_FEW for i in hanging.waited), hanging.summary()
    assert len(hanging.latencies_ms) >= HANG_SECONDS / PACE_S / 2  # the pace held: nothing queued up


def circuits_and_health(tmp_path: Path, one: Backend, two: Backend) -> str:
    """A pool route (a circuit breaker by default) over two backends with health checks: every
    request needs both their circuits and their health from the state table."""
    return write_config(
        tmp_path / "config.json",
        {
            "backends": {"one": {"url": one.url}, "two": {"url": two.url}},
            "health_checks": {"interval_s": 10},
            "routes": [{"prefix": "/api", "targets": ["one", "two"]}],
        },
    )


def assert_circuits_and_health_were_tried_then_backed_off(hanging: Run) -> None:
    assert {"BatchGetItem", "GetItem"} <= set(hanging.operations)  # circuits and health
    # Backed off: a few calls (and botocore's one retry of each), not one or two per request.
    assert len(hanging.operations) < len(hanging.latencies_ms) / 5


# -- the tracker on a table in memory: what a request waits for, by the test's clock ------------


class MemoryTable:
    """A `StateStore` in memory whose every call takes `delay_s` (real time; in a worker thread,
    as boto3's calls, when `threaded`), or hangs until `answer()` while `hanging`; `calls` names
    each call."""

    def __init__(self, delay_s: float = 0.0, *, threaded: bool = False) -> None:
        self.delay_s = delay_s
        self.threaded = threaded
        self.hanging = False
        self.circuits: dict[str, CircuitRecord] = {}
        self.snapshot: HealthSnapshot | None = None
        self.calls: list[str] = []
        self._answered = asyncio.Event()

    def answer(self) -> None:
        self.hanging = False
        self._answered.set()

    async def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.threaded:
            await asyncio.to_thread(time.sleep, self.delay_s)
        else:
            await asyncio.sleep(self.delay_s)
        if self.hanging:
            await self._answered.wait()

    async def read_circuits(self, backends: Sequence[str]) -> dict[str, CircuitRecord]:
        await self._call("read_circuits")
        return {backend: self.circuits[backend] for backend in backends if backend in self.circuits}

    async def write_circuit(self, backend: str, record: CircuitRecord, *, expected_version: int) -> bool:
        await self._call("write_circuit")
        stored = self.circuits.get(backend)
        if (stored.version if stored else 0) != expected_version:
            return False
        self.circuits[backend] = record
        return True

    async def read_health(self) -> HealthSnapshot | None:
        await self._call("read_health")
        return self.snapshot

    async def write_health(self, snapshot: HealthSnapshot, *, previous: HealthSnapshot | None) -> bool:
        await self._call("write_health")
        self.snapshot = snapshot
        return True


POOL = {
    "backends": {"one": {"url": "http://127.0.0.1:1"}, "two": {"url": "http://127.0.0.1:2"}},
    "routes": [{"prefix": "/api", "targets": ["one", "two"], "circuitBreaker": {"failureThreshold": 1}}],
}


def on_table(table: MemoryTable, clock: Clock, budget_s: float) -> tuple[BackendTracker, Route]:
    """A tracker on `table`, configured with POOL; the test's clock drives caches and backoffs."""
    shield = StoreShield("the table", budget_s=budget_s, clock=clock)
    tracker = BackendTracker(store=table, clock=clock, shield=shield)
    config = load_config(POOL, {})
    tracker.configure(config)
    return tracker, config.routes[0]


async def timed_choice(tracker: BackendTracker, route: Route) -> tuple[tuple[str, ...], float]:
    """The backends a request to the pool would try, and how long choosing took (seconds)."""
    started = time.monotonic()
    gate = await tracker.gate(route, route.targets, explicit=False)
    return tuple(target.source for target in gate.targets), time.monotonic() - started


def opened_elsewhere(table: MemoryTable, backend: str, at: float) -> None:
    """Another instance opens `backend`'s circuit."""
    table.circuits[backend] = CircuitRecord(CircuitState.OPEN, opened_at=at, version=1, updated_at=at)


def test_steady_traffic_never_waits_for_a_read_yet_honours_an_open_circuit_within_5_s() -> None:
    table, clock = MemoryTable(delay_s=0.2), Clock(now=0.0)
    tracker, route = on_table(table, clock, budget_s=1.0)

    async def body() -> None:
        assert (await timed_choice(tracker, route))[0] == ("one", "two")  # the first read: waited for
        opened_elsewhere(table, "one", at=0.5)
        for now in (0.5, 1.5, 2.5, 3.5, 4.0, 4.5):  # 4.0: the refresh starts, beside the request
            clock.now = now
            chosen, took = await timed_choice(tracker, route)
            assert chosen == ("one", "two") and took < 0.1
        await asyncio.sleep(0.3)  # the refresh lands
        clock.now = 4.9
        assert (await timed_choice(tracker, route))[0] == ("two",)
        assert table.calls.count("read_circuits") == 2
        await tracker.aclose()

    run(body())


def test_after_an_idle_spell_a_request_waits_for_the_read_and_honours_it() -> None:
    table, clock = MemoryTable(delay_s=0.05), Clock(now=0.0)
    tracker, route = on_table(table, clock, budget_s=1.0)

    async def body() -> None:
        await timed_choice(tracker, route)
        opened_elsewhere(table, "one", at=1.0)
        clock.now = 5.0
        chosen, took = await timed_choice(tracker, route)
        assert chosen == ("two",) and took >= 0.04
        await tracker.aclose()

    run(body())


def test_a_hanging_table_costs_the_first_request_its_budget_and_no_request_after_it() -> None:
    table, clock = MemoryTable(), Clock(now=0.0)
    tracker, route = on_table(table, clock, budget_s=0.05)
    table.hanging = True

    async def body() -> None:
        chosen, took = await timed_choice(tracker, route)
        assert chosen == ("one", "two") and 0.04 <= took < 1.0
        slowest = 0.0
        for step in range(1, 121):  # a minute of requests, two a second
            clock.now = step / 2
            chosen, took = await timed_choice(tracker, route)
            slowest = max(slowest, took)
        assert chosen == ("one", "two") and slowest < 0.04
        assert sorted(table.calls) == ["read_circuits", "read_health"]  # the one read, never repeated
        opened_elsewhere(table, "one", at=clock.now)
        table.answer()  # the hung read ends at last: what it read is used
        await asyncio.sleep(0.01)
        assert (await timed_choice(tracker, route))[0] == ("two",)
        await tracker.aclose()

    run(body())


def test_on_lambda_a_refresh_still_under_way_when_an_invocation_ends_serves_the_next_one() -> None:
    """The loop runs only during an invocation (Mangum's `run_until_complete`); between two the
    process may be frozen, and the refresh begun beside the last request answers meanwhile."""
    table, clock = MemoryTable(delay_s=0.05, threaded=True), Clock(now=0.0)
    tracker, route = on_table(table, clock, budget_s=0.25)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(timed_choice(tracker, route))  # the first read, waited for
        opened_elsewhere(table, "one", at=0.5)
        clock.now = 4.5  # the refresh starts beside this request, which ends before it answers
        assert loop.run_until_complete(timed_choice(tracker, route))[0] == ("one", "two")
        time.sleep(0.4)  # frozen: the read answers in its thread, the loop stands still
        clock.now = 5.2  # too old to route with: the read under way is waited for, and used
        chosen, took = loop.run_until_complete(timed_choice(tracker, route))
        assert chosen == ("two",) and took < 0.1
        assert not tracker.shield.backed_off and table.calls.count("read_circuits") == 2
        loop.run_until_complete(tracker.aclose())
    finally:
        loop.close()


def test_requests_arriving_during_the_first_read_wait_for_it_not_for_reads_of_their_own() -> None:
    table, clock = MemoryTable(delay_s=0.1), Clock(now=0.0)
    tracker, route = on_table(table, clock, budget_s=1.0)
    opened_elsewhere(table, "one", at=0.0)

    async def body() -> None:
        choices = await asyncio.gather(*(timed_choice(tracker, route) for _ in range(5)))
        assert [chosen for chosen, _ in choices] == [("two",)] * 5
        assert table.calls.count("read_circuits") == 1
        await tracker.aclose()

    run(body())


def test_a_transition_waits_for_a_hanging_table_once_and_is_kept_in_this_instance() -> None:
    table, clock = MemoryTable(), Clock(now=0.0)
    tracker, route = on_table(table, clock, budget_s=0.05)
    one = route.targets[0]

    async def body() -> None:
        gate = await tracker.gate(route, route.targets, explicit=False)
        table.hanging = True
        permit = await tracker.acquire(route, one, gate)
        assert permit is not None
        started = time.monotonic()
        await tracker.release(route, one, permit, Verdict.FAILURE)  # opens the circuit: written
        assert 0.04 <= time.monotonic() - started < 1.0
        assert (await timed_choice(tracker, route))[0] == ("two",)  # open here all the same
        started = time.monotonic()
        assert await tracker.reset("one")  # another transition: the table is backed off
        assert time.monotonic() - started < 0.04
        assert table.calls.count("write_circuit") == 1  # the reset was not written
        table.answer()
        await tracker.aclose()

    run(body())


@pytest.mark.timeout(120)
def test_server_mode_routes_as_fast_with_a_hanging_state_table(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Backend() as one, Backend() as two:
        config = circuits_and_health(tmp_path, one, two)
        healthy, hanging = healthy_then_hanging(server_mode, config, {}, monkeypatch)
    assert_never_held_up(healthy, hanging)
    assert_circuits_and_health_were_tried_then_backed_off(hanging)


@pytest.mark.timeout(120)
def test_the_lambda_handler_routes_as_fast_with_a_hanging_state_table(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lambda_adapter: Callable[..., Any]
) -> None:
    with Backend() as one, Backend() as two:
        config = circuits_and_health(tmp_path, one, two)
        healthy, hanging = healthy_then_hanging(lambda_mode(lambda_adapter), config, {}, monkeypatch)
    assert_never_held_up(healthy, hanging)
    assert_circuits_and_health_were_tried_then_backed_off(hanging)


# -- rate-limit buckets and API keys on the same hanging table ----------------------------------

KEY = "erk_hang-test-config-key"


def buckets_and_keys(tmp_path: Path, backend: Backend) -> str:
    """A route whose every request takes a token from a shared bucket (the state table) and whose
    unknown API keys are looked up in the state table's key store."""
    config_key = {"id": "config", "hash": hashlib.sha256(KEY.encode()).hexdigest()}
    route = {
        "prefix": "/api",
        "target": backend.url,
        "api_keys": {"required": True, "keys": [config_key]},
        "rateLimit": {"requestsPerWindow": 1_000_000, "windowSeconds": 1, "shared": True},
    }
    return write_config(tmp_path / "config.json", {"routes": [route]})


def key_for(i: int) -> str:
    """Even requests carry the config's key (200), odd ones a key only the table could know (401)."""
    return KEY if i % 2 == 0 else f"erk_unknown-{i}"


@contextmanager
def keyed_server_mode(config: str, env: dict[str, str]) -> Iterator[Send]:
    with RouterServer(config, env) as router, router.client() as http:
        yield lambda i: http.get(f"/api/{i}", headers={"x-api-key": key_for(i)}).status_code
        asyncio.run_coroutine_threadsafe(router.app.aclose_state(), router.loop).result(5)


def keyed_lambda_mode(lambda_adapter: Callable[..., Any]) -> Mode:
    @contextmanager
    def mode(config: str, env: dict[str, str]) -> Iterator[Send]:
        handler = lambda_adapter(config, **env)
        yield lambda i: int(
            handler(function_url_event("GET", f"/api/{i}", headers={"x-api-key": key_for(i)}), None)[
                "statusCode"
            ]
        )
        handler.loop.run_until_complete(handler.router.aclose_state())

    return mode


def assert_keys_and_buckets_never_held_up(healthy: Run, hanging: Run) -> None:
    expected = [200 if i % 2 == 0 else 401 for i in range(len(hanging.statuses))]
    assert hanging.statuses == expected  # buckets fail open (`allow`), unknown keys fail closed
    assert hanging.median_ms <= healthy.median_ms + MEDIAN_MARGIN_MS
    assert all(i < FIRST_FEW for i in hanging.waited), hanging.summary()
    assert len(hanging.latencies_ms) >= HANG_SECONDS / PACE_S / 2
    assert {"UpdateItem", "GetItem"} <= set(hanging.operations)  # buckets and keys were tried
    assert len(hanging.operations) < len(hanging.latencies_ms) / 5  # then backed off


@pytest.mark.timeout(120)
def test_server_mode_limits_and_checks_keys_as_fast_with_a_hanging_state_table(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Backend() as backend:
        config = buckets_and_keys(tmp_path, backend)
        healthy, hanging = healthy_then_hanging(keyed_server_mode, config, {}, monkeypatch)
    assert_keys_and_buckets_never_held_up(healthy, hanging)


@pytest.mark.timeout(120)
def test_the_lambda_handler_limits_and_checks_keys_as_fast_with_a_hanging_state_table(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lambda_adapter: Callable[..., Any]
) -> None:
    with Backend() as backend:
        config = buckets_and_keys(tmp_path, backend)
        healthy, hanging = healthy_then_hanging(keyed_lambda_mode(lambda_adapter), config, {}, monkeypatch)
    assert_keys_and_buckets_never_held_up(healthy, hanging)
