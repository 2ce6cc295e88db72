"""The response cache's decisions (CONTRACT section 9, RFC 9111 as a shared cache), pure.

What a gateway user notices: which answers are kept at all, how long they stay fresh, how old
they already were on arrival, and whether a stored answer is served, revalidated or fetched anew
for a request that says what it will accept.
"""

from __future__ import annotations

import math
import time
from email.utils import formatdate

import pytest

from edge_router.cache.directives import (
    MAX_DELTA,
    age_seconds,
    cache_control,
    cdn_cache_control,
    delta_seconds,
    entity_tags,
    field_names,
    http_date,
    weak_match,
)
from edge_router.cache.policy import (
    HEURISTIC_CAP_S,
    PLAIN_REQUEST,
    AnswerFacts,
    CacheRules,
    RequestFacts,
    Reuse,
    answer_facts,
    freshness_lifetime,
    initial_age,
    request_facts,
    reuse,
    why_not_stored,
)
from edge_router.cache.ranges import UNSATISFIABLE, byte_range

NOW = 1_700_000_000.0
DAY = 86400.0
RFC_EXAMPLE = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 5.6.7)


def imf(epoch: float) -> str:
    """An IMF-fixdate, the form backends send."""
    return formatdate(epoch, usegmt=True)


def facts(status: int = 200, *headers: tuple[str, str]) -> AnswerFacts:
    return answer_facts(status, [(name.lower().encode(), value.encode()) for name, value in headers])


TTL = CacheRules(ttl_s=300)
NO_TTL = CacheRules(ttl_s=0)
IGNORE = CacheRules(ttl_s=300, respect_cache_control=False)


# --- Cache-Control and friends -------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([b"Max-Age=60, PUBLIC"], {"max-age": b"60", "public": None}, id="names-lower-cased"),
        pytest.param([b'max-age="60"'], {"max-age": b"60"}, id="quoted-value-unquoted"),
        pytest.param(
            [b'no-cache="Set-Cookie, X-Foo", max-age=5'],
            {"no-cache": b"Set-Cookie, X-Foo", "max-age": b"5"},
            id="comma-inside-quotes",
        ),
        pytest.param([b'ext="a\\"b", private'], {"ext": b'a"b', "private": None}, id="escaped-quote"),
        pytest.param([b"max-age=60, max-age=10"], {"max-age": b"60"}, id="duplicate-keeps-first"),
        pytest.param(
            [b"max-age=60", b"max-age=10, private"],
            {"max-age": b"60", "private": None},
            id="duplicate-across-lines-keeps-first",
        ),
        pytest.param([b"public", b"s-maxage=30"], {"public": None, "s-maxage": b"30"}, id="several-lines"),
        pytest.param(
            [b"max-age = 60 ,  private"], {"max-age": b"60", "private": None}, id="spaces-around-equals"
        ),
        pytest.param([b", ,max-age=1,,"], {"max-age": b"1"}, id="empty-members-skipped"),
        pytest.param([], {}, id="no-lines"),
        pytest.param([b""], {}, id="empty-line"),
    ],
)
def test_cache_control_parsing(lines: list[bytes], expected: dict[str, bytes | None]) -> None:
    assert cache_control(lines) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b"max-age=60", 60, id="plain"),
        pytest.param(b"max-age=0", 0, id="zero"),
        pytest.param(b"private", None, id="absent"),
        pytest.param(b"max-age", -1, id="no-value-invalid"),
        pytest.param(b"max-age=abc", -1, id="letters-invalid"),
        pytest.param(b"max-age=-5", -1, id="negative-invalid"),
        pytest.param(b"max-age=1.5", -1, id="fraction-invalid"),
        pytest.param(b"max-age=", -1, id="empty-invalid"),
        pytest.param(b"max-age=99999999999999", MAX_DELTA, id="huge-capped-2^31"),
    ],
)
def test_delta_seconds(line: bytes, expected: int | None) -> None:
    assert delta_seconds(cache_control([line]), "max-age") == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"Sun, 06 Nov 1994 08:49:37 GMT", id="imf-fixdate"),
        pytest.param(b"Sunday, 06-Nov-94 08:49:37 GMT", id="rfc850"),
        pytest.param(b"Sun Nov  6 08:49:37 1994", id="asctime"),
    ],
)
def test_http_date_formats(value: bytes) -> None:
    assert http_date(value) == RFC_EXAMPLE


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="absent"),
        pytest.param(b"", id="empty"),
        pytest.param(b"0", id="zero"),
        pytest.param(b"-1", id="minus-one"),
        pytest.param(b"tomorrow", id="word"),
        pytest.param(b"Sun, 06 Nov 99999 08:49:37 GMT", id="year-out-of-range"),
        # not an HTTP-date (RFC 9110 5.6.7), though a lenient parser takes them: an Expires like
        # these must make the answer stale, never fresh for years
        pytest.param(b"Thu, 18 Aug 2050 02:01:18 UTC", id="utc-not-gmt"),
        pytest.param(b"Thu, 18 Aug 2050 02:01:18 AEST", id="other-zone"),
        pytest.param(b"Thu, 18 Aug 50 02:01:18 GMT", id="two-digit-year-in-imf"),
        pytest.param(b"Thu 18 Aug 2050 02:01:18 GMT", id="no-comma"),
        pytest.param(b"Thu, 18  Aug  2050 02:01:18 GMT", id="double-spaces"),
        pytest.param(b"Thu, 18-Aug-2050 02:01:18 GMT", id="dashes-with-four-digit-year"),
        pytest.param(b"Thu, 18 Aug 2050 02.01.18 GMT", id="time-periods"),
        pytest.param(b"Thu, 18 Aug 2050 2:01:18 GMT", id="one-digit-hour"),
        pytest.param(b"Thu, 31 Feb 2050 02:01:18 GMT", id="no-such-day"),
        pytest.param(b"Thu, 18 Aug 2050 25:01:18 GMT", id="no-such-hour"),
    ],
)
def test_http_date_invalid(value: bytes | None) -> None:
    assert http_date(value) is None


