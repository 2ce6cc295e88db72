"""Control plane hardening (issue 6, item 10): no secret in /health, no redirect built from the client's Host.

A config error can quote its source: a YAML parse error prints the offending line (`password: S3cret`),
a validation error prints the value it refused (`ftp://deploy:S3cret@...`). Anonymous callers of /health
and /_config/route get only the kind of failure; callers with the admin key get the detail, redacted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import Backend, RouterServer, write_config

ADMIN = {"X-Admin-Key": "k"}
BAD_YAML = "routes:\n  - prefix: /api\n    target: http://127.0.0.1:9\ndb:\n  password: S3cret: oops\n"
URL_WITH_CREDENTIALS = "ftp://deploy:S3cret@files.example/drop"


def yaml_config_that_does_not_parse(tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(BAD_YAML)
    return str(path)


def config_refused_with_credentials_in_the_message(tmp_path: Path) -> str:
    return write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": URL_WITH_CREDENTIALS}]})


def test_anonymous_health_names_only_the_kind_of_yaml_failure(tmp_path: Path) -> None:
    source = yaml_config_that_does_not_parse(tmp_path)
    with RouterServer(source, env={"ADMIN_KEY": "k"}) as r, r.client() as client:
        anonymous = client.get("/health")
        wrong_key = client.get("/health", headers={"X-Admin-Key": "nope"})
    for response in (anonymous, wrong_key):
        assert response.status_code == 503
        assert "S3cret" not in response.text
        assert "password" not in response.text
        body = response.json()
        assert body["reason"] == "the config is not valid (1 problem)"
        assert body["config"]["last_error"] == "the config is not valid (1 problem)"


def test_admin_health_shows_the_yaml_error_with_the_password_redacted(tmp_path: Path) -> None:
    source = yaml_config_that_does_not_parse(tmp_path)
    with RouterServer(source, env={"ADMIN_KEY": "k"}) as r, r.client() as client:
        response = client.get("/health", headers=ADMIN)
    assert response.status_code == 503
    assert "S3cret" not in response.text
    reason = response.json()["reason"]
    assert "not valid YAML" in reason
    assert "password: ***" in reason
    assert response.json()["config"]["last_error"] == reason


def test_url_credentials_in_an_error_never_reach_health(tmp_path: Path) -> None:
    source = config_refused_with_credentials_in_the_message(tmp_path)
    with RouterServer(source, env={"ADMIN_KEY": "k"}) as r, r.client() as client:
        anonymous = client.get("/health")
        admin = client.get("/health", headers=ADMIN)
    assert "S3cret" not in anonymous.text
    assert "deploy" not in anonymous.text
    assert anonymous.json()["reason"] == "the config is not valid (1 problem)"
    assert "S3cret" not in admin.text
    assert "deploy" not in admin.text
    assert "ftp://***@files.example/drop" in admin.json()["reason"]
    assert "routes[0].target" in admin.json()["reason"]


def test_a_source_that_cannot_be_read_is_named_as_such(tmp_path: Path) -> None:
    with RouterServer(str(tmp_path / "missing.json")) as r, r.client() as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["reason"] == "the config source could not be read"
    assert "missing.json" not in response.json()["reason"]


def test_healthy_router_with_a_refused_update_hides_its_detail_from_anonymous_callers(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_config(path, {"routes": []})
    with RouterServer(str(path), env={"ADMIN_KEY": "k"}) as r, r.client() as client:
        write_config(path, {"routes": [{"prefix": "/api", "target": URL_WITH_CREDENTIALS}]})
        assert client.post("/admin/cache-flush", headers=ADMIN).status_code == 422
        anonymous = client.get("/health")
        admin = client.get("/health", headers=ADMIN)
    assert anonymous.status_code == 200
    assert anonymous.json()["config"]["last_error"] == "the config is not valid (1 problem)"
    assert "S3cret" not in anonymous.text
    assert admin.status_code == 200
    assert "ftp://***@files.example/drop" in admin.json()["config"]["last_error"]
    assert "S3cret" not in admin.text


def test_config_route_without_a_config_hides_the_error_from_anonymous_callers(tmp_path: Path) -> None:
    source = yaml_config_that_does_not_parse(tmp_path)
    with RouterServer(source, env={"ADMIN_KEY": "k"}) as r, r.client() as client:
        anonymous = client.get("/_config/route")
        admin = client.get("/_config/route", headers=ADMIN)
    assert anonymous.status_code == 503
    assert anonymous.json()["message"] == "the config is not valid (1 problem)"
    assert "S3cret" not in anonymous.text
    assert admin.status_code == 503
    assert "password: ***" in admin.json()["message"]
    assert "S3cret" not in admin.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_config/route/"),
        ("GET", "/admin/explain/"),
        ("POST", "/admin/cache-flush/"),
        ("GET", "/docs/"),
    ],
)
def test_trailing_slash_on_a_control_path_is_a_json_404_never_a_redirect_to_the_clients_host(
    tmp_path: Path, method: str, path: str
) -> None:
    with Backend() as backend:
        source = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        with RouterServer(source, env={"ADMIN_KEY": "k"}) as r, r.client() as client:
            response = client.request(method, path, headers={"Host": "evil.example", **ADMIN})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil.example" not in response.text
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == "Not Found"
    assert body["request_id"] == response.headers["x-request-id"]
    assert backend.seen == []


def test_admin_detail_redaction_covers_key_value_fragments_and_json_pairs() -> None:
    from edge_router.observability.redact import redact_text

    text = (
        'line 5: password: S3cret: oops; token=abc123; {"apiKey": "sk-live-1"}; '
        "see https://u:p4ss@h.example:8443/x and ftp://deploy:S3cret@files.example/drop; prefix: /api"
    )
    shown = redact_text(text)
    for secret in ("S3cret", "abc123", "sk-live-1", "p4ss", "deploy"):
        assert secret not in shown
    assert "password: ***" in shown
    assert "token=***" in shown
    assert '"apiKey": "***"' in shown
    assert "https://***@h.example:8443/x" in shown
    assert "prefix: /api" in shown
