"""Size limits (CONTRACT section 8, seed 002's `sizeLimits`): policy, per route, in bytes.

    URL      the request target as received: its path and `?query`        over max_url_length   -> 414
    headers  how many header fields                                        over max_header_count -> 431
             the sum of every field's name and value bytes                 over max_header_size  -> 431
    body     a Content-Length over max_body_size, at once                                        -> 413

A limit is inclusive: a request exactly at it passes, one byte (or one field) more is refused. The
checks read what the context decoded at the door and never the body. A body without a valid
Content-Length (chunked, or a value the server will refuse itself) is not judged here: the guard
sets `ctx.body_limit` (the lower of this limit and any a stage set before), and `proxy/body.py`
counts the body against it while it streams and aborts the upstream request past it, so a backend
never receives a complete over-limit body. The 413 is the one `proxy/body.py` answers with, so a
client sees one answer whichever way the size was found.

These are not the server's transport limits (the 64 KiB cap on a request head protects the
process whatever the config says); they are what a route accepts, and may be lower or higher.
"""

from __future__ import annotations

from ..exceptions import Refusal
from ..http.context import RequestContext

# Past this many digits a Content-Length is over any limit an int64 can state; the value is not
# converted (int() of a huge digit string is slow, and refused past 4,300 digits).
_MAX_LENGTH_DIGITS = 18
_OVER_ANY_LIMIT: int = 10**_MAX_LENGTH_DIGITS


def url_length(ctx: RequestContext) -> int:
    """The request target's length in bytes as received: the path and, when there is one, `?query`."""
    return len(ctx.raw_path) + (1 + len(ctx.query) if ctx.query else 0)


def header_size(ctx: RequestContext) -> int:
    """Every header field's name and value bytes, summed."""
    return sum(len(name) + len(value) for name, value in ctx.raw_headers)


def declared_length(value: str | None) -> int | None:
    """A Content-Length's value, or None when absent or not a plain number (the server judges it)."""
    if value is None:
        return None
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit()):
        return None
    significant = digits.lstrip("0")
    if len(significant) > _MAX_LENGTH_DIGITS:
        return _OVER_ANY_LIMIT
    return int(significant or "0")


def too_large(limit: int, *, pending: bool) -> Refusal:
    refusal = Refusal(
        413,
        f"The request body is larger than this route accepts ({limit} bytes)",
        headers=((b"connection", b"close"),),  # the rest of the body is not read
        log_error=f"request body over {limit} bytes",
    )
    refusal.body_pending = pending
    return refusal


class SizeLimitsGuard:
    """414 / 431 / 413 for a request over the route's limits; sets `ctx.body_limit` otherwise."""

    def __init__(
        self,
        *,
        max_body_size: int = 10485760,
        max_url_length: int = 8192,
        max_header_size: int = 16384,
        max_header_count: int = 100,
    ) -> None:
        limits = {
            "max_body_size": max_body_size,
            "max_url_length": max_url_length,
            "max_header_size": max_header_size,
            "max_header_count": max_header_count,
        }
        for name, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a whole number above 0, got {value!r}")
        self.max_body_size = max_body_size
        self.max_url_length = max_url_length
        self.max_header_size = max_header_size
        self.max_header_count = max_header_count

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        refusal = self.refusal(ctx)
        if refusal is None:
            limit = self.max_body_size
            ctx.body_limit = limit if ctx.body_limit is None else min(ctx.body_limit, limit)
        return refusal

    def refusal(self, ctx: RequestContext) -> Refusal | None:
        """The first limit the request is over, as the answer; None when it is within all four."""
        if url_length(ctx) > self.max_url_length:
            limit = self.max_url_length
            return Refusal(
                414,
                f"The request URL is longer than this route accepts ({limit} bytes)",
                log_error=f"url over {limit} bytes",
            )
        if len(ctx.raw_headers) > self.max_header_count:
            limit = self.max_header_count
            return Refusal(
                431,
                f"The request has more header fields than this route accepts ({limit})",
                log_error=f"more than {limit} header fields",
            )
        if header_size(ctx) > self.max_header_size:
            limit = self.max_header_size
            return Refusal(
                431,
                f"The request headers are larger than this route accepts ({limit} bytes)",
                log_error=f"headers over {limit} bytes",
            )
        length = declared_length(ctx.header("content-length"))
        if length is not None and length > self.max_body_size:
            return too_large(self.max_body_size, pending=True)  # none of the body was read
        return None
