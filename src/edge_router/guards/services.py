"""What guards need that outlives one config: the process's services, built once by the router.

A config reload compiles new guards, but the buckets a rate limit has counted and the API keys an
operator created through the admin API must survive it, and (with `STATE_TABLE`) be shared by the
fleet. `EdgeRouter` builds one `GuardServices` and hands it to every `load_config`; without one
(`edge-router validate`, tests of pure compilation) `guards.local.local_services()` is used.

The two store contracts, `BucketStore` and `KeyStore`, are the Protocols below:

* `BucketStore.take` takes one token from bucket `key`, refilled at `rate` (see `Rate`), and says
  whether the request may pass; a shared store raises `StateStoreError` when the table cannot
  answer within its budget (the rate-limit guard applies `on_store_error`);
* `KeyStore.find` answers for the SHA-256 hash (lower-case hex) of a presented key; `create` makes
  a key with `secrets` and returns it in plain text this once (only its hash is kept); a shared
  store raises `StateStoreError` when the table cannot be used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .base import Guard


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket's shape: one token every `interval_s` seconds, at most `capacity` held."""

    interval_s: float
    capacity: float

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.capacity < 1:
            raise ValueError(f"a rate needs interval_s > 0 and capacity >= 1, got {self}")


@dataclass(frozen=True, slots=True)
class Take:
    """One request's answer from a bucket."""

    allowed: bool
    remaining: int  # whole tokens left after this request
    retry_after_s: float = 0.0  # refused: seconds until a token is available


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An API key as stored: never the key itself, only its SHA-256 hash."""

    id: str
    name: str
    hash: str  # lower-case hex SHA-256 of the key's UTF-8 bytes
    created_at: float  # epoch seconds
    rate_limit_multiplier: float = 1.0


class BucketStore(Protocol):
    async def take(self, key: str, rate: Rate) -> Take: ...


class KeyStore(Protocol):
    async def find(self, key_hash: str) -> StoredKey | None: ...

    async def create(self, name: str, rate_limit_multiplier: float = 1.0) -> tuple[StoredKey, str]: ...

    async def list(self) -> list[StoredKey]: ...

    async def delete(self, key_id: str) -> bool: ...


@dataclass(frozen=True)
class GuardServices:
    """The stores guards are compiled with (see the module docstring)."""

    keys: KeyStore
    buckets: BucketStore  # per process
    shared_buckets: BucketStore | None = None  # the state table's, when STATE_TABLE is set
    admin_gate: Guard | None = None  # the router's (its admin key); None: no admin surface
    clock: Callable[[], float] = field(default=time.time)

    async def aclose(self) -> None:
        """Stop what the stores run beside requests (background reads of the state table)."""
        for store in (self.keys, self.buckets, self.shared_buckets):
            close = getattr(store, "aclose", None)
            if close is not None:
                await close()
