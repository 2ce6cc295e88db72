"""The response cache (CONTRACT section 9): what a hit costs, next to nginx's, and what caching holds.

    .venv/bin/python bench/run.py --only cache [--quick]    # the section, with the other tables' output
    .venv/bin/python bench/cache.py [--quick]               # the same
    .venv/bin/python bench/cache.py backend                 # this section's backend alone ("PORT <n>")

Throughput, server mode, c=32 (wrk), the targets interleaved round by round, medians:

  router, cached route    `"cache": {"enabled": true, "ttl": 300}`, one URL, a 1.5 KB body
  nginx proxy_cache       the same URL and bytes from the same backend (1 worker, keep-alive, a disk
                          cache zone, as `proxy_cache` comes out of the box)
  router, uncached route  the same router process, a route without a cache block

The backend counts the requests that reach it, so every row says how many of its answers came from
the backend: a working cache sends none there during the run.

Memory, a fresh router with default caps (entry 1 MiB, total 64 MiB): VmRSS (/proc/<pid>/status)
after a warm-up, after 10,000 distinct URLs on an uncached route (what serving alone adds), after
10,000 distinct URLs of ~1 KiB on a cached route (`/item/<i>`, the backend answers
`Cache-Control: public, max-age=300`), after reading them all again (all hits), and after 10,000
URLs of 8 KiB (80 MiB offered, over the total cap: the LRU must evict). The growth from caching is
checked against the total cap plus an allowance for the per-entry Python objects; a 2 MiB answer
(over the entry cap) must not be stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import LOOPBACK, free_port, median, new_event_loop, wait_http, write_json
from _failover import start_port_child

BODY_BYTES = 1536  # the throughput URL's body
ITEM_BYTES = 1024  # the memory phase's bodies
BIG_ITEM_BYTES = 8192  # over-the-cap phase: 10,000 x 8 KiB = 80 MiB offered
HUGE_BYTES = 2 * 1024 * 1024  # over the 1 MiB entry cap
N_URLS = 10_000
ENTRY_CAP_MIB = 1
TOTAL_CAP_MIB = 64  # the cache's defaults (features.cache.maxBytes)
OVERHEAD_ALLOWANCE_MIB = 32  # per-entry Python objects (key, headers, LRU links) and allocator slack
MAX_AGE = 300
CLIENT_WORKERS = 16
THROUGHPUT_PATH = "/cached/page"  # router: route /cached; nginx: location /cached/
UNCACHED_PATH = "/plain/page"

# ---------------------------------------------------------------------------------------------- backend


class Stats:
    requests = 0  # answers sent, GET /__stats aside
    recent: deque[str] = deque(maxlen=16)  # the last requests: "<epoch s> <request line>"


def build_response(target: bytes) -> bytes:
    """A 200 whose body is the request target padded to `?size=` bytes (BODY_BYTES by default),
    cacheable for MAX_AGE seconds by any shared cache."""
    size = BODY_BYTES
    query = target.partition(b"?")[2]
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"size" and value.isdigit():
            size = min(int(value), 4 * HUGE_BYTES)
    body = (target + b" " + b"x" * size)[:size]
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        + f"Cache-Control: public, max-age={MAX_AGE}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    return head + body


def stats_response() -> bytes:
    body = json.dumps({"requests": Stats.requests, "recent": list(Stats.recent)}).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class BackendProtocol(asyncio.Protocol):
    """Like bench/_backend.py (header block and Content-Length only), plus the request target."""

    memo: dict[bytes, bytes] = {}  # shared by every connection: a few hot targets

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        out: list[bytes] = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            lower = head.lower()
            length = 0
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else len(lower)].strip())
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length :]
            line = head[: head.find(b"\r\n") if b"\r\n" in head else len(head)]
            parts = line.split(b" ")
            target = parts[1] if len(parts) > 1 else b"/"
            if target == b"/__stats":
                out.append(stats_response())
            else:
                Stats.requests += 1
                Stats.recent.append(f"{time.time():.3f} {line.decode('latin-1')}")
                response = self.memo.get(target)
                if response is None:
                    response = build_response(target)
                    if len(self.memo) < 64:
                        self.memo[target] = response
                out.append(response)
            if b"\r\nconnection: close" in lower:
                close = True
                break
        self.buffer = buffer
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            if close:
                self.transport.close()


async def serve_backend() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BackendProtocol, LOOPBACK, 0, backlog=4096, reuse_address=True)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def backend_main() -> int:
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve_backend())
    finally:
        loop.close()
    return 0


# ---------------------------------------------------------------------------------------------- helpers

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def backend_stats(port: int) -> dict[str, Any]:
    """The backend's count of requests and its last few request lines."""
    with _OPENER.open(f"http://{LOOPBACK}:{port}/__stats", timeout=5) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
    return stats


