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
* A failure is kept twice: `last_error`, the full reason (it may quote the source: a YAML line, a
  URL with credentials), and `last_error_summary`, only its kind, which anyone may be shown.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..exceptions import ConfigError, ConfigInvalidError, ConfigSourceError
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


def error_summary(exc: Exception) -> str:
    """What kind of failure `exc` is, in words that quote nothing from the config or its source."""
    if isinstance(exc, ConfigInvalidError):
        count = len(exc.problems)
        return f"the config is not valid ({count} problem{'' if count == 1 else 's'})"
    if isinstance(exc, ConfigSourceError):
        return "the config source could not be read"
    return "the config could not be loaded (unexpected error)"


class ConfigCache:
    def __init__(
        self,
        load: Callable[[], RouterConfig],
        *,
        source: str,
        ttl_seconds: float,
        retry_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        on_loaded: Callable[[RouterConfig], None] | None = None,
    ) -> None:
        self._load = load
        self._on_loaded = on_loaded
        self._source = source
        self._ttl = ttl_seconds
        self._retry = min(retry_seconds, ttl_seconds)
        self._clock = clock
        self._config: RouterConfig | None = None
        self._fresh_until = float("-inf")
        self._loaded_at: str | None = None
        self._last_error: str | None = None
        self._last_error_summary: str | None = None
        self._inflight: asyncio.Future[RouterConfig | None] | None = None
        self._jitter = jitter
        self._failures_without_config = 0
        self.fetches = 0

    async def get(self) -> RouterConfig | None:
        """The config to route this request with (None only when none was ever loaded)."""
        if self._clock() < self._fresh_until:
            return self._config
        if self._config is None:
            return await self.refresh()
        self._start_refresh()
        return self._config

    async def refresh(self) -> RouterConfig | None:
        """Read the source now (joining a read already under way) and wait for the outcome."""
        return await asyncio.shield(self._start_refresh())

    @property
    def current(self) -> RouterConfig | None:
        """The config in service now (no I/O, no refresh), or None before the first good load."""
        return self._config

    def status(self) -> CacheStatus:
        return CacheStatus(
            self._config, self._loaded_at, self._last_error, self._source, self._last_error_summary
        )

    def _start_refresh(self) -> asyncio.Future[RouterConfig | None]:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch())
        return self._inflight

    async def _read(self) -> RouterConfig:
        """One read of the source; with no config yet, a source error is tried again twice."""
        attempts = 1 if self._config is not None else FIRST_READ_ATTEMPTS
        for attempt in range(attempts):
            self.fetches += 1
            try:
                return await asyncio.to_thread(self._load)
            except ConfigSourceError:
                if attempt == attempts - 1:
                    raise
            await asyncio.sleep(FIRST_READ_PAUSE_S * 2**attempt * (0.5 + self._jitter()))
        raise AssertionError("unreachable")

    async def _fetch(self) -> RouterConfig | None:
        try:
            config = await self._read()
        except ConfigError as exc:
            self._failed(str(exc), error_summary(exc))
        except Exception as exc:  # an unexpected bug in a source must not take routing down
            logger.exception("config: unexpected error reading %s", self._source)
            self._failed(f"{type(exc).__name__}: {exc}", error_summary(exc))
        else:
            if self._on_loaded is not None:
                # what must happen once per config (the tracker's policies): on the loop, before
                # any request routes with it
                self._on_loaded(config)
            self._config = config
            self._fresh_until = self._clock() + self._ttl
            self._loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
            self._last_error = self._last_error_summary = None
            self._failures_without_config = 0
            logger.info("config: loaded %s (%d routes)", self._source, len(config.routes))
        finally:
            self._inflight = None
        return self._config

    def _failed(self, reason: str, summary: str) -> None:
        self._last_error, self._last_error_summary = reason, summary
        delay = self._retry
        if self._config is None:  # every request is a 503 until a read works: try again soon
            self._failures_without_config += 1
            backoff = 2 ** min(self._failures_without_config - 1, 10) * (0.5 + self._jitter())
            delay = min(self._retry, backoff)
        self._fresh_until = self._clock() + delay
        kept = "keeping the last good config" if self._config else "no config is loaded"
        logger.warning(
            "config: refresh of %s failed (%s); %s; next try in %.1f s",
            self._source,
            reason,
            kept,
            delay,
        )
