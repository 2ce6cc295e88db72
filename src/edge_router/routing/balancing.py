"""Pool rotation: which candidate a pool tries first, and in what order the rest (pure; no I/O).

* `RoundRobin` and `SmoothWeighted` hold the only state (a position, current weights), one
  instance per pool, so two pools never disturb each other's rotation. Both are `Balancer`s.
* `balancer_for(route)` gives a route's balancer, made on first use and kept in `route.state` for
  the compiled config's lifetime (a new config starts a new rotation).

The rules for moving on after a failure live in `fallback.py`, the viewer's country in `geo.py`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from ..config.model import Route


class Balancer(Protocol):
    def order(self, count: int) -> list[int]:
        """Indexes of `count` candidates in the order to try them; the first is this request's pick."""
        ...


def balancer_for(route: Route) -> Balancer | None:
    """The route's balancer (None for `failover`, which keeps the written order)."""
    balancer: Balancer | None = route.state.balancer
    if balancer is None and route.strategy != "failover":
        balancer = route.state.balancer = new_balancer(route)
    return balancer


def new_balancer(route: Route) -> Balancer:
    if route.strategy == "weighted":
        return SmoothWeighted([target.weight for target in route.targets])
    # A random start: every new Lambda instance would otherwise send its first request to target 0.
    return RoundRobin(start=random.randrange(max(len(route.targets), 1)))  # noqa: S311 - not security


class RoundRobin:
    """A rotating start position for one pool.

    Seed 004 advanced its index only when a request failed over; here every call advances it by one,
    success or not, so load spreads evenly even when every target is healthy. On failure the caller
    walks the rest of the returned order; that walk does not move the position further.

    `start` is the first position. Each Lambda execution environment gets its own instance, so a caller
    that wants cold starts not to all hit target 0 passes a random start (randomness stays injected).
    """

    def __init__(self, start: int = 0) -> None:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self._position = start

    def order(self, count: int) -> list[int]:
        """Indexes of `count` candidates in try order, starting at the current position.

        With ``count == 0`` there is nothing to pick and the position does not move. When the pool size
        changes between calls (a config reload) the position is taken modulo the new size.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count == 0:
            return []
        first = self._position % count
        self._position = (first + 1) % count
        return [(first + offset) % count for offset in range(count)]


class SmoothWeighted:
    """nginx's smooth weighted round-robin (``ngx_http_upstream_get_peer``), without its failure tracking.

    Each pick adds every peer's weight to its current weight, picks the largest current weight (the
    lowest index on a tie, as nginx's strict ``>`` does) and subtracts the total from the winner. Over
    any run of ``sum(weights)`` picks each peer is picked exactly ``weight`` times, and the picks are
    interleaved (5:1:1 gives ``a a b a c a a``) instead of bursts of the heavy peer.

    Weight 0 drains a peer: it is never picked and never offered as a fallback. Health and circuit
    breaking are the caller's concern (it skips candidates); this class only decides the order.
    """

    def __init__(self, weights: Sequence[int]) -> None:
        for index, weight in enumerate(weights):
            if weight < 0:
                raise ValueError(f"weight {index} is negative ({weight})")
        self._weights = tuple(weights)
        self._current = [0] * len(weights)
        self._total = sum(weights)
        # Fallback order after the pick: heaviest first, ties by index. Fixed, so computed once.
        self._by_weight = sorted(
            (index for index, weight in enumerate(weights) if weight > 0),
            key=lambda index: (-self._weights[index], index),
        )

    @property
    def weights(self) -> tuple[int, ...]:
        return self._weights

    def order(self, count: int | None = None) -> list[int]:
        """The SWRR pick first, then every other positive-weight candidate by descending weight.

        `count` is accepted for the `Balancer` protocol; the pool's size is fixed by its weights.

        With every weight 0 the pool is fully drained and the answer is ``[]`` (no state changes).
        """
        if self._total == 0:
            return []
        best = -1
        for index, weight in enumerate(self._weights):
            if weight == 0:
                continue
            self._current[index] += weight
            if best < 0 or self._current[index] > self._current[best]:
                best = index
        self._current[best] -= self._total
        return [best, *(index for index in self._by_weight if index != best)]
