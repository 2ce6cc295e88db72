"""A backend's absolute redirect rewritten to a path under the route (`http/redirects.py`), by table.

What a client notices: following a backend's redirect keeps it on the router (it never learns or
tries the backend's address), the query and fragment survive, and every Location that is not the
backend's own passes exactly as the backend sent it.
"""

from __future__ import annotations

import pytest

from edge_router.config.model import parse_target
from edge_router.http.paths import prefix_matches
from edge_router.http.redirects import rewrite_location, rewrite_response_locations
from edge_router.types import Header

# (origin, base_path, prefix, Location as sent, Location as the client gets it)
TABLE: list[tuple[str, str, str, bytes, bytes]] = [
    # under the base path: origin + base path -> prefix
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v1/users/7", b"/api/users/7"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v1", b"/api"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v1/", b"/api/"),
    (
        "http://backend:8080",
        "/v1",
        "/api",
        b"http://backend:8080/v1/x?a=1&b=%2F#top",
        b"/api/x?a=1&b=%2F#top",
    ),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v1?a=1", b"/api?a=1"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v1#f", b"/api#f"),
    ("http://backend:8080", "/v1", "/api", b"HTTP://BACKEND:8080/v1/x", b"/api/x"),
    ("http://backend:8080", "/v1", "/api", b"//backend:8080/v1/x", b"/api/x"),  # scheme-relative
    ("http://backend:8080", "/v1", "/api", b"http://backend:08080/v1/x", b"/api/x"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v1/caf\xc3\xa9", b"/api/caf\xc3\xa9"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v1/a%2F..%2Fb", b"/api/a%2F..%2Fb"),
    # segment-wise, case-sensitive paths
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v1x", b"http://backend:8080/v1x"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v2/x", b"http://backend:8080/v2/x"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/V1/x", b"http://backend:8080/V1/x"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080", b"http://backend:8080"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080?x", b"http://backend:8080?x"),
    # another origin
    ("http://backend:8080", "/v1", "/api", b"https://backend:8080/v1/x", b"https://backend:8080/v1/x"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8081/v1/x", b"http://backend:8081/v1/x"),
    ("http://backend:8080", "/v1", "/api", b"http://backend/v1/x", b"http://backend/v1/x"),
    ("http://backend:8080", "/v1", "/api", b"http://other:8080/v1/x", b"http://other:8080/v1/x"),
    (
        "http://backend:8080",
        "/v1",
        "/api",
        b"http://backend.evil.io:8080/v1/x",
        b"http://backend.evil.io:8080/v1/x",
    ),
    (
        "http://backend:8080",
        "/v1",
        "/api",
        b"http://user@backend:8080/v1/x",
        b"http://user@backend:8080/v1/x",
    ),
    (
        "http://backend:8080",
        "/v1",
        "/api",
        b"http://backend:8080@evil.io/v1/x",
        b"http://backend:8080@evil.io/v1/x",
    ),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080:/v1/x", b"http://backend:8080:/v1/x"),
    ("http://backend:8080", "/v1", "/api", b"ftp://backend:8080/v1/x", b"ftp://backend:8080/v1/x"),
    # relative references and garbage pass byte for byte
    ("http://backend:8080", "/v1", "/api", b"/v1/x", b"/v1/x"),
    ("http://backend:8080", "/v1", "/api", b"x/y", b"x/y"),
    ("http://backend:8080", "/v1", "/api", b"?page=2", b"?page=2"),
    ("http://backend:8080", "/v1", "/api", b"", b""),
    ("http://backend:8080", "/v1", "/api", b"not a url", b"not a url"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v1/\xff", b"http://backend:8080/v1/\xff"),
    ("http://backend:8080", "/v1", "/api", b" http://backend:8080/v1/x", b" http://backend:8080/v1/x"),
    ("http://backend:8080", "/v1", "/api", b"http://backend:8080/v1/\tx", b"http://backend:8080/v1/\tx"),
    ("http://backend:8080", "/v1", "/api", b"http:///v1/x", b"http:///v1/x"),
    # default ports: explicit, empty or none are one origin
    ("https://api.example.com", "", "/ext", b"https://api.example.com:443/a", b"/ext/a"),
    ("https://api.example.com", "", "/ext", b"https://api.example.com:/a", b"/ext/a"),
    ("https://api.example.com", "", "/ext", b"https://API.Example.COM/a", b"/ext/a"),
    ("https://api.example.com", "", "/ext", b"https://api.example.com", b"/ext"),
    ("https://api.example.com", "", "/ext", b"https://api.example.com?x=1", b"/ext?x=1"),
    ("https://api.example.com", "", "/ext", b"http://api.example.com/a", b"http://api.example.com/a"),
    (
        "https://api.example.com",
        "",
        "/ext",
        b"https://api.example.com:8443/a",
        b"https://api.example.com:8443/a",
    ),
    ("http://b", "/", "/x", b"http://b:80/a", b"/x/a"),
    # prefix and base path shapes: one slash between them, never two
    ("http://b", "/", "/static/", b"http://b/a.css", b"/static/a.css"),
    ("http://b", "/", "/static/", b"http://b/", b"/static/"),
    ("http://b", "/", "/static/", b"http://b", b"/static/"),
    ("http://b", "/user", "/", b"http://b/user/1", b"/1"),
    ("http://b", "/user", "/", b"http://b/user", b"/"),
    ("http://b", "/v1/", "/api", b"http://b/v1/x", b"/api/x"),
    ("http://b", "/v1/", "/api", b"http://b/v1", b"/api"),
    # the priority format forwards the whole path: prefix ""
    ("http://b", "", "", b"http://b/full/path?q", b"/full/path?q"),
    ("http://b", "", "", b"http://b", b"/"),
    ("http://b", "/v1", "", b"http://b/v1/x", b"/x"),
    ("http://b", "/v1", "", b"http://b/v1", b"/"),
    # never an open redirect of the router's making: a result a browser reads as a host stays as sent
    ("http://b", "/v1", "", b"http://b/v1//evil.example/x", b"http://b/v1//evil.example/x"),
    ("http://b", "/v1", "", b"http://b/v1/\\evil.example", b"http://b/v1/\\evil.example"),
    ("http://b", "/", "/", b"http://b//evil.example", b"http://b//evil.example"),
    ("http://b", "/v1", "/api", b"http://b/v1//evil.example/x", b"/api//evil.example/x"),
    # IPv6 literals
    ("http://[::1]:8080", "", "/api", b"http://[::1]:8080/x", b"/api/x"),
    ("http://[::1]:8080", "", "/api", b"http://[::2]:8080/x", b"http://[::2]:8080/x"),
    ("http://[::1]:8080", "", "/api", b"http://[::1]/x", b"http://[::1]/x"),
    ("http://[::1]:8080", "", "/api", b"http://[::1]x:8080/x", b"http://[::1]x:8080/x"),
    # a Lambda target has no origin to point at
    ("lambda:my-function", "", "/api", b"http://my-function/x", b"http://my-function/x"),
]


@pytest.mark.parametrize(("origin", "base_path", "prefix", "sent", "expected"), TABLE)
def test_rewrite_location(origin: str, base_path: str, prefix: str, sent: bytes, expected: bytes) -> None:
    assert rewrite_location(sent, origin=origin, base_path=base_path, prefix=prefix) == expected


@pytest.mark.parametrize(
    ("prefix", "target", "client_path"),
    [
        ("/api/v1/user", "http://backend:8080/user", "/api/v1/user/123"),
        ("/api/v1/user", "http://backend:8080/user", "/api/v1/user"),
        ("/api/v1/user", "http://backend:8080/user", "/api/v1/user/"),
        ("/api/", "http://backend:8080/user", "/api/"),
        ("/api/", "http://backend:8080/user", "/api/a/b"),
        ("/api", "https://backend.example/", "/api/a%20b/c"),
        ("/api", "http://[::1]:9000/svc", "/api/x"),
    ],
)
def test_a_redirect_to_the_url_the_backend_was_asked_for_returns_to_the_url_the_client_asked(
    prefix: str, target: str, client_path: str
) -> None:
    # the forward direction exactly as routing builds it (routing/candidates.py, Target.url)
    assert prefix_matches(prefix, client_path)
    parsed = parse_target(target)
    upstream = parsed.url(client_path[len(prefix) :], "?page=2")
    rewritten = rewrite_location(
        upstream.encode(), origin=parsed.origin, base_path=parsed.base_path, prefix=prefix
    )
    assert rewritten == f"{client_path}?page=2".encode()


def test_the_priority_format_rewrites_with_an_empty_prefix() -> None:
    # strip_prefix=False: the upstream path is the base path + the client's whole path
    parsed = parse_target("http://backend:8080/v2")
    upstream = parsed.url("/api/orders/9", "")
    assert rewrite_location(
        upstream.encode(), origin=parsed.origin, base_path=parsed.base_path, prefix=""
    ) == (b"/api/orders/9")


HEADERS: list[Header] = [
    (b"content-type", b"text/html"),
    (b"Location", b"http://backend:8080/v1/next"),
    (b"content-location", b"http://backend:8080/v1/doc.json"),
    (b"link", b"<http://backend:8080/v1/next>; rel=next"),
    (b"refresh", b"0; url=http://backend:8080/v1/next"),
]


def test_only_location_and_content_location_are_rewritten() -> None:
    headers = list(HEADERS)
    rewritten = rewrite_response_locations(
        headers, origin="http://backend:8080", base_path="/v1", prefix="/api"
    )
    assert rewritten == [
        (b"content-type", b"text/html"),
        (b"Location", b"/api/next"),
        (b"content-location", b"/api/doc.json"),
        (b"link", b"<http://backend:8080/v1/next>; rel=next"),
        (b"refresh", b"0; url=http://backend:8080/v1/next"),
    ]
    assert headers == HEADERS  # a new list; the argument is untouched


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        [],
        [(b"location", b"https://elsewhere.example/x")],
        [(b"location", b"/v1/relative"), (b"content-location", b"doc.json")],
    ],
)
def test_an_answer_with_nothing_to_rewrite_is_the_same_list(headers: list[Header]) -> None:
    assert (
        rewrite_response_locations(headers, origin="http://backend:8080", base_path="/v1", prefix="/api")
        is headers
    )
