"""The stored answers (CONTRACT section 9): LRU bounded in bytes, variants by Vary, invalidation.

What a gateway user notices: what was stored comes back byte for byte; the least recently used
answer is the one that goes; the memory cap holds however many answers pass through; the admin's
invalidation drops exactly what its prefix names; an unsafe request drops every stored answer of
its URI.
"""

from __future__ import annotations

import random
import tracemalloc

import pytest

from edge_router.cache.store import ENTRY_OVERHEAD, HEADER_OVERHEAD, Entry, PrimaryKey, ResponseCache

NOW = 1_700_000_000.0


def key(
    target: str = "/a", *, host: str = "x", method: str = "GET", ident: tuple[str, ...] = ()
) -> PrimaryKey:
    return (method, host, target, (), ident)


def entry(
    body: bytes = b"hello",
    *,
    label: str = "GET::/a",
    headers: list[tuple[bytes, bytes]] | None = None,
    status: int = 200,
) -> Entry:
    return Entry(
        status=status,
        headers=[(b"content-type", b"text/plain")] if headers is None else headers,
        body=body,
        source="b1",
        label=label,
        response_time=NOW,
        initial_age=0.0,
        lifetime=60.0,
        stale_while_revalidate=0.0,
        must_revalidate=False,
    )


def sized(n: int, label: str = "GET::/a") -> Entry:
    """An entry whose size is exactly `n` bytes (no headers, a body of n - overhead)."""
    assert n >= ENTRY_OVERHEAD
    return entry(b"b" * (n - ENTRY_OVERHEAD), headers=[], label=label)


def test_put_then_get_returns_the_same_bytes() -> None:
    store = ResponseCache()
    body = bytes(range(256)) * 4
    stored = entry(body, headers=[(b"content-type", b"application/octet-stream"), (b"etag", b'"v1"')])
    store.put(key(), (), (), stored)
    found = store.get(key(), ())
    assert found is stored
    assert found.body == body
    assert found.headers == [(b"content-type", b"application/octet-stream"), (b"etag", b'"v1"')]
    assert store.vary_names(key()) == ()
    assert len(store) == 1


@pytest.mark.parametrize(
    ("lookup", "values"),
    [
        pytest.param(key("/b"), (), id="other-target"),
        pytest.param(key(host="y"), (), id="other-host"),
        pytest.param(key(method="HEAD"), (), id="other-method"),
        pytest.param(key(ident=("Bearer t",)), (), id="other-caller"),
        pytest.param(key(), ("gzip",), id="other-variant"),
    ],
)
def test_get_misses_what_was_not_stored(lookup: PrimaryKey, values: tuple[str, ...]) -> None:
    store = ResponseCache()
    store.put(key(), (), (), entry())
    assert store.get(lookup, values) is None


