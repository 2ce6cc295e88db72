"""Backend registries and the header-routing decision (seed 001, CONTRACT section 4).

The DynamoDB registry is tested against moto's server over real HTTP (the `aws` fixture), so the
real boto3 path runs: GetItem, a paginated Scan with a filter, and error mapping. Its cache runs on
an injected clock, so "no request was made" is shown by behaviour: an item deleted from the table
is still served within the TTL and gone after it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from edge_router.config.compile import backend_entries
from edge_router.config.schema import BackendSpec
from edge_router.exceptions import EdgeRouterError, RegistryError
from edge_router.routing.registry import (
    Backend,
    BackendRegistry,
    ChainRegistry,
    ConfigRegistry,
    DynamoDBRegistry,
    EnvRegistry,
    InvalidBackend,
    choose_backend,
    validate_backend_url,
)
from support import Clock, dynamodb_table

TABLE = "edge-router-backends"
SEED_ITEM = {
    "id": "backend:cf-d1",
    "value": '{"id":"cf-d1","name":"Cloudflare D1","url":"https://gtd-d1.workers.dev","type":"cloud"}',
}


def ids(backends: list[Backend]) -> list[str]:
    return [backend.id for backend in backends]


def backends_table(name: str = TABLE) -> Any:
    return dynamodb_table(name)


def entry(backend_id: str, url: str, **extra: str) -> dict[str, str]:
    """A backend item as seed 001 writes its KV entries: the value is a JSON string."""
    return {"id": f"backend:{backend_id}", "value": json.dumps({"id": backend_id, "url": url, **extra})}


# --- validate_backend_url ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://bun-sqlite:3001", None),
        ("https://gtd-d1.workers.dev/base", None),
        ("ftp://files.example", "not an http:// or https:// URL"),
        ("bun-sqlite", "not an http:// or https:// URL"),
        ("http://", "has no host"),
        ("https://b.example/?token=1", "must not carry a query"),
    ],
)
def test_validate_backend_url(url: str, complaint: str | None) -> None:
    problem = validate_backend_url(url)
    if complaint is None:
        assert problem is None
    else:
        assert problem is not None and complaint in problem


# --- EnvRegistry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BACKEND_BUN_SQLITE_URL": "http://bun-sqlite:3001"}, {"bun-sqlite": "http://bun-sqlite:3001"}),
        (
            {"BACKEND_JAVA_SPRING_BOOT_URL": "http://java:8080", "BACKEND_CF_D1_URL": "http://cf-d1:8787"},
            {"cf-d1": "http://cf-d1:8787", "java-spring-boot": "http://java:8080"},
        ),
        ({"BACKEND_DOTNET_API_URL": "  http://dotnet:5000  "}, {"dotnet-api": "http://dotnet:5000"}),
        ({"BACKEND_RUBY_RAILS_URL": ""}, {}),  # empty: switched off
        ({"BACKEND_RUBY_RAILS_URL": "   "}, {}),
        # not backend variables: no id, other settings, other prefixes and suffixes, lower case
        (
            {
                "BACKEND_URL": "http://a:1",
                "BACKENDS_TABLE": "t",
                "MY_BACKEND_X_URL": "http://b:1",
                "BACKEND_X_URL_OLD": "http://c:1",
                "BACKEND__X_URL": "http://d:1",
                "backend_x_url": "http://e:1",
                "DEFAULT_BACKEND": "bun-sqlite",
            },
            {},
        ),
    ],
    ids=["one", "sorted-by-id", "trimmed", "empty", "blank", "unrelated"],
)
def test_env_registry_maps_variables_to_ids(env: dict[str, str], expected: dict[str, str]) -> None:
    registry = EnvRegistry(env)
    backends = registry.list_backends()
    assert {backend.id: backend.url for backend in backends} == expected
    assert ids(backends) == sorted(expected)
    for backend in backends:
        assert backend == Backend(id=backend.id, name=backend.id, url=backend.url, location="local")
        assert registry.get_backend(backend.id) == backend


def test_env_registry_skips_a_non_url_with_a_warning_naming_the_variable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="edge_router.registry"):
        registry = EnvRegistry(
            {"BACKEND_PHP_LARAVEL_URL": "php:9000", "BACKEND_BUN_SQLITE_URL": "http://b:1"}
        )
    assert ids(registry.list_backends()) == ["bun-sqlite"]
    assert registry.get_backend("php-laravel") is None
    assert "BACKEND_PHP_LARAVEL_URL" in caplog.text


# --- ConfigRegistry ----------------------------------------------------------------------------


def test_config_registry_keeps_config_order_and_fills_names() -> None:
    registry = ConfigRegistry(
        backend_entries(
            {
                "ruby-rails": BackendSpec(url="https://rails.example", name="Rails"),
                "unset": BackendSpec(url=""),  # a ${VAR} that was not set
                "cf-d1": BackendSpec(url="https://gtd-d1.workers.dev", location="local", health_path="/up"),
            }
        )
    )
    assert registry.list_backends() == [
        Backend("ruby-rails", "Rails", "https://rails.example", "cloud"),
        Backend("cf-d1", "cf-d1", "https://gtd-d1.workers.dev", "local", "/up"),
    ]
    assert registry.get_backend("unset") is None


# --- choose_backend ----------------------------------------------------------------------------

REGISTRIES: Mapping[str, BackendRegistry] = {
    "local": EnvRegistry(
        {
            "BACKEND_BUN_SQLITE_URL": "http://bun-sqlite:3001",
            "BACKEND_CF_D1_URL": "http://cf-d1:8787",
            "BACKEND_ELIXIR_PHOENIX_URL": "http://elixir:4000",
        }
    ),
    "cloud": ConfigRegistry(
        backend_entries(
            {
                "cf-d1": BackendSpec(url="https://gtd-d1.workers.dev"),
                "ruby-rails": BackendSpec(url="https://rails.example"),
            }
        )
    ),
}


@pytest.mark.parametrize(
    ("header", "location_header", "environment", "default", "expected"),
    [
        ("elixir-phoenix", None, "local", None, ("elixir-phoenix", "http://elixir:4000")),
        (" ruby-rails ", None, "cloud", None, ("ruby-rails", "https://rails.example")),
        # the same id resolves in the registry of the environment
        ("cf-d1", None, "local", None, ("cf-d1", "http://cf-d1:8787")),
        ("cf-d1", None, "cloud", None, ("cf-d1", "https://gtd-d1.workers.dev")),
        # x-backend-location overrides the environment, both ways, in any case
        ("cf-d1", "cloud", "local", None, ("cf-d1", "https://gtd-d1.workers.dev")),
        ("cf-d1", "LOCAL", "cloud", None, ("cf-d1", "http://cf-d1:8787")),
        # a value that is neither is ignored
        ("cf-d1", "mars", "local", None, ("cf-d1", "http://cf-d1:8787")),
        ("cf-d1", "", "cloud", None, ("cf-d1", "https://gtd-d1.workers.dev")),
        # no header: the default of the environment, or DEFAULT_BACKEND
        (None, None, "local", None, ("bun-sqlite", "http://bun-sqlite:3001")),
        (None, None, "cloud", None, ("cf-d1", "https://gtd-d1.workers.dev")),
        ("", None, "local", None, ("bun-sqlite", "http://bun-sqlite:3001")),
        (None, None, "local", "elixir-phoenix", ("elixir-phoenix", "http://elixir:4000")),
        (None, None, "cloud", "ruby-rails", ("ruby-rails", "https://rails.example")),
        # only a location: that registry's built-in default
        (None, "cloud", "local", None, ("cf-d1", "https://gtd-d1.workers.dev")),
        (None, "local", "cloud", None, ("bun-sqlite", "http://bun-sqlite:3001")),
        # an explicit header beats DEFAULT_BACKEND
        ("cf-d1", None, "local", "elixir-phoenix", ("cf-d1", "http://cf-d1:8787")),
    ],
)
def test_choose_backend_routes_to_a_registered_backend(
    header: str | None,
    location_header: str | None,
    environment: Any,
    default: str | None,
    expected: tuple[str, str],
) -> None:
    chosen = choose_backend(
        header=header,
        location_header=location_header,
        environment=environment,
        default_backend=default,
        registries=REGISTRIES,
    )
    assert isinstance(chosen, Backend)
    assert (chosen.id, chosen.url) == expected


LOCAL_IDS = ["bun-sqlite", "cf-d1", "elixir-phoenix"]
CLOUD_IDS = ["cf-d1", "ruby-rails"]


@pytest.mark.parametrize(
    ("header", "location_header", "environment", "default", "expected"),
    [
        ("unknown-backend", None, "local", None, InvalidBackend("unknown-backend", LOCAL_IDS)),
        ("unknown-backend", None, "cloud", None, InvalidBackend("unknown-backend", CLOUD_IDS)),
        # registered in the other registry only: the valid list is the asked registry's
        ("ruby-rails", None, "local", None, InvalidBackend("ruby-rails", LOCAL_IDS)),
        ("elixir-phoenix", "cloud", "local", None, InvalidBackend("elixir-phoenix", CLOUD_IDS)),
        # ids match exactly
        ("CF-D1", None, "cloud", None, InvalidBackend("CF-D1", CLOUD_IDS)),
        # a client can never supply a URL, not even a registered backend's own
        ("http://evil.example", None, "local", None, InvalidBackend("http://evil.example", LOCAL_IDS)),
        ("http://bun-sqlite:3001", None, "local", None, InvalidBackend("http://bun-sqlite:3001", LOCAL_IDS)),
        ("//evil.example/x", None, "cloud", None, InvalidBackend("//evil.example/x", CLOUD_IDS)),
        # the operator's default is not registered: flagged as defaulted
        (None, None, "cloud", "bun-sqlite", InvalidBackend("bun-sqlite", CLOUD_IDS, defaulted=True)),
    ],
)
def test_choose_backend_refuses_what_is_not_registered(
    header: str | None,
    location_header: str | None,
    environment: Any,
    default: str | None,
    expected: InvalidBackend,
) -> None:
    chosen = choose_backend(
        header=header,
        location_header=location_header,
        environment=environment,
        default_backend=default,
        registries=REGISTRIES,
    )
    assert chosen == expected


def test_choose_backend_with_no_registry_for_the_location_lists_nothing_valid() -> None:
    chosen = choose_backend(
        header="cf-d1",
        location_header="cloud",
        environment="local",
        default_backend=None,
        registries={"local": REGISTRIES["local"]},
    )
    assert chosen == InvalidBackend("cf-d1", [])


# --- DynamoDBRegistry (moto server over HTTP) --------------------------------------------------


def test_dynamodb_registry_reads_the_seed_items(aws: str) -> None:
    table = backends_table()
    table.put_item(Item=SEED_ITEM)
    table.put_item(
        Item={
            "id": "backend:bun-sqlite",
            "value": {  # a map rather than a JSON string
                "id": "bun-sqlite",
                "name": "Bun + SQLite",
                "url": "http://10.0.0.5:3001",
                "type": "local",
            },
        }
    )
    table.put_item(Item=entry("ruby-rails", "https://rails.example", health_path="/up"))
    table.put_item(Item={"id": "main", "value": json.dumps({"routes": []})})  # a config item, same table
    registry = DynamoDBRegistry(TABLE)

    cf_d1 = Backend("cf-d1", "Cloudflare D1", "https://gtd-d1.workers.dev", "cloud")
    assert registry.get_backend("cf-d1") == cf_d1
    assert registry.get_backend("bun-sqlite") == Backend(
        "bun-sqlite", "Bun + SQLite", "http://10.0.0.5:3001", "local"
    )
    assert registry.get_backend("main") is None
    assert registry.get_backend("nope") is None
    assert registry.list_backends() == [
        Backend("bun-sqlite", "Bun + SQLite", "http://10.0.0.5:3001", "local"),
        cf_d1,
        Backend("ruby-rails", "ruby-rails", "https://rails.example", "cloud", "/up"),
    ]


def test_dynamodb_registry_lists_every_page_of_a_large_table(aws: str) -> None:
    table = backends_table()
    padding = "x" * 60_000  # ~20 items of this size pass moto's (and DynamoDB's) 1 MB page limit
    with table.batch_writer() as batch:
        for n in range(40):
            batch.put_item(Item={**entry(f"b{n:02d}", f"http://b{n}.example"), "padding": padding})
    assert ids(DynamoDBRegistry(TABLE).list_backends()) == [f"b{n:02d}" for n in range(40)]


def test_dynamodb_lookup_is_cached_for_the_ttl(aws: str) -> None:
    table = backends_table()
    table.put_item(Item=SEED_ITEM)
    clock = Clock()
    registry = DynamoDBRegistry(TABLE, ttl_seconds=30, clock=clock)
    assert registry.get_backend("cf-d1") is not None
    assert registry.get_backend("ruby-rails") is None

    table.delete_item(Key={"id": "backend:cf-d1"})
    table.put_item(Item=entry("ruby-rails", "https://rails.example"))
    clock.now += 29.9
    assert registry.get_backend("cf-d1") is not None  # served from the cache: no GetItem was sent
    assert registry.get_backend("ruby-rails") is None  # a miss is cached too

    clock.now += 0.2
    assert registry.get_backend("cf-d1") is None
    assert registry.get_backend("ruby-rails") is not None


def test_dynamodb_listing_is_cached_and_answers_lookups(aws: str) -> None:
    table = backends_table()
    table.put_item(Item=SEED_ITEM)
    clock = Clock()
    registry = DynamoDBRegistry(TABLE, ttl_seconds=30, clock=clock)
    assert ids(registry.list_backends()) == ["cf-d1"]

    table.delete_item(Key={"id": "backend:cf-d1"})
    table.put_item(Item=entry("ruby-rails", "https://rails.example"))
    clock.now += 10
    assert ids(registry.list_backends()) == ["cf-d1"]
    # lookups are answered by the fresh listing: made-up ids cost no read each
    assert registry.get_backend("cf-d1") is not None
    assert registry.get_backend("ruby-rails") is None

    clock.now += 25
    assert ids(registry.list_backends()) == ["ruby-rails"]
    assert registry.get_backend("cf-d1") is None
    assert registry.get_backend("ruby-rails") is not None


MALFORMED = [
    ({"id": "backend:bad-json", "value": '{"id":"bad-json","url":'}, "not valid JSON"),
    ({"id": "backend:no-url", "value": '{"id":"no-url","name":"No URL"}'}, "no url"),
    ({"id": "backend:empty-url", "value": '{"url":""}'}, "no url"),
    ({"id": "backend:ftp", "value": '{"url":"ftp://files.example"}'}, "not an http:// or https:// URL"),
    ({"id": "backend:bare", "value": '{"url":"rails.example"}'}, "not an http:// or https:// URL"),
    ({"id": "backend:list", "value": '["https://x.example"]'}, "not a JSON object"),
    ({"id": "backend:no-value"}, "not a JSON object"),
    ({"id": "backend:other", "value": '{"id":"cf-d1","url":"https://evil.example"}'}, "names id 'cf-d1'"),
    ({"id": "backend:health", "value": '{"url":"https://h.example","health_path":"up"}'}, "health path"),
    ({"id": "backend:", "value": '{"url":"https://x.example"}'}, "not backend:<id>"),
]


@pytest.mark.parametrize(("item", "complaint"), MALFORMED, ids=[item["id"] for item, _ in MALFORMED])
def test_dynamodb_malformed_item_is_skipped_with_a_warning(
    aws: str, caplog: pytest.LogCaptureFixture, item: dict[str, str], complaint: str
) -> None:
    table = backends_table()
    table.put_item(Item=SEED_ITEM)
    table.put_item(Item=item)
    backend_id = item["id"].removeprefix("backend:")
    with caplog.at_level(logging.WARNING, logger="edge_router.registry"):
        assert ids(DynamoDBRegistry(TABLE).list_backends()) == ["cf-d1"]  # neighbours still served
        if backend_id:
            assert DynamoDBRegistry(TABLE).get_backend(backend_id) is None
    assert item["id"] in caplog.text
    assert complaint in caplog.text


def test_dynamodb_missing_table_raises_registry_error_naming_it(aws: str) -> None:
    registry = DynamoDBRegistry("no-such-table")
    with pytest.raises(RegistryError, match=r"'no-such-table'.*ResourceNotFoundException") as raised:
        registry.get_backend("cf-d1")
    assert isinstance(raised.value, EdgeRouterError)
    with pytest.raises(RegistryError, match="cannot list backends from DynamoDB table 'no-such-table'"):
        registry.list_backends()


def test_dynamodb_oversized_id_is_unknown_not_an_error(aws: str) -> None:
    """A DynamoDB key holds at most 2048 bytes and real DynamoDB refuses a longer one with a
    ValidationException (moto does not): a client's huge header must be a 400, never a 503. The
    table here does not exist, so any request sent would raise."""
    registry = DynamoDBRegistry("no-such-table")
    assert registry.get_backend("x" * 2041) is None
    assert registry.get_backend("é" * 1021) is None  # counted in bytes, not characters
    with pytest.raises(RegistryError):
        registry.get_backend("x" * 2040)  # the longest id that fits is looked up


# --- ChainRegistry -----------------------------------------------------------------------------


def test_chain_registry_prefers_config_then_falls_back_to_dynamodb(aws: str) -> None:
    table = backends_table()
    table.put_item(Item=SEED_ITEM)
    table.put_item(Item=entry("ruby-rails", "https://rails-from-table.example"))
    table.put_item(Item=entry("php-laravel", "https://php.example"))
    config = ConfigRegistry(
        backend_entries(
            {
                "ruby-rails": BackendSpec(url="https://rails-from-config.example"),
                "dotnet-api": BackendSpec(url="https://dotnet.example"),
            }
        )
    )
    cloud = ChainRegistry(config, DynamoDBRegistry(TABLE))

    rails = cloud.get_backend("ruby-rails")
    assert rails is not None and rails.url == "https://rails-from-config.example"
    cf_d1 = cloud.get_backend("cf-d1")
    assert cf_d1 is not None and cf_d1.url == "https://gtd-d1.workers.dev"
    assert cloud.get_backend("nope") is None
    listed = cloud.list_backends()
    assert ids(listed) == ["ruby-rails", "dotnet-api", "cf-d1", "php-laravel"]
    assert listed[0].url == "https://rails-from-config.example"

    # header routing over the chain: the 400's valid list names backends from both
    chosen = choose_backend(
        header="nope",
        location_header=None,
        environment="cloud",
        default_backend=None,
        registries={"cloud": cloud},
    )
    assert chosen == InvalidBackend("nope", ["cf-d1", "dotnet-api", "php-laravel", "ruby-rails"])
