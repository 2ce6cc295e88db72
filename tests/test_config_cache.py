"""ConfigCache: TTL on an injected monotonic clock, last-good fallback, single flight, no loop blocking."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from edge_router.config.cache import ConfigCache
from edge_router.config.load import load_config
from edge_router.config.model import RouterConfig
from edge_router.exceptions import ConfigInvalidError, ConfigSourceError
from support import Clock, run


def config_for(name: str) -> RouterConfig:
    return load_config({"routes": [{"prefix": f"/{name}", "target": "http://127.0.0.1:9"}]}, {})


class Source:
    """A scripted source: each read returns (or raises) the next item."""

    def __init__(self, *items: RouterConfig | Exception, delay: float = 0.0) -> None:
        self.items = list(items)
        self.reads = 0
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self) -> RouterConfig:
        with self.lock:
            self.reads += 1
            item = self.items.pop(0) if len(self.items) > 1 else self.items[0]
        if self.delay:
            time.sleep(self.delay)
        if isinstance(item, Exception):
            raise item
        return item


def cache(
    source: Callable[[], RouterConfig], clock: Clock, ttl: float = 100, retry: float = 60
) -> ConfigCache:
    return ConfigCache(source, source="test", ttl_seconds=ttl, retry_seconds=retry, clock=clock)


def prefix(config: RouterConfig | None) -> str:
    assert config is not None
    return config.routes[0].prefix


def test_within_ttl_no_read() -> None:
    clock, source = Clock(), Source(config_for("a"))
    c = cache(source, clock)

    async def scenario() -> None:
        assert prefix(await c.get()) == "/a"
        clock.now += 99
        for _ in range(50):
            await c.get()

    run(scenario())
    assert source.reads == 1


def test_expired_serves_last_good_while_refreshing_then_switches() -> None:
    clock, source = Clock(), Source(config_for("a"), config_for("b"))
    c = cache(source, clock)

    async def scenario() -> list[str]:
        seen = [prefix(await c.get())]
        clock.now += 101
        seen.append(prefix(await c.get()))  # stale while the refresh runs in a thread
        await c.refresh()
        seen.append(prefix(await c.get()))
        return seen

    assert run(scenario()) == ["/a", "/a", "/b"]
    assert source.reads == 2


@pytest.mark.parametrize(
    "failure",
    [
        ConfigSourceError("ssm down"),
        ConfigInvalidError(["routes[0].target: bad"]),
        RuntimeError("bug in a source"),
    ],
)
def test_failed_refresh_keeps_last_good_and_waits_before_retrying(failure: Exception) -> None:
    clock, source = Clock(), Source(config_for("a"), failure, failure, config_for("c"))
    c = cache(source, clock, ttl=100, retry=60)

    async def scenario() -> None:
        await c.get()
        clock.now += 101
        assert prefix(await c.refresh()) == "/a"  # refresh failed: last good kept
        assert c.status().last_error
        for _ in range(20):  # no read on every request while failing
            assert prefix(await c.get()) == "/a"
        assert source.reads == 2
        clock.now += 61  # retried after the retry interval
        await c.refresh()
        assert source.reads == 3
        clock.now += 61
        assert prefix(await c.refresh()) == "/c"
        assert c.status().last_error is None

    run(scenario())


def test_no_config_ever_loaded_reports_none_with_reason() -> None:
    clock = Clock()
    c = cache(Source(ConfigSourceError("cannot read /nope.json")), clock)
    assert run(c.get()) is None
    assert c.status().last_error == "cannot read /nope.json"


def test_concurrent_requests_trigger_one_fetch() -> None:
    clock, source = Clock(), Source(config_for("a"), delay=0.2)
    c = cache(source, clock)

    async def scenario() -> list[RouterConfig | None]:
        return await asyncio.gather(*(c.get() for _ in range(50)))

    results = run(scenario())
    assert source.reads == 1
    assert all(prefix(r) == "/a" for r in results)


def test_slow_fetch_never_blocks_the_event_loop() -> None:
    clock, source = Clock(), Source(config_for("a"), config_for("b"), delay=0.5)
    c = cache(source, clock)

    async def scenario() -> int:
        await c.get()
        clock.now += 101
        refresh = asyncio.ensure_future(c.refresh())
        ticks, served = 0, []
        while not refresh.done():  # other tasks keep running while boto3 would block
            await asyncio.sleep(0.01)
            ticks += 1
            served.append(prefix(await c.get()))
        # The old config until the new one is in, then only the new one: never back. (The swap
        # may come one loop turn before `refresh` reports done: that turn may serve either.)
        assert served == sorted(served) and set(served) <= {"/a", "/b"}
        assert served[0] == "/a" and prefix(await c.get()) == "/b"
        return ticks

    assert run(scenario()) >= 10


def test_with_no_config_yet_a_failed_read_is_retried_at_once_and_soon_after() -> None:
    clock = Clock()
    # Two source errors (a throttled SSM, say) and then the config: the first request gets it.
    source = Source(ConfigSourceError("throttled"), ConfigSourceError("throttled"), config_for("a"))
    c = ConfigCache(source, source="test", ttl_seconds=100, retry_seconds=60, clock=clock, jitter=lambda: 0.5)
    assert prefix(run(c.get())) == "/a"
    assert source.reads == 3

    always = Source(ConfigSourceError("throttled"))
    c = ConfigCache(always, source="test", ttl_seconds=100, retry_seconds=60, clock=clock, jitter=lambda: 0.5)
    assert run(c.get()) is None
    assert always.reads == 3
    clock.now += 0.9
    run(c.get())
    assert always.reads == 3  # not on every request ...
    clock.now += 0.2
    run(c.get())
    assert always.reads == 6  # ... but a second later, not a minute later
    clock.now += 1.9
    run(c.get())
    assert always.reads == 6  # the pause doubles: 1 s, 2 s, 4 s ... up to retry_seconds
    clock.now += 0.2
    run(c.get())
    assert always.reads == 9


def test_an_invalid_document_is_not_read_again_at_once() -> None:
    clock, source = Clock(), Source(ConfigInvalidError(["routes: is required"]))
    c = ConfigCache(source, source="test", ttl_seconds=100, retry_seconds=60, clock=clock, jitter=lambda: 0.5)
    assert run(c.get()) is None
    assert source.reads == 1  # re-reading it within the same second cannot make it valid