def test_unknown_key_has_no_vary_names() -> None:
    assert ResponseCache().vary_names(key()) is None


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(b"", [], id="empty"),
        pytest.param(b"x" * 1000, [], id="body-only"),
        pytest.param(b"abc", [(b"content-type", b"text/plain"), (b"etag", b'"v1"')], id="headers-count"),
        pytest.param(b"", [(b"x-big", b"v" * 5000)], id="big-header"),
    ],
)
def test_entry_size_counts_headers_body_and_overhead(body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    stored = entry(body, headers=headers)
    expected = len(body) + sum(len(n) + len(v) + HEADER_OVERHEAD for n, v in headers) + ENTRY_OVERHEAD
    assert stored.size == expected
    store = ResponseCache()
    store.put(key(), (), (), stored)
    assert store.bytes == expected
    assert store.stats()["bytes"] == expected


def test_replacing_a_variant_counts_it_once() -> None:
    store = ResponseCache()
    store.put(key(), (), (), sized(1000))
    store.put(key(), (), (), sized(700))
    assert len(store) == 1
    assert store.bytes == 700
    assert store.get(key(), ()).size == 700


@pytest.mark.parametrize(
    ("touched", "evicted"),
    [
        pytest.param(None, "/a", id="untouched-oldest-goes"),
        pytest.param("/a", "/b", id="get-refreshes-recency"),
        pytest.param("/b", "/a", id="get-of-middle"),
        pytest.param("/c", "/a", id="get-of-newest"),
    ],
)
def test_lru_evicts_the_least_recently_used(touched: str | None, evicted: str) -> None:
    store = ResponseCache(max_bytes=3000)
    for target in ("/a", "/b", "/c"):
        store.put(key(target), (), (), sized(1000, f"GET::{target}"))
    if touched is not None:
        assert store.get(key(touched), ()) is not None
    store.put(key("/d"), (), (), sized(1000, "GET::/d"))
    kept = {target for target in ("/a", "/b", "/c", "/d") if store.get(key(target), ()) is not None}
    assert kept == {"/a", "/b", "/c", "/d"} - {evicted}
    assert store.bytes == 3000


def test_a_big_entry_evicts_as_many_as_it_needs() -> None:
    store = ResponseCache(max_bytes=4000)
    for target in ("/a", "/b", "/c", "/d"):
        store.put(key(target), (), (), sized(1000, f"GET::{target}"))
    store.put(key("/big"), (), (), sized(2500))
    assert [t for t in ("/a", "/b", "/c", "/d") if store.get(key(t), ()) is not None] == ["/d"]
    assert store.get(key("/big"), ()) is not None
    assert store.bytes == 3500


def test_an_entry_larger_than_the_cache_evicts_nothing() -> None:
    store = ResponseCache(max_bytes=3000)
    store.put(key("/a"), (), (), sized(1000))
    store.put(key("/b"), (), (), sized(1000))
    store.put(key("/huge"), (), (), sized(5000))
    assert store.get(key("/huge"), ()) is None
    assert store.get(key("/a"), ()) is not None
    assert store.get(key("/b"), ()) is not None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_total_cap_holds_after_every_put(seed: int) -> None:
    rng = random.Random(seed)
    store = ResponseCache(max_bytes=50_000)
    targets = [f"/t{i}" for i in range(60)]
    for _ in range(2000):
        target = rng.choice(targets)
        if rng.random() < 0.3:
            store.get(key(target), ())
            continue
        store.put(key(target), (), (), entry(b"z" * rng.randrange(0, 8000), label=f"GET::{target}"))
        assert store.bytes <= store.max_bytes
    present = [store.get(key(t), ()) for t in targets]
    assert store.bytes == sum(e.size for e in present if e is not None)
    assert len(store) == sum(e is not None for e in present)


def test_ten_thousand_entries_stay_within_the_cap() -> None:
    cap = 256 * 1024
    store = ResponseCache(max_bytes=cap)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(10_000):
            target = f"/item/{i}"
            store.put(key(target), (), (), entry(b"p" * 200, label=f"GET::{target}"))
            assert store.bytes <= cap
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store) == cap // entry(b"p" * 200).size
    # the cap is about memory: what the store holds stays near it, not near 10,000 entries' worth
    assert held < 2 * cap
    assert store.get(key("/item/9999"), ()) is not None
    assert store.get(key("/item/0"), ()) is None


# --- variants (Vary) ----------------------------------------------------------------------------


def test_two_variants_of_one_key_coexist() -> None:
    store = ResponseCache()
    names = ("accept-language",)
    english, french = entry(b"hello"), entry(b"bonjour")
    store.put(key(), names, ("en",), english)
    store.put(key(), names, ("fr",), french)
    assert store.vary_names(key()) == names
    assert store.get(key(), ("en",)) is english
    assert store.get(key(), ("fr",)) is french
    assert store.get(key(), ("de",)) is None
    assert len(store) == 2


