"""The in-process config cache: TTL on a monotonic clock, last-good fallback, one fetch at a time.

* Within the TTL a request gets the cached config with no I/O and no await on I/O.
* With no config loaded yet, requests wait for the (single) fetch.
* Once the TTL has passed, the first request starts a refresh in a worker thread and every
  request keeps being served the last good config meanwhile (stale-while-revalidate): a slow
  SSM call never holds a request up, and boto3's blocking I/O never runs on the event loop.
* A failed refresh keeps the last good config, logs why, and is retried after at most
  `retry_seconds` (never on every request).
* While no config has ever loaded, a failed read is retried at once, twice, after a short jittered
  pause (a burst of cold starts can meet SSM's throttling), and after that the next read comes
  after 1, 2, 4 ... seconds (jittered, at most `retry_seconds`), not after a whole minute of 503s.
* `refresh()` (used by POST /admin/cache-flush) drops the cached copy's freshness and waits for
  a new read, so the caller learns at once whether the source is valid.
* `on_loaded(config)` runs once for each config loaded, on the event loop, before any request
  is routed with it: the one hook for what a new config changes elsewhere (the tracker's policies).
* Change checks (`version`, every `check_seconds`): a cheap look at the source's version (the
  state table's `er#config-version` for SSM, a file's mtime and size) runs beside the request
  that finds it due, never in front of it; a frozen Lambda instance simply resumes it at its next
  invocation. Only a changed version starts a re-read, after a random delay of up to the source's
  `reload_spread_s`, so that a fleet does not read SSM in one burst. A check that fails is logged
  once per outage and tried again after `check_seconds`; the TTL stays the backstop.
* `get(deadline=...)`: a request that waits for the first config waits at most until `deadline`
  (a time.monotonic() value: on Lambda, the invocation's) and then gets None, the contract's 503.
* A failure is kept twice: `last_error`, the full reason (it may quote the source: a YAML line, a
  URL with credentials), and `last_error_summary`, only its kind, which anyone may be shown.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..exceptions import ConfigError, ConfigInvalidError, ConfigSourceError
from ..observability.logs import Throttle
from .model import RouterConfig

logger = logging.getLogger("edge_router.config")

FIRST_READ_ATTEMPTS = 3
FIRST_READ_PAUSE_S = 0.1


@dataclass(frozen=True, slots=True)
class CacheStatus:
    config: RouterConfig | None
    loaded_at: str | None  # ISO-8601, wall clock, for humans
    last_error: str | None
    source: str
    last_error_summary: str | None = None  # the kind of failure only: safe for anonymous callers
    version: Hashable | None = None  # the source's version this config was read at


def error_summary(exc: Exception) -> str:
    """What kind of failure `exc` is, in words that quote nothing from the config or its source."""
    if isinstance(exc, ConfigInvalidError):
        count = len(exc.problems)
        return f"the config is not valid ({count} problem{'' if count == 1 else 's'})"
    if isinstance(exc, ConfigSourceError):
        return "the config source could not be read"
    return "the config could not be loaded (unexpected error)"


Loader = Callable[[], RouterConfig]
VersionedLoader = Callable[[], tuple[RouterConfig, Hashable | None]]
VersionOf = Callable[[], Hashable | None]


def changed(current: Hashable | None, loaded: Hashable | None) -> bool:
    """Whether the source holds another config than the one loaded. Integer versions (SSM's, a
    DynamoDB item's) only grow: a signal that lags behind what was read is no change."""
    if current is None:
        return False
    if isinstance(current, int) and isinstance(loaded, int):
        return current > loaded
    return current != loaded


class ConfigCache:
    def __init__(
        self,
        load: Loader,
        *,
        source: str,
        ttl_seconds: float,
        retry_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        on_loaded: Callable[[RouterConfig], None] | None = None,
        load_versioned: VersionedLoader | None = None,
        version: VersionOf | None = None,
        check_seconds: float = 5.0,
        reload_spread_s: float = 0.0,
        first_wait_s: float | None = None,
    ) -> None:
        self._load = load
        self._load_versioned = load_versioned or (lambda: (load(), None))
        self._version_of = version
        self._check_seconds = check_seconds if version is not None else float("inf")
        self._reload_spread = reload_spread_s
        self._first_wait_s = first_wait_s  # a request's wait for the first config, without a deadline
        self._late = Throttle(10.0)
        self._on_loaded = on_loaded
        self._source = source
        self._ttl = ttl_seconds
        self._retry = min(retry_seconds, ttl_seconds)
        self._clock = clock
        self._config: RouterConfig | None = None
        self._version: Hashable | None = None
        self._expires_at = float("-inf")  # the TTL (or the retry after a failure)
        self._check_at = float("inf")  # the next change check
        self._fresh_until = float("-inf")  # min of the two: the one comparison per request
        self._loaded_at: str | None = None
        self._last_error: str | None = None
        self._last_error_summary: str | None = None
        self._inflight: asyncio.Future[RouterConfig | None] | None = None
        self._checking: asyncio.Future[None] | None = None
        self._check_failing = False
        self._jitter = jitter
        self._failures_without_config = 0
        self.fetches = 0
        self.checks = 0

    def fresh(self) -> RouterConfig | None:
        """The config when it needs no read or check now (the common case, without a coroutine);
        else None, and `get()` decides."""
        return self._config if self._clock() < self._fresh_until else None

    async def get(self, deadline: float | None = None) -> RouterConfig | None:
        """The config to route this request with (None only when none was ever loaded, or when
        the first read did not finish before `deadline`)."""
        now = self._clock()
        if now < self._fresh_until:
            return self._config
        if self._config is None:
            if deadline is None and self._first_wait_s is not None:
                deadline = time.monotonic() + self._first_wait_s
            if deadline is None:
                return await self.refresh()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    return await self.refresh()
            except TimeoutError:
                if self._late.ready():
                    logger.warning(
                        "config: %s not read yet (the first read is still under way, each call "
                        "bounded); answering 503 meanwhile",
                        self._source,
                    )
                return None
        if now >= self._expires_at:
            self._start_refresh()
        else:
            self._start_check(now)
        return self._config

    async def refresh(self) -> RouterConfig | None:
        """Read the source now (joining a read already under way) and wait for the outcome."""
        return await asyncio.shield(self._start_refresh())

    async def adopt(self, load: Loader, version: Hashable | None) -> RouterConfig | None:
        """Load a config the caller already read (a change event brought it), as at `version`."""
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch(load, version))
        return await asyncio.shield(self._inflight)

    @property
    def current(self) -> RouterConfig | None:
        """The config in service now (no I/O, no refresh), or None before the first good load."""
        return self._config

    def status(self) -> CacheStatus:
        return CacheStatus(
            self._config,
            self._loaded_at,
            self._last_error,
            self._source,
            self._last_error_summary,
            self._version,
        )

    def _schedule(self, *, expires_at: float | None = None, check_at: float | None = None) -> None:
        if expires_at is not None:
            self._expires_at = expires_at
        if check_at is not None:
            self._check_at = check_at
        self._fresh_until = min(self._expires_at, self._check_at)

    def _start_refresh(self) -> asyncio.Future[RouterConfig | None]:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch())
        return self._inflight

    def _start_check(self, now: float) -> None:
        self._schedule(check_at=now + self._check_seconds)
        if self._checking is None and self._inflight is None:
            self._checking = asyncio.ensure_future(self._check())

    async def _check(self) -> None:
        """Beside the requests: has the source changed? Then re-read it, a little later."""
        assert self._version_of is not None
        try:
            self.checks += 1
            try:
                version = await asyncio.to_thread(self._version_of)
            except Exception as exc:  # the state table or the file system: the TTL remains
                if not self._check_failing:
                    logger.warning(
                        "config: cannot check %s for changes (%s); the config TTL (%.0f s) still applies",
                        self._source,
                        exc,
                        self._ttl,
                    )
                self._check_failing = True
                return
            if self._check_failing:
                logger.info("config: change checks of %s work again", self._source)
                self._check_failing = False
            if not changed(version, self._version):
                return
            await asyncio.sleep(self._reload_spread * self._jitter())
            await self.refresh()
        finally:
            self._checking = None

    async def _read(self) -> tuple[RouterConfig, Hashable | None]:
        """One read of the source; with no config yet, a source error is tried again twice."""
        attempts = 1 if self._config is not None else FIRST_READ_ATTEMPTS
        for attempt in range(attempts):
            self.fetches += 1
            try:
                return await asyncio.to_thread(self._load_versioned)
            except ConfigSourceError:
                if attempt == attempts - 1:
                    raise
            await asyncio.sleep(FIRST_READ_PAUSE_S * 2**attempt * (0.5 + self._jitter()))
        raise AssertionError("unreachable")

    async def _fetch(
        self, load: Loader | None = None, version: Hashable | None = None
    ) -> RouterConfig | None:
        try:
            if load is None:
                config, version = await self._read()
            else:
                self.fetches += 1
                config = await asyncio.to_thread(load)
        except ConfigError as exc:
            self._failed(str(exc), error_summary(exc))
        except Exception as exc:  # an unexpected bug in a source must not take routing down
            logger.exception("config: unexpected error reading %s", self._source)
            self._failed(f"{type(exc).__name__}: {exc}", error_summary(exc))
        else:
            self._loaded(config, version)
        finally:
            self._inflight = None
        return self._config

    def _loaded(self, config: RouterConfig, version: Hashable | None) -> None:
        if self._on_loaded is not None:
            # what must happen once per config (the tracker's policies): on the loop, before
            # any request routes with it
            self._on_loaded(config)
        self._config, self._version = config, version
        now = self._clock()
        self._schedule(expires_at=now + self._ttl, check_at=now + self._check_seconds)
        self._loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._last_error = self._last_error_summary = None
        self._failures_without_config = 0
        logger.info("config: loaded %s (%d routes, version %s)", self._source, len(config.routes), version)

    def _failed(self, reason: str, summary: str) -> None:
        self._last_error, self._last_error_summary = reason, summary
        delay = self._retry
        if self._config is None:  # every request is a 503 until a read works: try again soon
            self._failures_without_config += 1
            backoff = 2 ** min(self._failures_without_config - 1, 10) * (0.5 + self._jitter())
            delay = min(self._retry, backoff)
        self._schedule(expires_at=self._clock() + delay)
        kept = "keeping the last good config" if self._config else "no config is loaded"
        logger.warning(
            "config: refresh of %s failed (%s); %s; next try in %.1f s",
            self._source,
            reason,
            kept,
            delay,
        )
