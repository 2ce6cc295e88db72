"""The composition root: `EdgeRouter`, the one ASGI app both hosts run (uvicorn, Mangum).

It builds every part once (config cache, upstream client, header routing, recorder, data plane)
and sends each request through the stages before routing, in this order:

1. framing and path safety (`guards.framing`): 400/501 before anything else;
2. the config (TTL cache, no I/O within the TTL);
3. the config's request guards (the CORS preflight answer);
4. control paths (/health, /backends, /_config/..., /admin/..., /docs, /openapi.json) go to the
   control plane, /admin ones through the admin gate first; control paths take precedence over
   routes. The control plane (FastAPI) is imported on the first control request, so a cold start
   that only proxies never pays for it (~160 ms here);
5. everything else goes to the data plane (`proxy.forward.ProxyApp`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .config.cache import ConfigCache
from .config.load import load_config
from .config.model import DEFAULT_CORS, DEFAULT_CORS_PREFLIGHT, RouterConfig
from .config.sources import ConfigSource, parse_source
from .exceptions import Refusal
from .guards.admin import AdminGate, AdminKey
from .guards.base import Guard, run_guards
from .guards.framing import RequestFramingGuard
from .guards.preflight import PreflightGuard
from .http import paths
from .http.context import RequestContext, new_request_id
from .http.responses import raw_error_response, send_refusal
from .observability.access_log import RequestRecorder
from .observability.logs import app_logger
from .observability.outcome import RequestOutcome
from .proxy.forward import ProxyApp
from .resilience.monitor import HealthMonitor, ProbeTarget
from .resilience.store import StateStore
from .resilience.tracker import BackendTracker
from .routing.header_routing import HeaderRouting
from .routing.inventory import KnownBackend, known_backends
from .settings import Settings
from .types import Header, Message, Receive, Scope, Send
from .upstream.aiohttp import AiohttpUpstream
from .upstream.base import Upstream

_CONTROL_EXACT = frozenset(
    {
        "/health",
        "/backends",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/docs/oauth2-redirect",
        "/_config",
        "/admin",
    }
)
_CONTROL_PREFIXES = ("/_config/", "/admin/")
_CORS_NAMES = frozenset(name for name, _ in DEFAULT_CORS_PREFLIGHT)
_WITHOUT_CONFIG: tuple[Guard, ...] = (PreflightGuard(DEFAULT_CORS_PREFLIGHT),)


def is_control_path(path: str) -> bool:
    return path in _CONTROL_EXACT or path.startswith(_CONTROL_PREFIXES)


class _NoSource:
    """No config source: every path is header-routed over the environment (CONTRACT section 4)."""

    def read(self) -> Any:
        return {"routes": [{"prefix": "/", "select_by_header": "x-backend"}]}

    def describe(self) -> str:
        return "(none)"


class EdgeRouter:
    """The ASGI app both hosts run: uvicorn locally, Mangum on Lambda."""

    def __init__(self, settings: Settings, *, upstream: Upstream | None = None) -> None:
        app_logger()  # the package's JSON log handler, once per process
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
        self.tracker = BackendTracker(store=_state_store(settings))
        self.health = HealthMonitor(self.tracker, self.upstream)
        self.proxy = ProxyApp(
            upstream=self.upstream,
            recorder=self.recorder,
            settings=settings,
            header_routing=self.header_routing,
            tracker=self.tracker,
            config_error=lambda: self.config.status().last_error,
        )
        self._framing = RequestFramingGuard()
        self.admin_key = AdminKey(settings.admin_key, settings.admin_key_source)
        self._admin_gate = AdminGate(self.admin_key)
        self._control: Any = None
        self._background: list[asyncio.Task[None]] = []

    def _load(self) -> RouterConfig:
        return load_config(self.source.read(), os.environ)

    async def backends(self) -> list[KnownBackend]:
        """Every backend the router can reach (CONTRACT section 7), once each."""
        config = await self.config.get()
        if config is None:
            return []
        self.tracker.configure(config)
        return await known_backends(config, self.header_routing)

    async def probe_targets(self) -> list[ProbeTarget]:
        """The backends with a health policy (their own, else the config's), as the monitor probes them."""
        config = self.config.current
        if config is None or (config.health is None and not any(b.health for b in config.backends.values())):
            return []  # nothing to probe: no listing either (it may scan a DynamoDB registry)
        targets = []
        for backend in await self.backends():
            policy = backend.health or config.health
            if backend.target is not None and policy is not None:
                targets.append(ProbeTarget(backend.id, backend.target, backend.health_path, policy))
        return targets

    def control_app(self) -> Any:
        if self._control is None:
            from .control.app import create_control_app

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
        ctx = RequestContext.from_scope(scope)
        refusal = await self._framing.on_request(ctx)
        config = await self.config.get()
        cors = config.cors_headers if config else DEFAULT_CORS
        if refusal is None:
            refusal = await run_guards(config.request_guards if config else _WITHOUT_CONFIG, ctx)
        if refusal is not None:
            await self._refuse(ctx, send, refusal, cors)
            return
        if is_control_path(ctx.path):
            refusal = await self._admin_gate.on_request(ctx)
            if refusal is not None:
                await send_refusal(send, refusal, request_id=ctx.request_id, cors=cors)
                return
            scope["edge_router.request_id"] = ctx.request_id
            scope["path"] = paths.unquote_path(ctx.path)
            await self.control_app()(scope, receive, _with_headers(send, cors, ctx.request_id))
            return
        await self.proxy.handle(ctx, receive, send, config)

    async def _refuse(
        self, ctx: RequestContext, send: Send, refusal: Refusal, cors: tuple[Header, ...]
    ) -> None:
        """Answer a request refused before routing; an error (not a preflight) is logged like others."""
        await send_refusal(send, refusal, request_id=ctx.request_id, cors=cors)
        if refusal.log_error is not None:
            outcome = RequestOutcome(
                method=ctx.method,
                path=ctx.path,
                request_id=ctx.request_id,
                status=refusal.status,
                error=refusal.log_error,
            )
            self.recorder.record(outcome)

    def refusal_response(self, status: int, message: str) -> bytes:
        """A whole HTTP answer for a request the server refuses before it reaches the app."""
        config = self.config.current
        cors = config.cors_headers if config else DEFAULT_CORS
        return raw_error_response(status, message, request_id=new_request_id(), headers=cors)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # Used by the local server only: Mangum runs with lifespan="off" (it would run startup
        # and shutdown on every invocation).
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.config.get()
                self._background = [
                    asyncio.ensure_future(self._flush_access_log()),
                    asyncio.ensure_future(self.health.run(self.probe_targets)),
                ]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._background:
                    task.cancel()
                await asyncio.gather(*self._background, return_exceptions=True)
                self.recorder.flush()
                await self.upstream.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _flush_access_log(self) -> None:
        # Server mode writes request lines in batches; this bounds how long one can wait.
        while True:
            await asyncio.sleep(0.5)
            self.recorder.flush()


def _state_store(settings: Settings) -> StateStore | None:
    if not settings.state_table:
        return None
    from .resilience.dynamodb_store import DynamoDBStateStore

    return DynamoDBStateStore(settings.state_table)


def _with_headers(send: Send, extra: tuple[Header, ...], request_id: str) -> Send:
    """Give control-plane answers the router's CORS headers and the request id."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [h for h in message.get("headers", []) if h[0].lower() not in _CORS_NAMES]
            message["headers"] = [*kept, *extra, (b"x-request-id", request_id.encode())]
        await send(message)

    return wrapped
