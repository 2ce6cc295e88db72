"""`GET /status` (CONTRACT section 11): the operators' page, and `GET /admin/status`, the one admin
call it polls.

The page and its assets (`static/status.html`, `.js`, `.css`) are public: they hold no data. The
script asks for the admin key, keeps it in the tab's `sessionStorage` and sends it as X-Admin-Key
to `GET /admin/status` every few seconds and to the admin actions (cache-flush, circuit reset,
cache invalidation, flip); never in a URL, never in a cookie. Every answer here carries a strict
Content-Security-Policy (no inline script or style, nothing from another origin), `nosniff`, no
framing and no caching; the script renders every value as text (`textContent`, never `innerHTML`).

`GET /admin/status` aggregates what exists: the config's status (its error redacted as `/health`
redacts it for an admin), each route's strategy and candidates in try order (what `routing.explain`
computes, asked of each route itself, nothing sent), every backend as `GET /backends` describes it, this
instance's metrics windows (1m, 5m, 1h) and the response cache's figures.
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..aws.config_version import read_config_version
from ..exceptions import Refusal, StateStoreError
from ..http.context import RequestContext
from ..observability.redact import redact_url
from ..routing.candidates import choose_candidates, upstream_parts
from ..routing.explain import _refused
from .backends import _described
from .common import ADMIN, AdminKeyHeader, ControlHost, Host, config_error_for
from .health import _shown

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
ASSETS = {
    "status.html": "text/html; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
}
WINDOWS = ("1m", "5m", "1h")

router = APIRouter()  # the page is public; /admin/status carries the admin dependency itself


@cache
def asset(name: str) -> bytes:
    """A file of the page, as the package ships it (read once)."""
    return resources.files("edge_router.control").joinpath("static", name).read_bytes()


def _asset_response(name: str) -> Response:
    return Response(asset(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)


@router.get("/status", summary="The status page (HTML; its data needs X-Admin-Key)")
async def status_page() -> Response:
    return _asset_response("status.html")


@router.get("/status/status.js", include_in_schema=False)
async def status_script() -> Response:
    return _asset_response("status.js")


@router.get("/status/status.css", include_in_schema=False)
async def status_style() -> Response:
    return _asset_response("status.css")


@router.get(
    "/admin/status",
    dependencies=ADMIN,
    summary="What the status page shows: config, routes, backends, traffic, cache",
)
async def admin_status(request: Request, host: Host, x_admin_key: AdminKeyHeader = None) -> JSONResponse:
    config = await host.config.get()
    status = host.config.status()
    body: dict[str, Any] = {
        "config": {
            "source": status.source,
            "version": _shown(status.version),
            "loaded_at": status.loaded_at,
            "last_error": await config_error_for(host, status, x_admin_key),
            "format": config.format if config else None,
        },
        "routes": await _routes(host) if config else [],
        "backends": await _backends(host),
        "metrics": {window: host.metrics.snapshot(window) for window in WINDOWS},
        "cache": host.response_cache.store.stats(),
        "recent_errors": list(reversed(host.metrics.recent_errors)),  # newest first, redacted
    }
    body["config"]["fleet_version"] = await _fleet_version(host)
    return JSONResponse(body)


async def _fleet_version(host: ControlHost) -> int | None:
    """The version the state table tells the fleet to serve (`er#config-version`), when there is a
    table; a table that does not answer within a second shows as unknown, never holds the page."""
    table = host.settings.state_table
    if not table:
        return None
    try:
        async with asyncio.timeout(1.0):
            return await asyncio.to_thread(read_config_version, table)
    except (TimeoutError, StateStoreError):
        return None


async def _routes(host: ControlHost) -> list[dict[str, Any]]:
    """Each route's candidates for a GET of its own prefix, in try order: `explain`'s machinery
    (`choose_candidates`, `upstream_parts`), asked of the route itself, so a route an earlier one
    shadows is still shown; rotation is not advanced, nothing is sent."""
    config = host.config.current
    if config is None:
        return []
    routes = []
    for route in config.routes:
        ctx = RequestContext(method="GET", raw_path=route.prefix, query=b"", raw_headers=[])
        shown: dict[str, Any] = {
            "prefix": route.prefix,
            "strategy": "select_by_header" if route.select_by_header else route.strategy,
            "candidates": [],
            "reasons": [],
        }
        try:
            chosen = await choose_candidates(
                config, route, ctx, header_routing=host.header_routing, tracker=host.tracker, advance=False
            )
        except Refusal as refusal:
            shown["outcome"] = _refused(refusal)
        else:
            parts = upstream_parts(route, route.prefix, b"")
            shown["candidates"] = [
                {"backend": target.source, "url": redact_url(target.url(*parts))} for target in chosen.targets
            ]
            shown["reasons"] = list(chosen.reasons)
            shown["outcome"] = "proxied"
        routes.append(shown)
    return routes


async def _backends(host: ControlHost) -> list[dict[str, Any]]:
    tracker = host.tracker
    known = await host.backends()
    await tracker.sync([backend.id for backend in known])
    now = tracker.clock()
    return [_described(backend, tracker, now) for backend in known]
