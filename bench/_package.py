"""A Lambda-shaped package on local disk, for the cold-start section: the function's code and its
runtime dependencies in one folder, with or without bytecode, as `sam build` ships them.

    build_packages(dest) -> (without_bytecode, with_bytecode)

Lambda puts /var/task (the function) and /opt/python (the layer) on sys.path and nothing else; the
runtime's standard library has its own bytecode. So a child started with `python -S` (no
site-packages) and PYTHONPATH=<package> sees what a deployed function sees: the standard library
compiled, and our code plus its dependencies either compiled the way src/Makefile and the layer's
Makefile compile them (hash-based .pyc that are not checked against the source) or not at all,
which is what SAM's own Python builder ships, and what Lambda's read-only code path can never fix.

The dependencies are copied from this venv's installed distributions (their RECORD files, minus
__pycache__), following edge-router's runtime requirements with their markers: no network, and the
same versions the tests ran with.
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent


def runtime_distributions(root: str = "edge-router") -> list[metadata.Distribution]:
    """edge-router's runtime dependencies, transitively, without extras (what the layer holds)."""
    seen: dict[str, metadata.Distribution] = {}
    pending = [root]
    while pending:
        name = canonicalize_name(pending.pop())
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    seen.pop(canonicalize_name(root))
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


def build_packages(dest: Path) -> tuple[Path, Path]:
    """Two copies of the deployed code: (without bytecode, with hash-based bytecode)."""
    plain = dest / "package-source-only"
    plain.mkdir(parents=True)
    for dist in runtime_distributions():
        _copy_distribution(dist, plain)
    shutil.copytree(
        REPO / "src" / "edge_router", plain / "edge_router", ignore=shutil.ignore_patterns("__pycache__")
    )
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
