"""What every control-plane router shares: the host it serves, the error shape, the admin gate.

* `ControlHost`: what the control plane needs of the router (`EdgeRouter` is one). The app keeps
  it in `app.state.host`; a handler asks for it with a `host: Host` parameter.
* `error(status, message, request, **extra)`: the router's JSON error shape
  (`{"error", "message", "request_id", **extra}`, CONTRACT section 6: `error` is the router's name
  for the status, else HTTP's), never FastAPI's `detail`.
* `ADMIN`: the dependency list of every /admin router. The router already gates every /admin path
  (guards/admin.py); this keeps the requirement visible in the OpenAPI document and holds even if
  the app is mounted some other way.
* `config_error_for`: the last config failure as a caller may see it. A config error can quote its
  source (a YAML parse error prints the offending line, a validation error the value it refused,
  credentials in a URL included), so anonymous callers see only its kind; the detail needs
  X-Admin-Key and is redacted even then.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Protocol, cast

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..config.cache import CacheStatus, ConfigCache
from ..guards.admin import AdminKey, admin_refusal
from ..guards.services import GuardServices
from ..http.responses import REASONS
from ..observability.redact import redact_text
from ..observability.windows import MetricsWindows
from ..proxy.caching import CacheStage
from ..resilience.tracker import BackendTracker
from ..routing.header_routing import HeaderRouting
from ..routing.inventory import KnownBackend
from ..settings import Settings


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

    @property
    def services(self) -> GuardServices: ...

    @property
    def metrics(self) -> MetricsWindows: ...

    @property
    def response_cache(self) -> CacheStage: ...

    @property
    def settings(self) -> Settings: ...

    async def backends(self) -> list[KnownBackend]: ...


def host_of(request: Request) -> ControlHost:
    """The router this control app serves (set by `create_control_app`)."""
    return cast(ControlHost, request.app.state.host)


Host = Annotated[ControlHost, Depends(host_of)]
AdminKeyHeader = Annotated[str | None, Header()]


def error(status: int, message: str, request: Request, **extra: Any) -> JSONResponse:
    """An error answer in the router's JSON shape."""
    body = {
        "error": REASONS.get(status) or HTTPStatus(status).phrase,
        "message": message,
        "request_id": request_id(request),
        **extra,
    }
    return JSONResponse(body, status_code=status)


def request_id(request: Request) -> str:
    return str(request.scope.get("edge_router.request_id", ""))


async def require_admin(host: Host, x_admin_key: AdminKeyHeader = None) -> None:
    refusal = admin_refusal(await host.admin_key.get(), x_admin_key)
    if refusal:
        raise HTTPException(*refusal)


ADMIN = [Depends(require_admin)]
ADMIN_KEY_WAIT_S = 2.0


async def config_error_for(host: ControlHost, status: CacheStatus, x_admin_key: str | None) -> str | None:
    """The last config failure as this caller may see it: its kind, or with the admin key its detail."""
    if status.last_error is None:
        return None
    # a key source that hangs costs this answer a moment at most, never the read's whole time
    key = await host.admin_key.get(deadline=time.monotonic() + ADMIN_KEY_WAIT_S)
    if admin_refusal(key, x_admin_key) is None:
        return redact_text(status.last_error)
    return status.last_error_summary or "the config could not be loaded"


def iso(epoch: object) -> str | None:
    """Epoch seconds as ISO-8601 UTC with milliseconds (`...Z`); None for anything else."""
    if not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
