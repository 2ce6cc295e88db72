"""`GET /health` and `GET /_config/route` (CONTRACT section 5): open to anyone, so they show a config
error's kind only; X-Admin-Key adds its (redacted) detail (see `common.config_error_for`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..observability.redact import redact
from .common import AdminKeyHeader, Host, config_error_for, error

router = APIRouter()


@router.get("/health", summary="Is a valid config loaded? (X-Admin-Key adds the config error's detail)")
async def health(host: Host, x_admin_key: AdminKeyHeader = None) -> JSONResponse:
    status = host.config.status()
    last_error = await config_error_for(host, status, x_admin_key)
    body: dict[str, Any] = {
        "status": "healthy" if status.config else "unhealthy",
        "version": __version__,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "config": {
            "source": status.source,
            "loaded_at": status.loaded_at,
            "last_error": last_error,
            # the source's version this instance serves (SSM's parameter Version, a DynamoDB
            # item's `version`): what `edge-router flip --wait` watches the fleet reach
            "version": _shown(status.version),
        },
    }
    if status.config is None:
        body["reason"] = last_error or "no config loaded yet"
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


def _shown(version: object) -> int | str | None:
    """A version as JSON: an int as it is, a file's (mtime_ns, size) as text."""
    if version is None or isinstance(version, int):
        return version
    return "-".join(str(part) for part in version) if isinstance(version, tuple) else str(version)


@router.get("/_config/route", summary="The active config, secrets redacted")
async def active_config(request: Request, host: Host, x_admin_key: AdminKeyHeader = None) -> JSONResponse:
    status = host.config.status()
    if status.config is None:
        reason = await config_error_for(host, status, x_admin_key)
        return error(503, reason or "no config loaded yet", request)
    return JSONResponse(
        {
            "source": status.source,
            "loaded_at": status.loaded_at,
            "config": redact(dict(status.config.document)),
        }
    )
