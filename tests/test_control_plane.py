"""Control plane: health, discovery, redacted config, admin key handling, OpenAPI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import Backend, RouterServer, write_config


def config_with_secrets(backend_url: str) -> dict[str, object]:
    return {
        "backends": {
            "api-1": {"url": backend_url.replace("http://", "http://user:hunter2@"), "name": "API one"},
        },
        "routes": [{"prefix": "/api", "target": "api-1"}],
        "metrics": {"apiKey": "sk-live-123", "token": "t0k3n", "nested": {"password": "p"}},
    }


def test_health_reports_version_and_time(tmp_path: Path) -> None:
    with RouterServer(write_config(tmp_path / "c.json", {"routes": []})) as r, r.client() as client:
        body = client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["version"] == "0.1.0"
    assert body["timestamp"].endswith("Z")


def test_health_unhealthy_without_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"routes": [{"prefix": "nope"}]}')
    with RouterServer(str(path), env={"ADMIN_KEY": "k"}) as r, r.client() as client:
        response = client.get("/health", headers={"X-Admin-Key": "k"})
        proxied = client.get("/api")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert "routes[0].prefix" in response.json()["reason"]
    assert proxied.status_code == 503
    assert proxied.json()["error"] == "Backend Unavailable"


def test_config_route_redacts_secrets(tmp_path: Path) -> None:
    with Backend() as backend:
        source = write_config(tmp_path / "c.json", config_with_secrets(backend.url))
        with RouterServer(source) as r, r.client() as client:
            shown = client.get("/_config/route").json()
            proxied = client.get("/api/x")
    text = json.dumps(shown)
    for secret in ("hunter2", "sk-live-123", "t0k3n", '"p"'):
        assert secret not in text
    assert shown["config"]["metrics"]["apiKey"] == "***"
    assert shown["config"]["backends"]["api-1"]["url"].startswith("http://***@127.0.0.1:")
    assert proxied.status_code == 200


def test_backends_lists_configured_backends(tmp_path: Path) -> None:
    with Backend() as backend:
        source = write_config(tmp_path / "c.json", config_with_secrets(backend.url))
        with RouterServer(source) as r, r.client() as client:
            listed = client.get("/backends").json()["backends"]
    assert [b["id"] for b in listed] == ["api-1"]
    assert listed[0]["name"] == "API one"
    assert listed[0]["health"] == "unknown"
    assert "hunter2" not in listed[0]["url"]


@pytest.mark.parametrize("path", ["/admin/cache-flush", "/admin/anything-else"])
def test_admin_closed_when_no_key_is_configured(tmp_path: Path, path: str) -> None:
    with RouterServer(write_config(tmp_path / "c.json", {"routes": []})) as r, r.client() as client:
        response = client.post(path, headers={"X-Admin-Key": ""})
    assert response.status_code == 403
    assert response.json()["error"] == "Forbidden"


@pytest.mark.parametrize("presented", [None, "wrong", "secret-key-extra", ""])
def test_admin_refuses_missing_or_wrong_key(tmp_path: Path, presented: str | None) -> None:
    source = write_config(tmp_path / "c.json", {"routes": []})
    with RouterServer(source, env={"ADMIN_KEY": "secret-key"}) as r, r.client() as client:
        headers = {} if presented is None else {"X-Admin-Key": presented}
        response = client.post("/admin/cache-flush", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
    assert response.headers["access-control-allow-origin"] == "*"


def test_cache_flush_reads_the_source_again(tmp_path: Path) -> None:
    with Backend() as first, Backend() as second:
        path = tmp_path / "c.json"
        write_config(path, {"routes": [{"prefix": "/api", "target": first.url}]})
        with RouterServer(str(path), env={"ADMIN_KEY": "k"}) as r, r.client() as client:
            assert client.get("/api").headers["x-backend-source"] == first.url
            write_config(path, {"routes": [{"prefix": "/api", "target": second.url}]})
            assert client.get("/api").headers["x-backend-source"] == first.url  # cached (12 h TTL)
            flushed = client.post("/admin/cache-flush", headers={"X-Admin-Key": "k"})
            assert flushed.status_code == 200
            assert flushed.json()["routes"] == 1
            assert client.get("/api").headers["x-backend-source"] == second.url

            path.write_text("{broken")
            refused = client.post("/admin/cache-flush", headers={"X-Admin-Key": "k"})
            assert refused.status_code == 422
            assert "last good config stays in service" in refused.json()["message"]
            assert client.get("/api").headers["x-backend-source"] == second.url


def test_openapi_documents_the_control_plane(tmp_path: Path) -> None:
    with RouterServer(write_config(tmp_path / "c.json", {"routes": []})) as r, r.client() as client:
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert {"/health", "/backends", "/_config/route", "/admin/cache-flush"} <= set(spec["paths"])
    assert docs.status_code == 200


def test_control_paths_take_precedence_and_dot_segments_cannot_dodge_the_gate(tmp_path: Path) -> None:
    with Backend() as backend:
        source = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/", "target": backend.url}]})
        with RouterServer(source, env={"ADMIN_KEY": "k"}) as r, r.client() as client:
            response = client.post("/api/%2e%2e/admin/cache-flush")
    assert response.status_code == 401
    assert backend.seen == []


def test_schema_command_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    from edge_router.cli import main

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "edge-router config"
