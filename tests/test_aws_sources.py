"""Config from SSM Parameter Store and DynamoDB, over real HTTP to moto's server.

boto3 (through Powertools Parameters) reaches moto via AWS_ENDPOINT_URL, so the real wire path
runs: signing, serialisation, error mapping.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from support import Backend, dynamodb_table, function_url_event

PARAM = "/edge-router/config"


def routes_to(url: str, prefix: str = "/api") -> str:
    return json.dumps({"routes": [{"prefix": prefix, "target": url}]})


def get(handler: Any, path: str = "/api/x", **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = handler(function_url_event("GET", path, headers=headers), None)
    return response


def flush(handler: Any) -> dict[str, Any]:
    response: dict[str, Any] = handler(
        function_url_event("POST", "/admin/cache-flush", headers={"x-admin-key": "k"}), None
    )
    return response


@pytest.mark.parametrize("parameter_type", ["String", "SecureString"])
def test_ssm_config_routes_requests(aws: str, lambda_adapter: Any, parameter_type: str) -> None:
    with Backend() as backend:
        boto3.client("ssm").put_parameter(Name=PARAM, Value=routes_to(backend.url), Type=parameter_type)
        handler = lambda_adapter(f"ssm:{PARAM}")
        response = get(handler)
        assert response["statusCode"] == 200
        assert backend.last.target == "/x"


def test_ssm_bad_update_keeps_last_good_then_good_update_is_picked_up(aws: str, lambda_adapter: Any) -> None:
    ssm = boto3.client("ssm")
    with Backend() as first, Backend() as second:
        ssm.put_parameter(Name=PARAM, Value=routes_to(first.url), Type="String")
        handler = lambda_adapter(f"ssm:{PARAM}", ADMIN_KEY="k")
        assert get(handler)["headers"]["x-backend-source"] == first.url

        ssm.put_parameter(Name=PARAM, Value="{not json", Type="String", Overwrite=True)
        answer = flush(handler)
        assert answer["statusCode"] == 422
        assert "not valid JSON" in json.loads(answer["body"])["message"]
        assert get(handler)["headers"]["x-backend-source"] == first.url  # last good still serving

        invalid = json.dumps({"routes": [{"prefix": "api", "target": second.url}]})
        ssm.put_parameter(Name=PARAM, Value=invalid, Type="String", Overwrite=True)
        assert "routes[0].prefix" in json.loads(flush(handler)["body"])["message"]
        assert get(handler)["headers"]["x-backend-source"] == first.url
        health = get(handler, "/health", **{"x-admin-key": "k"})
        assert health["statusCode"] == 200
        assert "routes[0].prefix" in json.loads(health["body"])["config"]["last_error"]

        ssm.put_parameter(Name=PARAM, Value=routes_to(second.url), Type="String", Overwrite=True)
        assert flush(handler)["statusCode"] == 200
        assert get(handler)["headers"]["x-backend-source"] == second.url


def test_ssm_change_followed_after_ttl_without_flush(aws: str, lambda_adapter: Any) -> None:
    ssm = boto3.client("ssm")
    with Backend() as first, Backend() as second:
        ssm.put_parameter(Name=PARAM, Value=routes_to(first.url), Type="String")
        handler = lambda_adapter(f"ssm:{PARAM}", CONFIG_TTL_SECONDS="0.3")
        assert get(handler)["headers"]["x-backend-source"] == first.url
        ssm.put_parameter(Name=PARAM, Value=routes_to(second.url), Type="String", Overwrite=True)
        time.sleep(0.4)
        # the first request after the TTL is served from the last good config while the refresh
        # runs; warm invocations after it see the new config
        sources = []
        for _ in range(200):
            sources.append(get(handler)["headers"]["x-backend-source"])
            if sources[-1] == second.url:
                break
            time.sleep(0.01)
        assert sources[0] == first.url
        assert sources[-1] == second.url


def test_ssm_missing_parameter_means_unhealthy_and_503(aws: str, lambda_adapter: Any) -> None:
    handler = lambda_adapter("ssm:/does/not/exist", ADMIN_KEY="k")
    response = get(handler)
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"] == "Backend Unavailable"
    health = get(handler, "/health", **{"x-admin-key": "k"})
    assert health["statusCode"] == 503
    body = json.loads(health["body"])
    assert body["status"] == "unhealthy"
    assert "ssm:/does/not/exist" in body["reason"]


def _config_table(name: str = "edge-router-config") -> Any:
    return dynamodb_table(name)


def test_dynamodb_config_routes_and_survives_a_bad_update(aws: str, lambda_adapter: Any) -> None:
    table = _config_table()
    with Backend() as first, Backend() as second:
        table.put_item(Item={"id": "main", "value": routes_to(first.url)})
        handler = lambda_adapter("dynamodb:edge-router-config/main", ADMIN_KEY="k")
        assert get(handler)["headers"]["x-backend-source"] == first.url

        table.put_item(Item={"id": "main", "value": json.dumps({"routes": [{"prefix": "/api"}]})})
        assert flush(handler)["statusCode"] == 422
        assert get(handler)["headers"]["x-backend-source"] == first.url

        table.put_item(Item={"id": "main", "value": routes_to(second.url)})
        assert flush(handler)["statusCode"] == 200
        assert get(handler)["headers"]["x-backend-source"] == second.url


def test_dynamodb_item_may_hold_the_document_as_a_map(aws: str, lambda_adapter: Any) -> None:
    table = _config_table()
    with Backend() as backend:
        document = {"routes": [{"prefix": "/api", "target": backend.url, "timeout_ms": 1500}]}
        table.put_item(Item={"id": "main", "value": document})  # numbers come back as Decimal
        handler = lambda_adapter("dynamodb:edge-router-config/main")
        assert get(handler)["statusCode"] == 200


def test_dynamodb_missing_item_is_named(aws: str, lambda_adapter: Any) -> None:
    _config_table()
    handler = lambda_adapter("dynamodb:edge-router-config/absent", ADMIN_KEY="k")
    body = json.loads(get(handler, "/health", **{"x-admin-key": "k"})["body"])
    assert body["status"] == "unhealthy"
    assert "no such item" in body["reason"]