def backend_requests(port: int) -> int:
    return int(backend_stats(port)["requests"])


def settled_stats(port: int, quiet_s: float = 0.3, deadline_s: float = 5.0) -> dict[str, Any]:
    """The backend's stats once its count stopped moving for `quiet_s` (bounded by `deadline_s`).
    When wrk stops, the requests it had in flight are still queued in the proxy and reach the
    backend a few ms later: without this they would count against the next run."""
    deadline = time.monotonic() + deadline_s
    stats = backend_stats(port)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        latest = backend_stats(port)
        if latest["requests"] == stats["requests"]:
            return latest
        stats = latest
    return stats


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET; the status, the answer's headers (names lower-cased) and its body."""
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", headers=headers or {})
    try:
        with _OPENER.open(request, timeout=10) as answer:
            status, fields, body = answer.status, answer.headers.items(), answer.read()
    except urllib.error.HTTPError as exc:
        status, fields, body = exc.code, exc.headers.items(), exc.read()
    return status, {name.lower(): value for name, value in fields}, body


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def cache_stats(port: int, key: str) -> dict[str, Any] | None:
    """GET /admin/cache-stats, or None when this router has no such endpoint."""
    status, _, body = get(port, "/admin/cache-stats", {"X-Admin-Key": key})
    if status != 200:
        return None
    stats: dict[str, Any] = json.loads(body)
    return stats


async def fetch_all(port: int, paths: Sequence[str], workers: int = CLIENT_WORKERS) -> dict[str, Any]:
    """GET every path once, `workers` at a time over kept-alive connections; bounded by a
    per-request timeout and the finite list."""
    import aiohttp

    statuses: Counter[int] = Counter()
    x_cache: Counter[str] = Counter()
    errors: list[str] = []
    body_bytes = 0
    todo = iter(paths)
    timeout = aiohttp.ClientTimeout(total=15)
    base = f"http://{LOOPBACK}:{port}"
    started = time.perf_counter()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=workers), timeout=timeout, auto_decompress=False
    ) as session:

        async def worker() -> None:
            nonlocal body_bytes
            for path in todo:  # one shared iterator: each path is fetched once
                try:
                    async with session.get(base + path) as response:
                        body_bytes += len(await response.read())
                        statuses[response.status] += 1
                        x_cache[response.headers.get("X-Cache", "-")] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(f"{path}: {exc!r}")

        await asyncio.gather(*(worker() for _ in range(workers)))
    return {
        "requests": len(paths),
        "elapsed_s": time.perf_counter() - started,
        "statuses": {str(k): v for k, v in statuses.items()},
        "x_cache": dict(x_cache),
        "errors": len(errors),
        "first_errors": errors[:5],
        "body_bytes": body_bytes,
    }


# ---------------------------------------------------------------------------------------------- section


