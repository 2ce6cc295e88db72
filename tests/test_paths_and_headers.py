"""Pure decisions: path normalisation, prefix matching, URL joining, header filtering."""

from __future__ import annotations

import pytest

from edge_router.http import headers as _headers
from edge_router.http import paths as _paths


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/api/users/1", "/api/users/1"),
        ("/api/a%2Fb", "/api/a%2Fb"),  # %2F is not a separator and stays escaped
        ("/api/x%20y", "/api/x%20y"),
        ("/api/./x", "/api/x"),
        ("/api/../admin", "/admin"),
        ("/api/%2e%2e/admin", "/admin"),  # escaped dot segments resolve too
        ("/api/.%2E/admin", "/admin"),
        ("/a/b/..", "/a/"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/%61pi/x", "/api/x"),  # escaped unreserved characters are the same resource
        ("/a//b", "/a//b"),
        ("/caf\xc3\xa9", "/caf%C3%A9"),  # raw UTF-8 bytes, one character per byte: escaped as sent
        ("/sp ace", "/sp%20ace"),
        ("", "/"),
    ],
)
def test_normalize_path(raw: str, expected: str) -> None:
    assert _paths.normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("prefix", "path", "matches"),
    [
        ("/api", "/api", True),
        ("/api", "/api/x", True),
        ("/api", "/apix", False),
        ("/api", "/ap", False),
        ("/api/", "/api/x", True),
        ("/static/", "/static/a.css", True),
        ("/static/", "/static", False),
        ("/", "/anything", True),
    ],
)
def test_prefix_matches_by_segment(prefix: str, path: str, matches: bool) -> None:
    assert _paths.prefix_matches(prefix, path) is matches


@pytest.mark.parametrize(
    ("base", "rest", "expected"),
    [
        ("/user", "/123", "/user/123"),
        ("", "/123", "/123"),
        ("", "", "/"),
        ("/user", "", "/user"),
        ("/user/", "/x", "/user/x"),
        ("/files", "a.css", "/files/a.css"),
        ("/user", "//x", "/user//x"),
    ],
)
def test_join_path(base: str, rest: str, expected: str) -> None:
    assert _paths.join_path(base, rest) == expected


def _upstream(
    headers: list[tuple[bytes, bytes]], client: str | None = "198.51.100.1"
) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    decoded = [(name.decode(), value.decode()) for name, value in headers]
    forwarded = _headers.upstream_request_headers(
        decoded,
        client=client,
        scheme="https",
        request_id="rid",
        via="1.1 edge-router",
        keep_content_length=False,
    )
    for name, value in [("host", "b.example"), *forwarded]:  # each attempt adds its target's Host
        out.setdefault(name, []).append(value)
    return out


def test_hop_by_hop_and_connection_listed_headers_are_dropped() -> None:
    sent = _upstream(
        [
            (b"connection", b"keep-alive, X-Secret-Hop"),
            (b"x-secret-hop", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"te", b"trailers"),
            (b"upgrade", b"websocket"),
            (b"proxy-authorization", b"Basic x"),
            (b"authorization", b"Bearer t"),
            (b"cookie", b"a=1"),
        ]
    )
    for gone in ("connection", "x-secret-hop", "keep-alive", "te", "upgrade", "proxy-authorization"):
        assert gone not in sent
    assert sent["authorization"] == ["Bearer t"]
    assert sent["cookie"] == ["a=1"]


def test_proxy_headers_are_set_not_trusted_from_the_client() -> None:
    sent = _upstream(
        [
            (b"host", b"router.example"),
            (b"x-forwarded-proto", b"http"),
            (b"x-forwarded-host", b"evil.example"),
            (b"x-request-id", b"client-id"),
        ]
    )
    assert sent["host"] == ["b.example"]
    assert sent["x-forwarded-proto"] == ["https"]
    assert sent["x-forwarded-host"] == ["router.example"]
    assert sent["x-request-id"] == ["rid"]
    assert sent["via"] == ["1.1 edge-router"]
    assert sent["x-forwarded-for"] == ["198.51.100.1"]


@pytest.mark.parametrize(
    ("existing", "client", "expected"),
    [
        (None, "1.1.1.1", "1.1.1.1"),
        ("9.9.9.9", "1.1.1.1", "9.9.9.9, 1.1.1.1"),
        ("9.9.9.9, 1.1.1.1", "1.1.1.1", "9.9.9.9, 1.1.1.1"),  # already appended by the function URL
        ("9.9.9.9", None, "9.9.9.9"),
    ],
)
def test_forwarded_for_ends_with_client_once(existing: str | None, client: str | None, expected: str) -> None:
    assert _headers.append_forwarded_for(existing, client) == expected


@pytest.mark.parametrize(
    ("via", "count"),
    [
        (None, 0),
        ("1.1 edge-router", 1),
        ("1.1 edge-router, 1.1 cdn, 1.1 edge-router", 2),
        ("1.1 edge-router-x", 0),
        ("HTTP/1.1 edge-router (v1), 1.0 edge-router", 2),
    ],
)
def test_via_count(via: str | None, count: int) -> None:
    assert _headers.via_count(via, "edge-router") == count


@pytest.mark.parametrize(
    ("headers", "valid"),
    [
        ([(b"content-type", b"text/plain"), (b"x-a", b"1\t2")], True),
        ([], True),
        ([(b"x-a\n", b"1")], False),  # `$` in a pattern would let a trailing newline through
        ([(b"x a", b"1")], False),
        ([(b"x-a", b"1\x01")], False),
        ([(b"x-a", b"1\n")], False),
    ],
)
def test_response_head_names_are_tokens_and_values_have_no_control_characters(
    headers: list[tuple[bytes, bytes]], valid: bool
) -> None:
    assert (_headers.valid_response_head(200, headers) is None) is valid


def test_response_hop_by_hop_dropped_and_cookies_kept() -> None:
    kept = _headers.downstream_response_headers(
        [
            (b"Transfer-Encoding", b"chunked"),
            (b"Connection", b"close, X-Internal"),
            (b"X-Internal", b"1"),
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
            (b"Content-Encoding", b"gzip"),
        ]
    )
    assert kept == [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"Content-Encoding", b"gzip")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"a=1&b=%2F&a=2", "a=1&b=%2F&a=2"),
        (b"q=%7e+x&empty=&flag", "q=%7e+x&empty=&flag"),  # kept byte for byte, escapes untouched
        (b"q=caf\xc3\xa9", "q=caf%C3%A9"),
        (b"q=a b", "q=a%20b"),
        (b"next=/a?b", "next=/a?b"),
    ],
)
def test_escape_query(raw: bytes, expected: str) -> None:
    assert _paths.escape_query(raw) == expected
