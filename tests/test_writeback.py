"""flip/push write-back: set_priority on the raw document, and optimistic read-modify-write on files,
SSM (over real HTTP to moto's server) and DynamoDB, with no lost update under a concurrent writer.

The concurrent writer is made deterministic: it writes from inside the `change` callback (after our
read, before our write) or, for SSM, from a botocore hook that fires just before our PutParameter.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from edge_router.config.writeback import (
    Versioned,
    WriteConflict,
    WriteError,
    flip,
    push,
    read_versioned,
    set_priority,
    update,
    validate_priority_document,
)
from edge_router.exceptions import ConfigError, ConfigInvalidError, ConfigSourceError
from support import dynamodb_table

PARAM = "/edge-router/config"

SEED: dict[str, Any] = {
    "global_priority": "21",
    "routes": {
        "task": {"priority": "213", "cache": False},
        "watchparty": {"priority": "1", "cache": True, "cache_ttl_seconds": 60},
    },
    "providers": {"1": "${LOCAL_BASE}", "2": "${WORKER_BASE}", "3": "https://xyz.lambda-url.aws"},
}


def seed() -> dict[str, Any]:
    return copy.deepcopy(SEED)


def no_check(document: dict[str, Any]) -> None:
    return None


def to(app: str, priority: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda document: set_priority(document, app, priority)


def once(action: Callable[[], None]) -> Callable[[], None]:
    """Run `action` the first time only: a change callback may be re-applied after a conflict."""
    done: list[bool] = []

    def run() -> None:
        if not done:
            done.append(True)
            action()

    return run


# --------------------------------------------------------------------------------------------------
# set_priority / validate_priority_document


@pytest.mark.parametrize(
    ("app", "priority", "expected"),
    [
        ("task", "31", {**SEED, "routes": {**SEED["routes"], "task": {"priority": "31", "cache": False}}}),
        ("admin", "2", {**SEED, "routes": {**SEED["routes"], "admin": {"priority": "2"}}}),
        ("*", "3", {**SEED, "global_priority": "3"}),
        ("global", "12", {**SEED, "global_priority": "12"}),
    ],
    ids=["existing-app", "new-app", "star-is-global", "global"],
)
def test_set_priority_changes_one_field_and_keeps_the_rest_verbatim(
    app: str, priority: str, expected: dict[str, Any]
) -> None:
    original = seed()
    result = set_priority(original, app, priority)
    assert result == expected
    assert result["providers"] == {"1": "${LOCAL_BASE}", "2": "${WORKER_BASE}", "3": SEED["providers"]["3"]}
    assert list(result) == list(SEED)  # key order kept: a diff of the file shows one line
    assert original == SEED  # a new document; the input is untouched


@pytest.mark.parametrize(
    ("app", "priority", "message"),
    [
        ("task", "217", "routes.task.priority: digit '7' names no provider (providers: 1, 2, 3)"),
        ("task", "789", "routes.task.priority: digits '7', '8', '9' name no provider"),
        ("task", "2x", "routes.task.priority: '2x' has non-digit character 'x'"),
        ("task", "", "routes.task.priority: is empty"),
        ("*", "4", "global_priority: digit '4' names no provider"),
        ("new", "0", "routes.new.priority: digit '0' names no provider"),
        ("a/b", "1", "app: 'a/b' is not an app name"),
    ],
)
def test_set_priority_refuses_what_the_router_could_not_follow(app: str, priority: str, message: str) -> None:
    with pytest.raises(ConfigInvalidError) as caught:
        set_priority(seed(), app, priority)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(message)


def test_set_priority_on_the_routes_list_format_says_flip_needs_the_priority_format() -> None:
    native = {"routes": [{"prefix": "/api", "target": "https://b.example"}], "providers": {"1": "x"}}
    with pytest.raises(ConfigInvalidError, match="routes: is a list here"):
        set_priority(native, "task", "1")
    with pytest.raises(ConfigInvalidError, match="providers: expected an object"):
        set_priority({"routes": [{"prefix": "/api", "target": "https://b.example"}]}, "task", "1")


def test_validate_priority_document_names_every_bad_field_once() -> None:
    validate_priority_document(seed())  # the seed's own document is valid
    document = seed()
    document["global_priority"] = "29"
    document["routes"]["task"]["priority"] = "1a7"
    document["routes"]["watchparty"]["priority"] = ""  # empty: the app uses global_priority (seed 003)
    document["routes"]["broken"] = "12"
    with pytest.raises(ConfigInvalidError) as caught:
        validate_priority_document(document)
    assert caught.value.problems == [
        "global_priority: digit '9' names no provider (providers: 1, 2, 3)",
        "routes.task.priority: '1a7' has non-digit character 'a'; digit '7' names no provider "
        "(providers: 1, 2, 3)",
        'routes.broken: expected an object such as {"priority": "21"}',
    ]


def test_yaml_integer_provider_keys_count_as_providers() -> None:
    document = yaml.safe_load("global_priority: 21\nproviders:\n  1: https://a.example\n  2: ${B}\n")
    validate_priority_document(document)
    assert set_priority(document, "task", "12")["routes"] == {"task": {"priority": "12"}}


# --------------------------------------------------------------------------------------------------
# files


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_file_flip_changes_the_priority_and_keeps_placeholders_as_written(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"route-config{suffix}"
    if suffix == ".json":
        write_json(path, SEED)
    else:
        path.write_text(yaml.safe_dump(SEED, sort_keys=False), encoding="utf-8")
    before = read_versioned(str(path))

    result = flip(str(path), "task", "31")

    text = path.read_text(encoding="utf-8")
    assert "${LOCAL_BASE}" in text and "${WORKER_BASE}" in text  # never the substituted values
    on_disk = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    expected = seed()
    expected["routes"]["task"]["priority"] = "31"
    assert on_disk == expected == result.document
    assert result.version == hashlib.sha256(path.read_bytes()).hexdigest() != before.version
    if suffix == ".json":
        assert text == json.dumps(expected, indent=2) + "\n"  # pretty, one changed line in a diff


def test_file_write_is_atomic_and_keeps_the_file_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "route-config.json"
    write_json(path, SEED)
    path.chmod(0o640)
    original = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(WriteError, match="No space left on device"):
        flip(str(path), "task", "31")
    monkeypatch.undo()
    assert path.read_bytes() == original  # a failed write leaves the old file whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["route-config.json"]  # no temp file left

    # readers never see a half-written file, however often it is written
    stop = threading.Event()
    seen: list[Any] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(json.loads(path.read_text(encoding="utf-8"))["routes"]["task"]["priority"])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for index in range(40):
            flip(str(path), "task", ["31", "213"][index % 2])
    finally:
        stop.set()
        thread.join()
    assert seen and set(seen) <= {"31", "213"}
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["route-config.json"]


def test_file_concurrent_write_is_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "route-config.json"
    write_json(path, SEED)

    def other_writer() -> None:  # someone else flips watchparty between our read and our write
        document = json.loads(path.read_text())
        write_json(path, set_priority(document, "watchparty", "3"))

    competing = once(other_writer)

    def change(document: dict[str, Any]) -> dict[str, Any]:
        competing()
        return set_priority(document, "task", "31")

    result = update(str(path), change, validate=validate_priority_document)
    on_disk = json.loads(path.read_text())
    assert on_disk["routes"]["task"]["priority"] == "31"
    assert on_disk["routes"]["watchparty"]["priority"] == "3"  # the other change survived
    assert result.document == on_disk


def test_file_invalid_flip_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "route-config.json"
    path.write_text(json.dumps(SEED), encoding="utf-8")  # compact, as a hand-written file might be
    before = path.read_bytes()
    with pytest.raises(ConfigInvalidError, match="digit '7' names no provider"):
        flip(str(path), "task", "7")
    assert path.read_bytes() == before
    with pytest.raises(ConfigSourceError, match="cannot read"):
        flip(str(tmp_path / "missing.json"), "task", "1")


def test_file_flip_to_the_same_priority_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "route-config.json"
    path.write_text(json.dumps(SEED), encoding="utf-8")
    before = path.read_bytes()
    result = flip(str(path), "task", "213")
    assert result.written is False
    assert path.read_bytes() == before
    assert result.version == hashlib.sha256(before).hexdigest()


# --------------------------------------------------------------------------------------------------
# SSM


def ssm_text(version: int | None = None) -> str:
    name = PARAM if version is None else f"{PARAM}:{version}"
    value: str = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    return value


def ssm_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ssm_text())
    return document


def ssm_version() -> int:
    return int(boto3.client("ssm").get_parameter(Name=PARAM)["Parameter"]["Version"])


def competing_ssm_put(app: str, priority: str) -> None:
    """Another operator's flip, through its own session (so test hooks on the default one skip it)."""
    client = boto3.session.Session().client("ssm")
    current = json.loads(client.get_parameter(Name=PARAM, WithDecryption=True)["Parameter"]["Value"])
    client.put_parameter(
        Name=PARAM, Value=json.dumps(set_priority(current, app, priority)), Type="String", Overwrite=True
    )


