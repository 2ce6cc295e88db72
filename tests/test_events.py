"""The sample events in events/ (what `sam local invoke -e` sends) through the real Lambda handler.

Every events/*.json is run against a real loopback backend routed under `/api`, so a new event file
is covered by the parametrized checks as soon as it is added; the per-event tests then assert what a
user of each request would notice. The last tests tie template.yaml and the layer to the code.
"""

from __future__ import annotations

import base64
import copy
import importlib
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from support import Backend, Reply, Seen, response_body, write_config

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "events"
EVENT_FILES = sorted(EVENTS_DIR.glob("*.json"))
TEMPLATE = ROOT / "template.yaml"
LAYER_REQUIREMENTS = ROOT / "layers" / "edge_router_deps" / "requirements.txt"
ADMIN_KEY = "change-me"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


def is_function_url_event(event: dict[str, Any]) -> bool:
    return event.get("version") == "2.0" and "http" in event.get("requestContext", {})


def echo(seen: Seen) -> Reply:
    """Binary uploads come back as sent (octet-stream); everything else as a JSON echo."""
    if seen.header("content-type") == "application/octet-stream":
        return Reply(headers=[("Content-Type", "application/octet-stream")], body=seen.body)
    payload = {"method": seen.method, "target": seen.target, "body_len": len(seen.body)}
    return Reply(headers=[("Content-Type", "application/json")], body=json.dumps(payload).encode())


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend(echo) as server:
        yield server


@pytest.fixture
def router(tmp_path: Path, backend: Backend, lambda_adapter: Callable[..., Any]) -> Callable[..., Any]:
    """The Lambda handler with `/api` routed to the loopback backend and ADMIN_KEY set."""
    config = write_config(
        tmp_path / "config.json",
        {"version": "1.0", "routes": [{"prefix": "/api", "target": f"{backend.url}/api"}]},
    )
    handler: Callable[..., Any] = lambda_adapter(config, ADMIN_KEY=ADMIN_KEY)
    return handler


# --- every event file --------------------------------------------------------------------------


def test_the_sample_events_exist() -> None:
    names = {path.name for path in EVENT_FILES}
    assert {
        "get-with-query.json",
        "post-json.json",
        "binary-post.json",
        "cookies.json",
        "options-preflight.json",
        "admin-cache-flush.json",
        "scheduled.json",
    } <= names


@pytest.mark.parametrize("path", EVENT_FILES, ids=[path.name for path in EVENT_FILES])
def test_event_file_is_shaped_as_aws_sends_it(path: Path) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    if not is_function_url_event(event):
        assert event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event", (
            f"{path.name} is neither a function URL (payload 2.0) event nor an EventBridge schedule"
        )
        return
    context = event["requestContext"]
    http = context["http"]
    headers = event["headers"]
    assert (
        event["routeKey"] == "$default"
        and context["routeKey"] == "$default"
        and context["stage"] == "$default"
    )
    assert event["rawPath"].startswith(("/api/", "/admin/")), (
        "paths must be servable by a config routing /api"
    )
    assert isinstance(event["rawQueryString"], str)
    assert all(name == name.lower() for name in headers), "function URL header names are lower-case"
    assert "cookie" not in headers, "a function URL sends cookies in the `cookies` array, not a header"
    assert re.fullmatch(r"[a-z0-9]+\.lambda-url\.us-east-1\.on\.aws", headers["host"])
    assert (
        headers["host"] == context["domainName"] == f"{context['domainPrefix']}.lambda-url.us-east-1.on.aws"
    )
    assert headers["x-forwarded-proto"] == "https" and headers["x-forwarded-port"] == "443"
    assert headers["x-forwarded-for"].split(",")[-1].strip() == http["sourceIp"]
    assert headers["x-amzn-trace-id"].startswith("Root=1-")
    assert http["path"] == unquote(event["rawPath"]), "requestContext.http.path is the decoded rawPath"
    assert http["method"] in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
    assert context["requestId"] and isinstance(context["timeEpoch"], int)
    assert isinstance(event["isBase64Encoded"], bool)
    if event["isBase64Encoded"]:
        base64.b64decode(event["body"], validate=True)


