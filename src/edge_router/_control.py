"""The control plane: FastAPI, imported only when a control path is first requested.

/health, /backends, /_config/route and /admin/*. Every /admin endpoint needs X-Admin-Key,
compared in constant time; with no ADMIN_KEY set they are closed (403), never open.
Errors use the router's JSON shape (`error`, `message`, `request_id`), not FastAPI's `detail`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from . import __version__
from ._auth import admin_refusal
from ._responses import REASONS

if TYPE_CHECKING:
    from ._app import EdgeRouter

_SECRET_KEY = re.compile(r"key|secret|token|password|passwd|credential|authorization", re.IGNORECASE)
REDACTED = "***"


def redact(value: Any, key: str = "") -> Any:
    """Hide values of secret-looking keys and credentials embedded in URLs."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item, key) for item in value]
    if isinstance(value, str):
        if key and _SECRET_KEY.search(key):
            return REDACTED
        return _redact_url(value)
    if key and _SECRET_KEY.search(key) and value is not None:
        return REDACTED
    return value


def _redact_url(value: str) -> str:
    if "://" not in value:
        return value
    parts = urlsplit(value)
    if parts.password is None and parts.username is None:
        return value
    host = parts.hostname or ""
    netloc = f"{REDACTED}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _error(status: int, message: str, request: Request, **extra: Any) -> JSONResponse:
    body = {
        "error": REASONS.get(status, "Error"),
        "message": message,
        "request_id": _request_id(request),
        **extra,
    }
    return JSONResponse(body, status_code=status)


def _request_id(request: Request) -> str:
    return str(request.scope.get("edge_router.request_id", ""))


def create_control_app(router: EdgeRouter) -> FastAPI:
    settings = router.settings
    app = FastAPI(
        title="edge-router control plane",
        version=__version__,
        description="Health, discovery and admin endpoints of edge-router. Proxied paths are not listed.",
    )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return _error(400, "; ".join(problems), request)

    def require_admin(x_admin_key: Annotated[str | None, Header()] = None) -> None:
        # The router already gates every /admin path (see _app.py); this keeps the requirement
        # visible in the OpenAPI document and holds even if the app is mounted some other way.
        refusal = admin_refusal(settings.admin_key, x_admin_key)
        if refusal:
            raise HTTPException(*refusal)

    admin = [Depends(require_admin)]

    @app.get("/health", summary="Is a valid config loaded?")
    async def health() -> JSONResponse:
        status = router.config.status()
        body: dict[str, Any] = {
            "status": "healthy" if status.config else "unhealthy",
            "version": __version__,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "config": {
                "source": status.source,
                "loaded_at": status.loaded_at,
                "last_error": status.last_error,
            },
        }
        if status.config is None:
            body["reason"] = status.last_error or "no config loaded yet"
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    @app.get("/backends", summary="Configured backends")
    async def backends() -> dict[str, Any]:
        config = await router.config.get()
        items = []
        for backend_id, spec in (config.backends if config else {}).items():
            items.append(
                {
                    "id": backend_id,
                    "name": spec.name or backend_id,
                    "url": _redact_url(spec.url),
                    "location": spec.location,
                    "health": "unknown",
                    "last_check": None,
                    "latency_ms": None,
                }
            )
        return {"backends": items}

    @app.get("/_config/route", summary="The active config, secrets redacted")
    async def active_config(request: Request) -> JSONResponse:
        status = router.config.status()
        if status.config is None:
            return _error(503, status.last_error or "no config loaded yet", request)
        return JSONResponse(
            {
                "source": status.source,
                "loaded_at": status.loaded_at,
                "config": redact(dict(status.config.document)),
            }
        )

    @app.post(
        "/admin/cache-flush", dependencies=admin, summary="Drop the cached config and read the source again"
    )
    async def cache_flush(request: Request) -> JSONResponse:
        config = await router.config.refresh()
        status = router.config.status()
        serving = {"source": status.source, "routes": len(config.routes) if config else 0}
        if status.last_error is not None:
            # 422: the source was read again but not accepted; the last good config stays in service.
            kept = "the last good config stays in service" if config else "no config is loaded"
            return _error(422, f"{status.last_error}; {kept}", request, **serving)
        return JSONResponse({"flushed": True, "loaded_at": status.loaded_at, **serving})

    @app.get(
        "/admin/explain", dependencies=admin, summary="Where a request would go, and why (nothing is sent)"
    )
    async def explain_route(
        request: Request,
        method: str = "GET",
        path: str = "/",
        header: Annotated[list[str] | None, Query()] = None,
    ) -> JSONResponse:
        from ._explain import explain

        config = await router.config.get()
        if config is None:
            return _error(503, "no config loaded yet", request)
        headers = dict(item.partition(":")[::2] for item in header or [])
        answer = await explain(
            config,
            router.header_routing,
            method=method.upper(),
            target=path,
            headers={name.strip(): value.strip() for name, value in headers.items()},
        )
        return JSONResponse(answer)

    return app