@pytest.mark.parametrize("parameter_type", ["String", "SecureString"])
def test_ssm_flip_keeps_type_key_and_placeholders_and_bumps_the_version(
    aws: str, parameter_type: str
) -> None:
    ssm = boto3.client("ssm")
    extra: dict[str, Any] = {"KeyId": "alias/edge-router"} if parameter_type == "SecureString" else {}
    ssm.put_parameter(
        Name=PARAM, Value=json.dumps(SEED), Type=parameter_type, Description="routing for hadoku", **extra
    )

    result = flip(f"ssm:{PARAM}", "task", "31")

    assert result == Versioned(set_priority(seed(), "task", "31"), "2")
    described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [PARAM]}])["Parameters"][
        0
    ]
    assert described["Type"] == parameter_type
    assert described["Description"] == "routing for hadoku"
    if parameter_type == "SecureString":
        assert described["KeyId"] == "alias/edge-router"
    assert ssm_version() == 2
    text = ssm_text()
    assert '"${LOCAL_BASE}"' in text and '"${WORKER_BASE}"' in text
    assert "\n" not in text  # a one-line value stays one line (and within SSM's 4 KB standard tier)
    assert json.loads(ssm_text(1)) == SEED  # the previous version is in the history to roll back to


def test_ssm_concurrent_write_during_the_change_is_not_lost(aws: str) -> None:
    boto3.client("ssm").put_parameter(Name=PARAM, Value=json.dumps(SEED), Type="String")
    read = read_versioned(f"ssm:{PARAM}")
    competing = once(lambda: competing_ssm_put("watchparty", "3"))

    def change(document: dict[str, Any]) -> dict[str, Any]:
        competing()  # version read+1 now exists, written by someone else
        return set_priority(document, "task", "31")

    result = update(f"ssm:{PARAM}", change, validate=validate_priority_document)

    live = ssm_document()
    assert live["routes"]["task"]["priority"] == "31"
    assert live["routes"]["watchparty"]["priority"] == "3"  # no lost update
    assert result.document == live
    assert result.version == str(int(read.version) + 2) == str(ssm_version())


