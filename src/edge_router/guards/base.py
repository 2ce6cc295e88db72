"""The guard contract and the loop that runs guards.

    class Guard(Protocol):
        async def on_request(self, ctx: RequestContext) -> Refusal | None: ...

* `on_request` reads the request (never its body) and returns None to let it continue, or the
  `Refusal` the router answers with instead; it never contacts a backend, and a refused request
  spends nothing further down the pipeline (no rate-limit token, no upstream attempt);
* a guard is built once, from values its config already validated, and raises ValueError at
  construction for a value it cannot enforce; it keeps no per-request state except through an
  injected store (rate-limit buckets);
* `run_guards` stops at the first refusal: guards run in the order their stage lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..exceptions import Refusal
from ..http.context import RequestContext


class Guard(Protocol):
    async def on_request(self, ctx: RequestContext) -> Refusal | None: ...


async def run_guards(guards: Sequence[Guard], ctx: RequestContext) -> Refusal | None:
    """The first guard's refusal, or None when every guard lets the request through."""
    for guard in guards:
        refusal = await guard.on_request(ctx)
        if refusal is not None:
            return refusal
    return None
