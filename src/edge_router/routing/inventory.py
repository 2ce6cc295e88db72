"""Every backend the router can reach, once each (CONTRACT section 7, `/backends`).

In this order, the first listing of an id winning: the config's `backends`, the targets and
providers of its routes (id: the backend id, else the base URL, as `X-Backend-Source` names them),
the local registry (`BACKEND_<ID>_URL`), and the DynamoDB registry's items (`BACKENDS_TABLE`).
`lambda:` targets are listed but never probed (they are invoked, not connected to).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..config.model import BackendEntry, HealthPolicy, Route, RouterConfig, Target, parse_target
from ..exceptions import RegistryError
from .header_routing import HeaderRouting

logger = logging.getLogger("edge_router.routing")


@dataclass(frozen=True, slots=True)
class KnownBackend:
    id: str
    name: str
    url: str
    location: str
    listed_by: str  # config | route | env | dynamodb
    health_path: str = "/health"
    health: HealthPolicy | None = None  # the backend's own policy (else the config's applies)
    target: Target | None = None  # None for a lambda: target


async def known_backends(config: RouterConfig, header_routing: HeaderRouting) -> list[KnownBackend]:
    found: dict[str, KnownBackend] = {}
    for backend_id, entry in config.backends.items():
        found.setdefault(backend_id, _from_entry(entry, "config"))
    for route in config.routes:
        for target in _route_targets(route):
            if target.source not in found:
                found[target.source] = KnownBackend(
                    id=target.source,
                    name=target.source,
                    url=target.origin if target.function else target.origin + target.base_path,
                    location="cloud",
                    listed_by="route",
                    target=None if target.function else target,
                )
    for backend in header_routing.local_backends():
        found.setdefault(backend.id, _from_entry(backend, "env"))
    try:
        for backend in await asyncio.to_thread(header_routing.table_backends):
            found.setdefault(backend.id, _from_entry(backend, "dynamodb"))
    except RegistryError as exc:
        logger.warning("backends: the DynamoDB registry cannot be listed: %s", exc)
    return list(found.values())


def _from_entry(entry: BackendEntry, listed_by: str) -> KnownBackend:
    try:
        target: Target | None = parse_target(entry.url, source=entry.id) if entry.url else None
    except ValueError:
        target = None
    return KnownBackend(
        id=entry.id,
        name=entry.name,
        url=entry.url,
        location=entry.location,
        listed_by=listed_by,
        health_path=entry.health_path,
        health=entry.health,
        target=target,
    )


def _route_targets(route: Route) -> list[Target]:
    targets = list(route.targets)
    if route.geo is not None:
        for pool in (*route.geo.countries.values(), *route.geo.continents.values()):
            targets.extend(pool)
    return targets
