"""A flip reaches a whole fleet in seconds, without multiplying SSM reads (issue 14).

Fifty router instances — separate Lambda adapters, each with its own event loop, config cache and
upstream client, as fifty Lambda instances have — serve a load loop, with moto's SSM and DynamoDB
on 127.0.0.1 and two real backends. The config is seed 003's priority format; the flip swaps the
providers' order. The test measures when each instance first routes by the new order, how many
GetParameter calls the change cost and how they spread, and how often the instances read the
state table's version item.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from edge_router.aws import clients
from edge_router.aws.state_table import CLIENT_SETTINGS
from edge_router.testing import function_url_event
from support import Backend, HangingServer, dynamodb_table

PARAM = "/edge-router/fleet-config"
TABLE = "edge-router-fleet-state"
INSTANCES = 50
CHECK_SECONDS = 5.0
WITHIN_S = 10.0


def document(priority: str, first: Backend, second: Backend) -> str:
    return json.dumps({"global_priority": priority, "providers": {"1": first.url, "2": second.url}})


@dataclass
class Calls:
    """Every AWS call the routers made, by operation, with its time."""

    times: dict[str, list[float]] = field(default_factory=dict)

    def hook(self, operation: str) -> Callable[..., None]:
        def record(**_: Any) -> None:
            self.times.setdefault(operation, []).append(time.monotonic())

        return record

    def since(self, operation: str, start: float) -> list[float]:
        return [t for t in self.times.get(operation, []) if t >= start]


@pytest.fixture
def calls(aws: str) -> Iterator[Calls]:
    """Counts the routers' GetParameter and GetItem calls (their clients are the process's own)."""
    seen = Calls()
    clients.clear()
    ssm = clients.client("ssm", settings=clients.CONFIG_READ_SETTINGS)  # the config source's client
    ssm.meta.events.register("before-call.ssm.GetParameter", seen.hook("GetParameter"))
    dynamodb = clients.resource("dynamodb", settings=CLIENT_SETTINGS).meta.client
    dynamodb.meta.events.register("before-call.dynamodb.GetItem", seen.hook("GetItem"))
    yield seen


def fleet(lambda_adapter: Any, count: int = INSTANCES, **env: str) -> list[Any]:
    settings = {"STATE_TABLE": TABLE, "CONFIG_CHECK_SECONDS": str(CHECK_SECONDS), **env}
    return [lambda_adapter(f"ssm:{PARAM}", **settings) for _ in range(count)]


def serve_until_all_follow(instances: list[Any], new_source: str, since: float) -> dict[int, float]:
    """The load loop: every instance in turn, until each routes to `new_source` (or time is up);
    returns when each first did, in seconds after `since`."""
    followed: dict[int, float] = {}
    event = function_url_event("GET", "/api/x")
    deadline = since + WITHIN_S + 10
    while len(followed) < len(instances) and time.monotonic() < deadline:
        for index, instance in enumerate(instances):
            answer = instance(event, None)
            if index not in followed and answer["headers"].get("x-backend-source") == new_source:
                followed[index] = time.monotonic() - since
        time.sleep(0.01)
    return followed


def warm(instances: list[Any], source: str) -> None:
    event = function_url_event("GET", "/api/x")
    assert {instance(event, None)["headers"]["x-backend-source"] for instance in instances} == {source}


def report(label: str, followed: dict[int, float], count: int = INSTANCES) -> str:
    times = sorted(followed.values())
    p90 = times[int(len(times) * 0.9) - 1]
    return (
        f"{label}: {len(times)} of {count} followed; min {times[0]:.1f} s, "
        f"median {statistics.median(times):.1f} s, p90 {p90:.1f} s, max {times[-1]:.1f} s"
    )


def test_a_change_event_reaches_every_instance_within_10_s(
    aws: str, calls: Calls, lambda_adapter: Any
) -> None:
    with Backend() as first, Backend() as second:
        dynamodb_table(TABLE)
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=PARAM, Value=document("12", first, second), Type="String")
        instances = fleet(lambda_adapter)
        warm(instances, first.url)
        reads_before = len(calls.times.get("GetParameter", []))
        assert reads_before == INSTANCES  # one each, at its first request

        flipped = time.monotonic()
        ssm.put_parameter(Name=PARAM, Value=document("21", first, second), Type="String", Overwrite=True)
        event = {"source": "aws.ssm", "detail-type": "Parameter Store Change", "detail": {"name": PARAM}}
        handled = instances[0](event, None)  # EventBridge invokes one instance
        followed = serve_until_all_follow(instances, second.url, flipped)

    print(report("change event", followed))
    assert handled == {"handled": True, "version": 2, "signalled": True}
    assert len(followed) == INSTANCES, f"{INSTANCES - len(followed)} instances never followed"
    assert max(followed.values()) <= WITHIN_S
    reads = calls.since("GetParameter", flipped)
    assert len(reads) <= INSTANCES  # one per instance that served traffic, the event's included
    assert max(reads) - min(reads) >= 2.0  # spread out, not one burst
    checks = calls.since("GetItem", flipped)
    elapsed = time.monotonic() - flipped
    assert len(checks) <= INSTANCES * (elapsed / CHECK_SECONDS + 1)


def test_edge_router_flip_bumps_the_version_itself(
    aws: str, calls: Calls, lambda_adapter: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_router.cli import main

    with Backend() as first, Backend() as second:
        dynamodb_table(TABLE)
        boto3.client("ssm").put_parameter(Name=PARAM, Value=document("12", first, second), Type="String")
        instances = fleet(lambda_adapter)
        warm(instances, first.url)
        monkeypatch.setenv("STATE_TABLE", TABLE)
        flipped = time.monotonic()
        assert main(["flip", "*", "21", "--config", f"ssm:{PARAM}"]) == 0
        flip_done = time.monotonic()  # the CLI's own reads and write are behind this
        followed = serve_until_all_follow(instances, second.url, flipped)

    print(report("edge-router flip", followed))
    assert len(followed) == INSTANCES
    assert max(followed.values()) <= WITHIN_S
    assert len(calls.since("GetParameter", flip_done)) <= INSTANCES


def test_with_the_state_table_unreachable_instances_fall_back_to_the_ttl(
    aws: str, lambda_adapter: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ttl = 8.0
    with Backend() as first, Backend() as second, HangingServer() as hanging:
        dynamodb_table(TABLE)
        boto3.client("ssm").put_parameter(Name=PARAM, Value=document("12", first, second), Type="String")
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", hanging.url)  # the table accepts and never answers
        clients.clear()
        instances = fleet(lambda_adapter, 10, CONFIG_TTL_SECONDS=str(ttl))
        event = function_url_event("GET", "/api/x")
        for instance in instances:
            started = time.monotonic()
            assert instance(event, None)["headers"]["x-backend-source"] == first.url
            assert time.monotonic() - started < 1.0  # at most the table's 250 ms budget, once
        flipped = time.monotonic()
        boto3.client("ssm").put_parameter(
            Name=PARAM, Value=document("21", first, second), Type="String", Overwrite=True
        )
        followed = serve_until_all_follow(instances, second.url, flipped)

    print(report("state table unreachable", followed, len(instances)))
    assert len(followed) == len(instances)
    assert max(followed.values()) <= ttl + 3
    warned = [r for r in caplog.records if "cannot check" in r.getMessage()]
    assert 1 <= len(warned) <= len(instances)  # once per instance, not once per check
