"""The router's CORS answers and origin checks, in one place (CONTRACT sections 6 and 8).

Three questions are answered here, and nowhere else:

* **Is this origin on the list?** (`OriginMatcher`) An origin is the serialisation a browser sends in
  `Origin`: `scheme://host[:port]`, nothing more. Patterns are exact origins
  (`https://app.example.com`, `http://localhost:3000`) or subdomain patterns (`*.example.com`,
  `https://*.example.com:8443`):

  - scheme and port matter; scheme and host compare case-insensitively, and an explicit default port
    is the same origin as none (`https://a.com:443` is `https://a.com`; browsers never send it, so a
    pattern written with it must still match what they do send);
  - a pattern without a scheme means `https` (`*.example.com` matches `https://a.example.com`, never
    `http://a.example.com`: an origin served over plain HTTP can be impersonated on any network in
    between, so it has to be named on purpose: `http://*.example.com`);
  - `*.example.com` matches a subdomain of any depth (`a.example.com`, `a.b.example.com`), never the
    apex `example.com`, and only on the pattern's port;
  - an origin is parsed before it is compared, never matched as a string, so look-alikes cannot pass:
    `https://evil-example.com`, `https://example.com.evil.io`, `https://evilexample.com`, userinfo
    (`https://example.com@evil.io`), paths, `null`, and non-ASCII text (Python's case-insensitive
    regexes and `str.lower` turn the Kelvin sign into `k`) never match a pattern;
  - patterns are checked when the config is compiled (ValueError naming the pattern): `*`, `null`
    (what sandboxed frames and `file:` pages send: anyone can produce it), a path, a `*` anywhere but
    as a whole leftmost label, or a wildcard over a single label (`*.com`) are refused. Internationalised
    names are written in their `xn--` form, as browsers send them.

* **May this request go on?** (`OriginGuard`, stage 2) A request without `Origin` is not a browser's
  cross-origin request and is not affected. A blocked origin is refused (403); with an allow list,
  so is every origin not on it. An empty allow list allows no origin (the API is for non-browser
  clients); the caller passes None for "no list".

* **Which CORS headers does an answer carry?** (`CorsPolicy`, built once per config from its `cors`
  block and, on a route with `allowedOrigins`, the list):

  - `mode="backend"` (`"cors": "backend"`): none of the router's; a backend's pass unchanged and
    preflights are proxied;
  - the router's own answers (errors, refusals, preflights): the configured headers (`*` by default);
    with an allow list, `Access-Control-Allow-Origin` names the request's own origin when it is
    allowed, is absent when it is not, and the answer says `Vary: Origin` either way (a cache must not
    hand one origin's answer to another); the configured `allow_origin` is then not used;
  - a proxied answer: a backend that sends its own `Access-Control-Allow-Origin` keeps all of its
    `Access-Control-*` headers and gets none of ours, unless `override`; otherwise its
    `Access-Control-*` headers are dropped and ours are added. `Vary: Origin` is merged into the
    backend's `Vary` (the token is appended to its last `Vary` line; nothing is added when it already
    varies on `Origin` or on `*`), so no duplicate line appears.

A `blockedOrigins` list alone does not make answers origin-specific: reflecting every origin that
is not blocked would amount to `*`, and with `allow_credentials` to a credentialed `*`, which the
Fetch standard forbids for good reason. Blocked origins are refused by the guard instead.

Everything the common case needs (no origin list: one fixed tuple, one preflight answer) is built
at construction, so an answer costs a tuple return.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from ..exceptions import Refusal
from ..http.context import RequestContext
from ..types import Header

# CONTRACT section 6: the CORS headers of every answer when the config says nothing else.
# (The same values as `config.model`'s; that module should import them from here.)
DEFAULT_ALLOW_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
DEFAULT_ALLOW_HEADERS = ("Content-Type", "Authorization", "x-backend", "x-backend-location", "X-Request-Id")
DEFAULT_EXPOSE_HEADERS = ("X-Backend-Source", "X-Request-Id")
DEFAULT_MAX_AGE = 600

CorsMode = Literal["router", "backend"]
Origin = tuple[str, str, int | None]  # (scheme, host, port): lower-case; None for the default port

_ACAO = b"access-control-allow-origin"
_VARY_ORIGIN: Header = (b"vary", b"Origin")
_CORS_PREFIX = b"access-control-"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A serialised origin, lower-cased: scheme, host (DNS-style labels or a bracketed IPv6 literal), port.
# re.ASCII and no IGNORECASE: only ASCII letters may ever match `[a-z]`.
_ORIGIN = re.compile(
    r"([a-z][a-z0-9+.-]*)://(\[[0-9a-f:.]+\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)*)(?::([0-9]{1,5}))?", re.ASCII
)


def parse_origin(text: str) -> Origin | None:
    """`text` as (scheme, host, port) if it is a serialised origin, else None (`null`, a path,
    userinfo, an empty or out-of-range port, non-ASCII text)."""
    if not text.isascii():
        return None
    found = _ORIGIN.fullmatch(text.lower())
    if found is None:
        return None
    scheme, host, port_text = found.groups()
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if not 0 < port < 65536:
            return None
        if port == _DEFAULT_PORTS.get(scheme):
            port = None
    return scheme, host, port


def _parse_pattern(pattern: str) -> tuple[bool, Origin]:
    """(is a subdomain pattern, its origin); for a subdomain pattern the host is `.example.com`."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"origin pattern {pattern!r} must be a non-empty string")
    text = pattern.lower()
    if text in ("*", "null"):
        raise ValueError(
            f"origin pattern {pattern!r} would let any page in: leave allowedOrigins out to allow every "
            "origin, or name the origins"
        )
    if not pattern.isascii():
        raise ValueError(f"origin pattern {pattern!r}: write internationalised names in their xn-- form")
    if "://" not in text:
        text = "https://" + text
    wildcard = "://*." in text
    if wildcard:
        text = text.replace("://*.", "://", 1)
    parsed = parse_origin(text)
    if parsed is None:
        raise ValueError(
            f"origin pattern {pattern!r} is not an origin (scheme://host[:port], no path) "
            "or a subdomain pattern (*.example.com)"
        )
    scheme, host, port = parsed
    if wildcard:
        labels = host.split(".")
        if host.startswith("[") or len(labels) < 2 or labels[-1].isdigit():
            raise ValueError(
                f"origin pattern {pattern!r}: a subdomain pattern needs a domain name of at least two "
                "labels, such as *.example.com"
            )
        host = "." + host
    return wildcard, (scheme, host, port)


