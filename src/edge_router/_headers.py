"""Pure header decisions for the proxy: what goes upstream, what comes back.

Names are compared lower-case (ASGI already lower-cases request header names).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# RFC 9110 7.6.1 plus the hop-specific proxy-auth pair, as Go's httputil and nginx drop them.
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
# tell the backend it came over https or from another host.
_REPLACED = frozenset({"host", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"})

RawHeaders = Sequence[tuple[bytes, bytes]]


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
    incoming: RawHeaders,
    *,
    host: str,
    client: str | None,
    scheme: str,
    request_id: str,
    via: str,
    keep_content_length: bool,
) -> list[tuple[str, str]]:
    """The headers sent to the backend: end-to-end ones as sent, plus the proxy's own."""
    decoded = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in incoming]
    drop = HOP_BY_HOP | _REPLACED | connection_listed(decoded)
    out: list[tuple[str, str]] = [("host", host)]
    forwarded_for: str | None = None
    original_host = ""
    existing_via: str | None = None
    for name, value in decoded:
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
    return out


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


_HOP_BY_HOP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP)
