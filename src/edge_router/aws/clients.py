"""boto3 clients, made one way, and botocore's errors, mapped in one place.

* `client(service)` / `resource(service)`: one per process for each (service, region, endpoint,
  client settings), made on first use in whichever thread needs it, under a lock (a boto3
  Session is not safe for concurrent client creation), from one Session of our own. Creating a
  client costs ~60 ms, so nothing makes one per call. The key includes the endpoint and region
  variables, so `AWS_ENDPOINT_URL` (a local emulator) is honoured even when it changes.
* `aws_errors(as_error, what)`: the botocore boundary. Any `ClientError`/`BotoCoreError` inside
  becomes `as_error("<what>: <Code>: <message>")`, one of our exceptions. `error_code(exc)` reads
  the code where a caller must tell one refusal from another (ParameterNotFound,
  ConditionalCheckFailedException) before the mapping applies.

boto3 is imported on first use only: a Lambda cold start that never talks to AWS never pays for it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_session: Any = None
_made: dict[tuple[Hashable, ...], Any] = {}

CONFIG_READ_SETTINGS: dict[str, Any] = {
    "connect_timeout": 1,
    "read_timeout": 2,
    "retries": {"mode": "standard", "total_max_attempts": 2},
}
"""botocore settings for reading the config (SSM, a DynamoDB item) and the admin key (Secrets
Manager, SSM). botocore's defaults (60 s connect and read timeouts, legacy retries: 5 attempts on
SSM, 10 on DynamoDB) held a cold instance's first request for minutes against an endpoint that
accepts and never answers (a VPC without an SSM endpoint or NAT, a brownout): the Lambda timed
out. These bound one read to ~5 s (2 x 2 s and botocore's backoff of at most 1 s; 1 s to connect,
enough for TCP and TLS within a region), like the state table's (`aws.state_table.CLIENT_SETTINGS`).
One retry stays: a pooled connection found dead after a frozen spell, or a throttled call, is
tried again at once instead of failing the read. The config cache tries a first read up to
`config.cache.FIRST_READ_ATTEMPTS` times on top of this; a request never waits past its deadline.
"""


def _key(kind: str, service: str, region: str | None, settings: Hashable) -> tuple[Hashable, ...]:
    env = os.environ
    endpoint = env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env.get("AWS_ENDPOINT_URL")
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    return (kind, service, region, endpoint, env.get("AWS_ACCESS_KEY_ID"), settings)


def _make(kind: str, service: str, region: str | None, settings: dict[str, Any] | None) -> Any:
    frozen = tuple(sorted((settings or {}).items(), key=lambda item: item[0]))
    key = _key(kind, service, region, repr(frozen))
    made = _made.get(key)
    if made is not None:
        return made
    with _lock:
        made = _made.get(key)
        if made is None:
            global _session
            import boto3
            from botocore.config import Config

            if _session is None:
                _session = boto3.session.Session()
            config = Config(**settings) if settings else None
            factory = _session.client if kind == "client" else _session.resource
            made = _made[key] = factory(service, region_name=region, config=config)
    return made


def client(service: str, *, region: str | None = None, settings: dict[str, Any] | None = None) -> Any:
    """The process's boto3 client for `service` (`settings`: botocore `Config` keyword arguments)."""
    return _make("client", service, region, settings)


def resource(service: str, *, region: str | None = None, settings: dict[str, Any] | None = None) -> Any:
    """The process's boto3 resource for `service` (DynamoDB tables; `settings` as for `client`)."""
    return _make("resource", service, region, settings)


def clear() -> None:
    """Forget every client (tests switch endpoints and credentials between cases)."""
    global _session
    with _lock:
        _made.clear()
        _session = None


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError (`ParameterNotFound`, ...), else ''."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def describe(exc: BaseException) -> str:
    """`Code: message` for a ClientError, the message for any other botocore error."""
    code = error_code(exc)
    if code:
        message = getattr(exc, "response", {}).get("Error", {}).get("Message") or str(exc)
        return f"{code}: {message}"
    return str(exc)


@contextmanager
def aws_errors(as_error: Callable[[str], Exception], what: str) -> Iterator[None]:
    """Map any botocore error raised inside to `as_error(f"{what}: {describe(exc)}")`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise as_error(f"{what}: {describe(exc)}") from exc
