"""Validated read-modify-write of a config source: `edge-router flip` and `edge-router push`.

Everything here works on the RAW document, exactly as stored: `${VAR}` placeholders are never
substituted, so what is written back is what was there plus the change (CONTRACT section 2).

    update(source, change, validate=...)   read, apply `change`, validate, write; no lost update
    flip(source, app, priority)            update() with set_priority(), checked against the providers
    push(file, to_source, validate=...)    validate a local file, then replace the source with it
    read_versioned(source)                 the raw document and its version

Each source kind has its own optimistic-concurrency protocol (a change is a pure function
document -> document, so it can be re-applied to a newer document when someone wrote in between):

* file (`.json`, `.yaml`, `.yml`): the version is the sha256 of the bytes. The write takes an
  exclusive `flock` on the file, re-reads it and compares the hash; when it still matches, the new
  content goes to a temporary file in the same directory that `os.replace` moves over the old one
  (readers see the old file or the new one, never a mix). A changed hash means re-read, re-apply.
* `ssm:NAME`: the version is the parameter's Version; see `_SSMParameter` for the protocol.
* `dynamodb:TABLE/ID`: the item's numeric `version` attribute (0 when absent), bumped by a
  conditional UpdateItem; a failed condition means re-read, re-apply.

A change that leaves an invalid document is refused before anything is written
(ConfigInvalidError; the one exception, an SSM change that only turns invalid on top of a
concurrent write, is undone and reported as WriteConflict: see `_SSMParameter`). A source that
keeps changing under us raises WriteConflict after MAX_ATTEMPTS; a write the source refuses
(permissions, size limits) raises WriteError.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import ConfigError, ConfigInvalidError, ConfigSourceError
from ._sources import DynamoDBSource, FileSource, SSMSource, _plain, parse_source

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_ssm.client import SSMClient

Document = dict[str, Any]
Change = Callable[[Document], Document]
Validate = Callable[[Document], None]

MAX_ATTEMPTS = 5
GLOBAL_APPS = ("*", "global")  # `flip * 21` / `flip global 21` set global_priority
_DIGITS = "0123456789"


class WriteConflict(ConfigError):
    """The source kept changing while we tried to write; the message says what, if anything, is live."""


class WriteError(ConfigError):
    """The source refused the write (permissions, size limit, unwritable file)."""


@dataclass(frozen=True)
class Versioned:
    """A raw document and the source's version of it (`written` is False when a change was a no-op)."""

    document: dict[str, Any]
    version: str
    written: bool = True


# --------------------------------------------------------------------------------------------------
# the priority format (seed 003), pure functions on the raw document


