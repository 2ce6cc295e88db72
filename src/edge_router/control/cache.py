"""The response cache's admin endpoints (CONTRACT section 9):

    GET  /admin/cache-stats              {"entries", "bytes", "hits", "misses", "hit_rate"}
    POST /admin/cache-invalidate?prefix= drops entries whose `METHOD::path?query` starts with it
    GET  /admin/dedup-stats              {"coalesced", "leaders", "in_flight"}

The figures are this instance's: on Lambda each instance has its own cache.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from .common import ADMIN, Host, error

router = APIRouter(dependencies=ADMIN)


@router.get("/admin/cache-stats", summary="This instance's response cache")
async def cache_stats(host: Host) -> JSONResponse:
    return JSONResponse(host.response_cache.store.stats())


@router.post("/admin/cache-invalidate", summary="Drop cached answers by METHOD::path?query prefix")
async def cache_invalidate(
    request: Request, host: Host, prefix: Annotated[str, Query(max_length=8192)] = ""
) -> JSONResponse:
    if not prefix:
        return error(400, "prefix is required, e.g. GET::/api/data ('GET::' drops every GET answer)", request)
    return JSONResponse({"invalidated": host.response_cache.store.invalidate(prefix)})


@router.get("/admin/dedup-stats", summary="Request coalescing on this instance")
async def dedup_stats(host: Host) -> JSONResponse:
    return JSONResponse(host.response_cache.coalescer.stats())
