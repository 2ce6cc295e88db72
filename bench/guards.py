"""What each guard costs on the Lambda warm path: µs per invocation, route by route, interleaved.

One process, one loopback backend, one Lambda handler (`build_handler`) whose config has one route
per variant: no guard, each guard alone (IP rules, origin list, size limits, API key, rate limit),
and all of them. Every round sends `--n` function URL GETs to each route in turn, so drift hits all
variants alike; the table gives the median µs per invocation and its difference from the route
without guards. Limits are set so that nothing is refused (every request reaches the backend).

    .venv/bin/python bench/guards.py [--n 2000] [--rounds 7] [--variants none,all]

`--variants none` configures only the route without guards, which any version of the router loads:
run it against another checkout's source (`PYTHONPATH=../other/src`) for an A/B of the unguarded
path, interleaved with this one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Children, function_url_event, start_backend

KEY = "erk_bench-key"
GUARDS: dict[str, dict[str, Any]] = {
    "none": {},
    "ip_rules": {"ip_rules": {"allow": ["203.0.113.0/24", "::1/128"], "deny": ["10.0.0.0/8"]}},
    "origins": {"allowedOrigins": ["https://app.example.com", "https://*.example.org"]},
    "size_limits": {"sizeLimits": {"maxBodySize": 1048576}},
    "api_key": {
        "api_keys": {
            "required": True,
            "keys": [{"id": "b", "hash": hashlib.sha256(KEY.encode()).hexdigest()}],
        }
    },
    "rate_limit": {"rateLimit": {"requestsPerWindow": 1_000_000_000, "windowSeconds": 1}},
}
GUARDS["all"] = {k: v for guard in GUARDS.values() for k, v in guard.items()}


def config(backend: str, variants: list[str]) -> dict[str, Any]:
    routes = [{"prefix": f"/{name}", "target": backend, **GUARDS[name]} for name in variants]
    return {"routes": routes}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--variants", default=",".join(GUARDS), help="comma-separated: " + ",".join(GUARDS))
    args = parser.parse_args()
    variants = args.variants.split(",")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    children = Children()
    try:
        _, port = start_backend(children, sys.executable)
        samples = measure(f"http://127.0.0.1:{port}", variants, args.n, args.rounds)
    finally:
        children.stop_all()
    none = samples.get("none") or next(iter(samples.values()))
    base = sorted(none)[len(none) // 2]
    print(f"{'route':<12} {'µs/invoke (median)':>20} {'vs none':>10}")
    for name, values in samples.items():
        med = sorted(values)[len(values) // 2]
        print(f"{name:<12} {med:>20.1f} {med - base:>+10.1f}")
    return 0


def measure(backend: str, variants: list[str], n: int, rounds: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "guards.json"
        path.write_text(json.dumps(config(backend, variants)))
        from edge_router.aws_lambda import build_handler
        from edge_router.settings import Settings

        handler = build_handler(Settings.from_env({}, config_source=str(path)))
        headers = {"x-api-key": KEY, "origin": "https://app.example.com"}
        events = {name: function_url_event("GET", f"/{name}/x", headers=headers) for name in variants}
        for event in events.values():  # warm every route once
            answer = handler(event, None)
            assert answer["statusCode"] == 200, answer
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, event in events.items():
                started = time.perf_counter()
                for _ in range(n):
                    handler(event, None)
                samples[name].append((time.perf_counter() - started) / n * 1e6)
        handler.loop.run_until_complete(handler.router.upstream.aclose())
    return samples


if __name__ == "__main__":
    sys.exit(main())
