"""The cache stage (CONTRACT section 9): after the route's guards, before the candidates.

`CacheStage.serve(ex, caching, onward)` answers from the cache when it can and otherwise sends
the exchange `onward` (candidates -> attempts -> deliver) with a `CacheFill` tapping the answer:

* GET/HEAD, key found, fresh: the stored bytes, `X-Cache: HIT` and `Age` (a 304 when the
  client's own validators match);
* stale within stale-while-revalidate (server mode): served stale, one background revalidation
  per key; on Lambda nothing runs after the answer, so a stale entry is revalidated inline;
* stale with a validator: a conditional request upstream; a 304 refreshes the entry, which is
  then served (`HIT`); anything else is relayed (and stored if it may be): `MISS`;
* not found: `MISS`, through the route's coalescing when it has one (`cache.flights`);
* `bypassHeader`, or with `respectCacheControl` a request's `no-cache` / `max-age=0` / `no-store`:
  `BYPASS`, fetched anew (stored, unless the request said `no-store`);
* any other method: `BYPASS`; when it succeeds (2xx/3xx) every stored answer for its URI goes
  (RFC 9111 4.4).

Routes without a `cache` or `deduplication` block never reach this module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from ..cache.directives import entity_tags, http_date, weak_match
from ..cache.fill import CacheFill
from ..cache.flights import Coalescer
from ..cache.keys import header_values, label, primary_key, request_target
from ..cache.policy import (
    CACHEABLE_METHODS,
    PLAIN_REQUEST,
    CacheRules,
    Caching,
    RequestFacts,
    Reuse,
    request_facts,
    reuse,
)
from ..cache.ranges import UNSATISFIABLE, byte_range
from ..cache.store import Entry, PrimaryKey, ResponseCache
from ..exceptions import Refusal
from ..http.channel import Nowhere, WholeBody
from ..http.context import RequestContext
from ..observability.outcome import RequestOutcome
from ..types import Header
from .deliver import finish_head
from .exchange import Exchange

logger = logging.getLogger("edge_router.cache")

Onward = Callable[[Exchange], Awaitable[None]]


class Found(NamedTuple):
    """A stored entry a request found: under which key and Vary values, and how it may be used."""

    key: PrimaryKey
    entry: Entry
    values: tuple[str, ...]
    reuse: Reuse


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Background revalidations at once (one per key at most): a burst of stale keys cannot turn into
# a burst of upstream requests.
MAX_BACKGROUND = 64
# A follower whose leader failed asks again; bounded, so a backend that fails every time costs
# each follower at most this many waits before it goes upstream on its own.
MAX_JOINS = 3
_CONDITIONAL = frozenset(
    {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"}
)


class CacheStage:
    def __init__(
        self, store: ResponseCache, coalescer: Coalescer, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.coalescer = coalescer
        self._clock = clock
        self._refreshing: dict[PrimaryKey, asyncio.Task[None]] = {}

    async def serve(self, ex: Exchange, caching: Caching, onward: Onward) -> None:
        ctx, rules = ex.ctx, caching.rules
        if ctx.method not in CACHEABLE_METHODS:
            await self._unsafe(ex, rules, onward)
            return
        key = primary_key(ctx, caching.sharing)
        if rules is None:  # coalescing only
            await self._upstream(ex, caching, key, onward, PLAIN_REQUEST)
            return
        request = _request(ctx, rules)
        if request.no_store or request.no_cache or (rules.bypass_header and ctx.header(rules.bypass_header)):
            _mark(ex, b"BYPASS")
            ex.tap = None if request.no_store else self._fill(ctx, rules, key, request)
            await onward(ex)
            return
        await self._cached(ex, caching, rules, key, request, onward)

    async def _cached(
        self,
        ex: Exchange,
        caching: Caching,
        rules: CacheRules,
        key: PrimaryKey,
        request: RequestFacts,
        onward: Onward,
    ) -> None:
        """A GET or HEAD the cache may answer: from the store, after revalidating, or upstream;
        a stale entry stands in when the backend fails (RFC 9111 4.2.4)."""
        found = self._lookup(ex.ctx, key, request)
        if found is not None and found.reuse in (Reuse.FRESH, Reuse.STALE_WHILE_REVALIDATE):
            if found.reuse is Reuse.STALE_WHILE_REVALIDATE:
                self._revalidate_later(ex, rules, found, onward)
            self.store.hits += 1
            await self._send_entry(ex, found.entry, b"HIT")
            return
        if request.only_if_cached:
            raise Refusal(
                504, "Not in the cache, and the request says only-if-cached", log_error="only-if-cached miss"
            )
        try:
            if found is not None and found.reuse is Reuse.REVALIDATE and not _conditional(ex.ctx):
                await self._revalidate(ex, rules, found, onward)
            else:
                await self._upstream(ex, caching, key, onward, request)
        except Refusal as refusal:
            if found is None or not self._may_stand_in(found.entry, refusal):
                raise
            ex.outcome.error = f"served stale, the backend failed: {refusal.log_error}"
            await self._send_entry(ex, found.entry, b"HIT")

    def _lookup(self, ctx: RequestContext, key: PrimaryKey, request: RequestFacts) -> Found | None:
        """The stored entry for this request, its Vary values, and how it may be used."""
        names = self.store.vary_names(key)
        if names is None:
            return None
        values = header_values(ctx, names)
        entry = self.store.get(key, values)
        if entry is None:
            return None
        decision = reuse(
            age=entry.age(self._clock()),
            lifetime=entry.lifetime,
            must_revalidate=entry.must_revalidate,
            has_validator=entry.has_validator,
            stale_while_revalidate=entry.stale_while_revalidate if not ctx.buffered else 0.0,
            request=request,
        )
        return Found(key, entry, values, decision)

    def _may_stand_in(self, entry: Entry, refusal: Refusal) -> bool:
        """Whether a stale entry may answer for a backend that failed (502/503/504): not when it
        says must-revalidate (or no-cache, s-maxage), and not when staler than its stale-if-error."""
        if refusal.status not in (502, 503, 504) or entry.must_revalidate:
            return False
        stale_by = entry.age(self._clock()) - entry.lifetime
        return stale_by <= entry.stale_if_error

    async def _revalidate(self, ex: Exchange, rules: CacheRules, found: Found, onward: Onward) -> None:
        """Ask the backend with the entry's validators: a 304 refreshes and serves it."""
        fill = self._fill(ex.ctx, rules, found.key, PLAIN_REQUEST, revalidating=(found.entry, found.values))
        ex.tap = fill
        _mark(ex, b"MISS")
        await onward(ex)
        if fill.refreshed is None:
            self.store.misses += 1
            return
        self.store.hits += 1
        await self._send_entry(ex, fill.refreshed, b"HIT")

    async def _upstream(
        self, ex: Exchange, caching: Caching, key: PrimaryKey, onward: Onward | None, request: RequestFacts
    ) -> None:
        """Go upstream for a miss: alone, or as a flight's leader or follower."""
        ctx, rules = ex.ctx, caching.rules
        fill = self._fill(ctx, caching.sharing, key, request, store=rules is not None)
        window = caching.coalesce_window_s
        if window is not None and ctx.method == "GET" and not ctx.buffered:
            for _ in range(MAX_JOINS):
                flight, leader = self.coalescer.join(key)
                if leader:
                    try:
                        await self._fetch(ex, rules, fill, onward)
                    finally:
                        self.coalescer.land(key, flight, fill.landed)
                    return
                arrived, landed = await self.coalescer.follow(flight, window)
                if landed is not None and header_values(ctx, landed.vary_names) == landed.vary_values:
                    self.coalescer.served()
                    if rules is not None:
                        self.store.hits += 1
                    await self._send_entry(ex, landed.entry, b"HIT" if rules is not None else None)
                    return
                if not arrived:
                    break
        await self._fetch(ex, rules, fill, onward)

    async def _fetch(
        self, ex: Exchange, rules: CacheRules | None, fill: CacheFill, onward: Onward | None
    ) -> None:
        if rules is not None:
            self.store.misses += 1
            _mark(ex, b"MISS")
        ex.tap = fill
        if onward is not None:
            await onward(ex)

    async def _unsafe(self, ex: Exchange, rules: CacheRules | None, onward: Onward) -> None:
        """Any method but GET and HEAD: never from the cache; a success invalidates its URI."""
        if rules is None:
            await onward(ex)
            return
        _mark(ex, b"BYPASS")
        await onward(ex)
        ctx = ex.ctx
        if ctx.method not in SAFE_METHODS and 200 <= ex.outcome.status < 400:
            self.store.invalidate_target((ctx.header("host") or "").lower(), request_target(ctx))

    def _fill(
        self,
        ctx: RequestContext,
        rules: CacheRules,
        key: PrimaryKey,
        request: RequestFacts,
        *,
        store: bool = True,
        revalidating: tuple[Entry, tuple[str, ...]] | None = None,
    ) -> CacheFill:
        return CacheFill(
            ctx=ctx,
            rules=rules,
            key=key,
            label=label(ctx.method, request_target(ctx)),
            store=self.store if store else None,
            clock=self._clock,
            request_no_store=request.no_store,
            revalidating=revalidating,
        )

    async def _send_entry(self, ex: Exchange, entry: Entry, x_cache: bytes | None) -> None:
        """Answer from `entry`: its bytes (or the one range asked for), this request's CORS and
        ids, `Age`; a 304 when the client's validators match it."""
        ctx, outcome = ex.ctx, ex.outcome
        if x_cache is not None:
            _mark(ex, x_cache)
        status, headers, body = entry.status, list(entry.headers), entry.body
        if status == 200 and _not_modified(ctx, entry):
            status, body = 304, b""
            headers = [h for h in headers if h[0].lower() != b"content-length"]
        elif status == 200 and ctx.method == "GET" and (asked := _range(ctx, entry)) is not None:
            status, headers, body = _partial(headers, body, asked)
        headers = finish_head(ex, headers, entry.source, entry.has_cors)
        headers.append((b"age", b"%d" % int(entry.age(self._clock()))))
        outcome.status, outcome.backend = status, entry.source
        if ctx.method == "HEAD":
            body = b""
        await ex.answer.whole(status, headers, body)

    def _revalidate_later(self, ex: Exchange, rules: CacheRules, found: Found, onward: Onward) -> None:
        """stale-while-revalidate: one background request refreshes the entry (never two per key)."""
        key, entry = found.key, found.entry
        if key in self._refreshing or len(self._refreshing) >= MAX_BACKGROUND:
            return
        ctx = _background_context(ex.ctx)
        outcome = RequestOutcome(ctx.method, ctx.path, ctx.request_id)
        quiet = Exchange(ctx, WholeBody(), Nowhere(), ex.config, outcome, ex.cors, ex.route)
        validating = (entry, found.values) if entry.has_validator else None
        quiet.tap = self._fill(ctx, rules, key, PLAIN_REQUEST, revalidating=validating)
        task = asyncio.get_running_loop().create_task(self._quietly(onward, quiet, key))
        self._refreshing[key] = task

    async def _quietly(self, onward: Onward, ex: Exchange, key: PrimaryKey) -> None:
        try:
            await onward(ex)
        except Exception as exc:  # a background refresh that fails leaves the entry as it was
            logger.info("background revalidation failed: %s", exc, extra={"request_id": ex.ctx.request_id})
        finally:
            self._refreshing.pop(key, None)

    async def aclose(self) -> None:
        tasks = list(self._refreshing.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _request(ctx: RequestContext, rules: CacheRules) -> RequestFacts:
    if not rules.respect_cache_control:
        return PLAIN_REQUEST
    controls = [value.encode("latin-1", "replace") for name, value in ctx.headers if name == "cache-control"]
    pragma = ctx.header("pragma")
    return request_facts(controls, pragma.encode("latin-1", "replace") if pragma is not None else None)


def _mark(ex: Exchange, value: bytes) -> None:
    """Say `X-Cache: value` on whatever answer this request gets (once: a later verdict wins)."""
    headers = ex.ctx.answer_headers
    for index, (name, _) in enumerate(headers):
        if name == b"x-cache":
            headers[index] = (b"x-cache", value)
            break
    else:
        headers.append((b"x-cache", value))
    ex.outcome.cache = value.decode()


def _conditional(ctx: RequestContext) -> bool:
    return any(name in _CONDITIONAL for name, _ in ctx.headers)


def _not_modified(ctx: RequestContext, entry: Entry) -> bool:
    """RFC 9110 13.1.2/13.1.3 evaluated against the stored answer (If-None-Match wins)."""
    none_match = ctx.header("if-none-match")
    if none_match is not None:
        return entry.etag is not None and weak_match(entry.etag.decode("latin-1"), entity_tags(none_match))
    since_value = ctx.header("if-modified-since")
    since = http_date(since_value.encode("latin-1", "replace")) if since_value is not None else None
    modified = http_date(entry.last_modified)
    return since is not None and modified is not None and modified <= since


def _range(ctx: RequestContext, entry: Entry) -> tuple[int, int] | None:
    """The byte range to serve of the entry, if the request asks for one it may have."""
    asked = ctx.header("range")
    if asked is None:
        return None
    if_range = ctx.header("if-range")
    if if_range is not None and (entry.etag is None or if_range.strip() != entry.etag.decode("latin-1")):
        return None  # If-Range names another version (or a date): the whole answer
    return byte_range(asked, len(entry.body))


def _partial(headers: list[Header], body: bytes, asked: tuple[int, int]) -> tuple[int, list[Header], bytes]:
    """(status, headers, body) of a 206 (or a 416) for the byte range `asked` of `body`."""
    kept = [h for h in headers if h[0].lower() not in (b"content-length", b"content-range")]
    if asked == UNSATISFIABLE:
        return 416, [*kept, (b"content-range", b"bytes */%d" % len(body)), (b"content-length", b"0")], b""
    first, last = asked
    part = body[first : last + 1]
    extra = [
        (b"content-range", b"bytes %d-%d/%d" % (first, last, len(body))),
        (b"content-length", b"%d" % len(part)),
    ]
    return 206, [*kept, *extra], part


def _background_context(ctx: RequestContext) -> RequestContext:
    """A copy of the request for a background revalidation: no conditional headers of the
    client's, the same identity (what the guards learned included)."""
    raw = [(n, v) for n, v in ctx.raw_headers if n.decode("latin-1").lower() not in _CONDITIONAL]
    copy = RequestContext(
        method=ctx.method,
        raw_path=ctx.raw_path,
        query=ctx.query,
        raw_headers=raw,
        client=ctx.client,
        scheme=ctx.scheme,
        http_version=ctx.http_version,
    )
    copy.client_address, copy.principal = ctx.client_address, ctx.principal
    copy.hidden_headers = ctx.hidden_headers
    return copy
