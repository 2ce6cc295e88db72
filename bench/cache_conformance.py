"""HTTP caching conformance: the public cache-tests suite against the router's cache and nginx's.

    .venv/bin/python bench/cache_conformance.py [--only router|nginx] [--out PATH]
                                                [--list-failures router|nginx] [--id TEST_ID]
    .venv/bin/python bench/cache_conformance.py --from-json PATH --list-failures router

The suite is http-tests/cache-tests (https://github.com/http-tests/cache-tests, BSD-3-Clause),
vendored in bench/cache_tests/ (see VENDORED.md there). It has a Node origin server and a CLI that
sends each test's requests through a cache in front of that origin and checks what comes back
(freshness, validation, Vary, invalidation, ...). This script, on 127.0.0.1 only:

  1. runs `npm ci` in bench/cache_tests/ when its node_modules is missing (one package, undici);
  2. starts the suite's origin server on a free loopback port;
  3. starts each implementation in front of it on its own free port:
       nginx   Debian's nginx as a shared cache, "proxy_cache out of the box": the config the suite
               documents for nginx (docker/nginx/nginx.conf: proxy_cache_path, proxy_cache,
               proxy_cache_revalidate on, proxy_http_version 1.1), nothing else tuned;
       router  `edge-router serve` with one route, {"prefix": "/", "target": <origin>,
               "cache": {"enabled": true, "ttl": 0, "respectCacheControl": true}};
  4. checks that the path and query reach the origin unchanged, then runs the suite's CLI against
     each (about a minute each: many tests pause 3 s);
  5. prints `implementation | required passed/total | optional passed/total` and writes every
     test's result (id, kind, pass/fail, the suite's verdict, message) as JSON to --out.

Counting follows the suite's own verdicts (test-engine/lib/results.mjs, as cache-tests.fyi shows
them): a test passes when it passed and so did every test it depends on; "required" is a test whose
`kind` is "required" or unset, "optional" is `kind: "optimal"`; `kind: "check"` tests only record
behaviour (yes/no) and are counted apart. Tests marked browser_only are not run by the CLI.

Every process is started in its own process group and stopped (TERM, then KILL) at the end, also
on Ctrl-C or SIGTERM; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from _common import BENCH_DIR, LOOPBACK, Children, free_port, http_get_status, write_json

SUITE_DIR = BENCH_DIR / "cache_tests"
IMPLEMENTATIONS = ("nginx", "router")
ROUTER_CACHE = {"enabled": True, "ttl": 0, "respectCacheControl": True}
CLI_TIMEOUT_S = 600  # the whole suite takes about a minute against a working cache
START_TIMEOUT_S = 20
DEFAULT_OUT = "/tmp/cache-conformance.json"


def log(message: str) -> None:
    sys.stdout.flush()
    print(f"  .. {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- setup


def node_env(**extra: str) -> dict[str, str]:
    """The environment of the Node children: no proxy settings leak in from ours."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(extra)
    return env


def ensure_node_modules() -> None:
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            raise SystemExit(
                f"{tool} is not installed: the cache-tests suite needs Node.js (>= 20.18) and npm"
            )
    if (SUITE_DIR / "node_modules" / "undici").is_dir():
        return
    log("npm ci in bench/cache_tests (first run)")
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=SUITE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"npm ci failed in {SUITE_DIR}:\n{done.stdout}{done.stderr}")


