"""The response cache's decisions (RFC 9111, as a shared cache), pure and clock-injected.

* `CacheRules`: a route's `cache` block, compiled once (CONTRACT section 9);
* `answer_facts`: what caching reads of an answer's head, parsed once;
* `why_not_stored`: the reason an answer may not be stored (None: it may);
* `freshness_lifetime` / `initial_age`: RFC 9111 4.2.1 and 4.2.3;
* `request_facts` / `reuse`: whether a stored answer may satisfy a request as it is, must be
  revalidated first, or may be served stale while it is revalidated in the background.

`respectCacheControl` off means the route's `ttl` is every stored answer's freshness; what can
never be stored stays so either way (`Set-Cookie`, `private`, `no-store`, `Vary: *`, 5xx).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ..types import Header
from .directives import (
    Directives,
    age_seconds,
    cache_control,
    cdn_cache_control,
    delta_seconds,
    field_names,
    http_date,
)

MIB = 1024 * 1024
DEFAULT_TTL_S = 300.0
# A stale entry answers for a backend that fails (RFC 9111 4.2.4) when it is at most this stale.
DEFAULT_STALE_IF_ERROR_S = 300.0
DEFAULT_ENTRY_BYTES = 1 * MIB
DEFAULT_TOTAL_BYTES = 64 * MIB
# A heuristic freshness (RFC 9111 4.2.2: 10% of the time since Last-Modified) never exceeds a day.
HEURISTIC_CAP_S = 86400.0

# CONTRACT section 9: stored on the route's TTL alone. With explicit freshness of its own an
# answer of any final status may be stored (RFC 9111 3), but 206 (ranges are not stored), 304 and
# every 5xx never are; `must-understand` limits it to the statuses understood here.
CACHEABLE_BY_DEFAULT = frozenset({200, 203, 204, 301, 404, 410})
HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414})
UNDERSTOOD_STATUSES = HEURISTIC_STATUSES | {302, 303, 307, 400, 401, 403, 451}
CACHEABLE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class CacheRules:
    """A route's `cache` block (seed 002's names)."""

    ttl_s: float = DEFAULT_TTL_S
    respect_cache_control: bool = True
    vary_by: tuple[str, ...] = ()  # lower-case request header names
    bypass_header: str | None = None  # lower-case
    stale_while_revalidate_s: float = 0.0
    stale_if_error_s: float = DEFAULT_STALE_IF_ERROR_S
    public: bool = False  # True: one entry for every caller (no identity in the key)
    max_entry_bytes: int = DEFAULT_ENTRY_BYTES


@dataclass(frozen=True, slots=True)
class AnswerFacts:
    """What the cache reads of an answer's head."""

    status: int
    directives: Directives
    date: float | None
    expires: bytes | None  # raw: an invalid Expires means "already expired"
    last_modified: bytes | None
    etag: bytes | None
    age: int
    vary: tuple[str, ...]
    set_cookie: bool
    targeted: bool = False  # the directives are CDN-Cache-Control's (RFC 9213): Expires is ignored

    @property
    def has_validator(self) -> bool:
        return self.etag is not None or self.last_modified is not None

    @property
    def must_revalidate(self) -> bool:
        """Never served stale: must-revalidate, proxy-revalidate, s-maxage (RFC 9111 5.2.2.10), no-cache."""
        d = self.directives
        return "must-revalidate" in d or "proxy-revalidate" in d or "s-maxage" in d or "no-cache" in d


def answer_facts(status: int, headers: Sequence[Header]) -> AnswerFacts:
    controls: list[bytes] = []
    targeted: list[bytes] = []
    vary: list[bytes] = []
    found: dict[bytes, bytes] = {}
    expires_lines = 0
    set_cookie = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"cache-control":
            controls.append(value)
        elif lower == b"cdn-cache-control":
            targeted.append(value)
        elif lower == b"vary":
            vary.append(value)
        elif lower == b"set-cookie":
            set_cookie = True
        elif lower in (b"date", b"expires", b"last-modified", b"etag", b"age"):
            expires_lines += lower == b"expires"
            found.setdefault(lower, value)  # the first of a repeated one (RFC 9111 4.2.1)
    cdn = cdn_cache_control(targeted)
    return AnswerFacts(
        status=status,
        directives=cdn if cdn is not None else cache_control(controls),
        date=http_date(found.get(b"date")),
        # two Expires lines disagree or repeat themselves: invalid, i.e. already expired
        expires=found.get(b"expires") if expires_lines < 2 else b"",
        last_modified=found.get(b"last-modified"),
        etag=found.get(b"etag"),
        age=age_seconds(found.get(b"age")),
        vary=field_names(vary),
        set_cookie=set_cookie,
        targeted=cdn is not None,
    )


