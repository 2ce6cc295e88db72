"""The quick start's demo (`./scripts/run` = `edge-router demo`): it prints the status page's URL and
a fresh admin key, and its own traffic makes the panels move (traffic, cache hits, the flaky
backend's failures) within seconds."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx

from support import closed_port


def test_the_demo_prints_its_status_page_and_key_and_its_traffic_moves_the_figures() -> None:
    port = closed_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_KEY", "POWERTOOLS_LOG_LEVEL", "LOG_LEVEL")}
    command = [sys.executable, "-m", "edge_router.cli", "demo", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        announced = ""
        deadline = time.monotonic() + 20
        while "admin key:" not in announced and time.monotonic() < deadline:
            line = process.stdout.readline() if process.stdout else ""
            announced += line
        found = re.search(r"status page: (\S+)\s+admin key: (\S+)", announced)
        assert found, announced
        assert found.group(1) == f"{base}/status"
        key = found.group(2)
        assert len(key) >= 24
        with httpx.Client(base_url=base, timeout=5) as client:
            assert client.get("/status").status_code == 200
            assert client.get("/admin/metrics").status_code == 401  # the key is needed
            figures: dict[str, object] = {}
            while time.monotonic() < deadline:
                figures = client.get(
                    "/admin/metrics", params={"window": "1m"}, headers={"x-admin-key": key}
                ).json()
                routes = figures.get("by_route", {})
                if (
                    isinstance(routes, dict)
                    and {"/api/cached", "/api/flaky"} <= set(routes)
                    and figures["cache"]["hits"]
                ):  # type: ignore[index]
                    break
                time.sleep(0.5)
        assert {"/api/cached", "/api/flaky"} <= set(figures["by_route"])  # type: ignore[arg-type]
        assert figures["cache"]["hits"] >= 1  # type: ignore[index]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
