"""`GET /admin/explain?method=&path=&header=Name:value`: where a request would go, and why, decided by
the same code the proxy uses (`routing.explain`); nothing is sent to any backend."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ..routing.explain import explain
from .common import ADMIN, Host, error

router = APIRouter(dependencies=ADMIN)


@router.get("/admin/explain", summary="Where a request would go, and why (nothing is sent)")
async def explain_route(
    request: Request,
    host: Host,
    method: str = "GET",
    path: str = "/",
    header: Annotated[list[str] | None, Query()] = None,
) -> JSONResponse:
    config = await host.config.get()
    if config is None:
        return error(503, "no config loaded yet", request)
    headers = dict(item.partition(":")[::2] for item in header or [])
    answer = await explain(
        config,
        host.header_routing,
        method=method.upper(),
        target=path,
        headers={name.strip(): value.strip() for name, value in headers.items()},
        tracker=host.tracker,
    )
    return JSONResponse(answer)