def wait_listening(port: int, proc: subprocess.Popen[Any], what: str, logs: Path) -> None:
    """Until something answers HTTP on 127.0.0.1:`port` (any status), bounded."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail(logs)}")
        if http_get_status(port, "/state/startup-probe") is not None:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer on 127.0.0.1:{port} within {START_TIMEOUT_S}s:\n{tail(logs)}")


def tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def start_origin(children: Children, tmp: Path) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    logs = tmp / "origin.log"
    with logs.open("w") as out:
        proc = children.start(
            ["node", "loopback-server.mjs"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=SUITE_DIR,
            env=node_env(
                npm_config_port=str(port),
                npm_config_protocol="http",
                npm_config_pidfile=str(tmp / "origin.pid"),
                CACHE_TESTS_HOST=LOOPBACK,
            ),
        )
    wait_listening(port, proc, "the cache-tests origin server", logs)
    return proc, port


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def nginx_version(nginx: str) -> str:
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return done.stderr.strip().split("/")[-1]


def start_nginx(
    children: Children, tmp: Path, nginx: str, origin_port: int
) -> tuple[subprocess.Popen[Any], int]:
    """nginx proxy_cache as the suite documents it (docker/nginx/nginx.conf), in a temp prefix."""
    port = free_port()
    prefix = tmp / "nginx"
    for sub in ("cache", "tmp", "body", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""  # workers must reach the temp dir
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    # as in cache-tests' docker/nginx/nginx.conf
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=my-cache:8m max_size=1000m inactive=600m;
    proxy_temp_path {prefix}/tmp;

    server {{
        listen {LOOPBACK}:{port};

        location / {{
            proxy_pass http://{LOOPBACK}:{origin_port};
            proxy_cache my-cache;
            proxy_cache_revalidate on;
            proxy_http_version 1.1;
        }}
    }}
}}
"""
    )
    logs = prefix / "stderr.log"
    with logs.open("w") as errors:
        proc = children.start(
            [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")], stderr=errors
        )
    wait_listening(port, proc, "nginx", logs)
    return proc, port


def router_command(python: str) -> list[str]:
    script = Path(python).parent / "edge-router"
    return [str(script)] if script.exists() else [python, "-m", "edge_router.cli"]


def router_document(origin_port: int) -> dict[str, Any]:
    route = {"prefix": "/", "target": f"http://{LOOPBACK}:{origin_port}", "cache": dict(ROUTER_CACHE)}
    return {"version": "1.0", "routes": [route]}


def router_env(router_src: Path | None) -> dict[str, str]:
    """Our environment for the router; `router_src` (another checkout's src/) goes first on its path.
    A STATE_TABLE from the caller's environment is dropped: the router keeps its state in-process."""
    env = {k: v for k, v in os.environ.items() if k != "STATE_TABLE"}
    if router_src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(router_src), env.get("PYTHONPATH")]))
    return env


