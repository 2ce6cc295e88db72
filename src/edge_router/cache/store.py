"""The stored answers: bytes in, bytes out, least recently used first out, bounded in bytes.

One `ResponseCache` per process, shared by every route and every loaded config. An answer is
found in two steps (RFC 9111 4.1): the request's primary key (method, host, path and query, the
route's `varyBy` values and, unless the route is public, the caller's identity), then the values
of the header names the backend's own `Vary` named for that key (the latest names win, as nginx
does: a backend does not change what it varies on from one answer to the next).

Sizes: an entry counts its body, its headers and a fixed overhead; the total stays under
`max_bytes` by dropping the least recently used entries. The store does no I/O and reads no
clock: callers pass times in, so every decision is testable to the second.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..types import Header
from .policy import DEFAULT_TOTAL_BYTES

# What an entry costs beyond its bytes (the cap is about memory, so it must not count bodies
# only): the Entry, its key tuples and strings and the dict and index slots, and per header a
# tuple and two bytes objects. Measured with tracemalloc over 10,000 entries of a 1 KiB body and
# four headers: 2,124 bytes each, which this model counts as 2,155.
ENTRY_OVERHEAD = 500
HEADER_OVERHEAD = 130

PrimaryKey = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]  # method, host, target, varyBy, identity
VariantKey = tuple[PrimaryKey, tuple[str, ...]]


@dataclass(slots=True)
class Entry:
    """One stored answer. `headers` are as relayed (hop-by-hop removed, Location rewritten), less
    what the router sets per answer (CORS for the caller's origin, X-Request-Id, Age, X-Cache)."""

    status: int
    headers: list[Header]
    body: bytes
    source: str  # X-Backend-Source of the backend that answered
    label: str  # METHOD::path?query, as the admin invalidates by
    response_time: float  # epoch seconds it arrived (or was last revalidated)
    initial_age: float
    lifetime: float
    stale_while_revalidate: float
    must_revalidate: bool
    stale_if_error: float = 0.0  # how stale it may be served when the backend fails
    etag: bytes | None = None
    last_modified: bytes | None = None
    has_cors: bool = False  # the backend sent CORS headers of its own
    size: int = field(default=0)

    def __post_init__(self) -> None:
        self.measure()

    def measure(self) -> None:
        headers = sum(len(n) + len(v) + HEADER_OVERHEAD for n, v in self.headers)
        self.size = len(self.body) + headers + ENTRY_OVERHEAD

    def age(self, now: float) -> float:
        return self.initial_age + max(0.0, now - self.response_time)

    @property
    def has_validator(self) -> bool:
        return self.etag is not None or self.last_modified is not None


class ResponseCache:
    def __init__(self, *, max_bytes: int = DEFAULT_TOTAL_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[VariantKey, Entry] = OrderedDict()
        # per primary key: the Vary names last stored, and how many variants it has
        self._vary: dict[PrimaryKey, tuple[tuple[str, ...], int]] = {}
        # (host, path?query) -> its variants, for RFC 9111 4.4 invalidation without a scan
        self._by_target: dict[tuple[str, str], set[VariantKey]] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def resize(self, max_bytes: int) -> None:
        """A new total cap (a config's `features.cache.maxBytes`): evict down to it at once."""
        self.max_bytes = max_bytes
        self._evict()

    def __len__(self) -> int:
        return len(self._entries)

    def vary_names(self, key: PrimaryKey) -> tuple[str, ...] | None:
        """The header names the backend varies this key's answers on; None: nothing stored."""
        known = self._vary.get(key)
        return None if known is None else known[0]

    def get(self, key: PrimaryKey, vary_values: tuple[str, ...]) -> Entry | None:
        variant = (key, vary_values)
        entry = self._entries.get(variant)
        if entry is not None:
            self._entries.move_to_end(variant)
        return entry

    def put(
        self, key: PrimaryKey, vary_names: tuple[str, ...], vary_values: tuple[str, ...], entry: Entry
    ) -> None:
        """Store `entry` (replacing that variant's), then evict down to the cap. An entry larger
        than the whole cache is not stored (it would only empty the cache)."""
        if entry.size > self.max_bytes:
            return
        known = self._vary.get(key)
        if known is not None and known[0] != vary_names:
            # The backend varies on other headers now: variants stored under the old names would
            # be found by the new names' values and served to the wrong requests.
            for stale in [v for v in self._by_target.get((key[1], key[2]), ()) if v[0] == key]:
                self._drop(stale)
        variant = (key, vary_values)
        if variant in self._entries:
            self._drop(variant)
        _, count = self._vary.get(key, ((), 0))
        self._vary[key] = (vary_names, count + 1)
        self._by_target.setdefault((key[1], key[2]), set()).add(variant)
        self._entries[variant] = entry
        self.bytes += entry.size
        self._evict()

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def resized(self, key: PrimaryKey, vary_values: tuple[str, ...], entry: Entry, old_size: int) -> None:
        """A stored entry's headers changed in place (a 304 refreshed them): count its new size
        (unless it was evicted meanwhile) and keep the cap."""
        if self._entries.get((key, vary_values)) is entry:
            self.bytes += entry.size - old_size
            self._evict()

    def discard(self, key: PrimaryKey, vary_values: tuple[str, ...]) -> None:
        if (key, vary_values) in self._entries:
            self._drop((key, vary_values))

    def _drop(self, variant: VariantKey) -> None:
        entry = self._entries.pop(variant)
        self.bytes -= entry.size
        key = variant[0]
        names, count = self._vary[key]
        if count > 1:
            self._vary[key] = (names, count - 1)
        else:
            del self._vary[key]
        target = (key[1], key[2])
        variants = self._by_target[target]
        variants.discard(variant)
        if not variants:
            del self._by_target[target]

    def invalidate(self, prefix: str) -> int:
        """Drop the entries whose `METHOD::path?query` starts with `prefix`; how many went."""
        doomed = [variant for variant, entry in self._entries.items() if entry.label.startswith(prefix)]
        for variant in doomed:
            self._drop(variant)
        return len(doomed)

    def invalidate_target(self, host: str, target: str) -> int:
        """RFC 9111 4.4: after an unsafe request succeeded, every stored answer for its URI goes
        (GET and HEAD, every caller, every variant)."""
        doomed = list(self._by_target.get((host, target), ()))
        for variant in doomed:
            self._drop(variant)
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()
        self._vary.clear()
        self._by_target.clear()
        self.bytes = 0

    def stats(self) -> dict[str, float | int]:
        looked = self.hits + self.misses
        return {
            "entries": len(self._entries),
            "bytes": self.bytes,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / looked, 4) if looked else 0.0,
        }
