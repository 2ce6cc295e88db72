"""Logs and metrics through AWS Lambda Powertools.

* one JSON log line per proxied request (`RequestRecorder.record`);
* CloudWatch EMF metrics, dimensioned by route: `Requests`, `Latency` (ms), `UpstreamErrors`.
  Recording only appends to an in-memory buffer; `flush()` writes the EMF lines. The Lambda
  handler flushes at the end of every invocation; the local server flushes from a background
  task every `METRICS_FLUSH_SECONDS` (default 60), so the request path never writes metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import Metrics, MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "edge-router")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "EdgeRouter")
# EMF allows at most 100 values per metric in one document; more are summarised by count.
_MAX_SAMPLES = 100

logger = Logger(service=SERVICE)


@dataclass(slots=True)
class _RouteStats:
    requests: int = 0
    errors: int = 0
    latencies: list[float] | None = None


class RequestRecorder:
    def __init__(self) -> None:
        self._metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
        self._stats: dict[str, _RouteStats] = {}

    def record(
        self,
        *,
        method: str,
        path: str,
        route: str | None,
        target: str | None,
        backend: str | None,
        status: int,
        duration_ms: float,
        request_id: str,
        error: str | None = None,
        timed_out: bool = False,
    ) -> None:
        logger.info(
            "request",
            extra={
                "method": method,
                "path": path,
                "route": route,
                "target": target,
                "backend": backend,
                "status": status,
                "duration_ms": round(duration_ms, 3),
                "timed_out": timed_out,
                "error": error,
                "request_id": request_id,
            },
        )
        stats = self._stats.get(route or "(none)")
        if stats is None:
            stats = self._stats[route or "(none)"] = _RouteStats(latencies=[])
        stats.requests += 1
        if error is not None:
            stats.errors += 1
        if stats.latencies is not None and len(stats.latencies) < _MAX_SAMPLES:
            stats.latencies.append(round(duration_ms, 3))

    def flush(self) -> None:
        """Write the buffered metrics as EMF (one document per route) and clear the buffer."""
        stats, self._stats = self._stats, {}
        for route, route_stats in stats.items():
            self._metrics.add_dimension(name="route", value=route)
            self._metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=route_stats.requests)
            self._metrics.add_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=route_stats.errors)
            for latency in route_stats.latencies or ():
                self._metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency)
            self._metrics.flush_metrics()

    def pending(self) -> dict[str, Any]:
        return {route: {"requests": s.requests, "errors": s.errors} for route, s in self._stats.items()}
