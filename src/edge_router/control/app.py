"""The control plane: FastAPI, imported only when a control path is first requested.

One `APIRouter` module per concern, included here:

    health.py        GET /health, GET /_config/route        (open; config errors redacted)
    backends.py      GET /backends                          (open)
    config_admin.py  POST /admin/cache-flush
    explain.py       GET /admin/explain
    circuits.py      GET /admin/circuit-breaker-status, POST /admin/circuit-breaker-reset
    api_keys.py      POST, GET /admin/api-keys, DELETE /admin/api-keys/{id}
    metrics.py       GET /admin/metrics?window=1m|5m|1h|all, POST /admin/metrics/reset
    cache.py         GET /admin/cache-stats, POST /admin/cache-invalidate, GET /admin/dedup-stats
    status.py        GET /status (+ /status/status.js, .css: public, no data), GET /admin/status
    flip.py          POST /admin/flip

and `common.py` for what they share: the `ControlHost` (kept in `app.state.host`), the error shape
and the admin dependency. Every /admin endpoint needs X-Admin-Key, compared in constant time;
with no ADMIN_KEY set they are closed (403), never open.

Errors use the router's JSON shape (`error`, `message`, `request_id`), not FastAPI's `detail`:
a request FastAPI cannot validate is a 400, a state table that cannot be used a 503 (its detail,
which names the table, goes to the log). No path here is ever answered with a redirect:
Starlette builds trailing-slash redirects from the client's Host header, so a control path with
a trailing slash is a plain 404.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import __version__
from ..exceptions import StateStoreError
from . import api_keys, backends, cache, circuits, config_admin, explain, flip, health, metrics, status
from .common import ControlHost, error, request_id

logger = logging.getLogger("edge_router.control")

ROUTERS = (health, backends, config_admin, explain, circuits, api_keys, metrics, cache, flip, status)


def create_control_app(router: ControlHost) -> FastAPI:
    """The control plane's ASGI app, serving `router`."""
    app = FastAPI(
        title="edge-router control plane",
        version=__version__,
        description="Health, discovery and admin endpoints of edge-router. Proxied paths are not listed.",
        redirect_slashes=False,  # its redirect's Location is built from the client's Host header
    )
    app.state.host = router
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StateStoreError, _state_store_error)  # type: ignore[arg-type]
    for module in ROUTERS:
        app.include_router(module.router)
    return app


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 404:  # no control endpoint at this path (a trailing slash included)
        return error(404, f"No control endpoint matches {request.scope['path']}", request)
    return error(exc.status_code, str(exc.detail), request)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return error(400, "; ".join(problems), request)


async def _state_store_error(request: Request, exc: StateStoreError) -> JSONResponse:
    logger.warning(
        "%s %s: %s", request.method, request.scope["path"], exc, extra={"request_id": request_id(request)}
    )
    return error(503, "The state table cannot be used right now; try again later", request)
