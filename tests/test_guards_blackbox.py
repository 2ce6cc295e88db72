"""The guards of CONTRACT section 8, black-box: the router under `edge-router serve`, real loopback backends,
clients that bind 127.0.0.2 / 127.0.0.3 (or ::1) as their source address.

Every refusal is checked twice: what the client gets, and that the backend never saw the request.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_router.config.load import load_config
from edge_router.exceptions import ConfigInvalidError
from support import Backend, Reply, RouterServer, write_config

ADMIN = "admin-secret-for-tests"


def serve(tmp_path: Path, document: dict[str, Any], *, host: str = "127.0.0.1", **env: str) -> RouterServer:
    return RouterServer(write_config(tmp_path / "config.json", document), env=env, host=host)


def client_from(router: RouterServer, address: str, **kwargs: Any) -> httpx.Client:
    """A client whose requests come from `address` (a loopback address of this machine)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=router.url, transport=transport, timeout=30, **kwargs)


# --- rate limits -------------------------------------------------------------------------------


def test_a_rate_limit_admits_exactly_its_count_per_client_address(tmp_path: Path) -> None:
    limit = {"enabled": True, "requestsPerWindow": 100, "windowSeconds": 3600}
    with Backend() as backend:
        document = {"routes": [{"prefix": "/api", "target": backend.url, "rateLimit": limit}]}
        with (
            serve(tmp_path, document) as router,
            client_from(router, "127.0.0.2") as two,
            client_from(router, "127.0.0.3") as three,
        ):
            answers: dict[str, list[httpx.Response]] = {"two": [], "three": []}
            for _ in range(500):
                answers["two"].append(two.get("/api/x"))
                answers["three"].append(three.get("/api/x"))
    for responses in answers.values():
        statuses = [response.status_code for response in responses]
        assert statuses == [200] * 100 + [429] * 400  # a bucket of 100, refilled 1 per 36 s
        first, last_allowed, refused = responses[0], responses[99], responses[100]
        assert first.headers["ratelimit-limit"] == "100"
        assert first.headers["ratelimit-remaining"] == "99"
        assert last_allowed.headers["ratelimit-remaining"] == "0"
        assert refused.json()["error"] == "Too Many Requests"
        assert 1 <= int(refused.headers["retry-after"]) <= 36
        assert refused.headers["ratelimit-remaining"] == "0"
    assert len(backend.seen) == 200, "a refused request never reaches the backend"


def test_an_api_key_has_its_own_bucket_and_a_401_spends_no_token(tmp_path: Path) -> None:
    key = "erk_test-key-one"
    config_key = {"id": "one", "hash": hashlib.sha256(key.encode()).hexdigest(), "rate_limit_multiplier": 2}
    with Backend() as backend:
        route = {
            "prefix": "/api",
            "target": backend.url,
            "api_keys": {"required": True, "keys": [config_key]},
            "rateLimit": {"requestsPerWindow": 2, "windowSeconds": 3600},
        }
        with serve(tmp_path, {"routes": [route]}) as router, router.client() as client:
            for _ in range(5):
                missing = client.get("/api/x")
                assert missing.status_code == 401
                assert missing.json()["error"] == "Unauthorized"
                assert client.get("/api/x", headers={"x-api-key": "wrong"}).status_code == 401
            statuses = [client.get("/api/x", headers={"x-api-key": key}).status_code for _ in range(6)]
    assert statuses == [200] * 4 + [429] * 2  # 2 per window, times the key's multiplier 2
    assert len(backend.seen) == 4
    assert all(seen.header("x-api-key") is None for seen in backend.seen), "the key is not forwarded"


# --- IP rules ----------------------------------------------------------------------------------


def test_ip_rules_allow_and_deny_by_source_address_and_ignore_spoofed_headers(tmp_path: Path) -> None:
    with Backend() as backend:
        routes = [
            {"prefix": "/only-two", "target": backend.url, "ip_rules": {"allow": ["127.0.0.2/32"]}},
            {"prefix": "/not-three", "target": backend.url, "ip_rules": {"deny": ["127.0.0.3"]}},
        ]
        spoofed = {"x-forwarded-for": "127.0.0.2", "x-real-ip": "127.0.0.2", "forwarded": "for=127.0.0.2"}
        with (
            serve(tmp_path, {"routes": routes}) as router,
            client_from(router, "127.0.0.2") as two,
            client_from(router, "127.0.0.3") as three,
        ):
            assert two.get("/only-two/a").status_code == 200
            refused = three.get("/only-two/a", headers=spoofed)
            assert refused.status_code == 403
            assert refused.json()["error"] == "Forbidden"
            assert three.get("/not-three/a", headers=spoofed).status_code == 403
            assert two.get("/not-three/a").status_code == 200
    assert [seen.target for seen in backend.seen] == ["/a", "/a"]


