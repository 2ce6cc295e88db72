"""`/admin/api-keys` (CONTRACT section 8): create, list and delete the API keys the router accepts
besides those its config names, in the process's `KeyStore` (the state table with `STATE_TABLE`,
else this process only: see `guards/key_store.py`).

* `POST /admin/api-keys` `{"name": str, "rate_limit_multiplier": float}` -> 201
  `{"id", "key", "name", "created_at", "rate_limit_multiplier"}`: the key is shown this once (only
  its hash is stored), so the answer says `Cache-Control: no-store`. The multiplier (default 1) is
  in (0, 1000]; the name is 1-100 printable characters; other fields are refused (400), so that a
  client cannot believe it chose a key or an id. A full store (500 keys) answers 409.
* `GET /admin/api-keys` -> `{"keys": [{"id", "name", "created_at", "rate_limit_multiplier"}]}`,
  oldest first: never a key, never a hash. Keys the config names are not listed (the config is
  where they are managed).
* `DELETE /admin/api-keys/{id}` -> 204; 404 when no created key has that id (a config key's id
  included). With the state table, every instance refuses the key within 60 s, this one at once.

`created_at` is ISO-8601 UTC. A state table that cannot be used answers 503 (see `app.py`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..exceptions import KeyLimitReached
from ..guards.key_store import MAX_MULTIPLIER, MAX_NAME_CHARS
from ..guards.services import StoredKey
from .common import ADMIN, Host, error, iso

router = APIRouter(dependencies=ADMIN)

_KEY_ID = re.compile(r"[0-9a-f]{16}")


class NewApiKey(BaseModel):
    """The body of `POST /admin/api-keys`."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
    rate_limit_multiplier: Annotated[float, Field(gt=0, le=MAX_MULTIPLIER, allow_inf_nan=False)] = 1.0

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str) -> str:
        if not name.isprintable():
            raise ValueError("must be printable text (no control characters)")
        return name


def _described(stored: StoredKey) -> dict[str, Any]:
    return {
        "id": stored.id,
        "name": stored.name,
        "created_at": iso(stored.created_at),
        "rate_limit_multiplier": stored.rate_limit_multiplier,
    }


@router.post("/admin/api-keys", status_code=201, summary="Create an API key (shown this once)")
async def create_api_key(request: Request, host: Host, body: NewApiKey) -> JSONResponse:
    try:
        stored, key = await host.services.keys.create(body.name, body.rate_limit_multiplier)
    except KeyLimitReached as exc:
        return error(409, f"{exc}: delete one before creating another", request)
    return JSONResponse(
        {"key": key, **_described(stored)}, status_code=201, headers={"cache-control": "no-store"}
    )


@router.get("/admin/api-keys", summary="Every API key created here (no key, no hash)")
async def list_api_keys(host: Host) -> dict[str, Any]:
    return {"keys": [_described(stored) for stored in await host.services.keys.list()]}


@router.delete(
    "/admin/api-keys/{key_id}",
    status_code=204,
    response_class=Response,
    summary="Delete an API key (refused everywhere within 60 s)",
)
async def delete_api_key(request: Request, host: Host, key_id: str) -> Response:
    if not _KEY_ID.fullmatch(key_id) or not await host.services.keys.delete(key_id):
        return error(404, f"No API key has id {key_id!r}", request)
    return Response(status_code=204)
