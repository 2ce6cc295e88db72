"""Requests the router refuses before anything else: a path that would leave its route once a
backend decodes it (`http.paths.UnsafePath`: 400), and, from the local server, framing that RFC 9112
forbids (not exactly one Host: 400; a transfer coding other than `chunked`: 501). A function URL
event carries one Host and no framing of its own. These answers close the connection."""

from __future__ import annotations

from ..exceptions import Refusal
from ..http.context import RequestContext
from ..http.headers import framing_problem

_CLOSE = ((b"connection", b"close"),)


class RequestFramingGuard:
    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        problem = None if ctx.buffered else framing_problem(ctx.headers, ctx.http_version)
        if problem is None:
            if ctx.unsafe_path is None:
                return None
            problem = (400, ctx.unsafe_path)
        status, message = problem
        return Refusal(status, message, headers=_CLOSE, log_error=message)