def test_trusted_proxies_let_the_right_most_untrusted_forwarded_for_entry_count(tmp_path: Path) -> None:
    with Backend() as backend:
        document = {
            "trusted_proxies": ["127.0.0.3/32", "10.0.0.0/8"],
            "routes": [{"prefix": "/", "target": backend.url, "ip_rules": {"allow": ["192.0.2.7/32"]}}],
        }
        with serve(tmp_path, document) as router, client_from(router, "127.0.0.3") as proxy:
            # a client's own spoofed entry comes first; the proxies appended the real one and themselves
            chain = {"x-forwarded-for": "198.51.100.1, 192.0.2.7, 10.1.2.3"}
            assert proxy.get("/x", headers=chain).status_code == 200
            assert proxy.get("/x", headers={"x-forwarded-for": "192.0.2.7, 198.51.100.1"}).status_code == 403
            with client_from(router, "127.0.0.2") as direct:  # not a trusted proxy: its header never counts
                assert direct.get("/x", headers={"x-forwarded-for": "192.0.2.7"}).status_code == 403
    assert len(backend.seen) == 1


def test_ipv6_clients_are_matched_by_ipv6_cidrs(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with Backend() as backend:
        routes = [
            {"prefix": "/v6-in", "target": backend.url, "ip_rules": {"allow": ["::1/128"]}},
            {"prefix": "/v6-out", "target": backend.url, "ip_rules": {"deny": ["::/64"]}},
            {"prefix": "/v4-only", "target": backend.url, "ip_rules": {"allow": ["127.0.0.0/8"]}},
        ]
        with serve(tmp_path, {"routes": routes}, host="::1") as router, client_from(router, "::1") as client:
            assert client.get("/v6-in/x").status_code == 200
            assert client.get("/v6-out/x").status_code == 403
            assert client.get("/v4-only/x").status_code == 403
    assert len(backend.seen) == 1


# --- size limits -------------------------------------------------------------------------------


def _chunked_upload(url: str, path: str, chunks: list[bytes]) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: r\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        sock.sendall(head.encode())
        answer = b""
        try:
            for chunk in chunks:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the router answered and closed while the upload was still coming: expected
        while data := sock.recv(65536):
            answer += data
    return answer


def test_a_chunked_upload_over_the_limit_is_cut_and_never_reaches_the_backend_whole(tmp_path: Path) -> None:
    with Backend() as backend:
        route = {"prefix": "/up", "target": backend.url, "sizeLimits": {"maxBodySize": 4000}}
        with serve(tmp_path, {"routes": [route]}) as router:
            small = _chunked_upload(router.url, "/up/a", [b"x" * 1000] * 4)
            large = _chunked_upload(router.url, "/up/b", [b"y" * 1000] * 40)
    assert small.startswith(b"HTTP/1.1 200")
    assert large.startswith(b"HTTP/1.1 413")
    body = json.loads(large.split(b"\r\n\r\n", 1)[1])
    assert body["error"] == "Payload Too Large"
    assert [(seen.target, len(seen.body)) for seen in backend.seen] == [("/a", 4000)]


def test_url_header_and_declared_body_limits_answer_414_431_413_without_a_backend(tmp_path: Path) -> None:
    limits = {"maxBodySize": 100, "maxUrlLength": 64, "maxHeaderSize": 2048, "maxHeaderCount": 30}
    with Backend() as backend:
        route = {"prefix": "/s", "target": backend.url, "sizeLimits": limits}
        with serve(tmp_path, {"routes": [route]}) as router, router.client() as client:
            assert client.get("/s/" + "a" * 40).status_code == 200
            assert client.get("/s/" + "a" * 80).status_code == 414
            assert client.get("/s/x", headers={"x-big": "v" * 3000}).status_code == 431
            many = {f"x-h{i}": "1" for i in range(40)}
            assert client.get("/s/x", headers=many).status_code == 431
            too_large = client.post("/s/x", content=b"z" * 101)
            assert too_large.status_code == 413
            assert too_large.json()["error"] == "Payload Too Large"
            assert client.post("/s/x", content=b"z" * 100).status_code == 200
    assert len(backend.seen) == 2


# --- API keys through the admin API ------------------------------------------------------------


def test_an_api_key_lives_through_the_admin_api(tmp_path: Path) -> None:
    admin = {"x-admin-key": ADMIN}
    with Backend() as backend:
        route = {"prefix": "/api", "target": backend.url, "api_keys": {"required": True}}
        with serve(tmp_path, {"routes": [route]}, ADMIN_KEY=ADMIN) as router, router.client() as client:
            assert client.get("/api/x").status_code == 401
            assert client.post("/admin/api-keys", json={"name": "ci"}).status_code == 401
            created = client.post("/admin/api-keys", json={"name": "ci"}, headers=admin)
            assert created.status_code == 201
            key, key_id = created.json()["key"], created.json()["id"]
            assert client.get("/api/x", headers={"x-api-key": key}).status_code == 200
            listed = client.get("/admin/api-keys", headers=admin).json()["keys"]
            assert [(k["id"], k["name"]) for k in listed] == [(key_id, "ci")]
            assert key not in json.dumps(listed)
            assert hashlib.sha256(key.encode()).hexdigest() not in json.dumps(listed)
            assert client.delete(f"/admin/api-keys/{key_id}", headers=admin).status_code == 204
            assert client.get("/api/x", headers={"x-api-key": key}).status_code == 401
            assert client.delete(f"/admin/api-keys/{key_id}", headers=admin).status_code == 404
    assert len(backend.seen) == 1


# --- seed 002's configs --------------------------------------------------------------------------


def test_seed_002s_inline_config_is_enforced(tmp_path: Path) -> None:
    with Backend() as backend:
        document = {
            "routes": [
                {
                    "prefix": "/api/data",
                    "target": backend.url + "/api/data",
                    "cache": {"enabled": True, "ttl": 300, "respectCacheControl": True},
                    "deduplication": {"enabled": True, "windowMs": 5000},
                    "circuitBreaker": {"enabled": True, "failureThreshold": 5, "timeout": 60000},
                    "sizeLimits": {"maxBodySize": 10485760, "maxUrlLength": 8192},
                }
            ],
            "metrics": {"enabled": True},
            "rateLimit": {"enabled": True, "requestsPerWindow": 3, "windowSeconds": 300},
        }
        config = load_config(document, {})
        assert config.warnings == ()  # every block of the seed is enforced now (cache: issue 13)
        with serve(tmp_path, document) as router, router.client() as client:
            assert client.get("/api/data/" + "a" * 9000).status_code == 414
            ok = client.get("/api/data/1")
            assert ok.status_code == 200
            assert ok.headers["ratelimit-limit"] == "3"
            statuses = [client.get("/api/data/1").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert len(backend.seen) == 1  # the seed's cache answered the repeats (the limit runs before it)


def test_seed_002s_profile_form_is_enforced(tmp_path: Path) -> None:
    with Backend() as backend:
        document = {
            "features": {
                "sizeLimits": {"default": {"maxUrlLength": 100}, "profiles": {"small": {"maxBodySize": 10}}},
                "rateLimit": {"profiles": {"strict": {"enabled": True, "requestsPerWindow": 2}}},
            },
            "routes": [
                {"prefix": "/strict", "target": backend.url, "sizeLimits": "small", "rateLimit": "strict"},
                {"prefix": "/open", "target": backend.url},
            ],
        }
        with serve(tmp_path, document) as router, router.client() as client:
            assert client.post("/strict/x", content=b"z" * 11).status_code == 413
            assert [client.get("/strict/x").status_code for _ in range(3)] == [200, 200, 429]
            assert client.get("/open/" + "a" * 120).status_code == 414  # the default profile
            assert [client.get("/open/x").status_code for _ in range(5)] == [200] * 5
    assert len(backend.seen) == 7


@pytest.mark.parametrize(
    ("block", "named"),
    [
        ({"auth": {"type": "jwt", "issuer": "https://issuer"}}, "routes[0].auth"),
        ({"auth": {"type": "forward_auth", "url": "http://auth"}}, "routes[0].auth"),
        ({"ip_rules": {"allow": ["10.0.0.300/8"]}}, "routes[0].ip_rules"),
        ({"allowedOrigins": ["https://*"]}, "routes[0].allowed_origins"),
        ({"sizeLimits": "missing"}, "routes[0].size_limits"),
        ({"rateLimit": {"requestsPerWindow": 0}}, "routes[0].rateLimit"),
    ],
)
def test_a_guard_block_the_router_cannot_enforce_refuses_the_config(
    block: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigInvalidError) as refused:
        load_config({"routes": [{"prefix": "/", "target": "http://a", **block}]}, {})
    assert any(problem.startswith(named) for problem in refused.value.problems), refused.value.problems


# --- origins, CORS and redirects as the backend meant them ---------------------------------------


def test_an_origin_list_refuses_look_alikes_and_names_the_allowed_origin(tmp_path: Path) -> None:
    with Backend() as backend:
        route = {"prefix": "/api", "target": backend.url, "allowedOrigins": ["https://*.example.com"]}
        with serve(tmp_path, {"routes": [route]}) as router, router.client() as client:
            allowed = client.get("/api/x", headers={"origin": "https://app.example.com"})
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
            assert "origin" in allowed.headers["vary"].lower()
            for origin in ("https://evil-example.com", "https://example.com.evil.io", "null"):
                refused = client.get("/api/x", headers={"origin": origin})
                assert refused.status_code == 403, origin
                assert refused.headers.get("access-control-allow-origin") is None
            assert client.get("/api/x").status_code == 200  # no Origin: not a browser's CORS request
    assert len(backend.seen) == 2


def _credentialed_cors(seen: Any) -> Reply:
    if seen.method == "OPTIONS":
        headers = [
            ("Access-Control-Allow-Origin", "https://app.example"),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Allow-Methods", "PUT"),
            ("Access-Control-Allow-Headers", "X-Custom"),
        ]
        return Reply(status=204, headers=headers, body=b"")
    headers = [
        ("Content-Type", "application/json"),
        ("Access-Control-Allow-Origin", "https://app.example"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin"),
    ]
    return Reply(headers=headers)


def _cors_of(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-") or k == "vary"}


def test_a_credentialed_cors_backend_behaves_behind_the_router_as_it_does_direct(tmp_path: Path) -> None:
    origin = {"origin": "https://app.example"}
    preflight = {
        **origin,
        "access-control-request-method": "PUT",
        "access-control-request-headers": "X-Custom",
    }
    with Backend(_credentialed_cors) as backend:
        with httpx.Client(base_url=backend.url) as direct:
            direct_get, direct_preflight = (
                direct.get("/x", headers=origin),
                direct.options("/x", headers=preflight),
            )
        default = {"routes": [{"prefix": "/", "target": backend.url}]}
        with serve(tmp_path, default) as router, router.client() as client:
            assert _cors_of(client.get("/x", headers=origin)) == _cors_of(direct_get)
        left_to_backend = {"cors": "backend", "routes": [{"prefix": "/", "target": backend.url}]}
        with serve(tmp_path, left_to_backend) as router, router.client() as client:
            via_router = client.options("/x", headers=preflight)
            assert via_router.status_code == direct_preflight.status_code == 204
            assert _cors_of(via_router) == _cors_of(direct_preflight)
            assert _cors_of(client.get("/x", headers=origin)) == _cors_of(direct_get)
    assert [seen.method for seen in backend.seen] == ["GET", "OPTIONS", "GET", "OPTIONS", "GET"]


def test_the_routers_cors_overrides_a_backends_only_when_told(tmp_path: Path) -> None:
    with Backend(_credentialed_cors) as backend:
        document = {
            "cors": {"allow_origin": "https://router.example", "override": True},
            "routes": [{"prefix": "/", "target": backend.url}],
        }
        with serve(tmp_path, document) as router, router.client() as client:
            answer = client.get("/x", headers={"origin": "https://app.example"})
    assert answer.headers["access-control-allow-origin"] == "https://router.example"
    assert "access-control-allow-credentials" not in answer.headers


def test_an_absolute_redirect_to_the_backend_is_rewritten_under_the_routes_prefix(tmp_path: Path) -> None:
    def redirecting(seen: Any) -> Reply:
        own = f"http://127.0.0.1:{backend.port}"
        location = {"/base/old": f"{own}/base/get?a=1", "/base/away": "https://elsewhere.example/get"}
        return Reply(status=302, headers=[("Location", location.get(seen.target, "/relative"))], body=b"")

    with Backend(redirecting) as backend:
        route = {"prefix": "/api", "target": backend.url + "/base"}
        with serve(tmp_path, {"routes": [route]}) as router, router.client() as client:
            assert client.get("/api/old").headers["location"] == "/api/get?a=1"
            assert client.get("/api/away").headers["location"] == "https://elsewhere.example/get"
            assert client.get("/api/other").headers["location"] == "/relative"


def test_a_top_level_rate_limit_may_name_a_profile_and_an_unknown_name_is_refused() -> None:
    profiles = {"rateLimit": {"profiles": {"strict": {"requestsPerWindow": 2}}}}
    routes = [{"prefix": "/", "target": "http://a"}]
    config = load_config({"features": profiles, "rateLimit": "strict", "routes": routes}, {})
    assert [type(guard).__name__ for guard in config.routes[0].guards][-1] == "RateLimitGuard"
    with pytest.raises(ConfigInvalidError) as refused:
        load_config({"features": profiles, "rateLimit": "lenient", "routes": routes}, {})
    assert refused.value.problems == [
        "rate_limit: no profile 'lenient' in features.rateLimit.profiles (known: strict)"
    ]
