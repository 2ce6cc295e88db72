"""The CloudWatch Embedded Metric Format block of every request line, built by Powertools Metrics
once (on first use, not at import) and reused: per request only the timestamp and values change.

CloudWatch Logs turns the `_aws` block of a JSON log line into metrics, so the request log and
its metrics are one write: `Requests`, `Latency` (ms), `UpstreamErrors` (failed attempts), and
`CacheHits`, `CacheMisses` and `RateLimited` (0 or 1 per line: a cache hit, a cache miss, a 429 of
a route's rate limit; their sums are the figures `GET /admin/metrics` shows per instance), in
`POWERTOOLS_METRICS_NAMESPACE`, dimensioned by route and service and by service alone (the totals
an alarm watches). `POWERTOOLS_METRICS_DISABLED` (true/1/yes) turns them off, whatever the log level.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from .logs import service_name


@functools.cache
def metric_definitions(cached: bool = False, rate_limited: bool = False) -> list[dict[str, Any]]:
    """The EMF `CloudWatchMetrics` block for one line's metrics, as Powertools builds it.

    `CacheHits`/`CacheMisses` are declared only on the lines of cached routes and `RateLimited`
    only on the lines of refused requests: a metric absent from a line is no datapoint, which sums
    the same, and every other line stays as short to write as before they existed."""
    from aws_lambda_powertools.metrics import Metrics, MetricUnit

    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "EdgeRouter")
    metrics = Metrics(namespace=namespace, service=service_name())
    metrics.add_dimension(name="route", value="-")
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=0)
    metrics.add_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=0)
    if cached:
        metrics.add_metric(name="CacheHits", unit=MetricUnit.Count, value=0)
        metrics.add_metric(name="CacheMisses", unit=MetricUnit.Count, value=0)
    if rate_limited:
        metrics.add_metric(name="RateLimited", unit=MetricUnit.Count, value=1)
    document = metrics.serialize_metric_set()
    metrics.clear_metrics()
    definitions: list[dict[str, Any]] = [dict(item) for item in document["_aws"]["CloudWatchMetrics"]]
    for definition in definitions:  # the service totals too, for alarms without metric math
        definition["Dimensions"] = [*list(definition["Dimensions"]), ["service"]]
    return definitions


def metrics_enabled() -> bool:
    """Powertools' switch: `POWERTOOLS_METRICS_DISABLED` true/1/yes/on turns EMF off."""
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "").strip().lower() not in ("true", "1", "yes", "on")
