"""A backend's absolute redirect, turned back into a path under the route (CONTRACT section 3).

The router sends `Host: <target's host>`, so a backend that builds absolute URLs from its Host
answers `Location: http://backend:8080/v1/users/7`: followed as it is, the client would go around
the router, straight to an address it should never learn (and often cannot reach). nginx solves this
with `proxy_redirect default`: a `Location` / `Content-Location` that starts with the upstream URL
is rewritten to start with the location's prefix. This is the same rule, on parsed URLs:

* the value points at the target's origin: same scheme and host (case-insensitively) and port (an
  explicit default port is the same as none; an empty port is the default port, RFC 3986 6.2.3).
  A scheme-relative `//backend:8080/v1/x` counts too, read with the target's scheme, since that is
  how the backend itself would resolve it. Userinfo (`http://u@backend/`) never matches;
* its path is under the target's base path, segment-wise: base `/v1` covers `/v1` and `/v1/x`, never
  `/v1x`; a base of `` or `/` covers every path;
* then the origin and base path are replaced by the route's prefix (`prefix` + the rest, with one
  `/` between them however the prefix ends; the prefix alone when nothing follows the base path, `/`
  when the prefix is empty too), and the query and fragment are kept as they were.

The result is a path-absolute reference (`/api/users/7`), which clients resolve against the URL they
asked the router for; no Host or scheme of the client's is trusted to build an absolute one.

For a route that forwards the whole path (the priority format, `strip_prefix=False`), the client's
path is the upstream path minus the base path: the caller passes `prefix=""`.

Everything else passes byte for byte: other hosts, relative references, anything that does not parse
(`lambda:` targets included) or is not UTF-8, and a rewrite whose result a browser would read as a
host (`//evil.example/x` or `/\\evil.example`, from a backend path such as `/v1//evil.example` behind
an empty prefix) or that contains control characters: the backend's own value stays, rather than an
open redirect made by the router.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..types import Header

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAMES = frozenset({b"location", b"content-location"})
_NAME_LENGTHS = frozenset(len(name) for name in _NAMES)
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+.-")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")

Authority = tuple[str, int]  # (lower-case host, port with the scheme's default filled in)


def _authority(scheme: str, text: str) -> Authority | None:
    """`host[:port]` as (host, port), or None when it has userinfo or a port that is not a number."""
    if "@" in text:
        return None
    if text.startswith("["):
        host, bracket, port_text = text.partition("]")
        host += bracket
        if port_text and not port_text.startswith(":"):
            return None
        port_text = port_text[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        return None
    if not port_text:
        default = _DEFAULT_PORTS.get(scheme)
        return None if default is None else (host.lower(), default)
    if not (port_text.isascii() and port_text.isdigit()):
        return None
    return host.lower(), int(port_text)


@lru_cache(maxsize=256)
def _target(origin: str) -> tuple[str, Authority] | None:
    """The target's (scheme, authority), or None for an origin that is not http(s)://host[:port]."""
    scheme, sep, rest = origin.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS or any(ch in rest for ch in "/?#"):
        return None
    authority = _authority(scheme, rest)
    return None if authority is None else (scheme, authority)


def _split(text: str, default_scheme: str) -> tuple[str, str, str] | None:
    """(scheme, authority, path-and-rest) of an absolute or scheme-relative URL, else None."""
    if text.startswith("//"):
        scheme, rest = default_scheme, text[2:]
    else:
        scheme, sep, rest = text.partition("://")
        scheme = scheme.lower()
        if not sep or not scheme or not scheme[0].isalpha() or not set(scheme) <= _SCHEME_CHARS:
            return None
    end = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if 0 <= found < end:
            end = found
    return scheme, rest[:end], rest[end:]


def _rebased(path_and_rest: str, base_path: str, prefix: str) -> str | None:
    """`prefix` + what follows `base_path` (query and fragment kept), or None when not under it."""
    end = len(path_and_rest)
    for mark in "?#":
        found = path_and_rest.find(mark)
        if 0 <= found < end:
            end = found
    path, tail = path_and_rest[:end], path_and_rest[end:]
    base = base_path.rstrip("/")
    if path != base and not path.startswith(base + "/"):
        return None
    rest = path[len(base) :]
    new_path = prefix.rstrip("/") + rest if rest else (prefix or "/")
    if new_path[1:2] in ("/", "\\"):
        return None  # `//host/...` or `/\host/...`: a browser would leave for another host
    return new_path + tail


def rewrite_location(value: bytes, *, origin: str, base_path: str, prefix: str) -> bytes:
    """`value` (a Location or Content-Location) rewritten to a path under `prefix` when it points at
    `origin` under `base_path`; otherwise `value` itself, byte for byte."""
    target = _target(origin)
    if target is None:
        return value
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return value
    if _SPACE_OR_CONTROL.search(text):
        return value  # whitespace or controls: browsers strip them, so the result could mean anything
    parts = _split(text, target[0])
    if parts is None:
        return value
    scheme, authority_text, path_and_rest = parts
    if scheme != target[0] or _authority(scheme, authority_text) != target[1]:
        return value
    rebased = _rebased(path_and_rest, base_path, prefix)
    return value if rebased is None else rebased.encode()


def rewrite_response_locations(
    headers: list[Header], *, origin: str, base_path: str, prefix: str
) -> list[Header]:
    """`headers` with their Location and Content-Location values rewritten (`rewrite_location`):
    the same list object when nothing changed (most answers carry neither), else a new list."""
    result = headers
    for index, (name, value) in enumerate(headers):
        if len(name) in _NAME_LENGTHS and name.lower() in _NAMES:
            new = rewrite_location(value, origin=origin, base_path=base_path, prefix=prefix)
            if new != value:
                if result is headers:
                    result = list(headers)
                result[index] = (name, new)
    return result
