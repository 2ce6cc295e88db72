"""Config change checks (issue 14): the cache asks the source's version beside the requests and
re-reads only when it changed; the version item in the state table; the SSM change event; a file
config that changes under a running server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import boto3
import pytest

from edge_router.aws.config_version import bump_config_version, read_config_version
from edge_router.config.cache import ConfigCache, changed
from edge_router.config.load import load_config
from edge_router.config.model import RouterConfig
from edge_router.exceptions import StateStoreError
from support import Backend, Clock, RouterServer, dynamodb_table, run, wait_until, write_config


def config_for(name: str) -> RouterConfig:
    return load_config({"routes": [{"prefix": f"/{name}", "target": "http://127.0.0.1:9"}]}, {})


class Versioned:
    """A scripted source: `content` and `version` are what it holds now."""

    def __init__(self, content: str, version: Hashable | None) -> None:
        self.content, self.version = content, version
        self.reads = self.checks = 0
        self.failing = False

    def load(self) -> tuple[RouterConfig, Hashable | None]:
        self.reads += 1
        return config_for(self.content), self.version

    def version_of(self) -> Hashable | None:
        self.checks += 1
        if self.failing:
            raise StateStoreError("the table does not answer")
        return self.version


def cache(source: Versioned, clock: Clock, *, ttl: float = 1000.0, spread: float = 0.0) -> ConfigCache:
    return ConfigCache(
        lambda: source.load()[0],
        source="test",
        ttl_seconds=ttl,
        clock=clock,
        jitter=lambda: 1.0,
        load_versioned=source.load,
        version=source.version_of,
        check_seconds=5.0,
        reload_spread_s=spread,
    )


async def settle() -> None:
    for _ in range(20):  # let the background check (a worker thread) and its re-read finish
        await asyncio.sleep(0.01)


def prefix(config: RouterConfig | None) -> str:
    assert config is not None
    return config.routes[0].prefix


@pytest.mark.parametrize(
    ("current", "loaded", "expected"),
    [
        (5, 4, True),
        (4, 4, False),
        (3, 4, False),  # the signal lags behind what was read: no change
        (None, 4, False),  # the source cannot tell: only the TTL
        ((2, 10), (1, 10), True),  # a file's (mtime, size)
        ((1, 10), (1, 10), False),
        (7, None, True),
    ],
)
def test_what_counts_as_a_change(current: Hashable | None, loaded: Hashable | None, expected: bool) -> None:
    assert changed(current, loaded) is expected


def test_a_check_runs_at_most_every_check_seconds_and_reloads_only_on_a_change() -> None:
    async def scenario() -> None:
        clock, source = Clock(), Versioned("a", 1)
        c = cache(source, clock)
        assert prefix(await c.get()) == "/a"
        for _ in range(50):  # many requests within 5 s: no check at all
            await c.get()
        assert source.checks == 0
        clock.now += 5.1
        assert prefix(await c.get()) == "/a"  # answered at once; the check runs beside
        await settle()
        assert (source.checks, source.reads) == (1, 1)  # unchanged: no re-read
        source.content, source.version = "b", 2
        clock.now += 5.1
        assert prefix(await c.get()) == "/a"  # still the old one for this request
        await settle()
        assert (source.checks, source.reads) == (2, 2)
        assert prefix(await c.get()) == "/b"
        assert c.status().version == 2

    run(scenario())


def test_a_failing_check_is_logged_once_and_the_ttl_still_applies(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        clock, source = Clock(), Versioned("a", 1)
        c = cache(source, clock, ttl=30.0)
        await c.get()
        source.failing = True
        for _ in range(4):
            clock.now += 5.1
            await c.get()
            await settle()
        warnings = [r for r in caplog.records if "cannot check" in r.getMessage()]
        assert len(warnings) == 1
        source.content, source.version = "b", 2
        clock.now += 30  # the TTL brings the change
        await c.get()
        await settle()
        assert prefix(await c.get()) == "/b"

    run(scenario())


def test_a_request_waiting_for_the_first_config_waits_until_its_deadline_only() -> None:
    def hanging() -> RouterConfig:
        time.sleep(2)
        return config_for("late")

    async def scenario() -> None:
        c = ConfigCache(hanging, source="test", ttl_seconds=100)
        started = time.monotonic()
        assert await c.get(deadline=time.monotonic() + 0.3) is None
        assert time.monotonic() - started < 0.6

    run(scenario())


# --- the version item, the change event ---------------------------------------------------------


def test_the_version_item_only_grows(aws: str) -> None:
    dynamodb_table("versions")
    assert read_config_version("versions") is None
    assert bump_config_version("versions", 3, "ssm:/c") is True
    assert bump_config_version("versions", 2, "ssm:/c") is False  # a late bumper cannot go back
    assert bump_config_version("versions", 3, "ssm:/c") is False
    assert read_config_version("versions") == 3
    item = boto3.resource("dynamodb").Table("versions").get_item(Key={"id": "er#config-version"})["Item"]
    assert (item["source"], int(item["version"])) == ("ssm:/c", 3)


def test_the_change_event_reads_once_signals_the_fleet_and_loads(aws: str, lambda_adapter: Any) -> None:
    param = "/edge-router/event-config"
    with Backend() as first, Backend() as second:
        dynamodb_table("events-state")
        ssm = boto3.client("ssm")
        ssm.put_parameter(
            Name=param, Value=json.dumps({"routes": [{"prefix": "/", "target": first.url}]}), Type="String"
        )
        handler = lambda_adapter(f"ssm:{param}", STATE_TABLE="events-state")
        from edge_router.testing import function_url_event

        assert handler(function_url_event("GET", "/x"), None)["headers"]["x-backend-source"] == first.url
        ssm.put_parameter(
            Name=param,
            Value=json.dumps({"routes": [{"prefix": "/", "target": second.url}]}),
            Type="String",
            Overwrite=True,
        )
        event = {"source": "aws.ssm", "detail-type": "Parameter Store Change", "detail": {"name": param}}
        assert handler(event, None) == {"handled": True, "version": 2, "signalled": True}
        assert read_config_version("events-state") == 2
        answer = handler(function_url_event("GET", "/x"), None)
        health = json.loads(handler(function_url_event("GET", "/health"), None)["body"])
        other = {"source": "aws.ssm", "detail-type": "Parameter Store Change", "detail": {"name": "/another"}}
        assert handler(other, None)["handled"] is False
    assert answer["headers"]["x-backend-source"] == second.url  # this instance loaded it already
    assert health["config"]["version"] == 2


def test_a_file_config_reloads_when_its_file_changes(tmp_path: Path) -> None:
    with Backend() as first, Backend() as second:
        path = tmp_path / "config.json"
        write_config(path, {"routes": [{"prefix": "/", "target": first.url}]})
        with (
            RouterServer(str(path), env={"CONFIG_CHECK_SECONDS": "0.5"}) as router,
            router.client() as client,
        ):
            assert client.get("/x").headers["x-backend-source"] == first.url
            write_config(path, {"routes": [{"prefix": "/", "target": second.url}]})
            changed_at = time.monotonic()

            def follows() -> bool:
                return client.get("/x").headers["x-backend-source"] == second.url

            wait_until(follows, timeout=5)
            took = time.monotonic() - changed_at
            version = client.get("/health").json()["config"]["version"]
    assert took < 3  # one check (0.5 s) and a re-read, not the TTL (12 h)
    assert isinstance(version, str) and version