class OriginMatcher:
    """Exact origins and `*.domain` patterns, parsed once; `matches` parses the request's origin."""

    __slots__ = ("_exact", "_subdomains")

    def __init__(self, patterns: Sequence[str]) -> None:
        if isinstance(patterns, str):
            raise ValueError(f"origin patterns must be a list, not the string {patterns!r}")
        exact: set[Origin] = set()
        subdomains: list[Origin] = []
        for pattern in patterns:
            wildcard, origin = _parse_pattern(pattern)
            (subdomains.append if wildcard else exact.add)(origin)
        self._exact = frozenset(exact)
        self._subdomains = tuple(dict.fromkeys(subdomains))

    def matches(self, origin: str) -> bool:
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if parsed in self._exact:
            return True
        scheme, host, port = parsed
        return any(
            scheme == p_scheme and port == p_port and host.endswith(suffix) and len(host) > len(suffix)
            for p_scheme, suffix, p_port in self._subdomains
        )


class OriginGuard:
    """`allowedOrigins` / `blockedOrigins` (CONTRACT section 8): 403 for a blocked origin, or one
    not on the allow list; a request without `Origin` passes. None: no such list."""

    def __init__(self, *, allowed: Sequence[str] | None, blocked: Sequence[str] | None) -> None:
        self._allowed = None if allowed is None else OriginMatcher(allowed)
        self._blocked = None if blocked is None else OriginMatcher(blocked)
        self._refusal = Refusal(403, "Requests from this origin are not allowed", log_error="origin refused")

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        origin = ctx.header("origin")
        if origin is None:
            return None
        if self._blocked is not None and self._blocked.matches(origin):
            return self._refusal
        if self._allowed is not None and not self._allowed.matches(origin):
            return self._refusal
        return None


