"""Token buckets: the pure GCRA step (`token_bucket.take`) by tables, the per-process LRU
(`LocalBuckets`), and the rate-limit guard (`RateLimitGuard`) as a client sees it — headers, the 429,
whose bucket a request spends, multipliers, and what happens when the store cannot answer.

Every clock is injected: times are exact, nothing sleeps.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

from edge_router.exceptions import Refusal, StateStoreError
from edge_router.guards import token_bucket
from edge_router.guards.buckets import LocalBuckets
from edge_router.guards.rate_limit import RateLimitGuard
from edge_router.guards.services import Rate, Take
from edge_router.http.context import Principal, RequestContext
from support import Clock, run

EPOCH = 1_700_000_000.0  # tats are epoch seconds: test where floats are coarse
TEN_PER_MINUTE = Rate(interval_s=6.0, capacity=10)


def spend(rate: Rate, times: list[float], tat: float | None = None) -> list[Take]:
    """The answers to requests at `times` (seconds after EPOCH), the tat carried along."""
    answers = []
    for at in times:
        answer, tat = token_bucket.take(tat, EPOCH + at, rate)
        answers.append(answer)
    return answers


# --- the GCRA step ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "times", "allowed"),
    [
        # a burst of C at once, then refused
        (TEN_PER_MINUTE, [0.0] * 11, [True] * 10 + [False]),
        (Rate(interval_s=1.0, capacity=1), [0.0, 0.0, 0.999, 1.0], [True, False, False, True]),
        # refill one token per interval after the burst: at 6 s, not before
        (
            TEN_PER_MINUTE,
            [0.0] * 10 + [5.9, 6.0, 6.0, 11.99, 12.0],
            [True] * 10 + [False, True, False, False, True],
        ),
        # a long idle bucket holds C tokens, never more
        (TEN_PER_MINUTE, [0.0] + [3600.0] * 11, [True] + [True] * 10 + [False]),
        # fractional capacity (burst x multiplier = 2.5): 2 at once, the half token half an interval later
        (
            Rate(interval_s=4.0, capacity=2.5),
            [0.0, 0.0, 0.0, 1.99, 2.0, 2.0],
            [True, True, False, False, True, False],
        ),
    ],
)
def test_which_requests_a_bucket_admits(rate: Rate, times: list[float], allowed: list[bool]) -> None:
    assert [answer.allowed for answer in spend(rate, times)] == allowed


def test_remaining_counts_down_to_zero_and_a_refusal_spends_nothing() -> None:
    answers = spend(TEN_PER_MINUTE, [0.0] * 12)
    assert [a.remaining for a in answers] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0]
    fractional = spend(Rate(interval_s=4.0, capacity=2.5), [0.0, 0.0])
    assert [a.remaining for a in fractional] == [1, 0]

    # refused requests did not move the tat: the token arrives on time however often one asks
    answer, tat = token_bucket.take(None, EPOCH, TEN_PER_MINUTE)
    for _ in range(9):
        answer, tat = token_bucket.take(tat, EPOCH, TEN_PER_MINUTE)
    before = tat
    for at in (1.0, 2.0, 5.0):
        answer, tat = token_bucket.take(tat, EPOCH + at, TEN_PER_MINUTE)
        assert not answer.allowed and tat == before
    assert token_bucket.take(tat, EPOCH + 6.0, TEN_PER_MINUTE)[0].allowed


@pytest.mark.parametrize(
    ("spent_at", "asked_at", "retry_after"),
    [(0.0, 0.0, 6.0), (0.0, 2.5, 3.5), (0.0, 5.999, 0.001), (10.0, 10.0, 6.0)],
)
def test_retry_after_is_the_time_until_the_next_token(
    spent_at: float, asked_at: float, retry_after: float
) -> None:
    tat = None
    for _ in range(10):
        _, tat = token_bucket.take(tat, EPOCH + spent_at, TEN_PER_MINUTE)
    answer, _ = token_bucket.take(tat, EPOCH + asked_at, TEN_PER_MINUTE)
    assert not answer.allowed and answer.remaining == 0
    assert answer.retry_after_s == pytest.approx(retry_after, abs=1e-5)
    # and asking exactly then is allowed
    assert token_bucket.take(tat, EPOCH + asked_at + answer.retry_after_s, TEN_PER_MINUTE)[0].allowed


def test_refill_is_n_per_w_seconds_over_a_long_run() -> None:
    # a client sending 10 per second for 10 minutes against 10 per minute: the burst, then one per 6 s
    times = [n / 10 for n in range(6000)]
    allowed = sum(answer.allowed for answer in spend(TEN_PER_MINUTE, times))
    assert allowed == 10 + 99  # refills at 6, 12, ... 594 s

    per_second = Rate(interval_s=0.01, capacity=100)  # 100 per second
    times = [n / 1000 for n in range(5000)]  # 1000 per second for 5 s
    assert sum(answer.allowed for answer in spend(per_second, times)) == 100 + 499


def test_a_tat_far_ahead_costs_at_most_one_interval() -> None:
    # the wall clock stepped back an hour (or a reload shrank the limit): refused one interval, not an hour
    answer, tat = token_bucket.take(EPOCH + 3600.0, EPOCH, TEN_PER_MINUTE)
    assert not answer.allowed and answer.retry_after_s == pytest.approx(6.0)
    assert tat == EPOCH + 60.0
    assert token_bucket.take(tat, EPOCH + 6.0, TEN_PER_MINUTE)[0].allowed


def test_float_rounding_on_epoch_times_never_costs_a_token() -> None:
    rate = Rate(interval_s=0.1, capacity=3)  # 0.1 is not exact in binary
    tat = None
    for n in range(1000):
        for _ in range(3):
            answer, tat = token_bucket.take(tat, EPOCH + n * 0.3, rate)
            assert answer.allowed, n
        assert not token_bucket.take(tat, EPOCH + n * 0.3, rate)[0].allowed


def test_a_rate_that_admits_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        Rate(interval_s=6.0, capacity=0.5)
    with pytest.raises(ValueError):
        Rate(interval_s=0.0, capacity=1)


# --- LocalBuckets ----------------------------------------------------------------------------------


def test_local_buckets_are_independent_per_key() -> None:
    clock = Clock(EPOCH)
    buckets = LocalBuckets(clock=clock)
    rate = Rate(interval_s=6.0, capacity=2)
    assert [run(buckets.take("a", rate)).allowed for _ in range(3)] == [True, True, False]
    assert run(buckets.take("b", rate)).allowed
    clock.now += 6.0
    assert buckets.take_now("a", rate) == Take(allowed=True, remaining=0)
    assert buckets.take_now("a", rate) == Take(allowed=False, remaining=0, retry_after_s=6.0)


def test_local_buckets_evict_the_least_recently_used() -> None:
    clock = Clock(EPOCH)
    buckets = LocalBuckets(max_buckets=2, clock=clock)
    one = Rate(interval_s=60.0, capacity=1)
    assert buckets.take_now("a", one).allowed and buckets.take_now("b", one).allowed
    assert not buckets.take_now("a", one).allowed  # a is now the most recently used
    assert buckets.take_now("c", one).allowed  # b, the oldest, is dropped
    assert len(buckets) == 2
    assert not buckets.take_now("a", one).allowed  # a kept its spending
    assert buckets.take_now("b", one).allowed  # b was forgotten: a full bucket again
    with pytest.raises(ValueError):
        LocalBuckets(max_buckets=0)


# --- RateLimitGuard --------------------------------------------------------------------------------


class FakeStore:
    """A BucketStore that answers what the test says and records what it was asked."""

    def __init__(self, *answers: Take | StateStoreError) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, Rate]] = []

    async def take(self, key: str, rate: Rate) -> Take:
        self.asked.append((key, rate))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, StateStoreError):
            raise answer
        return answer


def request(client: str | None = "127.0.0.2", principal: Principal | None = None) -> RequestContext:
    ctx = RequestContext(method="GET", raw_path="/x", raw_headers=[(b"host", b"router")], client=client)
    ctx.principal = principal
    return ctx


def guard(store: Any, **overrides: Any) -> RateLimitGuard:
    settings: dict[str, Any] = {
        "scope": "/api",
        "requests": 10,
        "window_s": 60.0,
        "burst": None,
        "multiplier": 1.0,
        "store": store,
    }
    return RateLimitGuard(**(settings | overrides))


def test_an_allowed_request_is_told_its_limit_and_what_remains() -> None:
    store = FakeStore(Take(allowed=True, remaining=7))
    ctx = request()
    assert run(guard(store).on_request(ctx)) is None
    assert ctx.answer_headers == [(b"ratelimit-limit", b"10"), (b"ratelimit-remaining", b"7")]
    assert store.asked == [("/api#ip:127.0.0.2", Rate(interval_s=6.0, capacity=10))]


@pytest.mark.parametrize(("retry_after_s", "header"), [(3.5, b"4"), (0.2, b"1"), (0.0, b"1"), (6.0, b"6")])
def test_a_refused_request_gets_429_with_whole_seconds_to_wait(retry_after_s: float, header: bytes) -> None:
    ctx = request()
    refusal = run(guard(FakeStore(Take(False, 0, retry_after_s))).on_request(ctx))
    assert isinstance(refusal, Refusal) and refusal.status == 429
    assert refusal.headers == (
        (b"retry-after", header),
        (b"ratelimit-limit", b"10"),
        (b"ratelimit-remaining", b"0"),
    )
    assert refusal.extra == {"retry_after": int(header)}
    assert refusal.log_error == "rate limited"
    assert "retry in" in refusal.message
    assert ctx.answer_headers == []  # the refusal carries its own


def test_a_request_with_an_api_key_spends_the_keys_bucket_at_the_keys_rate() -> None:
    store = FakeStore(Take(allowed=True, remaining=0))
    limited = guard(store, burst=20, multiplier=2.0)
    with_key = request(principal=Principal(key_id="k-1", rate_limit_multiplier=0.5))
    run(limited.on_request(with_key))
    run(limited.on_request(request(client="::ffff:10.0.0.1")))
    run(limited.on_request(request(principal=Principal(key_id="k-2", rate_limit_multiplier=3.0))))
    assert store.asked == [
        ("/api#key:k-1", Rate(interval_s=6.0, capacity=20.0)),  # route x2, key x0.5
        ("/api#ip:10.0.0.1", Rate(interval_s=3.0, capacity=40.0)),  # route x2; a mapped IPv4 peer as IPv4
        ("/api#key:k-2", Rate(interval_s=1.0, capacity=120.0)),
    ]
    assert with_key.answer_headers[0] == (b"ratelimit-limit", b"20")


def test_multipliers_round_capacity_down_and_never_below_one_request() -> None:
    store = FakeStore(Take(allowed=True, remaining=1))
    ctx = request()
    run(guard(store, requests=5, multiplier=0.5).on_request(ctx))
    assert store.asked[-1][1] == Rate(interval_s=24.0, capacity=2.5)
    assert ctx.answer_headers[0] == (b"ratelimit-limit", b"2")
    # a key whose multiplier would leave less than one token still gets one request at a time
    tiny = request(principal=Principal(key_id="k", rate_limit_multiplier=0.01))
    run(guard(store, requests=5).on_request(tiny))
    assert store.asked[-1][1] == Rate(interval_s=1200.0, capacity=1.0)
    # a key multiplier that is not a positive number counts as 1
    run(guard(store).on_request(request(principal=Principal(key_id="k", rate_limit_multiplier=math.nan))))
    assert store.asked[-1][1] == TEN_PER_MINUTE


def test_a_request_without_a_client_address_is_still_limited() -> None:
    limited = guard(LocalBuckets(clock=Clock(EPOCH)), requests=2)
    answers = [run(limited.on_request(request(client=None))) for _ in range(3)]
    assert answers[:2] == [None, None]
    assert isinstance(answers[2], Refusal) and answers[2].status == 429


def test_two_clients_have_exact_budgets_of_their_own() -> None:
    clock = Clock(EPOCH)
    limited = guard(LocalBuckets(clock=clock))
    other_route = guard(LocalBuckets(clock=clock), scope="/other")

    def admitted(client: str, count: int, route: RateLimitGuard = limited) -> int:
        return sum(run(route.on_request(request(client=client))) is None for _ in range(count))

    assert admitted("127.0.0.2", 500) == 10
    assert admitted("127.0.0.3", 500) == 10
    assert admitted("127.0.0.2", 5, other_route) == 5  # buckets are per route too
    clock.now += 12.0
    assert admitted("127.0.0.2", 50) == 2 and admitted("127.0.0.3", 50) == 2


def test_store_errors_allow_by_default_and_warn_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(0.0)
    limited = guard(FakeStore(StateStoreError("DynamoDB table 'state': backed off")), clock=clock)
    caplog.set_level(logging.WARNING, logger="edge_router.guards")
    contexts = []
    for at in (0.0, 1.0, 59.0, 60.0, 61.0):
        clock.now = at
        ctx = request()
        assert run(limited.on_request(ctx)) is None
        contexts.append(ctx)
    warnings = [r.getMessage() for r in caplog.records if "rate limit store unavailable" in r.getMessage()]
    assert len(warnings) == 2  # at 0 s and at 60 s
    assert "backed off" in warnings[0] and "/api" in warnings[0]
    assert contexts[0].answer_headers == [(b"ratelimit-limit", b"10")]  # what remains is unknown


def test_store_errors_deny_with_503_when_configured() -> None:
    limited = guard(FakeStore(StateStoreError("no answer")), on_store_error="deny")
    refusal = run(limited.on_request(request()))
    assert isinstance(refusal, Refusal) and refusal.status == 503
    assert refusal.error is None  # rendered as the contract names a 503: "Backend Unavailable"
    assert (b"retry-after", b"1") in refusal.headers
    assert refusal.log_error == "rate limit store unavailable" and refusal.detail == "no answer"


@pytest.mark.parametrize(
    "overrides",
    [
        {"requests": 0},
        {"requests": 2.5},
        {"requests": True},
        {"window_s": 0.0},
        {"window_s": math.inf},
        {"burst": 0},
        {"multiplier": 0.0},
        {"multiplier": math.nan},
        {"requests": 1, "multiplier": 0.5},  # a capacity of 0.5 admits nothing
        {"on_store_error": "ignore"},
    ],
)
def test_a_limit_that_cannot_be_enforced_is_refused_at_construction(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        guard(FakeStore(Take(True, 0)), **overrides)