@pytest.mark.parametrize(
    "drop",
    [
        pytest.param("discard", id="discard"),
        pytest.param("evict", id="evict"),
        pytest.param("invalidate", id="invalidate"),
        pytest.param("invalidate_target", id="invalidate-target"),
    ],
)
def test_dropping_every_variant_forgets_the_keys_vary_names(drop: str) -> None:
    store = ResponseCache(max_bytes=4000)
    names = ("accept-language",)
    store.put(key(), names, ("en",), sized(1000))
    store.put(key(), names, ("fr",), sized(1000))
    if drop == "discard":
        store.discard(key(), ("en",))
        assert store.vary_names(key()) == names  # one variant is left
        store.discard(key(), ("fr",))
    elif drop == "evict":
        store.put(key("/other"), (), (), sized(4000, "GET::/other"))
    elif drop == "invalidate":
        assert store.invalidate("GET::/a") == 2
    else:
        assert store.invalidate_target("x", "/a") == 2
    assert store.vary_names(key()) is None
    assert store.get(key(), ("en",)) is None
    assert store.get(key(), ("fr",)) is None


def test_discarding_what_is_not_there_changes_nothing() -> None:
    store = ResponseCache()
    store.put(key(), (), (), sized(1000))
    store.discard(key(), ("gzip",))
    store.discard(key("/b"), ())
    assert len(store) == 1
    assert store.bytes == 1000


def test_a_variant_stored_under_other_vary_names_is_not_served() -> None:
    store = ResponseCache()
    for_no_language = entry(b"default language")
    store.put(key(), ("accept-language",), ("",), for_no_language)
    store.put(key(), ("accept-encoding",), ("gzip",), entry(b"gzipped"))
    names = store.vary_names(key())
    assert names == ("accept-encoding",)
    # a request with Accept-Language: fr and no Accept-Encoding
    assert store.get(key(), ("",)) is None


# --- invalidation ---------------------------------------------------------------------------------

LABELS = {
    "/api/data": "GET::/api/data",
    "/api/data?page=2": "GET::/api/data?page=2",
    "/api/database": "GET::/api/database",
    "/api/other": "GET::/api/other",
    "/static/a.css": "GET::/static/a.css",
}


@pytest.mark.parametrize(
    ("prefix", "gone"),
    [
        pytest.param("GET::/api/data?", {"/api/data?page=2"}, id="query-only"),
        pytest.param("GET::/api/data", {"/api/data", "/api/data?page=2", "/api/database"}, id="path-prefix"),
        pytest.param(
            "GET::/api/", {"/api/data", "/api/data?page=2", "/api/database", "/api/other"}, id="dir"
        ),
        pytest.param("GET::", set(LABELS), id="every-get"),
        pytest.param("HEAD::", set(), id="no-head-stored"),
        pytest.param("GET::/nothing", set(), id="no-match"),
        pytest.param("get::/api", set(), id="case-sensitive"),
    ],
)
def test_invalidate_by_prefix_drops_exactly_the_matching_labels(prefix: str, gone: set[str]) -> None:
    store = ResponseCache()
    for target, name in LABELS.items():
        store.put(key(target), (), (), entry(label=name))
    before = store.bytes
    assert store.invalidate(prefix) == len(gone)
    for target in LABELS:
        assert (store.get(key(target), ()) is None) is (target in gone)
    assert len(store) == len(LABELS) - len(gone)
    assert store.bytes == before - len(gone) * entry().size


def test_invalidate_target_drops_every_variant_and_caller_of_that_uri_only() -> None:
    store = ResponseCache()
    names = ("accept-encoding",)
    doomed = [
        (key("/a"), ("gzip",)),
        (key("/a"), ("br",)),
        (key("/a", ident=("Bearer alice",)), ("gzip",)),
        (key("/a", ident=("Bearer bob",)), ("gzip",)),
        (key("/a", method="HEAD"), ("gzip",)),
    ]
    spared = [
        (key("/a", host="y"), ("gzip",)),
        (key("/a?x=1"), ("gzip",)),
        (key("/ab"), ("gzip",)),
        (key("/b"), ("gzip",)),
    ]
    for primary, values in doomed + spared:
        store.put(primary, names, values, entry(label=f"{primary[0]}::{primary[2]}"))
    assert store.invalidate_target("x", "/a") == len(doomed)
    for primary, values in doomed:
        assert store.get(primary, values) is None
        assert store.vary_names(primary) is None
    for primary, values in spared:
        assert store.get(primary, values) is not None
    assert len(store) == len(spared)
    assert store.invalidate_target("x", "/a") == 0


