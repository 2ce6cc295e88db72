"""The CORS preflight: an `OPTIONS` with `Access-Control-Request-Method` is answered by the router
(204 with the configured CORS headers and max-age), never forwarded (CONTRACT section 6)."""

from __future__ import annotations

from ..exceptions import Refusal
from ..http.context import RequestContext
from ..types import Header


class PreflightGuard:
    def __init__(self, headers: tuple[Header, ...]) -> None:
        self._answer = Refusal(204, headers=headers)

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        if ctx.method == "OPTIONS" and ctx.header("access-control-request-method") is not None:
            return self._answer
        return None
