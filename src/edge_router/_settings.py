"""Process settings, read once from the environment (CONTRACT section 2)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be greater than 0")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    config_source: str | None = None
    config_ttl_seconds: float = 43200.0
    request_timeout_ms: float = 30000.0
    admin_key: str | None = None
    environment: str = "cloud"
    debug_errors: bool = False
    # A failed refresh is retried after this long, never on every request (CONTRACT section 2).
    config_retry_seconds: float = 60.0
    default_backend: str | None = None
    backends_table: str | None = None
    env_backends: tuple[tuple[str, str], ...] = ()  # the BACKEND_<ID>_URL variables

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, config_source: str | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            config_source=config_source or env.get("EDGE_ROUTER_CONFIG") or None,
            config_ttl_seconds=_float(env, "CONFIG_TTL_SECONDS", 43200.0),
            request_timeout_ms=_float(env, "REQUEST_TIMEOUT_MS", 30000.0),
            admin_key=env.get("ADMIN_KEY") or None,
            environment="local" if env.get("ENVIRONMENT", "cloud").strip().lower() == "local" else "cloud",
            debug_errors=env.get("DEBUG_ERRORS", "") == "1",
            default_backend=env.get("DEFAULT_BACKEND") or None,
            backends_table=env.get("BACKENDS_TABLE") or None,
            env_backends=tuple(
                (name, value)
                for name, value in env.items()
                if name.startswith("BACKEND_") and name.endswith("_URL")
            ),
        )
