"""Guards shared by a fleet (CONTRACT section 8): two Lambda adapters — two instances, each with its
own loop, router and clients — on one state table in moto's DynamoDB server, over real HTTP.

moto's UpdateItem is made atomic by the `atomic_updates` fixture (conftest.py), as DynamoDB's is;
the requests still race over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_router.testing import function_url_event
from support import Backend, closed_port, dynamodb_table, write_config

TABLE = "edge-router-state"
ADMIN = "admin-secret-for-tests"


def _config(tmp_path: Path, backend: Backend, **rate_limit: Any) -> str:
    limit = {"requestsPerWindow": 10, "windowSeconds": 60, "shared": True, **rate_limit}
    route = {"prefix": "/api", "target": backend.url, "rateLimit": limit}
    return write_config(tmp_path / "config.json", {"routes": [route]})


def _get(adapter: Any, path: str = "/api/x", **headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = adapter(function_url_event("GET", path, headers=headers), None)
    return answer


def test_two_instances_share_one_limit(
    aws: str, atomic_updates: None, lambda_adapter: Callable[..., Any], tmp_path: Path
) -> None:
    dynamodb_table(TABLE)
    with Backend() as backend:
        config = _config(tmp_path, backend)
        one, two = lambda_adapter(config, STATE_TABLE=TABLE), lambda_adapter(config, STATE_TABLE=TABLE)
        for adapter in (one, two):
            # This test is about sharing, not budgets (test_shield.py has those): each instance's
            # first call builds its boto3 client, which on a loaded CI machine can outlast the
            # 250 ms budget, back the table off and let requests through unlimited (fail open).
            adapter.router.tracker.shield.budget_s = 10.0
        statuses = [_get(adapter)["statusCode"] for _ in range(20) for adapter in (one, two)]
    # alternating: together they admit exactly the limit (at least the documented bound, at most it)
    assert statuses.count(200) == 10
    assert statuses[:10] == [200] * 10
    assert len(backend.seen) == 10


def test_per_process_buckets_would_admit_twice_the_limit(
    lambda_adapter: Callable[..., Any], tmp_path: Path
) -> None:
    # the control: without the table, each instance counts alone
    with Backend() as backend:
        config = _config(tmp_path, backend, shared=False)
        one, two = lambda_adapter(config), lambda_adapter(config)
        statuses = [_get(adapter)["statusCode"] for _ in range(20) for adapter in (one, two)]
    assert statuses.count(200) == 20


def test_an_unreachable_table_follows_on_store_error(
    aws: str, monkeypatch: Any, lambda_adapter: Callable[..., Any], tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    with Backend() as backend:
        allow = lambda_adapter(_config(tmp_path, backend), STATE_TABLE=TABLE)
        assert [_get(allow)["statusCode"] for _ in range(3)] == [200] * 3
        deny = lambda_adapter(_config(tmp_path, backend, on_store_error="deny"), STATE_TABLE=TABLE)
        refused = _get(deny)
    assert refused["statusCode"] == 503
    assert json.loads(refused["body"])["error"] == "Backend Unavailable"
    assert len(backend.seen) == 3


def test_a_key_created_on_one_instance_works_on_another(
    aws: str, lambda_adapter: Callable[..., Any], tmp_path: Path
) -> None:
    dynamodb_table(TABLE)
    with Backend() as backend:
        route = {"prefix": "/api", "target": backend.url, "api_keys": {"required": True}}
        config = write_config(tmp_path / "config.json", {"routes": [route]})
        one = lambda_adapter(config, STATE_TABLE=TABLE, ADMIN_KEY=ADMIN)
        two = lambda_adapter(config, STATE_TABLE=TABLE, ADMIN_KEY=ADMIN)
        assert _get(two)["statusCode"] == 401
        event = function_url_event(
            "POST", "/admin/api-keys", headers={"x-admin-key": ADMIN, "content-type": "application/json"}
        )
        event["body"] = json.dumps({"name": "fleet"})
        created = one(event, None)
        assert created["statusCode"] == 201
        key = json.loads(created["body"])["key"]
        assert _get(two, **{"x-api-key": key})["statusCode"] == 200
        assert _get(two, **{"x-api-key": key + "x"})["statusCode"] == 401
    assert len(backend.seen) == 1
