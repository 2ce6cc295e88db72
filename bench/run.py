"""edge-router benchmark suite: one entry point, nine sections, a table of numbers and ratios.

    .venv/bin/python bench/run.py [--quick] [--only server,lambda,cold,upstream,failover,guards,cache,
                                  websocket,memory] [--loadgen auto|wrk|python] [--router-src DIR]

Sections (see bench/README.md for what every number means):
  server    req/s, p50, p99 through `edge-router serve`, nginx and a naive FastAPI+httpx proxy,
            plus "direct" (the backend itself), at 1 and 32 connections; the router's peak RSS;
            then `serve --workers 2` vs nginx `worker_processes 2` at 32 connections
  lambda    µs per warm invocation of the Lambda handler vs direct kept-alive GETs (aiohttp, and
            the router's own Http1Upstream) vs FastAPI+Mangum
  cold      import + build + first invocation in fresh processes, router vs FastAPI+Mangum
  upstream  aiohttp vs httpx vs the router's own Http1Upstream as the upstream client
  failover  circuit breakers at work: a provider that hangs (latency until its circuit opens, then
            vs a healthy route) and a backend SIGKILLed mid-load (errors, time until traffic moved)
  guards    what each guard costs: µs per warm Lambda invocation per guard (bench/guards.py), and
            server req/s on a route with every guard vs one with none, interleaved
  cache     the response cache (bench/cache.py): req/s of a cached route vs nginx proxy_cache vs an
            uncached route (c=32, interleaved), and the router's RSS while it caches 10,000 URLs
  websocket WebSocket passthrough (bench/ws.py): 10,000 echo round trips direct vs through the
            router, then 1,000 idle WebSockets held through it with its RSS
  memory    the router's RSS after 10k and after 100k kept-alive requests (bench/memory.py)

A section that fails (the router it measures is a moving target) prints its error in its place and
a MISS in the Targets table; the next section runs, and the exit status is 1.

Everything listens on 127.0.0.1 only; every loop is bounded in count and time; every child process
leads its own process group and is stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from _common import (
    BENCH_DIR,
    LOOPBACK,
    Children,
    descendants,
    free_port,
    median,
    new_event_loop,
    router_config,
    start_backend,
    tree_kib,
    vm_hwm_kib,
    wait_http,
    write_json,
)
from _package import build_packages

SECTIONS = ("server", "lambda", "cold", "upstream", "failover", "guards", "cache", "websocket", "memory")
PATH = "/bench"
STATIC = "ref: uvicorn static"  # reference rows (bench/_floor.py)
FLOOR = "ref: bare ASGI proxy"

# Targets printed beside the numbers (issue 16).
TARGET_VS_NGINX = 0.6  # router req/s >= 0.6 x nginx at c=32 (also --workers 2 vs worker_processes 2)
TARGET_VS_NAIVE = 40.0  # router req/s >= 40 x naive at c=32
TARGET_ADDED_P50_MS = 0.05  # router p50 - direct p50 at c=1
TARGET_LAMBDA_RATIO = 1.2  # warm invocation / the faster direct kept-alive GET
TARGET_COLD_RATIO = 0.7  # router cold start / FastAPI+Mangum hello cold start
WORKERS = 2  # the multi-process row: `serve --workers 2` vs nginx `worker_processes 2`
TARGET_FAILOVER_ADDED_MS = 10.0  # p50 of a pool whose first provider's circuit is open - p50 direct

# Failover section: what the router does when the config says nothing (README, CONTRACT section 7).
PRIORITY_TIMEOUT_MS = 2500  # seed 003's per-attempt timeout, the priority format's default
POOL_FAILURE_THRESHOLD = 5  # a pool's default breaker: 5 failures in 60 s open it (for 30 s)


@dataclass
class Plan:
    quick: bool
    load_s: float
    warm_s: float
    lambda_n: int
    lambda_rounds: int
    lambda_warmup: int
    cold_runs: int
    client_n: int
    client_s: float
    hang_timeout_ms: int | None = None  # None: the priority format's default (PRIORITY_TIMEOUT_MS)
    hang_n: int = 200  # requests to /app and to /direct once the hanging provider's circuit is open
    kill_total: int = 2000  # requests of the kill scenario
    kill_after: int = 500  # backend B is killed once request #kill_after was sent
    kill_workers: int = 16
    server_rounds: int = 3  # interleaved rounds of the rows the server targets compare

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(True, 2.0, 1.0, 300, 3, 100, 4, 500, 1.5, hang_timeout_ms=500)
        return cls(False, 5.0, 1.0, 1000, 5, 300, 9, 2000, 3.0)


@dataclass
class Bench:
    plan: Plan
    python: str
    tmp: Path
    children: Children
    loadgen: str  # "wrk" or "python"
    router_src: Path = Path(__file__).resolve().parent.parent / "src"  # the src/ the children import
    backend_url: str = ""
    backend_port: int = 0
    config_path: Path = Path()
    results: dict[str, Any] = field(default_factory=dict)
    checks: list[tuple[str, str, str, bool | None]] = field(default_factory=list)

    def check(self, name: str, value: str, target: str, ok: bool | None) -> None:
        self.checks.append((name, value, target, ok))


# ---------------------------------------------------------------------------------------------- output


def log(message: str) -> None:
    sys.stdout.flush()
    print(f"  .. {message}", file=sys.stderr, flush=True)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return (
            "  "
            + f"{first:<{widths[0]}}"
            + "".join(f"  {c:>{w}}" for c, w in zip(rest, widths[1:], strict=True))
        )

    print(f"\n{title}")
    print(line(header))
    print("  " + "-" * (sum(widths) + 2 * (len(widths) - 1)))
    for row in rows:
        print(line(row))
    sys.stdout.flush()


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def fmt_us(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} µs"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def fmt_rps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


# ---------------------------------------------------------------------------------------------- load


_UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def parse_wrk(text: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or not total:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    dist = {
        int(p): float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in sockets.groups()) if sockets else 0
    )
    return {
        "requests": int(total.group(1)),
        "errors": errors,
        "rps": float(rps.group(1)),
        "p50_us": dist.get(50, float("nan")),
        "p99_us": dist.get(99, float("nan")),
    }


def load(
    bench: Bench,
    port: int,
    connections: int,
    duration: float,
    *,
    path: str = PATH,
    headers: Sequence[str] = (),
) -> dict[str, float]:
    """Closed-loop GET load on 127.0.0.1:`port``path` (bounded by `duration`); `headers` ("name:
    value") need wrk."""
    if headers and bench.loadgen != "wrk":
        raise RuntimeError("request headers need wrk (apt-get install wrk)")
    if bench.loadgen == "wrk":
        threads = 1 if connections == 1 else 2
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "--timeout",
            "5s",
            *(arg for header in headers for arg in ("-H", header)),
            f"http://{LOOPBACK}:{port}{path}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=True)
        return parse_wrk(done.stdout)
    command = [
        bench.python,
        str(BENCH_DIR / "_loadgen.py"),
        "--port",
        str(port),
        "--path",
        path,
        "--connections",
        str(connections),
        "--duration",
        str(duration),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


# ---------------------------------------------------------------------------------------------- server


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def write_nginx_conf(
    prefix: Path,
    port: int,
    backend_port: int,
    *,
    location: str,
    directives: str,
    http_extra: str = "",
    workers: int = 1,
) -> Path:
    """An nginx.conf under `prefix`: `workers` worker processes (1 by default: the router is one
    process), keep-alive to the backend, its temp paths under `prefix`, one `location` proxying to
    the backend with `directives` added (also what bench/cache.py's proxy_cache target is built
    from)."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes {workers};
daemon off;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    {http_extra}
    upstream backend {{
        server {LOOPBACK}:{backend_port};
        keepalive 64;
    }}
    server {{
        listen {LOOPBACK}:{port} reuseport;
        location {location} {{
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            {directives}
        }}
    }}
}}
"""
    )
    return conf


def start_nginx(bench: Bench, nginx: str, workers: int = 1) -> tuple[subprocess.Popen[Any], int]:
    """nginx as a reverse proxy, headers set as the router sets them."""
    port = free_port()
    prefix = bench.tmp / ("nginx" if workers == 1 else f"nginx-w{workers}")
    conf = write_nginx_conf(
        prefix,
        port,
        bench.backend_port,
        location=PATH,
        directives="""proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;""",
        workers=workers,
    )
    errors = (prefix / "stderr.log").open("w")
    proc = bench.children.start(
        [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")], stderr=errors
    )
    errors.close()
    wait_http(port, PATH, 10, proc)
    return proc, port


def start_router(
    bench: Bench,
    config_path: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    ready_path: str = PATH,
    name: str = "router",
    extra_args: Sequence[str] = (),
) -> tuple[subprocess.Popen[Any], int]:
    """`edge-router serve` on a free port (`extra_args` added, e.g. --workers), once GET
    `ready_path` answers 200; its stdout (a JSON line per request) goes to /dev/null."""
    port = free_port()
    command = router_command(bench)
    config = config_path or bench.config_path
    log_path = bench.tmp / f"{name}-stderr.log"
    errors = log_path.open("w")
    # stdout carries one JSON log line per request: /dev/null, as a log shipper would take it away.
    proc = bench.children.start(
        [*command, "serve", "--config", str(config), "--host", LOOPBACK, "--port", str(port), *extra_args],
        stdout=subprocess.DEVNULL,
        stderr=errors,
        env=env,
    )
    errors.close()
    try:
        wait_http(port, ready_path, 20, proc)
    except RuntimeError as exc:
        bench.children.stop(proc)
        raise RuntimeError(f"{exc}\n{name} stderr:\n{log_path.read_text()[-3000:]}") from None
    return proc, port


def router_command(bench: Bench) -> list[str]:
    script = Path(bench.python).parent / "edge-router"
    return [str(script)] if script.exists() else [bench.python, "-m", "edge_router.cli"]


def serve_has_option(bench: Bench, option: str) -> bool:
    """Whether `edge-router serve --help` lists `option` (a flag still being written is absent)."""
    done = subprocess.run(
        [*router_command(bench), "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", done.stdout) is not None


def start_naive(bench: Bench) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    env = {**os.environ, "NAIVE_UPSTREAM": bench.backend_url}
    errors = (bench.tmp / "naive-stderr.log").open("w")
    proc = bench.children.start(
        [bench.python, str(BENCH_DIR / "_naive_proxy.py"), "--port", str(port)], stderr=errors, env=env
    )
    errors.close()
    wait_http(port, PATH, 20, proc)
    return proc, port


def start_floor(bench: Bench, mode: str) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    errors = (bench.tmp / f"floor-{mode}-stderr.log").open("w")
    command = [bench.python, str(BENCH_DIR / "_floor.py"), mode, "--port", str(port)]
    proc = bench.children.start([*command, "--upstream", bench.backend_url + "/"], stderr=errors)
    errors.close()
    wait_http(port, PATH, 20, proc)
    return proc, port


def process_tree_hwm_kib(pid: int) -> int | None:
    """VmHWM of a process plus its descendants (nginx: master + workers; a pre-forking router)."""
    return tree_kib(pid, vm_hwm_kib)


Starter = Callable[[], tuple[subprocess.Popen[Any] | None, int]]
SUMMED = ("requests", "errors")  # the other load keys (rps, p50_us, p99_us) take the median


def interleaved(
    bench: Bench, starters: dict[str, Starter], rounds: int, levels: Sequence[int] = (1, 32)
) -> dict[str, dict[str, Any]]:
    """Every target up at once, each warmed, then `rounds` rounds of one run per target and
    concurrency level (the order of the targets reversed every other round), so that the noise of a
    shared machine hits all alike; per level the median of the rounds (requests and errors summed)."""
    procs: dict[str, tuple[subprocess.Popen[Any] | None, int]] = {}
    runs: dict[str, dict[int, list[dict[str, float]]]] = {}
    try:
        for name, start in starters.items():
            log(f"server: {name}")
            procs[name] = start()
        for _, port in procs.values():
            load(bench, port, 32, bench.plan.warm_s)  # warm-up: pools filled, code paths hot
        names = list(procs)
        for index in range(rounds):
            log(f"server: interleaved round {index + 1} of {rounds} ({', '.join(names)})")
            for name in names if index % 2 == 0 else names[::-1]:
                for level in levels:
                    result = load(bench, procs[name][1], level, bench.plan.load_s)
                    runs.setdefault(name, {}).setdefault(level, []).append(result)
        measured: dict[str, dict[str, Any]] = {}
        for name, (proc, _) in procs.items():
            measured[name] = {
                **{f"c{level}": _median_run(runs[name][level]) for level in levels},
                "rounds": {f"c{level}": runs[name][level] for level in levels},
                "peak_rss_kib": None if proc is None else process_tree_hwm_kib(proc.pid),
                "processes": None if proc is None else 1 + len(descendants(proc.pid)),
            }
        return measured
    finally:
        for proc, _ in procs.values():
            if proc is not None:
                bench.children.stop(proc)


def _median_run(results: list[dict[str, float]]) -> dict[str, float]:
    return {
        key: sum(r[key] for r in results) if key in SUMMED else median([r[key] for r in results])
        for key in results[0]
    }


def c32_rps(measured: dict[str, dict[str, Any]], name: str) -> float | None:
    """req/s at c=32 of a row, None when the row was skipped."""
    rps: float | None = measured.get(name, {}).get("c32", {}).get("rps")
    return rps


def run_server(bench: Bench) -> None:
    plan = bench.plan
    nginx = nginx_binary()
    # The rows the targets compare, interleaved; the other rows one after the other.
    paired: dict[str, Starter] = {
        "direct": lambda: (None, bench.backend_port),
        "router": lambda: start_router(bench),
    }
    if nginx:
        paired["nginx"] = lambda: start_nginx(bench, nginx)
    measured = interleaved(bench, paired, plan.server_rounds)
    others: list[tuple[str, Starter]] = [
        ("naive", lambda: start_naive(bench)),
        (STATIC, lambda: start_floor(bench, "static")),
        (FLOOR, lambda: start_floor(bench, "proxy")),
    ]
    missing = [name for name in ("uvicorn", "fastapi", "httpx") if importlib.util.find_spec(name) is None]
    for name, start in others:
        if missing:  # the bench extra: pip install -e '.[bench]'
            measured[name] = {"skipped": f"{', '.join(missing)} not installed (the bench extra)"}
            continue
        log(f"server: {name}")
        proc, port = start()
        try:
            load(bench, port, 32, plan.warm_s)  # warm-up: pools filled, code paths hot
            c1 = load(bench, port, 1, plan.load_s)
            c32 = load(bench, port, 32, plan.load_s)
            hwm = process_tree_hwm_kib(proc.pid) if proc is not None else None
        finally:
            if proc is not None:
                bench.children.stop(proc)
        measured[name] = {"c1": c1, "c32": c32, "peak_rss_kib": hwm}
    if not nginx:
        measured["nginx"] = {"skipped": "nginx is not installed"}

    direct, router = measured["direct"], measured["router"]
    rows = []
    for name in ("direct", "router", "nginx", "naive", STATIC, FLOOR):
        m = measured.get(name, {})
        if "c1" not in m:
            rows.append([f"{name}: {m.get('skipped', 'skipped')}", *["-"] * 9])
            continue
        added = m["c1"]["p50_us"] - direct["c1"]["p50_us"]
        rows.append(
            [
                name,
                fmt_rps(m["c1"]["rps"]),
                fmt_us(m["c1"]["p50_us"]),
                fmt_us(m["c1"]["p99_us"]),
                "-" if name in ("direct", STATIC) else fmt_us(added),
                fmt_rps(m["c32"]["rps"]),
                fmt_us(m["c32"]["p50_us"]),
                fmt_us(m["c32"]["p99_us"]),
                str(int(m["c1"]["errors"] + m["c32"]["errors"])),
                "-" if m.get("peak_rss_kib") is None else f"{m['peak_rss_kib'] / 1024:.0f} MiB",
            ]
        )
    table(
        f"1. Server mode  (load: {bench.loadgen}, {plan.load_s:g}s per run; direct, router, nginx:"
        f" medians of {plan.server_rounds} interleaved rounds, the others one run each;"
        " backend: uvloop Protocol, 200-byte JSON)",
        [
            "target",
            "c=1 req/s",
            "p50",
            "p99",
            "+p50 vs direct",
            "c=32 req/s",
            "p50",
            "p99",
            "errors",
            "peak RSS",
        ],
        rows,
    )

    added_ms = (router["c1"]["p50_us"] - direct["c1"]["p50_us"]) / 1000
    vs_nginx = ratio(router["c32"]["rps"], c32_rps(measured, "nginx"))
    vs_naive = ratio(router["c32"]["rps"], c32_rps(measured, "naive"))
    nginx_added = (
        (measured["nginx"]["c1"]["p50_us"] - direct["c1"]["p50_us"]) / 1000
        if "c1" in measured["nginx"]
        else None
    )
    ratios = [
        [
            "router / nginx req/s at c=32",
            fmt_ratio(vs_nginx),
            f">= {TARGET_VS_NGINX:g}x",
            verdict(None if vs_nginx is None else vs_nginx >= TARGET_VS_NGINX),
        ],
        [
            "router / naive req/s at c=32",
            fmt_ratio(vs_naive),
            f">= {TARGET_VS_NAIVE:g}x",
            verdict(None if vs_naive is None else vs_naive >= TARGET_VS_NAIVE),
        ],
        [
            "router added p50 at c=1",
            f"{added_ms:.3f} ms",
            f"<= {TARGET_ADDED_P50_MS:g} ms",
            verdict(added_ms <= TARGET_ADDED_P50_MS),
        ],
        [
            "(nginx added p50 at c=1, for scale)",
            "-" if nginx_added is None else f"{nginx_added:.3f} ms",
            "",
            "",
        ],
        [
            "(router / bare ASGI proxy req/s at c=32)",
            fmt_ratio(ratio(router["c32"]["rps"], c32_rps(measured, FLOOR))),
            "",
            "",
        ],
        [
            "(nginx / uvicorn static req/s at c=32)",
            fmt_ratio(ratio(c32_rps(measured, "nginx"), c32_rps(measured, STATIC))),
            "",
            "",
        ],
        [
            "router peak RSS after load (VmHWM)",
            "-" if router["peak_rss_kib"] is None else f"{router['peak_rss_kib'] / 1024:.1f} MiB",
            "",
            "",
        ],
    ]
    table("   Server ratios", ["measure", "value", "target", ""], ratios)
    for name, value, target, ok in ratios[:3]:
        bench.check(f"server: {name}", value, target, None if ok == "n/a" else ok == "PASS")
    bench.results["server"] = {
        "backend": "uvloop asyncio.Protocol (bench/_backend.py)",
        "loadgen": bench.loadgen,
        "targets": measured,
        "router_vs_nginx_c32": vs_nginx,
        "router_vs_naive_c32": vs_naive,
        "router_added_p50_ms_c1": added_ms,
        "router_peak_rss_kib": router["peak_rss_kib"],
    }
    server_workers(bench, nginx)


def server_workers(bench: Bench, nginx: str | None) -> None:
    """`serve --workers 2` against nginx `worker_processes 2`, c=32, after a warm-up each; skipped
    with a note when this router's `serve` has no --workers option."""
    label = f"router / nginx req/s at c=32, {WORKERS} workers each"
    note = None
    if not serve_has_option(bench, "--workers"):
        note = "skipped: `edge-router serve --help` lists no --workers option yet"
    elif not nginx:
        note = "skipped: nginx is not installed"
    if note is not None:
        print(f"\n   {WORKERS} workers: {note}")
        bench.check(f"server: {label}", "-", f">= {TARGET_VS_NGINX:g}x", None)
        bench.results.setdefault("server", {})["workers"] = {"skipped": note}
        return
    assert nginx is not None
    starters: dict[str, Starter] = {
        f"router --workers {WORKERS}": lambda: start_router(
            bench, name=f"router-w{WORKERS}", extra_args=("--workers", str(WORKERS))
        ),
        f"nginx worker_processes {WORKERS}": lambda: start_nginx(bench, nginx, WORKERS),
    }
    measured = interleaved(bench, starters, bench.plan.server_rounds, levels=(32,))
    rows = [
        [
            name,
            str(m["processes"]),
            fmt_rps(m["c32"]["rps"]),
            fmt_us(m["c32"]["p50_us"]),
            fmt_us(m["c32"]["p99_us"]),
            str(int(m["c32"]["errors"])),
            "-" if m["peak_rss_kib"] is None else f"{m['peak_rss_kib'] / 1024:.0f} MiB",
        ]
        for name, m in measured.items()
    ]
    table(
        f"   {WORKERS} worker processes each  (c=32, medians of {bench.plan.server_rounds} interleaved"
        " rounds; processes = the tree under the started one)",
        ["target", "processes", "c=32 req/s", "p50", "p99", "errors", "peak RSS (tree)"],
        rows,
    )
    router_w, nginx_w = measured.values()
    value = ratio(router_w["c32"]["rps"], nginx_w["c32"]["rps"])
    ok = None if value is None else value >= TARGET_VS_NGINX
    print(f"   {label}: {fmt_ratio(value)}   target >= {TARGET_VS_NGINX:g}x  {verdict(ok)}")
    bench.check(f"server: {label}", fmt_ratio(value), f">= {TARGET_VS_NGINX:g}x", ok)
    bench.results.setdefault("server", {})["workers"] = {"targets": measured, "router_vs_nginx_c32": value}


# ---------------------------------------------------------------------------------------------- lambda

LAMBDA_LABELS = {
    "router": "router handler (proxied GET)",
    "direct": "direct aiohttp GET",
    "direct_http1": "direct Http1Upstream GET",
    "fastapi": "FastAPI hello under Mangum",
}
LAMBDA_CLIENT = {"direct": "aiohttp", "direct_http1": "Http1Upstream"}  # the kept-alive direct GETs


def run_lambda(bench: Bench) -> None:
    plan = bench.plan
    log("lambda: warm invocations (router, direct aiohttp and Http1Upstream, FastAPI+Mangum), interleaved")
    out = bench.tmp / "lambda.json"
    errors = bench.tmp / "lambda-stderr.log"
    with errors.open("w") as err:
        subprocess.run(
            [
                bench.python,
                str(BENCH_DIR / "_lambda_warm.py"),
                "--backend-url",
                bench.backend_url,
                "--config",
                str(bench.config_path),
                "--result",
                str(out),
                "--n",
                str(plan.lambda_n),
                "--rounds",
                str(plan.lambda_rounds),
                "--warmup",
                str(plan.lambda_warmup),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=300,
            check=False,
        )
    if not out.exists():
        raise RuntimeError(f"the Lambda warm-path worker failed:\n{errors.read_text()[-3000:]}")
    result = json.loads(out.read_text())
    # The target compares with the fastest direct GET this process can make: the faster of the rows.
    directs = [name for name in LAMBDA_CLIENT if "p50_us" in result.get(name, {})]
    best = min(directs, key=lambda name: result[name]["p50_us"])
    direct = result[best]
    rows = []
    for name, r in result.items():
        if "skipped" in r:
            rows.append([f"{LAMBDA_LABELS[name]}: skipped", "-", "-", "-", "-", "-", "-"])
            continue
        rows.append(
            [
                LAMBDA_LABELS[name] + (" *" if name == best else ""),
                f"{r['mean_us']:.0f}",
                f"{r['p50_us']:.0f}",
                f"{r['p99_us']:.0f}",
                fmt_ratio(r["p50_us"] / direct["p50_us"]),
                str(r["status"]),
                str(r["body_bytes"]),
            ]
        )
    table(
        f"2. Lambda warm path  (in-process, {plan.lambda_rounds} rounds x {plan.lambda_n} invocations each,"
        " logs on to /dev/null)",
        ["µs per invocation", "mean", "p50", "p99", "p50 / direct *", "status", "body B"],
        rows,
    )
    value = result["router"]["p50_us"] / direct["p50_us"]
    mean_value = result["router"]["mean_us"] / direct["mean_us"]
    ok = value <= TARGET_LAMBDA_RATIO
    print(f"   * direct = {LAMBDA_LABELS[best]}, the faster direct row at p50")
    for name, r in result.items():
        if "skipped" in r:
            print(f"   {LAMBDA_LABELS[name]} skipped: {r['skipped'][:200]}")
    print(
        f"   proxied / direct: p50 {value:.2f}x, mean {mean_value:.2f}x"
        f" (the router adds {result['router']['p50_us'] - direct['p50_us']:.0f} µs at p50)"
        f"   target <= {TARGET_LAMBDA_RATIO:g}x  {verdict(ok)}"
    )
    bench.check(
        f"lambda: proxied / direct GET with {LAMBDA_CLIENT[best]} (p50)",
        f"{value:.2f}x",
        f"<= {TARGET_LAMBDA_RATIO:g}x",
        ok,
    )
    if result["router"]["status"] != 200:
        bench.check("lambda: router answered 200", str(result["router"]["status"]), "200", False)
    bench.results["lambda"] = {
        **result,
        "direct_row": best,
        "proxied_over_direct_p50": value,
        "proxied_over_direct_mean": mean_value,
        "router_added_p50_us": result["router"]["p50_us"] - direct["p50_us"],
    }


# ---------------------------------------------------------------------------------------------- cold


def cold_once(bench: Bench, mode: str, index: int, package: Path, bytecode: bool) -> dict[str, Any]:
    tag = f"{mode}-{'pyc' if bytecode else 'src'}"
    out = bench.tmp / f"cold-{tag}-{index}.json"
    # -S: no site-packages, so the child sees what a deployed function sees: the standard library
    # (compiled, as in the Lambda runtime) and the package folder (bench/_package.py), nothing else.
    command = [bench.python, "-S", str(BENCH_DIR / "_cold.py"), mode, "--result", str(out)]
    if mode == "router":
        command += ["--config", str(bench.config_path)]
    drop = {"PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(package)
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # Lambda's /var/task is read-only: every start compiles
    started = time.perf_counter()
    done = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60, env=env
    )
    wall_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"cold start ({tag}) failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["process_wall_ms"] = wall_ms
    return result


def run_cold(bench: Bench) -> None:
    plan = bench.plan
    log("cold: building Lambda-shaped packages (bench/_package.py)")
    source_only, compiled = build_packages(bench.tmp / "cold", bench.router_src)
    # (mode, bytecode): the router and FastAPI as `sam build` ships them (src/Makefile compiles),
    # and the router as SAM's default Python builder would ship it, with no .pyc at all.
    variants = (("bare", True), ("router", True), ("fastapi", True), ("router", False))
    packages = {True: compiled, False: source_only}
    log(f"cold: {plan.cold_runs} fresh processes per variant (+1 discarded warm-up each)")
    for mode, bytecode in variants:
        cold_once(bench, mode, -1, packages[bytecode], bytecode)  # page cache warm for every variant
    runs: dict[tuple[str, bool], list[dict[str, Any]]] = {v: [] for v in variants}
    for index in range(plan.cold_runs):
        for mode, bytecode in variants:  # interleaved, so drift hits every variant alike
            runs[(mode, bytecode)].append(cold_once(bench, mode, index, packages[bytecode], bytecode))

    def med(variant: tuple[str, bool], key: str) -> float:
        return median([r[key] for r in runs[variant]])

    labels = {
        ("bare", True): "bare interpreter (for scale)",
        ("router", True): "router, with .pyc (sam build)",
        ("fastapi", True): "FastAPI+Mangum hello, with .pyc",
        ("router", False): "router, no .pyc (SAM's python builder)",
    }
    bare = ("bare", True)
    rows = [[labels[bare], "-", "-", "-", "-", fmt_ms(med(bare, "process_wall_ms"))]]
    rows[0] += [f"{med(bare, 'maxrss_kib') / 1024:.1f} MiB", "-"]
    rows += [
        [
            labels[variant],
            fmt_ms(med(variant, "import_ms")),
            fmt_ms(med(variant, "build_ms")),
            fmt_ms(med(variant, "invoke_ms")),
            fmt_ms(med(variant, "total_ms")),
            fmt_ms(med(variant, "process_wall_ms")),
            f"{med(variant, 'maxrss_kib') / 1024:.1f} MiB",
            str(runs[variant][0]["status"]),
        ]
        for variant in variants[1:]
    ]
    table(
        f"3. Cold start  (median of {plan.cold_runs} fresh processes; warm disk cache)",
        ["", "import", "build", "1st invoke", "total", "process wall", "peak RSS", "status"],
        rows,
    )
    router, fastapi, no_pyc = ("router", True), ("fastapi", True), ("router", False)
    value = med(router, "total_ms") / med(fastapi, "total_ms")
    wall = med(router, "process_wall_ms") / med(fastapi, "process_wall_ms")
    without = med(no_pyc, "total_ms") / med(router, "total_ms")
    ok = value <= TARGET_COLD_RATIO
    print(
        f"   router / FastAPI+Mangum: total {value:.2f}x (process wall {wall:.2f}x)"
        f"   target <= {TARGET_COLD_RATIO:g}x  {verdict(ok)}"
    )
    print(f"   router without bytecode / with: total {without:.2f}x")
    bench.check("cold: router / FastAPI+Mangum (total)", f"{value:.2f}x", f"<= {TARGET_COLD_RATIO:g}x", ok)
    bench.results["cold"] = {
        "runs": {f"{mode}-{'pyc' if pyc else 'src'}": r for (mode, pyc), r in runs.items()},
        "router_over_fastapi_total": value,
        "router_over_fastapi_wall": wall,
        "router_without_over_with_bytecode_total": without,
    }


# ---------------------------------------------------------------------------------------------- upstream


def run_upstream(bench: Bench) -> None:
    plan = bench.plan
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for client in ("aiohttp", "httpx", "http1"):
        log(f"upstream: {client}")
        out = bench.tmp / f"client-{client}.json"
        done = subprocess.run(
            [
                bench.python,
                str(BENCH_DIR / "_clients.py"),
                client,
                "--url",
                bench.backend_url + "/",
                "--result",
                str(out),
                "--n",
                str(plan.client_n),
                "--duration",
                str(plan.client_s),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            if client == "http1":  # the router's own client may not exist yet: a row that says so
                last = (done.stderr.strip().splitlines() or ["?"])[-1]
                skipped[client] = last[:100]
                continue
            raise RuntimeError(f"upstream client {client} failed:\n{done.stderr[-3000:]}")
        results[client] = json.loads(out.read_text())
    rows = []
    for client in skipped:
        rows.append([f"{client}: skipped", "-", "-", "-", "-", "-", "-", "-"])
    for client, r in results.items():
        seq, coro, conc = r["sequential_run_until_complete"], r["sequential_in_coroutine"], r["concurrent"]
        rows.append(
            [
                client,
                f"{seq['p50_us']:.0f}",
                f"{seq['mean_us']:.0f}",
                f"{coro['p50_us']:.0f}",
                fmt_rps(conc["rps"]),
                fmt_us(conc["p50_us"]),
                fmt_us(conc["p99_us"]),
                str(conc["errors"]),
            ]
        )
    aiohttp_seq = results["aiohttp"]["sequential_run_until_complete"]["p50_us"]
    seq_ratio = results["httpx"]["sequential_run_until_complete"]["p50_us"] / aiohttp_seq
    conc_ratio = results["aiohttp"]["concurrent"]["rps"] / results["httpx"]["concurrent"]["rps"]
    table(
        "4. Upstream client  (plain asyncio loop, kept-alive, same backend; sequential in µs per GET;"
        " http1 = edge_router.upstream.http1.Http1Upstream)",
        [
            "client",
            "seq p50 (per loop call)",
            "seq mean",
            "seq p50 (one coroutine)",
            "c=32 req/s",
            "c=32 p50",
            "c=32 p99",
            "errors",
        ],
        rows,
    )
    print(
        f"   httpx / aiohttp sequential p50: {seq_ratio:.2f}x slower;"
        f"  aiohttp / httpx req/s at c=32: {conc_ratio:.2f}x"
    )
    for client, why in skipped.items():
        print(f"   {client} skipped: {why}")
    if "http1" in results:
        http1 = results["http1"]
        print(
            "   Http1Upstream / aiohttp sequential p50:"
            f" {http1['sequential_run_until_complete']['p50_us'] / aiohttp_seq:.2f}x;"
            f"  req/s at c=32: {http1['concurrent']['rps'] / results['aiohttp']['concurrent']['rps']:.2f}x"
        )
    bench.results["upstream"] = {
        **results,
        "skipped": skipped,
        "httpx_over_aiohttp_seq_p50": seq_ratio,
        "aiohttp_over_httpx_c32": conc_ratio,
    }


# ---------------------------------------------------------------------------------------------- failover


# ---------------------------------------------------------------------------------------------- guards


def run_guards(bench: Bench) -> None:
    """The guards' cost (CONTRACT section 8): Lambda per guard, then server with all vs none."""
    plan = bench.plan
    log("guards: Lambda warm path, one route per guard (bench/guards.py)")
    done = subprocess.run(
        [
            bench.python,
            str(BENCH_DIR / "guards.py"),
            "--n",
            str(plan.lambda_n),
            "--rounds",
            str(plan.lambda_rounds),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    print("\n" + done.stdout.strip())
    bench.results["guards_lambda"] = done.stdout
    if bench.loadgen != "wrk":
        log("guards: server part skipped (it sends an API key and an Origin: needs wrk)")
        return
    sys.path.insert(0, str(BENCH_DIR))
    from guards import GUARDS, KEY

    every = {**GUARDS["all"], "ip_rules": {"allow": ["127.0.0.0/8"]}}  # the load comes from loopback
    routes = [
        {"prefix": "/guarded", "target": bench.backend_url, **every},
        {"prefix": PATH, "target": bench.backend_url},
    ]
    config = write_json(bench.tmp / "guards.json", {"routes": routes})
    proc, port = start_router(bench, config, name="router-guards")
    headers = (f"x-api-key: {KEY}", "origin: https://app.example.com")
    rows: list[list[str]] = []
    rps: dict[str, list[float]] = {"none": [], "all": []}
    try:
        for _ in range(3):
            rps["none"].append(load(bench, port, 32, plan.load_s)["rps"])
            rps["all"].append(load(bench, port, 32, plan.load_s, path="/guarded/x", headers=headers)["rps"])
    finally:
        bench.children.stop(proc)
    none, guarded = median(rps["none"]), median(rps["all"])
    rows.append(["no guard", fmt_rps(none), "", ""])
    rows.append(
        [
            "every guard",
            fmt_rps(guarded),
            fmt_ratio(ratio(guarded, none)),
            f"{(1 / guarded - 1 / none) * 32e6:+.0f}",
        ]
    )
    table("Guards, server mode, c=32 (interleaved x3)", ["route", "req/s", "vs none", "µs/req (c=32)"], rows)
    bench.results["guards_server"] = rps


def run_cache(bench: Bench) -> None:
    """The response cache (CONTRACT section 9): bench/cache.py, given this module's helpers."""
    import cache

    cache.run_cache(bench, sys.modules[__name__])


def run_websocket(bench: Bench) -> None:
    """WebSocket passthrough (issue 16): bench/ws.py, given this module's helpers."""
    import ws

    ws.run_websocket(bench, sys.modules[__name__])


def run_memory(bench: Bench) -> None:
    """Router RSS over 100k kept-alive requests (issue 16): bench/memory.py."""
    import memory

    memory.run_memory(bench, sys.modules[__name__])


def run_async(coroutine: Any) -> Any:
    """Run one coroutine on a fresh loop (uvloop when installed). On Ctrl-C or SIGTERM the Runner
    cancels what is left and lets it close its sessions before the children are stopped."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coroutine)


def failover_router(
    bench: Bench, name: str, document: dict[str, Any]
) -> tuple[subprocess.Popen[Any], str, str]:
    """`edge-router serve` on `document` with an admin key; returns it, its URL and the key."""
    key = secrets.token_hex(16)
    config = write_json(bench.tmp / f"{name}.json", document)
    # Per-process circuit state only: a STATE_TABLE from the caller's environment would share it.
    env = {var: value for var, value in os.environ.items() if var != "STATE_TABLE"}
    env["ADMIN_KEY"] = key
    proc, port = start_router(bench, config, env=env, ready_path="/health", name=name)
    return proc, f"http://{LOOPBACK}:{port}", key


def run_failover(bench: Bench) -> None:
    failover_hanging(bench)
    failover_killed(bench)


def failover_hanging(bench: Bench) -> None:
    """A priority config whose first provider accepts, reads and never answers (bench/_hang.py)."""
    import _failover

    plan = bench.plan
    timeout_ms = plan.hang_timeout_ms or PRIORITY_TIMEOUT_MS
    timeout_label = (
        f"timeout_ms {timeout_ms} (--quick)"
        if plan.hang_timeout_ms
        else f"seed default timeout {timeout_ms} ms"
    )
    log(f"failover: hanging provider ({timeout_label}; each request costs that until the circuit opens)")
    stats = bench.tmp / "hang-stats.json"
    hang, hang_port = _failover.start_port_child(
        bench.children,
        [bench.python, str(BENCH_DIR / "_hang.py"), "--stats", str(stats)],
        "the hanging provider (bench/_hang.py)",
    )
    router = None
    try:
        hang_url = f"http://{LOOPBACK}:{hang_port}"
        document: dict[str, Any] = {
            "global_priority": "12",
            "routes": {"direct": {"priority": "2"}},
            "providers": {"1": hang_url, "2": bench.backend_url},
        }
        if plan.hang_timeout_ms:
            document["timeout_ms"] = plan.hang_timeout_ms
        router, router_url, key = failover_router(bench, "router-hang", document)
        result = run_async(
            asyncio.wait_for(
                _failover.hanging_provider(
                    router=router_url,
                    admin_key=key,
                    hang_backend=hang_url,
                    stats=stats,
                    timeout_ms=timeout_ms,
                    max_before=3 * POOL_FAILURE_THRESHOLD,
                    n_after=plan.hang_n,
                    warmup=20,
                ),
                timeout=3 * POOL_FAILURE_THRESHOLD * (timeout_ms / 1000 + 2) + 120,
            )
        )
    finally:
        if router is not None:
            bench.children.stop(router)
        bench.children.stop(hang)

    before, after, direct = result["before"], result["after"], result["direct"]
    opened_after = result["opened_after_requests"]
    s_before = _failover.summarize_ms([r["ms"] for r in before])
    s_after = _failover.summarize_ms([r["ms"] for r in after])
    s_direct = _failover.summarize_ms([r["ms"] for r in direct])

    def answers(records: list[dict[str, Any]]) -> str:
        counts: dict[str, int] = {}
        for r in records:
            what = str(r["status"]) if r["error"] is None else "error"
            if r["backend"] == bench.backend_url:
                what += " from 2"
            elif r["backend"] == hang_url:
                what += " from 1"
            counts[what] = counts.get(what, 0) + 1
        return ", ".join(f"{n} x {what}" for what, n in sorted(counts.items())) or "-"

    rows = [
        [
            "/app before provider 1's circuit opened",
            str(s_before["n"]),
            fmt_ms(s_before["p50_ms"]),
            fmt_ms(s_before["p99_ms"]),
            "",
            answers(before),
        ],
        [
            "/app once it is OPEN",
            str(s_after["n"]),
            f"{s_after['p50_ms']:.2f} ms" if after else "-",
            f"{s_after['p99_ms']:.2f} ms" if after else "-",
            f"{s_after['p50_ms'] - s_direct['p50_ms']:+.2f} ms" if after else "-",
            answers(after),
        ],
        [
            "/direct (provider 2 alone)",
            str(s_direct["n"]),
            f"{s_direct['p50_ms']:.2f} ms" if direct else "-",
            f"{s_direct['p99_ms']:.2f} ms" if direct else "-",
            "",
            answers(direct),
        ],
    ]
    table(
        f"5a. Failover: hanging provider  (priority format, providers 1 = never answers, 2 = backend;"
        f" {timeout_label}; sequential GETs)",
        ["requests", "n", "p50", "p99", "p50 vs direct", "answers"],
        rows,
    )
    per_request = ", ".join(f"{r['ms']:.0f}" for r in before)
    at_open, at_end = result["circuit_at_open"], result["circuit_at_end"]
    hang_open, hang_end = result["hang_at_open"], result["hang_at_end"]
    print(f"   before the circuit opened, ms per request: {per_request}")
    print(
        "   provider 1's circuit: "
        + (
            f"OPEN after {opened_after} requests (pool default threshold {POOL_FAILURE_THRESHOLD});"
            if opened_after
            else f"still {at_end.get('state')} after {len(before)} requests;"
        )
        + f" at the end {at_end.get('state')}, failures {at_end.get('failures')},"
        f" total {at_end.get('total_failures')}, next attempt {at_end.get('next_attempt')}"
    )
    print(
        f"   requests that reached provider 1: {hang_open.get('requests', '?')} until it opened,"
        f" {hang_end.get('requests', 0) - hang_open.get('requests', 0)} after;"
        f" connections still open to it at the end: {hang_end.get('open', '?')}"
    )
    added = s_after["p50_ms"] - s_direct["p50_ms"] if after and direct else None
    ok = None if added is None else added <= TARGET_FAILOVER_ADDED_MS
    print(
        f"   /app p50 once OPEN - /direct p50: {fmt_ms(added) if added is None else f'{added:.2f} ms'}"
        f"   target <= {TARGET_FAILOVER_ADDED_MS:g} ms  {verdict(ok)}"
    )
    bench.check(
        "failover: hanging provider, /app p50 once OPEN - /direct p50",
        "-" if added is None else f"{added:.2f} ms",
        f"<= {TARGET_FAILOVER_ADDED_MS:g} ms",
        ok,
    )
    bench.check(
        "failover: hanging provider, requests until its circuit opened",
        str(opened_after) if opened_after else f"not open after {len(before)}",
        "",
        None,
    )
    bench.check("failover: hanging provider, /app p50 before it opened", fmt_ms(s_before["p50_ms"]), "", None)
    bench.results.setdefault("failover", {})["hanging_provider"] = {
        "timeout_ms": timeout_ms,
        "timeout_is_default": plan.hang_timeout_ms is None,
        "requests_to_open": opened_after,
        "before": before,
        "before_summary": s_before,
        "after_summary": s_after,
        "direct_summary": s_direct,
        "after_minus_direct_p50_ms": added,
        "circuit_at_open": at_open,
        "circuit_at_end": at_end,
        "hang_provider_at_open": hang_open,
        "hang_provider_at_end": hang_end,
    }


def error_summary(record: dict[str, Any]) -> str:
    """A failed request in one line: the transport error, or the status and the router's message."""
    if record["error"] is not None:
        return str(record["error"])
    try:
        message = json.loads(record["body"] or "")["message"]
    except (ValueError, KeyError, TypeError):
        message = (record["body"] or "").strip()[:120]
    return f"{record['status']} {message}"


def failover_killed(bench: Bench) -> None:
    """A round-robin pool of two backends; B is SIGKILLed once request #kill_after was sent."""
    import _failover

    plan = bench.plan
    log(
        f"failover: backend killed mid-load ({plan.kill_workers} workers, {plan.kill_total} requests,"
        f" SIGKILL B after #{plan.kill_after})"
    )
    backend_a, port_a = start_backend(bench.children, bench.python)
    backend_b: subprocess.Popen[Any] | None = None
    router = None
    try:
        backend_b, port_b = start_backend(bench.children, bench.python)
        url_a, url_b = f"http://{LOOPBACK}:{port_a}", f"http://{LOOPBACK}:{port_b}"
        document = {"routes": [{"prefix": PATH, "targets": [url_a, url_b], "strategy": "round_robin"}]}
        router, router_url, key = failover_router(bench, "router-kill", document)
        victim = backend_b

        def kill() -> None:
            os.killpg(victim.pid, signal.SIGKILL)  # its own process group: the backend alone

        result = run_async(
            asyncio.wait_for(
                _failover.killed_backend(
                    router=router_url,
                    admin_key=key,
                    path=PATH,
                    backend_a=url_a,
                    backend_b=url_b,
                    kill=kill,
                    workers=plan.kill_workers,
                    total=plan.kill_total,
                    kill_after=plan.kill_after,
                    warmup=100,
                ),
                timeout=120,
            )
        )
        victim.wait(timeout=10)  # reaped; it died of SIGKILL
    finally:
        if router is not None:
            bench.children.stop(router)
        if backend_b is not None:
            bench.children.stop(backend_b)
        bench.children.stop(backend_a)

    records: list[dict[str, Any]] = result["records"]
    for r in records:
        r["ms"] = r["end_ms"] - r["start_ms"]
        r["failed"] = r["error"] is not None or r["status"] != 200
    phases = {
        "done before the kill": [r for r in records if r["end_ms"] <= 0],
        "in flight at the kill": [r for r in records if r["start_ms"] < 0 < r["end_ms"]],
        "sent after the kill": [r for r in records if r["start_ms"] >= 0],
        "all": records,
    }
    rows = []
    summaries: dict[str, Any] = {}
    for name, group in phases.items():
        s = _failover.summarize_ms([r["ms"] for r in group])
        by_a = sum(1 for r in group if r["backend"] == url_a and not r["failed"])
        by_b = sum(1 for r in group if r["backend"] == url_b and not r["failed"])
        failed = sum(1 for r in group if r["failed"])
        summaries[name] = {**s, "by_a": by_a, "by_b": by_b, "errors": failed}
        rows.append(
            [
                name,
                str(len(group)),
                str(by_a),
                str(by_b),
                str(failed),
                "-" if not group else f"{s['p50_ms']:.2f} ms",
                "-" if not group else f"{s['p99_ms']:.2f} ms",
                "-" if not group else f"{s['max_ms']:.2f} ms",
            ]
        )
    table(
        f"5b. Failover: backend killed mid-load  (round_robin over A and B, {plan.kill_workers} workers,"
        f" {plan.kill_total} requests, SIGKILL B once #{plan.kill_after} was sent)",
        ["requests", "n", "200 by A", "200 by B", "errors", "p50", "p99", "max"],
        rows,
    )

    errors = [r for r in records if r["failed"]]
    in_flight = {r["n"] for r in phases["in flight at the kill"]}
    stray = [r for r in errors if r["n"] not in in_flight]
    transport = sum(1 for r in errors if r["error"] is not None)
    print(
        f"   client-visible errors: {len(errors)} ({len(errors) - transport} non-200, {transport} transport);"
        f" {len(errors) - len(stray)} of them among the {len(in_flight)} requests in flight at the kill"
    )
    for r in errors[:10]:
        print(
            f"     #{r['n']} sent {r['start_ms']:+.1f} ms, answered {r['end_ms']:+.1f} ms: {error_summary(r)}"
        )
    if len(errors) > 10:
        print(f"     ... and {len(errors) - 10} more (all in the JSON results)")
    last_b = max((r["end_ms"] for r in records if r["backend"] == url_b and r["end_ms"] > 0), default=None)
    last_error = max((r["end_ms"] for r in errors), default=None)
    last_failure = result["last_failure_on_b_ms"]
    moments = [m for m in (last_b, last_error, last_failure) if m is not None]
    moved = max(moments) if moments else 0.0

    def at(value: float | None) -> str:
        return "none" if value is None else f"{value:+.1f} ms"

    circuit_b, circuit_a = result["circuit_b"], result["circuit_a"]
    print(
        f"   traffic fully moved {moved:.1f} ms after the kill: last answer from B {at(last_b)},"
        f" last failed attempt on B (router's last_failure, ms precision) {at(last_failure)},"
        f" last client error {at(last_error)}"
    )
    print(
        f"   B's circuit: {circuit_b.get('state')} (failures {circuit_b.get('failures')},"
        f" total {circuit_b.get('total_failures')}, next attempt {circuit_b.get('next_attempt')});"
        f" A's: {circuit_a.get('state')} (failures {circuit_a.get('failures')})"
    )
    after = summaries["sent after the kill"]
    ok = not stray
    bench.check(
        "failover: backend killed, client errors outside the requests in flight at the kill",
        f"{len(stray)} (of {len(errors)} errors)",
        "0",
        ok,
    )
    bench.check("failover: backend killed, traffic fully moved after", f"{moved:.1f} ms", "", None)
    bench.check("failover: backend killed, B's circuit", str(circuit_b.get("state")), "", None)
    bench.check(
        "failover: backend killed, p50 / p99 after the kill",
        f"{after['p50_ms']:.2f} / {after['p99_ms']:.2f} ms",
        "",
        None,
    )
    bench.results.setdefault("failover", {})["backend_killed"] = {
        "workers": plan.kill_workers,
        "requests": plan.kill_total,
        "kill_after": plan.kill_after,
        "backend_a": url_a,
        "backend_b": url_b,
        "phases": summaries,
        "errors": errors,
        "errors_outside_in_flight": len(stray),
        "in_flight_at_kill": [r for r in records if r["n"] in in_flight],
        "last_answer_from_b_ms": last_b,
        "last_failed_attempt_on_b_ms": last_failure,
        "last_error_ms": last_error,
        "traffic_moved_ms": moved,
        "circuit_b": circuit_b,
        "circuit_a": circuit_a,
    }


# ---------------------------------------------------------------------------------------------- main


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("edge-router", "aiohttp", "httpx", "uvicorn", "uvloop", "httptools", "fastapi", "mangum"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    nginx = nginx_binary()
    if nginx:
        done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10, check=False)
        out["nginx"] = done.stderr.strip().split("/")[-1]
    if shutil.which("wrk"):
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
        out["wrk"] = (done.stdout + done.stderr).split()[1] if (done.stdout + done.stderr).split() else "?"
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (about a minute in all)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help="comma-separated sections to run: " + ",".join(SECTIONS)
    )
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="server-mode load generator (auto: wrk when installed)",
    )
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/*.json")
    parser.add_argument(
        "--router-src",
        type=Path,
        help="another checkout's src/ to measure (first on the children's PYTHONPATH; the cold"
        " section packages it); default: this checkout's",
    )
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    return args


def _terminate(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops every child


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    elif loadgen == "wrk" and not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    plan = Plan.make(args.quick)
    started = time.perf_counter()
    info = versions()
    print(f"edge-router bench  ({'quick' if plan.quick else 'full'}; sections: {', '.join(args.sections)})")
    print(f"  {os.cpu_count()} CPUs, {platform.platform()}")
    print("  " + ", ".join(f"{k} {v}" for k, v in info.items()))
    busy = os.getloadavg()[0]
    print(
        f"  load average at start {busy:.2f}"
        + ("  (other work is running: numbers will be noisy)" if busy > 0.5 else "")
    )

    if args.router_src is not None:
        src = args.router_src.resolve()
        if not (src / "edge_router").is_dir():
            print(f"--router-src {src}: no edge_router package there", file=sys.stderr)
            return 2
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
        print(f"  router from {src}")
    children = Children()
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edge-router-bench-") as tmp:
        bench = Bench(plan=plan, python=sys.executable, tmp=Path(tmp), children=children, loadgen=loadgen)
        if args.router_src is not None:
            bench.router_src = args.router_src.resolve()
        try:
            _backend, bench.backend_port = start_backend(children, bench.python)
            bench.backend_url = f"http://{LOOPBACK}:{bench.backend_port}"
            bench.config_path = write_json(bench.tmp / "router.json", router_config(bench.backend_url))
            runners = {
                "server": run_server,
                "lambda": run_lambda,
                "cold": run_cold,
                "upstream": run_upstream,
                "failover": run_failover,
                "guards": run_guards,
                "cache": run_cache,
                "websocket": run_websocket,
                "memory": run_memory,
            }
            for section in SECTIONS:
                if section in args.sections:
                    try:
                        runners[section](bench)
                    except Exception as exc:  # the router is a moving target: report and go on
                        failed.append(section)
                        section_failed(bench, section, exc)
        finally:
            children.stop_all()

    elapsed = time.perf_counter() - started
    if bench.checks:
        table(
            "Targets",
            ["", "value", "target", ""],
            # a row without a target is informational: no verdict
            [
                [name, value, target, verdict(ok) if target else ""]
                for name, value, target, ok in bench.checks
            ],
        )
    print(f"\n  total time {elapsed:.0f}s")
    if not args.no_json:
        results_dir = BENCH_DIR / "results"
        results_dir.mkdir(exist_ok=True)
        document = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "mode": "quick" if plan.quick else "full",
            "sections": args.sections,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "versions": info,
            "elapsed_s": elapsed,
            "checks": [{"name": n, "value": v, "target": t, "ok": ok} for n, v, t, ok in bench.checks],
            **bench.results,
        }
        path = results_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
        write_json(path, document)
        write_json(results_dir / "latest.json", document)
        print(f"  results: {path.relative_to(BENCH_DIR.parent)}")
    if failed:
        print(f"  sections that failed: {', '.join(failed)} (tracebacks above, on stderr)")
    return 1 if failed else 0


def section_failed(bench: Bench, section: str, exc: Exception) -> None:
    """A section that raised: its traceback to stderr, one line in its place and a MISS in Targets
    (its own `finally` blocks have stopped its children; the next section runs)."""
    traceback.print_exc(file=sys.stderr)
    lines = [line for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
    summary = f"{type(exc).__name__}: {lines[0]}"[:160]
    print(f"\n{section}: FAILED  {summary}")
    for line in lines[1:][-6:]:
        print(f"   {line[:160]}")
    sys.stdout.flush()
    bench.check(f"{section}: the section ran", "failed", "ran", False)
    bench.results[f"{section}_error"] = "".join(traceback.format_exception(exc))


if __name__ == "__main__":
    sys.exit(main())