@pytest.mark.parametrize(
    "value",
    [b"THU, 18 AUG 2050 02:01:18 gmt", b"Thu Aug 18 02:01:18 2050"],
    ids=["any-case", "asctime"],
)
def test_http_date_forms_of_one_moment(value: bytes) -> None:
    assert http_date(value, now=RFC_EXAMPLE) == http_date(b"Thu, 18 Aug 2050 02:01:18 GMT")


def test_rfc850_two_digit_years_more_than_50_years_ahead_are_in_the_past() -> None:
    now = http_date(b"Sun, 06 Dec 2026 00:00:00 GMT")
    assert http_date(b"Sunday, 06-Nov-94 08:49:37 GMT", now=now) == RFC_EXAMPLE  # 1994, not 2094
    assert http_date(b"Thursday, 18-Aug-50 02:01:18 GMT", now=now) == http_date(
        b"Thu, 18 Aug 2050 02:01:18 GMT"
    )


def test_asctime_date_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """asctime-date carries no zone, and HTTP dates are always UTC (RFC 9110 5.6.7)."""
    monkeypatch.setenv("TZ", "EST5")
    time.tzset()
    try:
        assert http_date(b"Sun Nov  6 08:49:37 1994") == RFC_EXAMPLE
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(b"60", 60, id="plain"),
        pytest.param(b" 60 ", 60, id="spaces"),
        pytest.param(None, 0, id="absent"),
        pytest.param(b"-1", 0, id="negative"),
        pytest.param(b"abc", 0, id="letters"),
        pytest.param(b"1.5", 0, id="fraction"),
        pytest.param(b"99999999999999", MAX_DELTA, id="huge-capped"),
        pytest.param(b"3600, 0", 3600, id="list-first-member-counts"),
        pytest.param(b"0, 3600", 0, id="list-first-member-fresh"),
    ],
)
def test_age_seconds(value: bytes | None, expected: int) -> None:
    assert age_seconds(value) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([b"Accept-Encoding"], ("accept-encoding",), id="lower-cased"),
        pytest.param([b"Accept, accept-language", b"ACCEPT"], ("accept", "accept-language"), id="once-each"),
        pytest.param([b" , Origin ,"], ("origin",), id="empty-members"),
        pytest.param([b"*"], ("*",), id="star"),
    ],
)
def test_vary_field_names(lines: list[bytes], expected: tuple[str, ...]) -> None:
    assert field_names(lines) == expected


