"""Shared fixtures: a moto server over HTTP for AWS tests, and a Lambda adapter factory."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Powertools writes one JSON line per request to stdout; tests read behaviour, not logs.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "EdgeRouterTests")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on 127.0.0.1 (never all interfaces), reached by boto3 over real HTTP."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """AWS environment pointing every boto3 client at moto; state is wiped after each test."""
    import urllib.request

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    yield moto_endpoint
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    from edge_router.aws import clients

    clients.clear()


@pytest.fixture
def lambda_adapter() -> Iterator[Callable[..., Any]]:
    """Build LambdaAdapters (one loop, one client each, as in a Lambda instance); closed afterwards."""
    from edge_router.aws_lambda import LambdaAdapter, build_handler
    from edge_router.settings import Settings

    made: list[LambdaAdapter] = []

    def make(config_source: str | None = None, **env: str) -> LambdaAdapter:
        adapter = build_handler(Settings.from_env(env, config_source=config_source))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.loop.run_until_complete(adapter.router.aclose_state())
        adapter.loop.run_until_complete(adapter.router.upstream.aclose())
        adapter.loop.close()


@pytest.fixture
def atomic_puts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's PutItem made atomic, as DynamoDB's is.

    DynamoDB evaluates a condition and writes the item as one step. moto (5.2, `Table.put_item`)
    reads the stored item, evaluates the condition and stores the new one without a lock, on a
    threaded server: about one race in a thousand, two writers both passed `version = N` there.
    Its server runs in this process, so a lock around that method restores DynamoDB's guarantee;
    the requests still race over HTTP.
    """
    from moto.dynamodb.models.table import Table

    lock = threading.Lock()
    put_item = Table.put_item
    calls: list[None] = []

    def atomic_put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            calls.append(None)
            return put_item(self, *args, **kwargs)

    monkeypatch.setattr(Table, "put_item", atomic_put_item)
    yield
    assert calls, "the moto server did not run the patched put_item (not in this process?)"


@pytest.fixture
def atomic_updates(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's UpdateItem made atomic, as DynamoDB's is.

    DynamoDB evaluates an UpdateItem's condition and applies its update as one step. moto (5.2,
    `moto.dynamodb.models.DynamoDBBackend.update_item`) reads the item, evaluates the condition and
    updates it in place without a lock, on a threaded server, so two racing `SET tat = tat + :T`
    updates can both pass `tat <= :max`. Its server runs in this process, so a lock around that
    method restores DynamoDB's guarantee; the requests still race over HTTP.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    update_item = DynamoDBBackend.update_item
    calls: list[None] = []

    def atomic_update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            calls.append(None)
            return update_item(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "update_item", atomic_update_item)
    yield
    assert calls, "the moto server did not run the patched update_item (not in this process?)"
