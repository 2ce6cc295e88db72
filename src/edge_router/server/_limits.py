"""What bounds the server as a whole: the connection cap (and whom it evicts), the file-descriptor
limit, and the warning lines that say when a limit acted (at most one per 10 s each)."""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..settings import ServerLimits

logger = logging.getLogger("edge_router.server")

# The most connections a default cap allows, however high the file-descriptor limit.
_MAX_DEFAULT_CONNECTIONS = 10_000


def connection_cap(limits: ServerLimits) -> int:
    """`limits.max_connections`, else half the file descriptors (the other half is for upstream
    connections), keeping 64 for files, the listener and the event loop; at most 10,000."""
    if limits.max_connections is not None:
        return limits.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_DEFAULT_CONNECTIONS
    return max(16, min(_MAX_DEFAULT_CONNECTIONS, (soft - 64) // 2))


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft file-descriptor limit to the hard one (start-up); returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. a hard limit above the kernel's nr_open
            logger.warning("server: cannot raise the file-descriptor limit to %d: %s", hard, exc)
            return soft, soft
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class ThrottledLog:
    """A warning at most once per `interval` seconds, saying how many more happened meanwhile."""

    def __init__(self, message: str, interval: float = 10.0) -> None:
        self._message = message
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def __call__(self, **fields: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self._interval
        suppressed, self._suppressed = self._suppressed, 0
        logger.warning(self._message, {**fields, "more": suppressed})


_REFUSED = (
    "server: connection refused, %(open)d connections are open (SERVER_MAX_CONNECTIONS=%(cap)d) and "
    "every one has a request in progress; %(more)d more refused since the last line"
)
_EVICTED = (
    "server: %(open)d connections are open (SERVER_MAX_CONNECTIONS=%(cap)d): closed the one waiting "
    "longest for a request head to admit a new one; %(more)d more since the last line"
)
_HEAD_TIMEOUT = (
    "server: closed a connection whose request head was not complete within %(timeout)gs; "
    "%(more)d more since the last line"
)


class Managed(Protocol):
    """A client connection as the server manages it (`engine.HttpConnection`)."""

    def evict(self) -> None:
        """Close now: it is waiting for a request head (idle or partial) and room is needed."""

    def close_idle(self) -> None:
        """The server is stopping: close now unless a request is in progress."""

    def abandon(self) -> None:
        """The server stopped waiting: close at once, cancelling the request in progress."""


class Connections:
    """The open client connections, and among them those waiting for a request head.

    `waiting` is in the order connections started to wait (a dict keeps insertion order): a new
    connection, and one whose answer just ended (kept alive), go last; one whose head completed
    leaves. At the cap, `admit()` evicts the first, the one waiting longest: a slowloris holding
    every slot with heads that never end cannot lock a real client out, while a connection with a
    request in progress is never touched.
    """

    __slots__ = ("cap", "emptied", "evicted_log", "head_timeout_log", "open", "refused_log", "waiting")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        # one line per 10 s each, per server
        self.refused_log = ThrottledLog(_REFUSED)
        self.evicted_log = ThrottledLog(_EVICTED)
        self.head_timeout_log = ThrottledLog(_HEAD_TIMEOUT)
        self.open: set[Managed] = set()
        self.waiting: dict[Managed, None] = {}
        self.emptied: asyncio.Event | None = None  # set once none is open (while stopping)

    def admit(self) -> bool:
        """Whether a new connection may open (evicting one if needed); False: refuse it (503).
        The new connection adds itself to `open` and `waiting`."""
        if len(self.open) < self.cap:
            return True
        if not self.waiting:
            self.refused_log(open=len(self.open), cap=self.cap)
            return False
        self.evicted_log(open=len(self.open), cap=self.cap)
        next(iter(self.waiting)).evict()  # it calls `gone()`
        return True

    def gone(self, connection: Managed) -> None:
        """`connection` is closed (called once per admitted connection)."""
        self.waiting.pop(connection, None)
        self.open.discard(connection)
        if not self.open and self.emptied is not None:
            self.emptied.set()
