"""Request coalescing and the cache fill (CONTRACT section 9), without sockets.

Coalescing: one leader goes upstream, its followers get what it landed, a leader that fails or is
cancelled never strands them, a follower waits at most its window. The fill: what the proxy
stores of an answer it relays, and how a 304 refreshes a stale entry (RFC 9111 4.3.4).
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import pytest

from edge_router.cache.fill import CacheFill
from edge_router.cache.flights import Coalescer, Flight, Landed
from edge_router.cache.keys import label, primary_key
from edge_router.cache.policy import CacheRules
from edge_router.cache.store import Entry, PrimaryKey, ResponseCache
from edge_router.http.context import RequestContext
from support import Clock, run

NOW = 1_700_000_000.0
KEY: PrimaryKey = ("GET", "x", "/a", (), ())
OTHER: PrimaryKey = ("GET", "x", "/b", (), ())


def stored(body: bytes = b"hello", **fields: object) -> Entry:
    values: dict[str, object] = {
        "status": 200,
        "headers": [(b"content-type", b"text/plain")],
        "body": body,
        "source": "b1",
        "label": "GET::/a",
        "response_time": NOW,
        "initial_age": 0.0,
        "lifetime": 60.0,
        "stale_while_revalidate": 0.0,
        "must_revalidate": False,
    }
    values.update(fields)
    return Entry(**values)  # type: ignore[arg-type]


def landing(body: bytes = b"hello") -> Landed:
    return Landed(stored(body), (), ())


# --- coalescing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("followers", [1, 5, 50], ids=lambda n: f"{n}-followers")
def test_followers_get_what_the_leader_landed(followers: int) -> None:
    async def scenario() -> list[tuple[bool, Landed | None]]:
        coalescer = Coalescer()
        flight, leads = coalescer.join(KEY)
        assert leads
        waiting = []
        for _ in range(followers):
            same, follows = coalescer.join(KEY)
            assert same is flight and not follows
            waiting.append(asyncio.ensure_future(coalescer.follow(same, 5.0)))
        await asyncio.sleep(0)
        assert not any(task.done() for task in waiting)
        answer = landing(b"the answer")
        coalescer.land(KEY, flight, answer)
        results = await asyncio.gather(*waiting)
        assert all(landed is answer for _, landed in results)
        assert coalescer.stats() == {"coalesced": 0, "leaders": 1, "in_flight": 0}
        return results

    results = run(scenario())
    assert [arrived for arrived, _ in results] == [True] * followers


@pytest.mark.parametrize("followers", [1, 10], ids=lambda n: f"{n}-followers")
def test_a_leader_that_lands_nothing_wakes_every_follower(followers: int) -> None:
    async def scenario() -> list[tuple[bool, Landed | None]]:
        coalescer = Coalescer()
        flight, _ = coalescer.join(KEY)
        waiting = [
            asyncio.ensure_future(coalescer.follow(coalescer.join(KEY)[0], 5.0)) for _ in range(followers)
        ]
        await asyncio.sleep(0)
        coalescer.land(KEY, flight, None)
        return await asyncio.wait_for(asyncio.gather(*waiting), 1.0)

    assert run(scenario()) == [(True, None)] * followers


def test_a_cancelled_leader_wakes_its_followers_promptly() -> None:
    async def scenario() -> None:
        coalescer = Coalescer()
        flight, leads = coalescer.join(KEY)
        assert leads

        async def leader() -> None:
            try:
                await asyncio.sleep(10)
            finally:
                coalescer.land(KEY, flight, None)

        task = asyncio.ensure_future(leader())
        waiting = [asyncio.ensure_future(coalescer.follow(coalescer.join(KEY)[0], 30.0)) for _ in range(3)]
        await asyncio.sleep(0.01)
        started = time.monotonic()
        task.cancel()
        results = await asyncio.wait_for(asyncio.gather(*waiting), 1.0)
        assert time.monotonic() - started < 0.5
        assert results == [(True, None)] * 3
        assert task.cancelled()
        # the next request of the key leads a new flight
        again, leads = coalescer.join(KEY)
        assert leads and again is not flight

    run(scenario())


def test_a_follower_whose_window_ends_goes_alone_and_the_flight_stays() -> None:
    async def scenario() -> None:
        coalescer = Coalescer()
        flight, _ = coalescer.join(KEY)
        impatient, _ = coalescer.join(KEY)
        started = time.monotonic()
        assert await coalescer.follow(impatient, 0.02) == (False, None)
        assert time.monotonic() - started < 0.5
        assert coalescer.stats()["in_flight"] == 1
        patient, leads = coalescer.join(KEY)
        assert patient is flight and not leads
        waiting = asyncio.ensure_future(coalescer.follow(patient, 5.0))
        await asyncio.sleep(0)
        answer = landing()
        coalescer.land(KEY, flight, answer)
        assert await waiting == (True, answer)

    run(scenario())


def test_stats_count_leaders_coalesced_and_in_flight() -> None:
    async def scenario() -> None:
        coalescer = Coalescer()
        assert coalescer.stats() == {"coalesced": 0, "leaders": 0, "in_flight": 0}
        a, _ = coalescer.join(KEY)
        b, _ = coalescer.join(OTHER)
        coalescer.join(KEY)
        coalescer.join(KEY)
        assert coalescer.stats() == {"coalesced": 0, "leaders": 2, "in_flight": 2}
        coalescer.land(KEY, a, landing())
        coalescer.served()
        coalescer.served()
        assert coalescer.stats() == {"coalesced": 2, "leaders": 2, "in_flight": 1}
        coalescer.land(OTHER, b, None)
        assert coalescer.stats() == {"coalesced": 2, "leaders": 2, "in_flight": 0}

    run(scenario())


def test_after_landing_a_new_join_leads_a_new_flight() -> None:
    async def scenario() -> None:
        coalescer = Coalescer()
        first, _ = coalescer.join(KEY)
        coalescer.land(KEY, first, landing())
        second, leads = coalescer.join(KEY)
        assert leads and second is not first
        assert coalescer.stats()["leaders"] == 2
        # a late, second land of the old flight must not end the new one
        coalescer.land(KEY, first, None)
        third, leads = coalescer.join(KEY)
        assert third is second and not leads
        assert coalescer.stats()["in_flight"] == 1

    run(scenario())


def test_flights_of_different_keys_are_independent() -> None:
    async def scenario() -> None:
        coalescer = Coalescer()
        a, _ = coalescer.join(KEY)
        b, leads = coalescer.join(OTHER)
        assert leads and b is not a
        waiting = asyncio.ensure_future(coalescer.follow(coalescer.join(OTHER)[0], 0.05))
        coalescer.land(KEY, a, landing())
        assert await waiting == (False, None)

    run(scenario())


def test_a_follower_of_a_flight_already_landed_returns_at_once() -> None:
    async def scenario() -> None:
        flight = Flight()
        coalescer = Coalescer()
        answer = landing()
        coalescer.land(KEY, flight, answer)
        assert await asyncio.wait_for(coalescer.follow(flight, 5.0), 0.5) == (True, answer)

    run(scenario())


# --- the cache fill ----------------------------------------------------------------------------------

RULES = CacheRules(ttl_s=300, max_entry_bytes=1000)


def imf(epoch: float) -> bytes:
    return formatdate(epoch, usegmt=True).encode()


def ctx(method: str = "GET", *headers: tuple[bytes, bytes]) -> RequestContext:
    return RequestContext(method=method, raw_path="/a", raw_headers=[(b"host", b"x"), *headers])


class Fixture:
    def __init__(self, method: str = "GET", *headers: tuple[bytes, bytes], rules: CacheRules = RULES) -> None:
        self.ctx = ctx(method, *headers)
        self.rules = rules
        self.key = primary_key(self.ctx, rules)
        self.store = ResponseCache()
        self.clock = Clock(NOW)

    def fill(self, revalidating: tuple[Entry, tuple[str, ...]] | None = None) -> CacheFill:
        return CacheFill(
            ctx=self.ctx,
            rules=self.rules,
            key=self.key,
            label=label(self.ctx.method, "/a"),
            store=self.store,
            clock=self.clock,
            revalidating=revalidating,
        )

    def relay(
        self,
        fill: CacheFill,
        status: int,
        headers: list[tuple[bytes, bytes]],
        chunks: list[bytes],
        *,
        complete: bool = True,
        content_length: int | None = None,
    ) -> bool:
        relayed = fill.head(status, headers, "b1", False, content_length)
        for data in chunks:
            fill.chunk(data)
        if complete:
            fill.complete()
        return relayed


def test_a_complete_answer_is_stored_byte_for_byte() -> None:
    f = Fixture()
    body = [b"\x00\xff", b"binary", b"\x1f\x8b"]
    relayed = f.relay(f.fill(), 200, [(b"content-type", b"application/octet-stream")], body)
    assert relayed is True
    entry = f.store.get(f.key, ())
    assert entry is not None
    assert entry.body == b"".join(body)
    assert entry.status == 200 and entry.source == "b1" and entry.label == "GET::/a"
    assert entry.lifetime == 300


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([], id="no-body-yet"),
        pytest.param([b"half"], id="one-chunk"),
        pytest.param([b"a", b"b", b"c"], id="several-chunks"),
    ],
)
def test_a_body_that_ends_without_complete_is_not_stored(chunks: list[bytes]) -> None:
    f = Fixture()
    fill = f.fill()
    f.relay(fill, 200, [(b"content-length", b"100")], chunks, complete=False, content_length=100)
    assert len(f.store) == 0
    assert fill.landed is None


@pytest.mark.parametrize(
    ("chunks", "kept"),
    [
        pytest.param([b"x" * 1000], True, id="exactly-the-cap"),
        pytest.param([b"x" * 600, b"x" * 400], True, id="cap-in-two-chunks"),
        pytest.param([b"x" * 1001], False, id="one-byte-over"),
        pytest.param([b"x" * 600, b"x" * 600], False, id="grows-past-cap"),
        pytest.param([b"x" * 600, b"x" * 600, b"y"], False, id="keeps-streaming-past-cap"),
    ],
)
def test_a_streamed_body_past_the_entry_cap_is_not_stored(chunks: list[bytes], kept: bool) -> None:
    f = Fixture()
    fill = f.fill()
    f.relay(fill, 200, [], chunks)
    assert (f.store.get(f.key, ()) is not None) is kept
    assert (fill.landed is not None) is kept


@pytest.mark.parametrize(
    ("method", "content_length", "kept"),
    [
        pytest.param("GET", 1001, False, id="get-over-cap"),
        pytest.param("GET", 1000, True, id="get-at-cap"),
        pytest.param("HEAD", 5000, True, id="head-describes-get-body"),
    ],
)
def test_a_content_length_over_the_cap_stores_nothing(method: str, content_length: int, kept: bool) -> None:
    f = Fixture(method)
    fill = f.fill()
    headers = [(b"content-length", str(content_length).encode())]
    relayed = f.relay(
        fill, 200, headers, [b"small"] if method == "GET" else [], content_length=content_length
    )
    assert relayed is True  # relayed to the client either way
    assert (f.store.get(f.key, ()) is not None) is kept


@pytest.mark.parametrize(
    ("status", "headers", "request_headers"),
    [
        pytest.param(200, [(b"set-cookie", b"s=1")], [], id="set-cookie"),
        pytest.param(200, [(b"cache-control", b"private")], [], id="private"),
        pytest.param(200, [(b"cache-control", b"no-store")], [], id="no-store"),
        pytest.param(500, [], [], id="5xx"),
        pytest.param(206, [(b"content-range", b"bytes 0-4/10")], [], id="partial"),
        pytest.param(200, [], [(b"authorization", b"Bearer t")], id="authorized"),
        pytest.param(200, [(b"cache-control", b"max-age=0")], [], id="stale-on-arrival-no-validator"),
        pytest.param(200, [(b"age", b"400")], [], id="older-than-ttl-no-validator"),
    ],
)
def test_answers_that_are_not_stored(
    status: int, headers: list[tuple[bytes, bytes]], request_headers: list[tuple[bytes, bytes]]
) -> None:
    f = Fixture("GET", *request_headers)
    fill = f.fill()
    assert f.relay(fill, status, headers, [b"body"]) is True
    assert len(f.store) == 0
    assert fill.landed is None


def test_the_backends_age_is_not_stored_but_counts() -> None:
    f = Fixture()
    f.relay(f.fill(), 200, [(b"age", b"30"), (b"etag", b'"v1"'), (b"Age", b"31")], [b"x"])
    entry = f.store.get(f.key, ())
    assert entry is not None
    assert entry.headers == [(b"etag", b'"v1"'), (b"content-length", b"1")]  # whole now: its length
    assert entry.initial_age == 30
    assert entry.age(NOW + 10) == 40


def test_response_delay_counts_in_the_initial_age() -> None:
    f = Fixture()
    fill = f.fill()  # the request leaves at NOW
    f.clock.now = NOW + 4
    f.relay(fill, 200, [(b"date", imf(NOW + 4))], [b"x"])
    entry = f.store.get(f.key, ())
    assert entry is not None
    assert entry.response_time == NOW + 4
    assert entry.initial_age == 4


def test_landed_carries_the_backends_vary_and_this_requests_values() -> None:
    f = Fixture("GET", (b"accept-language", b"fr"))
    fill = f.fill()
    f.relay(fill, 200, [(b"vary", b"Accept-Language")], [b"bonjour"])
    assert fill.landed is not None
    assert fill.landed.vary_names == ("accept-language",)
    assert fill.landed.vary_values == ("fr",)
    assert f.store.vary_names(f.key) == ("accept-language",)
    assert f.store.get(f.key, ("fr",)) is fill.landed.entry


def test_a_fill_without_a_store_only_lands() -> None:
    f = Fixture()
    fill = CacheFill(ctx=f.ctx, rules=RULES, key=f.key, label="GET::/a", store=None, clock=f.clock)
    f.relay(fill, 200, [], [b"shared"])
    assert fill.landed is not None and fill.landed.entry.body == b"shared"


# --- revalidation (RFC 9111 4.3.4) ---------------------------------------------------------------


def stale_entry(f: Fixture) -> Entry:
    """A stored answer with validators, 100 s past its 60 s of freshness."""
    f.relay(
        f.fill(),
        200,
        [
            (b"content-type", b"text/plain"),
            (b"content-length", b"5"),
            (b"etag", b'"v1"'),
            (b"last-modified", imf(NOW - 3600)),
            (b"cache-control", b"max-age=60"),
            (b"x-kept", b"yes"),
        ],
        [b"hello"],
    )
    entry = f.store.get(f.key, ())
    assert entry is not None and entry.lifetime == 60
    f.clock.now = NOW + 160
    return entry


def test_a_revalidating_fill_sends_the_entrys_validators() -> None:
    f = Fixture()
    entry = stale_entry(f)
    fill = f.fill(revalidating=(entry, ()))
    assert fill.upstream_headers == [
        ("if-none-match", '"v1"'),
        ("if-modified-since", imf(NOW - 3600).decode()),
    ]


def test_a_304_refreshes_the_stale_entry_in_place() -> None:
    f = Fixture()
    entry = stale_entry(f)
    fill = f.fill(revalidating=(entry, ()))
    relayed = fill.head(
        304,
        [
            (b"etag", b'"v2"'),
            (b"cache-control", b"max-age=600"),
            (b"content-length", b"0"),
            (b"date", imf(NOW + 160)),
        ],
        "b1",
        False,
        0,
    )
    assert relayed is False  # the proxy answers from the refreshed entry, not the 304
    assert fill.refreshed is entry
    assert f.store.get(f.key, ()) is entry
    headers = dict(entry.headers)
    assert headers[b"etag"] == b'"v2"'
    assert headers[b"cache-control"] == b"max-age=600"
    assert headers[b"content-length"] == b"5"  # the 304's describes no body
    assert headers[b"x-kept"] == b"yes"
    assert [name for name, _ in entry.headers].count(b"etag") == 1
    assert entry.body == b"hello"
    assert entry.etag == b'"v2"'
    assert entry.response_time == NOW + 160
    assert entry.lifetime == 600
    assert entry.age(NOW + 160) == 0
    assert f.store.bytes == entry.size


def test_a_304_age_counts_but_is_not_stored() -> None:
    f = Fixture()
    entry = stale_entry(f)
    fill = f.fill(revalidating=(entry, ()))
    fill.head(304, [(b"age", b"20"), (b"date", imf(NOW + 160))], "b1", False, None)
    assert fill.refreshed is entry
    assert entry.initial_age == 20
    assert b"age" not in dict(entry.headers)
    assert entry.lifetime == 60  # the stored Cache-Control still says so


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        pytest.param(200, [(b"cache-control", b"no-store")], id="no-store"),
        pytest.param(200, [(b"set-cookie", b"s=1")], id="set-cookie"),
        pytest.param(200, [(b"cache-control", b"private")], id="private"),
        pytest.param(403, [], id="403-not-storable"),
    ],
)
def test_a_non_storable_answer_to_a_revalidation_discards_the_stale_entry(
    status: int, headers: list[tuple[bytes, bytes]]
) -> None:
    f = Fixture()
    entry = stale_entry(f)
    fill = f.fill(revalidating=(entry, ()))
    assert f.relay(fill, status, headers, [b"new"]) is True
    assert fill.refreshed is None
    assert f.store.get(f.key, ()) is None
    assert f.store.bytes == 0


def test_a_5xx_to_a_revalidation_keeps_the_stale_entry() -> None:
    f = Fixture()
    entry = stale_entry(f)
    fill = f.fill(revalidating=(entry, ()))
    f.relay(fill, 503, [], [b"down"])
    assert f.store.get(f.key, ()) is entry
    assert entry.body == b"hello"


def test_a_new_200_to_a_revalidation_replaces_the_entry() -> None:
    f = Fixture()
    entry = stale_entry(f)
    fill = f.fill(revalidating=(entry, ()))
    f.relay(fill, 200, [(b"etag", b'"v3"')], [b"changed"])
    replaced = f.store.get(f.key, ())
    assert replaced is not None and replaced is not entry
    assert replaced.body == b"changed"
    assert replaced.etag == b'"v3"'
    assert len(f.store) == 1
    assert f.store.bytes == replaced.size


def test_a_304_to_a_plain_fill_is_relayed_and_not_stored() -> None:
    f = Fixture()
    fill = f.fill()
    assert f.relay(fill, 304, [(b"etag", b'"v1"')], []) is True
    assert fill.refreshed is None
    assert len(f.store) == 0


@pytest.mark.parametrize(
    "header",
    [
        pytest.param((b"set-cookie", b"session=alice"), id="set-cookie"),
        pytest.param((b"cache-control", b"private, max-age=600"), id="private"),
        pytest.param((b"cache-control", b"no-store"), id="no-store"),
    ],
)
def test_a_304_does_not_turn_the_shared_entry_into_a_private_one(header: tuple[bytes, bytes]) -> None:
    f = Fixture()
    entry = stale_entry(f)
    fill = f.fill(revalidating=(entry, ()))
    fill.head(304, [header, (b"date", imf(NOW + 160))], "b1", False, None)
    kept = f.store.get(f.key, ())
    if kept is not None:
        names = {name for name, _ in kept.headers}
        controls = b", ".join(value for name, value in kept.headers if name == b"cache-control")
        assert b"set-cookie" not in names
        assert b"private" not in controls and b"no-store" not in controls
