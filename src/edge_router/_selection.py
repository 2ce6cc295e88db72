"""Which targets a request may go to, in the order they are tried (pure; no I/O).

1. a route with `geo` narrows its pool to the viewer's country, else continent, else the route's
   own targets (the default);
2. the strategy orders the pool: `failover` as written, `round_robin` rotating one step per
   request, `weighted` by nginx's smooth weighted round-robin;
3. an incoming `X-No-Fallback: 1` keeps only the first candidate (seed 003's loop guard: a request
   already sent by a failover router is handled like a single-target request).

Header-selected routes (`select_by_header`) pick their one backend from a registry at request time
(`_registry.choose_backend`), not here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

from ._balancing import continent_of, viewer_country
from ._config import Route, Target


@dataclass(frozen=True, slots=True)
class Plan:
    targets: tuple[Target, ...]
    reasons: tuple[str, ...]  # one line per decision, for `explain`


def plan(route: Route, headers: Mapping[str, str], *, advance: bool = True) -> Plan:
    """The ordered candidates for one request; `advance=False` leaves rotation state untouched."""
    reasons: list[str] = []
    pool = route.targets
    balancer = route.balancer if advance else copy.deepcopy(route.balancer)
    if route.geo is not None:
        # Countries and continents are looked up separately: "AF" is Afghanistan as a country
        # and Africa as a continent, so one merged table would send Afghans to Africa's targets.
        country = viewer_country(headers)
        continent = continent_of(country) if country else None
        if country and country in route.geo.countries:
            pool, balancer = route.geo.countries[country], None  # a geo pool is tried as listed
            reasons.append(f"geo: country {country} has its own targets")
        elif continent and continent in route.geo.continents:
            pool, balancer = route.geo.continents[continent], None
            reasons.append(f"geo: country {country} is in {continent}, which has its own targets")
        else:
            reasons.append(f"geo: viewer country {country or 'unknown'} has no entry; route default")
    if balancer is not None and route.strategy == "round_robin":
        pool = tuple(pool[i] for i in balancer.order(len(pool)))
        reasons.append("round_robin: rotation starts at the next target")
    elif balancer is not None and route.strategy == "weighted":
        pool = tuple(pool[i] for i in balancer.order())
        reasons.append("weighted: smooth weighted round-robin pick, then heaviest first")
    elif len(pool) > 1:
        reasons.append("failover: in the order written")
    if headers.get("x-no-fallback", "").strip() == "1" and len(pool) > 1:
        pool = pool[:1]
        reasons.append("X-No-Fallback: 1 received: first candidate only")
    return Plan(tuple(pool), tuple(reasons))
