"""`LocalBuckets`: the per-process `BucketStore`, an LRU of token buckets with a hard cap.

    buckets = LocalBuckets(max_buckets=100_000)
    answer = await buckets.take("/api#ip:203.0.113.7", Rate(interval_s=6.0, capacity=10))

Each bucket is one entry of an `OrderedDict`, key -> tat (the GCRA form of `token_bucket`: one
float per bucket). A take moves its entry to the end; past `max_buckets` entries the oldest (least
recently used) is dropped. Seed 002's buckets grew by one entry per client address and were never
evicted: a scan from many addresses (or IPv6 privacy addresses) grew the process until it died.

Memory, measured (tests/test_bucket_memory.py, CPython 3.11, 64-bit): an entry is the key string
(49 bytes + one per ASCII character: ~85 B for `/api/v1/orders#ip:2001:db8:1:2::1`), its float
(24 B), the dict slot and the OrderedDict node (~100 B) — ~230 B when the map fills once, and a
steady ~400 B per entry of RSS under endless churn (the dict's resizes and the allocator's
fragmentation), flat from then on. The documented bound is `BYTES_PER_BUCKET` (512 B) x
`max_buckets`: 100,000 buckets (the default) cost at most ~50 MiB; a Lambda function with little
memory should lower the cap.

What eviction costs: a dropped bucket is forgotten, so its client starts again with a full one.
LRU drops the buckets idle longest, usually already full again (a bucket is full once its tat has
passed), so limits stay exact while fewer than `max_buckets` clients are active within one bucket's
drain time (capacity x interval); past that, the oldest forget their spending — the store fails
open for them instead of growing.

The clock is the wall clock (`time.time`) as in the shared store, so one `tat` means the same in
both; a clock stepped back is handled by `token_bucket.take` (a client waits at most one interval).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from . import token_bucket
from .services import Rate, Take

DEFAULT_MAX_BUCKETS = 100_000
BYTES_PER_BUCKET = 512  # RSS bound per entry, for keys up to ~64 characters (see the docstring)


class LocalBuckets:
    """Token buckets in this process, at most `max_buckets` of them (see the module docstring)."""

    def __init__(
        self, *, max_buckets: int = DEFAULT_MAX_BUCKETS, clock: Callable[[], float] = time.time
    ) -> None:
        if max_buckets < 1:
            raise ValueError(f"max_buckets must be at least 1, got {max_buckets}")
        self.max_buckets = max_buckets
        self._clock = clock
        self._tats: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tats)

    async def take(self, key: str, rate: Rate) -> Take:
        """Take one token from bucket `key` (never waits: the map is in this process)."""
        return self.take_now(key, rate)

    def take_now(self, key: str, rate: Rate) -> Take:
        """`take` without the coroutine (for callers outside a loop, and the memory test)."""
        tats = self._tats
        answer, tats[key] = token_bucket.take(tats.get(key), self._clock(), rate)
        tats.move_to_end(key)
        if len(tats) > self.max_buckets:
            tats.popitem(last=False)
        return answer
