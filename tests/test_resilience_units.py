"""Pure resilience decisions, by table: the circuit breaker's state machine, health thresholds,
the retry budget, and the config that turns them on. No sockets, an injected clock."""

from __future__ import annotations

import itertools

import pytest

from edge_router.config.load import load_config
from edge_router.config.model import POOL_BREAKER, BreakerPolicy, HealthPolicy, RetryBudgetPolicy
from edge_router.exceptions import ConfigInvalidError
from edge_router.resilience.breaker import CircuitBreaker, CircuitState, Verdict
from edge_router.resilience.budget import RetryBudget
from edge_router.resilience.health import HealthStatus, next_probe_in, observe

POLICY = BreakerPolicy(
    failure_threshold=3, monitoring_period_s=10, open_timeout_s=30, half_open_attempts=2, success_threshold=2
)


def failed(breaker: CircuitBreaker, now: float, times: int = 1) -> None:
    for _ in range(times):
        permit, _ = breaker.acquire(now)
        assert permit is not None
        breaker.release(permit, Verdict.FAILURE, now)


def test_failures_within_the_window_open_the_circuit() -> None:
    breaker = CircuitBreaker(POLICY)
    failed(breaker, 100, 2)
    assert breaker.current(100) is CircuitState.CLOSED
    failed(breaker, 105)
    assert breaker.current(105) is CircuitState.OPEN
    assert breaker.acquire(106) == (None, None)  # refused without contacting the backend


def test_failures_older_than_the_monitoring_period_do_not_count() -> None:
    breaker = CircuitBreaker(POLICY)
    failed(breaker, 100, 2)
    failed(breaker, 111)  # the first two left the 10 s window
    assert breaker.current(111) is CircuitState.CLOSED
    assert breaker.status(111)["failures"] == 1
    assert breaker.status(111)["total_failures"] == 3


@pytest.mark.parametrize(
    ("verdict", "state"),
    [(Verdict.SUCCESS, CircuitState.CLOSED), (Verdict.NEUTRAL, CircuitState.CLOSED)],
)
def test_successes_4xx_and_client_aborts_never_open_it(verdict: Verdict, state: CircuitState) -> None:
    breaker = CircuitBreaker(POLICY)
    for second in range(20):
        permit, _ = breaker.acquire(100 + second)
        assert permit is not None
        breaker.release(permit, verdict, 100 + second)
    assert breaker.current(120) is state
    assert breaker.total_failures == 0


def test_retry_after_is_the_real_time_left_until_half_open() -> None:
    breaker = CircuitBreaker(POLICY)
    failed(breaker, 100, 3)
    assert breaker.retry_after(100) == 30
    assert breaker.retry_after(117.5) == 12.5
    assert breaker.current(130) is CircuitState.HALF_OPEN
    assert breaker.next_attempt == 130


def test_half_open_admits_at_most_half_open_attempts_at_once() -> None:
    breaker = CircuitBreaker(POLICY)
    failed(breaker, 100, 3)
    first, transition = breaker.acquire(131)
    assert transition is not None and transition.state is CircuitState.HALF_OPEN
    second, _ = breaker.acquire(131)
    third, _ = breaker.acquire(131)
    assert first is not None and first.probe and second is not None and second.probe
    assert third is None  # the seed let every concurrent request through here
    assert not breaker.available(131)
    breaker.release(first, Verdict.NEUTRAL, 132)  # a client abort gives its slot back
    again, _ = breaker.acquire(132)
    assert again is not None and again.probe


def test_success_threshold_probe_successes_close_it() -> None:
    breaker = CircuitBreaker(POLICY)
    failed(breaker, 100, 3)
    one, _ = breaker.acquire(131)
    two, _ = breaker.acquire(131)
    assert one is not None and two is not None
    assert breaker.release(one, Verdict.SUCCESS, 132) is None
    transition = breaker.release(two, Verdict.SUCCESS, 132)
    assert transition is not None and transition.state is CircuitState.CLOSED
    assert breaker.status(132)["failures"] == 0


def test_a_failure_while_half_open_reopens_for_a_full_timeout() -> None:
    breaker = CircuitBreaker(POLICY)
    failed(breaker, 100, 3)
    probe, _ = breaker.acquire(131)
    other, _ = breaker.acquire(131)
    assert probe is not None and other is not None
    breaker.release(probe, Verdict.FAILURE, 140)
    assert breaker.current(140) is CircuitState.OPEN
    assert breaker.retry_after(140) == 30
    # the other probe, from the round that just ended, says nothing about the new one
    assert breaker.release(other, Verdict.SUCCESS, 141) is None
    assert breaker.current(141) is CircuitState.OPEN


def test_a_flapping_backend_cannot_make_it_oscillate_faster_than_its_timeout() -> None:
    breaker = CircuitBreaker(POLICY)
    opened: list[float] = []
    for second in range(600):  # a backend that fails every other request, for ten minutes
        now = float(second)
        permit, _ = breaker.acquire(now)
        if permit is None:
            continue
        transition = breaker.release(permit, Verdict.FAILURE if second % 2 else Verdict.SUCCESS, now)
        if transition is not None and transition.state is CircuitState.OPEN:
            opened.append(now)
    assert len(opened) > 5
    assert min(later - earlier for earlier, later in itertools.pairwise(opened)) >= POLICY.open_timeout_s


