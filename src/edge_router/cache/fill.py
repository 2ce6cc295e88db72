"""Filling the cache from an answer as it is relayed: `CacheFill`, the proxy's `AnswerTap`.

The proxy's `deliver` tells the fill the answer's head, every body chunk and, only when the body
ended as the backend meant it to, that it is complete. The fill decides at the head whether the
answer may be kept at all (`policy.why_not_stored`, and a Content-Length over the entry cap), so
an answer that will not be stored is never copied; a streamed body that grows past the cap stops
being copied there and streams on, unstored. A broken-off body is never stored.

When the fill revalidates a stored entry, it carries the entry's validators to the backend; a 304
refreshes the entry in place (RFC 9111 4.3.4: the 304's headers replace the stored ones, its Date
and Cache-Control give the new freshness) and the proxy answers from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..http.context import RequestContext
from ..types import Header
from .directives import delta_seconds
from .flights import Landed
from .keys import header_values
from .policy import AnswerFacts, CacheRules, answer_facts, freshness_lifetime, initial_age, why_not_stored
from .store import Entry, PrimaryKey, ResponseCache

# Not stored: the router computes Age; a 304's Content-Length describes no body of its own.
_NOT_STORED = frozenset({b"age"})
_NOT_REFRESHED = frozenset({b"age", b"content-length", b"content-encoding", b"transfer-encoding"})


class CacheFill:
    __slots__ = (
        "_body",
        "_clock",
        "_ctx",
        "_facts",
        "_has_cors",
        "_headers",
        "_key",
        "_label",
        "_request_no_store",
        "_request_time",
        "_response_time",
        "_revalidating",
        "_rules",
        "_size",
        "_source",
        "_store",
        "landed",
        "refreshed",
        "upstream_headers",
    )

    def __init__(
        self,
        *,
        ctx: RequestContext,
        rules: CacheRules,
        key: PrimaryKey,
        label: str,
        store: ResponseCache | None,
        clock: Callable[[], float],
        request_no_store: bool = False,
        revalidating: tuple[Entry, tuple[str, ...]] | None = None,
    ) -> None:
        self._ctx, self._rules, self._key, self._label = ctx, rules, key, label
        self._store, self._clock = store, clock
        self._request_no_store = request_no_store
        self._revalidating = revalidating
        self._request_time = clock()
        self._response_time = self._request_time
        self._facts: AnswerFacts | None = None
        self._headers: list[Header] = []
        self._source = ""
        self._has_cors = False
        self._body: list[bytes] | None = None
        self._size = 0
        self.landed: Landed | None = None  # the answer as stored (or shared with followers)
        self.refreshed: Entry | None = None  # the entry a 304 refreshed
        self.upstream_headers: list[tuple[str, str]] = []
        if revalidating is not None:
            entry = revalidating[0]
            if entry.etag is not None:
                self.upstream_headers.append(("if-none-match", entry.etag.decode("latin-1")))
            if entry.last_modified is not None:
                self.upstream_headers.append(("if-modified-since", entry.last_modified.decode("latin-1")))

    def head(
        self, status: int, headers: list[Header], source: str, has_cors: bool, content_length: int | None
    ) -> bool:
        if self._revalidating is not None and status == 304:
            self.refreshed = self._refresh(headers)
            return False
        facts = answer_facts(status, headers)
        ctx, rules = self._ctx, self._rules
        authorized = ctx.header("authorization") is not None
        reason = why_not_stored(
            ctx.method, facts, rules, authorized=authorized, request_no_store=self._request_no_store
        )
        if reason is None and ctx.method == "GET" and (content_length or 0) > rules.max_entry_bytes:
            reason = "size"
        if reason is not None:
            if self._revalidating is not None and self._store is not None and status < 500:
                self._store.discard(self._key, self._revalidating[1])  # superseded, not keepable
            return True
        self._facts, self._source, self._has_cors = facts, source, has_cors
        self._response_time = self._clock()  # when the head arrived (RFC 9111 4.2.3's response_time)
        self._headers = [header for header in headers if header[0].lower() not in _NOT_STORED]
        self._body = []
        return True

    def chunk(self, data: bytes) -> None:
        if self._body is None:
            return
        self._size += len(data)
        if self._size > self._rules.max_entry_bytes:
            self._body = None  # too large to keep: it streams on, unstored
        else:
            self._body.append(data)

    def complete(self) -> None:
        facts, body = self._facts, self._body
        if facts is None or body is None:
            return
        self._body = None
        whole = b"".join(body)
        if self._ctx.method == "GET" and not any(
            name.lower() == b"content-length" for name, _ in self._headers
        ):
            # a streamed (chunked) answer, now whole: a hit says how long it is
            self._headers.append((b"content-length", b"%d" % len(whole)))
        entry = self._entry(facts, whole)
        if entry is None:
            return
        values = header_values(self._ctx, facts.vary)
        self.landed = Landed(entry, facts.vary, values)
        if self._store is not None:
            self._store.put(self._key, facts.vary, values, entry)

    def _entry(self, facts: AnswerFacts, body: bytes) -> Entry | None:
        """The entry to store, or None when it would be of no use (stale on arrival, with no
        validator to revalidate it by and no stale-while-revalidate)."""
        entry = Entry(
            status=facts.status,
            headers=self._headers,
            body=body,
            source=self._source,
            label=self._label,
            response_time=self._response_time,
            initial_age=0.0,
            lifetime=0.0,
            stale_while_revalidate=0.0,
            must_revalidate=False,
            has_cors=self._has_cors,
        )
        _freshen(entry, facts, self._rules, self._request_time)
        useless = entry.lifetime <= entry.initial_age and not entry.has_validator
        return None if useless and entry.stale_while_revalidate <= 0 else entry

    def _refresh(self, headers: list[Header]) -> Entry:
        """RFC 9111 4.3.4: the 304's headers replace the stored ones of the same names. When the
        merged answer may no longer be stored (the 304 added `Set-Cookie`, `private`, `no-store`),
        this caller gets it once and the stored entry goes: it is never served to another."""
        entry, values = self._revalidating or (None, ())
        assert entry is not None
        fresh = [header for header in headers if header[0].lower() not in _NOT_REFRESHED]
        names = {name.lower() for name, _ in fresh}
        merged = [header for header in entry.headers if header[0].lower() not in names] + fresh
        ages = [header for header in headers if header[0].lower() == b"age"]
        facts = answer_facts(entry.status, [*merged, *ages])
        ctx = self._ctx
        keepable = why_not_stored(
            ctx.method,
            facts,
            self._rules,
            authorized=ctx.header("authorization") is not None,
            request_no_store=self._request_no_store,
        )
        target = entry if keepable is None else replace(entry)
        if keepable is not None and self._store is not None:
            self._store.discard(self._key, values)
        old_size = target.size
        target.headers, target.response_time = merged, self._clock()
        _freshen(target, facts, self._rules, self._request_time)
        target.measure()
        if keepable is None and self._store is not None:
            self._store.resized(self._key, values, target, old_size)
        return target


def _freshen(entry: Entry, facts: AnswerFacts, rules: CacheRules, request_time: float) -> None:
    """Set the entry's freshness from its (new) headers, as of its `response_time`."""
    entry.lifetime = freshness_lifetime(facts, rules, entry.response_time)
    entry.initial_age = initial_age(facts, rules, request_time, entry.response_time)
    swr, on_error = rules.stale_while_revalidate_s, rules.stale_if_error_s
    if rules.respect_cache_control:
        own = delta_seconds(facts.directives, "stale-while-revalidate")
        swr = max(swr, float(own)) if own is not None and own > 0 else swr
        own = delta_seconds(facts.directives, "stale-if-error")  # RFC 5861
        on_error = max(on_error, float(own)) if own is not None and own > 0 else on_error
        entry.must_revalidate = facts.must_revalidate
    entry.stale_while_revalidate, entry.stale_if_error = swr, on_error
    entry.etag, entry.last_modified = facts.etag, facts.last_modified
