"""One request as every stage of the pipeline sees it, decoded once at the door.

Hosts build it from what they parsed: the server engine from the request head (`server/engine.py`),
the Lambda adapter from the function URL event (`aws/url_requests.py`), and ASGI hosts with
`RequestContext.from_scope`. It decodes what stages ask for: the normalised path (`paths`), the
headers (names lower-case; values decoded as UTF-8 with `surrogateescape`, which is lossless:
bytes that are not UTF-8 survive as lone surrogates and go upstream as the very bytes received),
the client address, the scheme and the request id. Nothing here does I/O.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import paths

if TYPE_CHECKING:
    from ..types import Header, Scope

# The scope key where a host leaves the request's deadline (a time.monotonic() value).
DEADLINE = "edge_router.deadline"

# Request ids: a random per-process prefix and a counter. Unique without a getrandom syscall per
# request (uuid4 was ~3% of the server's CPU); ids need to be unique, not unguessable.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def renew_request_id_prefix() -> None:
    """A new random prefix (after a SnapStart restore, every instance would share the snapshot's)."""
    global _ID_PREFIX
    _ID_PREFIX = secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid API key says the caller is (set by the API-key guard, read by the rate limit)."""

    key_id: str
    rate_limit_multiplier: float = 1.0


class RequestContext:
    """What is known of one request, for every stage to read, and the one carrier of what the
    stages learn of it on the way (CONTRACT section 8):

    * `client_address`: the client's address as the guards judge it (the peer, or with
      `trusted_proxies` the right-most untrusted X-Forwarded-For entry; IPv4-mapped IPv6 as IPv4);
    * `principal`: who a valid API key names;
    * `answer_headers`: headers the answer gets, whoever makes it (RateLimit-*, CORS per origin);
    * `hidden_headers`: request headers never forwarded (an API key, unless the route says so);
    * `body_limit`: the most body bytes the route accepts (None: no limit but the host's).
    """

    __slots__ = (
        "answer_headers",
        "body_limit",
        "buffered",
        "client",
        "client_address",
        "deadline",
        "headers",
        "hidden_headers",
        "http_version",
        "method",
        "path",
        "principal",
        "query",
        "raw_headers",
        "raw_path",
        "request_id",
        "scheme",
        "scope",
        "started",
        "unsafe_path",
    )

    def __init__(
        self,
        *,
        method: str,
        raw_path: str,
        query: bytes = b"",
        raw_headers: list[tuple[bytes, bytes]] | None = None,
        client: str | None = None,
        scheme: str = "http",
        request_id: str | None = None,
        buffered: bool = False,
        http_version: str = "1.1",
        deadline: float | None = None,
        scope: Scope | None = None,
    ) -> None:
        self.scope: Scope = scope if scope is not None else {}
        self.method = method
        self.raw_path = raw_path  # the request target's path as received, one character per byte
        self.query = query
        self.raw_headers = raw_headers if raw_headers is not None else []
        self.headers: list[tuple[str, str]] = [
            (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
            for name, value in self.raw_headers
        ]
        self.client = client
        # an IPv4-mapped IPv6 peer (a dual-stack listener) is its IPv4 address
        mapped = client is not None and client.startswith("::ffff:") and "." in client
        self.client_address = client[7:] if mapped and client else client
        self.principal: Principal | None = None
        self.answer_headers: list[Header] = []
        self.hidden_headers: frozenset[str] = frozenset()
        self.body_limit: int | None = None
        self.scheme = scheme
        self.buffered = buffered  # the body is whole already and the answer is buffered (Lambda)
        self.http_version = http_version
        # time.monotonic() by which the answer must be ready (Lambda: the invocation's end minus
        # a margin); None: no deadline but the route's timeouts
        self.deadline = deadline
        self.request_id = request_id or self.header("x-request-id") or new_request_id()
        self.unsafe_path: str | None = None  # why the path is refused (a guard answers 400)
        try:
            self.path = paths.normalize_path(raw_path)
        except paths.UnsafePath as exc:
            self.path, self.unsafe_path = raw_path, str(exc)
        self.started = time.perf_counter()

    @classmethod
    def from_scope(cls, scope: Scope) -> RequestContext:
        raw_path = scope.get("raw_path")
        event: Any = scope.get("aws.event")
        client = scope.get("client")
        return cls(
            method=scope["method"],
            raw_path=raw_path.decode("latin-1") if raw_path else paths.quote_path(scope["path"]),
            query=scope.get("query_string", b""),
            raw_headers=scope["headers"],
            client=client[0] if client else None,
            scheme=scope.get("scheme", "http"),
            request_id=None if event is None else _event_request_id(scope, event),
            buffered=event is not None,
            http_version=scope.get("http_version", "1.1"),
            deadline=scope.get(DEADLINE),
            scope=scope,
        )

    def header(self, name: str) -> str | None:
        """The first value of header `name` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_map(self) -> dict[str, str]:
        """Every header by name (the first value of a repeated one), for decisions that read several."""
        found: dict[str, str] = {}
        for key, value in self.headers:
            found.setdefault(key, value)
        return found


def _event_request_id(scope: Scope, event: Any) -> str | None:
    """On Lambda: a client's X-Request-Id wins, else the function URL's request id."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return str(value.decode("utf-8", "surrogateescape"))
    request_id = event["requestContext"].get("requestId")
    return request_id if isinstance(request_id, str) and request_id else None
