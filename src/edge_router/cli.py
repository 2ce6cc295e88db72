"""The `edge-router` command line (CONTRACT section 1)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEMO_CONFIG = Path(__file__).parent / "demo" / "demo.json"


def _validate(args: argparse.Namespace) -> int:
    from ._config import load_config
    from ._exceptions import ConfigError, ConfigInvalidError
    from ._sources import parse_source

    try:
        config = load_config(parse_source(args.source).read(), os.environ)
    except ConfigInvalidError as exc:
        print(f"{args.source}: invalid config ({len(exc.problems)} problem(s))", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except (ConfigError, ValueError) as exc:
        print(f"{args.source}: {exc}", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.source}: valid ({len(config.routes)} routes, {len(config.backends)} backends)")
    return 0


def _schema(_: argparse.Namespace) -> int:
    from ._config import config_json_schema

    print(json.dumps(config_json_schema(), indent=2))
    return 0


async def _run_server(app: Any, host: str, port: int, announce: str | None = None) -> None:
    from ._server import bind, make_server

    sock = bind(host, port)
    server = make_server(app, host, sock.getsockname()[1])
    bound = sock.getsockname()[1]
    print(announce or f"edge-router listening on http://{host}:{bound}", flush=True)
    await server.serve(sockets=[sock])


def _serve(args: argparse.Namespace) -> int:
    from ._app import EdgeRouter
    from ._server import new_event_loop
    from ._settings import Settings

    router = EdgeRouter(Settings.from_env(config_source=args.config))
    router.control_app()  # a long-running server pays the control plane's import up front
    loop = new_event_loop()
    try:
        loop.run_until_complete(_run_server(router, args.host, args.port))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._server import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(_run_demo(args.host, args.port))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


async def _run_demo(host: str, port: int) -> None:
    from ._app import EdgeRouter
    from ._demo import start_demo_backend
    from ._settings import Settings

    users, users_url = await start_demo_backend("users")
    orders, orders_url = await start_demo_backend("orders")
    os.environ["DEMO_USERS_URL"] = users_url
    os.environ["DEMO_ORDERS_URL"] = orders_url
    router = EdgeRouter(Settings.from_env(config_source=str(DEMO_CONFIG)))
    router.control_app()
    base = f"http://{host}:{port}"
    announce = (
        f"edge-router demo on {base}  (config: {DEMO_CONFIG})\n"
        f"  demo backends: users {users_url}, orders {orders_url}\n"
        f"  try: curl -i {base}/api/users/42?page=1\n"
        f"       curl -i {base}/api/orders/7\n"
        f"       curl {base}/health\n"
        "  Ctrl-C stops everything."
    )
    try:
        await _run_server(router, host, port, announce)
    finally:
        await users.cleanup()
        await orders.cleanup()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-router", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the router under a production ASGI server")
    serve.add_argument("--config", help="config SOURCE (default: $EDGE_ROUTER_CONFIG)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=_serve)

    demo = commands.add_parser("demo", help="start demo backends and the router on the embedded demo config")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.set_defaults(func=_demo)

    validate = commands.add_parser("validate", help="check a config SOURCE; exit 1 listing every problem")
    validate.add_argument("source")
    validate.set_defaults(func=_validate)

    schema = commands.add_parser("schema", help="print the config's JSON Schema")
    schema.set_defaults(func=_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
