"""`edge-router flip`/`push` signal the fleet (the state table's er#config-version item, or the
DynamoDB config item's own version) and `--wait` samples /health on the function URL.

AWS is moto's server on 127.0.0.1; the function URL is a small HTTP server on 127.0.0.1 whose
/health reports a config version that changes after a moment (or never).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from edge_router.cli import EXIT_FLEET_NOT_FOLLOWING, main
from edge_router.config.sources import parse_source
from edge_router.config.writeback.fleet import follow_within, health_url, reports
from support import dynamodb_table, write_config

PARAM = "/edge-router/config"
SOURCE = f"ssm:{PARAM}"
STATE = "edge-router-state"
VERSION_KEY = {"id": "er#config-version"}


def priority_config() -> dict[str, Any]:
    return {
        "global_priority": "1",
        "routes": {"task": {"priority": "12"}},
        "providers": {"1": "https://one.example", "2": "https://two.example"},
    }


@pytest.fixture
def env(aws: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("STATE_TABLE", "CONFIG_CHECK_SECONDS", "EDGE_ROUTER_URL", "EDGE_ROUTER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return aws


def ssm_parameter(value: dict[str, Any] | None = None) -> int:
    answer = boto3.client("ssm").put_parameter(
        Name=PARAM, Value=json.dumps(value or priority_config()), Type="String", Overwrite=True
    )
    return int(answer["Version"])


def ssm_version() -> int:
    return int(boto3.client("ssm").get_parameter(Name=PARAM)["Parameter"]["Version"])


def spread(source: str) -> float:
    """The random delay (at most) before an instance re-reads SOURCE after a change."""
    return float(parse_source(source).reload_spread_s)


def version_item(table: Any) -> dict[str, Any] | None:
    item: dict[str, Any] | None = table.get_item(Key=VERSION_KEY, ConsistentRead=True).get("Item")
    return item


# --------------------------------------------------------------------------------------------------
# the signal


def test_flip_bumps_the_version_item_to_the_parameters_version(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm_parameter()
    ssm_parameter()  # version 2: the item follows the parameter's own numbering
    table = dynamodb_table(STATE)
    before = int(time.time())

    assert main(["flip", "task", "21", "--config", SOURCE, "--state-table", STATE]) == 0

    assert ssm_version() == 3
    item = version_item(table)
    assert item is not None
    assert (item["version"], item["source"]) == (3, SOURCE)
    assert before <= int(item["updated_at"]) <= time.time() + 1
    out = capsys.readouterr().out
    assert "task priority is now 21 (version 3)" in out
    assert f"er#config-version in {STATE} is now version 3" in out
    assert "instances check every CONFIG_CHECK_SECONDS (5 s)" in out
    assert f"expect the whole fleet within ~{5 + spread(SOURCE) + 1:g} s" in out  # check, spread, read


def test_push_finds_the_state_table_in_the_environment_and_never_lowers_the_version(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = dynamodb_table(STATE)
    monkeypatch.setenv("STATE_TABLE", STATE)
    monkeypatch.setenv("CONFIG_CHECK_SECONDS", "2")
    config = write_config(tmp_path / "config.json", priority_config())

    assert main(["push", config, "--to", SOURCE]) == 0
    assert version_item(table)["version"] == 1  # type: ignore[index]
    out = capsys.readouterr().out
    assert (
        "(version 1)" in out
        and "every CONFIG_CHECK_SECONDS (2 s)" in out
        and f"within ~{2 + spread(SOURCE) + 1:g} s" in out
    )

    # the change event got there first with a later version (a console edit meanwhile): kept
    table.put_item(Item={**VERSION_KEY, "version": 9, "source": SOURCE, "updated_at": 0})
    assert main(["push", config, "--to", SOURCE]) == 0
    assert version_item(table)["version"] == 9  # type: ignore[index]
    assert "was already at or past version 2" in capsys.readouterr().out


def test_a_flip_with_nothing_to_change_still_brings_the_version_item_up_to_date(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm_parameter()
    ssm_parameter()  # written by hand: no signal
    table = dynamodb_table(STATE)

    assert main(["flip", "task", "12", "--config", SOURCE, "--state-table", STATE]) == 0

    assert ssm_version() == 2
    assert version_item(table)["version"] == 2  # type: ignore[index]
    assert "nothing written" in capsys.readouterr().out


def test_without_a_state_table_the_flip_says_instances_follow_within_the_ttl(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm_parameter()
    assert main(["flip", "task", "21", "--config", SOURCE]) == 0
    out = capsys.readouterr().out
    assert "no state table (--state-table TABLE or STATE_TABLE)" in out
    assert "within their CONFIG_TTL_SECONDS" in out
    assert "expect the whole fleet" not in out
    assert boto3.client("dynamodb").list_tables()["TableNames"] == []


def test_a_state_table_that_cannot_be_written_is_a_warning_the_flip_stands(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm_parameter()
    assert main(["flip", "task", "21", "--config", SOURCE, "--state-table", "no-such-table"]) == 0
    captured = capsys.readouterr()
    assert "task priority is now 21 (version 2)" in captured.out
    assert "warning: the config version could not be bumped" in captured.err
    assert "no-such-table" in captured.err and "CONFIG_TTL_SECONDS" in captured.err
    assert json.loads(boto3.client("ssm").get_parameter(Name=PARAM)["Parameter"]["Value"])["routes"] == {
        "task": {"priority": "21"}
    }


def test_push_to_a_dynamodb_item_increments_its_own_version(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_table = dynamodb_table("edge-router-config")
    config = write_config(tmp_path / "config.json", priority_config())
    source = "dynamodb:edge-router-config/main"

    assert main(["push", config, "--to", source]) == 0
    assert main(["push", config, "--to", source]) == 0
    assert main(["flip", "task", "21", "--config", source]) == 0
    item = config_table.get_item(Key={"id": "main"}, ConsistentRead=True)["Item"]
    assert item["version"] == 3
    out = capsys.readouterr().out
    assert "the config item carries version 3" in out
    assert f"expect the whole fleet within ~{5 + spread(source) + 1:g} s" in out

    # a version that is not a number cannot signal anything: refused, nothing written
    config_table.put_item(Item={"id": "main", "value": "{}", "version": "1.0"})
    assert main(["push", config, "--to", source]) == 1
    assert "`version` attribute is not a number" in capsys.readouterr().err
    assert config_table.get_item(Key={"id": "main"}, ConsistentRead=True)["Item"]["value"] == "{}"


# --------------------------------------------------------------------------------------------------
# --wait


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a round's concurrent connections all get in (the default is 5)


class FakeFunctionUrl:
    """GET /health on 127.0.0.1 answering `config.version`: `before` until `switch_after` seconds
    from start (never, when None), then `after`; records the requests' headers."""

    def __init__(self, before: Any, after: Any, switch_after: float | None, status: int = 200) -> None:
        self.before, self.after, self.switch_after, self.status = before, after, switch_after, status
        self.headers: list[dict[str, str]] = []
        self.started = time.monotonic()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.headers.append(dict(self.headers.items()))
                if self.path != "/health":
                    self.send_error(404)
                    return
                body = json.dumps({"status": "healthy", "config": {"version": fake.version()}}).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def version(self) -> Any:
        waited = time.monotonic() - self.started
        return self.after if self.switch_after is not None and waited >= self.switch_after else self.before

    def __enter__(self) -> FakeFunctionUrl:
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def function_url() -> Iterator[Callable[..., FakeFunctionUrl]]:
    made: list[FakeFunctionUrl] = []

    def make(before: Any, after: Any, switch_after: float | None, status: int = 200) -> FakeFunctionUrl:
        fake = FakeFunctionUrl(before, after, switch_after, status).__enter__()
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.__exit__()


