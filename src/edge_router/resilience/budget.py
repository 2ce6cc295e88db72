"""Envoy's retry budget (`RetryBudgetPolicy`): fallback attempts in flight may be at most a share of
the requests in flight, never fewer than a floor, so an outage cannot multiply the load on the
backends that are left. Per instance: on Lambda an instance serves one request at a time, so only
the floor applies there; the fleet's share follows from every instance keeping its own."""

from __future__ import annotations

from ..config.model import RetryBudgetPolicy


class RetryBudget:
    def __init__(self) -> None:
        self.requests = 0  # requests in flight
        self.retries = 0  # fallback attempts in flight

    def started(self) -> None:
        self.requests += 1

    def finished(self) -> None:
        self.requests = max(0, self.requests - 1)

    def try_retry(self, policy: RetryBudgetPolicy) -> bool:
        """Take a retry slot if the budget allows one (give it back with `retry_done`)."""
        allowed = max(policy.min_retries, int(self.requests * policy.percent / 100))
        if self.retries >= allowed:
            return False
        self.retries += 1
        return True

    def retry_done(self) -> None:
        self.retries = max(0, self.retries - 1)
