"""`GET /admin/metrics?window=1m|5m|1h|all` and `POST /admin/metrics/reset` (CONTRACT section 10):
this instance's figures for proxied requests, from the in-process windows the recorder feeds
(`observability/windows.py`). Control requests are never counted, these two included.

The window defaults to `all` (since start or the last reset): a bare `GET /admin/metrics` then
shows everything this instance still knows, and the named windows are one parameter away. An
unknown window is a 400 naming the ones there are. On Lambda every instance answers for itself;
CloudWatch (the same figures, through EMF) holds the fleet's sum.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..observability.windows import WINDOWS
from .common import ADMIN, Host, error

router = APIRouter(dependencies=ADMIN)


@router.get("/admin/metrics", summary="Proxied requests in the last 1m, 5m, 1h, or since start (all)")
async def metrics(request: Request, host: Host, window: str = "all") -> JSONResponse:
    if window not in WINDOWS:
        expected = ", ".join(WINDOWS)
        return error(400, f"Unknown window {window!r}: expected one of {expected}", request)
    return JSONResponse(host.metrics.snapshot(window))


@router.post("/admin/metrics/reset", summary="Zero this instance's metrics")
async def metrics_reset(host: Host) -> JSONResponse:
    host.metrics.reset()
    return JSONResponse({"reset": True})
