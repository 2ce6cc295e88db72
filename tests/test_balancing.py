"""Pure balancing decisions: rotation, smooth weighted picks, fallback eligibility, priority digits, geo."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from edge_router.config.formats.priority import parse_priority
from edge_router.routing import fallback, geo
from edge_router.routing.balancing import RoundRobin, SmoothWeighted
from edge_router.routing.fallback import is_failure_status, may_fall_back
from edge_router.routing.geo import continent_of, viewer_country

# --- round-robin ------------------------------------------------------------------------------------


def test_round_robin_advances_on_every_call_and_wraps() -> None:
    pool = RoundRobin()
    assert [pool.order(3) for _ in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_round_robin_spreads_first_picks_evenly(count: int) -> None:
    pool = RoundRobin()
    firsts = Counter(pool.order(count)[0] for _ in range(count * 100))
    assert firsts == dict.fromkeys(range(count), 100)


@pytest.mark.parametrize("count", [1, 2, 5])
def test_round_robin_order_offers_every_candidate_once(count: int) -> None:
    pool = RoundRobin(start=3)
    for _ in range(count + 1):
        assert sorted(pool.order(count)) == list(range(count))


def test_round_robin_state_is_per_pool() -> None:
    a, b = RoundRobin(), RoundRobin()
    a.order(3)
    a.order(3)
    assert b.order(3) == [0, 1, 2]
    assert a.order(3) == [2, 0, 1]


def test_round_robin_injected_start() -> None:
    assert RoundRobin(start=2).order(3) == [2, 0, 1]
    assert RoundRobin(start=5).order(3) == [2, 0, 1]  # taken modulo the pool size


def test_round_robin_follows_a_pool_that_changes_size() -> None:
    pool = RoundRobin()
    assert pool.order(4)[0] == 0
    assert pool.order(4)[0] == 1
    assert pool.order(4)[0] == 2
    assert pool.order(2) == [1, 0]  # position 3 in a pool of 2
    assert pool.order(2) == [0, 1]


def test_round_robin_empty_pool_does_not_advance() -> None:
    pool = RoundRobin()
    assert pool.order(0) == []
    assert pool.order(3) == [0, 1, 2]


@pytest.mark.parametrize("call", [lambda: RoundRobin(start=-1), lambda: RoundRobin().order(-1)])
def test_round_robin_rejects_negative(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        call()


# --- smooth weighted round-robin ----------------------------------------------------------------------


def test_swrr_matches_nginx_sequence_for_5_1_1() -> None:
    pool = SmoothWeighted([5, 1, 1])
    assert [pool.order()[0] for _ in range(14)] == [0, 0, 1, 0, 2, 0, 0] * 2


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([5, 3, 2], {0: 500, 1: 300, 2: 200}),
        ([1, 1, 0], {0: 500, 1: 500}),  # the drained target never appears
        ([0, 4, 0, 1], {1: 800, 3: 200}),
        ([7], {0: 1000}),
    ],
)
def test_swrr_exact_proportions_over_1000_picks(weights: list[int], expected: dict[int, int]) -> None:
    pool = SmoothWeighted(weights)
    assert Counter(pool.order()[0] for _ in range(1000)) == expected


def test_swrr_interleaves_instead_of_bursting() -> None:
    # 2:1 must alternate a a b, never a a a a b b: the heaviest never runs more than its share in a row.
    pool = SmoothWeighted([2, 1])
    assert [pool.order()[0] for _ in range(6)] == [0, 1, 0, 0, 1, 0]


@pytest.mark.parametrize(
    ("weights", "first_order"),
    [
        ([5, 3, 2], [0, 1, 2]),
        ([2, 5, 5, 1], [1, 2, 0, 3]),  # fallbacks: heaviest first, ties by index
        ([1, 0, 3], [2, 0]),  # weight 0 is not even a fallback
        ([0, 0, 4], [2]),
    ],
)
def test_swrr_fallbacks_follow_the_pick_by_weight(weights: list[int], first_order: list[int]) -> None:
    assert SmoothWeighted(weights).order() == first_order


def test_swrr_fallbacks_never_repeat_the_pick() -> None:
    pool = SmoothWeighted([2, 5, 5, 1])
    for _ in range(13):
        order = pool.order()
        assert sorted(order) == [0, 1, 2, 3]
        assert order[1:] == [index for index in [1, 2, 0, 3] if index != order[0]]


@pytest.mark.parametrize("weights", [[0, 0, 0], []])
def test_swrr_fully_drained_pool_is_empty(weights: list[int]) -> None:
    pool = SmoothWeighted(weights)
    assert pool.order() == []
    assert pool.order() == []


def test_swrr_state_is_per_pool() -> None:
    a, b = SmoothWeighted([5, 1, 1]), SmoothWeighted([5, 1, 1])
    for _ in range(2):
        a.order()
    assert b.order()[0] == 0
    assert a.order()[0] == 1


def test_swrr_rejects_negative_weight() -> None:
    with pytest.raises(ValueError, match="weight 1 is negative"):
        SmoothWeighted([1, -1])


# --- fallback eligibility -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (200, False),
        (204, False),
        (301, False),
        (304, False),
        (400, False),
        (401, False),
        (403, False),
        (404, True),
        (405, False),
        (409, False),
        (429, False),
        (499, False),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
    ],
)
def test_is_failure_status(status: int, failure: bool) -> None:
    assert is_failure_status(status) is failure


_METHODS = ["GET", "PUT", "POST", "PATCH"]
_IDEMPOTENT = {"GET": True, "PUT": True, "POST": False, "PATCH": False}
_FAILURES: list[tuple[fallback.Failure, int | None]] = [
    ("connect", None),
    ("timeout", None),
    ("protocol", None),
    ("status", 404),
    ("status", 500),
    ("status", 503),
    ("status", 401),
    ("status", 403),
]


def _expected(method: str, failure: str, status: int | None, retry: bool, replayable: bool) -> bool:
    # The rules written out independently of the implementation, as the issue states them.
    if failure == "connect":
        return True
    if failure == "status" and status not in (404, 500, 503):
        return False
    if not replayable:
        return False
    return _IDEMPOTENT[method] or retry


@pytest.mark.parametrize("replayable", [True, False])
@pytest.mark.parametrize("retry", [True, False])
@pytest.mark.parametrize(("failure", "status"), _FAILURES)
@pytest.mark.parametrize("method", _METHODS)
def test_may_fall_back_every_branch(
    method: str, failure: fallback.Failure, status: int | None, retry: bool, replayable: bool
) -> None:
    allowed = may_fall_back(
        method=method,
        failure=failure,
        status=status,
        retry_non_idempotent=retry,
        body_replayable=replayable,
    )
    assert allowed is _expected(method, failure, status, retry, replayable)


@pytest.mark.parametrize(
    ("method", "failure", "status", "retry", "replayable", "allowed"),
    [
        # The headline cases, spelled out so a reader need not run the matrix in their head.
        ("GET", "status", 404, False, True, True),
        ("GET", "status", 401, True, True, False),  # 401/403 are answers, never fallbacks
        ("GET", "status", 403, True, True, False),
        ("POST", "connect", None, False, False, True),  # nothing delivered: always safe
        ("POST", "timeout", None, False, True, False),  # may have been processed
        ("POST", "timeout", None, True, True, True),  # priority format's default
        ("PATCH", "status", 500, False, True, False),
        ("PATCH", "status", 500, True, True, True),
        ("PUT", "status", 502, False, True, True),  # idempotent: repeat is harmless
        ("DELETE", "protocol", None, False, True, True),
        ("HEAD", "timeout", None, False, True, True),
        ("OPTIONS", "status", 503, False, True, True),
        ("GET", "timeout", None, True, False, False),  # streamed body is gone
        ("PUT", "status", 500, True, False, False),
        ("get", "timeout", None, False, True, False),  # methods are case-sensitive: not GET
        ("PROPFIND", "timeout", None, False, True, False),  # unknown methods count as non-idempotent
        ("PROPFIND", "timeout", None, True, True, True),
    ],
)
def test_may_fall_back_named_cases(
    method: str,
    failure: fallback.Failure,
    status: int | None,
    retry: bool,
    replayable: bool,
    allowed: bool,
) -> None:
    assert (
        may_fall_back(
            method=method,
            failure=failure,
            status=status,
            retry_non_idempotent=retry,
            body_replayable=replayable,
        )
        is allowed
    )


def test_may_fall_back_status_failure_needs_a_status() -> None:
    with pytest.raises(ValueError, match="needs the status code"):
        may_fall_back(
            method="GET", failure="status", status=None, retry_non_idempotent=True, body_replayable=True
        )


# --- priority digits (seed 003) -----------------------------------------------------------------------

_PROVIDERS = {"1": "https://api.example", "2": "https://worker.example", "3": "https://lambda.example"}


@pytest.mark.parametrize(
    ("priority", "providers", "keys", "warned"),
    [
        ("213", _PROVIDERS, ["2", "1", "3"], []),
        ("1", _PROVIDERS, ["1"], []),
        ("", _PROVIDERS, [], []),
        ("24", _PROVIDERS, ["2"], ["'4'"]),  # no provider 4
        ("312", {**_PROVIDERS, "1": ""}, ["3", "2"], ["'1'"]),  # ${VAR} came out empty
        ("312", {**_PROVIDERS, "1": "  "}, ["3", "2"], ["'1'"]),
        ("2123", _PROVIDERS, ["2", "1", "3"], []),  # duplicates: first position only
        ("2 1", _PROVIDERS, ["2", "1"], ["' '"]),
        ("2,x1", _PROVIDERS, ["2", "1"], ["','", "'x'"]),
        ("44", _PROVIDERS, [], ["'4'"]),  # warned once, not per repetition
        # superscript two and Arabic-Indic one: str.isdigit() says yes, the priority format says no
        ("\u00b2\u0661", {"2": "https://a", "1": "https://b"}, [], ["'\u00b2'", "'\u0661'"]),
    ],
)
def test_parse_priority(priority: str, providers: dict[str, str], keys: list[str], warned: list[str]) -> None:
    got_keys, warnings = parse_priority(priority, providers)
    assert got_keys == keys
    assert len(warnings) == len(warned)
    for warning, char in zip(warnings, warned, strict=True):
        assert char in warning


@pytest.mark.parametrize(
    ("priority", "providers", "phrase"),
    [
        ("9", _PROVIDERS, "names no provider"),
        ("1", {"1": ""}, "URL is empty"),
        ("a", _PROVIDERS, "not a digit"),
    ],
)
def test_parse_priority_warning_says_why(priority: str, providers: dict[str, str], phrase: str) -> None:
    assert phrase in parse_priority(priority, providers)[1][0]


# --- geo (seed 002) ----------------------------------------------------------------------------------


def test_continent_table_covers_every_code_once() -> None:
    # 249 ISO 3166-1 alpha-2 codes plus XK; a code listed under two continents would shrink the count.
    assert len(geo.CONTINENT_OF_COUNTRY) == 250
    listed = [code for codes in geo._COUNTRIES_BY_CONTINENT.values() for code in codes.split()]
    assert len(listed) == len(set(listed)) == 250
    assert Counter(geo.CONTINENT_OF_COUNTRY.values()) == {
        "AF": 58,
        "AN": 5,
        "AS": 53,
        "EU": 53,
        "NA": 41,
        "OC": 26,
        "SA": 14,
    }


@pytest.mark.parametrize(
    ("country", "continent"),
    [
        ("US", "NA"),
        ("ca", "NA"),
        (" mx ", "NA"),
        ("BR", "SA"),
        ("DE", "EU"),
        ("GB", "EU"),
        ("RU", "EU"),
        ("CY", "EU"),
        ("XK", "EU"),
        ("TR", "AS"),
        ("JP", "AS"),
        ("IN", "AS"),
        ("TW", "AS"),
        ("NA", "AF"),  # Namibia
        ("EG", "AF"),
        ("ZA", "AF"),
        ("AU", "OC"),
        ("AS", "OC"),  # American Samoa
        ("NZ", "OC"),
        ("AQ", "AN"),
        ("PA", "NA"),
        ("GF", "SA"),
        ("XX", None),
        ("ZZ", None),
        ("EU", None),  # a continent, not a country
        ("", None),
        ("USA", None),
    ],
)
def test_continent_of(country: str, continent: str | None) -> None:
    assert continent_of(country) == continent


@pytest.mark.parametrize(
    ("headers", "country"),
    [
        ({"cloudfront-viewer-country": "DE"}, "DE"),
        ({"cf-ipcountry": "fr"}, "FR"),
        ({"cloudfront-viewer-country": "DE", "cf-ipcountry": "FR"}, "DE"),  # CloudFront first
        ({"cloudfront-viewer-country": "XX", "cf-ipcountry": "FR"}, "FR"),  # unknown does not decide
        ({"cloudfront-viewer-country": "", "cf-ipcountry": "FR"}, "FR"),
        ({"cloudfront-viewer-country": "XX"}, None),
        ({"cf-ipcountry": "T1"}, None),  # Tor
        ({"cf-ipcountry": "xx"}, None),
        ({"cf-ipcountry": ""}, None),
        ({"cf-ipcountry": "Germany"}, None),
        ({"cf-ipcountry": "D1"}, None),
        ({"cloudfront-viewer-country": " jp "}, "JP"),
        ({"x-country": "DE"}, None),
        ({}, None),
    ],
)
def test_viewer_country(headers: dict[str, str], country: str | None) -> None:
    assert viewer_country(headers) == country