def _priority_problem(field: str, value: Any, providers: set[str], *, allow_empty: bool) -> str | None:
    """One line naming what is wrong with one priority field, or None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return f"{field}: expected a string of provider digits such as '21', got {type(value).__name__}"
    text = str(value)
    if not text:
        return None if allow_empty else f"{field}: is empty; give at least one provider digit, e.g. '21'"
    reasons = []
    others = [char for char in dict.fromkeys(text) if char not in _DIGITS]
    if others:
        listed = ", ".join(repr(char) for char in others)
        reasons.append(f"{text!r} has non-digit character{'s' if len(others) > 1 else ''} {listed}")
    unknown = [char for char in dict.fromkeys(text) if char in _DIGITS and char not in providers]
    if unknown:
        listed = ", ".join(repr(char) for char in unknown)
        known = ", ".join(sorted(providers)) or "none"
        verb = "names" if len(unknown) == 1 else "name"
        noun = "digit" if len(unknown) == 1 else "digits"
        reasons.append(f"{noun} {listed} {verb} no provider (providers: {known})")
    return f"{field}: {'; '.join(reasons)}" if reasons else None


def _provider_keys(document: Document, problems: list[str]) -> set[str]:
    providers = document.get("providers")
    if not isinstance(providers, dict):
        problems.append(
            'providers: expected an object mapping digits to URLs, e.g. {"1": "https://..."} '
            "(the priority format, seed 003)"
        )
        return set()
    # YAML reads an unquoted `1:` as the integer 1; the router looks providers up by the character.
    # A provider whose URL is a ${VAR} placeholder exists: it resolves when the config is loaded.
    return {str(key) for key in providers}


def validate_priority_document(document: dict[str, Any]) -> None:
    """Check that every priority (global and per app) names only existing providers.

    Raises ConfigInvalidError with one line per bad field. An empty or absent per-app priority is
    accepted: as in seed 003 the app then uses `global_priority`.
    """
    if not isinstance(document, dict):
        raise ConfigInvalidError([f"(document): expected a JSON object, got {type(document).__name__}"])
    problems: list[str] = []
    providers = _provider_keys(document, problems)
    checked = bool(providers) or not problems  # with no providers object, every digit would be noise
    if "global_priority" in document and checked:
        problem = _priority_problem(
            "global_priority", document["global_priority"], providers, allow_empty=True
        )
        if problem:
            problems.append(problem)
    routes = document.get("routes", {})
    if not isinstance(routes, dict):
        problems.append("routes: expected an object keyed by app name (the priority format, seed 003)")
    else:
        for app, entry in routes.items():
            if not isinstance(entry, dict):
                problems.append(f'routes.{app}: expected an object such as {{"priority": "21"}}')
            elif "priority" in entry and checked:
                problem = _priority_problem(
                    f"routes.{app}.priority", entry["priority"], providers, allow_empty=True
                )
                if problem:
                    problems.append(problem)
    if problems:
        raise ConfigInvalidError(problems)


def set_priority(document: dict[str, Any], app: str, priority: str) -> dict[str, Any]:
    """A new document (deep copy) with APP's priority set; `app` "*" or "global" sets global_priority.

    Creates `routes` and `routes[app]` when absent (new apps go last); every other key, placeholders
    included, is kept verbatim and in order. Raises ConfigInvalidError naming the field when the
    priority is empty, has a non-digit, or has a digit that names no key of `providers`.
    """
    if not isinstance(document, dict):
        raise ConfigInvalidError([f"(document): expected a JSON object, got {type(document).__name__}"])
    if not isinstance(app, str) or not app or "/" in app:
        raise ConfigInvalidError(
            [f"app: {app!r} is not an app name (the first path segment, e.g. 'task'), '*' or 'global'"]
        )
    is_global = app in GLOBAL_APPS
    field = "global_priority" if is_global else f"routes.{app}.priority"
    problems: list[str] = []
    providers = _provider_keys(document, problems)
    if not problems:
        problem = _priority_problem(field, priority, providers, allow_empty=False)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigInvalidError(problems)
    result = copy.deepcopy(document)
    if is_global:
        result["global_priority"] = priority
        return result
    routes = result.setdefault("routes", {})
    if not isinstance(routes, dict):
        raise ConfigInvalidError(
            ["routes: is a list here; flip sets priorities in the priority format (seed 003) only"]
        )
    entry = routes.get(app)
    if entry is None:
        routes[app] = {"priority": priority}
    elif isinstance(entry, dict):
        entry["priority"] = priority
    else:
        raise ConfigInvalidError([f'routes.{app}: expected an object such as {{"priority": "21"}}'])
    return result


# --------------------------------------------------------------------------------------------------
# public entry points


def read_versioned(source: str) -> Versioned:
    """The raw document at SOURCE and its version (ValueError for a malformed SOURCE)."""
    target = parse_source(source)
    if isinstance(target, SSMSource):
        return _SSMParameter(target.name).read()
    if isinstance(target, DynamoDBSource):
        current = _DynamoItem(target.table, target.item_id).read()
        return Versioned(current.document, str(current.version), written=False)
    assert isinstance(target, FileSource)
    path = _real(target.path)
    data, document = _read_file(path)
    return Versioned(document, _sha256(data), written=False)


def update(
    source: str, change: Callable[[dict[str, Any]], dict[str, Any]], *, validate: Validate
) -> Versioned:
    """Read SOURCE, apply `change`, validate the result, write it without losing a concurrent change.

    `change` gets a private copy of the raw document and returns the new one; it may be called
    again on a newer document when someone else wrote in between, so it must be a pure function of
    its argument. `validate` raises (ConfigInvalidError, ideally) to refuse a document: nothing is
    written then. Returns the document written and the new version; when the change leaves the
    document as it was, nothing is written and `written` is False.
    Raises ConfigSourceError (cannot read), ConfigInvalidError, WriteConflict, WriteError;
    ValueError for a malformed SOURCE.
    """
    target = parse_source(source)
    if isinstance(target, SSMSource):
        return _SSMParameter(target.name).update(change, validate)
    if isinstance(target, DynamoDBSource):
        return _DynamoItem(target.table, target.item_id).update(change, validate)
    assert isinstance(target, FileSource)
    return _update_file(target.path, change, validate)


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
    source_path = Path(file_path)
    data, document = _read_file(source_path)
    validate(document)
    target = parse_source(to_source)
    if isinstance(target, FileSource):
        return _push_file(source_path, data, document, target.path)
    if not _is_yaml(source_path):
        text = data.decode("utf-8")  # checked by _read_file
    else:
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if isinstance(target, SSMSource):
        return _SSMParameter(target.name).replace(document, text)
    assert isinstance(target, DynamoDBSource)
    return _DynamoItem(target.table, target.item_id).replace(document, text)


# --------------------------------------------------------------------------------------------------
# shared helpers


def _apply(change: Change, validate: Validate, base: Document) -> Document:
    new = change(copy.deepcopy(base))  # the change may mutate its argument; `base` stays intact
    if not isinstance(new, dict):
        raise ConfigInvalidError([f"(document): the change returned {type(new).__name__}, not an object"])
    validate(new)
    return new


def _parse_json_text(text: str | bytes, where: str) -> Document:
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigInvalidError([f"(document): {where} is not valid JSON: {exc}"]) from None
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise ConfigInvalidError([f"(document): {where}: expected a JSON object, got {kind}"])
    return document


def _json_like(document: Document, like: str) -> str:
    """JSON for SSM/DynamoDB in the stored text's style: pretty when it was multi-line, else one line."""
    if "\n" in like.strip():
        return json.dumps(document, indent=2, ensure_ascii=False) + ("\n" if like.endswith("\n") else "")
    return json.dumps(document, ensure_ascii=False)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# --------------------------------------------------------------------------------------------------