@pytest.mark.parametrize(
    ("stored", "if_none_match", "matches"),
    [
        pytest.param('"v1"', '"v1"', True, id="same-strong"),
        pytest.param('"v1"', 'W/"v1"', True, id="weak-request-matches-strong"),
        pytest.param('W/"v1"', '"v1"', True, id="strong-request-matches-weak"),
        pytest.param('"v1"', '"v0", "v1"', True, id="one-of-list"),
        pytest.param('"v1"', '"v2"', False, id="different"),
        pytest.param('"v1"', "*", True, id="star"),
        pytest.param('"v1"', "v1", False, id="unquoted-is-no-tag"),
    ],
)
def test_if_none_match_weak_comparison(stored: str, if_none_match: str, matches: bool) -> None:
    assert weak_match(stored, entity_tags(if_none_match)) is matches


# --- freshness lifetime (RFC 9111 4.2.1, 4.2.2) ---------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "rules", "expected"),
    [
        pytest.param([("Cache-Control", "s-maxage=10, max-age=60")], TTL, 10, id="s-maxage-beats-max-age"),
        pytest.param(
            [("Cache-Control", "max-age=60"), ("Date", imf(NOW)), ("Expires", imf(NOW + 3600))],
            TTL,
            60,
            id="max-age-beats-expires",
        ),
        pytest.param(
            [("Date", imf(NOW - 100)), ("Expires", imf(NOW + 500))], TTL, 600, id="expires-minus-date"
        ),
        pytest.param([("Expires", imf(NOW + 120))], TTL, 120, id="expires-without-date-uses-arrival"),
        pytest.param([("Date", imf(NOW)), ("Expires", imf(NOW - 60))], TTL, 0, id="expires-in-the-past"),
        pytest.param([("Expires", "0")], TTL, 0, id="invalid-expires-is-expired"),
        pytest.param([("Cache-Control", "max-age=0")], TTL, 0, id="explicit-zero-beats-ttl"),
        pytest.param([("Cache-Control", "max-age=soon")], TTL, 0, id="invalid-max-age-is-stale"),
        pytest.param([("Cache-Control", "max-age=3600")], TTL, 3600, id="own-max-age-over-ttl"),
        pytest.param([], TTL, 300, id="route-ttl-without-own"),
        pytest.param([("Cache-Control", "public")], TTL, 300, id="public-alone-gets-ttl"),
        pytest.param(
            [("Date", imf(NOW)), ("Last-Modified", imf(NOW - 100 * DAY))], TTL, 300, id="ttl-beats-heuristic"
        ),
        pytest.param(
            [("Date", imf(NOW)), ("Last-Modified", imf(NOW - 10_000))],
            NO_TTL,
            1000,
            id="heuristic-10-percent",
        ),
        pytest.param(
            [("Date", imf(NOW - 50)), ("Last-Modified", imf(NOW - 10_050))],
            NO_TTL,
            1000,
            id="heuristic-from-date-not-arrival",
        ),
        pytest.param(
            [("Date", imf(NOW)), ("Last-Modified", imf(NOW - 30 * DAY))],
            NO_TTL,
            HEURISTIC_CAP_S,
            id="heuristic-capped-a-day",
        ),
        pytest.param(
            [("Date", imf(NOW)), ("Last-Modified", imf(NOW + 60))], NO_TTL, 0, id="heuristic-future-modified"
        ),
        pytest.param([("Date", imf(NOW))], NO_TTL, 0, id="ttl-zero-nothing-known"),
        pytest.param([("Cache-Control", "no-cache, max-age=600")], TTL, 0, id="no-cache-is-zero"),
        pytest.param([("Cache-Control", "max-age=10")], IGNORE, 300, id="ignored-max-age"),
        pytest.param([("Cache-Control", "no-cache")], IGNORE, 300, id="ignored-no-cache"),
        pytest.param([("Expires", "0")], IGNORE, 300, id="ignored-invalid-expires"),
        pytest.param([("Cache-Control", "s-maxage=5")], IGNORE, 300, id="ignored-s-maxage"),
    ],
)
def test_freshness_lifetime(headers: list[tuple[str, str]], rules: CacheRules, expected: float) -> None:
    assert freshness_lifetime(facts(200, *headers), rules, NOW) == expected


@pytest.mark.parametrize(
    ("status", "cache_control", "expected"),
    [
        pytest.param(200, "", 1000, id="200-heuristic"),
        pytest.param(404, "", 1000, id="404-heuristic"),
        pytest.param(302, "", 0, id="302-no-heuristic"),
        pytest.param(302, "public", 1000, id="302-public-heuristic"),
    ],
)
def test_heuristic_only_for_statuses_that_allow_it(status: int, cache_control: str, expected: float) -> None:
    headers = [("Date", imf(NOW)), ("Last-Modified", imf(NOW - 10_000))]
    if cache_control:
        headers.append(("Cache-Control", cache_control))
    assert freshness_lifetime(facts(status, *headers), NO_TTL, NOW) == expected


