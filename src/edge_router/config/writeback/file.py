"""Write-back to a config file (`.json`, `.yaml`, `.yml`) with no lost update.

The version is the sha256 of the bytes. A write takes an exclusive `flock` on the file, re-reads it
and compares the hash; when it still matches, the new content goes to a temporary file in the same
directory that `os.replace` moves over the old one (readers see the old file or the new one, never
a mix). A changed hash means read again and re-apply the change.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ...exceptions import ConfigSourceError, WriteConflict, WriteError
from ..sources import is_yaml, parse_file, read_file
from .base import MAX_ATTEMPTS, Change, Document, Validate, Versioned, apply_change, require_object


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _real(path: Path) -> Path:
    # Write through a symlink to its target: os.replace on the link would replace the link itself.
    return Path(os.path.realpath(path))


def read_document(path: Path) -> tuple[bytes, Document]:
    """A file's bytes and its document, which must be an object (as the router would load it)."""
    data = read_file(path)
    return data, require_object(parse_file(path, data), str(path))


def _file_bytes(path: Path, document: Document) -> bytes:
    if is_yaml(path):
        import yaml

        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode("utf-8")
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


class FileWriter:
    def __init__(self, path: Path) -> None:
        self.given = path
        self.path = _real(path)
        self.where = str(path)

    def read(self) -> Versioned:
        data, document = read_document(self.path)
        return Versioned(document, _sha256(data), written=False)

    def update(self, change: Change, validate: Validate) -> Versioned:
        for _ in range(MAX_ATTEMPTS):
            data, base = read_document(self.path)
            new = apply_change(change, validate, base)
            if new == base:
                return Versioned(base, _sha256(data), written=False)
            payload = _file_bytes(self.path, new)
            with _locked(self.path) as fd:
                if fd is None:
                    raise ConfigSourceError(f"cannot write {self.given}: the file was removed")
                if _sha256(_read_fd(fd)) != _sha256(data):
                    continue  # someone wrote since we read: read again and re-apply the change
                _replace_file(self.path, payload, os.fstat(fd).st_mode & 0o7777)
            return Versioned(new, _sha256(payload))
        raise WriteConflict(f"{self.given} changed on each of {MAX_ATTEMPTS} attempts; nothing was written")

    def replace(self, document: Document, data: bytes, origin: Path) -> Versioned:
        """push: a same-format file is copied byte for byte, another format converted."""
        if self.path == _real(origin):
            return Versioned(document, _sha256(data), written=False)
        payload = data if is_yaml(self.path) == is_yaml(origin) else _file_bytes(self.path, document)
        with _locked(self.path) as fd:
            _replace_file(self.path, payload, os.fstat(fd).st_mode & 0o7777 if fd is not None else None)
        return Versioned(document, _sha256(payload))


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


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A new file in `path`'s directory (so os.replace is a rename), created 0o666 minus the umask."""
    while True:
        temp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp
        except FileExistsError:
            continue