def _explicit_lifetime(facts: AnswerFacts, response_time: float) -> float | None:
    """s-maxage, max-age or Expires (in that order); None when the answer has none."""
    for name in ("s-maxage", "max-age"):
        seconds = delta_seconds(facts.directives, name)
        if seconds is not None:
            return max(0.0, float(seconds))
    if facts.expires is not None and not facts.targeted:
        expires = http_date(facts.expires)
        if expires is None:
            return 0.0  # an invalid Expires (e.g. "0") is in the past
        return max(0.0, expires - (facts.date if facts.date is not None else response_time))
    return None


def freshness_lifetime(facts: AnswerFacts, rules: CacheRules, response_time: float) -> float:
    """How long the answer is fresh, in seconds (RFC 9111 4.2.1; the route's TTL as configured)."""
    if not rules.respect_cache_control:
        return rules.ttl_s
    if "no-cache" in facts.directives:
        return 0.0
    explicit = _explicit_lifetime(facts, response_time)
    if explicit is not None:
        return explicit
    if rules.ttl_s > 0:
        return rules.ttl_s
    return _heuristic(facts, response_time)


def _heuristic(facts: AnswerFacts, response_time: float) -> float:
    """RFC 9111 4.2.2: 10% of the time since Last-Modified, for a status that allows it."""
    if facts.status not in HEURISTIC_STATUSES and "public" not in facts.directives:
        return 0.0
    modified = http_date(facts.last_modified)
    if modified is None:
        return 0.0
    date = facts.date if facts.date is not None else response_time
    return min(HEURISTIC_CAP_S, max(0.0, (date - modified) / 10))


def initial_age(facts: AnswerFacts, rules: CacheRules, request_time: float, response_time: float) -> float:
    """RFC 9111 4.2.3's corrected initial age: how old the answer already was when it arrived.

    The apparent age (from the backend's Date) counts only when the answer's freshness is its own:
    a route's `ttl` is the gateway's promise, and a backend whose clock is minutes slow must not
    make every answer stale on arrival (nginx ignores Date there too)."""
    if not rules.respect_cache_control:
        return 0.0
    explicit = facts.date is not None and _explicit_lifetime(facts, response_time) is not None
    apparent = max(0.0, response_time - facts.date) if explicit and facts.date is not None else 0.0
    corrected = facts.age + max(0.0, response_time - request_time)
    return max(apparent, corrected)


def why_not_stored(
    method: str, facts: AnswerFacts, rules: CacheRules, *, authorized: bool, request_no_store: bool
) -> str | None:
    """Why this answer may not be stored for this request; None when it may (RFC 9111 3)."""
    d = facts.directives
    if method not in CACHEABLE_METHODS:
        return "method"
    if request_no_store and rules.respect_cache_control:
        return "request no-store"
    if reason := _refused_by_the_answer(facts):
        return reason
    if not rules.respect_cache_control:
        return None if facts.status in CACHEABLE_BY_DEFAULT else "status"
    explicit = _explicit_lifetime(facts, 0.0) is not None or "public" in d
    if facts.status not in CACHEABLE_BY_DEFAULT and not explicit:
        heuristic = rules.ttl_s == 0 and facts.status in HEURISTIC_STATUSES and _heuristic(facts, 0.0) > 0
        if not heuristic:
            return "status"
    # RFC 9111 3.5: a shared cache stores an answer to an authorized request only when the
    # answer says it may (the key holds the caller's identity all the same).
    if authorized and not ("public" in d or "s-maxage" in d or "must-revalidate" in d):
        return "authorization"
    if explicit or rules.ttl_s > 0 or facts.has_validator or "no-cache" in d:
        return None
    return None if _heuristic(facts, 0.0) > 0 else "no freshness"