# --- resize and stats -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new_cap", "kept"),
    [
        pytest.param(5000, ["/a", "/b", "/c", "/d"], id="larger-keeps-all"),
        pytest.param(4000, ["/a", "/b", "/c", "/d"], id="exact-keeps-all"),
        pytest.param(2500, ["/c", "/d"], id="smaller-drops-oldest"),
        pytest.param(999, [], id="below-one-entry"),
    ],
)
def test_resize_evicts_at_once(new_cap: int, kept: list[str]) -> None:
    store = ResponseCache(max_bytes=4000)
    for target in ("/a", "/b", "/c", "/d"):
        store.put(key(target), (), (), sized(1000, f"GET::{target}"))
    store.resize(new_cap)
    assert store.bytes <= new_cap
    assert len(store) == len(kept)
    assert store.bytes == 1000 * len(kept)
    assert [t for t in ("/a", "/b", "/c", "/d") if store.get(key(t), ()) is not None] == kept


def test_resize_respects_recency() -> None:
    store = ResponseCache(max_bytes=3000)
    for target in ("/a", "/b", "/c"):
        store.put(key(target), (), (), sized(1000, f"GET::{target}"))
    store.get(key("/a"), ())
    store.resize(2000)
    assert store.get(key("/b"), ()) is None
    assert store.get(key("/a"), ()) is not None


def test_an_entry_grown_in_place_keeps_the_cap() -> None:
    store = ResponseCache(max_bytes=2000)
    grown = sized(1000)
    store.put(key("/a"), (), (), sized(1000, "GET::/a"))
    store.put(key("/b"), (), (), grown)
    old = grown.size
    grown.headers = [*grown.headers, (b"x-refreshed", b"v" * 500)]
    grown.measure()
    store.resized(key("/b"), (), grown, old)
    assert store.bytes <= store.max_bytes


def test_resized_counts_the_new_size_of_a_stored_entry_only() -> None:
    store = ResponseCache()
    stored = sized(1000)
    store.put(key(), (), (), stored)
    old = stored.size
    stored.headers = [(b"etag", b'"v2"')]
    stored.measure()
    store.resized(key(), (), stored, old)
    assert store.bytes == stored.size
    evicted = sized(1000)
    evicted.headers = [(b"etag", b'"v3"')]
    store.resized(key("/gone"), (), evicted, 1000)  # not stored: nothing to count
    assert store.bytes == stored.size


@pytest.mark.parametrize(
    ("hits", "misses", "rate"),
    [
        pytest.param(0, 0, 0.0, id="nothing-looked-up"),
        pytest.param(3, 1, 0.75, id="three-of-four"),
        pytest.param(0, 5, 0.0, id="all-misses"),
        pytest.param(1, 2, 0.3333, id="rounded"),
    ],
)
def test_stats(hits: int, misses: int, rate: float) -> None:
    store = ResponseCache()
    store.put(key(), (), (), sized(1000))
    store.hits, store.misses = hits, misses
    assert store.stats() == {"entries": 1, "bytes": 1000, "hits": hits, "misses": misses, "hit_rate": rate}


def test_clear_empties_the_store() -> None:
    store = ResponseCache()
    store.put(key(), ("accept",), ("text/html",), sized(1000))
    store.clear()
    assert len(store) == 0
    assert store.bytes == 0
    assert store.vary_names(key()) is None
    assert store.invalidate_target("x", "/a") == 0


@pytest.mark.parametrize(
    ("initial_age", "now", "age"),
    [
        pytest.param(0.0, NOW, 0.0, id="just-stored"),
        pytest.param(0.0, NOW + 30, 30.0, id="resident-time"),
        pytest.param(15.0, NOW + 30, 45.0, id="plus-initial-age"),
        pytest.param(15.0, NOW - 30, 15.0, id="clock-went-back"),
    ],
)
def test_entry_age(initial_age: float, now: float, age: float) -> None:
    stored = entry()
    stored.initial_age = initial_age
    assert stored.age(now) == age
