"""The package's shape, checked: no import circles, the data plane never reaches up into the control
plane, the CLI or write-back, pure packages do no I/O through third-party clients, and the cold path
of a proxied Lambda request imports neither FastAPI nor boto3.

Imports are read from the source (every `import`, at module level or inside a function, except
those under `if TYPE_CHECKING:`), so a lazy import counts as the dependency it is.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Backend, write_config

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "edge_router"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> Iterator[str]:
    """Every module `path` imports (absolute names), but those only for type checking."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    pending: list[ast.AST] = [ast.parse(path.read_text())]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            # `from . import x` may name a submodule
            yield from (f"{target}.{alias.name}" for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for imported in _imports(path):
            if imported in modules and imported != name:
                edges.add(imported)
        graph[name] = edges
    return graph


def _third_party(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imports(path) if not name.startswith("edge_router")}


GRAPH = _graph()
FILES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def test_the_import_graph_was_read() -> None:
    assert len(GRAPH) > 40
    assert "edge_router.routing.candidates" in GRAPH["edge_router.proxy.forward"]


def test_no_import_circles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def _reachable(start: str, *, stop_at: frozenset[str] = frozenset()) -> set[str]:
    seen, pending = set(), [start]
    while pending:
        node = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        if node not in stop_at:
            pending.extend(GRAPH[node])
    return seen


DATA_PLANE = (
    "edge_router.proxy",
    "edge_router.routing",
    "edge_router.guards",
    "edge_router.upstream",
    "edge_router.cache",
)
ABOVE_THE_DATA_PLANE = ("edge_router.control", "edge_router.cli", "edge_router.config.writeback")


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith(DATA_PLANE)))
def test_the_data_plane_never_imports_the_control_plane_cli_or_writeback(module: str) -> None:
    reached = _reachable(module)
    assert sorted(m for m in reached if m.startswith(ABOVE_THE_DATA_PLANE)) == []


# Pure: decisions and data only. The registry and AWS adapters do I/O and are where it stops.
PURE = (
    "edge_router.http",
    "edge_router.routing",
    "edge_router.cache",
    "edge_router.config.model",
    "edge_router.config.compile",
)
ADAPTERS = frozenset({"edge_router.routing.registry.dynamodb", "edge_router.aws.clients"})
IO_CLIENTS = {"aiohttp", "boto3", "botocore", "fastapi", "starlette", "mangum", "uvicorn", "httptools"}


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith(PURE) and m not in ADAPTERS))
def test_pure_packages_import_no_io_client(module: str) -> None:
    reached = _reachable(module, stop_at=ADAPTERS) - ADAPTERS
    used = {name: _third_party(FILES[name]) & IO_CLIENTS for name in reached}
    assert {name: clients for name, clients in used.items() if clients} == {}


def test_the_config_model_is_plain_dataclasses() -> None:
    reached = _reachable("edge_router.config.model")
    assert "pydantic" not in set().union(*(_third_party(FILES[name]) for name in reached))


def test_the_cold_path_of_a_proxied_lambda_request_imports_no_fastapi_mangum_aiohttp_or_boto3(
    tmp_path: Path,
) -> None:
    with Backend() as backend:
        config = write_config(tmp_path / "c.json", {"routes": [{"prefix": "/api", "target": backend.url}]})
        script = (
            "import json, sys\n"
            "from edge_router.aws_lambda import build_handler\n"
            "from edge_router.settings import Settings\n"
            "from edge_router.testing import function_url_event\n"
            f"handler = build_handler(Settings(config_source={config!r}))\n"
            "answer = handler(function_url_event('GET', '/api/x'), None)\n"
            "heavy = {'fastapi', 'starlette', 'boto3', 'mangum', 'aiohttp'}\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & heavy)\n"
            "print(json.dumps({'status': answer['statusCode'], 'heavy': heavy,"
            " 'control': 'edge_router.control.app' in sys.modules}))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        )
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"status": 200, "heavy": [], "control": False}
    assert backend.last.target == "/x"


def _long_functions(limit: int) -> list[str]:
    found = []
    for name, path in sorted(FILES.items()):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append(f"{name}.{node.name}: {length} lines")
    return found


def test_no_function_is_longer_than_60_lines() -> None:
    # A long function is a stage that has not been named yet (the house rule).
    assert _long_functions(60) == []