def _value(what: str, text: str) -> bytes:
    """A header value from config text; ValueError for what cannot be sent as one."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ValueError(f"cors {what} {text!r} contains control characters")
    return text.encode()


def with_vary_origin(headers: list[Header]) -> list[Header]:
    """`headers` varying on Origin: the token appended to the last `Vary` line, or a `Vary: Origin`
    line added; unchanged when they vary on Origin (or `*`) already. Changes `headers` in place."""
    last = -1
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            tokens = {token.strip().lower() for token in value.split(b",")}
            if b"origin" in tokens or b"*" in tokens:
                return headers
            last = index
    if last < 0:
        headers.append(_VARY_ORIGIN)
    else:
        name, value = headers[last]
        headers[last] = (name, value + b", Origin" if value.strip() else b"Origin")
    return headers


class CorsPolicy:
    """The CORS headers of every answer, built once from a config's `cors` block (see the module
    docstring). `answer_headers` for the router's own answers, `preflight` (or `on_request`, as a
    stage-1 guard) for an `OPTIONS` preflight, `proxied` for a backend's answer."""

    __slots__ = (
        "_fixed",
        "_matcher",
        "_preflight",
        "_preflight_rest",
        "_rest",
        "_unlisted",
        "mode",
        "override",
    )

    def __init__(
        self,
        *,
        allow_origin: str = "*",
        allow_methods: Sequence[str] = DEFAULT_ALLOW_METHODS,
        allow_headers: Sequence[str] = DEFAULT_ALLOW_HEADERS,
        expose_headers: Sequence[str] = DEFAULT_EXPOSE_HEADERS,
        max_age: int | None = DEFAULT_MAX_AGE,
        allow_credentials: bool = False,
        override: bool = False,
        mode: CorsMode = "router",
        allowed_origins: Sequence[str] | None = None,
    ) -> None:
        if mode not in ("router", "backend"):
            raise ValueError(f"cors mode {mode!r} must be 'router' or 'backend'")
        if max_age is not None and max_age < 0:
            raise ValueError(f"cors max_age {max_age} must not be negative")
        if allow_credentials and allow_origin == "*" and allowed_origins is None:
            raise ValueError(
                "allow_credentials true needs a named allow_origin: browsers refuse credentials with '*'"
            )
        self.mode: CorsMode = mode
        self.override = override
        self._matcher = (
            None if allowed_origins is None or mode == "backend" else OriginMatcher(allowed_origins)
        )
        rest: list[Header] = [
            (b"access-control-allow-methods", _value("allow_methods", ", ".join(allow_methods))),
            (b"access-control-allow-headers", _value("allow_headers", ", ".join(allow_headers))),
        ]
        if expose_headers:
            rest.append(
                (b"access-control-expose-headers", _value("expose_headers", ", ".join(expose_headers)))
            )
        if allow_credentials:
            rest.append((b"access-control-allow-credentials", b"true"))
        max_age_header = () if max_age is None else ((b"access-control-max-age", str(max_age).encode()),)
        self._rest = (*rest, _VARY_ORIGIN)  # after an origin-specific ACAO
        self._preflight_rest = (*rest, *max_age_header, _VARY_ORIGIN)
        self._unlisted: tuple[Header, ...] = (_VARY_ORIGIN,)  # no origin, or one not on the list
        fixed = (_ACAO, _value("allow_origin", allow_origin)), *rest
        self._fixed: tuple[Header, ...] = () if mode == "backend" else fixed
        self._preflight = Refusal(204, headers=(*fixed, *max_age_header))

    @property
    def needs_origin(self) -> bool:
        """Whether answers depend on the request's `Origin` (an origin list); else any origin will do."""
        return self._matcher is not None

    def answer_headers(self, origin: str | None) -> tuple[Header, ...]:
        """The CORS headers of an answer the router makes itself, for a request with this `Origin`."""
        if self._matcher is None:
            return self._fixed
        if origin is None or not self._matcher.matches(origin):
            return self._unlisted
        return ((_ACAO, origin.encode()), *self._rest)

    def preflight(self, ctx: RequestContext) -> Refusal | None:
        """The 204 answer to a CORS preflight (an OPTIONS with Access-Control-Request-Method); None for
        any other request, and for every request in backend mode (the preflight is proxied)."""
        if (
            ctx.method != "OPTIONS"
            or self.mode == "backend"
            or ctx.header("access-control-request-method") is None
        ):
            return None
        if self._matcher is None:
            return self._preflight
        origin = ctx.header("origin")
        if origin is None or not self._matcher.matches(origin):
            return Refusal(204, headers=self._unlisted)
        return Refusal(204, headers=((_ACAO, origin.encode()), *self._preflight_rest))

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        """The policy as a guard (stage 1, in place of `PreflightGuard`)."""
        return self.preflight(ctx)

    def proxied(self, backend_headers: list[Header], origin: str | None) -> list[Header]:
        """The headers of a backend's answer as the client gets them: `backend_headers` itself when
        they stay as they are, else a new list (the argument is never changed)."""
        if self.mode == "backend":
            return backend_headers
        own_cors = own_origin = False
        for name, _ in backend_headers:
            if name[:15].lower() == _CORS_PREFIX:
                own_cors = True
                if name.lower() == _ACAO:
                    own_origin = True
                    break
        if own_origin and not self.override:
            return backend_headers
        ours = self.answer_headers(origin)
        if own_cors:
            headers = [header for header in backend_headers if header[0][:15].lower() != _CORS_PREFIX]
        else:
            headers = list(backend_headers)
        if self._matcher is None:
            headers.extend(ours)
            return headers
        headers.extend(ours[:-1])  # everything but Vary: Origin, merged instead
        return with_vary_origin(headers)


# The policy of a router with no config loaded yet (and of configs without a `cors` block).
DEFAULT_POLICY = CorsPolicy()
# Every header name a CORS policy may set: a control-plane answer's own copies are replaced.
ALL_CORS_NAMES = frozenset(
    {
        _ACAO,
        b"access-control-allow-methods",
        b"access-control-allow-headers",
        b"access-control-expose-headers",
        b"access-control-allow-credentials",
        b"access-control-max-age",
    }
)
