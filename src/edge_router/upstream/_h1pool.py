"""Origins and their pools of idle connections, and the request head as bytes (private to
`http1.py`, which states the contract)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..exceptions import UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout
from ._h1conn import Connection

if TYPE_CHECKING:
    import ssl

IDLE_SECONDS = 30.0  # an idle connection older than this is closed, not reused
MAX_IDLE = 64  # idle connections kept per origin (the oldest closed beyond it)
DNS_SECONDS = 300.0  # how long a host's resolved addresses are reused for new connections
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # no Content-Length: 0 for these
_tls_context: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The client TLS context (system CAs, hostname checks), built on first https use: building it
    loads the CA store, tens of milliseconds a cold start without https targets never pays."""
    global _tls_context
    if _tls_context is None:
        import ssl

        _tls_context = ssl.create_default_context()
    return _tls_context


class Origin:
    """(scheme, host, port): where connections go, and the idle ones, most recent last."""

    __slots__ = ("_addresses", "_resolved_at", "authority", "host", "idle", "port", "tls")

    def __init__(self, scheme: str, host: str, port: int, authority: str) -> None:
        self.tls = scheme == "https"
        self.host, self.port, self.authority = host, port, authority
        self.idle: list[Connection] = []
        self._addresses: list[tuple[int, str]] = []
        self._resolved_at = 0.0

    def take(self, now: float) -> Connection | None:
        """The most recently used idle connection still open and fresh, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_SECONDS and not conn.closed:
                return conn
            conn.abort()
            if now - conn.idle_since >= IDLE_SECONDS:  # the older ones are older still
                for stale in idle:
                    stale.abort()
                idle.clear()
        return None

    def put(self, conn: Connection) -> None:
        conn.busy = False
        conn.idle_since = conn.now()
        if conn.read_paused:
            conn.resume()  # an idle connection must notice the backend closing it
        idle = self.idle
        if len(idle) >= MAX_IDLE:
            idle.pop(0).abort()
        idle.append(conn)

    async def connect(self, loop: asyncio.AbstractEventLoop, timeout: float) -> Connection:
        """A new connection (TLS for https); errors mapped to ours."""
        try:
            async with asyncio.timeout(timeout):
                return await self._connect(loop)
        except TimeoutError:
            raise UpstreamTimeout(f"no answer within {timeout * 1000:.0f} ms") from None
        except (OSError, ValueError) as exc:  # ssl errors are OSErrors; ValueError: a bad host name
            raise UpstreamConnectError(f"cannot connect: {exc}") from None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Connection:
        tls = tls_context() if self.tls else None
        hostname = self.host if tls is not None else None
        factory = functools.partial(Connection, loop)
        addresses = await self._resolve(loop)
        error: OSError | None = None
        for family, address in addresses:
            try:
                _, conn = await loop.create_connection(
                    factory, address, self.port, family=family, ssl=tls, server_hostname=hostname
                )
                return conn
            except OSError as exc:  # the next address; DNS is asked again next time
                error, self._resolved_at = exc, 0.0
        assert error is not None
        raise error

    async def _resolve(self, loop: asyncio.AbstractEventLoop) -> list[tuple[int, str]]:
        """The host's addresses, cached for DNS_SECONDS (an address literal is not resolved)."""
        now = loop.time()
        if self._addresses and now - self._resolved_at < DNS_SECONDS:
            return self._addresses
        import socket

        found = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys((int(family), str(info[0])) for family, _, _, _, info in found))
        if not addresses:
            raise OSError(f"no address for {self.host}")
        self._addresses, self._resolved_at = addresses, now
        return addresses


def split_url(url: str) -> tuple[str, str]:
    """(`scheme://authority`, request target) of an absolute URL; the target is as given."""
    start = url.find("://")
    if start < 0:
        raise UpstreamConnectError(f"not an absolute URL: {url[:100]!r}")
    end = len(url)
    for mark in "/?#":
        at = url.find(mark, start + 3, end)
        if at >= 0:
            end = at
    target = url[end:].partition("#")[0]
    if not target:
        target = "/"
    elif target[0] == "?":
        target = "/" + target
    return url[:end], target


def parse_origin(prefix: str) -> tuple[tuple[str, str, int], str]:
    """((scheme, host, port), authority) of `scheme://authority`."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(prefix)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError as exc:
        raise UpstreamConnectError(f"invalid URL {prefix[:100]!r}: {exc}") from None
    if scheme not in _DEFAULT_PORTS or not host:
        raise UpstreamConnectError(f"cannot send to {prefix[:100]!r}: not an http(s) URL with a host")
    return (scheme, host, port or _DEFAULT_PORTS[scheme]), parts.netloc.rpartition("@")[2]


def request_head(
    method: str, target: str, headers: Sequence[tuple[str, str]], authority: str, body: object
) -> tuple[bytes, int | None]:
    """The request head as bytes, and the Content-Length a streamed body must match (None:
    chunked). Header values go out as `.encode("utf-8", "surrogateescape")` gives them."""
    text = "\r\n".join(map(": ".join, headers))
    lines = len(headers) + 2
    length: int | None = None
    if not headers or headers[0][0] != "host" or (body is not None or method not in _NO_BODY_METHODS):
        # the rare cases: no Host first, or a body (or a method that may carry one) to frame
        low = ("\r\n" + text).lower()
        if "\r\nhost:" not in low:
            text = f"Host: {authority}\r\n{text}" if headers else f"Host: {authority}"
            lines += 1
        framing, length = _framing(method, headers, body, low)
        if framing:
            text = f"{text}\r\n{framing}" if text else framing
            lines += 1
    head = f"{method} {target} HTTP/1.1\r\n{text}\r\n\r\n" if text else f"{method} {target} HTTP/1.1\r\n\r\n"
    if head.count("\n") != lines or head.count("\r") != lines:
        raise UpstreamProtocolError("the request has a CR or LF inside its target or a header")
    return head.encode("utf-8", "surrogateescape"), length


def _framing(
    method: str, headers: Sequence[tuple[str, str]], body: object, low: str
) -> tuple[str, int | None]:
    """The framing header to add ("" for none) and a streamed body's declared length."""
    given = "\r\ncontent-length:" in low
    if body is None:
        return ("" if given or method in _NO_BODY_METHODS else "Content-Length: 0"), None
    if isinstance(body, bytes):
        return ("" if given else f"Content-Length: {len(body)}"), None
    if not given:
        return "Transfer-Encoding: chunked", None
    value = next(value for name, value in headers if name.lower() == "content-length")
    try:
        return "", int(value)
    except ValueError:
        raise UpstreamProtocolError(f"invalid Content-Length {value[:40]!r}") from None