def test_flip_wait_returns_once_a_whole_sample_reports_the_new_version(
    env: str, function_url: Callable[..., FakeFunctionUrl], capsys: pytest.CaptureFixture[str]
) -> None:
    ssm_parameter()
    dynamodb_table(STATE)
    fake = function_url(before=1, after=2, switch_after=1.0)
    started = time.monotonic()

    wait = ["--wait", "--url", fake.url, "--timeout", "20", "--sample", "5"]
    code = main(["flip", "task", "21", "--config", SOURCE, "--state-table", STATE, *wait])

    took = time.monotonic() - started
    assert code == 0
    assert 1.0 <= took < 10
    out = capsys.readouterr().out
    assert "0/5 report version 2; version 1" in out  # a round before the switch
    assert "5/5 report version 2; version 2" in out
    assert "fleet: 5 concurrent /health answers report version 2 after" in out
    assert len(fake.headers) >= 10 and len(fake.headers) % 5 == 0  # whole rounds of 5


def test_flip_wait_times_out_with_exit_3_and_keeps_the_write(
    env: str, function_url: Callable[..., FakeFunctionUrl], capsys: pytest.CaptureFixture[str]
) -> None:
    ssm_parameter()
    fake = function_url(before=1, after=2, switch_after=None)
    started = time.monotonic()

    code = main(["flip", "task", "21", "--config", SOURCE, "--wait", "--url", fake.url, "--timeout", "1.5"])

    assert code == EXIT_FLEET_NOT_FOLLOWING == 3
    assert 1.5 <= time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert "timed out after" in err and "waiting for version 2" in err
    assert "0/10 report version 2; version 1" in err
    assert ssm_version() == 2  # the write stands


