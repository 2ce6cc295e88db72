"""After a write: tell the fleet, and (on request) watch it follow.

    signal_fleet(source, version, state_table) -> Signal   # bump er#config-version (ssm: sources)
    follow_within(source, check_seconds) -> float           # when the whole fleet may be expected
    wait_for_version(url, version, ...) -> Waited           # sample GET /health until it reports it

Every router instance checks the config's version at most every CONFIG_CHECK_SECONDS: for an
`ssm:` source, the state table's `er#config-version` item (`aws.config_version`), which
`edge-router flip`/`push` set to the parameter's new Version here (and the router itself when the
stack's EventBridge rule reports the change); a `dynamodb:TABLE/ID` item carries its own `version`,
which the write has already bumped; a file's servers notice its change. An instance that sees a new
version reloads after a small random delay (so a fleet does not read SSM in one burst).

`wait_for_version` sends `sample` concurrent `GET /health` requests per round (concurrent, so a
function URL spreads them over as many instances) until every one of a round reports the version
in `config.version` (or a later one), or the time runs out.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

from ...exceptions import StateStoreError
from ..sources import DynamoDBSource, SSMSource, parse_source

Sign = Callable[[urllib.request.Request], None]


@dataclass(frozen=True)
class Signal:
    """`signalled`: instances see a new version at their next check (else only their TTL helps);
    `failed`: the signal was due and could not be given (a warning)."""

    signalled: bool
    message: str
    failed: bool = False


def signal_fleet(source: str, version: str, state_table: str | None) -> Signal:
    """Make the written `version` of SOURCE visible to the instances' version check.

    ssm: bump the state table's version item to the parameter's Version (idempotent: a version
    item that is already there or later is left as it is). dynamodb: the item's own `version` was
    bumped by the write. file: its servers compare the file itself.
    """
    target = parse_source(source)
    if isinstance(target, SSMSource):
        if not state_table:
            return Signal(
                False,
                "no state table (--state-table TABLE or STATE_TABLE): nothing signals the change from "
                "here; instances follow within their CONFIG_TTL_SECONDS, or as soon as the stack's "
                "change rule bumps the version",
            )
        from ...aws.config_version import VERSION_ITEM, bump_config_version

        try:
            bumped = bump_config_version(state_table, int(version), source)
        except StateStoreError as exc:
            return Signal(
                False,
                f"the config version could not be bumped ({exc}); instances follow within their "
                "CONFIG_TTL_SECONDS, or as soon as the stack's change rule bumps the version",
                failed=True,
            )
        state = "is now" if bumped else "was already at or past"
        return Signal(True, f"{VERSION_ITEM} in {state_table} {state} version {version}")
    if isinstance(target, DynamoDBSource):
        return Signal(True, f"the config item carries version {version}")
    return Signal(True, "servers reading the file notice that it changed")


def follow_within(source: str, check_seconds: float) -> float:
    """When the last instance may be expected to serve a signalled change of SOURCE: its next check
    (at most `check_seconds` away) plus the random delay before its re-read (the source's
    `reload_spread_s`), plus a second for the read itself."""
    spread = float(getattr(parse_source(source), "reload_spread_s", check_seconds))
    return check_seconds + spread + 1.0


def health_url(url: str) -> str:
    """`url`'s GET /health (a function URL, with or without its trailing '/', or /health itself)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/health"):
        path += "/health"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def reports(seen: Any, version: str) -> bool:
    """Does an instance that reports `seen` serve `version` (or a later one)?"""
    if seen is None or isinstance(seen, bool):
        return False
    try:
        return int(seen) >= int(version)
    except (TypeError, ValueError):
        return str(seen) == version


def health_version(url: str, timeout: float, sign: Sign | None = None) -> Any:
    """The `config.version` one GET /health answers with (OSError/ValueError when it cannot say)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 (health_url)
    if sign is not None:
        sign(request)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (health_url: http(s) only)
            body = json.loads(answer.read(1 << 20))
    except urllib.error.HTTPError as exc:
        if exc.code != 503:  # an instance without a config answers 503 and still reports itself
            raise
        body = json.loads(exc.read(1 << 20))
    config = body.get("config") if isinstance(body, dict) else None
    if not isinstance(config, dict):
        raise ValueError("the /health answer has no `config` object")
    return config.get("version")


@dataclass(frozen=True)
class Waited:
    followed: bool
    seconds: float
    rounds: int
    last: str  # what the last round saw, for the message


def wait_for_version(
    url: str,
    version: str,
    *,
    sample: int = 10,
    timeout: float = 60.0,
    interval: float = 1.0,
    request_timeout: float = 5.0,
    sign: Sign | None = None,
    progress: Callable[[str], None] | None = None,
) -> Waited:
    """Poll GET /health at `url` until a round of `sample` concurrent answers all report `version`
    (or later), or `timeout` seconds passed. Each request is bounded by `request_timeout` (and by
    the time left); rounds are `interval` apart."""
    target = health_url(url)
    start = time.monotonic()
    deadline = start + timeout
    rounds = 0
    last = "no answer yet"
    with ThreadPoolExecutor(max_workers=sample, thread_name_prefix="edge-router-wait") as pool:
        while (left := deadline - time.monotonic()) > 0:
            rounds += 1
            budget = min(request_timeout, left)
            futures = [pool.submit(health_version, target, budget, sign) for _ in range(sample)]
            done, _ = wait_futures(futures, timeout=budget + 1.0)
            seen: list[str] = []
            matching = 0
            for future in futures:
                if future not in done:
                    seen.append("no answer")
                elif (error := future.exception()) is not None:
                    seen.append(f"error ({error})")
                else:
                    value = future.result()
                    matching += reports(value, version)
                    seen.append(f"version {value}")
            last = f"{matching}/{sample} report version {version}; " + ", ".join(sorted(set(seen)))
            if progress is not None:
                progress(last)
            if matching == sample:
                return Waited(True, time.monotonic() - start, rounds, last)
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
    return Waited(False, time.monotonic() - start, rounds, last)


def sigv4_signer(url: str) -> Sign:
    """Sign each request for a function URL with AuthType AWS_IAM (service `lambda`), with the
    caller's AWS credentials; the region comes from the URL (`<id>.lambda-url.<region>.on.aws`)."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = boto3.session.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise ValueError("--iam: no AWS credentials found")
    labels = (urllib.parse.urlsplit(url).hostname or "").split(".")
    region = labels[labels.index("lambda-url") + 1] if "lambda-url" in labels[:-1] else session.region_name
    if not region:
        raise ValueError("--iam: no region in the URL and none configured (AWS_REGION)")
    frozen = credentials.get_frozen_credentials()

    def sign(request: urllib.request.Request) -> None:
        signed = AWSRequest(method=request.get_method(), url=request.full_url, headers=dict(request.headers))
        SigV4Auth(frozen, "lambda", region).add_auth(signed)
        for name, value in signed.headers.items():
            request.add_header(name, value)

    return sign
