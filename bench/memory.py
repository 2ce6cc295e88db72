"""Memory flat over 100k requests (issue 16): the router's RSS as kept-alive requests add up.

    .venv/bin/python bench/run.py --only memory [--quick]

A fresh `edge-router serve` on the server section's config (one route to the loopback backend),
driven by `bench/_loadgen.py --requests N` (a counted closed loop, 32 kept-alive connections) in
chunks: a 1,000-request warm-up, then up to 10,000 requests, then nine more chunks of 10,000.
After each chunk the load generator has closed its connections and the router is idle; its VmRSS
(the process and any workers it forked, `/proc/<pid>/status`) is read after a short settle.

Target: RSS after 100,000 requests minus RSS after 10,000 below `TARGET_GROWTH_MIB`: whatever the
first 10,000 requests grow (pools, caches, the allocator's arenas) is allowed once; nothing may grow
with the request count after that. The same counts run with --quick: the target is about them.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from _common import BENCH_DIR, tree_kib

CONNECTIONS = 32
WARMUP = 1_000
FIRST = 10_000
TOTAL = 100_000
CHUNK = 10_000
TARGET_GROWTH_MIB = 5.0
CHUNK_BOUND_S = 120.0  # a chunk that takes longer than this stops short (and says so)
SETTLE_S = 0.3


def counted_load(bench: Any, port: int, requests: int) -> dict[str, Any]:
    """`requests` GETs through `port` by the counted load generator; its JSON result."""
    done = subprocess.run(
        [
            bench.python,
            str(BENCH_DIR / "_loadgen.py"),
            "--port",
            str(port),
            "--path",
            "/bench",
            "--connections",
            str(CONNECTIONS),
            "--duration",
            str(CHUNK_BOUND_S),
            "--requests",
            str(requests),
        ],
        capture_output=True,
        text=True,
        timeout=CHUNK_BOUND_S + 30,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def run_memory(bench: Any, R: Any) -> None:
    """The section; `R` is bench/run.py's module (its router start-up, table and checks)."""
    R.log(f"memory: a fresh router, {TOTAL:,} kept-alive requests in chunks ({CONNECTIONS} connections)")
    proc, port = R.start_router(bench, name="router-memory")
    chunks = [WARMUP, FIRST - WARMUP] + [CHUNK] * ((TOTAL - FIRST) // CHUNK)
    start = {"requests": 0, "rss_kib": tree_kib(proc.pid), "errors": 0, "rps": None}
    readings: list[dict[str, Any]] = [start]
    sent = errors = 0
    try:
        for size in chunks:
            result = counted_load(bench, port, size)
            sent += int(result["requests"])
            errors += int(result["errors"])
            time.sleep(SETTLE_S)
            rss = tree_kib(proc.pid)
            readings.append({"requests": sent, "rss_kib": rss, "errors": errors, "rps": result["rps"]})
            if rss is None or result["requests"] < size:
                break  # the router died or stopped answering: report what there is
    finally:
        bench.children.stop(proc)
    report(bench, R, readings)


def _delta(kib: int | None, base: int | None) -> str:
    return "-" if kib is None or base is None else f"{(kib - base) / 1024:+.1f} MiB"


def report(bench: Any, R: Any, readings: list[dict[str, Any]]) -> None:
    at_first = next((r for r in readings if r["requests"] >= FIRST), None)
    last = readings[-1]
    rows = [
        [
            f"{r['requests']:,}",
            mib(r["rss_kib"]),
            "-" if at_first is None else _delta(r["rss_kib"], at_first["rss_kib"]),
            "-" if r["rps"] is None else R.fmt_rps(r["rps"]),
            str(r["errors"]),
        ]
        for r in readings
    ]
    R.table(
        f"Memory over {TOTAL:,} requests  (fresh router; bench/_loadgen.py, {CONNECTIONS} kept-alive"
        " connections, counted; VmRSS once idle after each chunk)",
        ["requests so far", "router RSS", "vs at 10k", "chunk req/s", "errors so far"],
        rows,
    )
    complete = at_first is not None and last["requests"] >= TOTAL and last["rss_kib"] is not None
    growth_mib = (last["rss_kib"] - at_first["rss_kib"]) / 1024 if complete and at_first else None
    ok = None if growth_mib is None else growth_mib < TARGET_GROWTH_MIB
    value = f"{growth_mib:+.1f} MiB" if growth_mib is not None else f"only {last['requests']:,} requests"
    print(
        f"   RSS after {TOTAL:,} - after {FIRST:,}: {value}   target < {TARGET_GROWTH_MIB:g} MiB  "
        f"{R.verdict(ok) if complete else 'MISS'}"
    )
    bench.check(
        f"memory: router RSS growth from {FIRST // 1000}k to {TOTAL // 1000}k requests",
        value,
        f"< {TARGET_GROWTH_MIB:g} MiB",
        ok if complete else False,
    )
    if last["errors"]:
        bench.check("memory: errors during the 100k requests", str(last["errors"]), "0", False)
    bench.results["memory"] = {
        "connections": CONNECTIONS,
        "readings": readings,
        "growth_10k_to_100k_mib": growth_mib,
    }
