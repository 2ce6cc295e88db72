"""A Lambda-shaped package on local disk, for the cold-start section: the function's code and its
runtime dependencies in one folder, with or without bytecode, as `sam build` ships them.

    build_packages(dest[, src]) -> (without_bytecode, with_bytecode)

Lambda puts /var/task (the function) and /opt/python (the layer) on sys.path and nothing else; the
runtime's standard library has its own bytecode. So a child started with `python -S` (no
site-packages) and PYTHONPATH=<package> sees what a deployed function sees: the standard library
compiled, and our code plus its dependencies either compiled the way src/Makefile and the layer's
Makefile compile them (hash-based .pyc that are not checked against the source) or not at all,
which is what SAM's own Python builder ships, and what Lambda's read-only code path can never fix.

The dependencies are copied from this venv's installed distributions (their RECORD files, minus
__pycache__), following edge-router's runtime requirements with their markers: no network, and the
same versions the tests ran with. The first level of requirements is read from the checkout's own
pyproject.toml (the one beside `src`), so a dependency added or dropped there counts before the
venv is reinstalled; the installed edge-router's metadata is the fallback.
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent


def _wanted(texts: list[str]) -> list[str]:
    """The names of the requirements that apply without extras, on this interpreter."""
    names = []
    for text in texts:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.append(requirement.name)
    return names


def declared_requirements(pyproject: Path, root: str = "edge-router") -> list[str]:
    """[project].dependencies of `pyproject`, else what the installed `root` declares."""
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        if "dependencies" in project:
            return list(project["dependencies"])
    return list(metadata.distribution(root).requires or [])


def runtime_distributions(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions of `requirements`, transitively, without extras (what the layer
    holds)."""
    seen: dict[str, metadata.Distribution] = {}
    pending = _wanted(requirements)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise RuntimeError(f"{name} (a runtime dependency) is not installed in this venv") from None
        seen[name] = dist
        pending += _wanted(list(dist.requires or []))
    return list(seen.values())


def _copy_distribution(dist: metadata.Distribution, dest: Path) -> None:
    for file in dist.files or []:
        parts = file.parts
        if "__pycache__" in parts or parts[0].startswith("..") or parts[0].endswith(".dist-info"):
            continue  # bytecode is what we vary; dist-info is not imported; ../bin are scripts
        source = Path(str(file.locate()))
        if source.is_file():
            target = dest / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def build_packages(dest: Path, src: Path = REPO / "src") -> tuple[Path, Path]:
    """Two copies of the deployed code (`src/edge_router` and its runtime dependencies): (without
    bytecode, with hash-based bytecode)."""
    plain = dest / "package-source-only"
    plain.mkdir(parents=True)
    for dist in runtime_distributions(declared_requirements(src.parent / "pyproject.toml")):
        _copy_distribution(dist, plain)
    shutil.copytree(src / "edge_router", plain / "edge_router", ignore=shutil.ignore_patterns("__pycache__"))
    compiled = dest / "package-compiled"
    shutil.copytree(plain, compiled)
    ok = compileall.compile_dir(
        compiled,
        quiet=2,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        raise RuntimeError(f"compileall failed in {compiled}")
    return plain, compiled
