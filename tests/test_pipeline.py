"""The data plane's pipeline through the real app, with no sockets: `edge_router.testing.FakeUpstream`
answers for the backends (like httpx's MockTransport) and the test speaks ASGI to `EdgeRouter`.

Guards, candidates, the attempt loop and the one error path run exactly as in production; only the
transport is fake, so each test can say precisely which attempts reached a backend.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_router.app import EdgeRouter
from edge_router.exceptions import UpstreamConnectError, UpstreamTimeout
from edge_router.observability.access_log import AccessLog
from edge_router.settings import Settings
from edge_router.testing import FakeRequest, FakeResponse, FakeUpstream
from support import run, write_config


class Answer:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        self.started = start is not None
        self.status = start["status"] if start else None
        self.headers = {k.decode(): v.decode() for k, v in start["headers"]} if start else {}
        self.body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")

    def json(self) -> Any:
        return json.loads(self.body)


def router_for(tmp_path: Path, document: dict[str, Any], upstream: FakeUpstream, **env: str) -> EdgeRouter:
    source = write_config(tmp_path / "config.json", document)
    router = EdgeRouter(Settings.from_env(env, config_source=source), upstream=upstream)
    router.recorder.access_log = AccessLog(io.StringIO(), enabled=True)
    return router


def logged(router: EdgeRouter) -> list[dict[str, Any]]:
    stream = router.recorder.access_log._stream
    assert isinstance(stream, io.StringIO)
    router.recorder.flush()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def call(
    router: EdgeRouter,
    method: str,
    path: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    body: Sequence[bytes] = (b"",),
    disconnect: bool = False,
) -> Answer:
    """One request as an ASGI server would deliver it: `body` in parts, then `http.disconnect` if asked."""
    parts = [
        {"type": "http.request", "body": part, "more_body": i < len(body) - 1} for i, part in enumerate(body)
    ]
    if disconnect:
        parts[-1]["more_body"] = True
        parts.append({"type": "http.disconnect"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return parts.pop(0) if parts else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "http_version": "1.1",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"router.test"), *((k.lower().encode(), v.encode()) for k, v in headers)],
        "client": ("198.51.100.7", 50000),
        "scheme": "http",
    }
    run(router(scope, receive, send))
    return Answer(sent)


POOL = {"routes": [{"prefix": "/api", "targets": ["http://a.test", "http://b.test"], "strategy": "failover"}]}


def test_failover_moves_on_after_a_connect_error_and_sends_each_attempt_its_own_host(tmp_path: Path) -> None:
    def backends(request: FakeRequest) -> FakeResponse:
        if request.url.startswith("http://a.test"):
            raise UpstreamConnectError("refused")
        return FakeResponse(200, body=b"from b")

    upstream = FakeUpstream(backends)
    router = router_for(tmp_path, POOL, upstream)
    answer = call(router, "GET", "/api/x")
    assert (answer.status, answer.body) == (200, b"from b")
    assert answer.headers["x-backend-source"] == "http://b.test"
    assert [(r.url, r.header("host")) for r in upstream.requests] == [
        ("http://a.test/x", "a.test"),
        ("http://b.test/x", "b.test"),
    ]
    assert all(r.header("x-no-fallback") == "1" for r in upstream.requests)
    assert logged(router)[-1]["UpstreamErrors"] == 1


def test_every_candidate_failing_is_one_502_counting_each_failed_attempt(tmp_path: Path) -> None:
    def backends(request: FakeRequest) -> FakeResponse:
        if request.url.startswith("http://a.test"):
            raise UpstreamTimeout("slow")
        return FakeResponse(503)

    router = router_for(tmp_path, POOL, FakeUpstream(backends))
    answer = call(router, "GET", "/api/x")
    assert answer.status == 502
    assert answer.json()["attempts"] == [
        {"backend": "http://a.test", "error": "timeout"},
        {"backend": "http://b.test", "status": 503},
    ]
    assert answer.headers["access-control-allow-origin"] == "*"
    line = logged(router)[-1]
    assert (line["status"], line["UpstreamErrors"], line["timed_out"]) == (502, 2, True)


def test_the_loop_guard_refuses_before_any_backend_is_contacted(tmp_path: Path) -> None:
    upstream = FakeUpstream(lambda request: FakeResponse(200))
    router = router_for(tmp_path, POOL, upstream)
    via = "1.1 edge-router, 1.1 edge-router, 1.1 edge-router"
    answer = call(router, "GET", "/api/x", headers=[("Via", via)])
    assert answer.status == 508
    assert answer.json()["error"] == "Loop Detected"
    assert upstream.requests == []
    assert logged(router)[-1]["error"] == "proxy loop"


def test_a_client_that_leaves_mid_body_is_a_499_never_counted_against_the_backend(tmp_path: Path) -> None:
    upstream = FakeUpstream(lambda request: FakeResponse(200))
    document = {"routes": [{"prefix": "/api", "target": "http://a.test"}]}
    router = router_for(tmp_path, document, upstream)
    answer = call(router, "POST", "/api/upload", body=[b"part one, ", b"part two"], disconnect=True)
    assert not answer.started  # nobody is left to answer
    line = logged(router)[-1]
    assert (line["status"], line["UpstreamErrors"]) == (499, 0)
    assert "client disconnected" in line["error"]
    assert upstream.requests == []  # the fake transport never got a complete body to record


def test_an_unknown_backend_name_is_a_400_listing_the_valid_ones(tmp_path: Path) -> None:
    document = {
        "backends": {"api-1": {"url": "http://api-1.test"}, "api-2": {"url": "http://api-2.test"}},
        "routes": [{"prefix": "/", "select_by_header": "x-backend", "default": "api-1"}],
    }
    upstream = FakeUpstream(lambda request: FakeResponse(200))
    router = router_for(tmp_path, document, upstream)
    answer = call(router, "GET", "/x", headers=[("x-backend", "nope")])
    assert answer.status == 400
    assert answer.json()["error"] == "Invalid Backend"
    assert answer.json()["valid_backends"] == ["api-1", "api-2"]
    assert upstream.requests == []
    assert call(router, "GET", "/x", headers=[("x-backend", "api-2")]).headers["x-backend-source"] == "api-2"


def test_no_config_is_a_503_without_the_reason_unless_debug_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"routes": [{"prefix": "/api", "target": "ftp://deploy:S3cret@a.test"}]}')
    upstream = FakeUpstream(lambda request: FakeResponse(200))
    quiet = EdgeRouter(Settings.from_env({}, config_source=str(broken)), upstream=upstream)
    answer = call(quiet, "GET", "/api/x")
    assert answer.status == 503
    assert "detail" not in answer.json()
    debug = EdgeRouter(Settings.from_env({"DEBUG_ERRORS": "1"}, config_source=str(broken)), upstream=upstream)
    detail = call(debug, "GET", "/api/x").json()["detail"]
    assert "routes[0].target" in detail and "ftp://***@a.test" in detail and "S3cret" not in detail
    assert upstream.requests == []


def test_the_retry_budget_stops_fallbacks_beyond_its_share(tmp_path: Path) -> None:
    def backends(request: FakeRequest) -> FakeResponse:
        if request.url.startswith("http://a.test"):
            raise UpstreamTimeout("slow")  # it may have done the work: a fallback would do it twice
        return FakeResponse(200, body=b"from b")

    upstream = FakeUpstream(backends)
    document = {**POOL, "retry_budget": {"percent": 20, "min_retries": 0}}
    router = router_for(tmp_path, document, upstream)
    answer = call(router, "GET", "/api/x")
    assert answer.status == 504  # one request in flight: 20 % of it is no retry at all
    assert "retry budget" in answer.json()["message"]
    assert [r.url for r in upstream.requests] == ["http://a.test/x"]
    generous = router_for(tmp_path, POOL, FakeUpstream(backends))  # the default floor: 3 at once
    assert call(generous, "GET", "/api/x").status == 200


def test_a_fallback_after_a_refused_connection_spends_no_retry_budget(tmp_path: Path) -> None:
    def backends(request: FakeRequest) -> FakeResponse:
        if request.url.startswith("http://a.test"):
            raise UpstreamConnectError("refused")  # nothing was delivered
        return FakeResponse(200, body=b"from b")

    upstream = FakeUpstream(backends)
    router = router_for(tmp_path, {**POOL, "retry_budget": {"percent": 20, "min_retries": 0}}, upstream)
    assert call(router, "GET", "/api/x").status == 200
    assert [r.url for r in upstream.requests] == ["http://a.test/x", "http://b.test/x"]
