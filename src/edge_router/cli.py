"""The `edge-router` command line (CONTRACT section 1); the long-running commands, `serve` and
`demo`, are in `cli_serve.py`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from .cli_serve import demo_command, serve_command


def _validate(args: argparse.Namespace) -> int:
    from .config.load import load_config
    from .config.sources import parse_source
    from .exceptions import ConfigError, ConfigInvalidError

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


def _check(document: dict[str, Any]) -> None:
    """Validation for flip/push: the full schema, as the routers will load it."""
    from .config.load import load_config

    load_config(document, os.environ)


def _report_write_error(exc: Exception) -> int:
    from .exceptions import ConfigInvalidError

    if isinstance(exc, ConfigInvalidError):
        print(f"refused, nothing was written ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)
    return 1


def _flip(args: argparse.Namespace) -> int:
    from .config.writeback import flip
    from .exceptions import ConfigError

    source = args.config or os.environ.get("EDGE_ROUTER_CONFIG")
    if not source:
        print("error: name the config with --config SOURCE or EDGE_ROUTER_CONFIG", file=sys.stderr)
        return 1
    if (refused := _refuse_wait(args, source)) is not None:
        return refused
    try:
        result = flip(source, args.app, args.priority, validate=_check)
    except (ConfigError, ValueError) as exc:
        return _report_write_error(exc)
    written = "" if result.written else "; it already was, nothing written"
    print(f"{source}: {args.app} priority is now {args.priority} (version {result.version}{written})")
    return _tell_the_fleet(args, source, result.version)


def _push(args: argparse.Namespace) -> int:
    from .config.writeback import push
    from .exceptions import ConfigError

    if (refused := _refuse_wait(args, args.to)) is not None:
        return refused
    try:
        result = push(args.file, args.to, validate=_check)
    except (ConfigError, ValueError) as exc:
        return _report_write_error(exc)
    print(f"{args.file} -> {args.to} (version {result.version})")
    return _tell_the_fleet(args, args.to, result.version)


# Exit status of flip/push --wait when the write succeeded but the sample did not follow in time.
EXIT_FLEET_NOT_FOLLOWING = 3


def _refuse_wait(args: argparse.Namespace, source: str) -> int | None:
    """--wait needs a URL and a source whose version /health reports (checked before writing)."""
    if not args.wait:
        return None
    from .config.sources import FileSource, parse_source

    try:
        is_file = isinstance(parse_source(source), FileSource)
    except ValueError:
        return None  # the write reports the malformed source
    if is_file:
        print(
            "error: --wait needs an ssm: or dynamodb: source (/health reports their version)", file=sys.stderr
        )
        return 1
    from .config.writeback.fleet import health_url

    url = args.url or os.environ.get("EDGE_ROUTER_URL")
    if not url:
        print("error: --wait needs the function URL: --url URL or EDGE_ROUTER_URL", file=sys.stderr)
        return 1
    try:
        health_url(url)
    except ValueError as exc:
        print(f"error: --url: {exc}", file=sys.stderr)
        return 1
    return None


def _tell_the_fleet(args: argparse.Namespace, source: str, version: str) -> int:
    """Signal the written version to the instances, say when they follow, and --wait for them."""
    from .config.writeback.fleet import follow_within, signal_fleet, sigv4_signer, wait_for_version
    from .settings import Settings

    signal = signal_fleet(source, version, args.state_table or os.environ.get("STATE_TABLE") or None)
    check = Settings.from_env(os.environ).config_check_seconds
    if signal.signalled:
        print(
            f"fleet: {signal.message}; instances check every CONFIG_CHECK_SECONDS ({check:g} s) and reload "
            f"after a small random delay: expect the whole fleet within ~{follow_within(source, check):g} s"
        )
    elif signal.failed:
        print(f"warning: {signal.message}", file=sys.stderr)
    else:
        print(f"fleet: {signal.message}")
    if not args.wait:
        return 0
    url = args.url or os.environ["EDGE_ROUTER_URL"]
    try:
        sign = sigv4_signer(url) if args.iam else None
        waited = wait_for_version(
            url,
            version,
            sample=args.sample,
            timeout=args.timeout,
            sign=sign,
            progress=lambda line: print(f"  {line}", flush=True),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if waited.followed:
        print(
            f"fleet: {args.sample} concurrent /health answers report version {version} "
            f"after {waited.seconds:.1f} s"
        )
        return 0
    print(
        f"fleet: timed out after {waited.seconds:.1f} s waiting for version {version} "
        f"(last round: {waited.last})",
        file=sys.stderr,
    )
    return EXIT_FLEET_NOT_FOLLOWING


def _explain(args: argparse.Namespace) -> int:
    from .config.load import load_config
    from .config.sources import parse_source
    from .exceptions import ConfigError
    from .routing.explain import explain
    from .routing.header_routing import HeaderRouting
    from .settings import Settings

    settings = Settings.from_env(config_source=args.config)
    try:
        document = parse_source(settings.config_source).read() if settings.config_source else None
        config = load_config(
            document or {"routes": [{"prefix": "/", "select_by_header": "x-backend"}]}, os.environ
        )
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    headers = {}
    for item in args.header or []:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    loop = asyncio.new_event_loop()
    try:
        answer = loop.run_until_complete(
            explain(
                config, HeaderRouting(settings), method=args.method.upper(), target=args.path, headers=headers
            )
        )
    finally:
        loop.close()
    print(json.dumps(answer, indent=2))
    return 0


def _schema(_: argparse.Namespace) -> int:
    from .config.schema import config_json_schema

    print(json.dumps(config_json_schema(), indent=2))
    return 0


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
        return value

    return parse


def _fleet_options(command: argparse.ArgumentParser) -> None:
    fleet = command.add_argument_group(
        "the fleet",
        "After an ssm: write, the state table's er#config-version item is set to the parameter's new "
        "version, which every instance checks every CONFIG_CHECK_SECONDS. --wait exits 3 when the "
        "sample does not follow within --timeout (the write itself stands).",
    )
    fleet.add_argument(
        "--state-table", metavar="TABLE", help="the routers' state table (default: $STATE_TABLE)"
    )
    fleet.add_argument("--wait", action="store_true", help="wait until instances report the new version")
    fleet.add_argument(
        "--url", help="the function URL whose /health --wait samples (default: $EDGE_ROUTER_URL)"
    )
    fleet.add_argument(
        "--timeout", type=_positive(float), default=60.0, metavar="S", help="--wait at most S seconds (60)"
    )
    fleet.add_argument(
        "--sample",
        type=_positive(int),
        default=10,
        metavar="N",
        help="concurrent /health answers per round (10)",
    )
    fleet.add_argument(
        "--iam", action="store_true", help="sign the /health requests (a URL with AuthType AWS_IAM)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-router", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the router on its own HTTP server")
    serve.add_argument("--config", help="config SOURCE (default: $EDGE_ROUTER_CONFIG)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers",
        type=_positive(int),
        default=1,
        metavar="N",
        help="worker processes sharing the port (SO_REUSEPORT), each with its own router (1)",
    )
    serve.set_defaults(func=serve_command)

    demo = commands.add_parser("demo", help="start demo backends and the router on the embedded demo config")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.set_defaults(func=demo_command)

    validate = commands.add_parser("validate", help="check a config SOURCE; exit 1 listing every problem")
    validate.add_argument("source")
    validate.set_defaults(func=_validate)

    flip = commands.add_parser("flip", help="set APP's provider priority in the config SOURCE (validated)")
    flip.add_argument("app", help="the app (first path segment), or '*' for global_priority")
    flip.add_argument("priority", help="provider digits in the order to try them, e.g. 213")
    flip.add_argument("--config", help="config SOURCE (default: $EDGE_ROUTER_CONFIG)")
    _fleet_options(flip)
    flip.set_defaults(func=_flip)

    push = commands.add_parser("push", help="validate FILE, then write it to SOURCE")
    push.add_argument("file")
    push.add_argument("--to", required=True, metavar="SOURCE")
    _fleet_options(push)
    push.set_defaults(func=_push)

    explain = commands.add_parser("explain", help="show where a request would go, and why")
    explain.add_argument("method")
    explain.add_argument("path", help="path with optional ?query, as a client sends it")
    explain.add_argument("-H", "--header", action="append", help="'name: value' (repeatable)")
    explain.add_argument("--config", help="config SOURCE (default: $EDGE_ROUTER_CONFIG)")
    explain.set_defaults(func=_explain)

    schema = commands.add_parser("schema", help="print the config's JSON Schema")
    schema.set_defaults(func=_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
