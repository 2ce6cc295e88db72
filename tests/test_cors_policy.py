"""The router's CORS answers and origin checks (`guards/cors.py`), by table.

What a browser notices: which origins may read an answer (`Access-Control-Allow-Origin`), whether a
credentialed request works, whether a preflight succeeds, whether a backend's own CORS policy
survives the router in front of it, and that look-alike origins are refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edge_router.config import model
from edge_router.exceptions import Refusal
from edge_router.guards import cors
from edge_router.guards.cors import CorsPolicy, OriginGuard, OriginMatcher
from edge_router.http.context import RequestContext
from edge_router.http.responses import REASONS
from edge_router.types import Header

APP = "https://app.example.com"
LIST = ["https://app.example.com", "*.example.com", "http://localhost:3000", "https://kiosk.example.net"]


def _ctx(method: str = "GET", headers: dict[str, str] | None = None) -> RequestContext:
    raw = [
        (name.encode(), value.encode("utf-8", "surrogateescape")) for name, value in (headers or {}).items()
    ]
    return RequestContext(method=method, raw_path="/api/x", raw_headers=raw)


def _names(headers: tuple[Header, ...] | list[Header]) -> list[bytes]:
    return [name.lower() for name, _ in headers]


def _value(headers: tuple[Header, ...] | list[Header], name: bytes) -> bytes | None:
    found = [value for key, value in headers if key.lower() == name]
    assert len(found) <= 1, f"{name!r} appears {len(found)} times"
    return found[0] if found else None


# --- OriginMatcher: exact origins, subdomain patterns, look-alikes -----------------------------------

MATCH_TABLE = [
    # exact: scheme and host case-insensitive, the default port normalised, scheme and port matter
    ("https://app.example.com", True),
    ("HTTPS://APP.EXAMPLE.COM", True),
    ("https://app.example.com:443", True),
    ("http://app.example.com", False),
    ("https://app.example.com:8443", False),
    ("http://localhost:3000", True),
    ("http://localhost:3001", False),
    ("http://localhost", False),
    ("https://localhost:3000", False),
    # *.example.com: any depth of subdomain, https only (no scheme written), default port only
    ("https://a.example.com", True),
    ("https://a.b.c.example.com", True),
    ("https://example.com", False),  # the apex is not a subdomain
    ("http://a.example.com", False),
    ("https://a.example.com:8443", False),
    # look-alikes
    ("https://evil-example.com", False),
    ("https://evilexample.com", False),
    ("https://a.evilexample.com", False),
    ("https://example.com.evil.io", False),
    ("https://app.example.com.evil.io", False),
    ("https://example.com@evil.io", False),
    ("https://app.example.com@evil.io", False),
    ("https://evil.io@app.example.com", False),
    ("https://evil.io#.example.com", False),
    ("https://evil.io/.example.com", False),
    ("https://evil.io?.example.com", False),
    ("https://app%2eexample.com", False),
    ("https://\u212aiosk.example.net", False),  # KELVIN SIGN lower-cases to "k"
    ("https://app.example.com.", False),  # a trailing dot is another origin to a browser
    ("https://a.example.com.", False),
    ("null", False),
    ("*", False),
    ("", False),
    ("https://", False),
    ("https://app.example.com/", False),
    ("https://app.example.com:", False),
    ("https://app.example.com:99999", False),
    ("https://app.example.com ", False),
    ("https://app.example.com, https://evil.io", False),
    ("https://app.example.com\x00", False),
    ("app.example.com", False),  # an Origin always has a scheme
]


@pytest.mark.parametrize(("origin", "expected"), MATCH_TABLE)
def test_origin_matching_and_look_alikes(origin: str, expected: bool) -> None:
    assert OriginMatcher(LIST).matches(origin) is expected


@pytest.mark.parametrize(
    ("pattern", "origin", "expected"),
    [
        ("https://a.com:443", "https://a.com", True),  # a pattern with the default port still matches
        ("http://a.com:80", "http://a.com", True),
        ("http://a.com:443", "http://a.com", False),  # 443 is not http's default
        ("http://a.com:443", "http://a.com:443", True),
        ("a.com", "https://a.com", True),  # no scheme: https
        ("a.com", "http://a.com", False),
        ("http://*.a.com", "http://x.a.com", True),
        ("http://*.a.com", "https://x.a.com", False),
        ("https://*.a.com:8443", "https://x.a.com:8443", True),
        ("https://*.a.com:8443", "https://x.a.com", False),
        ("*.A.COM", "https://x.a.com", True),
        ("http://[::1]:3000", "http://[::1]:3000", True),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000", True),
        ("*.example.com", "https://127.0.0.1", False),
        ("chrome-extension://abcdefgh", "chrome-extension://abcdefgh", True),
        ("xn--bcher-kva.example", "https://xn--bcher-kva.example", True),
    ],
)
def test_pattern_forms(pattern: str, origin: str, expected: bool) -> None:
    assert OriginMatcher([pattern]).matches(origin) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        "*",
        "null",
        "NULL",
        "",
        "https://app.example.com/",  # an origin has no path
        "https://app.example.com/api",
        "*.com",  # a wildcard over a whole top-level domain
        "https://*.com",
        "*.localhost",
        "*.0.0.1",
        "https://*.[::1]",
        "a*.example.com",
        "*example.com",
        "https://*.*.example.com",
        "*.example.*",
        "https://app.example.com:*",
        "https://app.example.com:0",
        "https://app.example.com:70000",
        "https://user@app.example.com",
        "https://app.example.com?x",
        "exämple.com",
        " https://app.example.com",
        "https//app.example.com",
    ],
)
def test_patterns_that_cannot_be_enforced_are_refused_by_name(pattern: str) -> None:
    with pytest.raises(ValueError) as refused:
        OriginMatcher(["https://ok.example.com", pattern])
    assert repr(pattern) in str(refused.value)


def test_a_string_instead_of_a_list_is_refused() -> None:
    with pytest.raises(ValueError, match="list"):
        OriginMatcher("https://app.example.com")


def test_an_empty_list_matches_nothing() -> None:
    assert OriginMatcher([]).matches(APP) is False


# --- OriginGuard -------------------------------------------------------------------------------------

GUARD_TABLE: list[tuple[list[str] | None, list[str] | None, str | None, int | None]] = [
    # (allowed, blocked, Origin header, refusal status or None)
    (LIST, None, None, None),  # no Origin: not a browser's cross-origin request
    (LIST, None, APP, None),
    (LIST, None, "https://a.b.example.com", None),
    (LIST, None, "https://evil-example.com", 403),
    (LIST, None, "https://example.com.evil.io", 403),
    (LIST, None, "null", 403),
    (LIST, None, "http://app.example.com", 403),
    (None, ["https://evil.io", "*.spam.example"], "https://evil.io", 403),
    (None, ["https://evil.io", "*.spam.example"], "https://x.spam.example", 403),
    (None, ["https://evil.io", "*.spam.example"], APP, None),
    (None, ["https://evil.io"], "null", None),
    (None, ["https://evil.io"], None, None),
    (["*.example.com"], ["https://bad.example.com"], "https://bad.example.com", 403),  # blocked wins
    (["*.example.com"], ["https://bad.example.com"], "https://good.example.com", None),
    ([], None, APP, 403),  # an empty allow list: no browser origin at all
    ([], None, None, None),
    (None, None, APP, None),
]


@pytest.mark.parametrize(("allowed", "blocked", "origin", "status"), GUARD_TABLE)
def test_origin_guard(
    allowed: list[str] | None, blocked: list[str] | None, origin: str | None, status: int | None
) -> None:
    ctx = _ctx("POST", {} if origin is None else {"origin": origin})
    refusal = asyncio.run(OriginGuard(allowed=allowed, blocked=blocked).on_request(ctx))
    if status is None:
        assert refusal is None
        assert ctx.answer_headers == [] and ctx.principal is None  # a pass sets nothing
    else:
        assert refusal is not None and refusal.status == status
        assert REASONS[refusal.status] == "Forbidden" and refusal.log_error == "origin refused"


def test_origin_guard_validates_its_patterns() -> None:
    with pytest.raises(ValueError, match="null"):
        OriginGuard(allowed=["null"], blocked=None)
    with pytest.raises(ValueError, match=r"\*\.com"):
        OriginGuard(allowed=None, blocked=["*.com"])


# --- CorsPolicy: the router's own answers ------------------------------------------------------------


def test_the_defaults_are_the_contracts_and_unchanged() -> None:
    assert cors.DEFAULT_ALLOW_METHODS == model.DEFAULT_ALLOW_METHODS
    assert cors.DEFAULT_ALLOW_HEADERS == model.DEFAULT_ALLOW_HEADERS
    assert cors.DEFAULT_EXPOSE_HEADERS == model.DEFAULT_EXPOSE_HEADERS
    assert cors.DEFAULT_MAX_AGE == model.DEFAULT_MAX_AGE
    policy = CorsPolicy()
    assert policy.answer_headers(None) == model.DEFAULT_CORS
    assert policy.answer_headers(APP) == model.DEFAULT_CORS
    preflight = policy.preflight(_ctx("OPTIONS", {"access-control-request-method": "PUT"}))
    assert preflight is not None and preflight.headers == model.DEFAULT_CORS_PREFLIGHT


def test_a_fixed_policy_answers_with_one_prebuilt_tuple() -> None:
    policy = CorsPolicy(allow_origin=APP, allow_credentials=True)
    assert policy.answer_headers(None) is policy.answer_headers("https://other.example")
    assert policy.answer_headers(None) == model.cors_headers(allow_origin=APP, allow_credentials=True)[0]


ANSWER_TABLE: list[tuple[dict[str, Any], str | None, dict[bytes, bytes | None]]] = [
    # (policy, Origin header, headers expected: None = absent)
    ({}, None, {b"access-control-allow-origin": b"*", b"vary": None}),
    ({}, APP, {b"access-control-allow-origin": b"*", b"vary": None}),
    ({"mode": "backend"}, APP, {b"access-control-allow-origin": None, b"access-control-allow-methods": None}),
    (
        {"allowed_origins": LIST},
        "https://a.example.com",
        {
            b"access-control-allow-origin": b"https://a.example.com",
            b"vary": b"Origin",
            b"access-control-allow-methods": b"GET, POST, PUT, DELETE, PATCH, OPTIONS",
            b"access-control-allow-credentials": None,
            b"access-control-max-age": None,
        },
    ),
    (
        {"allowed_origins": LIST, "allow_credentials": True},
        APP,
        {
            b"access-control-allow-origin": APP.encode(),
            b"access-control-allow-credentials": b"true",
            b"vary": b"Origin",
        },
    ),
    (
        {"allowed_origins": LIST, "allow_origin": "https://ignored.example"},
        "https://evil-example.com",
        {b"access-control-allow-origin": None, b"access-control-allow-credentials": None, b"vary": b"Origin"},
    ),
    ({"allowed_origins": LIST}, None, {b"access-control-allow-origin": None, b"vary": b"Origin"}),
    ({"allowed_origins": LIST}, "null", {b"access-control-allow-origin": None, b"vary": b"Origin"}),
    ({"allowed_origins": []}, APP, {b"access-control-allow-origin": None, b"vary": b"Origin"}),
    (
        {"allow_origin": APP, "allow_credentials": True, "expose_headers": []},
        "https://other.example",
        {
            b"access-control-allow-origin": APP.encode(),
            b"access-control-allow-credentials": b"true",
            b"access-control-expose-headers": None,
            b"vary": None,
        },
    ),
    (
        {"allowed_origins": LIST, "mode": "backend"},
        APP,
        {b"access-control-allow-origin": None, b"vary": None},
    ),
]


@pytest.mark.parametrize(("options", "origin", "expected"), ANSWER_TABLE)
def test_answer_headers(
    options: dict[str, Any], origin: str | None, expected: dict[bytes, bytes | None]
) -> None:
    headers = CorsPolicy(**options).answer_headers(origin)
    for name, value in expected.items():
        assert _value(headers, name) == value, name


def test_an_allowed_origin_is_named_as_the_browser_sent_it() -> None:
    # the browser compares Access-Control-Allow-Origin with its own serialisation byte for byte
    headers = CorsPolicy(allowed_origins=["https://a.com:443"]).answer_headers("https://a.com")
    assert _value(headers, b"access-control-allow-origin") == b"https://a.com"


# --- CorsPolicy: preflights --------------------------------------------------------------------------

PREFLIGHT = {"access-control-request-method": "PUT", "access-control-request-headers": "content-type"}

PREFLIGHT_TABLE: list[tuple[dict[str, Any], str, dict[str, str], dict[bytes, bytes | None] | None]] = [
    # (policy, method, request headers, expected 204 headers; None: not answered by the router)
    ({}, "GET", {"origin": APP}, None),
    ({}, "OPTIONS", {"origin": APP}, None),  # a plain OPTIONS is no preflight: proxied
    (
        {},
        "OPTIONS",
        {**PREFLIGHT, "origin": APP},
        {b"access-control-allow-origin": b"*", b"access-control-max-age": b"600"},
    ),
    ({"mode": "backend"}, "OPTIONS", {**PREFLIGHT, "origin": APP}, None),  # proxied to the backend
    (
        {"max_age": None},
        "OPTIONS",
        PREFLIGHT,
        {b"access-control-allow-origin": b"*", b"access-control-max-age": None},
    ),
    (
        {"allowed_origins": LIST, "allow_credentials": True, "max_age": 60},
        "OPTIONS",
        {**PREFLIGHT, "origin": "https://x.example.com"},
        {
            b"access-control-allow-origin": b"https://x.example.com",
            b"access-control-allow-credentials": b"true",
            b"access-control-allow-methods": b"GET, POST, PUT, DELETE, PATCH, OPTIONS",
            b"access-control-max-age": b"60",
            b"vary": b"Origin",
        },
    ),
    (
        {"allowed_origins": LIST},
        "OPTIONS",
        {**PREFLIGHT, "origin": "https://example.com.evil.io"},
        {b"access-control-allow-origin": None, b"access-control-allow-methods": None, b"vary": b"Origin"},
    ),
    (
        {"allowed_origins": LIST},
        "OPTIONS",
        PREFLIGHT,
        {b"access-control-allow-origin": None, b"vary": b"Origin"},
    ),
]


@pytest.mark.parametrize(("options", "method", "headers", "expected"), PREFLIGHT_TABLE)
def test_preflight(
    options: dict[str, Any], method: str, headers: dict[str, str], expected: dict[bytes, bytes | None] | None
) -> None:
    policy = CorsPolicy(**options)
    answer = policy.preflight(_ctx(method, headers))
    as_guard = asyncio.run(policy.on_request(_ctx(method, headers)))
    if expected is None:
        assert answer is None and as_guard is None
        return
    assert as_guard is not None and as_guard.headers == answer.headers if answer else False
    assert isinstance(answer, Refusal) and answer.status == 204 and answer.log_error is None
    for name, value in expected.items():
        assert _value(answer.headers, name) == value, name


# --- CorsPolicy: a backend's answer ------------------------------------------------------------------

CREDENTIALED = [
    (b"Content-Type", b"application/json"),
    (b"Access-Control-Allow-Origin", APP.encode()),
    (b"Access-Control-Allow-Credentials", b"true"),
    (b"Access-Control-Expose-Headers", b"X-Total"),
    (b"Vary", b"Origin"),
]
PLAIN = [(b"content-type", b"text/plain"), (b"vary", b"Accept-Encoding")]
EXPOSE_ONLY = [(b"content-type", b"text/plain"), (b"access-control-expose-headers", b"X-Total")]

PROXIED_TABLE: list[tuple[dict[str, Any], list[Header], str | None, list[Header]]] = [
    # (policy, backend headers, Origin, the client's headers)
    ({}, PLAIN, APP, [*PLAIN, *model.DEFAULT_CORS]),
    ({}, CREDENTIALED, APP, CREDENTIALED),  # the backend's own policy wins
    ({"mode": "backend"}, PLAIN, APP, PLAIN),  # nothing of the router's
    ({"mode": "backend"}, CREDENTIALED, APP, CREDENTIALED),
    (
        {"override": True},
        CREDENTIALED,
        APP,
        [(b"Content-Type", b"application/json"), (b"Vary", b"Origin"), *model.DEFAULT_CORS],
    ),
    ({}, EXPOSE_ONLY, APP, [(b"content-type", b"text/plain"), *model.DEFAULT_CORS]),  # no ACAO: ours
    (
        {"allowed_origins": LIST},
        PLAIN,
        APP,
        [
            (b"content-type", b"text/plain"),
            (b"vary", b"Accept-Encoding, Origin"),  # merged, not a second line
            (b"access-control-allow-origin", APP.encode()),
            *CorsPolicy(allowed_origins=LIST).answer_headers(APP)[1:-1],
        ],
    ),
    (
        {"allowed_origins": LIST},
        [(b"content-type", b"text/plain")],
        "https://evil.io",
        [(b"content-type", b"text/plain"), (b"vary", b"Origin")],
    ),
    (
        {"allowed_origins": LIST},
        [(b"Vary", b"accept-encoding, ORIGIN")],
        None,
        [(b"Vary", b"accept-encoding, ORIGIN")],
    ),
    ({"allowed_origins": LIST}, [(b"vary", b"*")], None, [(b"vary", b"*")]),
    (
        {"allowed_origins": LIST},
        [(b"vary", b"Accept"), (b"vary", b"Accept-Language")],
        None,
        [(b"vary", b"Accept"), (b"vary", b"Accept-Language, Origin")],
    ),
    ({"allowed_origins": LIST}, CREDENTIALED, APP, CREDENTIALED),
]


@pytest.mark.parametrize(("options", "backend", "origin", "expected"), PROXIED_TABLE)
def test_proxied_answer(
    options: dict[str, Any], backend: list[Header], origin: str | None, expected: list[Header]
) -> None:
    before = list(backend)
    assert CorsPolicy(**options).proxied(backend, origin) == expected
    assert backend == before  # the argument is never changed


def test_an_unchanged_answer_costs_no_copy() -> None:
    assert CorsPolicy().proxied(CREDENTIALED, APP) is CREDENTIALED
    assert CorsPolicy(mode="backend").proxied(PLAIN, APP) is PLAIN


def test_the_merged_vary_never_duplicates_lines() -> None:
    headers = CorsPolicy(allowed_origins=LIST, override=True).proxied(CREDENTIALED, "https://a.example.com")
    assert _names(headers).count(b"vary") == 1
    assert _value(headers, b"access-control-allow-origin") == b"https://a.example.com"
    assert _value(headers, b"access-control-expose-headers") == b"X-Backend-Source, X-Request-Id"


# --- CorsPolicy: construction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "proxy"}, "mode"),
        ({"allow_credentials": True}, "allow_credentials"),
        ({"max_age": -1}, "max_age"),
        ({"allow_origin": "https://a.com\r\nSet-Cookie: x=1"}, "control characters"),
        ({"allow_headers": ["X-A\n"]}, "control characters"),
        ({"allowed_origins": ["*"]}, "allowedOrigins"),
    ],
)
def test_a_policy_it_cannot_answer_with_is_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CorsPolicy(**options)


def test_credentials_with_an_origin_list_need_no_named_origin() -> None:
    headers = CorsPolicy(allow_credentials=True, allowed_origins=[APP]).answer_headers(APP)
    assert _value(headers, b"access-control-allow-origin") == APP.encode()
    assert _value(headers, b"access-control-allow-credentials") == b"true"
