"""The long-running commands of the CLI: `edge-router serve` (one process, or `--workers N`) and
`edge-router demo` (the demo backends, the router on the demo config and a little traffic). Each
says in one line what to install when a dependency is missing, and stops gracefully on SIGTERM or
Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

DEMO_CONFIG = Path(__file__).parent / "demo" / "demo.json"


def _limits_line(limits: Any, before: int, after: int) -> str:
    from .server import connection_cap

    return (
        f"  limits: file descriptors {after} (was {before}), at most {connection_cap(limits)} connections, "
        f"request head {limits.max_head_bytes} bytes / {limits.max_header_count} headers "
        f"within {limits.head_timeout_s:g}s, keep-alive {limits.keepalive_timeout_s:g}s"
    )


async def _run_server(router: Any, host: str, port: int, announce: str | None = None) -> None:
    """Serve `router` on host:port until SIGTERM or SIGINT (then a graceful stop)."""
    from .server import Server, bind, raise_fd_limit

    before, after = raise_fd_limit()
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    print(announce or f"edge-router listening on http://{host}:{bound}", flush=True)
    print(_limits_line(router.settings.server, before, after), flush=True)
    try:
        await Server(router).serve(sock, handle_signals=True)
    finally:
        sock.close()


def _server_missing(*, demo: bool = False) -> int | None:
    """One line naming what to install when a dependency is missing (no traceback): httptools
    for serving, and aiohttp for the demo's backends. uvloop is optional (the asyncio loop serves
    without it)."""
    try:
        import httptools  # noqa: F401

        if demo:
            import aiohttp  # noqa: F401
    except ImportError as exc:
        print(
            f"error: serving needs {exc.name}, which is not installed: pip install 'edge-router[server]'",
            file=sys.stderr,
        )
        return 1
    return None


def _new_router(config: str | None) -> Any:
    from .app import EdgeRouter
    from .settings import Settings

    router = EdgeRouter(Settings.from_env(config_source=config))
    router.control_app()  # a long-running server pays the control plane's import up front
    return router


def serve_command(args: argparse.Namespace) -> int:
    """`edge-router serve`: one process, or `--workers N`."""
    if (missing := _server_missing()) is not None:
        return missing
    if args.workers > 1:
        return _serve_workers(args)
    router = _new_router(args.config)  # first: its log handler carries the loop's start-up line
    return _until_stopped(lambda: _run_server(router, args.host, args.port))


def _serve_workers(args: argparse.Namespace) -> int:
    """`serve --workers N`: N processes, each with its own loop, router and SO_REUSEPORT socket."""
    import edge_router.app
    import edge_router.control.app  # noqa: F401  # imported once, before the fork

    from .observability.logs import app_logger
    from .server import new_event_loop, raise_fd_limit
    from .server.workers import run_workers
    from .settings import Settings

    app_logger()
    before, after = raise_fd_limit()
    limits = Settings.from_env(config_source=args.config).server

    def announce(port: int) -> None:
        print(f"edge-router listening on http://{args.host}:{port} ({args.workers} workers)", flush=True)
        print(_limits_line(limits, before, after) + " per worker", flush=True)

    async def worker(sock: Any) -> None:
        from .server import Server

        await Server(_new_router(args.config)).serve(sock, handle_signals=True)

    return run_workers(args.workers, args.host, args.port, worker, new_event_loop, announce=announce)


def demo_command(args: argparse.Namespace) -> int:
    """`edge-router demo`: the demo backends and the router on the demo config, one loop."""
    if (missing := _server_missing(demo=True)) is not None:
        return missing
    return _until_stopped(lambda: _run_demo(args.host, args.port))


def _until_stopped(serving: Callable[[], Awaitable[None]]) -> int:
    """Run `serving()` on the server's loop (uvloop when installed) until it ends or Ctrl-C."""
    from .server import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(serving())
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


async def _run_demo(host: str, port: int) -> None:
    import secrets

    from .demo import demo_traffic, start_demo_backend

    users, users_url = await start_demo_backend("users")
    orders, orders_url = await start_demo_backend("orders")
    flaky, flaky_url = await start_demo_backend("flaky", flaky=True)
    os.environ["DEMO_USERS_URL"] = users_url
    os.environ["DEMO_ORDERS_URL"] = orders_url
    os.environ["DEMO_FLAKY_URL"] = flaky_url
    # the status page needs an admin key: the demo makes one (never a fixed, guessable one)
    admin_key = os.environ.get("ADMIN_KEY") or secrets.token_urlsafe(24)
    os.environ["ADMIN_KEY"] = admin_key
    # the demo's own traffic would fill the terminal with request lines: off unless asked for
    quiet = "POWERTOOLS_LOG_LEVEL" not in os.environ and "LOG_LEVEL" not in os.environ
    if quiet:
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    router = _new_router(str(DEMO_CONFIG))
    base = f"http://{host}:{port}"
    announce = (
        f"edge-router demo on {base}  (config: {DEMO_CONFIG})\n"
        f"  status page: {base}/status   admin key: {admin_key}\n"
        f"  demo backends: users {users_url}, orders {orders_url}, flaky {flaky_url} (fails now and then)\n"
        f"  try: curl -i {base}/api/users/42?page=1\n"
        f"       curl -i {base}/api/cached/report     (X-Cache: MISS, then HIT)\n"
        f"       curl {base}/health\n"
        "  a little demo traffic runs meanwhile, so the status page moves; Ctrl-C stops everything."
        + ("\n  request logs are off in the demo (POWERTOOLS_LOG_LEVEL=INFO shows them)" if quiet else "")
    )
    traffic = asyncio.ensure_future(_after_start(base, demo_traffic))
    try:
        await _run_server(router, host, port, announce)
    finally:
        traffic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await traffic
        for runner in (users, orders, flaky):
            await runner.cleanup()


async def _after_start(base: str, traffic: Any) -> None:
    await asyncio.sleep(1.0)  # the server is listening by then
    await traffic(base)
