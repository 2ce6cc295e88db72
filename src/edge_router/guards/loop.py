"""The proxy-loop guard: a request that already passed this router `max_hops` times is refused
with 508 (CONTRACT section 3), counted by this router's pseudonym in `Via`."""

from __future__ import annotations

from ..exceptions import Refusal
from ..http.context import RequestContext
from ..http.headers import via_count


class LoopGuard:
    def __init__(self, pseudonym: str, max_hops: int = 3) -> None:
        if not pseudonym or " " in pseudonym:
            raise ValueError(f"via pseudonym {pseudonym!r} must be one non-empty token")
        if max_hops < 1:
            raise ValueError(f"max_hops must be at least 1, got {max_hops}")
        self._pseudonym = pseudonym
        self._max_hops = max_hops

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        if ctx.header("via") is None:  # most requests: no proxy before us
            return None
        via = ", ".join(value for name, value in ctx.headers if name == "via")
        if via_count(via, self._pseudonym) < self._max_hops:
            return None
        return Refusal(
            508, "The request has passed through this router too many times", log_error="proxy loop"
        )