def start_nginx_cache(bench: Any, R: Any, nginx: str, backend_port: int) -> tuple[subprocess.Popen[Any], int]:
    """nginx with proxy_cache (bench/run.py's nginx, plus a disk cache zone in the bench's temp
    dir); `X-Cache-Status` tells a HIT."""
    port = free_port()
    prefix = bench.tmp / "nginx-cache"
    (prefix / "cache").mkdir(parents=True, exist_ok=True)
    conf = R.write_nginx_conf(
        prefix,
        port,
        backend_port,
        location="/cached/",
        directives="""proxy_cache bench;
            add_header X-Cache-Status $upstream_cache_status always;""",
        http_extra=(
            f"proxy_cache_path {prefix}/cache levels=1:2 keys_zone=bench:8m max_size=1g inactive=600m;"
        ),
    )
    with (prefix / "stderr.log").open("w") as errors:
        proc = bench.children.start(
            [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")], stderr=errors
        )
    wait_http(port, THROUGHPUT_PATH, 10, proc)
    return proc, port


def router_env() -> tuple[dict[str, str], str]:
    key = secrets.token_hex(16)
    env = {var: value for var, value in os.environ.items() if var != "STATE_TABLE"}
    env["ADMIN_KEY"] = key
    return env, key


def cache_warnings(bench: Any, config: Path) -> list[str]:
    script = Path(bench.python).parent / "edge-router"
    command = [str(script)] if script.exists() else [bench.python, "-m", "edge_router.cli"]
    done = subprocess.run(
        [*command, "validate", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    return [line for line in done.stderr.splitlines() if "cache" in line and line.startswith("warning:")]


def stored_once(port: int, path: str, backend_port: int, header: str) -> dict[str, Any]:
    """GET `path` twice: did the second answer come from the cache (the backend saw no request)?"""
    settled_stats(backend_port)
    at = time.time()
    first = get(port, path)
    between = backend_requests(backend_port)
    second = get(port, path)
    reached = backend_requests(backend_port) - between
    return {
        "at": at,
        "statuses": [first[0], second[0]],
        "second_reached_backend": reached,
        "stored": reached == 0 and first[2] == second[2],
        "second_" + header: second[1].get(header.lower(), "-"),
    }


def verdict(ok: bool, enforced: bool) -> bool | None:
    """No verdict while the router says its cache is not enforced: the numbers mean nothing yet."""
    return ok if enforced else None


def run_cache(bench: Any, R: Any) -> None:
    """The section; `R` is bench/run.py's module (its load and wrk helpers), passed in so that this
    module never imports the entry point (no import circle)."""

    backend, backend_port = start_port_child(
        bench.children, [bench.python, str(Path(__file__).resolve()), "backend"], "the cache backend"
    )
    try:
        enforced = throughput(bench, R, backend_port)
        memory(bench, R, backend_port, enforced)
    finally:
        bench.children.stop(backend)


def throughput(bench: Any, R: Any, backend_port: int) -> bool:
    """The three targets, interleaved; returns whether the router enforces its cache blocks."""
    plan = bench.plan
    rounds = 2 if plan.quick else 3
    backend_url = f"http://{LOOPBACK}:{backend_port}"
    routes = [
        {"prefix": "/cached", "target": backend_url, "cache": {"enabled": True, "ttl": MAX_AGE}},
        {"prefix": "/plain", "target": backend_url},
    ]
    config = write_json(bench.tmp / "cache-throughput.json", {"routes": routes})
    warnings = cache_warnings(bench, config)
    for warning in warnings:
        R.log(f"cache: router says {warning!r}: the cached rows measure the uncached path")
    env, _ = router_env()
    router, router_port = R.start_router(
        bench, config, env=env, ready_path=UNCACHED_PATH, name="router-cache-throughput"
    )
    nginx = R.nginx_binary()
    nginx_proc = None
    try:
        targets: list[tuple[str, int, str, str]] = [
            ("router, cached route", router_port, THROUGHPUT_PATH, "X-Cache")
        ]
        if nginx:
            nginx_proc, nginx_port = start_nginx_cache(bench, R, nginx, backend_port)
            targets.append(("nginx proxy_cache", nginx_port, THROUGHPUT_PATH, "X-Cache-Status"))
        targets.append(("router, uncached route", router_port, UNCACHED_PATH, "X-Cache"))
        probes = {name: stored_once(port, path, backend_port, header) for name, port, path, header in targets}
        bodies = {name: get(port, path)[2] for name, port, path, _ in targets}
        same_bytes = len(set(bodies.values())) == 1
        for name, port, path, _ in targets:
            R.log(f"cache: warm-up {name}")
            R.load(bench, port, 32, plan.warm_s, path=path)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in targets}
        for n in range(rounds):
            for name, port, path, _ in targets:
                R.log(f"cache: round {n + 1}/{rounds} {name}")
                before = settled_stats(backend_port)["requests"]
                started = time.time()
                result = R.load(bench, port, 32, plan.load_s, path=path)
                after = settled_stats(backend_port)
                result["backend_requests"] = after["requests"] - before
                if path == THROUGHPUT_PATH and result["backend_requests"] and not warnings:
                    # a cached URL went to the backend: keep which requests, when (s into the run)
                    seen = after["recent"][-min(16, int(result["backend_requests"])) :]
                    result["backend_seen"] = [
                        f"+{float(entry.split(' ', 1)[0]) - started:.3f}s {entry.split(' ', 1)[1]}"
                        for entry in seen
                    ]
                    R.log(
                        f"cache: {name}: {result['backend_requests']} requests reached the backend"
                        f" (the last ones: {result['backend_seen'][0]} .. {result['backend_seen'][-1]})"
                    )
                runs[name].append(result)
    finally:
        if nginx_proc is not None:
            bench.children.stop(nginx_proc)
        bench.children.stop(router)

    summary: dict[str, dict[str, Any]] = {}
    rows = []
    for name, *_, header in targets:
        rs = runs[name]
        requests = sum(r["requests"] for r in rs)
        reached = sum(r["backend_requests"] for r in rs)
        summary[name] = {
            "rps": median([r["rps"] for r in rs]),
            "p50_us": median([r["p50_us"] for r in rs]),
            "p99_us": median([r["p99_us"] for r in rs]),
            "errors": sum(r["errors"] for r in rs),
            "requests": requests,
            "backend_requests": reached,
            "runs": rs,
            "probe": probes[name],
        }
        probe = probes[name]
        rows.append(
            [
                name,
                R.fmt_rps(summary[name]["rps"]),
                R.fmt_us(summary[name]["p50_us"]),
                R.fmt_us(summary[name]["p99_us"]),
                str(int(summary[name]["errors"])),
                f"{reached:,} of {int(requests):,}",
                f"{'yes' if probe['stored'] else 'no'} ({header}: {probe['second_' + header]})",
            ]
        )
    R.table(
        f"7. Response cache, server mode c=32  (load: {bench.loadgen}, {rounds} interleaved rounds of"
        f" {plan.load_s:g}s, medians; one URL, {BODY_BYTES} B body, Cache-Control max-age={MAX_AGE})",
        ["target", "req/s", "p50", "p99", "errors", "reached the backend", "2nd GET from cache"],
        rows,
    )
    cached = summary["router, cached route"]
    plain = summary["router, uncached route"]
    ng = summary.get("nginx proxy_cache")
    vs_plain = R.ratio(cached["rps"], plain["rps"])
    vs_nginx = R.ratio(cached["rps"], ng["rps"]) if ng else None
    nginx_vs_plain = R.ratio(ng["rps"], plain["rps"]) if ng else None
    print(
        f"   router cached / uncached route: {R.fmt_ratio(vs_plain)};"
        f" router cached / nginx proxy_cache: {R.fmt_ratio(vs_nginx)};"
        f" nginx proxy_cache / router uncached: {R.fmt_ratio(nginx_vs_plain)}"
    )
    print(f"   same body bytes from every target: {'yes' if same_bytes else 'NO'}")
    if warnings:
        print(f"   NOTE: {'; '.join(warnings)} -- the router cached nothing, its cached row is a plain proxy")
    bench.check("cache: router cached / uncached route req/s at c=32", R.fmt_ratio(vs_plain), "", None)
    bench.check(
        "cache: router cached route / nginx proxy_cache req/s at c=32", R.fmt_ratio(vs_nginx), "", None
    )
    bench.check(
        "cache: requests of the cached-route runs that reached the backend",
        f"{cached['backend_requests']:,} of {int(cached['requests']):,}",
        "0",
        verdict(cached["backend_requests"] == 0, not warnings),
    )
    bench.results["cache_throughput"] = {
        "body_bytes": BODY_BYTES,
        "rounds": rounds,
        "config_warnings": warnings,
        "same_bytes": same_bytes,
        "targets": summary,
        "router_cached_vs_uncached": vs_plain,
        "router_cached_vs_nginx": vs_nginx,
    }
    return not warnings


def memory(bench: Any, R: Any, backend_port: int, enforced: bool) -> None:
    backend_url = f"http://{LOOPBACK}:{backend_port}"
    routes = [
        {"prefix": "/item", "target": backend_url, "cache": {"enabled": True, "ttl": MAX_AGE}},
        {"prefix": "/plain", "target": backend_url},
    ]
    config = write_json(bench.tmp / "cache-memory.json", {"routes": routes})
    env, key = router_env()
    router, port = R.start_router(
        bench, config, env=env, ready_path=UNCACHED_PATH, name="router-cache-memory"
    )
    pid = router.pid
    phases: list[dict[str, Any]] = []

    def phase(name: str, paths: Sequence[str]) -> dict[str, Any]:
        R.log(f"cache memory: {name}")
        before = backend_requests(backend_port)
        result = R.run_async(asyncio.wait_for(fetch_all(port, paths), timeout=300))
        result["reached_backend"] = backend_requests(backend_port) - before
        time.sleep(1.0)  # the access log's buffer is flushed every 0.5 s
        result["rss_kib"] = vm_rss_kib(pid)
        result["cache_stats"] = cache_stats(port, key)
        result["phase"] = name
        phases.append(result)
        return result

    try:
        phase("warm-up: 2,000 GETs, one uncached URL", ["/plain/warm"] * 2000)
        warm = phase(
            "warm-up: 200 distinct cached URLs", [f"/item/warm/{i}?size={ITEM_BYTES}" for i in range(200)]
        )
        plain = phase(
            f"{N_URLS:,} distinct URLs, uncached route",
            [f"/plain/item/{i}?size={ITEM_BYTES}" for i in range(N_URLS)],
        )
        paths = [f"/item/{i}?size={ITEM_BYTES}" for i in range(N_URLS)]
        cached = phase(f"{N_URLS:,} distinct URLs of {ITEM_BYTES} B, cached route", paths)
        again = phase(f"the same {N_URLS:,} URLs again", paths)
        big = phase(
            f"{N_URLS:,} URLs of {BIG_ITEM_BYTES} B ({N_URLS * BIG_ITEM_BYTES / 2**20:.0f} MiB offered)",
            [f"/item/big/{i}?size={BIG_ITEM_BYTES}" for i in range(N_URLS)],
        )
        before = backend_requests(backend_port)
        huge = [get(port, f"/item/huge?size={HUGE_BYTES}") for _ in range(2)]
        huge_reached = backend_requests(backend_port) - before
        final_stats = cache_stats(port, key)
    finally:
        bench.children.stop(router)

    rows = []
    for index, p in enumerate(phases):
        codes = ", ".join(f"{v} x {k}" for k, v in sorted(p["statuses"].items()))
        stats = p["cache_stats"]
        rows.append(
            [
                p["phase"],
                f"{p['requests']:,}",
                f"{p['reached_backend']:,}",
                ", ".join(f"{k} {v}" for k, v in sorted(p["x_cache"].items())),
                codes + (f", {p['errors']} errors" if p["errors"] else ""),
                mib(p["rss_kib"]),
                mib(p["rss_kib"] - plain["rss_kib"]) if index > phases.index(plain) else "",
                "-" if stats is None else f"{stats.get('entries')} / {mib(stats.get('bytes', 0) / 1024)}",
            ]
        )
    R.table(
        f"   Cache memory  (a fresh router, default caps: entry {ENTRY_CAP_MIB} MiB,"
        f" total {TOTAL_CAP_MIB} MiB; {CLIENT_WORKERS} concurrent clients)",
        [
            "phase",
            "GETs",
            "reached backend",
            "X-Cache",
            "statuses",
            "VmRSS",
            "vs after uncached",
            "cache entries / bytes",
        ],
        rows,
    )
    grown_1k = cached["rss_kib"] - plain["rss_kib"]
    grown_big = big["rss_kib"] - plain["rss_kib"]
    serving = plain["rss_kib"] - warm["rss_kib"]
    limit_kib = (TOTAL_CAP_MIB + OVERHEAD_ALLOWANCE_MIB) * 1024
    stored = N_URLS - (again["reached_backend"])
    print(
        f"   RSS from serving {N_URLS:,} uncached URLs: {mib(serving)};"
        f" from caching {N_URLS:,} x {ITEM_BYTES} B: {mib(grown_1k)}"
        f" ({grown_1k * 1024 / N_URLS:,.0f} B per entry, {ITEM_BYTES} B of body);"
        f" after {N_URLS * BIG_ITEM_BYTES / 2**20:.0f} MiB offered: {mib(grown_big)}"
    )
    print(
        f"   {stored:,} of {N_URLS:,} URLs answered from the cache when read again;"
        f" a {HUGE_BYTES // 2**20} MiB answer reached the backend {huge_reached} times in 2 GETs"
        f" ({'not stored' if huge_reached == 2 else 'STORED'}; statuses {[h[0] for h in huge]})"
    )
    bench.check(
        f"cache: RSS growth caching {N_URLS:,} x {ITEM_BYTES} B",
        mib(grown_1k),
        f"<= {TOTAL_CAP_MIB}+{OVERHEAD_ALLOWANCE_MIB} MiB",
        verdict(grown_1k <= limit_kib, enforced),
    )
    offered = f"{N_URLS * BIG_ITEM_BYTES / 2**20:.0f} MiB"
    bench.check(
        f"cache: RSS growth after {offered} offered (cap {TOTAL_CAP_MIB} MiB)",
        mib(grown_big),
        f"<= {TOTAL_CAP_MIB}+{OVERHEAD_ALLOWANCE_MIB} MiB",
        verdict(grown_big <= limit_kib, enforced),
    )
    bench.check(
        f"cache: {N_URLS:,} cached URLs read again, answered from the cache",
        f"{stored:,}",
        f"{N_URLS:,}",
        verdict(stored == N_URLS, enforced),
    )
    bench.check(
        f"cache: a {HUGE_BYTES // 2**20} MiB answer (entry cap {ENTRY_CAP_MIB} MiB) not stored",
        f"reached the backend {huge_reached}/2",
        "2/2",
        verdict(huge_reached == 2, enforced),
    )
    if not enforced:
        print("   NOTE: the router does not enforce its cache blocks yet: no verdicts (n/a) for these checks")
    bench.results["cache_memory"] = {
        "cache_enforced": enforced,
        "phases": phases,
        "rss_growth_kib": {"serving_uncached": serving, "cached_1k": grown_1k, "over_cap": grown_big},
        "stored_of": [stored, N_URLS],
        "huge_reached_backend": huge_reached,
        "final_cache_stats": final_stats,
        "limit_kib": limit_kib,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["backend"]:
        return backend_main()
    # the section runs inside bench/run.py (its Bench, wrk and report); hand over to it
    os.execv(
        sys.executable,
        [sys.executable, str(Path(__file__).resolve().parent / "run.py"), "--only", "cache", *args],
    )
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
