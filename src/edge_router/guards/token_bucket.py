"""A token bucket in its GCRA form: one number per bucket, the *theoretical arrival time* (tat).

    allowed, new_tat = take(tat, now, Rate(interval_s=6.0, capacity=10))

A bucket of `capacity` C tokens refilled by one token every `interval_s` T is exactly the generic
cell rate algorithm with a burst tolerance of C·T: instead of a token count and a refill timestamp
(two numbers that must be read, refilled and written together), it keeps the one time `tat` at which
the bucket would be full again. A request at `now`

* is allowed iff `max(tat, now) + T - now <= C·T`: the bucket, once this token is spent, must not
  owe more than C tokens' worth of time; the new tat is `max(tat, now) + T`;
* leaves `remaining = floor((now + C·T - new_tat) / T)` whole tokens;
* refused, is told `retry_after_s = tat - now - (C - 1)·T`, the time until that condition holds,
  and the tat is not moved (a refused request spends nothing).

One number is what makes the shared bucket cheap: DynamoDB moves it with one conditional
`SET tat = tat + :T` (see `shared_buckets`), and a tat in the past is simply a full bucket, so an
idle bucket needs no refill step and no item at all.

Decisions:

* **Fractional capacity** (a `burst` times a multiplier, e.g. 5 x 0.5 = 2.5): floor semantics for
  what a client sees at once — 2.5 admits 2 requests in a burst, and the half token is real credit
  (the third is allowed half an interval later instead of a whole one). `RateLimit-Limit` shows the
  whole tokens (2). A capacity below 1 could never admit anything; `Rate` refuses it.
* **Floating point**: tats are epoch seconds (~1.7e9, where a double's step is ~2.4e-7 s), so the
  comparison allows `EPSILON_S` (1 µs) of rounding; rates finer than ~10 µs per token are not
  meaningful here.
* **A tat too far ahead** (more than C·T after `now`: the wall clock stepped back, or a reload
  shrank the rate) is read as `now + C·T`, an empty bucket under the current rate, and a refused
  take returns that clamped tat so the caller may store it: a shrunk limit or a clock step costs a
  client at most one interval, never the size of the step. Otherwise a refusal returns `tat`
  unchanged.
"""

from __future__ import annotations

import math

from .services import Rate, Take

EPSILON_S = 1e-6  # rounding allowance on epoch-second floats (their step is ~2.4e-7 s today)


def take(tat: float | None, now: float, rate: Rate) -> tuple[Take, float]:
    """Take one token from the bucket whose theoretical arrival time is `tat` (None: never used).

    Returns the answer and the tat to store (see the module docstring).
    """
    interval, burst_s = rate.interval_s, rate.capacity * rate.interval_s
    base = now if tat is None or tat < now else min(tat, now + burst_s)
    new_tat = base + interval
    if new_tat - now > burst_s + EPSILON_S:
        return Take(allowed=False, remaining=0, retry_after_s=retry_after(base, now, rate)), base
    return Take(allowed=True, remaining=remaining(new_tat, now, rate)), new_tat


def remaining(tat: float, now: float, rate: Rate) -> int:
    """The whole tokens a bucket whose tat is `tat` holds at `now`."""
    left = (now + rate.capacity * rate.interval_s - max(tat, now) + EPSILON_S) / rate.interval_s
    return max(math.floor(left), 0)


def retry_after(tat: float, now: float, rate: Rate) -> float:
    """Seconds from `now` until a bucket whose tat is `tat` holds a token again (0: it holds one)."""
    return max(tat - now - (rate.capacity - 1) * rate.interval_s, 0.0)
