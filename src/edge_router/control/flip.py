"""`POST /admin/flip` `{"app": "task", "priority": "213"}` (CONTRACT section 11): `edge-router flip`
over HTTP, for the status page and for operators without AWS credentials at hand.

The same code as the CLI: `config.writeback.flip` (the validated read-modify-write of the RAW
document, placeholders kept, no lost update), checked against the full schema as the routers load
it; then the fleet is told (`fleet.signal_fleet`: the state table's version item for an `ssm:`
source) and this instance re-reads its config at once.

    200  {"app", "priority", "order": [provider keys in try order], "version", "written", "signalled"}
    409  the source kept changing underneath (the retries of the read-modify-write ran out)
    422  an invalid app or priority, or a result the schema refuses (each problem named)
    501  the configured source cannot be written (a read-only file, a Lambda package, no source)
    503  the source cannot be read right now
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..config.load import load_config
from ..config.writeback import flip
from ..config.writeback.fleet import signal_fleet
from ..exceptions import ConfigInvalidError, ConfigSourceError, WriteConflict, WriteError
from ..observability.redact import redact_text
from .common import ADMIN, Host, error

router = APIRouter(dependencies=ADMIN)


class FlipRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: str = Field(min_length=1, max_length=200)  # an app name, or "*" / "global"
    priority: str = Field(min_length=1, max_length=64)  # provider digits in try order, e.g. "213"


def _validate(document: dict[str, Any]) -> None:
    load_config(document, os.environ)  # the full schema, as the routers will load it


@router.post("/admin/flip", summary="Set an app's provider priority in the config source")
async def flip_priority(request: Request, host: Host, body: FlipRequest) -> JSONResponse:
    source = host.config.status().source
    if source == "(none)":
        return error(501, "No config source is configured: there is nothing to write", request)
    try:
        result = await asyncio.to_thread(flip, source, body.app, body.priority, validate=_validate)
    except ConfigInvalidError as exc:
        return error(422, "; ".join(exc.problems), request, problems=exc.problems)
    except WriteConflict as exc:
        return error(409, f"The config changed underneath and the retries ran out: {exc}", request)
    except WriteError as exc:
        return error(501, f"The config source cannot be written: {redact_text(str(exc))}", request)
    except ConfigSourceError as exc:
        return error(503, f"The config source cannot be read: {redact_text(str(exc))}", request)
    except ValueError as exc:
        return error(501, f"The config source cannot be written: {exc}", request)
    signal = await asyncio.to_thread(signal_fleet, source, str(result.version), host.settings.state_table)
    await host.config.refresh()  # this instance follows at once
    return JSONResponse(
        {
            "app": body.app,
            "priority": body.priority,
            "order": list(body.priority),
            "version": _shown(result.version),
            "written": result.written,
            "signalled": signal.signalled,
            "message": signal.message,
        }
    )


def _shown(version: str) -> int | str:
    """SSM's and DynamoDB's versions are numbers; a file's is its content hash."""
    return int(version) if version.isdigit() else version