@pytest.fixture
def before_put_parameter(aws: str) -> Callable[[Callable[[], None]], None]:
    """Run an action just before each PutParameter that our code sends (real HTTP, via a botocore hook
    on the router's own SSM client; the `aws` fixture forgets that client afterwards)."""
    from edge_router.aws import clients

    def install(action: Callable[[], None]) -> None:
        clients.client("ssm").meta.events.register("before-call.ssm.PutParameter", lambda **_: action())

    return install


def test_ssm_write_that_lands_on_top_of_another_is_repaired(
    before_put_parameter: Callable[[Callable[[], None]], None],
) -> None:
    competing_ssm_put_client = boto3.session.Session().client("ssm")
    competing_ssm_put_client.put_parameter(Name=PARAM, Value=json.dumps(SEED), Type="String")
    read = read_versioned(f"ssm:{PARAM}")
    # the other write lands after our last look at the version and before our PutParameter
    before_put_parameter(once(lambda: competing_ssm_put("watchparty", "3")))

    result = flip(f"ssm:{PARAM}", "task", "31")

    live = ssm_document()
    assert live["routes"]["task"]["priority"] == "31"
    assert live["routes"]["watchparty"]["priority"] == "3"  # hidden for one round trip, not lost
    # read+1 theirs, read+2 ours on the old base (superseded), read+3 ours on theirs
    assert result.version == str(int(read.version) + 3) == str(ssm_version())
    assert json.loads(ssm_text(int(read.version) + 1))["routes"]["task"]["priority"] == "213"