# --- initial age (RFC 9111 4.2.3) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "request_time", "response_time", "rules", "expected"),
    [
        pytest.param([("Date", imf(NOW)), ("Age", "30")], NOW, NOW, TTL, 30, id="age-header"),
        pytest.param(
            [("Date", imf(NOW - 60)), ("Cache-Control", "max-age=600")],
            NOW,
            NOW,
            TTL,
            60,
            id="date-in-the-past",
        ),
        # freshness from the route's ttl: a backend clock that is slow must not age the answer
        pytest.param([("Date", imf(NOW - 600))], NOW, NOW, TTL, 0, id="ttl-freshness-ignores-date-skew"),
        pytest.param(
            [("Date", imf(NOW)), ("Age", "10")], NOW - 5, NOW, TTL, 15, id="age-plus-response-delay"
        ),
        pytest.param([("Date", imf(NOW))], NOW - 3, NOW, TTL, 3, id="response-delay-alone"),
        pytest.param(
            [("Date", imf(NOW - 100)), ("Age", "10"), ("Expires", imf(NOW + 500))],
            NOW - 2,
            NOW,
            TTL,
            100,
            id="apparent-wins",
        ),
        pytest.param([("Date", imf(NOW - 5)), ("Age", "10")], NOW, NOW, TTL, 10, id="corrected-wins"),
        pytest.param([("Date", imf(NOW + 500))], NOW - 2, NOW, TTL, 2, id="date-in-the-future-clamped"),
        pytest.param([("Age", "7")], NOW - 3, NOW, TTL, 10, id="no-date"),
        pytest.param([("Age", "bogus"), ("Date", imf(NOW))], NOW, NOW, TTL, 0, id="invalid-age"),
        pytest.param([("Date", imf(NOW - 60)), ("Age", "100")], NOW - 5, NOW, IGNORE, 0, id="ignored"),
    ],
)
def test_initial_age(
    headers: list[tuple[str, str]],
    request_time: float,
    response_time: float,
    rules: CacheRules,
    expected: float,
) -> None:
    assert initial_age(facts(200, *headers), rules, request_time, response_time) == expected


# --- what is stored -------------------------------------------------------------------------------

OWN = ("Cache-Control", "max-age=60")


