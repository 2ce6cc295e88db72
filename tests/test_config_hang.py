"""Issue 14, its first defect: a config source (or the admin key's source) that hangs — it accepts
connections and never answers: a function in a VPC without an SSM endpoint or NAT, an SSM
brownout — must never hold a request past its deadline, nor stop `edge-router serve` from starting.

Before, botocore's defaults (60 s connect and read timeouts, legacy retries) held the first
invocation of a new Lambda instance for minutes: the function timed out and the client got
Lambda's bare 502. Now every config and secret read has bounded timeouts
(`aws.clients.CONFIG_READ_SETTINGS`), a request waiting for the first config answers the
contract's 503 within its invocation's deadline, an /admin request waiting for the admin key is
refused within it, and the reason (which source, which timeout) is logged.

Each test points `AWS_ENDPOINT_URL` at a `HangingServer` (a loopback socket that accepts and never
answers) and bounds the time it allows; each fails against the code before this issue (the
request, or the server's start, waited for botocore's defaults). Print the measured times with
`.venv/bin/python -m pytest -q -s tests/test_config_hang.py`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from edge_router.config.cache import FIRST_READ_ATTEMPTS
from support import Backend, HangingServer, InvocationContext, function_url_event, write_config

T = TypeVar("T")

INVOCATION_S = 3.0  # the Lambda context's remaining time; the router keeps 500 ms of it as a margin
FIRST_READ_BOUND_S = 20.0  # the whole first config read (every attempt) gives up well inside 30 s
ADMIN_KEY_READ_BOUND_S = 6.0  # one bounded read: two attempts of 2 s and botocore's backoff
SERVE_BOUND_S = 8.0  # `edge-router serve` answers /health this soon after it is started
QUICK_S = 0.5  # a proxied request that waits for nothing


def within(limit_s: float, call: Callable[[], T]) -> tuple[T, float]:
    """`call()`'s result and how long it took, failing (not waiting on) when it takes longer than
    `limit_s`: the code this guards against hung for minutes. A call left hanging ends when the
    HangingServer closes its connections."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # re-raised in the test's thread
            failure.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit_s)
    took = time.monotonic() - started
    assert not thread.is_alive(), f"no answer within {limit_s:g} s"
    if failure:
        raise failure[0]
    return outcome[0], took


