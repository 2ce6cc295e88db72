"""Size limits by table (CONTRACT section 8, seed 002's defaults): exact boundaries.

A request exactly at a limit passes; one byte (or one header field) more is refused: 414 for the
request target (path and `?query`, in bytes as received), 431 for the header count or their summed
name and value bytes, 413 for a Content-Length over the body limit (at once, before any body is
read). A request that passes leaves the body limit on the context for the streamed-body count.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from edge_router.exceptions import Refusal
from edge_router.guards.size_limits import SizeLimitsGuard
from edge_router.http.channel import BufferedAnswer
from edge_router.http.context import RequestContext
from edge_router.http.responses import send_refusal
from support import run

SMALL = {"max_body_size": 1000, "max_url_length": 100, "max_header_size": 200, "max_header_count": 5}


def request(
    raw_path: str = "/", query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> RequestContext:
    return RequestContext(method="POST", raw_path=raw_path, query=query, raw_headers=headers or [])


def judged(ctx: RequestContext, **limits: int) -> Refusal | None:
    return run(SizeLimitsGuard(**{**SMALL, **limits}).on_request(ctx))


def answer(refusal: Refusal) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
    """What the client receives for `refusal`: status, JSON body, headers."""
    sent = BufferedAnswer()
    run(send_refusal(sent, refusal, request_id="r1", cors=()))
    return sent.status, json.loads(sent.content), dict(sent.headers)


def headers_of_size(total: int, count: int = 1) -> list[tuple[bytes, bytes]]:
    """`count` header fields whose names and values add up to `total` bytes."""
    fields = [(b"x-f%d" % index, b"") for index in range(count)]
    fields[-1] = (fields[-1][0], b"v" * (total - sum(len(name) for name, _ in fields)))
    return fields


@pytest.mark.parametrize(
    ("ctx", "status"),
    [
        # the request target: the path as received and `?query`
        (request("/" + "a" * 99), None),
        (request("/" + "a" * 100), 414),
        (request("/p", b"q=" + b"x" * 95), None),  # 2 + 1 + 97 = 100
        (request("/p", b"q=" + b"x" * 96), 414),
        (request("/%7E" + "b" * 96), None),  # escapes count as sent, three bytes each
        (request("/%7E" + "b" * 97), 414),
        # the header count
        (request(headers=[(b"x-a", b"1")] * 5), None),
        (request(headers=[(b"x-a", b"1")] * 6), 431),
        # the header bytes: names and values
        (request(headers=headers_of_size(200)), None),
        (request(headers=headers_of_size(201)), 431),
        (request(headers=headers_of_size(200, count=5)), None),
        (request(headers=headers_of_size(201, count=5)), 431),
        # a declared body
        (request(headers=[(b"content-length", b"1000")]), None),
        (request(headers=[(b"content-length", b"1001")]), 413),
        (request(headers=[(b"content-length", b"0000000001000")]), None),
        (request(headers=[(b"content-length", b"0")]), None),
        # not a number: the server refuses it, not this guard
        (request(headers=[(b"content-length", b"12abc")]), None),
        (request(headers=[(b"content-length", b"-5")]), None),
    ],
)
def test_limits_at_and_one_past(ctx: RequestContext, status: int | None) -> None:
    refusal = judged(ctx)
    assert (refusal.status if refusal else None) == status


@pytest.mark.parametrize(
    ("ctx", "status", "error", "limit"),
    [
        (request("/" + "a" * 100), 414, "URI Too Long", "100 bytes"),
        (request(headers=[(b"x-a", b"1")] * 6), 431, "Request Header Fields Too Large", "(5)"),
        (request(headers=headers_of_size(201)), 431, "Request Header Fields Too Large", "200 bytes"),
        (request(headers=[(b"content-length", b"1001")]), 413, "Payload Too Large", "1000 bytes"),
    ],
)
def test_the_answer_names_the_error_and_the_limit(
    ctx: RequestContext, status: int, error: str, limit: str
) -> None:
    refusal = judged(ctx)
    assert refusal is not None
    code, body, _ = answer(refusal)
    assert (code, body["error"]) == (status, error)
    assert limit in body["message"]


def test_a_content_length_of_thousands_of_digits_is_over_the_limit() -> None:
    refusal = judged(request(headers=[(b"content-length", b"9" * 5000)]), max_header_size=16384)
    assert refusal is not None and refusal.status == 413


def test_a_declared_oversize_body_closes_the_connection() -> None:
    # The body is not read, so the connection cannot carry another request.
    refusal = judged(request(headers=[(b"content-length", b"5000")]))
    assert refusal is not None
    assert answer(refusal)[2].get(b"connection") == b"close"


def test_the_url_is_judged_first() -> None:
    ctx = request("/" + "a" * 100, headers=[(b"x-a", b"1")] * 6 + [(b"content-length", b"5000")])
    refusal = judged(ctx)
    assert refusal is not None and refusal.status == 414


@pytest.mark.parametrize(
    ("before", "after"), [(None, 1000), (400, 400), (5000, 1000)], ids=["unset", "lower-kept", "higher-cut"]
)
def test_a_passing_request_carries_the_body_limit(before: int | None, after: int) -> None:
    ctx = request(headers=[(b"transfer-encoding", b"chunked")])
    ctx.body_limit = before
    assert judged(ctx) is None
    assert ctx.body_limit == after


def test_a_refused_request_sets_no_body_limit() -> None:
    ctx = request("/" + "a" * 100)
    assert judged(ctx) is not None
    assert ctx.body_limit is None


def test_seed_002_defaults() -> None:
    guard = SizeLimitsGuard()

    def status(ctx: RequestContext) -> int | None:
        refusal = run(guard.on_request(ctx))
        return refusal.status if refusal else None

    assert status(request("/" + "a" * 8191)) is None
    assert status(request("/" + "a" * 8192)) == 414
    assert status(request(headers=[(b"x-a", b"")] * 100)) is None
    assert status(request(headers=[(b"x-a", b"")] * 101)) == 431
    assert status(request(headers=headers_of_size(16384, count=3))) is None
    assert status(request(headers=headers_of_size(16385, count=3))) == 431
    assert status(request(headers=[(b"content-length", b"10485760")])) is None
    assert status(request(headers=[(b"content-length", b"10485761")])) == 413


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_body_size", 0),
        ("max_url_length", -1),
        ("max_header_size", True),
        ("max_header_count", 1.5),
        ("max_body_size", "10"),
    ],
)
def test_a_limit_that_cannot_be_enforced_is_refused_naming_it(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        SizeLimitsGuard(**{field: value})
