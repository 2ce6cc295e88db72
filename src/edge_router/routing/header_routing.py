"""Header routing (seed 001, CONTRACT section 4): `x-backend` names a registered backend.

The local registry is the `BACKEND_<ID>_URL` environment; the cloud registry is the config's
`backends` plus, when `BACKENDS_TABLE` is set, the DynamoDB items `backend:<id>`. A client can only
choose among registered backends: the header is a lookup key, never a URL.
"""

from __future__ import annotations

import asyncio

from ..config.model import RouterConfig, Target, parse_target
from ..settings import Settings
from .registry import (
    Backend,
    BackendRegistry,
    ChainRegistry,
    ConfigRegistry,
    DynamoDBRegistry,
    EnvRegistry,
    InvalidBackend,
    choose_backend,
)


class HeaderRouting:
    def __init__(self, settings: Settings) -> None:
        self._environment = settings.environment
        self._default = settings.default_backend
        self._local = EnvRegistry(dict(settings.env_backends))
        self._dynamo = DynamoDBRegistry(settings.backends_table) if settings.backends_table else None
        self._cloud: tuple[RouterConfig, BackendRegistry] | None = None

    def local_backends(self) -> list[Backend]:
        """The local registry's backends (`BACKEND_<ID>_URL`)."""
        return self._local.list_backends()

    def table_backends(self) -> list[Backend]:
        """The DynamoDB registry's backends (blocking: boto3; RegistryError when unreadable)."""
        return self._dynamo.list_backends() if self._dynamo else []

    def registries(self, config: RouterConfig) -> dict[str, BackendRegistry]:
        if self._cloud is None or self._cloud[0] is not config:  # rebuilt when the config changes
            from_config = ConfigRegistry(config.backends)
            cloud = ChainRegistry(from_config, self._dynamo) if self._dynamo else from_config
            self._cloud = (config, cloud)
        return {"local": self._local, "cloud": self._cloud[1]}

    async def choose(
        self,
        config: RouterConfig,
        *,
        header: str | None,
        location_header: str | None,
        default_backend: str | None,
    ) -> Target | InvalidBackend:
        """The target the header names (its X-Backend-Source is the backend id), or why not."""

        def decide() -> Backend | InvalidBackend:
            return choose_backend(
                header=header,
                location_header=location_header,
                environment="local" if self._environment == "local" else "cloud",
                default_backend=default_backend or self._default,
                registries=self.registries(config),
            )

        # DynamoDB lookups are boto3 (blocking): off the event loop. The rest is in memory.
        choice = await asyncio.to_thread(decide) if self._dynamo else decide()
        if isinstance(choice, InvalidBackend):
            return choice
        return parse_target(choice.url, source=choice.id)  # registries only hold valid http(s) URLs
