"""One JSON line per request: the request log with its CloudWatch metrics embedded (EMF)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from edge_router.observability.access_log import AccessLog
from support import Backend, Reply, RouterServer, closed_port, function_url_event, wait_until, write_config


def capture(recorder: Any) -> io.StringIO:
    buffer = io.StringIO()
    recorder.access_log = AccessLog(stream=buffer, enabled=True)
    return buffer


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_lambda_invocation_writes_one_line_before_returning(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend() as backend:
        source = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        handler = lambda_adapter(source)
        buffer = capture(handler.router.recorder)
        handler(function_url_event("GET", "/api/items", query="a=1", request_id="fn-req-9"), None)
        [line] = lines(buffer)
    assert line["message"] == "request"
    assert line["method"] == "GET"
    assert line["path"] == "/api/items"
    assert line["route"] == "/api"
    assert line["target"] == f"{backend.url}/items?a=1"
    assert line["status"] == 200
    assert line["request_id"] == line["correlation_id"] == "fn-req-9"
    assert line["timed_out"] is False and line["error"] is None
    assert line["duration_ms"] > 0
    emf = line["_aws"]["CloudWatchMetrics"][0]
    assert emf["Namespace"]
    assert emf["Dimensions"] == [["route", "service"], ["service"]]  # per route, and service totals
    # no cache on this route, nothing refused: only the three metrics every line carries
    assert {m["Name"] for m in emf["Metrics"]} == {"Requests", "Latency", "UpstreamErrors"}
    assert line["Requests"] == 1 and line["UpstreamErrors"] == 0 and line["Latency"] == line["duration_ms"]


def test_failures_are_counted_and_timeouts_flagged(tmp_path: Path, lambda_adapter: Any) -> None:
    with Backend(lambda _: Reply(delay=1.0)) as slow:
        routes = [
            {"prefix": "/down", "target": f"http://127.0.0.1:{closed_port()}"},
            {"prefix": "/slow", "target": slow.url, "timeout_ms": 100},
        ]
        handler = lambda_adapter(write_config(tmp_path / "c.json", {"routes": routes}))
        buffer = capture(handler.router.recorder)
        handler(function_url_event("GET", "/down"), None)
        handler(function_url_event("GET", "/slow"), None)
        handler(function_url_event("GET", "/nowhere"), None)
    down, slow_line, nowhere = lines(buffer)
    assert (down["status"], down["UpstreamErrors"], down["timed_out"]) == (503, 1, False)
    assert "cannot connect" in down["error"]
    assert (slow_line["status"], slow_line["UpstreamErrors"], slow_line["timed_out"]) == (504, 1, True)
    assert (nowhere["status"], nowhere["route"]) == (404, "(none)")


def test_server_mode_lines_are_written_without_waiting_for_a_batch(tmp_path: Path) -> None:
    with Backend() as backend:
        source = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/", "target": backend.url}]})
        with RouterServer(source) as router, router.client() as client:
            buffer = capture(router.app.recorder)
            client.get("/one")
            wait_until(lambda: len(lines(buffer)) == 1, timeout=5)
    assert lines(buffer)[0]["path"] == "/one"


def test_log_level_and_metrics_switch_their_own_half_of_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_router.observability.access_log import RequestRecorder
    from edge_router.observability.logs import app_logger
    from edge_router.observability.outcome import RequestOutcome

    outcome = RequestOutcome(method="GET", path="/x", request_id="r1", route="/", status=200, duration_ms=1.5)

    def line_with(level: str, metrics_disabled: str) -> dict[str, Any] | None:
        logger = app_logger()
        before = logger.log_level
        logger.setLevel(level)  # what POWERTOOLS_LOG_LEVEL does at start-up
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", metrics_disabled)
        try:
            recorder = RequestRecorder()
            buffer = io.StringIO()
            recorder.access_log = AccessLog(stream=buffer, enabled=recorder.access_log.enabled)
            recorder.record(outcome)
            recorder.flush()
        finally:
            logger.setLevel(before)
        return json.loads(buffer.getvalue()) if buffer.getvalue() else None

    both = line_with("INFO", "false")
    assert both is not None and both["status"] == 200 and both["Latency"] == 1.5
    metrics_only = line_with("WARNING", "false")  # the log level never turns the metrics off
    assert metrics_only is not None and "status" not in metrics_only and "message" not in metrics_only
    assert metrics_only["Requests"] == 1 and metrics_only["_aws"] and metrics_only["route"] == "/"
    log_only = line_with("INFO", "true")
    assert log_only is not None and log_only["status"] == 200 and "_aws" not in log_only
    assert line_with("WARNING", "true") is None