# files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def _real(path: Path) -> Path:
    # Write through a symlink to its target: os.replace on the link would replace the link itself.
    return Path(os.path.realpath(path))


def _parse_file(path: Path, data: bytes) -> Document:
    if not _is_yaml(path):
        # decoded as the router's own file reader does: strict UTF-8, so a file it could not load
        # (UTF-16, a byte-order mark) is refused here too
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigInvalidError([f"(document): {path} is not UTF-8: {exc}"]) from None
        return _parse_json_text(text, str(path))
    import yaml

    try:
        document = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigInvalidError([f"(document): {path} is not valid YAML: {exc}"]) from None
    if not isinstance(document, dict):
        raise ConfigInvalidError([f"(document): {path}: expected a mapping, got {type(document).__name__}"])
    return document


def _read_file(path: Path) -> tuple[bytes, Document]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigSourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    return data, _parse_file(path, data)


def _file_bytes(path: Path, document: Document) -> bytes:
    if _is_yaml(path):
        import yaml

        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode("utf-8")
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


@contextmanager
def _locked(path: Path) -> Iterator[int | None]:
    """An exclusive flock on the file now at `path`: yields its descriptor, or None when there is none.

    The lock is on the file itself (no lock file is left behind). Since each write replaces the file
    with a new one, a writer that waited on the lock of a file that has since been replaced locks
    the new file instead: the check after flock makes every writer lock the file currently in place.
    """
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                continue
            held = os.fstat(fd)
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                yield fd
                return
        finally:
            os.close(fd)  # also releases the lock
    raise WriteConflict(f"{path} was replaced 100 times while waiting for its lock")