class Logged(logging.Handler):
    """The messages logged under `edge_router` (which does not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def matching(self, *words: str) -> list[str]:
        return [m for m in self.messages if all(word in m for word in words)]


@pytest.fixture
def logged() -> Iterator[Logged]:
    handler = Logged()
    package = logging.getLogger("edge_router")
    package.addHandler(handler)
    yield handler
    package.removeHandler(handler)


@pytest.fixture
def hanging_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[HangingServer]:
    """Every AWS service at a loopback socket that accepts and never answers (fake credentials)."""
    from edge_router.aws import clients

    with HangingServer() as hanging:
        for name, value in {
            "AWS_ENDPOINT_URL": hanging.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        clients.clear()
        yield hanging
    clients.clear()


def invoke(handler: Any, path: str, *, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = handler(
        function_url_event("GET", path, headers=headers), InvocationContext(INVOCATION_S)
    )
    return answer


# -- the config source hangs: a cold Lambda instance --------------------------------------------


@pytest.mark.parametrize(
    ("source", "operation"),
    [("ssm:/edge-router/config", "GetParameter"), ("dynamodb:edge-router-config/main", "GetItem")],
    ids=["ssm", "dynamodb"],
)
def test_a_cold_lambda_instance_answers_503_within_the_deadline_while_its_config_source_hangs(
    source: str,
    operation: str,
    hanging_aws: HangingServer,
    lambda_adapter: Callable[..., Any],
    logged: Logged,
) -> None:
    handler = lambda_adapter(source)
    started = time.monotonic()
    answer, took = within(INVOCATION_S + 2, lambda: invoke(handler, "/api/x"))
    print(f"\n  {source}: first request answered {answer['statusCode']} in {took:.2f} s")
    assert answer["statusCode"] == 503
    body = json.loads(answer["body"])
    assert body["message"] == "No valid routing config is loaded"
    assert took < INVOCATION_S  # within the invocation's deadline, not Lambda's bare 502
    assert operation in hanging_aws.operations  # the read was tried, and hung

    # The read goes on beside the invocations; it gives up well inside a Lambda timeout (30 s in
    # the template), and the reason names the source and the timeout.
    within(FIRST_READ_BOUND_S, lambda: handler.loop.run_until_complete(handler.router.config.refresh()))
    first_read_s = time.monotonic() - started
    reasons = logged.matching(source, "timeout")
    print(f"  {source}: the first read gave up after {first_read_s:.2f} s: {reasons[:1]}")
    print(f"  {source}: calls the hanging endpoint received: {hanging_aws.operations}")
    assert first_read_s < FIRST_READ_BOUND_S
    assert reasons, logged.messages
    # each of the cache's attempts is one bounded call: botocore's two attempts, not its default ten
    assert len(hanging_aws.operations) <= 2 * FIRST_READ_ATTEMPTS

    again, took = within(INVOCATION_S + 2, lambda: invoke(handler, "/api/x"))
    assert again["statusCode"] == 503 and took < INVOCATION_S


# -- the admin key's source hangs --------------------------------------------------------------


@pytest.mark.parametrize(
    "key_source",
    ["secretsmanager:edge-router/admin-key", "ssm:/edge-router/admin-key"],
    ids=["secretsmanager", "ssm"],
)
def test_a_hanging_admin_key_source_refuses_admin_within_the_deadline_and_leaves_proxying_alone(
    key_source: str,
    hanging_aws: HangingServer,
    lambda_adapter: Callable[..., Any],
    logged: Logged,
    tmp_path: Path,
) -> None:
    with Backend() as backend:
        config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        handler = lambda_adapter(config, ADMIN_KEY_SOURCE=key_source)
        answer, took = within(INVOCATION_S + 2, lambda: invoke(handler, "/api/before"))
        assert answer["statusCode"] == 200 and took < QUICK_S

        started = time.monotonic()
        admin, admin_took = within(
            INVOCATION_S + 2, lambda: invoke(handler, "/admin/metrics", headers={"x-admin-key": "k"})
        )
        print(f"\n  {key_source}: /admin answered {admin['statusCode']} in {admin_took:.2f} s")
        assert admin["statusCode"] in (403, 503)
        assert admin_took < INVOCATION_S
        assert hanging_aws.operations  # the key's source was asked, and hung

        # the read may still be under way (after the deadline): a proxied request does not wait
        answer, took = within(INVOCATION_S + 2, lambda: invoke(handler, "/api/after"))
        assert answer["statusCode"] == 200 and took < QUICK_S

    # the read gives up on its own, bounded, and says why
    within(ADMIN_KEY_READ_BOUND_S, lambda: handler.loop.run_until_complete(handler.router.admin_key.get()))
    read_s = time.monotonic() - started
    reasons = logged.matching("admin key", key_source, "timeout")
    print(f"  {key_source}: the admin key read gave up after {read_s:.2f} s: {reasons[:1]}")
    assert read_s < ADMIN_KEY_READ_BOUND_S
    assert reasons, logged.messages
    assert len(hanging_aws.operations) == 2  # one read (botocore's two attempts), joined, not one per wait


# -- `edge-router serve` starts while SSM hangs ------------------------------------------------


def test_edge_router_serve_starts_and_answers_health_503_while_ssm_hangs(
    hanging_aws: HangingServer,
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # AWS_ENDPOINT_URL: the hanging server
    command = [sys.executable, "-m", "edge_router.cli", "serve", "--config", "ssm:/edge-router/config"]
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    output = process.stdout
    assert output is not None
    threading.Thread(target=lambda: lines.extend(iter(output.readline, "")), daemon=True).start()
    try:
        url = ""
        while not url:
            assert time.monotonic() - started < SERVE_BOUND_S, f"serve did not announce itself: {lines}"
            url = next((line.split()[-1] for line in lines if "listening on" in line), "")
            time.sleep(0.02)
        status, body = 0, {}
        while not status:  # one request waits (the socket listens before the app has started)
            left = SERVE_BOUND_S - (time.monotonic() - started)
            assert left > 0, f"/health got no answer: {lines}"
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(f"{url}/health", timeout=left)
                status, body = response.status_code, response.json()
        took = time.monotonic() - started
        print(f"\n  serve: /health answered {status} {body.get('status')} {took:.2f} s after the start")
        assert status == 503 and body["status"] == "unhealthy"
        assert took < SERVE_BOUND_S
        assert "GetParameter" in hanging_aws.operations  # it is trying to read
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
