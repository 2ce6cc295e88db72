"""The in-process metrics windows (CONTRACT section 10), pure: an injected clock, exact counts.

Each window counts exactly its span (the current second and the N - 1 before it), stale ring slots
never count, percentiles come from the histogram within its stated error, and memory stays bounded.
"""

from __future__ import annotations

import io
import json
import math
import random
import tracemalloc
from typing import Any

import pytest

from edge_router.observability.access_log import AccessLog, RequestRecorder
from edge_router.observability.outcome import RequestOutcome
from edge_router.observability.windows import (
    BINS,
    GROWTH,
    HIGHEST_MS,
    LOWEST_MS,
    MAX_ROUTES,
    RING_SECONDS,
    MetricsWindows,
    bin_value,
    latency_bin,
)
from support import Clock

T0 = 1_700_000_000.0  # an epoch second (the windows' default clock is time.time)


def outcome(
    status: int = 200,
    route: str | None = "/api",
    ms: float = 10.0,
    *,
    cache: str | None = None,
    rate_limited: bool = False,
    upstream_errors: int = 0,
) -> RequestOutcome:
    return RequestOutcome(
        method="GET",
        path="/x",
        request_id="r",
        route=route,
        status=status,
        duration_ms=ms,
        cache=cache,
        rate_limited=rate_limited,
        upstream_errors=upstream_errors,
    )


def at(windows: MetricsWindows, clock: Clock, second: float, *outcomes: RequestOutcome) -> None:
    clock.now = second
    for item in outcomes:
        windows.record(item)


def make() -> tuple[MetricsWindows, Clock]:
    clock = Clock(T0)
    return MetricsWindows(clock=clock), clock


# --- exact counts per window --------------------------------------------------------------------

# (seconds before "now", outcomes recorded then)
MIX: list[tuple[int, list[RequestOutcome]]] = [
    (4000, [outcome(200), outcome(500)]),  # only "all"
    (3599, [outcome(200, cache="HIT")]),  # the oldest second of 1h
    (300, [outcome(404, "/web")]),  # one second too old for 5m
    (299, [outcome(502, upstream_errors=2), outcome(429, rate_limited=True)]),  # the oldest of 5m
    (60, [outcome(200, cache="MISS")]),  # one second too old for 1m
    (59, [outcome(503, "/web", upstream_errors=1)]),  # the oldest second of 1m
    (0, [outcome(200, None, cache="HIT"), outcome(200, cache="BYPASS")]),  # now
]

EXPECTED: dict[str, dict[str, Any]] = {
    "1m": {
        "requests": 3,
        "by_status": {"200": 2, "503": 1},
        "by_route": {"(none)": [1, 0], "/api": [1, 0], "/web": [1, 1]},
        "cache": (1, 0),
        "rate_limited": 0,
        "upstream_errors": 1,
    },
    "5m": {
        "requests": 6,
        "by_status": {"200": 3, "429": 1, "502": 1, "503": 1},
        "by_route": {"(none)": [1, 0], "/api": [4, 1], "/web": [1, 1]},
        "cache": (1, 1),
        "rate_limited": 1,
        "upstream_errors": 3,
    },
    "1h": {
        "requests": 8,
        "by_status": {"200": 4, "404": 1, "429": 1, "502": 1, "503": 1},
        "by_route": {"(none)": [1, 0], "/api": [5, 1], "/web": [2, 1]},
        "cache": (2, 1),
        "rate_limited": 1,
        "upstream_errors": 3,
    },
    "all": {
        "requests": 10,
        "by_status": {"200": 5, "404": 1, "429": 1, "500": 1, "502": 1, "503": 1},
        "by_route": {"(none)": [1, 0], "/api": [7, 2], "/web": [2, 1]},
        "cache": (2, 1),
        "rate_limited": 1,
        "upstream_errors": 3,
    },
}


@pytest.mark.parametrize("window", list(EXPECTED))
def test_each_window_counts_exactly_its_span(window: str) -> None:
    windows, clock = make()
    now = T0 + 10_000
    for ago, outcomes in MIX:
        at(windows, clock, now - ago + 0.999, *outcomes)  # late in its second: still that second
    clock.now = now + 0.5
    answer = windows.snapshot(window)
    expected = EXPECTED[window]
    hits, misses = expected["cache"]
    assert answer["window"] == window
    assert answer["requests"] == expected["requests"]
    assert answer["by_status"] == expected["by_status"]
    assert answer["by_route"] == {
        name: {"requests": requests, "errors": errors}
        for name, (requests, errors) in expected["by_route"].items()
    }
    assert answer["cache"] == {
        "hits": hits,
        "misses": misses,
        "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
    }
    assert answer["rate_limited"] == expected["rate_limited"]
    assert answer["upstream_errors"] == expected["upstream_errors"]
    assert set(answer) == {
        "window",
        "requests",
        "by_status",
        "by_route",
        "latency_ms",
        "cache",
        "rate_limited",
        "upstream_errors",
    }


