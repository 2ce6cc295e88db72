"""`POST /admin/cache-flush` (CONTRACT section 5): drop the cached config and read the source again.

A source that was read but not accepted answers 422 with the (redacted) reason; the last good
config stays in service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..observability.redact import redact_text
from .common import ADMIN, Host, error

router = APIRouter(dependencies=ADMIN)


@router.post("/admin/cache-flush", summary="Drop the cached config and read the source again")
async def cache_flush(request: Request, host: Host) -> JSONResponse:
    config = await host.config.refresh()
    status = host.config.status()
    serving = {"source": status.source, "routes": len(config.routes) if config else 0}
    if status.last_error is not None:
        kept = "the last good config stays in service" if config else "no config is loaded"
        return error(422, f"{redact_text(status.last_error)}; {kept}", request, **serving)
    return JSONResponse({"flushed": True, "loaded_at": status.loaded_at, **serving})
