"""A deeply nested config document is refused with a clear reason (issue 6, item 12).

JSON and YAML parsers recurse once per nesting level: 100,000 `[` used to crash `edge-router validate`
with a RecursionError traceback, and a document nested 100 levels deep under an accepted free-form key
was taken as valid. Every source kind now names the depth, and the running router keeps its last good
config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from edge_router.cli import main
from support import Backend, RouterServer, dynamodb_table, write_config

DEPTH_REASON = "nested more than 64 levels deep"


def nested(levels: int) -> Any:
    """`levels` objects, one inside the other ({"a": {"a": ... 1}})."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def validate(source: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", source])
    return code, capsys.readouterr().err


def assert_refused_for_depth(code: int, stderr: str) -> None:
    assert code == 1
    assert "Traceback" not in stderr
    assert "RecursionError" not in stderr
    reasons = [line for line in stderr.splitlines() if DEPTH_REASON in line]
    assert len(reasons) == 1, stderr
    assert len(stderr.splitlines()) <= 2, stderr


def test_validate_refuses_100000_nested_brackets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert_refused_for_depth(*validate(str(path), capsys))


def test_validate_refuses_100000_unclosed_brackets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)
    assert_refused_for_depth(*validate(str(path), capsys))


def test_validate_refuses_a_config_nested_100_levels_under_a_free_form_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `metrics` takes any value, so this document was accepted before the limit existed.
    source = write_config(tmp_path / "deep.json", {"routes": [], "metrics": nested(100)})
    assert_refused_for_depth(*validate(source, capsys))


def test_validate_accepts_a_config_nested_64_levels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_config(tmp_path / "ok.json", {"routes": [], "metrics": nested(63)})
    code, _ = validate(source, capsys)
    assert code == 0


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, "routes: []\nmetrics: " + "[" * 100 + "]" * 100 + "\n"],
    ids=["100000-flow-brackets", "100-levels-under-metrics"],
)
def test_validate_refuses_deep_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    assert_refused_for_depth(*validate(str(path), capsys))


def test_validate_refuses_deep_json_in_ssm_and_dynamodb(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    deep = "[" * 3000
    boto3.client("ssm").put_parameter(Name="/edge-router/deep", Value=deep, Type="String")
    dynamodb_table("cfg").put_item(Item={"id": "main", "value": deep})
    assert_refused_for_depth(*validate("ssm:/edge-router/deep", capsys))
    assert_refused_for_depth(*validate("dynamodb:cfg/main", capsys))


def test_running_router_keeps_its_last_good_config_and_says_why(tmp_path: Path) -> None:
    with Backend() as backend:
        path = tmp_path / "c.json"
        write_config(path, {"routes": [{"prefix": "/api", "target": backend.url}]})
        with RouterServer(str(path), env={"ADMIN_KEY": "k"}) as r, r.client() as client:
            path.write_text("[" * 100_000 + "]" * 100_000)
            refused = client.post("/admin/cache-flush", headers={"X-Admin-Key": "k"})
            proxied = client.get("/api/x")
            health = client.get("/health", headers={"X-Admin-Key": "k"})
    assert refused.status_code == 422
    assert DEPTH_REASON in refused.json()["message"]
    assert "RecursionError" not in refused.text
    assert proxied.status_code == 200
    assert DEPTH_REASON in json.dumps(health.json()["config"]["last_error"])
