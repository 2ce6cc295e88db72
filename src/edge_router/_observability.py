"""Logs and metrics through AWS Lambda Powertools: one line per request that is both.

Each proxied request writes ONE JSON line: the request log (method, path, route, target, status,
duration_ms, timed_out, error, request_id...) with the request's CloudWatch metrics embedded in it
in Embedded Metric Format (`_aws` metadata + `Requests`, `Latency`, `UpstreamErrors`, dimensioned
by route and service). EMF was designed for exactly this: CloudWatch Logs extracts the metrics from
the structured log line, so nothing is buffered and there is nothing to flush. On Lambda the line is
written before the invocation returns ("flushed per invocation"); in server mode it is the same
single write as the access log, with no separate metrics I/O on the request path.

Powertools Metrics builds and validates the EMF metric definitions once, at import
(`_metric_definitions`); per request only the timestamp and the three values are filled in, and a
Powertools Logger with a lean formatter writes the line. Measured here, building the metric set with
Powertools per request cost ~40 us and its default formatter ~30 us, against ~15 us for this path:
the difference decides whether a warm Lambda invocation stays within 1.5x a direct loopback GET.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter
from aws_lambda_powertools.metrics import Metrics, MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "edge-router")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "EdgeRouter")

# Application logs (config warnings, errors): Powertools' default JSON formatter.
logger = Logger(service=SERVICE)


class _PreparedLineFormatter(BasePowertoolsFormatter):
    """The record's message is already the complete line as a dict: just serialise it."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record.msg, separators=(",", ":"), default=str)

    def append_keys(self, **additional_keys: Any) -> None:
        pass

    def clear_state(self) -> None:
        pass


# Not named "<service>.x": a child logger would propagate each line to the app logger and write it twice.
_access = Logger(service=f"{SERVICE}-access", logger_formatter=_PreparedLineFormatter())


def _metric_definitions() -> list[dict[str, Any]]:
    """The EMF `CloudWatchMetrics` block for our three metrics, as Powertools builds it."""
    metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
    metrics.add_dimension(name="route", value="-")
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=0)
    metrics.add_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=0)
    document = metrics.serialize_metric_set()
    metrics.clear_metrics()
    return [dict(definition) for definition in document["_aws"]["CloudWatchMetrics"]]


_DEFINITIONS = _metric_definitions()


class RequestRecorder:
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
        now = time.time()
        latency = round(duration_ms, 3)
        _access.info(
            {
                "level": "INFO",
                "message": "request",
                "timestamp": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                "service": SERVICE,
                "correlation_id": request_id,
                "method": method,
                "path": path,
                "route": route or "(none)",  # also the EMF dimension, which must be a string
                "target": target,
                "backend": backend,
                "status": status,
                "duration_ms": latency,
                "timed_out": timed_out,
                "error": error,
                "request_id": request_id,
                "_aws": {"Timestamp": int(now * 1000), "CloudWatchMetrics": _DEFINITIONS},
                "Requests": 1,
                "Latency": latency,
                "UpstreamErrors": 0 if error is None else 1,
            }
        )
