"""The clients of the failover section (`bench/run.py --only failover`), run in the bench's own process.

run.py starts and stops the processes (router, backends, `_hang.py`); the coroutines here drive the
router over loopback with aiohttp and return plain dicts that run.py prints and writes to the JSON:

* `hanging_provider`: sequential GETs, one at a time, on a priority config whose first provider
  never answers: each request's latency until that provider's circuit is OPEN (read from
  `GET /admin/circuit-breaker-status` after every request), then `/app` and `/direct` interleaved;
* `killed_backend`: a closed-loop load of N workers over one kept-alive session on a round-robin
  pool of two backends; `kill()` is called the moment request #`kill_after` has been sent (aiohttp's
  `on_request_headers_sent`), and every request's start, end, status and X-Backend-Source is kept.

Every request has a client timeout and every loop a bound on its count, so nothing here can hang.
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _common import Children, percentile


def start_port_child(
    children: Children, args: Sequence[str], what: str, deadline_s: float = 10.0
) -> tuple[subprocess.Popen[Any], int]:
    """Start a child that prints "PORT <n>" once it listens; bounded wait for that line."""
    proc = children.start(args, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], deadline_s)
    line = proc.stdout.readline().strip() if ready else ""
    if not line.startswith("PORT "):
        children.stop(proc)
        raise RuntimeError(f"{what} did not start within {deadline_s:g}s (said {line!r})")
    return proc, int(line.split()[1])


def read_stats(path: Path) -> dict[str, int]:
    """What `_hang.py --stats` last wrote (empty when nothing yet)."""
    try:
        document: dict[str, int] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return document


def summarize_ms(samples_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 0.5),
        "p99_ms": percentile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else float("nan"),
    }


def epoch(iso: str | None) -> float | None:
    """The admin API's `2026-01-01T00:00:00.000Z` as epoch seconds."""
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def circuit(session: Any, router: str, admin_key: str, backend: str) -> dict[str, Any]:
    """One backend's entry of `GET /admin/circuit-breaker-status` (`{}` when the router has none)."""
    async with session.get(
        f"{router}/admin/circuit-breaker-status",
        params={"backend": backend},
        headers={"X-Admin-Key": admin_key},
    ) as response:
        if response.status == 404:
            return {}
        response.raise_for_status()
        document = await response.json()
    circuits: list[dict[str, Any]] = document.get("circuits", [])
    return circuits[0] if circuits else {}


async def _timed_get(session: Any, url: str) -> tuple[float, int | None, str | None, str | None]:
    """(ms, status, X-Backend-Source, transport error) of one GET, body read to the end."""
    import aiohttp

    started = time.perf_counter()
    try:
        async with session.get(url) as response:
            await response.read()
            status, source, error = response.status, response.headers.get("x-backend-source"), None
    except (aiohttp.ClientError, TimeoutError) as exc:
        status, source, error = None, None, f"{type(exc).__name__}: {exc}"
    return (time.perf_counter() - started) * 1000, status, source, error


async def hanging_provider(
    *,
    router: str,
    admin_key: str,
    hang_backend: str,
    stats: Path,
    timeout_ms: float,
    max_before: int,
    n_after: int,
    warmup: int,
) -> dict[str, Any]:
    """Scenario 1 (see the module docstring); `hang_backend` is the hanging provider's source."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000 * 3 + 10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(warmup):  # /direct only: an /app request now would count against provider 1
            await _timed_get(session, f"{router}/direct/warmup")
        before: list[dict[str, Any]] = []
        state = await circuit(session, router, admin_key, hang_backend)
        opened_after: int | None = None
        for n in range(1, max_before + 1):
            ms, status, source, error = await _timed_get(session, f"{router}/app/item/{n}")
            state = await circuit(session, router, admin_key, hang_backend)
            before.append(
                {
                    "n": n,
                    "ms": ms,
                    "status": status,
                    "backend": source,
                    "error": error,
                    "circuit": state.get("state"),
                    "failures": state.get("failures"),
                }
            )
            if state.get("state") == "OPEN":
                opened_after = n
                break
        hang_at_open = read_stats(stats)
        opened = dict(state)
        after: list[dict[str, Any]] = []
        direct: list[dict[str, Any]] = []
        if opened_after is not None:
            for n in range(warmup):
                await _timed_get(session, f"{router}/app/warmup/{n}")
                await _timed_get(session, f"{router}/direct/warmup/{n}")
            # interleaved, so that drift (other work on the machine) touches both alike
            for n in range(n_after):
                for path, into in (("app", after), ("direct", direct)):
                    ms, status, source, error = await _timed_get(session, f"{router}/{path}/item/{n}")
                    into.append({"ms": ms, "status": status, "backend": source, "error": error})
        final = await circuit(session, router, admin_key, hang_backend)
    return {
        "before": before,
        "opened_after_requests": opened_after,
        "circuit_at_open": opened,
        "circuit_at_end": final,
        "hang_at_open": hang_at_open,
        "hang_at_end": read_stats(stats),
        "after": after,
        "direct": direct,
    }


async def killed_backend(
    *,
    router: str,
    admin_key: str,
    path: str,
    backend_a: str,
    backend_b: str,
    kill: Callable[[], None],
    workers: int,
    total: int,
    kill_after: int,
    warmup: int,
    request_timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Scenario 2 (see the module docstring). Times in the result are ms relative to the kill."""
    import aiohttp

    killed: dict[str, float] = {}

    async def on_headers_sent(_: Any, context: SimpleNamespace, __: Any) -> None:
        if context.trace_request_ctx == "kill" and not killed:
            kill()
            killed["perf"], killed["wall"] = time.perf_counter(), time.time()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers_sent)
    connector = aiohttp.TCPConnector(limit=workers, force_close=False)
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    records: list[dict[str, Any]] = []
    url = f"{router}{path}"
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trace_configs=[trace]) as session:
        upcoming = iter(range(-warmup, total))  # negative: warm-up, not recorded

        async def worker() -> None:
            for index in upcoming:
                started = time.perf_counter()
                status: int | None = None
                source = error = body = None
                try:
                    async with session.get(
                        f"{url}/{index}", trace_request_ctx="kill" if index == kill_after - 1 else None
                    ) as response:
                        data = await response.read()
                        status, source = response.status, response.headers.get("x-backend-source")
                        if status != 200:
                            body = data[:300].decode("utf-8", "replace")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                if index >= 0:
                    records.append(
                        {
                            "n": index + 1,  # 1-based, as "request #500" counts
                            "start": started,
                            "end": time.perf_counter(),
                            "status": status,
                            "backend": source,
                            "error": error,
                            "body": body,
                        }
                    )

        await asyncio.gather(*(worker() for _ in range(workers)))
        circuit_b = await circuit(session, router, admin_key, backend_b)
        circuit_a = await circuit(session, router, admin_key, backend_a)
    if not killed:
        raise RuntimeError(f"request #{kill_after} was never sent: backend B was not killed")
    kill_at = killed["perf"]
    for record in records:
        record["start_ms"] = (record.pop("start") - kill_at) * 1000
        record["end_ms"] = (record.pop("end") - kill_at) * 1000
    records.sort(key=lambda r: r["n"])
    last_failure = epoch(circuit_b.get("last_failure"))
    return {
        "records": records,
        "circuit_b": circuit_b,
        "circuit_a": circuit_a,
        "last_failure_on_b_ms": None if last_failure is None else (last_failure - killed["wall"]) * 1000,
    }