@pytest.mark.parametrize(
    ("method", "status", "headers", "rules", "authorized", "request_no_store", "expected"),
    [
        pytest.param("GET", 200, [], TTL, False, False, None, id="plain-200"),
        pytest.param("HEAD", 200, [], TTL, False, False, None, id="head"),
        pytest.param("GET", 404, [], TTL, False, False, None, id="404"),
        pytest.param("GET", 410, [], TTL, False, False, None, id="410"),
        pytest.param("GET", 301, [], TTL, False, False, None, id="301"),
        pytest.param("POST", 200, [OWN], TTL, False, False, "method", id="post"),
        pytest.param("PUT", 200, [], TTL, False, False, "method", id="put"),
        pytest.param(
            "GET", 200, [OWN, ("Set-Cookie", "s=1")], TTL, False, False, "set-cookie", id="set-cookie"
        ),
        pytest.param(
            "GET", 200, [("Cache-Control", "private, max-age=60")], TTL, False, False, "private", id="private"
        ),
        pytest.param(
            "GET",
            200,
            [("Cache-Control", 'private="X-Token"')],
            TTL,
            False,
            False,
            "private",
            id="qualified-private",
        ),
        pytest.param(
            "GET", 200, [("Cache-Control", "no-store")], TTL, False, False, "no-store", id="no-store"
        ),
        pytest.param("GET", 200, [("Vary", "*")], TTL, False, False, "vary *", id="vary-star"),
        pytest.param(
            "GET",
            200,
            [("Vary", "Accept"), ("Vary", "*")],
            TTL,
            False,
            False,
            "vary *",
            id="vary-star-second-line",
        ),
        pytest.param("GET", 500, [OWN], TTL, False, False, "status", id="500-even-with-max-age"),
        pytest.param("GET", 503, [], TTL, False, False, "status", id="503"),
        pytest.param("GET", 206, [OWN], TTL, False, False, "status", id="206-partial"),
        pytest.param("GET", 304, [OWN], TTL, False, False, "status", id="304"),
        # RFC 9111 3: any final status may be stored with explicit freshness of its own...
        pytest.param("GET", 299, [OWN], TTL, False, False, None, id="unknown-status-with-freshness"),
        pytest.param("GET", 499, [OWN], TTL, False, False, None, id="unknown-4xx-with-freshness"),
        # ...unless must-understand says only a cache that knows the status may
        pytest.param(
            "GET",
            299,
            [("Cache-Control", "max-age=60, no-store, must-understand")],
            TTL,
            False,
            False,
            "must-understand",
            id="unknown-status-must-understand",
        ),
        pytest.param(
            "GET",
            200,
            [("Cache-Control", "max-age=60, no-store, must-understand")],
            TTL,
            False,
            False,
            None,
            id="known-status-must-understand-overrides-no-store",
        ),
        pytest.param("GET", 405, [], TTL, False, False, "status", id="405-not-by-default"),
        pytest.param("GET", 200, [], TTL, False, True, "request no-store", id="request-no-store"),
        pytest.param("GET", 200, [], IGNORE, False, True, None, id="request-no-store-ignored"),
        pytest.param("GET", 200, [], TTL, True, False, "authorization", id="authorized"),
        pytest.param("GET", 200, [OWN], TTL, True, False, "authorization", id="authorized-max-age"),
        pytest.param(
            "GET", 200, [("Cache-Control", "public")], TTL, True, False, None, id="authorized-public"
        ),
        pytest.param(
            "GET", 200, [("Cache-Control", "s-maxage=60")], TTL, True, False, None, id="authorized-s-maxage"
        ),
        pytest.param(
            "GET",
            200,
            [("Cache-Control", "must-revalidate")],
            TTL,
            True,
            False,
            None,
            id="authorized-must-revalidate",
        ),
        pytest.param("GET", 302, [], TTL, False, False, "status", id="302-without-freshness"),
        pytest.param("GET", 302, [OWN], TTL, False, False, None, id="302-max-age"),
        pytest.param("GET", 302, [("Expires", imf(NOW + 60))], TTL, False, False, None, id="302-expires"),
        pytest.param(
            "GET", 307, [("Cache-Control", "s-maxage=9")], TTL, False, False, None, id="307-s-maxage"
        ),
        pytest.param("GET", 302, [("Cache-Control", "public")], TTL, False, False, None, id="302-public"),
        pytest.param("GET", 200, [], NO_TTL, False, False, "no freshness", id="ttl0-nothing"),
        pytest.param("GET", 200, [("ETag", '"v1"')], NO_TTL, False, False, None, id="ttl0-etag"),
        pytest.param(
            "GET",
            200,
            [("Last-Modified", imf(NOW - DAY))],
            NO_TTL,
            False,
            False,
            None,
            id="ttl0-last-modified",
        ),
        pytest.param("GET", 200, [OWN], NO_TTL, False, False, None, id="ttl0-max-age"),
        pytest.param(
            "GET", 200, [("Cache-Control", "no-cache")], NO_TTL, False, False, None, id="ttl0-no-cache"
        ),
        pytest.param("GET", 200, [], IGNORE, False, False, None, id="ignored-200"),
        pytest.param("GET", 302, [OWN], IGNORE, False, False, "status", id="ignored-302-max-age"),
        pytest.param(
            "GET",
            200,
            [("Cache-Control", "no-store")],
            IGNORE,
            False,
            False,
            "no-store",
            id="ignored-still-no-store",
        ),
        pytest.param(
            "GET",
            200,
            [("Set-Cookie", "a=b")],
            IGNORE,
            False,
            False,
            "set-cookie",
            id="ignored-still-set-cookie",
        ),
        pytest.param(
            "GET",
            200,
            [("Cache-Control", "private")],
            IGNORE,
            False,
            False,
            "private",
            id="ignored-still-private",
        ),
        pytest.param("GET", 502, [], IGNORE, False, False, "status", id="ignored-still-5xx"),
    ],
)
def test_why_not_stored(
    method: str,
    status: int,
    headers: list[tuple[str, str]],
    rules: CacheRules,
    authorized: bool,
    request_no_store: bool,
    expected: str | None,
) -> None:
    answer = facts(status, *headers)
    reason = why_not_stored(method, answer, rules, authorized=authorized, request_no_store=request_no_store)
    assert reason == expected