@pytest.mark.parametrize("path", EVENT_FILES, ids=[path.name for path in EVENT_FILES])
def test_event_file_is_answered_by_the_handler(path: Path, router: Callable[..., Any]) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    answer = router(event, None)
    if not is_function_url_event(event):
        assert answer["handled"] is True
        return
    assert isinstance(answer["statusCode"], int) and 200 <= answer["statusCode"] < 300, answer
    assert isinstance(answer["isBase64Encoded"], bool)
    headers = answer["headers"]
    assert all(isinstance(v, str) for v in headers.values())
    assert headers["x-request-id"] == event["requestContext"]["requestId"]
    assert headers["access-control-allow-origin"] == "*", "CORS is the router's: every answer carries it"
    json.dumps(answer)  # what Lambda serialises for the function URL


# --- one event at a time -----------------------------------------------------------------------


def test_get_with_query_reaches_the_backend_byte_for_byte(
    router: Callable[..., Any], backend: Backend
) -> None:
    event = load_event("get-with-query.json")
    assert "%2F" in event["rawPath"] and "%2F" in event["rawQueryString"]
    response = router(event, None)
    assert response["statusCode"] == 200
    seen = backend.last
    assert seen.method == "GET"
    # path escapes (%2F stays an escape, never a separator) and the query string, as sent
    assert seen.target == f"{event['rawPath']}?{event['rawQueryString']}"
    assert json.loads(response_body(response))["target"] == seen.target
    assert seen.header("authorization") == event["headers"]["authorization"]
    assert seen.header("x-forwarded-for") == event["requestContext"]["http"]["sourceIp"]
    assert seen.header("x-forwarded-host") == event["headers"]["host"]
    assert seen.header("host") == f"127.0.0.1:{backend.port}"
    assert response["headers"]["x-backend-source"] == backend.url


def test_post_json_body_arrives_intact(router: Callable[..., Any], backend: Backend) -> None:
    event = load_event("post-json.json")
    response = router(event, None)
    assert response["statusCode"] == 200
    seen = backend.last
    assert (seen.method, seen.target) == ("POST", "/api/orders")
    assert seen.body == event["body"].encode("utf-8")
    assert json.loads(seen.body) == json.loads(event["body"])
    assert seen.header("content-type") == "application/json"
    assert seen.header("idempotency-key") == event["headers"]["idempotency-key"]
    assert response["isBase64Encoded"] is False
    assert json.loads(response["body"])["body_len"] == len(event["body"].encode("utf-8"))


def test_binary_post_is_byte_exact_both_ways(router: Callable[..., Any], backend: Backend) -> None:
    event = load_event("binary-post.json")
    payload = base64.b64decode(event["body"])
    with pytest.raises(UnicodeDecodeError):
        payload.decode("utf-8")
    response = router(event, None)
    assert response["statusCode"] == 200
    assert backend.last.body == payload
    assert backend.last.header("content-type") == "application/octet-stream"
    assert response["isBase64Encoded"] is True
    assert response_body(response) == payload
    assert response["headers"]["content-type"] == "application/octet-stream"


def test_cookies_reach_the_backend_as_one_cookie_header(router: Callable[..., Any], backend: Backend) -> None:
    event = load_event("cookies.json")
    assert len(event["cookies"]) > 1
    response = router(event, None)
    assert response["statusCode"] == 200
    cookie_headers = [value for name, value in backend.last.headers if name.lower() == "cookie"]
    assert cookie_headers == ["; ".join(event["cookies"])]


def test_options_preflight_is_answered_by_the_router(router: Callable[..., Any], backend: Backend) -> None:
    event = load_event("options-preflight.json")
    response = router(event, None)
    assert response["statusCode"] == 204
    headers = response["headers"]
    assert headers["access-control-allow-origin"] == "*"
    methods = {m.strip() for m in headers["access-control-allow-methods"].split(",")}
    assert event["headers"]["access-control-request-method"] in methods
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert {
        h.strip().lower() for h in event["headers"]["access-control-request-headers"].split(",")
    } <= allowed
    assert "access-control-max-age" in headers
    assert not response.get("body")
    assert backend.seen == [], "a preflight never reaches the backend"


def test_admin_cache_flush_with_the_right_key(router: Callable[..., Any], backend: Backend) -> None:
    event = load_event("admin-cache-flush.json")
    assert event["headers"]["x-admin-key"] == ADMIN_KEY
    response = router(event, None)
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert body["flushed"] is True and body["routes"] == 1
    assert body["source"].endswith("config.json")
    assert backend.seen == []


