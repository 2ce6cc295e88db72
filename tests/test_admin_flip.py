"""`POST /admin/flip` (CONTRACT section 11): `edge-router flip` over HTTP, against a real router and
real backends; the file keeps everything else it held, placeholders included."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

from support import Backend, RouterServer, dynamodb_table

ADMIN = {"x-admin-key": "f" * 32}


def priority_document(first: Backend, second: Backend) -> dict[str, Any]:
    return {
        "providers": {"1": first.url, "2": second.url, "3": "${UNSET_PROVIDER_URL}"},
        "global_priority": "12",
        "routes": {"task": {"priority": "12"}},
    }


def test_a_flip_is_written_and_the_next_request_follows(tmp_path: Path) -> None:
    with Backend() as first, Backend() as second:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(priority_document(first, second)))
        with RouterServer(str(path), env=ADMIN_ENV) as router, router.client() as client:
            assert client.get("/task/x").headers["x-backend-source"] == first.url
            assert client.post("/admin/flip", json={"app": "task", "priority": "21"}).status_code == 401
            answer = client.post("/admin/flip", json={"app": "task", "priority": "21"}, headers=ADMIN)
            after = client.get("/task/x").headers["x-backend-source"]
            other_app = client.get("/other/x").headers["x-backend-source"]
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["app"], body["priority"], body["order"], body["written"]) == ("task", "21", ["2", "1"], True)
    assert after == second.url  # this instance re-read at once
    assert other_app == first.url  # only the app flipped
    written = json.loads(path.read_text())
    assert written["routes"]["task"]["priority"] == "21"
    assert written["providers"]["3"] == "${UNSET_PROVIDER_URL}"  # the raw document, kept verbatim


def test_invalid_flips_are_refused_with_the_field_named(tmp_path: Path) -> None:
    with Backend() as first, Backend() as second:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(priority_document(first, second)))
        before = path.read_bytes()
        with RouterServer(str(path), env=ADMIN_ENV) as router, router.client() as client:
            unknown = client.post("/admin/flip", json={"app": "task", "priority": "29"}, headers=ADMIN)
            letters = client.post("/admin/flip", json={"app": "task", "priority": "ab"}, headers=ADMIN)
            bad_app = client.post("/admin/flip", json={"app": "a/b", "priority": "21"}, headers=ADMIN)
            missing = client.post("/admin/flip", json={"app": "task"}, headers=ADMIN)
            extra = client.post("/admin/flip", json={"app": "task", "priority": "21", "x": 1}, headers=ADMIN)
    assert [r.status_code for r in (unknown, letters, bad_app)] == [422, 422, 422]
    assert "routes.task.priority" in unknown.json()["message"]
    assert "app" in bad_app.json()["message"]
    assert [missing.status_code, extra.status_code] == [400, 400]
    assert path.read_bytes() == before  # nothing was written


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """`directory` made unwritable for this process: by mode bits, or as root (whom they do not
    stop) by the immutable attribute, as a Lambda package's read-only file system is."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_a_source_that_cannot_be_written_is_a_501(tmp_path: Path) -> None:
    with Backend() as first, Backend() as second:
        directory = tmp_path / "package"
        directory.mkdir()
        source = directory / "config.json"
        source.write_text(json.dumps(priority_document(first, second)))
        before = source.read_bytes()
        with (
            RouterServer(str(source), env=ADMIN_ENV) as router,
            router.client() as client,
            read_only(directory),
        ):
            assert client.get("/task/x").status_code == 200
            refused = client.post("/admin/flip", json={"app": "task", "priority": "21"}, headers=ADMIN)
            still = client.get("/task/x").headers["x-backend-source"]
        with RouterServer(None, env=ADMIN_ENV) as router, router.client() as client:
            no_source = client.post("/admin/flip", json={"app": "task", "priority": "21"}, headers=ADMIN)
    assert refused.status_code == 501, refused.text
    assert "cannot be written" in refused.json()["message"]
    assert still == first.url
    assert source.read_bytes() == before
    assert no_source.status_code == 501


def test_a_flip_of_an_ssm_source_signals_the_fleet(aws: str, tmp_path: Path) -> None:
    param = "/edge-router/flip-over-http"
    with Backend() as first, Backend() as second:
        dynamodb_table("flip-state")
        boto3.client("ssm").put_parameter(
            Name=param, Value=json.dumps(priority_document(first, second)), Type="String"
        )
        env = {**ADMIN_ENV, "STATE_TABLE": "flip-state"}
        with RouterServer(f"ssm:{param}", env=env) as router, router.client() as client:
            answer = client.post("/admin/flip", json={"app": "*", "priority": "21"}, headers=ADMIN)
            health = client.get("/health").json()
            status = client.get("/admin/status", headers=ADMIN).json()
    from edge_router.aws.config_version import read_config_version

    assert answer.status_code == 200, answer.text
    assert (answer.json()["version"], answer.json()["signalled"]) == (2, True)
    assert read_config_version("flip-state") == 2
    assert health["config"]["version"] == 2
    assert (status["config"]["version"], status["config"]["fleet_version"]) == (
        2,
        2,
    )  # the status page's view


ADMIN_ENV = {"ADMIN_KEY": ADMIN["x-admin-key"]}
