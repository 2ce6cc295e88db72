"""`GET /admin/circuit-breaker-status` and `POST /admin/circuit-breaker-reset`: every backend's
circuit as this instance knows it (synced from the state table first), and closing one by hand.
Both make sure a config is loaded first (loading one configures the tracker: `EdgeRouter`'s one
config-loaded hook), so a circuit the config names is known before any request has used it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .common import ADMIN, ControlHost, Host, error, iso

router = APIRouter(dependencies=ADMIN)


async def _configured(host: ControlHost) -> None:
    await host.config.get()  # a config loaded for the first time configures the tracker


@router.get("/admin/circuit-breaker-status", summary="Every circuit, or one backend's")
async def circuit_status(request: Request, host: Host, backend: str | None = None) -> JSONResponse:
    await _configured(host)
    await host.tracker.sync(list(host.tracker.breakers))
    circuits = host.tracker.circuit_status()
    if backend is not None:
        circuits = [circuit for circuit in circuits if circuit["backend"] == backend]
        if not circuits:
            return error(404, f"No circuit is known for backend {backend!r}", request)
    for circuit in circuits:
        circuit["last_failure"] = iso(circuit["last_failure"])
        circuit["next_attempt"] = iso(circuit["next_attempt"])
    return JSONResponse({"circuits": circuits})


@router.post("/admin/circuit-breaker-reset", summary="Close a backend's circuit")
async def circuit_reset(request: Request, host: Host, backend: str) -> JSONResponse:
    await _configured(host)
    if not await host.tracker.reset(backend):
        return error(404, f"No circuit is known for backend {backend!r}", request)
    return JSONResponse({"backend": backend, "state": "CLOSED"})