def _read_fd(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _replace_file(path: Path, data: bytes, mode: int | None) -> None:
    """Write `data` to a temporary file beside `path`, then move it over `path` in one step.

    `mode` is the replaced file's permission bits; a new file gets the usual 0o666 minus the umask.
    """
    try:
        fd, temp = _temporary_beside(path)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    with suppress(OSError):  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _update_file(given: Path, change: Change, validate: Validate) -> Versioned:
    path = _real(given)
    for _ in range(MAX_ATTEMPTS):
        data, base = _read_file(path)
        new = _apply(change, validate, base)
        if new == base:
            return Versioned(base, _sha256(data), written=False)
        payload = _file_bytes(path, new)
        with _locked(path) as fd:
            if fd is None:
                raise ConfigSourceError(f"cannot write {given}: the file was removed")
            if _sha256(_read_fd(fd)) != _sha256(data):
                continue  # someone wrote since we read: read again and re-apply the change
            _replace_file(path, payload, os.fstat(fd).st_mode & 0o7777)
        return Versioned(new, _sha256(payload))
    raise WriteConflict(f"{given} changed on each of {MAX_ATTEMPTS} attempts; nothing was written")


def _push_file(source_path: Path, data: bytes, document: Document, given: Path) -> Versioned:
    path = _real(given)
    if path == _real(source_path):
        return Versioned(document, _sha256(data), written=False)
    payload = data if _is_yaml(path) == _is_yaml(source_path) else _file_bytes(path, document)
    with _locked(path) as fd:
        _replace_file(path, payload, os.fstat(fd).st_mode & 0o7777 if fd is not None else None)
    return Versioned(document, _sha256(payload))


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A new file in `path`'s directory (so os.replace is a rename), created 0o666 minus the umask."""
    while True:
        temp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp
        except FileExistsError:
            continue


# --------------------------------------------------------------------------------------------------
# SSM Parameter Store


class _SSMParameter:
    """Read-modify-write of one SSM parameter holding JSON.

    SSM has no compare-and-set, but it numbers a parameter's versions one by one and PutParameter
    answers with the number of the version it created. So a write can be checked after the fact:

    1. Read the parameter (text T at version K), apply the change, validate.
    2. Read the current version again; if it moved past K, someone wrote meanwhile: take theirs as
       the new base and go back to applying the change. Nothing of ours has been written yet.
    3. PutParameter. If it answers K+1, no version came between our base and our write: it is
       exactly what a compare-and-set on K would have written. Done.
    4. If it answers N > K+1, versions K+1..N-1 are someone else's and ours (built on K) now hides
       them. Read version N-1 (`NAME:N-1`), re-apply the same change on it, validate, and write
       again; that write must come back as N+1, i.e. with nothing but our own superseded version
       between its base and itself. Then the latest version holds their change and ours: the
       concurrent change was hidden for one round trip, never lost. If it answers higher still,
       repeat from 4 (bounded by MAX_ATTEMPTS, then WriteConflict).

    If our change is invalid on top of theirs, the text of version N-1 is written back verbatim
    (their document is live again, without our change) and WriteConflict says so.

    What this cannot close, for want of a compare-and-set in SSM: during the round trip between a
    superseded write (step 4) and its repair, the live parameter lacks the other change, so a
    router refreshing in exactly that window keeps it until its next refresh or cache-flush, and a
    third writer that reads that very version and builds on it makes the hidden change unrecoverable.
    Both need writers racing within milliseconds of each other (step 2 keeps the window to the
    PutParameter round trip). Writers not following this protocol (the console, `aws ssm
    put-parameter`) are kept when they write before our PutParameter; after it, they replace ours,
    as a plain put does. DynamoDB sources have a real conditional write and none of these limits.
    """

    def __init__(self, name: str) -> None:
        import boto3

        self.name = name
        self.where = f"ssm:{name}"
        self.client: SSMClient = boto3.client("ssm")

    def _get(self, selector: str) -> tuple[str, int, str]:
        """(text, version, type) of `selector` (the name, or `name:version`)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            parameter = self.client.get_parameter(Name=selector, WithDecryption=True)["Parameter"]
        except ClientError as exc:
            if _error_code(exc) in ("ParameterNotFound", "ParameterVersionNotFound"):
                raise ConfigSourceError(f"cannot read ssm:{selector}: no such parameter") from None
            raise ConfigSourceError(f"cannot read ssm:{selector}: {exc}") from None
        except BotoCoreError as exc:
            raise ConfigSourceError(f"cannot read ssm:{selector}: {exc}") from None
        return parameter["Value"], int(parameter["Version"]), str(parameter["Type"])

    def read(self) -> Versioned:
        text, version, _ = self._get(self.name)
        return Versioned(_parse_json_text(text, self.where), str(version), written=False)

    def _put_args(self, parameter_type: str | None) -> dict[str, Any]:
        """What PutParameter needs to keep the parameter as it is: type, KMS key, tier, description."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = self.client.describe_parameters(
                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [self.name]}]
            )["Parameters"]
        except (ClientError, BotoCoreError) as exc:
            if parameter_type == "SecureString":
                raise WriteError(
                    f"cannot write {self.where}: its KMS key could not be read (ssm:DescribeParameters: "
                    f"{exc}); refusing to re-encrypt it with another key"
                ) from None
            return {"Type": parameter_type or "String", "Overwrite": parameter_type is not None}
        if not found:
            return {"Type": parameter_type or "String", "Overwrite": parameter_type is not None}
        described: dict[str, Any] = dict(found[0])
        args: dict[str, Any] = {"Type": parameter_type or described.get("Type", "String"), "Overwrite": True}
        if args["Type"] == "SecureString" and described.get("KeyId"):
            args["KeyId"] = described["KeyId"]
        for key in ("Tier", "Description", "DataType", "AllowedPattern"):
            if described.get(key):
                args[key] = described[key]
        return args

    def _put(self, text: str, args: dict[str, Any]) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return int(self.client.put_parameter(Name=self.name, Value=text, **args)["Version"])
        except ClientError as exc:
            raise WriteError(f"cannot write {self.where}: {exc}") from None
        except BotoCoreError as exc:
            raise WriteError(f"cannot write {self.where}: {exc}") from None

    def update(self, change: Change, validate: Validate) -> Versioned:
        base_text, known, parameter_type = self._get(self.name)
        base = _parse_json_text(base_text, self.where)
        new = _apply(change, validate, base)
        if new == base:
            return Versioned(base, str(known), written=False)
        args = self._put_args(parameter_type)
        superseded = False  # True once a write of ours landed on top of someone else's version
        for _ in range(MAX_ATTEMPTS):
            if not superseded:
                latest_text, latest, _ = self._get(self.name)
                if latest != known:  # step 2: someone wrote since we read; nothing of ours is out
                    base_text, base, known = latest_text, _parse_json_text(latest_text, self.where), latest
                    new = _apply(change, validate, base)
                    if new == base:
                        return Versioned(base, str(known), written=False)
                    continue
            written = self._put(_json_like(new, base_text), args)
            if written == known + 1:
                return Versioned(new, str(written))
            # step 4: versions known+1 .. written-1 are someone else's; rebase on the one below ours
            superseded = True
            below = written - 1
            base_text, _, _ = self._get(f"{self.name}:{below}")
            base = _parse_json_text(base_text, f"{self.where}:{below}")
            known = written
            try:
                new = _apply(change, validate, base)
            except Exception as exc:
                restored = self._put(base_text, args)
                outcome = (
                    f"version {below} was written back as version {restored}, without this change"
                    if restored == known + 1
                    else f"writing version {below} back landed as version {restored} after another "
                    f"write; check the parameter's history"
                )
                raise WriteConflict(
                    f"{self.where}: a concurrent change (version {below}) makes this change invalid: "
                    f"{exc}; {outcome}"
                ) from exc
        if superseded:
            raise WriteConflict(
                f"{self.where} changed on each of {MAX_ATTEMPTS} attempts; the live version {known} "
                f"(this change) may lack a concurrent change: check the parameter's history"
            )
        raise WriteConflict(f"{self.where} changed on each of {MAX_ATTEMPTS} attempts; nothing was written")

    def replace(self, document: Document, text: str) -> Versioned:
        """push: write `text` whatever is there, keeping the type/key/tier of an existing parameter."""
        try:
            _, _, parameter_type = self._get(self.name)
        except ConfigSourceError as exc:
            if "no such parameter" not in str(exc):
                raise
            parameter_type = None
        return Versioned(document, str(self._put(text, self._put_args(parameter_type))))