def _refused_by_the_answer(facts: AnswerFacts) -> str | None:
    """What in the answer itself forbids storing it, whatever the route says."""
    d, status = facts.directives, facts.status
    # 5xx: never stored (CONTRACT section 9), though RFC 9111 would allow it with freshness.
    # 206 (no ranges are stored) and 304 are not understood as answers to store.
    if status >= 500 or status < 200 or status in (206, 304):
        return "status"
    if "must-understand" in d:
        if status not in UNDERSTOOD_STATUSES:
            return "must-understand"
    elif "no-store" in d:  # RFC 9111 5.2.2.3: must-understand on a status we know overrides no-store
        return "no-store"
    if "private" in d:
        return "private"
    if facts.set_cookie:
        return "set-cookie"
    if "*" in facts.vary:
        return "vary *"
    return None


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a request says of cached answers (RFC 9111 5.2.1)."""

    no_store: bool = False
    no_cache: bool = False  # also `max-age=0` and Pragma: no-cache without Cache-Control
    max_age: int | None = None
    min_fresh: int | None = None
    max_stale: float | None = None  # inf: any staleness
    only_if_cached: bool = False


PLAIN_REQUEST = RequestFacts()


def request_facts(controls: list[bytes], pragma: bytes | None) -> RequestFacts:
    if not controls:
        return (
            RequestFacts(no_cache=True)
            if pragma is not None and b"no-cache" in pragma.lower()
            else PLAIN_REQUEST
        )
    d = cache_control(controls)
    max_age = delta_seconds(d, "max-age")
    max_stale: float | None = None
    if "max-stale" in d:
        stale = delta_seconds(d, "max-stale")
        max_stale = math.inf if d["max-stale"] is None else (float(stale) if stale and stale > 0 else 0.0)
    min_fresh = delta_seconds(d, "min-fresh")
    return RequestFacts(
        no_store="no-store" in d,
        no_cache="no-cache" in d or max_age == 0,
        max_age=max_age if max_age is not None and max_age >= 0 else None,
        min_fresh=min_fresh if min_fresh is not None and min_fresh >= 0 else None,
        max_stale=max_stale,
        only_if_cached="only-if-cached" in d,
    )


class Reuse(Enum):
    FRESH = "fresh"  # serve it
    STALE_WHILE_REVALIDATE = "swr"  # serve it, and revalidate in the background
    REVALIDATE = "revalidate"  # ask the backend with its validators first
    FETCH = "fetch"  # unusable: fetch anew


def reuse(
    *,
    age: float,
    lifetime: float,
    must_revalidate: bool,
    has_validator: bool,
    stale_while_revalidate: float,
    request: RequestFacts,
) -> Reuse:
    """How a stored answer of `age` seconds may satisfy a request."""
    fresh_left = lifetime - age
    acceptable = fresh_left > 0
    if request.max_age is not None and age > request.max_age:
        acceptable = False
    if request.min_fresh is not None and fresh_left < request.min_fresh:
        acceptable = False
    if acceptable:
        return Reuse.FRESH
    stale_by = -fresh_left
    if not must_revalidate and stale_by >= 0:
        within_max_age = request.max_age is None or age <= request.max_age
        if request.max_stale is not None and stale_by <= request.max_stale and within_max_age:
            return Reuse.FRESH
        if stale_while_revalidate > 0 and stale_by <= stale_while_revalidate and request.max_age is None:
            return Reuse.STALE_WHILE_REVALIDATE
    return Reuse.REVALIDATE if has_validator else Reuse.FETCH


DEFAULT_COALESCE_WINDOW_S = 5.0
# What decides whether a coalesced answer may be shared, on a route that coalesces but does not
# cache: the rules of a shared cache, with a freshness that never matters (nothing is stored).
SHARING_RULES = CacheRules()


@dataclass(frozen=True, slots=True)
class Caching:
    """A route's response cache and request coalescing, compiled once (either may be off)."""

    rules: CacheRules | None = None
    coalesce_window_s: float | None = None  # None: no coalescing

    @property
    def sharing(self) -> CacheRules:
        return self.rules or SHARING_RULES
