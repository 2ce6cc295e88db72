"""YAML aliases are bounded (issue 12): a "billion laughs" document is refused at once, by name.

An alias stands for the whole node its anchor names, so nine anchors of nine aliases each expand a
300-byte file to hundreds of millions of nodes; `edge-router validate` on one ran until killed.
Aliases may now add at most 100,000 nodes to a document once expanded, and an alias inside the
node it names (an infinite document) is refused too. A config that shares a block through an
anchor, or merges one with `<<`, loads and routes as before.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_router.cli import main
from edge_router.config.sources import MAX_ALIAS_NODES, parse_file
from edge_router.exceptions import ConfigInvalidError
from support import Backend, RouterServer

EDGE_ROUTER = Path(sys.executable).parent / "edge-router"


def laughs(item: str = '["lol","lol","lol","lol","lol","lol","lol","lol","lol"]') -> str:
    """Nine levels, each a list of nine aliases of the level before: 9**9 copies of `lol`."""
    lines = [f"a0: &a0 {item}"]
    for level in range(1, 9):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join([*lines, "routes: []", "metrics: *a8", ""])


def mapping_laughs() -> str:
    """The same growth through mappings, in block style: each level maps nine keys to the one before."""
    lines = ["m0: &m0 {a: lol, b: lol, c: lol}"]
    for level in range(1, 10):
        lines.append(f"m{level}: &m{level}")
        lines += [f"  k{key}: *m{level - 1}" for key in range(9)]
    return "\n".join([*lines, "routes: []", "metrics: *m9", ""])


ATTACKS = {
    "billion-laughs": (laughs(), "YAML aliases expand it by"),
    "mapping-laughs": (mapping_laughs(), "YAML aliases expand it by"),
    "recursive-alias": ("routes: []\nmetrics: &loop [1, *loop]\n", "refers to a node that contains it"),
}


def validate_in_a_process(path: Path) -> subprocess.CompletedProcess[str]:
    # A timeout, not a hang, if aliases are ever expanded again (it used to run until killed).
    return subprocess.run(
        [str(EDGE_ROUTER), "validate", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_validate_refuses_an_alias_bomb_naming_the_problem(tmp_path: Path, attack: str) -> None:
    text, reason = ATTACKS[attack]
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    done = validate_in_a_process(path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    problems = [line for line in done.stderr.splitlines() if reason in line]
    assert len(problems) == 1, done.stderr
    assert str(path) in problems[0]
    assert len(done.stderr.splitlines()) == 2, done.stderr  # the headline and this one problem
    # and the refusal costs what parsing 300 bytes costs
    started = time.perf_counter()
    with pytest.raises(ConfigInvalidError):
        parse_file(path, path.read_bytes())
    assert time.perf_counter() - started < 1.0


def test_the_message_states_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(laughs())
    with pytest.raises(ConfigInvalidError) as refused:
        parse_file(path, path.read_bytes())
    assert f"more than the {MAX_ALIAS_NODES:,} allowed" in str(refused.value)
    assert MAX_ALIAS_NODES == 100_000


def aliases_of_a_scalar(count: int) -> str:
    """A free-form block holding one anchored scalar and `count` aliases of it: each adds one node."""
    return "routes: []\nmetrics:\n  - &x 1\n" + "".join("  - *x\n" for _ in range(count))


@pytest.mark.parametrize(("count", "code"), [(MAX_ALIAS_NODES, 0), (MAX_ALIAS_NODES + 1, 1)])
def test_aliases_up_to_the_limit_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], count: int, code: int
) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(aliases_of_a_scalar(count))
    assert main(["validate", str(path)]) == code
    err = capsys.readouterr().err
    if code:
        assert f"expand it by {MAX_ALIAS_NODES + 1:,} nodes" in err


SHARED_BLOCKS = """
routes:
  - &api
    prefix: /a
    target: {url}/v1
    timeout_ms: 5000
    circuit_breaker: &breaker
      failure_threshold: 3
      timeout: 30000
  - <<: *api
    prefix: /b
  - prefix: /c
    target: {url}/v2
    circuit_breaker: *breaker
"""


def test_a_config_sharing_blocks_through_anchors_loads_and_routes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Backend() as backend:
        path = tmp_path / "shared.yaml"
        path.write_text(SHARED_BLOCKS.format(url=backend.url))
        assert main(["validate", str(path)]) == 0
        assert "valid (3 routes" in capsys.readouterr().out
        with RouterServer(str(path)) as router, router.client() as client:
            merged = client.get("/b/items")
            shared = client.get("/c/items")
    assert (merged.status_code, shared.status_code) == (200, 200)
    assert [seen.target for seen in backend.seen] == ["/v1/items", "/v2/items"]
