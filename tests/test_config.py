"""Config schema, substitution and `edge-router validate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_router.cli import main
from edge_router.config.load import load_config
from edge_router.config.schema import config_json_schema
from edge_router.exceptions import ConfigInvalidError


def problems(document: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigInvalidError) as info:
        load_config(document, env or {})
    return info.value.problems


def test_seed_000_config_loads_unchanged() -> None:
    config = load_config(
        {"routes": [{"prefix": "/api/v1/user", "target": "https://backend-1.com"}], "version": "1.0"}, {}
    )
    assert config.routes[0].target.origin == "https://backend-1.com"
    assert config.routes[0].target.source == "https://backend-1.com"


def test_seed_002_feature_blocks_load_and_are_enforced() -> None:
    document = {
        "routes": [
            {
                "prefix": "/api/data",
                "target": "https://your-backend.com/api/data",
                "cache": {"enabled": True, "ttl": 300, "respectCacheControl": True},
                "deduplication": {"enabled": True, "windowMs": 5000},
                "circuitBreaker": {"enabled": True, "failureThreshold": 5, "timeout": 60000},
                "sizeLimits": {"maxBodySize": 10485760, "maxUrlLength": 8192},
            }
        ],
        "metrics": {"enabled": True},
        "rateLimit": {"enabled": True, "requestsPerWindow": 300, "windowSeconds": 300},
    }
    config = load_config(document, {})
    assert config.routes[0].target.base_path == "/api/data"
    assert not any("not enforced" in w for w in config.warnings)
    caching = config.routes[0].caching
    assert caching is not None and caching.rules is not None
    assert (caching.rules.ttl_s, caching.rules.respect_cache_control, caching.coalesce_window_s) == (
        300,
        True,
        5.0,
    )
    # the circuit breaker is enforced now: the seed's block compiles into the route's policy
    assert not any("circuit_breaker" in w for w in config.warnings)
    breaker = config.routes[0].breaker
    assert breaker is not None
    assert (breaker.failure_threshold, breaker.open_timeout_s, breaker.half_open_attempts) == (5, 60.0, 3)


def test_camel_and_snake_case_keys() -> None:
    camel = load_config({"routes": [{"prefix": "/a", "target": "http://x:81", "timeoutMs": 50}]}, {})
    snake = load_config({"routes": [{"prefix": "/a", "target": "http://x:81", "timeout_ms": 50}]}, {})
    assert camel.routes[0].timeout_ms == snake.routes[0].timeout_ms == 50
    assert camel.routes[0].target.host_header == "x:81"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"routes": [{"prefix": "api", "target": "http://x"}]},
            "routes[0].prefix: Value error, must start with '/'",
        ),
        ({"routes": [{"prefix": "/a", "target": "ftp://x"}]}, "routes[0].target: 'ftp://x' is not an http"),
        (
            {"routes": [{"prefix": "/a"}]},
            "routes[0]: Value error, needs 'target', 'targets' or 'select_by_header'",
        ),
        ({"routes": [{"prefix": "/a", "target": "http://x", "timeout_ms": -1}]}, "routes[0].timeout_ms:"),
        ({"routes": [{"prefix": "/a", "target": "http://x", "tagret": 1}]}, "routes[0].tagret: Extra inputs"),
        ({"routes": "nope"}, "routes: Input should be a valid list"),
        ({}, "routes: Field required"),
        ([], "(document): expected a JSON object"),
        ({"routes": [], "backends": {"b": {"url": "x"}}}, "backends.b.url: 'x' is not an http"),
        ({"routes": [{"prefix": "/a", "target": "http://x?q=1"}]}, "must not carry a query"),
    ],
)
def test_invalid_configs_name_the_field(document: object, expected: str) -> None:
    found = problems(document)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {"routes": [{"prefix": "x", "target": "http://x"}, {"prefix": "/b", "target": "gopher://y"}]}
    )
    assert len(found) == 1 and found[0].startswith("routes[0].prefix")  # schema errors first ...
    found = problems(
        {"routes": [{"prefix": "/a", "target": "ftp://x"}, {"prefix": "/b", "target": "gopher://y"}]}
    )
    assert [p.split(":")[0] for p in found] == [
        "routes[0].target",
        "routes[1].target",
    ]  # ... then all targets


def test_env_substitution_and_empty_target_skipped() -> None:
    document = {
        "routes": [
            {"prefix": "/a", "target": "${A_URL}/v1"},
            {"prefix": "/b", "target": "${UNSET_URL}"},
        ]
    }
    config = load_config(document, {"A_URL": "http://127.0.0.1:9000"})
    assert [r.prefix for r in config.routes] == ["/a"]
    assert config.routes[0].target.base_path == "/v1"
    assert any("UNSET_URL" in w for w in config.warnings)


def test_target_may_name_a_backend() -> None:
    config = load_config(
        {
            "backends": {"api-1": {"url": "http://127.0.0.1:9000/base"}},
            "routes": [{"prefix": "/", "target": "api-1"}],
        },
        {},
    )
    assert config.routes[0].target.source == "api-1"
    assert config.routes[0].target.base_path == "/base"


def test_validate_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("routes:\n  - prefix: /api\n    target: http://127.0.0.1:9000\n")
    assert main(["validate", str(good)]) == 0
    assert "valid (1 routes" in capsys.readouterr().out

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"routes": [{"prefix": "api", "target": "nope"}]}))
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "routes[0].prefix" in err

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["validate", str(broken)]) == 1
    assert "not valid JSON" in capsys.readouterr().err

    assert main(["validate", str(tmp_path / "missing.json")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_json_schema_is_published_for_both_formats() -> None:
    schema = config_json_schema()
    formats = [ref["$ref"].rsplit("/", 1)[1] for ref in schema["anyOf"]]
    assert formats == ["RoutesConfigSpec", "PriorityConfigSpec"]
    assert "routes" in schema["$defs"]["RoutesConfigSpec"]["required"]
    assert "providers" in schema["$defs"]["PriorityConfigSpec"]["required"]


def test_cors_credentials_with_any_origin_is_refused_naming_the_field() -> None:
    # Browsers refuse a credentialed answer whose Access-Control-Allow-Origin is "*".
    with pytest.raises(ConfigInvalidError) as refused:
        load_config(
            {"routes": [{"prefix": "/", "target": "http://a"}], "cors": {"allowCredentials": True}}, {}
        )
    assert refused.value.problems[0].startswith("cors: ")
    assert "allow_origin" in refused.value.problems[0]
    allowed = load_config(
        {
            "routes": [{"prefix": "/", "target": "http://a"}],
            "cors": {"allow_origin": "https://app.example", "allow_credentials": True},
        },
        {},
    )
    assert (b"access-control-allow-credentials", b"true") in allowed.cors_headers
