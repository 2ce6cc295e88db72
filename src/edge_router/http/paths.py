r"""Pure path handling: normalisation, prefix matching and upstream URL building.

The router matches on a *normalised* path and forwards that same path, so what was matched is
exactly what the backend sees. Normalisation is RFC 3986 section 6.2.2 and nothing more:

* percent-escapes of unreserved characters (``%41`` -> ``A``, ``%2E`` -> ``.``) are decoded, because
  they are the same resource to every conforming server; if they were not decoded, ``/%61pi`` would
  slip past a route for ``/api`` and ``/%2E%2E/`` past dot-segment removal;
* dot segments are removed (section 5.2.4), so ``..`` can never climb out of a route's target path;
* every other escape (``%2F``, ``%20``, ``%3F`` ...) is kept byte for byte: decoding ``%2F`` would
  change which resource is meant.

Bytes that may not appear raw in a request target (controls, space, non-ASCII) are percent-encoded.

Backends decode paths too, and some decode before they normalise, or decode twice (Python's
`http.server`, many static-file servers). So what is forwarded must not turn into a dot segment under
any decoding a backend may do:

* a ``%`` that starts no valid escape is a literal ``%`` and is forwarded as ``%25``; decoding the
  unreserved escapes can then never assemble a new escape (``%2%65`` is not ``%2e``);
* a path that, decoded once or twice, has a ``.`` or ``..`` segment (with ``/`` or ``\`` as the
  separator: ``%2F..%2F``, ``%252e%252e``, ``%5C..%5C``), or a ``..;`` segment (Tomcat and Jetty drop
  ``;`` parameters), is refused (`UnsafePath`, answered 400), never forwarded.
"""

from __future__ import annotations

import re

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SEPARATORS = re.compile(r"[/\\]")
_DECODINGS_CHECKED = 2  # a backend may decode once, or (a common bug) twice
# Characters allowed raw in a path (RFC 3986 pchar + "/"); anything else is escaped on the way out.
_PATH_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%")
_QUERY_SAFE = _PATH_SAFE | frozenset(b"?")
# One C-level scan decides whether anything needs escaping at all (it rarely does).
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]")
_QUERY_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%?]")


class UnsafePath(ValueError):
    """The path would escape a route's target path on a backend that decodes it (answered 400)."""


def _decode_unreserved(match: re.Match[str]) -> str:
    code = int(match.group(1), 16)
    return chr(code) if code in _UNRESERVED else match.group(0)


def _escape_unsafe(raw: str, safe: frozenset[int]) -> str:
    # `raw` holds one character per byte as received (latin-1), so each character is escaped as
    # exactly the byte the client sent: UTF-8 sent raw becomes its %XX form, never re-encoded.
    if (_PATH_UNSAFE if safe is _PATH_SAFE else _QUERY_UNSAFE).search(raw) is None:
        return raw
    return "".join(ch if ord(ch) in safe else f"%{ord(ch):02X}" for ch in raw)


def escape_query(raw: bytes) -> str:
    """The query string to forward: byte for byte, except bytes that may not appear raw in a URL."""
    text = raw.decode("latin-1")
    return _escape_unsafe(text, _QUERY_SAFE)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute path; empty segments (``//``) are kept."""
    segments = path.split("/")[1:]
    output: list[str] = []
    for segment in segments:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing_slash = bool(segments) and segments[-1] in (".", "..")
    result = "/" + "/".join(output)
    if trailing_slash and output:
        result += "/"
    return result


def normalize_path(raw_path: str) -> str:
    """The path the router matches on and forwards (see the module docstring).

    `raw_path` is the request target's path as received, one character per byte (latin-1).
    """
    if not raw_path.startswith("/"):
        raw_path = "/" + raw_path
    path = _escape_unsafe(raw_path, _PATH_SAFE)
    if "%" in path:
        path = _STRAY_PERCENT.sub("%25", path)
        path = _ESCAPE.sub(_decode_unreserved, path)
    if "/." in path:
        path = remove_dot_segments(path)
    if "%" in path or ";" in path:
        refuse_hidden_dot_segments(path)
    return path


def _has_dot_segment(text: str) -> bool:
    # `..;x` is `..` to servers that drop path parameters (Tomcat, Jetty)
    return any(segment.split(";", 1)[0] in (".", "..") for segment in _SEPARATORS.split(text))


def refuse_hidden_dot_segments(path: str) -> None:
    """Raise UnsafePath when `path` (normalised) or its first decodings hold a dot segment."""
    text = path
    for _ in range(_DECODINGS_CHECKED + 1):
        if _has_dot_segment(text):
            raise UnsafePath(f"The path {path} holds a dot segment once decoded (it could leave its route)")
        if "%" not in text:
            return
        text = _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text)


def prefix_matches(prefix: str, path: str) -> bool:
    """Segment-aware: ``/api`` matches ``/api`` and ``/api/x``, never ``/apix``.

    A prefix that ends in ``/`` matches by plain prefix (``/static/`` matches ``/static/a.css``).
    """
    if not path.startswith(prefix):
        return False
    return prefix.endswith("/") or len(path) == len(prefix) or path[len(prefix)] == "/"


def join_path(base: str, rest: str) -> str:
    """Append what followed the matched prefix to the target's own path, with exactly one ``/``."""
    if not rest:
        return base or "/"
    if not rest.startswith("/"):
        rest = "/" + rest
    return base.rstrip("/") + rest


def quote_path(path: str) -> str:
    """Re-escape a decoded path (for hosts that give no raw path); `%` itself is escaped."""
    from urllib.parse import quote

    return quote(path, safe="/:@!$&'()*+,;=")


def unquote_path(path: str) -> str:
    from urllib.parse import unquote

    return unquote(path)