# --- what a request accepts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("controls", "pragma", "expected"),
    [
        pytest.param([], None, PLAIN_REQUEST, id="plain"),
        pytest.param([b"no-cache"], None, RequestFacts(no_cache=True), id="no-cache"),
        pytest.param(
            [b"max-age=0"], None, RequestFacts(no_cache=True, max_age=0), id="max-age-0-is-no-cache"
        ),
        pytest.param([b"max-age=30"], None, RequestFacts(max_age=30), id="max-age"),
        pytest.param([b"max-age=soon"], None, PLAIN_REQUEST, id="invalid-max-age-ignored"),
        pytest.param([], b"no-cache", RequestFacts(no_cache=True), id="pragma-alone"),
        pytest.param([], b"No-Cache", RequestFacts(no_cache=True), id="pragma-case"),
        pytest.param([b"max-age=30"], b"no-cache", RequestFacts(max_age=30), id="pragma-ignored-with-cc"),
        pytest.param([], b"foo", PLAIN_REQUEST, id="other-pragma"),
        pytest.param([b"max-stale"], None, RequestFacts(max_stale=math.inf), id="max-stale-any"),
        pytest.param([b"max-stale=30"], None, RequestFacts(max_stale=30.0), id="max-stale-value"),
        pytest.param([b"max-stale=0"], None, RequestFacts(max_stale=0.0), id="max-stale-zero"),
        pytest.param([b"max-stale=x"], None, RequestFacts(max_stale=0.0), id="max-stale-invalid"),
        pytest.param([b"min-fresh=10"], None, RequestFacts(min_fresh=10), id="min-fresh"),
        pytest.param([b"min-fresh=x"], None, PLAIN_REQUEST, id="min-fresh-invalid"),
        pytest.param([b"only-if-cached"], None, RequestFacts(only_if_cached=True), id="only-if-cached"),
        pytest.param([b"no-store"], None, RequestFacts(no_store=True), id="no-store"),
        pytest.param(
            [b"max-age=5", b"Min-Fresh=2, MAX-STALE"],
            None,
            RequestFacts(max_age=5, min_fresh=2, max_stale=math.inf),
            id="several-lines",
        ),
    ],
)
def test_request_facts(controls: list[bytes], pragma: bytes | None, expected: RequestFacts) -> None:
    assert request_facts(controls, pragma) == expected


@pytest.mark.parametrize(
    ("age", "lifetime", "must_revalidate", "has_validator", "swr", "asked", "expected"),
    [
        pytest.param(10, 60, False, False, 0, PLAIN_REQUEST, Reuse.FRESH, id="fresh"),
        pytest.param(70, 60, False, True, 0, PLAIN_REQUEST, Reuse.REVALIDATE, id="stale-validator"),
        pytest.param(70, 60, False, False, 0, PLAIN_REQUEST, Reuse.FETCH, id="stale-no-validator"),
        pytest.param(70, 60, False, False, 30, PLAIN_REQUEST, Reuse.STALE_WHILE_REVALIDATE, id="within-swr"),
        pytest.param(90, 60, False, False, 30, PLAIN_REQUEST, Reuse.STALE_WHILE_REVALIDATE, id="swr-edge"),
        pytest.param(91, 60, False, True, 30, PLAIN_REQUEST, Reuse.REVALIDATE, id="past-swr-validator"),
        pytest.param(91, 60, False, False, 30, PLAIN_REQUEST, Reuse.FETCH, id="past-swr-no-validator"),
        pytest.param(
            70, 60, True, True, 30, PLAIN_REQUEST, Reuse.REVALIDATE, id="must-revalidate-blocks-swr"
        ),
        pytest.param(70, 60, True, False, 30, PLAIN_REQUEST, Reuse.FETCH, id="must-revalidate-no-validator"),
        pytest.param(
            70, 60, False, True, 0, RequestFacts(max_stale=math.inf), Reuse.FRESH, id="max-stale-any"
        ),
        pytest.param(70, 60, False, True, 0, RequestFacts(max_stale=10.0), Reuse.FRESH, id="max-stale-edge"),
        pytest.param(
            71, 60, False, True, 0, RequestFacts(max_stale=10.0), Reuse.REVALIDATE, id="past-max-stale"
        ),
        pytest.param(
            70,
            60,
            True,
            True,
            0,
            RequestFacts(max_stale=math.inf),
            Reuse.REVALIDATE,
            id="must-revalidate-blocks-max-stale",
        ),
        pytest.param(
            30, 60, False, True, 0, RequestFacts(max_age=10), Reuse.REVALIDATE, id="older-than-max-age"
        ),
        pytest.param(
            30,
            60,
            False,
            False,
            0,
            RequestFacts(max_age=10),
            Reuse.FETCH,
            id="older-than-max-age-no-validator",
        ),
        pytest.param(30, 60, False, True, 0, RequestFacts(max_age=30), Reuse.FRESH, id="max-age-edge"),
        pytest.param(
            70,
            60,
            False,
            True,
            30,
            RequestFacts(max_age=100),
            Reuse.REVALIDATE,
            id="request-max-age-blocks-swr",
        ),
        pytest.param(
            40, 60, False, True, 0, RequestFacts(min_fresh=30), Reuse.REVALIDATE, id="min-fresh-unmet"
        ),
        pytest.param(40, 60, False, True, 0, RequestFacts(min_fresh=20), Reuse.FRESH, id="min-fresh-edge"),
        pytest.param(40, 60, False, True, 0, RequestFacts(min_fresh=10), Reuse.FRESH, id="min-fresh-met"),
    ],
)
def test_reuse(
    age: float,
    lifetime: float,
    must_revalidate: bool,
    has_validator: bool,
    swr: float,
    asked: RequestFacts,
    expected: Reuse,
) -> None:
    decision = reuse(
        age=age,
        lifetime=lifetime,
        must_revalidate=must_revalidate,
        has_validator=has_validator,
        stale_while_revalidate=swr,
        request=asked,
    )
    assert decision is expected


