"""THE decision of which targets a request may go to, in the order they are tried.

`choose_candidates` is the one function the proxy and `explain` call (and, as they land, health
checks, circuit breakers and the status page): nothing else decides candidates, so what `explain`
shows is what the proxy does. In order:

1. a header-routed route (`select_by_header`) takes the one backend its registry names
   (`header_routing`); an unknown name is refused 400 `Invalid Backend`, a registry outage 503;
2. a route with `geo` narrows its pool to the viewer's country, else continent, else the route's
   own targets (the default);
3. the strategy orders the pool: `failover` as written, `round_robin` rotating one step per
   request, `weighted` by nginx's smooth weighted round-robin (`balancing`);
4. an incoming `X-No-Fallback: 1` keeps only the first candidate (seed 003's loop guard: a request
   already sent by a failover router is handled like a single-target request);
5. no candidate left: refused 503;
6. health and circuits (`resilience.tracker.BackendTracker.gate`): a pool skips unhealthy backends
   and open circuits (and tries them all anyway when that leaves none); a single backend chosen
   explicitly that is unavailable is refused 503 with `Retry-After`.

`upstream_parts` is the one place an upstream URL's path and query are built from the request.
Pure but for the registry lookup; `advance=False` (explain) leaves rotation state untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

from ..config.model import Route, RouterConfig, Target
from ..exceptions import Refusal, RegistryError
from ..http.context import RequestContext
from ..http.paths import escape_query
from ..resilience.tracker import BackendTracker, Gate
from .balancing import balancer_for
from .geo import continent_of, viewer_country
from .header_routing import HeaderRouting
from .registry import InvalidBackend


@dataclass(frozen=True, slots=True)
class Candidates:
    targets: tuple[Target, ...]  # never empty
    reasons: tuple[str, ...]  # one line per decision, for `explain`
    gate: Gate  # what health and circuits left of them (the attempt loop asks it for permits)


async def choose_candidates(
    config: RouterConfig,
    route: Route,
    ctx: RequestContext,
    *,
    header_routing: HeaderRouting,
    tracker: BackendTracker | None = None,
    advance: bool = True,
) -> Candidates:
    """The targets `ctx` may go to on `route`, in try order; raises the Refusal when there are none."""
    if route.select_by_header is not None:
        target = await _header_choice(config, route, ctx, header_routing)
        targets: tuple[Target, ...] = (target,)
        reasons: tuple[str, ...] = (f"{route.select_by_header} selects backend {target.source!r}",)
        explicit = True
    elif len(route.targets) == 1 and route.geo is None:
        targets, reasons, explicit = route.targets, (), True
    else:
        targets, reasons = order_pool(route, ctx.header_map(), advance=advance)
        explicit = False
        if not targets:
            raise Refusal(
                503,
                f"No backend is available for {route.prefix}",
                log_error="no target available",
                backend=None,
            )
    if tracker is None:
        return Candidates(targets, reasons, Gate(targets))
    gate = await tracker.gate(route, targets, explicit=explicit)
    if gate.skipped:
        skipped = ", ".join(f"{target.source} ({why})" for target, why in gate.skipped)
        reasons += (f"all unavailable, tried anyway: {skipped}" if gate.fail_open else f"skipped: {skipped}",)
    return Candidates(gate.targets, reasons, gate)


def order_pool(
    route: Route, headers: Mapping[str, str], *, advance: bool = True
) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    """Steps 2-4 for a pool: (targets in try order, the reason for each decision)."""
    reasons: list[str] = []
    pool = route.targets
    balancer = balancer_for(route)
    if not advance:
        balancer = copy.deepcopy(balancer)
    if route.geo is not None:
        # Countries and continents are looked up separately (see geo.py).
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
        pool = tuple(pool[i] for i in balancer.order(len(pool)))
        reasons.append("weighted: smooth weighted round-robin pick, then heaviest first")
    elif len(pool) > 1:
        reasons.append("failover: in the order written")
    if headers.get("x-no-fallback", "").strip() == "1" and len(pool) > 1:
        pool = pool[:1]
        reasons.append("X-No-Fallback: 1 received: first candidate only")
    return tuple(pool), tuple(reasons)


async def _header_choice(
    config: RouterConfig, route: Route, ctx: RequestContext, header_routing: HeaderRouting
) -> Target:
    assert route.select_by_header is not None
    try:
        choice = await header_routing.choose(
            config,
            header=ctx.header(route.select_by_header),
            location_header=ctx.header("x-backend-location"),
            default_backend=route.default_backend,
        )
    except RegistryError as exc:
        raise Refusal(
            503, "The backend registry cannot be read", log_error=str(exc), backend=None, detail=str(exc)
        ) from None
    if isinstance(choice, InvalidBackend):
        raise InvalidBackendRefusal(choice)
    return choice


class InvalidBackendRefusal(Refusal):
    """400 `Invalid Backend`: the header names no registered backend (`valid_backends` lists them)."""

    def __init__(self, choice: InvalidBackend) -> None:
        super().__init__(
            400,
            f"Backend '{choice.requested}' is not configured",
            error="Invalid Backend",
            log_error=f"invalid backend {choice.requested!r}",
            valid_backends=choice.valid,
        )
        self.choice = choice


def upstream_parts(route: Route, path: str, query: bytes) -> tuple[str, str]:
    """(what follows the route's prefix, "?query" or ""): `Target.url(*parts)` is the upstream URL.

    The query goes out byte for byte but for bytes that may not appear raw in a URL (escaped).
    """
    rest = path[len(route.prefix) :] if route.strip_prefix else path
    return rest, ("?" + escape_query(query) if query else "")
