"""The composition root: `EdgeRouter`, the one pipeline every host drives.

Hosts hand it a request as a `RequestContext` with a body reader and an answer writer
(`http/channel.py`): the server engine (`server/`) and the Lambda adapter (`aws_lambda.py`) call
`handle()` directly, with no ASGI message built per request; `startup()`/`shutdown()` are their
start and stop hooks. The router is also an ASGI app (`__call__`, lifespan included), one adapter
of the same pipeline (`http/asgi.py`), for Mangum's control-plane requests and for embedders.

It builds every part once (config cache, upstream client, header routing, recorder, the guards'
services, data plane) and sends each request through:

1. the config (TTL cache, no I/O within the TTL);
2. the stage before routing, one ordered list compiled with the config (`config.compile_guards`):
   framing and path safety, the client address, top-level IP rules, the CORS preflight answer, the
   admin gate on /admin paths;
3. control paths (/health, /backends, /_config/..., /admin/..., /docs, /openapi.json) go to the
   control plane; control paths take precedence over routes. The control plane (FastAPI) is
   imported on the first control request, so a cold start that only proxies never pays for it;
4. everything else goes to the data plane (`proxy.forward.ProxyApp`).

What a new config changes elsewhere (the tracker's breaker and health policies) happens in one
hook, `_config_loaded`, run once per loaded config before any request routes with it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Hashable
from typing import Any

from .aws.shield import StoreShield
from .cache.flights import Coalescer
from .cache.store import ResponseCache
from .config.cache import ConfigCache
from .config.load import load_config
from .config.model import RouterConfig
from .config.sources import ConfigSource, SSMSource, parse_json_text, parse_source, ssm_parameter
from .exceptions import ConfigSourceError, Refusal, StateStoreError
from .guards.admin import AdminGate, AdminKey
from .guards.base import Guard, run_guards
from .guards.cors import ALL_CORS_NAMES, DEFAULT_POLICY
from .guards.framing import RequestFramingGuard
from .guards.preflight import PreflightGuard
from .guards.services import GuardServices
from .http import paths
from .http.channel import AnswerWriter, BodyReader
from .http.context import RequestContext, new_request_id
from .http.responses import raw_error_response, send_refusal
from .observability.access_log import RequestRecorder
from .observability.logs import app_logger
from .observability.outcome import RequestOutcome
from .observability.windows import MetricsWindows
from .proxy.caching import CacheStage
from .proxy.forward import ProxyApp
from .resilience.monitor import HealthMonitor, ProbeTarget
from .resilience.store import StateStore
from .resilience.tracker import BackendTracker
from .routing.header_routing import HeaderRouting
from .routing.inventory import KnownBackend, known_backends
from .settings import Settings
from .types import Header, Message, Receive, Scope, Send
from .upstream.base import Upstream
from .upstream.http1 import Http1Upstream

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
        *("/status", "/status/status.js", "/status/status.css"),  # the status page (control/status.py)
    }
)
_CONTROL_PREFIXES = ("/_config/", "/admin/")
# Server mode: how long a request (or the server's start) waits for a first config that is not
# read yet. On Lambda the invocation's own deadline bounds it instead.
FIRST_CONFIG_WAIT_S = 2.0


def is_control_path(path: str) -> bool:
    return path in _CONTROL_EXACT or path.startswith(_CONTROL_PREFIXES)


class _NoSource:
    """No config source: every path is header-routed over the environment (CONTRACT section 4)."""

    reload_spread_s = 0.0

    def version(self) -> None:
        return None

    def read_versioned(self) -> tuple[Any, None]:
        return self.read(), None

    def read(self) -> Any:
        return {"routes": [{"prefix": "/", "select_by_header": "x-backend"}]}

    def describe(self) -> str:
        return "(none)"


class EdgeRouter:
    """The pipeline, with its host API (`startup`, `handle`, `shutdown`) and its ASGI face."""

    def __init__(self, settings: Settings, *, upstream: Upstream | None = None) -> None:
        app_logger()  # the package's JSON log handler, once per process
        self.settings = settings
        self.source: ConfigSource = (
            parse_source(settings.config_source, state_table=settings.state_table)
            if settings.config_source
            else _NoSource()
        )
        self.admin_key = AdminKey(settings.admin_key, settings.admin_key_source)
        # one shield per state table: a table that hangs is backed off for all its users at once
        shield = StoreShield(f"DynamoDB table {settings.state_table!r}") if settings.state_table else None
        self.services = _services(settings, AdminGate(self.admin_key), shield)
        self.config = ConfigCache(
            self._load,
            source=self.source.describe(),
            ttl_seconds=settings.config_ttl_seconds,
            retry_seconds=settings.config_retry_seconds,
            on_loaded=self._config_loaded,
            load_versioned=self._load_versioned,
            version=self.source.version,
            check_seconds=settings.config_check_seconds,
            reload_spread_s=self.source.reload_spread_s,
            first_wait_s=FIRST_CONFIG_WAIT_S,
        )
        self.upstream = upstream or Http1Upstream()
        self.recorder = RequestRecorder()
        self.header_routing = HeaderRouting(settings)
        self.tracker = BackendTracker(store=_state_store(settings), shield=shield)
        self.health = HealthMonitor(self.tracker, self.upstream)
        # the response cache: one per process, kept across config loads (CONTRACT section 9)
        self.response_cache = CacheStage(ResponseCache(), Coalescer())
        self.proxy = ProxyApp(
            upstream=self.upstream,
            recorder=self.recorder,
            settings=settings,
            header_routing=self.header_routing,
            tracker=self.tracker,
            config_error=lambda: self.config.status().last_error,
            cache=self.response_cache,
        )
        # stage 1 while no config was ever loaded: the same list, with the default CORS policy
        self._without_config: tuple[Guard, ...] = (
            RequestFramingGuard(),
            PreflightGuard(DEFAULT_POLICY),
            *((self.services.admin_gate,) if self.services.admin_gate else ()),
        )
        self._control: Any = None
        self._background: list[asyncio.Task[None]] = []

    @property
    def metrics(self) -> MetricsWindows:
        """The in-process metrics windows the recorder feeds (`GET /admin/metrics`)."""
        return self.recorder.windows

    def _load(self) -> RouterConfig:
        return load_config(self.source.read(), os.environ, self.services)

    def _load_versioned(self) -> tuple[RouterConfig, Hashable | None]:
        document, version = self.source.read_versioned()
        return load_config(document, os.environ, self.services), version

    async def on_parameter_change(self, name: str) -> dict[str, Any]:
        """SSM says the config parameter changed (an EventBridge event): read it once, bump the
        fleet's config version in the state table (every instance checks it), load it here."""
        source = self.source
        if not isinstance(source, SSMSource) or source.name.lstrip("/") != name.lstrip("/"):
            return {"handled": False, "error": f"{name} is not this router's config parameter"}
        from .aws.config_version import bump_config_version  # here: a proxied cold start never needs it

        try:
            text, version, _ = await asyncio.to_thread(ssm_parameter, source.name)
        except ConfigSourceError as exc:
            app_logger().warning("config: the change event's read of %s failed: %s", name, exc)
            return {"handled": True, "error": "the parameter could not be read"}
        signalled = None
        if self.settings.state_table:
            try:
                signalled = await asyncio.to_thread(
                    bump_config_version, self.settings.state_table, version, source.describe()
                )
            except StateStoreError as exc:
                app_logger().warning("config: cannot signal version %d to the fleet: %s", version, exc)
                signalled = False
        document = parse_json_text(text, source.describe())
        await self.config.adopt(lambda: load_config(document, os.environ, self.services), version)
        app_logger().info("config: %s changed to version %d (fleet signalled: %s)", name, version, signalled)
        return {"handled": True, "version": version, "signalled": signalled}

    def _config_loaded(self, config: RouterConfig) -> None:
        """Everything a newly loaded config changes outside itself, in one place."""
        self.tracker.configure(config)
        self.response_cache.store.resize(config.cache_max_bytes)

    async def backends(self) -> list[KnownBackend]:
        """Every backend the router can reach (CONTRACT section 7), once each."""
        config = await self.config.get()
        if config is None:
            return []
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
        from .http.asgi import AsgiAnswer, AsgiBody  # here: the server and Lambda hosts skip ASGI

        kind = scope["type"]
        if kind == "http":
            await self.handle(RequestContext.from_scope(scope), AsgiBody(receive), AsgiAnswer(send))
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websocket: an ASGI host hands over messages, not bytes to splice; refuse cleanly
            await send({"type": "websocket.close", "code": 1003})

    async def handle(self, ctx: RequestContext, reader: BodyReader, answer: AnswerWriter) -> None:
        """One request, whichever host brought it: the stage before routing, then the control
        plane or the data plane. A request's own trouble is answered here (a JSON error)."""
        config = self.config.fresh() or await self.config.get(ctx.deadline)
        refusal = await run_guards(config.request_guards if config else self._without_config, ctx)
        if refusal is not None:
            await self._refuse(ctx, answer, refusal, config)
        elif is_control_path(ctx.path):
            await self._to_control_plane(ctx, reader, answer, config)
        else:
            await self.proxy.handle(ctx, reader, answer, config)

    async def _to_control_plane(
        self, ctx: RequestContext, reader: BodyReader, answer: AnswerWriter, config: RouterConfig | None
    ) -> None:
        """A control path: the control plane (FastAPI) is ASGI, so the request becomes a scope."""
        from .http.asgi import receive_from, scope_for, send_to

        scope = ctx.scope or scope_for(ctx)
        scope["edge_router.request_id"] = ctx.request_id
        scope["path"] = paths.unquote_path(ctx.path)
        cors = (config.cors if config else DEFAULT_POLICY).answer_headers(ctx.header("origin"))
        send = _with_headers(send_to(answer), cors, ctx.request_id)
        await self.control_app()(scope, receive_from(reader), send)

    async def _refuse(
        self, ctx: RequestContext, answer: AnswerWriter, refusal: Refusal, config: RouterConfig | None
    ) -> None:
        """Answer a request refused before routing; an error (not a preflight) is logged like others."""
        cors = (config.cors if config else DEFAULT_POLICY).answer_headers(ctx.header("origin"))
        await send_refusal(answer, refusal, request_id=ctx.request_id, cors=cors)
        if refusal.log_error is not None:
            outcome = RequestOutcome(
                method=ctx.method,
                path=ctx.path,
                request_id=ctx.request_id,
                status=refusal.status,
                error=refusal.log_error,
            )
            # the metrics windows count requests for the data plane only (CONTRACT section 10)
            self.recorder.record(outcome, proxied=not is_control_path(ctx.path))

    def refusal_response(self, status: int, message: str) -> bytes:
        """A whole HTTP answer for a request the server refuses before it reaches the app."""
        config = self.config.current
        cors = (config.cors if config else DEFAULT_POLICY).answer_headers(None)
        return raw_error_response(status, message, request_id=new_request_id(), headers=cors)

    async def startup(self) -> None:
        """A long-running host's start: the first config read, waited for a moment at most (a
        source that hangs must not keep the server from starting and answering 503; `/health`
        says why), then the log flusher and the health checks beside the requests."""
        await self.config.get(time.monotonic() + FIRST_CONFIG_WAIT_S)
        self._background = [
            asyncio.ensure_future(self._flush_access_log()),
            asyncio.ensure_future(self.health.run(self.probe_targets)),
        ]

    async def shutdown(self) -> None:
        """A long-running host's stop: background work ended, logs flushed, clients closed."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self.recorder.flush()
        await self.aclose_state()
        await self.upstream.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # An ASGI host's start and stop (Mangum runs with lifespan="off": it would run them on
        # every invocation; the Lambda adapter starts nothing in the background).
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose_state(self) -> None:
        """End what runs beside the requests on the state table (background reads, trials)."""
        await self.services.aclose()
        await self.tracker.aclose()
        await self.response_cache.aclose()  # background revalidations

    async def _flush_access_log(self) -> None:
        # Server mode writes request lines in batches; this bounds how long one can wait.
        while True:
            await asyncio.sleep(0.5)
            self.recorder.flush()


def _services(settings: Settings, admin_gate: Guard, shield: StoreShield | None) -> GuardServices:
    """The guards' stores: per process, or (STATE_TABLE) the state table's for API keys and for
    rate limits that say `"shared": true`."""
    from .guards.buckets import LocalBuckets

    if not settings.state_table:
        from .guards.key_store import LocalKeyStore

        return GuardServices(keys=LocalKeyStore(), buckets=LocalBuckets(), admin_gate=admin_gate)
    from .guards.key_store import DynamoDBKeyStore
    from .guards.shared_buckets import DynamoDBBuckets

    return GuardServices(
        keys=DynamoDBKeyStore(settings.state_table, shield=shield),
        buckets=LocalBuckets(),
        shared_buckets=DynamoDBBuckets(settings.state_table, shield=shield),
        admin_gate=admin_gate,
    )


def _state_store(settings: Settings) -> StateStore | None:
    if not settings.state_table:
        return None
    from .resilience.dynamodb_store import DynamoDBStateStore

    return DynamoDBStateStore(settings.state_table)


def _with_headers(send: Send, extra: tuple[Header, ...], request_id: str) -> Send:
    """Give control-plane answers the router's CORS headers and the request id."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [h for h in message.get("headers", []) if h[0].lower() not in ALL_CORS_NAMES]
            message["headers"] = [*kept, *extra, (b"x-request-id", request_id.encode())]
        await send(message)

    return wrapped
