"""The control plane: FastAPI, imported only when a control path is first requested.

/health, /backends, /_config/route and /admin/*. Every /admin endpoint needs X-Admin-Key,
compared in constant time; with no ADMIN_KEY set they are closed (403), never open.
Errors use the router's JSON shape (`error`, `message`, `request_id`), not FastAPI's `detail`.

A config error can quote its source (a YAML parse error prints the offending line, a validation
error the value it refused, credentials in a URL included), so /health and /_config/route show
anonymous callers only the kind of failure; the detail needs X-Admin-Key and is redacted even then.
No path here is ever answered with a redirect: Starlette builds trailing-slash redirects from the
client's Host header, so a control path with a trailing slash is a plain 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import __version__
from ..config.cache import CacheStatus, ConfigCache
from ..guards.admin import AdminKey, admin_refusal
from ..http.responses import REASONS
from ..observability.redact import redact, redact_text, redact_url
from ..resilience.tracker import BackendTracker
from ..routing.explain import explain
from ..routing.header_routing import HeaderRouting
from ..routing.inventory import KnownBackend


class ControlHost(Protocol):
    """What the control plane needs of the router (the composition root, `EdgeRouter`, is one)."""

    @property
    def config(self) -> ConfigCache: ...

    @property
    def header_routing(self) -> HeaderRouting: ...

    @property
    def tracker(self) -> BackendTracker: ...

    @property
    def admin_key(self) -> AdminKey: ...

    async def backends(self) -> list[KnownBackend]: ...


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


def create_control_app(router: ControlHost) -> FastAPI:
    app = FastAPI(
        title="edge-router control plane",
        version=__version__,
        description="Health, discovery and admin endpoints of edge-router. Proxied paths are not listed.",
        redirect_slashes=False,  # its redirect's Location is built from the client's Host header
    )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:  # no control endpoint at this path (a trailing slash included)
            return _error(404, f"No control endpoint matches {request.scope['path']}", request)
        return _error(exc.status_code, str(exc.detail), request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return _error(400, "; ".join(problems), request)

    async def require_admin(x_admin_key: Annotated[str | None, Header()] = None) -> None:
        # The router already gates every /admin path (guards/admin.py); this keeps the requirement
        # visible in the OpenAPI document and holds even if the app is mounted some other way.
        refusal = admin_refusal(await router.admin_key.get(), x_admin_key)
        if refusal:
            raise HTTPException(*refusal)

    admin = [Depends(require_admin)]

    async def config_error_for(status: CacheStatus, x_admin_key: str | None) -> str | None:
        """The last config failure as this caller may see it: its kind, or with the admin key its detail."""
        if status.last_error is None:
            return None
        if admin_refusal(await router.admin_key.get(), x_admin_key) is None:
            return redact_text(status.last_error)
        return status.last_error_summary or "the config could not be loaded"

    @app.get("/health", summary="Is a valid config loaded? (X-Admin-Key adds the config error's detail)")
    async def health(x_admin_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        status = router.config.status()
        last_error = await config_error_for(status, x_admin_key)
        body: dict[str, Any] = {
            "status": "healthy" if status.config else "unhealthy",
            "version": __version__,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "config": {
                "source": status.source,
                "loaded_at": status.loaded_at,
                "last_error": last_error,
            },
        }
        if status.config is None:
            body["reason"] = last_error or "no config loaded yet"
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    @app.get("/backends", summary="Every backend the router can reach, with its health and circuit")
    async def backends() -> dict[str, Any]:
        tracker = router.tracker
        known = await router.backends()
        await tracker.sync([backend.id for backend in known])
        now = tracker.clock()
        items = []
        for backend in known:
            health = tracker.health.get(backend.id)
            breaker = tracker.breakers.get(backend.id)
            items.append(
                {
                    "id": backend.id,
                    "name": backend.name,
                    "url": redact_url(backend.url),
                    "location": backend.location,
                    "listed_by": backend.listed_by,
                    "health": health.health if health else "unknown",
                    "last_check": _iso(health.last_check) if health else None,
                    "latency_ms": health.latency_ms if health else None,
                    "reason": health.reason if health else None,
                    "circuit": str(breaker.current(now)) if breaker else "CLOSED",
                }
            )
        return {"backends": items}

    @app.get("/_config/route", summary="The active config, secrets redacted")
    async def active_config(
        request: Request, x_admin_key: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        status = router.config.status()
        if status.config is None:
            reason = await config_error_for(status, x_admin_key)
            return _error(503, reason or "no config loaded yet", request)
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
            return _error(422, f"{redact_text(status.last_error)}; {kept}", request, **serving)
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
            tracker=router.tracker,
        )
        return JSONResponse(answer)

    @app.get("/admin/circuit-breaker-status", dependencies=admin, summary="Every circuit, or one backend's")
    async def circuit_status(request: Request, backend: str | None = None) -> JSONResponse:
        config = await router.config.get()
        if config is not None:
            router.tracker.configure(config)
        await router.tracker.sync(list(router.tracker.breakers))
        circuits = router.tracker.circuit_status()
        if backend is not None:
            circuits = [circuit for circuit in circuits if circuit["backend"] == backend]
            if not circuits:
                return _error(404, f"No circuit is known for backend {backend!r}", request)
        for circuit in circuits:
            circuit["last_failure"] = _iso(circuit["last_failure"])
            circuit["next_attempt"] = _iso(circuit["next_attempt"])
        return JSONResponse({"circuits": circuits})

    @app.post("/admin/circuit-breaker-reset", dependencies=admin, summary="Close a backend's circuit")
    async def circuit_reset(request: Request, backend: str) -> JSONResponse:
        config = await router.config.get()
        if config is not None:
            router.tracker.configure(config)
        if not await router.tracker.reset(backend):
            return _error(404, f"No circuit is known for backend {backend!r}", request)
        return JSONResponse({"backend": backend, "state": "CLOSED"})

    return app


def _iso(epoch: object) -> str | None:
    if not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