def test_ssm_change_invalid_on_top_of_the_concurrent_one_restores_theirs(
    before_put_parameter: Callable[[Callable[[], None]], None],
) -> None:
    boto3.client("ssm").put_parameter(Name=PARAM, Value=json.dumps(SEED), Type="String")

    def remove_provider_3() -> None:
        client = boto3.session.Session().client("ssm")
        document = seed()
        del document["providers"]["3"]
        document["routes"]["task"]["priority"] = "21"
        client.put_parameter(Name=PARAM, Value=json.dumps(document), Type="String", Overwrite=True)

    before_put_parameter(once(remove_provider_3))
    with pytest.raises(WriteConflict, match=r"version 2\) makes this change invalid.*digit '3'") as caught:
        flip(f"ssm:{PARAM}", "watchparty", "3")
    assert "written back as version 4" in str(caught.value)
    assert json.loads(ssm_text()) == json.loads(ssm_text(2))  # theirs is live again, without ours
    assert "3" not in ssm_document()["providers"]


def test_ssm_source_that_never_settles_gives_write_conflict(
    before_put_parameter: Callable[[Callable[[], None]], None],
) -> None:
    boto3.client("ssm").put_parameter(Name=PARAM, Value=json.dumps(SEED), Type="String")
    flips = iter(["1", "2"] * 10)
    before_put_parameter(lambda: competing_ssm_put("watchparty", next(flips)))
    with pytest.raises(WriteConflict, match="changed on each of 5 attempts") as caught:
        flip(f"ssm:{PARAM}", "task", "31")
    assert isinstance(caught.value, ConfigError)


def test_ssm_invalid_flip_writes_nothing(aws: str) -> None:
    boto3.client("ssm").put_parameter(Name=PARAM, Value=json.dumps(SEED), Type="String")
    with pytest.raises(ConfigInvalidError) as caught:
        flip(f"ssm:{PARAM}", "task", "2x7")
    assert caught.value.problems == [
        "routes.task.priority: '2x7' has non-digit character 'x'; digit '7' names no provider "
        "(providers: 1, 2, 3)"
    ]
    assert ssm_version() == 1
    assert ssm_text() == json.dumps(SEED)
    with pytest.raises(ConfigSourceError, match="no such parameter"):
        flip("ssm:/does/not/exist", "task", "1")


# --------------------------------------------------------------------------------------------------
# DynamoDB


def config_table(name: str = "edge-router-config") -> Any:
    return dynamodb_table(name)


SOURCE = "dynamodb:edge-router-config/main"


def item(table: Any) -> dict[str, Any]:
    found: dict[str, Any] = table.get_item(Key={"id": "main"}, ConsistentRead=True)["Item"]
    return found


def test_dynamodb_flip_is_conditional_on_the_version(aws: str) -> None:
    table = config_table()
    table.put_item(Item={"id": "main", "value": json.dumps(SEED)})  # as written by hand: no version yet
    assert read_versioned(SOURCE).version == "0"

    assert flip(SOURCE, "task", "31").version == "1"
    assert flip(SOURCE, "*", "3").version == "2"

    stored = item(table)
    assert stored["version"] == 2
    assert '"${WORKER_BASE}"' in stored["value"]
    document = json.loads(stored["value"])
    assert (document["routes"]["task"]["priority"], document["global_priority"]) == ("31", "3")


@pytest.mark.parametrize("versioned", [True, False], ids=["with-version", "hand-written-item"])
def test_dynamodb_concurrent_write_during_the_change_is_not_lost(aws: str, versioned: bool) -> None:
    table = config_table()
    table.put_item(Item={"id": "main", "value": json.dumps(SEED), **({"version": 4} if versioned else {})})
    read = read_versioned(SOURCE)

    def other_writer() -> None:
        theirs = json.dumps(set_priority(seed(), "watchparty", "3"))
        # a protocol-following writer bumps the version; a hand-written PutItem just replaces the item
        table.put_item(Item={"id": "main", "value": theirs, **({"version": 5} if versioned else {})})

    competing = once(other_writer)

    def change(document: dict[str, Any]) -> dict[str, Any]:
        competing()
        return set_priority(document, "task", "31")

    result = update(SOURCE, change, validate=validate_priority_document)

    document = json.loads(item(table)["value"])
    assert document["routes"]["task"]["priority"] == "31"
    assert document["routes"]["watchparty"]["priority"] == "3"  # no lost update
    assert result.document == document
    expected = int(read.version) + 2 if versioned else 1
    assert result.version == str(expected) == str(item(table)["version"])


