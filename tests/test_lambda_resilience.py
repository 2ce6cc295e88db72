"""Issue 8 on Lambda: a deadline that fits the invocation, and fleet-shared backend state — health
written by the scheduled event and circuits written on transitions to the state table (moto's
DynamoDB over real HTTP), honoured by other instances (separate adapters, their own caches)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from edge_router.config.model import BreakerPolicy, Route, Target
from edge_router.resilience.breaker import CircuitState, Verdict
from edge_router.resilience.dynamodb_store import DynamoDBStateStore
from edge_router.resilience.tracker import BackendTracker, Gate
from support import (
    Backend,
    InvocationContext,
    RawBackend,
    Reply,
    dynamodb_table,
    function_url_event,
    read_head,
    run,
    write_config,
)

SCHEDULE = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}


def hang(conn: socket.socket) -> None:
    read_head(conn)
    conn.settimeout(10)
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


def test_the_attempts_end_before_the_invocation_and_the_answer_is_the_routers_504(
    tmp_path: Path, lambda_adapter: Any
) -> None:
    with RawBackend(hang) as stuck, RawBackend(hang) as also_stuck:
        config = write_config(
            tmp_path / "c.json",
            {"routes": [{"prefix": "/api", "targets": [stuck.url, also_stuck.url], "timeout_ms": 25000}]},
        )
        handler = lambda_adapter(config)
        started = time.monotonic()
        answer = handler(function_url_event("GET", "/api/x"), InvocationContext(seconds=1.5))
        took = time.monotonic() - started
    assert answer["statusCode"] == 504
    assert json.loads(answer["body"])["error"] == "Gateway Timeout"
    assert answer["headers"]["access-control-allow-origin"] == "*"
    assert 0.8 < took < 1.4  # 1.5 s minus the 500 ms margin, not 2 x 25 s


def test_a_scheduled_round_shares_health_and_another_instance_routes_around_the_unhealthy(
    aws: str, tmp_path: Path, lambda_adapter: Any
) -> None:
    dynamodb_table("edge-router-state")
    sick = Reply(status=503, body=b"{}")

    def responder(seen: Any) -> Reply:
        return sick if seen.target.startswith("/health") else Reply()

    with Backend(responder) as bad, Backend() as good:
        config = write_config(
            tmp_path / "c.json",
            {
                "backends": {"bad": {"url": bad.url}, "good": {"url": good.url}},
                "health_checks": {"unhealthy_threshold": 1, "healthy_threshold": 1},
                "routes": [{"prefix": "/api", "targets": ["bad", "good"]}],
            },
        )
        scheduler = lambda_adapter(config, STATE_TABLE="edge-router-state")
        answer = scheduler(SCHEDULE, None)
        assert answer["health"] == {"bad": "unhealthy", "good": "healthy"}
        item = boto3.resource("dynamodb").Table("edge-router-state").get_item(Key={"id": "er#health"})["Item"]
        assert item["backends"]["bad"]["health"] == "unhealthy" and item["expires_at"] > time.time()

        other = lambda_adapter(config, STATE_TABLE="edge-router-state")  # its own caches
        served = len([s for s in bad.seen if not s.target.startswith("/health")])
        for i in range(3):
            response = other(function_url_event("GET", f"/api/{i}"), None)
            assert response["headers"]["x-backend-source"] == "good"
        assert len([s for s in bad.seen if not s.target.startswith("/health")]) == served


def test_a_circuit_opened_by_one_instance_is_honoured_by_another(
    aws: str, tmp_path: Path, lambda_adapter: Any
) -> None:
    dynamodb_table("edge-router-state")
    with Backend(lambda seen: Reply(status=500, body=b"down")) as bad, Backend() as good:
        config = write_config(
            tmp_path / "c.json",
            {
                "routes": [
                    {
                        "prefix": "/api",
                        "targets": [bad.url, good.url],
                        "circuitBreaker": {"failureThreshold": 2, "timeout": 30000},
                    }
                ]
            },
        )
        first = lambda_adapter(config, STATE_TABLE="edge-router-state")
        other = lambda_adapter(config, STATE_TABLE="edge-router-state")
        assert other(function_url_event("GET", "/api/warm"), None)["statusCode"] == 200  # other is warm
        for i in range(2):
            first(function_url_event("GET", f"/api/{i}"), None)
        item = (
            boto3.resource("dynamodb")
            .Table("edge-router-state")
            .get_item(Key={"id": f"er#circuit#{bad.url}"})
        )
        assert item["Item"]["state"] == "OPEN"
        time.sleep(5.1)  # the other instance reads circuits through a cache of at most 5 s
        contacts = len(bad.seen)
        response = other(function_url_event("GET", "/api/after"), None)
        assert response["headers"]["x-backend-source"] == good.url
        assert len(bad.seen) == contacts  # honoured: the open circuit was not contacted


@pytest.mark.usefixtures("atomic_puts")  # DynamoDB's conditional PutItem is atomic; moto's is not
def test_two_instances_tripping_at_once_lose_no_transition(aws: str) -> None:
    dynamodb_table("edge-router-state")
    policy = BreakerPolicy(failure_threshold=2, open_timeout_s=30)
    target = Target(origin="http://b", host_header="b", base_path="", source="b")
    route = Route(prefix="/", targets=(target,), timeout_ms=None, breaker=policy)
    for _ in range(10):
        trackers = [BackendTracker(store=DynamoDBStateStore("edge-router-state")) for _ in range(2)]
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def trip(tracker: BackendTracker, barrier: threading.Barrier, errors: list[BaseException]) -> None:
            try:
                permit = run(tracker.acquire(route, target, Gate((target,))))
                assert permit is not None
                run(tracker.release(route, target, permit, Verdict.FAILURE))
                second = run(tracker.acquire(route, target, Gate((target,))))
                assert second is not None
                barrier.wait(5)
                run(tracker.release(route, target, second, Verdict.FAILURE))  # both trip now
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=trip, args=(tracker, barrier, errors)) for tracker in trackers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert errors == []
        table = boto3.resource("dynamodb").Table("edge-router-state")
        item = table.get_item(Key={"id": "er#circuit#b"}, ConsistentRead=True)["Item"]
        assert (item["state"], int(item["version"])) == ("OPEN", 1)  # one write won, nothing overwrote it
        assert [t.breakers["b"].current(time.time()) for t in trackers] == [CircuitState.OPEN] * 2
        table.delete_item(Key={"id": "er#circuit#b"})


def test_backends_lists_the_dynamodb_registry_too(aws: str, tmp_path: Path, lambda_adapter: Any) -> None:
    table = dynamodb_table("edge-router-backends")
    table.put_item(
        Item={"id": "backend:ruby-rails", "value": '{"url": "https://rails.example", "name": "Rails"}'}
    )
    config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/", "select_by_header": "x-backend"}]})
    handler = lambda_adapter(
        config, BACKENDS_TABLE="edge-router-backends", BACKEND_LOCAL_URL="http://127.0.0.1:9"
    )
    listed = json.loads(handler(function_url_event("GET", "/backends"), None)["body"])["backends"]
    assert [(b["id"], b["listed_by"], b["name"]) for b in listed] == [
        ("local", "env", "local"),
        ("ruby-rails", "dynamodb", "Rails"),
    ]