# --------------------------------------------------------------------------------------------------
# DynamoDB


@dataclass(frozen=True)
class _Item:
    document: Document
    version: int
    has_version: bool
    value: Any  # the stored `value` attribute: a JSON string, or a map holding the document


def _dynamo_value(document: Document) -> Any:
    """A document as a DynamoDB map (numbers must be Decimal for boto3)."""
    return json.loads(json.dumps(document), parse_float=Decimal, parse_int=Decimal)


class _DynamoItem:
    """The item {id, value, version} in TABLE; writes are conditional on the version read.

    The condition is `#version = :read` when the item has a version, and
    `attribute_not_exists(#version) AND #value = :read_value` when it has none yet (an item written
    by hand or by the seed's tooling): a plain PutItem that dropped or never set the version is
    then still noticed, which `attribute_not_exists(version) OR version = :v` would miss.
    """

    def __init__(self, table: str, item_id: str) -> None:
        import boto3

        self.item_id = item_id
        self.where = f"dynamodb:{table}/{item_id}"
        self.table: Table = boto3.resource("dynamodb").Table(table)

    def _fetch(self) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.table.get_item(Key={"id": self.item_id}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise ConfigSourceError(f"cannot read {self.where}: {exc}") from None
        item = answer.get("Item")
        return dict(item) if item is not None else None

    def read(self) -> _Item:
        item = self._fetch()
        if item is None:
            raise ConfigSourceError(f"cannot read {self.where}: no such item")
        value = item.get("value")
        if isinstance(value, str | bytes):
            document = _parse_json_text(value, self.where)
        elif isinstance(value, dict):
            document = _plain(value)
        else:
            raise ConfigInvalidError([f"(document): {self.where}: attribute value holds no JSON document"])
        version = item.get("version")
        has_version = isinstance(version, Decimal | int)
        return _Item(document, int(version) if has_version else 0, has_version, value)  # type: ignore[arg-type]

    def _stored(self, document: Document, like: Any) -> Any:
        if isinstance(like, dict):
            return _dynamo_value(document)
        return _json_like(document, like.decode() if isinstance(like, bytes) else str(like))

    def update(self, change: Change, validate: Validate) -> Versioned:
        from botocore.exceptions import BotoCoreError, ClientError

        for _ in range(MAX_ATTEMPTS):
            current = self.read()
            new = _apply(change, validate, current.document)
            if new == current.document:
                return Versioned(current.document, str(current.version), written=False)
            names = {"#value": "value", "#version": "version"}
            values: dict[str, Any] = {
                ":value": self._stored(new, current.value),
                ":next": current.version + 1,
            }
            if current.has_version:
                condition = "#version = :read"
                values[":read"] = current.version
            else:
                condition = "attribute_not_exists(#version) AND #value = :read"
                values[":read"] = current.value
            try:
                self.table.update_item(
                    Key={"id": self.item_id},
                    UpdateExpression="SET #value = :value, #version = :next",
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
            except ClientError as exc:
                if _error_code(exc) == "ConditionalCheckFailedException":
                    continue  # someone wrote since we read: read again and re-apply the change
                raise WriteError(f"cannot write {self.where}: {exc}") from None
            except BotoCoreError as exc:
                raise WriteError(f"cannot write {self.where}: {exc}") from None
            return Versioned(new, str(current.version + 1))
        raise WriteConflict(f"{self.where} changed on each of {MAX_ATTEMPTS} attempts; nothing was written")

    def replace(self, document: Document, text: str) -> Versioned:
        """push: set the value whatever is there (creating the item), bumping the version."""
        from botocore.exceptions import BotoCoreError, ClientError

        existing = self._fetch()
        keep_map = existing is not None and isinstance(existing.get("value"), dict)
        try:
            answer = self.table.update_item(
                Key={"id": self.item_id},
                UpdateExpression="SET #value = :value, #version = if_not_exists(#version, :zero) + :one",
                ExpressionAttributeNames={"#value": "value", "#version": "version"},
                ExpressionAttributeValues={
                    ":value": _dynamo_value(document) if keep_map else text,
                    ":zero": 0,
                    ":one": 1,
                },
                ReturnValues="UPDATED_NEW",
            )
        except (ClientError, BotoCoreError) as exc:
            raise WriteError(f"cannot write {self.where}: {exc}") from None
        version = answer.get("Attributes", {}).get("version", 0)
        return Versioned(document, str(int(version)))  # type: ignore[arg-type]