def test_admin_cache_flush_refuses_a_wrong_key_and_a_router_without_one(
    tmp_path: Path, router: Callable[..., Any], lambda_adapter: Callable[..., Any]
) -> None:
    wrong = copy.deepcopy(load_event("admin-cache-flush.json"))
    wrong["headers"]["x-admin-key"] = "guess"
    response = router(wrong, None)
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"] == "Unauthorized"

    config = write_config(
        tmp_path / "closed.json", {"routes": [{"prefix": "/api", "target": "http://127.0.0.1:9"}]}
    )
    closed = lambda_adapter(config)  # no ADMIN_KEY: admin endpoints are closed, never open
    response = closed(load_event("admin-cache-flush.json"), None)
    assert response["statusCode"] == 403


def test_scheduled_event_is_handled_and_http_still_works(
    router: Callable[..., Any], backend: Backend
) -> None:
    answer = router(load_event("scheduled.json"), None)
    assert answer["handled"] is True
    assert answer["config_loaded"] is True and answer["error"] is None
    assert backend.seen == []
    response = router(load_event("get-with-query.json"), None)
    assert response["statusCode"] == 200


# --- template.yaml and the layer ---------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: short-form tags (!Ref, !Sub, ...) become {"Ref"/"Fn::X": value}."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)
    return document


def _requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_template_handler_resolves_to_a_callable(template: dict[str, Any]) -> None:
    function = template["Resources"]["EdgeRouterFunction"]["Properties"]
    module_name, _, attribute = function["Handler"].rpartition(".")
    assert module_name and attribute
    assert (ROOT / function["CodeUri"] / Path(*module_name.split("."))).with_suffix(".py").is_file()
    handler = getattr(importlib.import_module(module_name), attribute)
    assert callable(handler)


def test_template_wiring_matches_the_code(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    function = resources["EdgeRouterFunction"]["Properties"]
    layer = resources["EdgeRouterDepsLayer"]
    assert function["Runtime"] == layer["Metadata"]["BuildMethod"] == "python3.12"
    assert function["Runtime"] in layer["Properties"]["CompatibleRuntimes"]
    assert set(function["Architectures"]) <= set(layer["Properties"]["CompatibleArchitectures"])
    assert (ROOT / layer["Properties"]["ContentUri"] / "requirements.txt").is_file()
    assert "Cors" not in function["FunctionUrlConfig"], "CORS is the router's, not the function URL's"
    assert function["FunctionUrlConfig"]["InvokeMode"] == "BUFFERED"
    env = function["Environment"]["Variables"]
    assert env["EDGE_ROUTER_CONFIG"] == {"Fn::Sub": "ssm:${EdgeRouterConfigParameter}"}
    # the upstream timeout must leave the router time to answer 504 before Lambda's timeout
    timeout_ms = template["Parameters"]["RequestTimeoutMs"]
    assert max(timeout_ms["Default"], timeout_ms["MaxValue"]) < function["Timeout"] * 1000


def test_template_default_config_is_valid(template: dict[str, Any]) -> None:
    from edge_router.config.load import load_config

    parameter = template["Resources"]["EdgeRouterConfigParameter"]["Properties"]
    assert parameter["Type"] == "String"
    assert parameter["Value"] == {"Ref": "InitialConfig"}
    document = json.loads(template["Parameters"]["InitialConfig"]["Default"])
    config = load_config(document, {})
    assert [route.prefix for route in config.routes] == ["/api"]
    assert template["Parameters"]["ConfigParameterName"]["Default"].startswith("/")


def test_layer_requirements_name_the_runtime_dependencies() -> None:
    names = _requirement_names(LAYER_REQUIREMENTS.read_text(encoding="utf-8").splitlines())
    assert {"mangum", "aiohttp", "pydantic", "aws-lambda-powertools", "pyyaml", "fastapi", "boto3"} <= names
    assert "uvicorn" not in names, "uvicorn serves `edge-router serve` only"
    # nothing the package needs at run time may be missing from the layer
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert _requirement_names(project["dependencies"]) <= names


def test_the_handler_imports_without_uvicorn() -> None:
    """The layer has no uvicorn: the Lambda entry point must not need it."""
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "import edge_router.aws_lambda as m\n"
        "assert callable(m.handler)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
