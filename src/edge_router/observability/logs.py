"""The application's logger: Powertools' JSON `Logger`, made on first use.

`app_logger()` also gives the package's stdlib loggers (`edge_router.*`, used by every module for
its events) the same JSON handler, so everything the router logs is one format. It is called by
the composition root (`EdgeRouter`), not at import: importing a module logs nothing and configures
nothing. `POWERTOOLS_LOG_LEVEL` (or `LOG_LEVEL`) sets the level.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

_logger: Any = None


def service_name() -> str:
    return os.environ.get("POWERTOOLS_SERVICE_NAME", "edge-router")


def app_logger() -> Any:
    """The Powertools Logger (`aws_lambda_powertools.Logger`), set up once per process."""
    global _logger
    if _logger is None:
        from aws_lambda_powertools import Logger

        _logger = Logger(service=service_name())
        package = logging.getLogger("edge_router")
        package.addHandler(_logger.registered_handler)
        package.setLevel(_logger.log_level)
        package.propagate = False
    return _logger


class Throttle:
    """Yes at most once every `every_s`: a condition that lasts (a store that cannot be read) is
    logged once a minute, not once per request."""

    __slots__ = ("_clock", "_every_s", "_last")

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._last = -math.inf

    def ready(self) -> bool:
        now = self._clock()
        if now - self._last < self._every_s:
            return False
        self._last = now
        return True