def test_dynamodb_map_value_stays_a_map_and_invalid_flip_writes_nothing(aws: str) -> None:
    table = config_table()
    table.put_item(Item={"id": "main", "value": seed(), "version": 3})
    with pytest.raises(ConfigInvalidError, match=r"routes\.task\.priority: digit '9' names no provider"):
        flip(SOURCE, "task", "91")
    assert item(table)["version"] == 3

    flip(SOURCE, "task", "1")
    stored = item(table)
    assert stored["version"] == 4
    assert stored["value"]["routes"]["task"] == {"priority": "1", "cache": False}
    assert stored["value"]["providers"]["2"] == "${WORKER_BASE}"
    with pytest.raises(ConfigSourceError, match="no such item"):
        flip("dynamodb:edge-router-config/absent", "task", "1")


# --------------------------------------------------------------------------------------------------
# push


def refuse_unless_priority(document: dict[str, Any]) -> None:
    validate_priority_document(document)


def test_push_validates_before_writing_anything(aws: str, tmp_path: Path) -> None:
    bad = seed()
    bad["routes"]["task"]["priority"] = "2147"
    path = tmp_path / "route-config.json"
    write_json(path, bad)
    with pytest.raises(ConfigInvalidError, match="digits '4', '7' name no provider"):
        push(str(path), f"ssm:{PARAM}", validate=refuse_unless_priority)
    assert boto3.client("ssm").describe_parameters()["Parameters"] == []


def test_push_writes_the_file_as_written_to_ssm_dynamodb_and_files(aws: str, tmp_path: Path) -> None:
    path = tmp_path / "route-config.json"
    write_json(path, SEED)
    text = path.read_text()

    created = push(str(path), f"ssm:{PARAM}", validate=refuse_unless_priority)
    assert (created.version, ssm_text()) == ("1", text)  # byte for byte, placeholders and all
    boto3.client("ssm").put_parameter(
        Name=PARAM, Value="{}", Type="SecureString", KeyId="alias/k", Overwrite=True
    )
    replaced = push(str(path), f"ssm:{PARAM}", validate=refuse_unless_priority)
    assert (replaced.version, ssm_text()) == ("3", text)
    assert boto3.client("ssm").get_parameter(Name=PARAM)["Parameter"]["Type"] == "SecureString"

    table = config_table()
    assert push(str(path), SOURCE, validate=no_check).version == "1"  # creates the item
    table.put_item(Item={"id": "main", "value": "{}", "version": 7})
    assert push(str(path), SOURCE, validate=no_check) == Versioned(SEED, "8")
    assert item(table)["value"] == text

    yaml_path = tmp_path / "out" / "route-config.yaml"
    yaml_path.parent.mkdir()
    pushed = push(str(path), str(yaml_path), validate=no_check)
    assert yaml.safe_load(yaml_path.read_text()) == SEED == pushed.document
    assert "${LOCAL_BASE}" in yaml_path.read_text()
    umask = os.umask(0)
    os.umask(umask)
    assert yaml_path.stat().st_mode & 0o777 == 0o666 & ~umask  # a new file, as any tool would make it
    again = push(str(path), str(yaml_path), validate=no_check)
    assert again.version == pushed.version == hashlib.sha256(yaml_path.read_bytes()).hexdigest()


def test_push_of_a_missing_or_broken_file_names_it(aws: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigSourceError, match=r"missing\.json"):
        push(str(tmp_path / "missing.json"), f"ssm:{PARAM}", validate=no_check)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigInvalidError, match=r"broken\.json is not valid JSON"):
        push(str(broken), f"ssm:{PARAM}", validate=no_check)
