"""Process settings, read once from the environment (CONTRACT section 2).

`Settings.server` (`ServerLimits`) holds every limit and timeout the local server enforces on
client connections, in one place, so that whichever HTTP engine serves the app enforces the same
ones (today the protocol-level engine, `server/engine.py`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _positive(env, name, default, float, "a number")


def _int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    return _positive(env, name, default, int, "a whole number")


def _positive(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T], kind: str) -> T:
    """`name` from `env` parsed by `parse`, greater than 0; `default` when unset or empty."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {kind}") from None
    if value <= 0:  # type: ignore[operator]
        raise ValueError(f"{name}={raw!r} must be greater than 0")
    return value


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client connection may cost the local server (every limit has a default).

    * `max_head_bytes`: request line plus headers (and, once the body has started, chunk-size lines,
      chunk extensions and trailers between two pieces of body). Over it: 431 (400 in a body),
      enforced while reading, so an endless header line costs at most this plus one socket read.
    * `max_header_count`: headers in one request; over it: 431.
    * `head_timeout_s`: from the connection's first byte (or a kept-alive connection's next
      request) to the end of the request head; past it the connection is closed (408 when part of a
      head had arrived). nginx's `client_header_timeout`, Go's `ReadHeaderTimeout`.
    * `keepalive_timeout_s`: how long an idle kept-alive connection stays open (nginx's default 75 s).
    * `max_connections`: open client connections. One more closes the connection waiting longest
      for a request head (idle kept-alive, or a partial head: 503), so a slowloris cannot lock
      clients out; only when every connection has a request in progress is the new one answered
      503 and closed. Both say so in a log line. None: derived at start-up from the
      file-descriptor limit (see `server.connection_cap`).

    The server engine (`server/engine.py`) enforces them all.
    """

    max_head_bytes: int = 64 * 1024
    max_header_count: int = 100
    head_timeout_s: float = 10.0
    keepalive_timeout_s: float = 75.0
    max_connections: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerLimits:
        return cls(
            max_head_bytes=_int(env, "SERVER_MAX_HEAD_BYTES", 64 * 1024) or 64 * 1024,
            max_header_count=_int(env, "SERVER_MAX_HEADERS", 100) or 100,
            head_timeout_s=_float(env, "SERVER_HEAD_TIMEOUT_S", 10.0),
            keepalive_timeout_s=_float(env, "SERVER_KEEPALIVE_TIMEOUT_S", 75.0),
            max_connections=_int(env, "SERVER_MAX_CONNECTIONS", None),
        )


@dataclass(frozen=True, slots=True)
class Settings:
    config_source: str | None = None
    config_ttl_seconds: float = 43200.0
    request_timeout_ms: float = 30000.0
    admin_key: str | None = None
    admin_key_source: str | None = None  # secretsmanager:<id> or ssm:<SecureString name>
    environment: str = "cloud"
    debug_errors: bool = False
    # A failed refresh is retried after this long, never on every request (CONTRACT section 2).
    config_retry_seconds: float = 60.0
    # How often an instance asks whether the config changed (the state table's version item, a
    # file's mtime): a flip reaches the fleet in seconds while the TTL stays the backstop.
    config_check_seconds: float = 5.0
    default_backend: str | None = None
    backends_table: str | None = None
    env_backends: tuple[tuple[str, str], ...] = ()  # the BACKEND_<ID>_URL variables
    server: ServerLimits = field(default_factory=ServerLimits)
    # The shared state table (CONTRACT section 7); None: all state is per process.
    state_table: str | None = None
    # On Lambda, the attempts of a request end this long before the invocation would time out,
    # so the answer is the router's own (504 JSON with CORS), never Lambda's bare 502.
    deadline_margin_ms: float = 500.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, config_source: str | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            config_source=config_source or env.get("EDGE_ROUTER_CONFIG") or None,
            config_ttl_seconds=_float(env, "CONFIG_TTL_SECONDS", 43200.0),
            config_check_seconds=_float(env, "CONFIG_CHECK_SECONDS", 5.0),
            request_timeout_ms=_float(env, "REQUEST_TIMEOUT_MS", 30000.0),
            admin_key=env.get("ADMIN_KEY") or None,
            admin_key_source=env.get("ADMIN_KEY_SOURCE") or None,
            environment="local" if env.get("ENVIRONMENT", "cloud").strip().lower() == "local" else "cloud",
            debug_errors=env.get("DEBUG_ERRORS", "") == "1",
            default_backend=env.get("DEFAULT_BACKEND") or None,
            backends_table=env.get("BACKENDS_TABLE") or None,
            env_backends=tuple(
                (name, value)
                for name, value in env.items()
                if name.startswith("BACKEND_") and name.endswith("_URL")
            ),
            server=ServerLimits.from_env(env),
            state_table=env.get("STATE_TABLE") or None,
            deadline_margin_ms=_float(env, "LAMBDA_DEADLINE_MARGIN_MS", 500.0),
        )