def test_flip_wait_counts_a_later_version_and_reads_a_503_health_answer(
    env: str, function_url: Callable[..., FakeFunctionUrl], capsys: pytest.CaptureFixture[str]
) -> None:
    ssm_parameter()
    unhealthy = function_url(before=None, after=None, switch_after=None, status=503)
    assert (
        main(["flip", "task", "21", "--config", SOURCE, "--wait", "--url", unhealthy.url, "--timeout", "1"])
        == 3
    )
    assert "0/10 report version 2; version None" in capsys.readouterr().err

    later = function_url(before=7, after=7, switch_after=None)  # someone flipped again since
    assert (
        main(["flip", "task", "12", "--config", SOURCE, "--wait", "--url", later.url, "--timeout", "5"]) == 0
    )


def test_flip_wait_signs_requests_for_an_iam_function_url(
    env: str, function_url: Callable[..., FakeFunctionUrl], monkeypatch: pytest.MonkeyPatch
) -> None:
    ssm_parameter()
    fake = function_url(before=2, after=2, switch_after=None)
    monkeypatch.setenv("EDGE_ROUTER_URL", fake.url)
    assert main(["flip", "task", "21", "--config", SOURCE, "--wait", "--iam", "--sample", "2"]) == 0
    authorization = fake.headers[0]["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/lambda/aws4_request" in authorization
    assert fake.headers[0]["X-Amz-Security-Token"] == "testing"


def test_wait_is_refused_before_anything_is_written(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ssm_parameter()
    assert main(["flip", "task", "21", "--config", SOURCE, "--wait"]) == 1
    assert "--url URL or EDGE_ROUTER_URL" in capsys.readouterr().err
    assert main(["flip", "task", "21", "--config", SOURCE, "--wait", "--url", "ftp://x/"]) == 1
    assert "not an http(s) URL" in capsys.readouterr().err
    file_source = write_config(tmp_path / "config.json", priority_config())
    assert (
        main(["flip", "task", "21", "--config", file_source, "--wait", "--url", "http://127.0.0.1:9/"]) == 1
    )
    assert "--wait needs an ssm: or dynamodb: source" in capsys.readouterr().err
    assert ssm_version() == 1
    assert json.loads(Path(file_source).read_text()) == priority_config()


def test_health_url_reports_and_follow_within() -> None:
    url = "https://abc.lambda-url.eu-west-1.on.aws/"
    assert health_url(url) == "https://abc.lambda-url.eu-west-1.on.aws/health"
    assert health_url("https://abc.lambda-url.eu-west-1.on.aws") == health_url(url)
    assert health_url("http://127.0.0.1:8080/health?x=1") == "http://127.0.0.1:8080/health"
    assert reports(3, "3") and reports("4", "3") and reports(10, "9")
    assert not reports(2, "3") and not reports(None, "3") and not reports(True, "1")
    assert reports("1700000000-42", "1700000000-42") and not reports("abc", "3")
    assert follow_within(SOURCE, 5) == 5 + spread(SOURCE) + 1 <= 10  # the aim: 10 s
    assert follow_within("dynamodb:t/main", 1) == 1 + spread("dynamodb:t/main") + 1
