"""Request coalescing (seed 002's `deduplication`): identical concurrent GETs share one upstream
request, the way nginx's `proxy_cache_lock` and Varnish's request coalescing do.

The first request of a key is the leader: it goes upstream and streams its answer to its own
client while the cache stage keeps a copy. Requests of the same key that arrive meanwhile are
followers: they wait (at most the route's `windowMs`, as nginx's `proxy_cache_lock_timeout`)
and then get the leader's answer byte for byte, if it is one that may be shared (what a shared
cache may store: no `Set-Cookie`, not `private`, not `no-store`, a body under the entry cap).

A leader that fails, or whose task is cancelled, lands its flight empty: its followers are never
stranded; each asks again, and one of them becomes the next leader. A follower that waited its
window out goes upstream on its own. On Lambda an instance serves one request at a time, so
nothing coalesces there (the stage does not use this).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .store import Entry, PrimaryKey


@dataclass(frozen=True, slots=True)
class Landed:
    """What a leader brought back for its followers: the answer, and the Vary it holds for."""

    entry: Entry
    vary_names: tuple[str, ...]
    vary_values: tuple[str, ...]


class Flight:
    __slots__ = ("done", "landed")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.landed: Landed | None = None


class Coalescer:
    def __init__(self) -> None:
        self._flights: dict[PrimaryKey, Flight] = {}
        self.leaders = 0  # upstream requests made on behalf of a flight
        self.coalesced = 0  # followers answered with a leader's answer

    def join(self, key: PrimaryKey) -> tuple[Flight, bool]:
        """The flight of `key`, and whether the caller leads it (a new flight) or follows."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = self._flights[key] = Flight()
        self.leaders += 1
        return flight, True

    def land(self, key: PrimaryKey, flight: Flight, landed: Landed | None) -> None:
        """The leader is done (`landed` None: it brought nothing to share). Always called once."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        flight.landed = landed
        flight.done.set()

    async def follow(self, flight: Flight, window_s: float) -> tuple[bool, Landed | None]:
        """Wait for the leader: (landed in time, what it brought)."""
        try:
            async with asyncio.timeout(window_s):
                await flight.done.wait()
        except TimeoutError:
            return False, None
        return True, flight.landed

    def served(self) -> None:
        self.coalesced += 1

    def stats(self) -> dict[str, int]:
        return {"coalesced": self.coalesced, "leaders": self.leaders, "in_flight": len(self._flights)}