def router_warnings(python: str, config: Path, env: dict[str, str]) -> list[str]:
    """`edge-router validate`'s warnings about the config (e.g. "cache ... not enforced")."""
    done = subprocess.run(
        [*router_command(python), "validate", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the router refuses its config:\n{done.stdout}{done.stderr[-3000:]}")
    return [
        line.removeprefix("warning: ") for line in done.stderr.splitlines() if line.startswith("warning:")
    ]


def start_router(
    children: Children, tmp: Path, python: str, config: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    logs = tmp / "router-stderr.log"
    # stdout carries one JSON line per request; kept in the temp dir for debugging (--id).
    with logs.open("w") as errors, (tmp / "router-stdout.log").open("w") as out:
        proc = children.start(
            [
                *router_command(python),
                "serve",
                "--config",
                str(config),
                "--host",
                LOOPBACK,
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=errors,
            env=env,
        )
    wait_listening(port, proc, "the router", logs)
    return proc, port


# ---------------------------------------------------------------------------------------------- suite


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_forwarding(port: int) -> str:
    """The suite's own protocol through the proxy: PUT a one-request config, GET the test URL
    with a query; the origin echoes the request target it saw (Server-Base-Url). Returns it."""
    probe = f"probe-{uuid.uuid4()}"
    body = json.dumps(
        [{"id": probe, "name": "forwarding probe", "response_headers": [["Cache-Control", "no-store"]]}]
    )
    put = urllib.request.Request(
        f"http://{LOOPBACK}:{port}/config/{probe}",
        data=body.encode(),
        method="PUT",
        headers={"content-type": "application/json"},
    )
    with _OPENER.open(put, timeout=10) as answer:
        if answer.status != 201:
            raise RuntimeError(f"PUT /config through the proxy answered {answer.status}")
    target = f"/test/{probe}/a%2Fb?x=1&y=%20"
    with _OPENER.open(
        urllib.request.Request(f"http://{LOOPBACK}:{port}{target}", headers={"Req-Num": "1"}), timeout=10
    ) as answer:
        seen = answer.headers.get("Server-Base-Url")
    if seen != target:
        raise RuntimeError(f"the proxy changed the request target: sent {target!r}, the origin saw {seen!r}")
    return target


def run_cli(port: int, tmp: Path, name: str, test_id: str = "") -> dict[str, Any] | str:
    """The suite's CLI against 127.0.0.1:`port`: its JSON results (id -> true | [kind, message]),
    or with `test_id` its request/response dump (a string)."""
    env = node_env(npm_config_base=f"http://{LOOPBACK}:{port}", npm_package_config_id=test_id)
    env["npm_config_id"] = test_id
    errors = tmp / f"cli-{name}.stderr"
    with errors.open("w") as err:
        done = subprocess.run(
            ["node", "--no-warnings", "test-engine/cli.mjs"],
            cwd=SUITE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
    if done.returncode < 0:  # killed by a signal (Ctrl-C reaches the whole process group): stop here
        raise SystemExit(f"the cache-tests CLI was killed by signal {-done.returncode}")
    if done.returncode != 0:
        raise RuntimeError(f"the cache-tests CLI failed ({done.returncode}) on {name}:\n{tail(errors)}")
    if test_id:
        return done.stdout + tail(errors)
    results: dict[str, Any] = json.loads(done.stdout)
    return results


def summarize(results: dict[str, Any], tmp: Path, name: str) -> list[dict[str, Any]]:
    """Every test with the suite's own verdict (bench/cache_tests/summarize.mjs)."""
    raw = write_json(tmp / f"raw-{name}.json", results)
    done = subprocess.run(
        ["node", "summarize.mjs", str(raw)],
        cwd=SUITE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tests: list[dict[str, Any]] = json.loads(done.stdout)
    return tests


def counts(tests: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def tally(kind: str, good: str) -> dict[str, int]:
        chosen = [t for t in tests if t["kind"] == kind]
        return {
            "passed": sum(1 for t in chosen if t["verdict"] == good),
            "total": len(chosen),
            "passed_ignoring_dependencies": sum(1 for t in chosen if t["passed"]),
        }

    return {
        "required": tally("required", "pass"),
        "optional": tally("optimal", "pass"),
        "check": tally("check", "yes"),
        "verdicts": dict(Counter(f"{t['kind']}:{t['verdict']}" for t in tests)),
    }


# ---------------------------------------------------------------------------------------------- main


def measure(args: argparse.Namespace, children: Children, tmp: Path) -> dict[str, Any]:
    ensure_node_modules()
    document: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "suite": suite_info(),
        "implementations": {},
    }
    log("starting the cache-tests origin server")
    _origin, origin_port = start_origin(children, tmp)
    for name in args.implementations:
        entry: dict[str, Any] = {}
        document["implementations"][name] = entry
        try:
            run_one(args, children, tmp, name, origin_port, entry)
        except (RuntimeError, OSError, subprocess.SubprocessError, json.JSONDecodeError) as exc:
            # one implementation failing (e.g. a router that does not start) leaves the others' rows
            log(f"{name} FAILED: {exc}")
            entry["error"] = str(exc)
    return document


def run_one(
    args: argparse.Namespace,
    children: Children,
    tmp: Path,
    name: str,
    origin_port: int,
    entry: dict[str, Any],
) -> None:
    if name == "nginx":
        nginx = nginx_binary()
        if nginx is None:
            log("nginx is not installed (apt-get install nginx-light): skipped")
            entry["skipped"] = "nginx is not installed"
            return
        entry["version"] = nginx_version(nginx)
        entry["setup"] = "proxy_cache, as cache-tests' docker/nginx/nginx.conf"
        log(f"starting nginx {entry['version']} (proxy_cache)")
        proc, port = start_nginx(children, tmp, nginx, origin_port)
    else:
        env = router_env(args.router_src)
        document = router_document(origin_port)
        config = write_json(tmp / "router.json", document)
        entry["config"] = document["routes"][0] | {"target": "http://127.0.0.1:<origin>"}
        if args.router_src:
            entry["router_src"] = str(args.router_src)
        entry["config_warnings"] = router_warnings(args.python, config, env)
        for warning in entry["config_warnings"]:
            log(f"router config warning: {warning}")
        log("starting the router (edge-router serve)")
        proc, port = start_router(children, tmp, args.python, config, env)
    try:
        entry["forwarding_probe"] = check_forwarding(port)
        if args.id:
            log(f"{name}: running {args.id} only")
            print(f"\n==== {name}: {args.id}\n{run_cli(port, tmp, name, args.id)}")
            return
        log(f"{name}: running the suite (about a minute)")
        started = time.monotonic()
        results = run_cli(port, tmp, name)
        entry["elapsed_s"] = round(time.monotonic() - started, 1)
    finally:
        children.stop(proc)
    assert isinstance(results, dict)
    entry["tests"] = summarize(results, tmp, name)
    entry["summary"] = counts(entry["tests"])


def suite_info() -> dict[str, str]:
    info = {"source": "https://github.com/http-tests/cache-tests", "license": "BSD-3-Clause"}
    vendored = SUITE_DIR / "VENDORED.md"
    if vendored.exists():
        for line in vendored.read_text().splitlines():
            if line.startswith("commit:"):
                info["commit"] = line.split(":", 1)[1].strip()
    return info


def print_table(document: dict[str, Any]) -> None:
    rows = [["implementation", "required passed/total", "optional passed/total", "checks yes/total"]]
    notes = []
    for name, entry in document["implementations"].items():
        label = f"{name} {entry.get('version', '')}".strip()
        if "summary" not in entry:
            rows.append([label, "-", "-", entry.get("skipped") or ("FAILED" if "error" in entry else "-")])
            if "error" in entry:
                notes.append(f"  {name} failed: {entry['error'].strip().splitlines()[-1]}")
            continue
        s = entry["summary"]
        rows.append(
            [
                label,
                f"{s['required']['passed']}/{s['required']['total']}",
                f"{s['optional']['passed']}/{s['optional']['total']}",
                f"{s['check']['passed']}/{s['check']['total']}",
            ]
        )
        notes.append(
            f"  {name}: required tests that passed themselves, dependencies aside:"
            f" {s['required']['passed_ignoring_dependencies']}/{s['required']['total']};"
            f" verdicts {', '.join(f'{k} {v}' for k, v in sorted(s['verdicts'].items()))}"
        )
        for warning in entry.get("config_warnings", []):
            notes.append(f"  {name} config warning: {warning}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print("\nHTTP caching conformance (cache-tests; a test passes when it and its dependencies pass)")
    for i, row in enumerate(rows):
        print(
            "  "
            + " | ".join(
                f"{cell:<{w}}" if j == 0 else f"{cell:>{w}}"
                for j, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  " + "-+-".join("-" * w for w in widths))
    for note in notes:
        print(note)


def print_failures(document: dict[str, Any], name: str) -> None:
    entry = document["implementations"].get(name)
    if not entry or "tests" not in entry:
        print(f"\nno results for {name}")
        return
    failing = [t for t in entry["tests"] if t["kind"] == "required" and t["verdict"] != "pass"]
    print(f"\n{name}: {len(failing)} required tests not passing (verdict, id, name, message)")
    suite = None
    for t in failing:
        if t["suite_name"] != suite:
            suite = t["suite_name"]
            print(f"\n  [{suite}]")
        message = t["message"] or ""
        if t["verdict"] == "dependency_fail":
            failed = [d for d in t["depends_on"] if not _passes(entry["tests"], d)]
            message = f"depends on {', '.join(failed)}" + (
                f"; itself: {message}" if message else "; itself passed"
            )
        print(f"  {t['verdict']:<15} {t['id']}\n      {t['name']}\n      -> {message}")


def _passes(tests: Sequence[dict[str, Any]], test_id: str) -> bool:
    return any(t["id"] == test_id and t["verdict"] in ("pass", "yes") for t in tests)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=IMPLEMENTATIONS, help="run one implementation only")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    parser.add_argument(
        "--list-failures",
        choices=IMPLEMENTATIONS,
        metavar="IMPL",
        help="print each required test IMPL does not pass, with its name and message",
    )
    parser.add_argument(
        "--id", default="", help="run one test only and print the suite's request/response dump"
    )
    parser.add_argument("--from-json", type=Path, help="read a previous --out instead of running the suite")
    parser.add_argument(
        "--router-src",
        type=Path,
        help="put this src/ directory first on the router's PYTHONPATH (e.g. another checkout's)",
    )
    parser.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.implementations = [args.only] if args.only else list(IMPLEMENTATIONS)
    return args


def _terminate(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops every child


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        document = json.loads(args.from_json.read_text())
    else:
        signal.signal(signal.SIGTERM, _terminate)
        children = Children()
        with tempfile.TemporaryDirectory(prefix="edge-router-cache-tests-") as tmp_name:
            try:
                document = measure(args, children, Path(tmp_name))
            finally:
                children.stop_all()
        if args.id:
            return 0
        write_json(Path(args.out), document)
    print_table(document)
    if args.list_failures:
        print_failures(document, args.list_failures)
    if not args.from_json:
        print(f"\n  results: {args.out}")
    return 1 if any("error" in entry for entry in document["implementations"].values()) else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
