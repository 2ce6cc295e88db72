"""What every write-back target shares: the versioned result, the change contract, the checks.

    class Writer(Protocol):
        where: str                                      # how messages name the source
        def read(self) -> Versioned                      # the raw document and its version
        def update(self, change, validate) -> Versioned  # read-modify-write, no lost update
        def replace(self, document, data, origin) -> Versioned  # push: write whatever is there

A change is a pure function document -> document (it may be applied again to a newer document
when someone wrote in between); `validate` raises (ConfigInvalidError) to refuse a document, and
then nothing is written. Each source kind keeps its own optimistic-concurrency protocol.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...exceptions import ConfigInvalidError

Document = dict[str, Any]
Change = Callable[[Document], Document]
Validate = Callable[[Document], None]

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Versioned:
    """A raw document and the source's version of it (`written` is False when a change was a no-op)."""

    document: dict[str, Any]
    version: str
    written: bool = True


class Writer(Protocol):
    where: str

    def read(self) -> Versioned: ...

    def update(self, change: Change, validate: Validate) -> Versioned: ...

    def replace(self, document: Document, data: bytes, origin: Path) -> Versioned: ...


def apply_change(change: Change, validate: Validate, base: Document) -> Document:
    new = change(copy.deepcopy(base))  # the change may mutate its argument; `base` stays intact
    if not isinstance(new, dict):
        raise ConfigInvalidError([f"(document): the change returned {type(new).__name__}, not an object"])
    validate(new)
    return new


def require_object(document: Any, where: str) -> Document:
    if not isinstance(document, dict):
        raise ConfigInvalidError([f"(document): {where}: expected an object, got {type(document).__name__}"])
    return document


def json_like(document: Document, like: str) -> str:
    """JSON for SSM/DynamoDB in the stored text's style: pretty when it was multi-line, else one line."""
    if "\n" in like.strip():
        return json.dumps(document, indent=2, ensure_ascii=False) + ("\n" if like.endswith("\n") else "")
    return json.dumps(document, ensure_ascii=False)


def pushed_text(document: Document, data: bytes, origin: Path) -> str:
    """What `push` stores in SSM or DynamoDB: a JSON file's text as it is, a YAML file as JSON."""
    from ..sources import is_yaml

    if is_yaml(origin):
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return data.decode("utf-8")  # parse_file has checked it is UTF-8
