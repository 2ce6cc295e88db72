"""Pure header decisions for the proxy: what goes upstream, what comes back, what is refused.

Request headers arrive decoded once (`context.RequestContext.headers`: names lower-case, values
UTF-8 with `surrogateescape`); the backend's answer stays bytes end to end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ..types import RawHeaders

# RFC 9110 7.6.1, plus the proxy-auth pair: RFC 9110 11.7.2 says Proxy-Authorization is meant
# for the first proxy that asks for it, so a proxy that consumes none must not pass the client's
# proxy credentials to a backend (Go's httputil drops both; nginx 1.22 forwards them).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the router from what it knows, never taken from the client: a client could otherwise
# tell the backend it came over https or from another host. `Expect: 100-continue` was answered
# by the router's own server when the body was first read; forwarded, it would make the upstream
# client wait for a 100 that a backend may never send (nginx does not forward it either).
_REPLACED = frozenset({"host", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "expect"})
_HOP_BY_HOP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP)

# Field values a backend may not send (RFC 9110 5.5: CTLs other than HTAB, and DEL).
_INVALID_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token; always fullmatch (`$` allows a "\n")

Decoded = Sequence[tuple[str, str]]


class InvalidHeader(ValueError):
    """A request header the router cannot forward as it was sent (answered 400)."""


def framing_problem(headers: Decoded, http_version: str) -> tuple[int, str] | None:
    """(status, message) when a request's framing headers are not acceptable (RFC 9112), else None.

    * HTTP/1.1 needs exactly one Host (section 3.2): none or two is 400;
    * the only transfer coding a request may use is `chunked`, alone (section 6.1: a server that
      does not understand a coding answers 501); `identity, chunked` or `gzip, chunked` is 501.
    """
    hosts = 0
    codings: list[str] = []
    for name, value in headers:
        if name == "host":
            hosts += 1
        elif name == "transfer-encoding":
            codings.extend(token.strip().lower() for token in value.split(","))
    if http_version == "1.1" and hosts != 1:
        return 400, "An HTTP/1.1 request needs exactly one Host header" + (f", not {hosts}" if hosts else "")
    if codings and codings != ["chunked"]:
        return 501, f"Transfer-Encoding '{', '.join(codings)}' is not supported; only 'chunked' is"
    return None


def valid_response_head(status: int, headers: RawHeaders) -> str | None:
    """Why a backend's answer cannot be relayed as it is (then 502), or None.

    A status outside 200-599 (interim 1xx answers are relayed before the final one; a final 101 is
    checked by the HTTP client as a 200, and the pipeline refuses it unless the request asked to
    upgrade) or a header name that is not a token or a value with control characters would make
    the server drop the client connection with no answer at all.
    """
    if not 200 <= status <= 599:
        return f"the backend answered with status {status}"
    # One scan over all names and one over all values: this runs on every proxied answer.
    if _TOKEN.fullmatch(b"".join(name for name, _ in headers) or b"x") and not _INVALID_VALUE.search(
        b"\t".join(value for _, value in headers)
    ):
        return None
    for name, value in headers:
        if _INVALID_VALUE.search(value) or not _TOKEN.fullmatch(name):
            return f"the backend sent an invalid header {name[:64].decode('latin-1')!r}"
    return None


def connection_listed(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Names listed in Connection headers: hop-by-hop for this hop only (RFC 9110 7.6.1)."""
    names: set[str] = set()
    for name, value in headers:
        if name == "connection":
            names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return frozenset(names)


def via_count(value: str | None, pseudonym: str) -> int:
    """How many hops in a Via header are this router (counted by pseudonym)."""
    if not value:
        return 0
    return sum(1 for hop in value.split(",") if hop.strip().split(" ", 2)[1:2] == [pseudonym])


def append_forwarded_for(existing: str | None, client: str | None) -> str | None:
    """X-Forwarded-For with the client address at the end exactly once.

    Lambda function URLs already append the caller's address; appending it again would make a
    single hop look like two.
    """
    if not client:
        return existing
    if not existing:
        return client
    if existing.rsplit(",", 1)[-1].strip() == client:
        return existing
    return f"{existing}, {client}"


def upstream_request_headers(
    incoming: Decoded,
    *,
    client: str | None,
    scheme: str,
    request_id: str,
    via: str,
    keep_content_length: bool,
    hidden: frozenset[str] = frozenset(),
    utf8_only: bool = False,
    upgrade: str | None = None,
) -> list[tuple[str, str]]:
    """The headers sent to the backend, but `Host` (the attempt adds its target's): end-to-end ones
    as sent, plus the proxy's own.

    Values travel byte for byte: the HTTP client writes them back with `surrogateescape`, so obs-text
    and bytes that are not UTF-8 arrive as the client sent them. With `utf8_only` (a Lambda Invoke
    target: its event is JSON text) a value that is not UTF-8 cannot be carried as sent: refused
    (InvalidHeader), never altered. `hidden` names headers a guard consumed (an API key the route
    does not forward). `upgrade` (a request to upgrade the connection that the host can splice)
    keeps `Connection: upgrade` and the `Upgrade` header, which are otherwise hop-by-hop.
    """
    drop = HOP_BY_HOP | _REPLACED | connection_listed(incoming)
    if hidden:
        drop |= hidden
    out: list[tuple[str, str]] = []
    forwarded_for: str | None = None
    original_host = ""
    existing_via: str | None = None
    for name, value in incoming:
        if utf8_only and not value.isascii():
            _check_utf8(name, value)
        if name == "host":
            original_host = value
        elif name == "x-forwarded-for":
            forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
        elif name == "via":
            existing_via = value if existing_via is None else f"{existing_via}, {value}"
        elif name == "x-request-id" or (name == "content-length" and not keep_content_length):
            continue
        elif name not in drop:
            out.append((name, value))
    xff = append_forwarded_for(forwarded_for, client)
    if xff:
        out.append(("x-forwarded-for", xff))
    out.append(("x-forwarded-proto", scheme))
    if original_host:
        out.append(("x-forwarded-host", original_host))
    out.append(("x-request-id", request_id))
    out.append(("via", f"{existing_via}, {via}" if existing_via else via))
    if upgrade is not None:
        out += [("connection", "upgrade"), ("upgrade", upgrade)]
    return out


def upgrade_asked(headers: Decoded) -> str | None:
    """The `Upgrade` header's value when the request asks to upgrade its connection (an `Upgrade`
    header named in `Connection`, RFC 9110 7.8), else None."""
    upgrade = None
    for name, value in headers:
        if name == "upgrade":
            upgrade = value
    if upgrade is None or "upgrade" not in connection_listed(headers):
        return None
    return upgrade


def downstream_response_headers(
    upstream: RawHeaders, *, drop: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """The backend's headers minus hop-by-hop ones and any the router sets itself (`drop`)."""
    listed: set[bytes] = set()
    for name, value in upstream:
        if name.lower() == b"connection":
            listed.update(token.strip().lower() for token in value.split(b",") if token.strip())
    skip = _HOP_BY_HOP_BYTES | listed | drop
    return [(name, value) for name, value in upstream if name.lower() not in skip]


def _check_utf8(name: str, value: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidHeader(
            f"Header {name!r} is not valid UTF-8; it cannot be forwarded byte for byte"
        ) from None