@pytest.mark.parametrize(
    ("window", "span"),
    [("1m", 60), ("5m", 300), ("1h", 3600)],
)
def test_a_window_forgets_a_request_one_second_past_its_span(window: str, span: int) -> None:
    windows, clock = make()
    at(windows, clock, T0, outcome())
    clock.now = T0 + span - 1 + 0.999  # the request's second is the oldest of the window
    assert windows.snapshot(window)["requests"] == 1
    clock.now = T0 + span  # now it is one second too old
    assert windows.snapshot(window)["requests"] == 0
    assert windows.snapshot("all")["requests"] == 1


def test_the_1m_window_forgets_61_seconds_old_while_5m_keeps_them() -> None:
    windows, clock = make()
    at(windows, clock, T0, outcome(), outcome(502))
    clock.now = T0 + 61
    assert windows.snapshot("1m")["requests"] == 0
    assert windows.snapshot("1m")["by_status"] == {}
    assert windows.snapshot("5m")["by_status"] == {"200": 1, "502": 1}


# --- the ring -----------------------------------------------------------------------------------


def test_a_stale_slot_is_never_resurrected_after_wrap_around() -> None:
    windows, clock = make()
    at(windows, clock, T0, outcome(500), outcome(500))
    # An hour later the same slot is "now" again, but it holds the old second: it must not count.
    for later in (RING_SECONDS, 2 * RING_SECONDS, 5 * RING_SECONDS + 30):
        clock.now = T0 + later
        for window in ("1m", "5m", "1h"):
            assert windows.snapshot(window)["requests"] == 0, (later, window)
    # A new request in that slot replaces it; "all" still has both.
    at(windows, clock, T0 + 3 * RING_SECONDS, outcome(200))
    assert windows.snapshot("1m")["by_status"] == {"200": 1}
    assert windows.snapshot("1h")["by_status"] == {"200": 1}
    assert windows.snapshot("all")["by_status"] == {"200": 1, "500": 2}
    assert windows.snapshot("all")["by_route"] == {"/api": {"requests": 3, "errors": 2}}


def test_all_is_exact_over_hours_of_traffic_across_many_wrap_arounds() -> None:
    windows, clock = make()
    rng = random.Random(7)
    statuses: dict[str, int] = {}
    for second in range(0, 3 * RING_SECONDS + 17, 3):
        status = rng.choice([200, 201, 404, 500, 503])
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        at(windows, clock, T0 + second, outcome(status))
    assert windows.snapshot("all")["by_status"] == dict(sorted(statuses.items()))
    assert windows.snapshot("all")["requests"] == sum(statuses.values())
    assert windows.snapshot("1h")["requests"] == RING_SECONDS // 3


def test_memory_is_bounded_by_the_ring() -> None:
    windows, clock = make()

    def traffic(start: int, seconds: int) -> None:
        for second in range(start, start + seconds):
            clock.now = T0 + second
            for i in range(3):
                windows.record(outcome(200 + i, f"/r{i}", ms=1.0 + second % 97 + i))

    tracemalloc.start()
    try:
        traffic(0, RING_SECONDS)  # the ring is full
        assert windows.slots_in_use == RING_SECONDS
        full = tracemalloc.get_traced_memory()[0]
        traffic(RING_SECONDS, 2 * RING_SECONDS)  # two more hours of the same traffic
        later = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert windows.slots_in_use == RING_SECONDS
    assert full > 1_000_000  # the hour's buckets were traced (the measure is not blind)
    assert later - full < 64 * 1024, f"{later - full} bytes more after the ring was full"
    assert windows.snapshot("all")["requests"] == 3 * 3 * RING_SECONDS


def test_route_names_are_capped_per_bucket_and_per_answer() -> None:
    windows, clock = make()
    at(windows, clock, T0, *(outcome(500, f"/r{i}") for i in range(MAX_ROUTES + 5)))
    at(windows, clock, T0 + 1, outcome(200, "/late"))  # another second, past the cap when merged
    by_route = windows.snapshot("1m")["by_route"]
    assert len(by_route) == MAX_ROUTES + 1
    assert by_route["(other)"] == {"requests": 6, "errors": 5}
    assert by_route["/r0"] == {"requests": 1, "errors": 1}
    assert sum(counts["requests"] for counts in by_route.values()) == MAX_ROUTES + 6


# --- latency percentiles ------------------------------------------------------------------------


def nearest_rank(samples: list[float], p: int) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(len(ordered) * p / 100)) - 1]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("count", [1, 7, 100, 5000])
def test_percentiles_are_within_the_histograms_error_of_the_exact_values(seed: int, count: int) -> None:
    windows, clock = make()
    rng = random.Random(seed)
    samples = [rng.lognormvariate(3, 1.5) for _ in range(count)]  # ~20 ms median, a long tail
    at(windows, clock, T0, *(outcome(ms=ms) for ms in samples))
    error = math.sqrt(GROWTH) - 1
    for window in ("1m", "all"):
        latency = windows.snapshot(window)["latency_ms"]
        for p in (50, 95, 99):
            exact = nearest_rank(samples, p)
            assert abs(latency[f"p{p}"] - exact) <= exact * error + 0.001, (p, latency, exact)


