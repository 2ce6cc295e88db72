"""The composition root: one ASGI app that sends each request to the data or the control plane.

The data plane (`_proxy.ProxyApp`) is built at start-up. The control plane (`_control`, FastAPI)
is imported the first time a control path is requested, so a cold start that only proxies never
pays for importing FastAPI (~160 ms here). Control paths take precedence over routes:
/health, /backends, /_config/..., /admin/..., /docs, /redoc, /openapi.json.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
from typing import Any

from . import _headers, _paths
from ._auth import admin_refusal
from ._config import DEFAULT_CORS, DEFAULT_CORS_PREFLIGHT, RouterConfig, load_config
from ._config_cache import ConfigCache
from ._header_routing import HeaderRouting
from ._observability import RequestRecorder
from ._proxy import ProxyApp, Receive, Scope, Send, header_value
from ._responses import Header, raw_error_response, send_bytes, send_error
from ._settings import Settings
from ._sources import ConfigSource, parse_source
from ._upstream import AiohttpUpstream, Upstream

logger = logging.getLogger("edge_router")

_CONTROL_EXACT = frozenset(
    {"/health", "/backends", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
)
_CONTROL_PREFIXES = ("/_config/", "/admin/")
_CORS_NAMES = frozenset(name for name, _ in DEFAULT_CORS_PREFLIGHT)


# Request ids: a random per-process prefix and a counter. Unique without a getrandom syscall per
# request (uuid4 was ~3% of the server's CPU); ids need to be unique, not unguessable.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def is_control_path(path: str) -> bool:
    return path in _CONTROL_EXACT or path.startswith(_CONTROL_PREFIXES) or path in ("/_config", "/admin")


class _NoSource:
    """No config source: every path is header-routed over the environment (CONTRACT section 4)."""

    def read(self) -> Any:
        return {"routes": [{"prefix": "/", "select_by_header": "x-backend"}]}

    def describe(self) -> str:
        return "(none)"


class EdgeRouter:
    """The ASGI app both hosts run: uvicorn locally, Mangum on Lambda."""

    def __init__(self, settings: Settings, *, upstream: Upstream | None = None) -> None:
        self.settings = settings
        self.source: ConfigSource = (
            parse_source(settings.config_source) if settings.config_source else _NoSource()
        )
        self.config = ConfigCache(
            self._load,
            source=self.source.describe(),
            ttl_seconds=settings.config_ttl_seconds,
            retry_seconds=settings.config_retry_seconds,
        )
        self.upstream = upstream or AiohttpUpstream()
        self.recorder = RequestRecorder()
        self.header_routing = HeaderRouting(settings)
        self.proxy = ProxyApp(
            config=self.config,
            upstream=self.upstream,
            recorder=self.recorder,
            settings=settings,
            header_routing=self.header_routing,
        )
        self._control: Any = None
        self._flusher: asyncio.Task[None] | None = None

    def _load(self) -> RouterConfig:
        return load_config(self.source.read(), os.environ)

    def control_app(self) -> Any:
        if self._control is None:
            from ._control import create_control_app

            self._control = create_control_app(self)
        return self._control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websocket: not proxied (yet); refuse cleanly
            await send({"type": "websocket.close", "code": 1003})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope["headers"]
        event = scope.get("aws.event")
        request_id = (
            header_value(headers, b"x-request-id")
            or (event["requestContext"].get("requestId") if event else None)
            or new_request_id()
        )
        raw_path = scope.get("raw_path")
        raw_path_text = raw_path.decode("latin-1") if raw_path else _paths.quote_path(scope["path"])
        # A function URL event carries one Host and no framing of its own; a server request may not.
        problem = None if event else _headers.framing_problem(headers, scope.get("http_version", "1.1"))
        try:
            path = _paths.normalize_path(raw_path_text)
        except _paths.UnsafePath as exc:
            problem = problem or (400, str(exc))
            path = raw_path_text
        config = await self.config.get()
        if problem is not None:
            await self._refuse(scope, send, config, path, request_id, *problem)
            return
        if (
            scope["method"] == "OPTIONS"
            and header_value(headers, b"access-control-request-method") is not None
        ):
            preflight = config.cors_preflight_headers if config else DEFAULT_CORS_PREFLIGHT
            await send_bytes(send, 204, b"", [*preflight, (b"x-request-id", request_id.encode())])
            return
        if is_control_path(path):
            cors = config.cors_headers if config else DEFAULT_CORS
            if path.startswith("/admin"):
                refusal = admin_refusal(self.settings.admin_key, header_value(headers, b"x-admin-key"))
                if refusal:
                    await send_error(send, refusal[0], refusal[1], request_id=request_id, headers=cors)
                    return
            scope["edge_router.request_id"] = request_id
            scope["path"] = _paths.unquote_path(path)
            await self.control_app()(scope, receive, _with_headers(send, cors, request_id))
            return
        await self.proxy.handle(scope, receive, send, config=config, path=path, request_id=request_id)

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        config: RouterConfig | None,
        path: str,
        request_id: str,
        status: int,
        message: str,
    ) -> None:
        """Answer a request the router will not handle at all, and log it like a proxied one."""
        cors = config.cors_headers if config else DEFAULT_CORS
        await send_error(
            send, status, message, request_id=request_id, headers=[*cors, (b"connection", b"close")]
        )
        self.recorder.record(
            method=scope["method"],
            path=path,
            route=None,
            target=None,
            backend=None,
            status=status,
            duration_ms=0.0,
            request_id=request_id,
            error=message,
        )

    def refusal_response(self, status: int, message: str) -> bytes:
        """A whole HTTP answer for a request the server refuses before it reaches the app."""
        config = self.config.status().config
        cors = config.cors_headers if config else DEFAULT_CORS
        return raw_error_response(status, message, request_id=new_request_id(), headers=cors)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # Used by the local server only: Mangum runs with lifespan="off" (it would run startup
        # and shutdown on every invocation).
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.config.get()
                self._flusher = asyncio.ensure_future(self._flush_access_log())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._flusher is not None:
                    self._flusher.cancel()
                self.recorder.flush()
                await self.upstream.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _flush_access_log(self) -> None:
        # Server mode writes request lines in batches; this bounds how long one can wait.
        while True:
            await asyncio.sleep(0.5)
            self.recorder.flush()


def _with_headers(send: Send, extra: tuple[Header, ...], request_id: str) -> Send:
    """Give control-plane answers the router's CORS headers and the request id."""

    async def wrapped(message: Any) -> None:
        if message["type"] == "http.response.start":
            kept = [h for h in message.get("headers", []) if h[0].lower() not in _CORS_NAMES]
            message["headers"] = [*kept, *extra, (b"x-request-id", request_id.encode())]
        await send(message)

    return wrapped