@pytest.mark.parametrize(
    ("lifetime", "has_validator", "expected"),
    [
        pytest.param(60, True, Reuse.REVALIDATE, id="at-lifetime-validator"),
        pytest.param(0, True, Reuse.REVALIDATE, id="max-age-0-etag-same-instant"),
        pytest.param(60, False, Reuse.FETCH, id="at-lifetime-no-validator"),
    ],
)
def test_reuse_exactly_stale_without_swr_is_not_served(
    lifetime: float, has_validator: bool, expected: Reuse
) -> None:
    decision = reuse(
        age=lifetime,
        lifetime=lifetime,
        must_revalidate=False,
        has_validator=has_validator,
        stale_while_revalidate=0.0,
        request=PLAIN_REQUEST,
    )
    assert decision is expected


def test_max_stale_does_not_lift_the_requests_max_age() -> None:
    decision = reuse(
        age=200,
        lifetime=100,
        must_revalidate=False,
        has_validator=True,
        stale_while_revalidate=0.0,
        request=RequestFacts(max_age=10, max_stale=math.inf),
    )
    assert decision is Reuse.REVALIDATE


def test_max_stale_within_max_age_is_served() -> None:
    """`max-age=300, max-stale`: a stale answer 200 s old is what the client accepts."""
    decision = reuse(
        age=200,
        lifetime=100,
        must_revalidate=False,
        has_validator=True,
        stale_while_revalidate=0.0,
        request=RequestFacts(max_age=300, max_stale=math.inf),
    )
    assert decision is Reuse.FRESH


@pytest.mark.parametrize(
    ("cache_control", "must_revalidate"),
    [
        pytest.param("max-age=60", False, id="plain"),
        pytest.param("must-revalidate", True, id="must-revalidate"),
        pytest.param("proxy-revalidate", True, id="proxy-revalidate"),
        pytest.param("s-maxage=60", True, id="s-maxage-implies-it"),
        pytest.param("no-cache", True, id="no-cache"),
    ],
)
def test_answers_that_are_never_served_stale(cache_control: str, must_revalidate: bool) -> None:
    assert facts(200, ("Cache-Control", cache_control)).must_revalidate is must_revalidate


@pytest.mark.parametrize(
    ("headers", "field", "expected"),
    [
        pytest.param([("Date", imf(NOW)), ("Date", imf(NOW - 99))], "date", NOW, id="first-date"),
        pytest.param([("ETag", '"a"'), ("ETag", '"b"')], "etag", b'"a"', id="first-etag"),
        pytest.param([("Age", "5"), ("Age", "50")], "age", 5, id="first-age"),
        pytest.param([("Set-Cookie", "a=1")], "set_cookie", True, id="set-cookie"),
        pytest.param([("Vary", "Accept"), ("Vary", "Origin")], "vary", ("accept", "origin"), id="vary-lines"),
    ],
)
def test_answer_facts_reads_the_first_of_repeated_fields(
    headers: list[tuple[str, str]], field: str, expected: object
) -> None:
    assert getattr(facts(200, *headers), field) == expected


