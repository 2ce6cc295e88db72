"""The API-key admin endpoints (CONTRACT section 8): `POST`/`GET /admin/api-keys`, `DELETE
/admin/api-keys/{id}`, and a created key's whole life: accepted on a key-protected route, never
forwarded to the backend, refused once deleted, on one instance and across two sharing a table.

The endpoints' answers in every case are checked on the control app itself (a small host with the
store under test); the lifecycles run through the real router on loopback sockets.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_router.control.app import create_control_app
from edge_router.exceptions import StateStoreError
from edge_router.guards import key_store
from edge_router.guards.admin import AdminKey
from edge_router.guards.api_keys import hash_key
from edge_router.guards.key_store import DynamoDBKeyStore, LocalKeyStore
from edge_router.guards.services import GuardServices, StoredKey
from support import Backend, RouterServer, dynamodb_table, run, wait_until, write_config

ADMIN = {"X-Admin-Key": "admin-secret"}
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class FailingStore:
    """A key store on a state table that cannot be reached."""

    async def find(self, key_hash: str) -> StoredKey | None:
        raise StateStoreError("DynamoDB table 'state': unreachable")

    async def create(self, name: str, rate_limit_multiplier: float = 1.0) -> tuple[StoredKey, str]:
        raise StateStoreError("DynamoDB table 'state': unreachable")

    async def list(self) -> list[StoredKey]:
        raise StateStoreError("DynamoDB table 'state': unreachable")

    async def delete(self, key_id: str) -> bool:
        raise StateStoreError("DynamoDB table 'state': unreachable")


class Host:
    """What the API-key endpoints need of the router: its admin key and its services."""

    def __init__(self, keys: Any) -> None:
        self.admin_key = AdminKey("admin-secret")
        self.services = GuardServices(keys=keys, buckets=object())  # type: ignore[arg-type]


def call(keys: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_control_app(Host(keys)))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
            return await client.request(method, path, **kwargs)

    return run(send())


# --- the endpoints ------------------------------------------------------------------------------


def test_create_shows_the_key_once_and_stores_only_its_hash() -> None:
    store = LocalKeyStore()
    created = call(
        store, "POST", "/admin/api-keys", json={"name": "ci", "rate_limit_multiplier": 2}, headers=ADMIN
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "key", "name", "created_at", "rate_limit_multiplier"}
    assert re.fullmatch(r"[0-9a-f]{16}", body["id"])
    assert body["key"].startswith("erk_") and len(body["key"]) >= 40
    assert body["name"] == "ci" and body["rate_limit_multiplier"] == 2.0
    assert ISO.fullmatch(body["created_at"])
    assert created.headers["cache-control"] == "no-store"
    stored = run(store.find(hash_key(body["key"])))
    assert stored is not None and stored.id == body["id"]

    listed = call(store, "GET", "/admin/api-keys", headers=ADMIN)
    assert listed.status_code == 200
    assert listed.json() == {
        "keys": [
            {"id": body["id"], "name": "ci", "created_at": body["created_at"], "rate_limit_multiplier": 2.0}
        ]
    }
    assert body["key"] not in listed.text and stored.hash not in listed.text


def test_the_multiplier_defaults_to_one_and_keys_are_listed_oldest_first() -> None:
    store = LocalKeyStore()
    first = call(store, "POST", "/admin/api-keys", json={"name": "first"}, headers=ADMIN).json()
    second = call(store, "POST", "/admin/api-keys", json={"name": "second"}, headers=ADMIN).json()
    assert first["rate_limit_multiplier"] == 1.0
    listed = call(store, "GET", "/admin/api-keys", headers=ADMIN).json()["keys"]
    assert [key["id"] for key in listed] == [first["id"], second["id"]]


def test_delete_is_204_then_404() -> None:
    store = LocalKeyStore()
    created = call(store, "POST", "/admin/api-keys", json={"name": "ci"}, headers=ADMIN).json()
    deleted = call(store, "DELETE", f"/admin/api-keys/{created['id']}", headers=ADMIN)
    assert deleted.status_code == 204 and deleted.content == b""
    assert run(store.find(hash_key(created["key"]))) is None
    again = call(store, "DELETE", f"/admin/api-keys/{created['id']}", headers=ADMIN)
    assert again.status_code == 404
    assert again.json()["error"] == "Not Found" and created["id"] in again.json()["message"]
    assert call(store, "GET", "/admin/api-keys", headers=ADMIN).json() == {"keys": []}


@pytest.mark.parametrize("key_id", ["nope", "0123456789ABCDEF", "0" * 17, "%2e%2e"])
def test_delete_of_an_id_no_key_can_have_is_404(key_id: str) -> None:
    answer = call(LocalKeyStore(), "DELETE", f"/admin/api-keys/{key_id}", headers=ADMIN)
    assert answer.status_code == 404
    assert set(answer.json()) == {"error", "message", "request_id"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "line\nbreak"}, "name"),
        ({"name": 7}, "name"),
        ({"name": "ci", "rate_limit_multiplier": 0}, "rate_limit_multiplier"),
        ({"name": "ci", "rate_limit_multiplier": -1}, "rate_limit_multiplier"),
        ({"name": "ci", "rate_limit_multiplier": 1001}, "rate_limit_multiplier"),
        ({"name": "ci", "rate_limit_multiplier": "fast"}, "rate_limit_multiplier"),
        ({"name": "ci", "key": "erk_my-own-choice"}, "key"),
        ({"name": "ci", "id": "0123456789abcdef"}, "id"),
    ],
)
def test_a_bad_body_is_400_in_the_routers_shape(body: dict[str, Any], field: str) -> None:
    store = LocalKeyStore()
    answer = call(store, "POST", "/admin/api-keys", json=body, headers=ADMIN)
    assert answer.status_code == 400
    assert answer.json()["error"] == "Bad Request"
    assert field in answer.json()["message"]
    assert run(store.list()) == []


def test_a_body_that_is_not_json_is_400() -> None:
    answer = call(
        LocalKeyStore(),
        "POST",
        "/admin/api-keys",
        content=b"{name",
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "Bad Request"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/admin/api-keys"), ("GET", "/admin/api-keys"), ("DELETE", "/admin/api-keys/0123456789abcdef")],
)
@pytest.mark.parametrize("headers", [{}, {"X-Admin-Key": "wrong"}])
def test_every_endpoint_needs_the_admin_key(method: str, path: str, headers: dict[str, str]) -> None:
    store = LocalKeyStore()
    answer = call(store, method, path, json={"name": "ci"}, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"] == "Unauthorized"
    assert run(store.list()) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/admin/api-keys"), ("GET", "/admin/api-keys"), ("DELETE", "/admin/api-keys/0123456789abcdef")],
)
def test_a_state_table_that_cannot_be_used_is_503(method: str, path: str) -> None:
    answer = call(FailingStore(), method, path, json={"name": "ci"}, headers=ADMIN)
    assert answer.status_code == 503
    body = answer.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == "Backend Unavailable"  # the router's name for a 503 (CONTRACT section 6)
    assert "'state'" not in body["message"] and "unreachable" not in body["message"]  # logged, not shown


def test_a_full_store_is_409(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(key_store, "MAX_KEYS", 1)
    store = LocalKeyStore()
    assert call(store, "POST", "/admin/api-keys", json={"name": "a"}, headers=ADMIN).status_code == 201
    full = call(store, "POST", "/admin/api-keys", json={"name": "b"}, headers=ADMIN)
    assert full.status_code == 409
    assert full.json()["error"] == "Conflict"
    assert "delete one" in full.json()["message"]


def test_openapi_documents_the_api_key_endpoints() -> None:
    spec = call(LocalKeyStore(), "GET", "/openapi.json").json()
    assert {"post", "get"} <= set(spec["paths"]["/admin/api-keys"])
    assert "delete" in spec["paths"]["/admin/api-keys/{key_id}"]


# --- a key's life through the router ------------------------------------------------------------


def protected(tmp_path: Path, backend: Backend, name: str = "c.json") -> str:
    return write_config(
        tmp_path / name,
        {"routes": [{"prefix": "/api", "target": backend.url, "api_keys": {"required": True}}]},
    )


def test_a_created_key_opens_a_protected_route_until_it_is_deleted(tmp_path: Path) -> None:
    with Backend() as backend:
        with (
            RouterServer(protected(tmp_path, backend), env={"ADMIN_KEY": "admin-secret"}) as r,
            r.client() as c,
        ):
            assert c.get("/api/x").status_code == 401
            refused = c.get("/api/x", headers={"X-API-Key": "erk_not-one-of-ours"})
            assert refused.status_code == 401
            assert backend.seen == []  # a refused request reaches no backend

            created = c.post("/admin/api-keys", json={"name": "ci"}, headers=ADMIN).json()
            allowed = c.get("/api/x", headers={"X-API-Key": created["key"]})
            assert allowed.status_code == 200
            assert backend.last.header("x-api-key") is None  # the key never reaches the backend

            assert c.delete(f"/admin/api-keys/{created['id']}", headers=ADMIN).status_code == 204
            after = c.get("/api/x", headers={"X-API-Key": created["key"]})
    assert after.status_code == 401
    assert len(backend.seen) == 1


@pytest.fixture
def shared_table(aws: str) -> Iterator[str]:
    dynamodb_table("edge-router-state")
    yield "edge-router-state"


def test_two_instances_sharing_a_table_share_the_keys(tmp_path: Path, shared_table: str) -> None:
    env = {"ADMIN_KEY": "admin-secret", "STATE_TABLE": shared_table}
    with Backend() as backend:
        source = protected(tmp_path, backend)
        with RouterServer(source, env=env) as a, RouterServer(source, env=env) as b:
            b_keys = b.app.services.keys
            assert isinstance(b_keys, DynamoDBKeyStore)
            with a.client() as on_a, b.client() as on_b:
                wrong = on_b.get("/api/x", headers={"X-API-Key": "erk_wrong"})
                assert wrong.status_code == 401  # and B has read its copy of the (empty) table

                created = on_a.post("/admin/api-keys", json={"name": "fleet"}, headers=ADMIN).json()
                started = time.monotonic()

                def status_on_b() -> int:
                    return on_b.get("/api/x", headers={"X-API-Key": created["key"]}).status_code

                wait_until(lambda: status_on_b() == 200, timeout=15)  # a miss reads again after 5 s
                accepted_after = time.monotonic() - started
                listed = on_b.get("/admin/api-keys", headers=ADMIN).json()["keys"]
                assert [key["id"] for key in listed] == [created["id"]]

                b_keys.refresh_s = 0.5  # the default (30 s) refuses a deleted key within 60 s
                assert on_a.delete(f"/admin/api-keys/{created['id']}", headers=ADMIN).status_code == 204
                assert on_a.get("/api/x", headers={"X-API-Key": created["key"]}).status_code == 401
                wait_until(lambda: status_on_b() == 401, timeout=10)  # B's copy is read every 0.5 s
    assert accepted_after < 15
    assert backend.last.header("x-api-key") is None
