"""Shared, stdlib-only helpers for the benchmark scripts (cheap to import in a cold-start child).

Function URL events, loopback ports, percentiles, and child processes that are always stopped:
each child runs in its own session (process group), and `Children.stop_all()` signals exactly
those groups, by id, TERM first and KILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"


def function_url_event(method: str = "GET", raw_path: str = "/", **options: Any) -> dict[str, Any]:
    """A function URL event as a browser-ish client would cause it (see edge_router.testing)."""
    from edge_router.testing import function_url_event as build

    headers = {"user-agent": "bench", "accept": "*/*", **(options.pop("headers", None) or {})}
    options.setdefault("request_id", "req-bench")
    return build(method, raw_path, headers=headers, **options)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (the backend and load generator must not be the bottleneck)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def router_config(backend_url: str, prefix: str = "/bench") -> dict[str, Any]:
    return {"version": "1.0", "routes": [{"prefix": prefix, "target": backend_url}]}


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def median(values: Sequence[float]) -> float:
    return percentile(sorted(values), 0.5)


def summarize(samples_us: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples_us)
    return {
        "n": len(ordered),
        "mean_us": sum(ordered) / len(ordered) if ordered else float("nan"),
        "p50_us": percentile(ordered, 0.5),
        "p99_us": percentile(ordered, 0.99),
    }


def http_get_status(port: int, path: str = "/", timeout: float = 1.0) -> int | None:
    """One blocking HTTP/1.1 GET on 127.0.0.1:`port`; the status code, or None if it failed."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        parts = data.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 else None
    except (OSError, ValueError):
        return None


def wait_http(port: int, path: str, deadline_s: float, proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll until GET `path` answers 200 (bounded by `deadline_s`), or the process died."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before answering")
        if http_get_status(port, path) == 200:
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered 200 on 127.0.0.1:{port}{path} within {deadline_s:g}s")


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of a live process, in KiB."""
    return _status_kib(pid, "VmHWM:")


def vm_rss_kib(pid: int) -> int | None:
    """Resident set size now (VmRSS) of a live process, in KiB."""
    return _status_kib(pid, "VmRSS:")


def descendants(pid: int) -> list[int]:
    """The live descendants of `pid` (workers of a pre-forking server, nginx's worker), depth first."""
    found: list[int] = []
    try:
        tasks = [t.name for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return found
    for task in tasks:
        try:
            kids = [int(k) for k in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except (OSError, ValueError):
            continue
        for kid in kids:
            found += [kid, *descendants(kid)]
    return found


def tree_kib(pid: int, read: Callable[[int], int | None] = vm_rss_kib) -> int | None:
    """`read` (VmRSS by default) summed over a process and its descendants; None if it is gone."""
    total = read(pid)
    if total is None:
        return None
    return total + sum(read(kid) or 0 for kid in descendants(pid))


class Children:
    """Every process the benchmark starts; each one leads its own process group."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def start(
        self,
        args: Sequence[str],
        *,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(
            list(args), stdout=stdout, stderr=stderr, env=env, cwd=cwd, start_new_session=True, text=True
        )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace_s: float = 5.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=grace_s)
        else:
            # The leader is gone; a forked worker (nginx) could still hold the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)


def start_backend(children: Children, python: str) -> tuple[subprocess.Popen[Any], int]:
    """The uvloop backend in its own process; returns it and its port."""
    proc = children.start([python, str(BENCH_DIR / "_backend.py")], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # "PORT <n>", printed once it listens
    if not line.startswith("PORT "):
        children.stop(proc)
        raise RuntimeError(f"the backend did not start (said {line!r})")
    port = int(line.split()[1])
    wait_http(port, "/", 10, proc)
    return proc, port
