"""What a SAM deployment relies on in the code (issue 9): the admin key read at run time from Secrets
Manager or an SSM SecureString (moto over HTTP), Powertools' Lambda context on every log line with
no correlation id carried from one invocation to the next, and fresh randomness per instance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3

from edge_router.http import context as request_context
from edge_router.observability.logs import app_logger
from support import Backend, function_url_event, write_config

SCHEDULE = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}


class LambdaContext:
    function_name = "edge-router"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:edge-router"

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return 30000


def flush_cache(handler: Any, key: str) -> int:
    event = function_url_event("POST", "/admin/cache-flush", headers={"x-admin-key": key})
    return int(handler(event, None)["statusCode"])


def test_the_admin_key_comes_from_secrets_manager(aws: str, tmp_path: Path, lambda_adapter: Any) -> None:
    secret = boto3.client("secretsmanager").create_secret(Name="edge-router/admin", SecretString="s3cr3t")
    config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/", "target": "http://127.0.0.1:9"}]})
    handler = lambda_adapter(config, ADMIN_KEY_SOURCE=f"secretsmanager:{secret['ARN']}")
    assert flush_cache(handler, "wrong") == 401
    assert flush_cache(handler, "s3cr3t") == 200
    key_value = json.dumps({"admin_key": "from-json"})  # a key/value secret, as the console writes it
    boto3.client("secretsmanager").create_secret(Name="edge-router/admin-json", SecretString=key_value)
    other = lambda_adapter(config, ADMIN_KEY_SOURCE="secretsmanager:edge-router/admin-json")
    assert flush_cache(other, "from-json") == 200


def test_the_admin_key_comes_from_an_ssm_securestring(aws: str, tmp_path: Path, lambda_adapter: Any) -> None:
    boto3.client("ssm").put_parameter(Name="/edge-router/admin-key", Value="p4ss", Type="SecureString")
    config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/", "target": "http://127.0.0.1:9"}]})
    handler = lambda_adapter(config, ADMIN_KEY_SOURCE="ssm:/edge-router/admin-key")
    assert flush_cache(handler, "p4ss") == 200
    assert flush_cache(handler, "wrong") == 401


def test_an_unreadable_admin_key_source_keeps_admin_closed(
    aws: str, tmp_path: Path, lambda_adapter: Any
) -> None:
    config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/", "target": "http://127.0.0.1:9"}]})
    handler = lambda_adapter(config, ADMIN_KEY_SOURCE="secretsmanager:no-such-secret")
    assert flush_cache(handler, "") == 403
    assert flush_cache(handler, "anything") == 403


def test_an_admin_key_source_that_failed_is_tried_again_soon_and_a_read_key_survives_outages(
    aws: str,
) -> None:
    import asyncio

    from edge_router.guards.admin import RETRY_UNREAD_KEY_S, AdminKey

    now = [0.0]
    key = AdminKey(None, "secretsmanager:edge-router/later", ttl_s=300.0, clock=lambda: now[0])
    secrets = boto3.client("secretsmanager")
    assert asyncio.run(key.get()) is None  # not created yet: admin closed
    secrets.create_secret(Name="edge-router/later", SecretString="k1")
    now[0] += RETRY_UNREAD_KEY_S - 1
    assert asyncio.run(key.get()) is None  # not re-read on every request
    now[0] += 2
    assert asyncio.run(key.get()) == "k1"  # well before the 300 s cache would have expired
    secrets.delete_secret(SecretId="edge-router/later", ForceDeleteWithoutRecovery=True)
    now[0] += 301
    assert asyncio.run(key.get()) == "k1"  # an outage of the source does not lock operators out


def test_each_invocation_logs_with_its_own_lambda_context_and_no_stale_correlation_id(
    tmp_path: Path, lambda_adapter: Any
) -> None:
    with Backend() as backend:
        config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        handler = lambda_adapter(config)
        logger = app_logger()
        assert (
            handler(function_url_event("GET", "/api/x", request_id="http-1"), LambdaContext("lambda-1"))[
                "statusCode"
            ]
            == 200
        )
        keys = logger.get_current_keys()
        assert keys["correlation_id"] == "http-1"
        assert keys["function_request_id"] == "lambda-1" and "cold_start" in keys
        assert handler(SCHEDULE, LambdaContext("lambda-2"))["handled"] is True
        keys = logger.get_current_keys()
        assert keys.get("correlation_id") is None  # the HTTP request's id did not carry over
        assert keys["function_request_id"] == "lambda-2" and keys["cold_start"] is False


def test_the_request_line_names_the_invocation(tmp_path: Path, lambda_adapter: Any) -> None:
    import io

    from edge_router.observability.access_log import AccessLog

    with Backend() as backend:
        config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        handler = lambda_adapter(config)
        buffer = io.StringIO()
        handler.router.recorder.access_log = AccessLog(stream=buffer)
        handler(function_url_event("GET", "/api/x"), LambdaContext("lambda-9"))
        handler(function_url_event("GET", "/api/y"), LambdaContext("lambda-10"))
    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert (first["function_request_id"], first["cold_start"]) == ("lambda-9", True)
    assert (second["function_request_id"], second["cold_start"]) == ("lambda-10", False)


def test_each_instance_gets_its_own_request_id_prefix(tmp_path: Path, lambda_adapter: Any) -> None:
    # SnapStart restores every instance from one snapshot of the imported modules: the prefix made
    # at import would be shared, so the adapter (built on the first invocation) makes a new one.
    before = request_context.new_request_id()[:16]
    config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/", "target": "http://127.0.0.1:9"}]})
    lambda_adapter(config)
    assert request_context.new_request_id()[:16] != before
