"""The response cache end to end (CONTRACT section 9): a real router in front of real backends on
127.0.0.1, asserting what a client and the backend see — how often the backend was asked, and
the exact bytes each client got."""

from __future__ import annotations

import gzip
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_router.testing import function_url_event
from support import Backend, RawBackend, Reply, RouterServer, Seen, read_head, response_body, write_config

ADMIN = {"x-admin-key": "a" * 32}
CACHED = {"enabled": True, "ttl": 300}


def serve(tmp_path: Path, routes: list[dict[str, Any]], **extra: Any) -> RouterServer:
    document = {"routes": routes, **extra}
    return RouterServer(
        write_config(tmp_path / "config.json", document), env={"ADMIN_KEY": ADMIN["x-admin-key"]}
    )


def counter_backend(**headers: str) -> Backend:
    """A backend whose every answer is new (`n=1`, `n=2`, ...), with `headers`."""
    count = iter(range(1, 10_000))

    def respond(seen: Seen) -> Reply:
        return Reply(
            headers=[("Content-Type", "text/plain"), *headers.items()], body=f"n={next(count)}".encode()
        )

    return Backend(respond)


def raw_get(client: httpx.Client, path: str, **headers: str) -> tuple[httpx.Response, bytes]:
    """GET without decoding: the exact bytes on the wire."""
    with client.stream("GET", path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


# --- hits, and bytes in = bytes out ----------------------------------------------------------


def test_a_miss_then_a_hit_with_age(tmp_path: Path) -> None:
    with (
        counter_backend() as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": CACHED}]) as router,
    ):
        with router.client() as client:
            first = client.get("/data?q=1")
            time.sleep(1.05)
            second = client.get("/data?q=1")
            other_query = client.get("/data?q=2")
    assert (first.headers["x-cache"], first.text) == ("MISS", "n=1")
    assert "age" not in first.headers
    assert (second.headers["x-cache"], second.text) == ("HIT", "n=1")
    assert int(second.headers["age"]) >= 1
    assert second.headers["x-request-id"] != first.headers["x-request-id"]  # the router's, per answer
    assert second.headers["x-backend-source"] == backend.url
    assert (other_query.headers["x-cache"], other_query.text) == ("MISS", "n=2")
    assert [seen.target for seen in backend.seen] == ["/data?q=1", "/data?q=2"]


@pytest.mark.parametrize("size", [1, 5000, 200_000], ids=["tiny", "small", "streamed"])
def test_binary_and_gzip_bodies_come_back_byte_exact(tmp_path: Path, size: int) -> None:
    payload = os.urandom(size)
    zipped = gzip.compress(os.urandom(size // 2) + b"text" * (size // 8))

    def respond(seen: Seen) -> Reply:
        if seen.target == "/zip":
            return Reply(headers=[("Content-Type", "text/plain"), ("Content-Encoding", "gzip")], body=zipped)
        if seen.target == "/chunked":  # no Content-Length: streamed through the tee
            return Reply(
                headers=[("Content-Type", "application/octet-stream")],
                body=[part for part in (payload[:7], payload[7:]) if part],
            )
        return Reply(headers=[("Content-Type", "application/octet-stream")], body=payload)

    with (
        Backend(respond) as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": CACHED}]) as router,
    ):
        with router.client() as client:
            for path, expected in (("/bin", payload), ("/zip", zipped), ("/chunked", payload)):
                miss, miss_bytes = raw_get(client, path, **{"accept-encoding": "gzip"})
                hit, hit_bytes = raw_get(client, path, **{"accept-encoding": "gzip"})
                assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT"), path
                assert miss_bytes == hit_bytes == expected, path
                assert hit.headers.get("content-encoding") == miss.headers.get("content-encoding")
    assert len(backend.seen) == 3


# --- one caller's answer is never another's ----------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["Authorization", "Cookie", "X-API-Key"],
)
def test_a_callers_answer_is_never_served_to_another_caller(tmp_path: Path, header: str) -> None:
    def respond(seen: Seen) -> Reply:
        # public: a shared cache may store it even for an authorized request (RFC 9111 3.5)
        return Reply(
            headers=[("Content-Type", "text/plain"), ("Cache-Control", "public, max-age=60")],
            body=f"for {seen.header(header)}".encode(),
        )

    with (
        Backend(respond) as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": CACHED}]) as router,
    ):
        with router.client() as client:
            a1 = client.get("/me", headers={header: "alice"})
            a2 = client.get("/me", headers={header: "alice"})
            b1 = client.get("/me", headers={header: "bob"})
            anonymous = client.get("/me")
    assert (a1.text, a1.headers["x-cache"]) == ("for alice", "MISS")
    assert (a2.text, a2.headers["x-cache"]) == ("for alice", "HIT")
    assert (b1.text, b1.headers["x-cache"]) == ("for bob", "MISS")
    assert (anonymous.text, anonymous.headers["x-cache"]) == ("for None", "MISS")
    assert len(backend.seen) == 3


def test_a_public_route_shares_one_entry_between_callers(tmp_path: Path) -> None:
    with counter_backend() as backend:
        route = {"prefix": "/", "target": backend.url, "cache": {**CACHED, "public": True}}
        with serve(tmp_path, [route]) as router, router.client() as client:
            first = client.get("/p", headers={"cookie": "a=1"})
            second = client.get("/p", headers={"cookie": "b=2"})
    assert (first.text, second.text, second.headers["x-cache"]) == ("n=1", "n=1", "HIT")


def test_an_authorized_request_is_stored_only_when_the_answer_allows_it(tmp_path: Path) -> None:
    """RFC 9111 3.5: a shared cache keeps an answer to an authorized request only when it says
    `public`, `s-maxage` or `must-revalidate` (the key holds the caller's identity either way)."""
    with counter_backend(**{"Cache-Control": "max-age=60"}) as backend:
        route = {"prefix": "/", "target": backend.url, "cache": {**CACHED, "respectCacheControl": True}}
        with serve(tmp_path, [route]) as router, router.client() as client:
            texts = [client.get("/a", headers={"authorization": "Bearer x"}).text for _ in range(2)]
    assert texts == ["n=1", "n=2"]


# --- never stored -----------------------------------------------------------------------------

NEVER_STORED = {
    "set-cookie": Reply(headers=[("Set-Cookie", "session=abc"), ("Content-Type", "text/plain")]),
    "private": Reply(headers=[("Cache-Control", "private, max-age=60")]),
    "no-store": Reply(headers=[("Cache-Control", "no-store")]),
    "vary-star": Reply(headers=[("Vary", "*")]),
    "500": Reply(status=500),
    "503": Reply(status=503, headers=[("Cache-Control", "max-age=60")]),
    "over-entry-cap": Reply(body=b"x" * 2048),
    "over-entry-cap-chunked": Reply(body=[b"x" * 1000, b"y" * 1048]),
}


@pytest.mark.parametrize("case", sorted(NEVER_STORED))
def test_what_is_never_stored(tmp_path: Path, case: str) -> None:
    template = NEVER_STORED[case]
    count = iter(range(1, 100))

    def respond(seen: Seen) -> Reply:
        body = template.body if case.startswith("over") else f"n={next(count)}".encode()
        return Reply(status=template.status, headers=template.headers, body=body)

    cache = {**CACHED, "maxEntryBytes": 1024}
    with (
        Backend(respond) as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": cache}]) as router,
    ):
        with router.client() as client:
            answers = [client.get("/thing") for _ in range(2)]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "MISS"]
    assert len(backend.seen) == 2
    if case.startswith("over"):  # streamed through whole, just not kept
        assert [len(a.content) for a in answers] == [2048, 2048]
    if case == "set-cookie":
        assert answers[1].headers["set-cookie"] == "session=abc"


# --- freshness, revalidation ------------------------------------------------------------------


def test_max_age_beats_the_route_ttl(tmp_path: Path) -> None:
    with counter_backend(**{"Cache-Control": "max-age=1"}) as backend:
        with serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": CACHED}]) as router:
            with router.client() as client:
                first, second = client.get("/f"), client.get("/f")
                time.sleep(1.1)
                third = client.get("/f")
    assert [(r.text, r.headers["x-cache"]) for r in (first, second, third)] == [
        ("n=1", "MISS"),
        ("n=1", "HIT"),
        ("n=2", "MISS"),
    ]


def test_without_respect_cache_control_the_route_ttl_rules(tmp_path: Path) -> None:
    with counter_backend(**{"Cache-Control": "max-age=0"}) as backend:
        cache = {**CACHED, "respectCacheControl": False}
        with serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": cache}]) as router:
            with router.client() as client:
                texts = [client.get("/f").text for _ in range(3)]
    assert texts == ["n=1", "n=1", "n=1"]


def test_a_stale_entry_is_revalidated_and_a_304_refreshes_it(tmp_path: Path) -> None:
    def respond(seen: Seen) -> Reply:
        headers = [("ETag", '"v1"'), ("Cache-Control", "max-age=1"), ("Content-Type", "text/plain")]
        if seen.header("if-none-match") == '"v1"':
            return Reply(status=304, headers=[("ETag", '"v1"'), ("Cache-Control", "max-age=60")], body=b"")
        return Reply(headers=headers, body=b"the body")

    with (
        Backend(respond) as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": CACHED}]) as router,
    ):
        with router.client() as client:
            client.get("/r")
            time.sleep(1.1)
            revalidated = client.get("/r")
            after = client.get("/r")
    assert [seen.header("if-none-match") for seen in backend.seen] == [None, '"v1"']
    assert (revalidated.status_code, revalidated.text, revalidated.headers["x-cache"]) == (
        200,
        "the body",
        "HIT",
    )
    assert revalidated.headers["cache-control"] == "max-age=60"  # the 304's headers replaced the old
    assert (after.text, after.headers["x-cache"]) == ("the body", "HIT")  # fresh again: no request


def test_a_clients_own_validator_gets_a_304_from_the_cache(tmp_path: Path) -> None:
    def respond(seen: Seen) -> Reply:
        return Reply(headers=[("ETag", '"abc"'), ("Cache-Control", "max-age=60")], body=b"body")

    with (
        Backend(respond) as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": CACHED}]) as router,
    ):
        with router.client() as client:
            client.get("/c")
            conditional = client.get("/c", headers={"if-none-match": 'W/"abc"'})
    assert (conditional.status_code, conditional.content, conditional.headers["etag"]) == (304, b"", '"abc"')
    assert len(backend.seen) == 1


def test_a_request_no_cache_and_the_bypass_header_go_to_the_backend(tmp_path: Path) -> None:
    with counter_backend() as backend:
        cache = {**CACHED, "bypassHeader": "X-No-Cache"}
        with serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": cache}]) as router:
            with router.client() as client:
                client.get("/b")
                bypassed = client.get("/b", headers={"x-no-cache": "1"})
                no_cache = client.get("/b", headers={"cache-control": "no-cache"})
                after = client.get("/b")
    assert (bypassed.text, bypassed.headers["x-cache"]) == ("n=2", "BYPASS")
    assert (no_cache.text, no_cache.headers["x-cache"]) == ("n=3", "BYPASS")
    assert (after.text, after.headers["x-cache"]) == ("n=3", "HIT")  # the fetched answer was stored


def test_stale_while_revalidate_serves_stale_at_once_and_refreshes_in_the_background(tmp_path: Path) -> None:
    count = iter(range(1, 100))

    def respond(seen: Seen) -> Reply:
        n = next(count)
        return Reply(
            headers=[("Content-Type", "text/plain")], body=f"n={n}".encode(), delay=0.0 if n == 1 else 0.5
        )

    with Backend(respond) as backend:
        cache = {"enabled": True, "ttl": 1, "staleWhileRevalidate": 30}
        with serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": cache}]) as router:
            with router.client() as client:
                client.get("/s")
                time.sleep(1.1)
                started = time.monotonic()
                stale = client.get("/s")
                took = time.monotonic() - started
                also_stale = client.get("/s")  # one background refresh per key, not two
                deadline = time.monotonic() + 5
                while client.get("/s").text != "n=2" and time.monotonic() < deadline:
                    time.sleep(0.05)
                refreshed = client.get("/s")
    assert (stale.text, stale.headers["x-cache"]) == ("n=1", "HIT")
    assert took < 0.4  # not held up by the 0.5 s revalidation
    assert also_stale.text == "n=1"
    assert (refreshed.text, refreshed.headers["x-cache"]) == ("n=2", "HIT")
    assert len(backend.seen) == 2


# --- keys: varyBy, the backend's Vary, methods --------------------------------------------------


def test_vary_by_and_the_backends_vary_keep_variants_apart(tmp_path: Path) -> None:
    def respond(seen: Seen) -> Reply:
        body = f"{seen.header('accept-language')}/{seen.header('x-flavour')}".encode()
        return Reply(headers=[("Vary", "X-Flavour"), ("Content-Type", "text/plain")], body=body)

    with Backend(respond) as backend:
        cache = {**CACHED, "varyBy": ["Accept-Language"]}
        with serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": cache}]) as router:
            with router.client() as client:
                asks = [("en", "a"), ("fr", "a"), ("en", "b"), ("en", "a"), ("fr", "a"), ("en", "b")]
                texts = [
                    client.get("/v", headers={"accept-language": lang, "x-flavour": flavour}).text
                    for lang, flavour in asks
                ]
    assert texts == ["en/a", "fr/a", "en/b", "en/a", "fr/a", "en/b"]
    assert len(backend.seen) == 3


def test_head_is_cached_apart_and_a_successful_post_invalidates_the_uri(tmp_path: Path) -> None:
    with counter_backend() as backend:
        with serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": CACHED}]) as router:
            with router.client() as client:
                client.get("/u")
                head = client.head("/u")
                assert client.get("/u").headers["x-cache"] == "HIT"
                posted = client.post("/u", content=b"x")
                after = client.get("/u")
    assert (head.headers["x-cache"], head.content) == ("MISS", b"")
    assert posted.headers["x-cache"] == "BYPASS"
    assert (after.headers["x-cache"], after.text) == ("MISS", "n=4")


# --- admin --------------------------------------------------------------------------------------


def test_invalidation_by_prefix_and_the_stats(tmp_path: Path) -> None:
    with counter_backend() as backend:
        with serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": CACHED}]) as router:
            with router.client() as client:
                for path in ("/api/data/1", "/api/data/2?x=1", "/api/other"):
                    client.get(path)
                client.get("/api/other")
                assert client.post("/admin/cache-invalidate?prefix=GET::/api/data").status_code in (401, 403)
                dropped = client.post(
                    "/admin/cache-invalidate", params={"prefix": "GET::/api/data"}, headers=ADMIN
                )
                missing = client.post("/admin/cache-invalidate", headers=ADMIN)
                after = [client.get(path).headers["x-cache"] for path in ("/api/data/1", "/api/other")]
                stats = client.get("/admin/cache-stats", headers=ADMIN).json()
    assert dropped.json() == {"invalidated": 2}
    assert missing.status_code == 400
    assert after == ["MISS", "HIT"]
    assert stats["entries"] == 2 and stats["hits"] == 2 and stats["misses"] == 4
    assert stats["hit_rate"] == pytest.approx(2 / 6, abs=1e-3)
    assert stats["bytes"] > 0


# --- coalescing ---------------------------------------------------------------------------------


def test_twenty_concurrent_gets_share_one_upstream_request(tmp_path: Path) -> None:
    body = os.urandom(3000)

    def respond(seen: Seen) -> Reply:
        return Reply(headers=[("Content-Type", "application/octet-stream")], body=body, delay=0.5)

    with Backend(respond) as backend:
        route = {"prefix": "/", "target": backend.url, "cache": CACHED, "deduplication": {"enabled": True}}
        with serve(tmp_path, [route]) as router:
            answers: list[bytes] = []
            barrier = threading.Barrier(20)

            def fetch() -> None:
                with router.client() as client:
                    barrier.wait()
                    answers.append(client.get("/slow").content)

            threads = [threading.Thread(target=fetch) for _ in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            with router.client() as client:
                stats = client.get("/admin/dedup-stats", headers=ADMIN).json()
    assert answers == [body] * 20
    assert len(backend.seen) == 1
    assert stats == {"coalesced": 19, "leaders": 1, "in_flight": 0}


def test_coalescing_without_a_cache_shares_only_the_flight(tmp_path: Path) -> None:
    count = iter(range(1, 100))

    def respond(seen: Seen) -> Reply:
        return Reply(headers=[("Content-Type", "text/plain")], body=f"n={next(count)}".encode(), delay=0.4)

    with Backend(respond) as backend:
        route = {"prefix": "/", "target": backend.url, "deduplication": {"enabled": True, "windowMs": 5000}}
        with serve(tmp_path, [route]) as router:
            texts: list[str] = []

            def fetch() -> None:
                with router.client() as client:
                    texts.append(client.get("/d").text)

            threads = [threading.Thread(target=fetch) for _ in range(5)]
            for thread in threads:
                thread.start()
                time.sleep(0.02)
            for thread in threads:
                thread.join(10)
            with router.client() as client:
                later = client.get("/d")
    assert texts == ["n=1"] * 5
    assert (later.text, "x-cache" in later.headers) == ("n=2", False)  # nothing was stored


def _broken_first_answer(body: bytes) -> tuple[RawBackend, list[int]]:
    """A backend whose first answer breaks off after 0.4 s; the others are whole."""
    served: list[int] = []

    def handle(conn: socket.socket) -> None:
        while True:
            try:
                if not read_head(conn):
                    return  # the router closed its pooled connection
            except OSError:
                return
            served.append(len(served) + 1)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
            if len(served) == 1:
                time.sleep(0.4)
                conn.sendall(head + body[:10])
                conn.close()
                return
            time.sleep(0.1)
            conn.sendall(head + body)

    return RawBackend(handle), served


@pytest.mark.parametrize("size", [1000, 300_000], ids=["read-whole", "streamed"])
def test_a_failed_leader_does_not_strand_its_followers(tmp_path: Path, size: int) -> None:
    body = os.urandom(size)
    backend, served = _broken_first_answer(body)
    with backend:
        route = {"prefix": "/", "target": backend.url, "cache": CACHED, "deduplication": {"enabled": True}}
        with serve(tmp_path, [route]) as router:
            results: list[bytes | str] = []

            def fetch(delay: float) -> None:
                time.sleep(delay)
                with router.client() as client:
                    try:
                        answer = client.get("/x")
                        results.append(
                            answer.content if answer.status_code == 200 else str(answer.status_code)
                        )
                    except httpx.HTTPError as exc:
                        results.append(type(exc).__name__)

            threads = [threading.Thread(target=fetch, args=(0.0 if i == 0 else 0.15,)) for i in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
    # the leader's own answer says it broke: a 502 when it was read whole, a connection ended
    # without its body's end when it was streamed; never the truncated bytes as complete
    leader = "502" if size < 65536 else "RemoteProtocolError"
    assert [r for r in results if isinstance(r, str)] == [leader]
    assert [r for r in results if isinstance(r, bytes)] == [body] * 5
    assert len(served) == 2, served  # one new leader for all five followers


def test_a_leader_whose_client_left_still_answers_its_followers(tmp_path: Path) -> None:
    def respond(seen: Seen) -> Reply:
        return Reply(headers=[("Content-Type", "text/plain")], body=b"whole", delay=0.6)

    with Backend(respond) as backend:
        route = {"prefix": "/", "target": backend.url, "cache": CACHED, "deduplication": {"enabled": True}}
        with serve(tmp_path, [route]) as router:
            port = int(router.url.rsplit(":", 1)[1])
            leader = socket.create_connection(("127.0.0.1", port))
            leader.sendall(b"GET /gone HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)  # httpx's Host
            time.sleep(0.15)
            leader.close()  # the leader's client leaves before the answer
            with router.client() as client:
                follower = client.get("/gone")
    assert (follower.status_code, follower.text) == (200, "whole")
    assert len(backend.seen) == 1


# --- Lambda, priority format, metrics -----------------------------------------------------------


def test_the_cache_works_on_lambda(tmp_path: Path, lambda_adapter: Any) -> None:
    with counter_backend() as backend:
        source = write_config(
            tmp_path / "c.json", {"routes": [{"prefix": "/", "target": backend.url, "cache": CACHED}]}
        )
        handler = lambda_adapter(source)
        answers = [handler(function_url_event("GET", "/l"), None) for _ in range(2)]
    assert [a["headers"]["x-cache"] for a in answers] == ["MISS", "HIT"]
    assert [response_body(a) for a in answers] == [b"n=1", b"n=1"]


def test_the_priority_formats_app_cache(tmp_path: Path) -> None:
    with counter_backend() as backend:
        document = {
            "providers": {"1": backend.url},
            "global_priority": "1",
            "routes": {
                "watch": {"priority": "1", "cache": True, "cache_ttl_seconds": 60},
                "live": {"cache": False},
            },
        }
        source = write_config(tmp_path / "p.json", document)
        with RouterServer(source) as router, router.client() as client:
            watch = [client.get("/watch/x") for _ in range(2)]
            live = [client.get("/live/x") for _ in range(2)]
    assert [(r.text, r.headers["x-cache"]) for r in watch] == [("n=1", "MISS"), ("n=1", "HIT")]
    assert [("x-cache" in r.headers) for r in live] == [False, False]


def test_cache_hits_and_misses_reach_the_metrics_and_the_request_log(tmp_path: Path) -> None:
    with counter_backend() as backend:
        with serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": CACHED}]) as router:
            with router.client() as client:
                for _ in range(3):
                    client.get("/m")
                metrics = client.get("/admin/metrics", params={"window": "1m"}, headers=ADMIN).json()
            line = router.logged(path="/m", CacheHits=1)
    assert metrics["cache"] == {"hits": 2, "misses": 1, "hit_rate": pytest.approx(2 / 3, abs=1e-3)}
    assert line["CacheMisses"] == 0
    assert json.dumps(line)  # a JSON line with the EMF values


# --- a stale entry when the backend fails, ranges, CDN-Cache-Control ----------------------------


def test_a_stale_entry_answers_for_a_backend_that_failed_unless_it_must_revalidate(tmp_path: Path) -> None:
    down = threading.Event()

    def handle(conn: socket.socket) -> None:
        while True:
            try:
                head = read_head(conn)
            except OSError:
                return
            if not head or down.is_set():
                conn.close()  # the backend breaks every exchange: no answer at all
                return
            strict = b" /strict " in head.split(b"\r\n", 1)[0]
            control = b"max-age=1, must-revalidate" if strict else b"max-age=1"
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nCache-Control: " + control + b"\r\nContent-Length: 4\r\n\r\nkept"
            )

    with RawBackend(handle) as backend:
        route = {"prefix": "/", "target": backend.url, "cache": {**CACHED, "staleIfError": 60}}
        with serve(tmp_path, [route]) as router, router.client() as client:
            client.get("/lenient")
            client.get("/strict")
            down.set()
            time.sleep(1.1)
            lenient, strict = client.get("/lenient"), client.get("/strict")
            line = router.logged(path="/lenient", status=200, cache="HIT")
    assert (lenient.status_code, lenient.text, lenient.headers["x-cache"]) == (200, "kept", "HIT")
    assert int(lenient.headers["age"]) >= 1
    assert "served stale" in line["error"]
    assert strict.status_code == 502  # must-revalidate: the failure is not hidden


def test_a_range_is_served_from_a_stored_whole_answer(tmp_path: Path) -> None:
    def respond(seen: Seen) -> Reply:
        return Reply(headers=[("Cache-Control", "max-age=60"), ("ETag", '"e1"')], body=b"0123456789")

    with (
        Backend(respond) as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": CACHED}]) as router,
    ):
        with router.client() as client:
            client.get("/r")
            part = client.get("/r", headers={"range": "bytes=2-4"})
            tail = client.get("/r", headers={"range": "bytes=-3"})
            beyond = client.get("/r", headers={"range": "bytes=50-"})
            other_version = client.get("/r", headers={"range": "bytes=0-1", "if-range": '"e0"'})
    assert (part.status_code, part.content, part.headers["content-range"]) == (206, b"234", "bytes 2-4/10")
    assert (tail.status_code, tail.content) == (206, b"789")
    assert (beyond.status_code, beyond.headers["content-range"]) == (416, "bytes */10")
    assert (other_version.status_code, other_version.content) == (200, b"0123456789")
    assert len(backend.seen) == 1


def test_cdn_cache_control_speaks_to_the_router_over_cache_control(tmp_path: Path) -> None:
    def respond(seen: Seen) -> Reply:
        targeted = "max-age=60" if seen.target == "/long" else "private"
        return Reply(
            headers=[
                ("CDN-Cache-Control", targeted),
                ("Cache-Control", "no-store" if seen.target == "/long" else "max-age=60"),
            ],
            body=seen.target.encode(),
        )

    cache = {"enabled": True, "ttl": 0, "respectCacheControl": True}
    with (
        Backend(respond) as backend,
        serve(tmp_path, [{"prefix": "/", "target": backend.url, "cache": cache}]) as router,
    ):
        with router.client() as client:
            long = [client.get("/long").headers["x-cache"] for _ in range(2)]
            private = [client.get("/private").headers["x-cache"] for _ in range(2)]
    assert long == ["MISS", "HIT"]  # CDN-Cache-Control: max-age=60 wins over Cache-Control: no-store
    assert private == ["MISS", "MISS"]  # CDN-Cache-Control: private wins over max-age=60
