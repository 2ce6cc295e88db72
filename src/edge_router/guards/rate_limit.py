"""`RateLimitGuard`: a token bucket per client and per route (CONTRACT section 8, seed 002's `rateLimit`).

    RateLimitGuard(scope="/api", requests=10, window_s=60, burst=None, multiplier=1.0, store=buckets)

* **The bucket** is the route's (`scope`, its prefix) and the client's: the API key's id when the
  API-key guard named a principal, else the client address the guards judge (`ctx.client_address`;
  a request without one shares the bucket `-`: a missing address never skips the limit, as seed
  002's missing header did). Item keys read `<scope>#key:<id>` / `<scope>#ip:<address>` (a route
  prefix holds no `#`).
* **The rate**: refill `requests / window_s` tokens per second, capacity `burst` (default
  `requests`: the window's worth, not seed 002's 1.5x), both times the route's `multiplier` and the
  key's `rate_limit_multiplier`. So `Rate(interval_s=window_s / (requests * m), capacity=burst * m)`.
  A capacity that is not whole gives floor semantics (`token_bucket`); the route's own must be at
  least 1 (ValueError: it would admit nothing), a key's is raised to 1 (a key with a tiny multiplier
  still gets one request per interval). A key multiplier that is not a positive number counts as 1.
* **Allowed**: `RateLimit-Limit` (whole tokens of capacity) and `RateLimit-Remaining` (whole tokens
  left) go into `ctx.answer_headers`, whatever answers the request. **Refused**: 429 JSON with
  `Retry-After` (whole seconds until a token exists, at least 1), the same two headers (remaining 0),
  and `retry_after` in the body.
* **The store fails** (`StateStoreError`: the shared table unreachable or backed off):
  `on_store_error="allow"` lets the request through with `RateLimit-Limit` only (what remains is
  unknown) and logs "rate limit store unavailable" at most once a minute per guard (the store's
  `StoreShield` already keeps a failing table from costing more than one budget);
  `"deny"` answers 503 JSON with `Retry-After: 1`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Literal

from ..exceptions import Refusal, StateStoreError
from ..http.context import RequestContext
from ..observability.logs import Throttle
from .services import BucketStore, Rate, Take

logger = logging.getLogger("edge_router.guards")

WARN_EVERY_S = 60.0  # "rate limit store unavailable" at most this often per guard
NO_ADDRESS = "-"  # the bucket of requests without a client address
_MAX_KEY_RATES = 256  # per-multiplier rates cached (key multipliers are few: one per API key at most)


class RateLimitGuard:
    """Refuses a client past its token bucket with 429 (see the module docstring)."""

    def __init__(
        self,
        *,
        scope: str,
        requests: int,
        window_s: float,
        burst: int | None,
        multiplier: float,
        store: BucketStore,
        on_store_error: Literal["allow", "deny"] = "allow",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _validate(requests, window_s, burst, multiplier, on_store_error)
        if (burst or requests) * multiplier < 1:
            raise ValueError(
                f"rate limit on {scope!r}: a capacity of {burst or requests} x {multiplier} admits nothing"
            )
        self.scope = scope
        self._tokens = requests * multiplier  # per window
        self._capacity = (burst or requests) * multiplier
        self._window_s = window_s
        self._store = store
        self._deny = on_store_error == "deny"
        self._warning = Throttle(WARN_EVERY_S, clock)
        self._rate = Rate(interval_s=window_s / self._tokens, capacity=self._capacity)
        self._key_rates: dict[float, Rate] = {}

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        principal = ctx.principal
        if principal is None:
            key, rate = f"{self.scope}#ip:{ctx.client_address or NO_ADDRESS}", self._rate
        else:
            key, rate = (
                f"{self.scope}#key:{principal.key_id}",
                self._rate_for(principal.rate_limit_multiplier),
            )
        limit = (b"ratelimit-limit", str(math.floor(rate.capacity)).encode())
        try:
            answer = await self._store.take(key, rate)
        except StateStoreError as exc:
            return self._store_failed(ctx, exc, limit)
        if answer.allowed:
            ctx.answer_headers.append(limit)
            ctx.answer_headers.append((b"ratelimit-remaining", str(answer.remaining).encode()))
            return None
        return self._refusal(answer, rate, limit)

    def _rate_for(self, key_multiplier: float) -> Rate:
        """The rate for a key with this multiplier (see the module docstring)."""
        rate = self._key_rates.get(key_multiplier)
        if rate is None:
            factor = key_multiplier if math.isfinite(key_multiplier) and key_multiplier > 0 else 1.0
            rate = Rate(
                interval_s=self._window_s / (self._tokens * factor),
                capacity=max(self._capacity * factor, 1.0),
            )
            if len(self._key_rates) < _MAX_KEY_RATES:
                self._key_rates[key_multiplier] = rate
        return rate

    def _refusal(self, answer: Take, rate: Rate, limit: tuple[bytes, bytes]) -> Refusal:
        retry_after = max(1, math.ceil(answer.retry_after_s))
        per = f"{math.floor(rate.capacity)} requests at once, one more every {rate.interval_s:g} s"
        return Refusal(
            429,
            f"Rate limit exceeded ({per}); retry in {retry_after} s",
            headers=((b"retry-after", str(retry_after).encode()), limit, (b"ratelimit-remaining", b"0")),
            log_error="rate limited",
            retry_after=retry_after,
        )

    def _store_failed(
        self, ctx: RequestContext, exc: StateStoreError, limit: tuple[bytes, bytes]
    ) -> Refusal | None:
        if self._warning.ready():
            logger.warning(
                "rate limit store unavailable (%s): requests on %s are %s until it answers",
                exc,
                self.scope,
                "refused (503)" if self._deny else "let through unlimited",
            )
        if self._deny:
            return Refusal(
                503,
                "The rate limit cannot be checked right now",
                headers=((b"retry-after", b"1"),),
                log_error="rate limit store unavailable",
                detail=str(exc),
            )
        ctx.answer_headers.append(limit)
        return None


def _validate(
    requests: int, window_s: float, burst: int | None, multiplier: float, on_store_error: str
) -> None:
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValueError(f"requests per window must be a whole number >= 1, got {requests!r}")
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise ValueError(f"burst must be a whole number >= 1, got {burst!r}")
    if not (math.isfinite(multiplier) and multiplier > 0):
        raise ValueError(f"the rate limit multiplier must be a positive number, got {multiplier!r}")
    if on_store_error not in ("allow", "deny"):
        raise ValueError(f"on_store_error must be 'allow' or 'deny', got {on_store_error!r}")
