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

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from . import __version__
from ._auth import admin_refusal
from ._responses import REASONS

if TYPE_CHECKING:
    from ._app import EdgeRouter
    from ._config_cache import CacheStatus

_SECRET_KEY = re.compile(r"key|secret|token|password|passwd|credential|authorization", re.IGNORECASE)
REDACTED = "***"
# In free text: `scheme://authority` anywhere; credentials are what runs to the authority's last @.
# Neither pattern backtracks over a long run: a huge value quoted in an error costs linear time.
_URL_AUTHORITY = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://)([^\s/?#'\"<>]*)")
# In free text: `password: x`, `token=x`, `"apiKey": "x"` (a YAML or JSON line quoted by a parse error).
# An unquoted value runs to the end of the line or to "; " (how ConfigInvalidError joins problems):
# YAML plain scalars may hold spaces, and showing too little beats leaking the rest of a password.
# A key starts only where a name starts and is taken whole (possessive `++`), so a long name made of
# secret words cannot make the engine retry every split of it.
_NAME = r"[\w.\[\]-]"  # a field path such as routes[0].apiKey
_SECRET_FRAGMENT = re.compile(
    rf"""(?P<key>(?<!{_NAME})(?={_NAME}*?(?:{_SECRET_KEY.pattern})){_NAME}++["']?[ \t]*+[:=][ \t]*+)"""
    r"""(?P<value>"[^"\n]*+"?|'[^'\n]*+'?|(?:(?!;\s)[^\n])*+)""",
    re.IGNORECASE,
)


def redact(value: Any, key: str = "") -> Any:
    """Hide values of secret-looking keys and credentials embedded in URLs."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item, key) for item in value]
    if isinstance(value, str):
        if key and _SECRET_KEY.search(key):
            return REDACTED
        return _redact_url(value)
    if key and _SECRET_KEY.search(key) and value is not None:
        return REDACTED
    return value


def redact_text(text: str) -> str:
    """Hide URL credentials and the values of secret-looking `key: value` fragments in free text."""
    text = _URL_AUTHORITY.sub(_hide_url_credentials, text)
    return _SECRET_FRAGMENT.sub(_hide_fragment_value, text)


def _hide_url_credentials(match: re.Match[str]) -> str:
    scheme, authority = match.groups()
    if "@" not in authority:
        return match[0]
    return f"{scheme}{REDACTED}@{authority.rpartition('@')[2]}"


def _hide_fragment_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match['key']}{quote}{REDACTED}{quote}"


def _redact_url(value: str) -> str:
    if "://" not in value:
        return value
    parts = urlsplit(value)
    if parts.password is None and parts.username is None:
        return value
    host = parts.hostname or ""
    netloc = f"{REDACTED}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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


def create_control_app(router: EdgeRouter) -> FastAPI:
    settings = router.settings
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

    def require_admin(x_admin_key: Annotated[str | None, Header()] = None) -> None:
        # The router already gates every /admin path (see _app.py); this keeps the requirement
        # visible in the OpenAPI document and holds even if the app is mounted some other way.
        refusal = admin_refusal(settings.admin_key, x_admin_key)
        if refusal:
            raise HTTPException(*refusal)

    admin = [Depends(require_admin)]

    def config_error_for(status: CacheStatus, x_admin_key: str | None) -> str | None:
        """The last config failure as this caller may see it: its kind, or with the admin key its detail."""
        if status.last_error is None:
            return None
        if admin_refusal(settings.admin_key, x_admin_key) is None:
            return redact_text(status.last_error)
        return status.last_error_summary or "the config could not be loaded"

    @app.get("/health", summary="Is a valid config loaded? (X-Admin-Key adds the config error's detail)")
    async def health(x_admin_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        status = router.config.status()
        last_error = config_error_for(status, x_admin_key)
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

    @app.get("/backends", summary="Configured backends")
    async def backends() -> dict[str, Any]:
        config = await router.config.get()
        items = []
        for backend_id, spec in (config.backends if config else {}).items():
            items.append(
                {
                    "id": backend_id,
                    "name": spec.name or backend_id,
                    "url": _redact_url(spec.url),
                    "location": spec.location,
                    "health": "unknown",
                    "last_check": None,
                    "latency_ms": None,
                }
            )
        return {"backends": items}

    @app.get("/_config/route", summary="The active config, secrets redacted")
    async def active_config(
        request: Request, x_admin_key: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        status = router.config.status()
        if status.config is None:
            return _error(503, config_error_for(status, x_admin_key) or "no config loaded yet", request)
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
        from ._explain import explain

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
        )
        return JSONResponse(answer)

    return app