def test_known_latencies_read_back_to_the_bin_they_fall_in() -> None:
    windows, clock = make()
    at(windows, clock, T0, *(outcome(ms=float(ms)) for ms in range(1, 101)))  # 1..100 ms
    latency = windows.snapshot("1m")["latency_ms"]
    assert latency["p50"] == pytest.approx(50, rel=0.02)
    assert latency["p95"] == pytest.approx(95, rel=0.02)
    assert latency["p99"] == pytest.approx(99, rel=0.02)


def test_the_histogram_covers_0_01_ms_to_10_minutes_in_a_fixed_number_of_bins() -> None:
    assert latency_bin(0.0) == latency_bin(LOWEST_MS) == 0
    assert latency_bin(HIGHEST_MS) == latency_bin(3_600_000.0) == BINS - 1
    assert BINS < 500
    for ms in (0.02, 0.5, 1.0, 12.3, 999.0, 59_999.0, 599_000.0):
        assert abs(bin_value(latency_bin(ms)) - ms) <= ms * (math.sqrt(GROWTH) - 1) * 1.0001


def test_no_request_means_null_percentiles_and_a_zero_hit_rate() -> None:
    windows, _ = make()
    answer = windows.snapshot("1h")
    assert answer["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert answer["cache"] == {"hits": 0, "misses": 0, "hit_rate": 0.0}
    assert (answer["requests"], answer["by_status"], answer["by_route"]) == (0, {}, {})


def test_bypass_and_no_cache_count_neither_hit_nor_miss() -> None:
    windows, clock = make()
    verdicts = ["HIT", "HIT", "HIT", "MISS", "BYPASS", None]
    at(windows, clock, T0, *(outcome(cache=verdict) for verdict in verdicts))
    assert windows.snapshot("all")["cache"] == {"hits": 3, "misses": 1, "hit_rate": 0.75}


# --- reset and the recorder ---------------------------------------------------------------------


def test_reset_zeroes_every_window() -> None:
    windows, clock = make()
    at(windows, clock, T0 - 5000, outcome(500, upstream_errors=1))
    at(windows, clock, T0, outcome(429, rate_limited=True, cache="MISS"))
    windows.reset()
    for window in ("1m", "5m", "1h", "all"):
        answer = windows.snapshot(window)
        assert answer["requests"] == answer["rate_limited"] == answer["upstream_errors"] == 0
        assert answer["by_status"] == answer["by_route"] == {}
        assert answer["cache"]["misses"] == 0
    assert windows.slots_in_use == 0
    at(windows, clock, T0, outcome())
    assert windows.snapshot("1m")["requests"] == 1


def test_an_unknown_window_is_refused() -> None:
    windows, _ = make()
    with pytest.raises(ValueError, match="expected one of 1m, 5m, 1h, all"):
        windows.snapshot("2m")


def test_the_recorder_feeds_its_windows_but_not_with_control_requests() -> None:
    clock = Clock(T0)
    recorder = RequestRecorder(AccessLog(io.StringIO(), enabled=True), windows=MetricsWindows(clock=clock))
    recorder.record(outcome(200))
    recorder.record(outcome(403, None), proxied=False)  # e.g. an IP rule refusing /admin/...
    assert recorder.windows.snapshot("all")["by_status"] == {"200": 1}
    assert isinstance(RequestRecorder().windows, MetricsWindows)


@pytest.mark.parametrize(
    ("cache", "rate_limited", "expected"),
    [
        ("HIT", False, {"CacheHits": 1, "CacheMisses": 0}),
        ("MISS", False, {"CacheHits": 0, "CacheMisses": 1}),
        ("BYPASS", False, {"CacheHits": 0, "CacheMisses": 0}),
        (None, True, {"RateLimited": 1}),
        (None, False, {}),  # a route without a cache, not refused: the line is as short as before
    ],
)
def test_the_emf_line_carries_cache_hits_misses_and_rate_limited(
    cache: str | None, rate_limited: bool, expected: dict[str, int]
) -> None:
    """Each metric is declared (and valued) on the lines it speaks of: a metric absent from a line
    is no datapoint to CloudWatch, which sums the same as a 0."""
    buffer = io.StringIO()
    recorder = RequestRecorder(AccessLog(buffer, enabled=True))
    assert recorder.metrics, "POWERTOOLS_METRICS_DISABLED is set in this environment"
    recorder.record(outcome(429 if rate_limited else 200, cache=cache, rate_limited=rate_limited))
    recorder.flush()
    line = json.loads(buffer.getvalue())
    names = {metric["Name"]: metric["Unit"] for metric in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    declared = {name for name in ("CacheHits", "CacheMisses", "RateLimited") if name in names}
    assert declared == set(expected)
    assert all(names[name] == "Count" for name in declared)
    assert {
        name: line[name] for name in ("CacheHits", "CacheMisses", "RateLimited") if name in line
    } == expected