# --- CDN-Cache-Control (RFC 9213) and byte ranges ------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([b"max-age=3600"], {"max-age": b"3600"}, id="max-age"),
        pytest.param([b"foobar, max-age=3600"], {"foobar": None, "max-age": b"3600"}, id="extension"),
        pytest.param([b"private"], {"private": None}, id="private"),
        pytest.param([b"no-store", b"max-age=5"], {"no-store": None, "max-age": b"5"}, id="two-lines"),
        pytest.param([], None, id="absent"),
        pytest.param([b"max-age=10000, &&&&&"], None, id="not-a-structured-field"),
        pytest.param([b'max-age="10000"'], None, id="max-age-a-string"),
        pytest.param([b"max-age =100"], None, id="space-before-equals"),
        pytest.param([b"MaX-aGe=3600"], None, id="upper-case-key"),
        pytest.param([b"max-age=-1"], None, id="negative"),
    ],
)
def test_cdn_cache_control(lines: list[bytes], expected: dict[str, bytes | None] | None) -> None:
    assert cdn_cache_control(lines) == expected


@pytest.mark.parametrize(
    ("headers", "lifetime", "stored"),
    [
        pytest.param(
            [("CDN-Cache-Control", "max-age=60"), ("Cache-Control", "no-store")], 60, True, id="wins-over-cc"
        ),
        pytest.param(
            [("CDN-Cache-Control", "max-age=1"), ("Cache-Control", "max-age=3600")], 1, True, id="shorter"
        ),
        pytest.param([("CDN-Cache-Control", "max-age=60"), ("Expires", "0")], 60, True, id="expires-ignored"),
        pytest.param(
            [("CDN-Cache-Control", "private"), ("Cache-Control", "max-age=60")], None, False, id="private"
        ),
        pytest.param(
            [("CDN-Cache-Control", "no-store"), ("Cache-Control", "max-age=60")], None, False, id="no-store"
        ),
        pytest.param(
            [("CDN-Cache-Control", "&&"), ("Cache-Control", "max-age=7")], 7, True, id="invalid-ignored"
        ),
    ],
)
def test_cdn_cache_control_targets_this_cache(
    headers: list[tuple[str, str]], lifetime: float | None, stored: bool
) -> None:
    rules = CacheRules(ttl_s=0)
    facts = answer_facts(200, [(n.encode(), v.encode()) for n, v in headers])
    reason = why_not_stored("GET", facts, rules, authorized=False, request_no_store=False)
    assert (reason is None) is stored
    if lifetime is not None:
        assert freshness_lifetime(facts, rules, NOW) == lifetime


def test_two_expires_lines_make_the_answer_stale() -> None:
    one = "Thu, 18 Aug 2050 02:01:18 GMT"
    facts = answer_facts(200, [(b"expires", one.encode()), (b"expires", one.encode())])
    assert freshness_lifetime(facts, CacheRules(ttl_s=0), NOW) == 0


@pytest.mark.parametrize(
    ("header", "length", "expected"),
    [
        pytest.param("bytes=0-1", 11, (0, 1), id="first-two"),
        pytest.param("bytes=5-", 11, (5, 10), id="open-ended"),
        pytest.param("bytes=-3", 11, (8, 10), id="suffix"),
        pytest.param("bytes=-30", 11, (0, 10), id="suffix-longer-than-body"),
        pytest.param("bytes=3-100", 11, (3, 10), id="end-past-body"),
        pytest.param("bytes=11-", 11, UNSATISFIABLE, id="start-past-body"),
        pytest.param("bytes=-0", 11, UNSATISFIABLE, id="empty-suffix"),
        pytest.param("bytes=5-3", 11, None, id="backwards-ignored"),
        pytest.param("bytes=0-1,4-5", 11, None, id="several-ranges-ignored"),
        pytest.param("items=0-1", 11, None, id="other-unit-ignored"),
        pytest.param("bytes=-", 11, None, id="no-numbers"),
    ],
)
def test_byte_range(header: str, length: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, length) == expected