def test_reset_closes_it() -> None:
    breaker = CircuitBreaker(POLICY)
    failed(breaker, 100, 3)
    transition = breaker.reset(101)
    assert transition is not None and transition.state is CircuitState.CLOSED
    permit, _ = breaker.acquire(101)
    assert permit is not None and not permit.probe


def test_adopting_a_shared_state() -> None:
    breaker = CircuitBreaker(POLICY)
    failed(breaker, 100, 2)
    breaker.adopt(CircuitState.OPEN, opened_at=100.0)
    assert breaker.current(110) is CircuitState.OPEN and breaker.retry_after(110) == 20
    breaker.adopt(CircuitState.CLOSED, opened_at=None)
    failed(breaker, 111)  # the local streak from before was forgotten: one failure is not three
    assert breaker.current(111) is CircuitState.CLOSED


@pytest.mark.parametrize("field", ["failure_threshold", "half_open_attempts", "success_threshold"])
def test_a_policy_refuses_counts_below_one(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BreakerPolicy(**{field: 0})


# --- health -----------------------------------------------------------------------------------

HEALTH = HealthPolicy(interval_s=10, healthy_threshold=2, unhealthy_threshold=3)


@pytest.mark.parametrize(
    ("probes", "health"),
    [
        ([True], "unknown"),
        ([True, True], "healthy"),
        ([True, True, False, False], "healthy"),
        ([True, True, False, False, False], "unhealthy"),
        ([False, False, False], "unhealthy"),
        ([False, False, False, True], "unhealthy"),
        ([False, False, False, True, True], "healthy"),
        ([False, True, False, True, False], "unknown"),
    ],
)
def test_health_thresholds(probes: list[bool], health: str) -> None:
    status = HealthStatus()
    for second, ok in enumerate(probes):
        status = observe(
            status, ok=ok, now=float(second), latency_ms=1.0, reason=None if ok else "x", policy=HEALTH
        )
    assert status.health == health
    assert status.last_check == len(probes) - 1


def test_health_status_round_trips_and_says_when_the_next_probe_is() -> None:
    status = observe(HealthStatus(), ok=False, now=100.0, latency_ms=None, reason="status 503", policy=HEALTH)
    assert HealthStatus.from_dict(status.as_dict()) == status
    assert next_probe_in(status, HEALTH, 104.0) == 6.0
    assert next_probe_in(status, HEALTH, 200.0) == 1.0  # at least 1 s


@pytest.mark.parametrize(
    ("expected_status", "status", "good"),
    [
        ("200-399", 302, True),
        ("200-399", 404, False),
        ("200,204", 204, True),
        ("2xx", 299, True),
        ("2xx", 300, False),
    ],
)
def test_expected_status_forms(expected_status: str, status: int, good: bool) -> None:
    config = load_config(
        {
            "routes": [{"prefix": "/", "target": "http://a"}],
            "health_checks": {"expected_status": expected_status},
        },
        {},
    )
    assert config.health is not None and config.health.expects(status) is good


# --- the retry budget -------------------------------------------------------------------------


def test_the_retry_budget_is_a_share_of_requests_in_flight_with_a_floor() -> None:
    budget, policy = RetryBudget(), RetryBudgetPolicy(percent=20, min_retries=3)
    for _ in range(50):
        budget.started()
    granted = sum(budget.try_retry(policy) for _ in range(20))
    assert granted == 10  # 20 % of 50 in flight
    budget.retry_done()
    assert budget.try_retry(policy)
    small = RetryBudget()
    small.started()
    assert sum(small.try_retry(policy) for _ in range(5)) == 3  # never fewer than 3 at once


# --- configuration ----------------------------------------------------------------------------


def test_pools_and_the_priority_format_get_a_breaker_by_default() -> None:
    routes = load_config(
        {
            "routes": [
                {"prefix": "/pool", "targets": ["http://a", "http://b"]},
                {"prefix": "/one", "target": "http://a"},
                {"prefix": "/off", "targets": ["http://a", "http://b"], "circuitBreaker": {"enabled": False}},
            ]
        },
        {},
    )
    assert [route.breaker for route in routes.routes] == [POOL_BREAKER, None, None]
    priority = load_config({"global_priority": "12", "providers": {"1": "http://a", "2": "http://b"}}, {})
    assert priority.routes[0].breaker == POOL_BREAKER


def test_a_route_names_a_breaker_profile() -> None:
    config = load_config(
        {
            "features": {
                "circuitBreaker": {"profiles": {"strict": {"failureThreshold": 2, "timeout": 5000}}}
            },
            "routes": [{"prefix": "/", "target": "http://a", "circuitBreaker": "strict"}],
        },
        {},
    )
    breaker = config.routes[0].breaker
    assert breaker is not None and (breaker.failure_threshold, breaker.open_timeout_s) == (2, 5.0)
    with pytest.raises(ConfigInvalidError, match=r"routes\[0\].circuit_breaker: no profile 'lax'"):
        load_config({"routes": [{"prefix": "/", "target": "http://a", "circuitBreaker": "lax"}]}, {})
