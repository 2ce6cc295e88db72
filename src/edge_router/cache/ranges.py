"""Serving a byte range of a stored whole answer (RFC 9110 14): `Range: bytes=0-1` on a cached
200 is answered 206 from the cache instead of sending the whole body or asking the backend.

Only one range is served; a request for several ranges gets the whole answer (RFC 9110 14.2
allows a server to ignore Range), as does a range whose `If-Range` does not match the entry.
"""

from __future__ import annotations

import re

_ONE_RANGE = re.compile(r"bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.I)

# (first, last) inclusive; UNSATISFIABLE: answer 416; None: ignore the Range header
UNSATISFIABLE = (-1, -1)


def byte_range(header: str, length: int) -> tuple[int, int] | None:
    """The single byte range `header` asks of a body of `length` bytes."""
    match = _ONE_RANGE.fullmatch(header.strip())
    if match is None:
        return None  # several ranges, another unit, or not a range at all
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0:
            return UNSATISFIABLE
        return (max(0, length - suffix), length - 1) if length else UNSATISFIABLE
    start = int(first)
    end = min(int(last), length - 1) if last else length - 1
    if last and int(last) < start:
        return None  # invalid: ignored (RFC 9110 14.1.1)
    if start >= length:
        return UNSATISFIABLE
    return start, end
