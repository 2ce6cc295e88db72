"""Validated read-modify-write of a config source: `edge-router flip` and `edge-router push`.

Everything here works on the RAW document, exactly as stored: `${VAR}` placeholders are never
substituted, so what is written back is what was there plus the change (CONTRACT section 2).

    update(source, change, validate=...)   read, apply `change`, validate, write; no lost update
    flip(source, app, priority)            update() with set_priority(), checked against the providers
    push(file, to_source, validate=...)    validate a local file, then replace the source with it
    read_versioned(source)                 the raw document and its version

After a write the CLI tells the fleet (`fleet.signal_fleet`: the state table's `er#config-version`
item for an `ssm:` source; a `dynamodb:` item's own `version` is bumped by the write itself) and,
with `--wait`, samples `/health` until instances report the new version (`fleet.wait_for_version`).

Each source kind has its own optimistic-concurrency protocol (a change is a pure function
document -> document, so it can be re-applied to a newer document when someone wrote in between):

* file (`.json`, `.yaml`, `.yml`): the version is the sha256 of the bytes. The write takes an
  exclusive `flock` on the file, re-reads it and compares the hash; when it still matches, the new
  content goes to a temporary file in the same directory that `os.replace` moves over the old one
  (readers see the old file or the new one, never a mix). A changed hash means re-read, re-apply.
* `ssm:NAME`: the version is the parameter's Version; see `ssm.SSMWriter` for the protocol.
* `dynamodb:TABLE/ID`: the item's numeric `version` attribute (0 when absent), bumped by a
  conditional UpdateItem; a failed condition means re-read, re-apply. The routers reload when it
  moves, so it only ever grows (push increments it too, and refuses a `version` that is no number).

A change that leaves an invalid document is refused before anything is written
(ConfigInvalidError; the one exception, an SSM change that only turns invalid on top of a
concurrent write, is undone and reported as WriteConflict: see `ssm.SSMWriter`). A source that
keeps changing under us raises WriteConflict after MAX_ATTEMPTS; a write the source refuses
(permissions, size limits) raises WriteError.
"""

from __future__ import annotations

from pathlib import Path

from ...exceptions import WriteConflict, WriteError
from ..sources import DynamoDBSource, FileSource, SSMSource, parse_source
from .base import Change, Document, Validate, Versioned, Writer
from .dynamodb import DynamoDBWriter
from .file import FileWriter, read_document
from .priority import GLOBAL_APPS, set_priority, validate_priority_document
from .ssm import SSMWriter

__all__ = [
    "GLOBAL_APPS",
    "Versioned",
    "WriteConflict",
    "WriteError",
    "flip",
    "push",
    "read_versioned",
    "set_priority",
    "update",
    "validate_priority_document",
    "writer_for",
]


def writer_for(source: str) -> Writer:
    """The writer for a SOURCE string (ValueError for a malformed one): the one dispatch on its kind."""
    target = parse_source(source)
    if isinstance(target, SSMSource):
        return SSMWriter(target.name)
    if isinstance(target, DynamoDBSource):
        return DynamoDBWriter(target.table, target.item_id)
    assert isinstance(target, FileSource)
    return FileWriter(target.path)


def read_versioned(source: str) -> Versioned:
    """The raw document at SOURCE and its version (ValueError for a malformed SOURCE)."""
    return writer_for(source).read()


def update(source: str, change: Change, *, validate: Validate) -> Versioned:
    """Read SOURCE, apply `change`, validate the result, write it without losing a concurrent change.

    `change` gets a private copy of the raw document and returns the new one; it may be called
    again on a newer document when someone else wrote in between, so it must be a pure function of
    its argument. `validate` raises (ConfigInvalidError, ideally) to refuse a document: nothing is
    written then. Returns the document written and the new version; when the change leaves the
    document as it was, nothing is written and `written` is False.
    Raises ConfigSourceError (cannot read), ConfigInvalidError, WriteConflict, WriteError;
    ValueError for a malformed SOURCE.
    """
    return writer_for(source).update(change, validate)


def flip(source: str, app: str, priority: str, *, validate: Validate | None = None) -> Versioned:
    """`edge-router flip APP PRIORITY --config SOURCE`: set_priority() through update().

    The whole result is checked with validate_priority_document(), then with `validate` if given.
    """

    def check(document: Document) -> None:
        validate_priority_document(document)
        if validate is not None:
            validate(document)

    return update(source, lambda document: set_priority(document, app, priority), validate=check)


def push(file_path: str, to_source: str, *, validate: Validate) -> Versioned:
    """`edge-router push FILE --to SOURCE`: validate FILE's raw document, then replace SOURCE with it.

    The write is unconditional (a push replaces whatever is there, creating the SSM parameter or
    DynamoDB item when absent) but still bumps the source's version, so a flip running at the same
    time notices it. A JSON file is sent byte for byte (as UTF-8 text) to SSM, DynamoDB (unless the
    item holds its document as a map, which is kept a map) and JSON files; a YAML file is converted
    to JSON for them (and a JSON file to YAML for a YAML file). Pushing a file onto itself writes
    nothing.
    """
    origin = Path(file_path)
    data, document = read_document(origin)
    validate(document)
    return writer_for(to_source).replace(document, data, origin)
