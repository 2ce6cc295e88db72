"""The live flip (seed 003's card) against moto's SSM, push, and explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from edge_router.cli import main
from support import Backend, RouterServer, function_url_event, write_config

PARAM = "/edge-router/priority"


def priority_config() -> dict[str, Any]:
    return {
        "global_priority": "1",
        "routes": {"task": {"priority": "12"}},
        "providers": {"1": "${ONE_URL}", "2": "${TWO_URL}"},
    }


def source_of(handler: Any, path: str = "/task/api/x") -> str:
    response = handler(function_url_event("GET", path), None)
    assert response["statusCode"] == 200, response
    return str(response["headers"]["x-backend-source"])


def flush(handler: Any) -> int:
    event = function_url_event("POST", "/admin/cache-flush", headers={"x-admin-key": "k"})
    return int(handler(event, None)["statusCode"])


def test_flip_changes_a_running_routers_order(
    aws: str, lambda_adapter: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm = boto3.client("ssm")
    with Backend() as one, Backend() as two:
        monkeypatch.setenv("ONE_URL", one.url)
        monkeypatch.setenv("TWO_URL", two.url)
        ssm.put_parameter(Name=PARAM, Value=json.dumps(priority_config()), Type="String")
        handler = lambda_adapter(f"ssm:{PARAM}", ADMIN_KEY="k")
        assert source_of(handler) == one.url

        assert main(["flip", "task", "21", "--config", f"ssm:{PARAM}"]) == 0
        assert "task priority is now 21" in capsys.readouterr().out
        stored = json.loads(ssm.get_parameter(Name=PARAM)["Parameter"]["Value"])
        assert stored["routes"]["task"]["priority"] == "21"
        assert stored["providers"] == {"1": "${ONE_URL}", "2": "${TWO_URL}"}  # placeholders kept

        assert source_of(handler) == one.url  # still the cached config (12 h TTL) ...
        assert flush(handler) == 200
        assert source_of(handler) == two.url  # ... until the cache is flushed


def test_flip_refuses_a_digit_that_names_no_provider(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=PARAM, Value=json.dumps(priority_config()), Type="String")
    assert main(["flip", "task", "31", "--config", f"ssm:{PARAM}"]) == 1
    assert "routes.task.priority" in capsys.readouterr().err
    assert ssm.get_parameter(Name=PARAM)["Parameter"]["Version"] == 1  # nothing written


def test_push_validates_then_writes(aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ssm = boto3.client("ssm")
    good = write_config(tmp_path / "good.json", priority_config())
    assert main(["push", good, "--to", f"ssm:{PARAM}"]) == 0
    assert json.loads(ssm.get_parameter(Name=PARAM)["Parameter"]["Value"]) == priority_config()
    bad = write_config(tmp_path / "bad.json", {"routes": [{"prefix": "nope", "target": "http://x"}]})
    assert main(["push", bad, "--to", f"ssm:{PARAM}"]) == 1
    assert "routes[0].prefix" in capsys.readouterr().err
    assert ssm.get_parameter(Name=PARAM)["Parameter"]["Version"] == 1


def test_explain_cli_shows_candidates_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONE_URL", "http://127.0.0.1:9001")
    monkeypatch.setenv("TWO_URL", "http://127.0.0.1:9002")
    source = write_config(tmp_path / "c.json", priority_config())
    assert main(["explain", "POST", "/task/api/items?x=1", "--config", source]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["route"]["prefix"] == "/task"
    assert [c["url"] for c in answer["candidates"]] == [
        "http://127.0.0.1:9001/task/api/items?x=1",
        "http://127.0.0.1:9002/task/api/items?x=1",
    ]
    assert any("falls back" in reason for reason in answer["reasons"])


def test_admin_explain_needs_the_key_and_does_not_advance_rotation(tmp_path: Path) -> None:
    with Backend() as a, Backend() as b:
        document = {"routes": [{"prefix": "/api", "targets": [a.url, b.url], "strategy": "round_robin"}]}
        with RouterServer(write_config(tmp_path / "c.json", document), env={"ADMIN_KEY": "k"}) as router:
            with router.client() as client:
                assert client.get("/admin/explain", params={"path": "/api/x"}).status_code == 401
                shown = [
                    client.get(
                        "/admin/explain", params={"path": "/api/x"}, headers={"X-Admin-Key": "k"}
                    ).json()["candidates"][0]["backend"]
                    for _ in range(3)
                ]
                first_real = client.get("/api/x").headers["x-backend-source"]
    assert len(set(shown)) == 1  # explaining does not rotate the pool
    assert first_real == shown[0]  # and it shows where the next request really goes
    assert a.seen or b.seen


def test_explain_header_routing_names_the_backend_or_the_400(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EDGE_ROUTER_CONFIG", raising=False)
    monkeypatch.setenv("ENVIRONMENT", "local")
    monkeypatch.setenv("BACKEND_BUN_SQLITE_URL", "http://127.0.0.1:9001")
    assert main(["explain", "GET", "/todos?a=1"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["candidates"] == [{"backend": "bun-sqlite", "url": "http://127.0.0.1:9001/todos?a=1"}]
    assert main(["explain", "GET", "/todos", "-H", "x-backend: nope"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"].startswith("400 Invalid Backend: 'nope'")


def test_explain_shows_the_url_the_proxy_sends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lambda_adapter: Any
) -> None:
    """One function builds the upstream URL for both: a query with a raw space is escaped alike."""
    with Backend() as backend:
        config = write_config(
            tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url + "/v1"}]}
        )
        assert main(["explain", "GET", "/api/items?q=a b&x=%7e", "--config", config]) == 0
        explained = json.loads(capsys.readouterr().out)["candidates"][0]["url"]
        handler = lambda_adapter(config)
        assert (
            handler(function_url_event("GET", "/api/items", query="q=a b&x=%7e"), None)["statusCode"] == 200
        )
        assert backend.last.target == "/v1/items?q=a%20b&x=%7e"
        assert explained == backend.url + backend.last.target
