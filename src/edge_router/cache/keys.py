"""Which stored answers a request may be given: its cache keys (CONTRACT section 9, RFC 9111 4.1).

The primary key is the method, the Host, the request target as received (path and query), the
values of the route's `varyBy` headers and, unless the route is `public`, the caller's identity:
`Authorization`, `Cookie`, an API key (`X-API-Key`, or the header the route's API-key guard reads)
and the key id a valid one proved. One caller's answer is never another's. The secondary key is
the values of the headers the backend's `Vary` named.
"""

from __future__ import annotations

from ..http.context import RequestContext
from .policy import CacheRules
from .store import PrimaryKey

IDENTITY_HEADERS = ("authorization", "cookie", "x-api-key")


def request_target(ctx: RequestContext) -> str:
    """The path and query as received: what keys and the admin's invalidation prefixes use."""
    return f"{ctx.raw_path}?{ctx.query.decode('latin-1')}" if ctx.query else ctx.raw_path


def header_values(ctx: RequestContext, names: tuple[str, ...]) -> tuple[str, ...]:
    """Each named header's value (repeated lines joined with ", "; "" when absent)."""
    if not names:
        return ()
    found: dict[str, list[str]] = {}
    for name, value in ctx.headers:
        if name in names:
            found.setdefault(name, []).append(value.strip())
    return tuple(", ".join(found.get(name, ())) for name in names)


def identity(ctx: RequestContext) -> tuple[str, ...]:
    """Who is asking, as far as a backend may tell callers apart; () for an anonymous caller."""
    names: tuple[str, ...] = IDENTITY_HEADERS
    if ctx.hidden_headers:
        names = (*names, *sorted(ctx.hidden_headers - set(IDENTITY_HEADERS)))
    values = header_values(ctx, names)
    principal = (ctx.principal.key_id,) if ctx.principal is not None else ()
    if not principal and not any(values):
        return ()
    return (*values, *principal)


def primary_key(ctx: RequestContext, rules: CacheRules) -> PrimaryKey:
    return (
        ctx.method,
        (ctx.header("host") or "").lower(),
        request_target(ctx),
        header_values(ctx, rules.vary_by),
        () if rules.public else identity(ctx),
    )


def label(method: str, target: str) -> str:
    """`METHOD::path?query`, seed 002's form of an entry's name for invalidation."""
    return f"{method}::{target}"
