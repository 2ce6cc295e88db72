"""The admin gate: every /admin path needs `X-Admin-Key` (CONTRACT section 5), before any handler.

With no key configured the admin surface is closed (403), never open. The comparison is
constant-time (`hmac.compare_digest`), so the key cannot be guessed byte by byte from timings.

The key is `ADMIN_KEY`, or, so that it is not a plain environment variable anyone with
`lambda:GetFunctionConfiguration` can read, `ADMIN_KEY_SOURCE`: `secretsmanager:<secret id>` or
`ssm:<SecureString parameter name>`, read at run time and kept for `ttl_s` (a rotated key is in use
within five minutes). A failed read keeps the last key read; with none read yet, admin is closed
and the source is tried again after `RETRY_UNREAD_KEY_S`.

A read is bounded (`aws.clients.CONFIG_READ_SETTINGS`: ~5 s at most against a source that accepts
and never answers) and there is one at a time: concurrent requests join it. A request with a
deadline (on Lambda, its invocation's) waits for it until then at most, and is answered with the
key known so far (none: admin closed, 403); the read goes on beside later requests.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections.abc import Callable

from ..exceptions import ConfigSourceError, Refusal
from ..http.context import RequestContext

logger = logging.getLogger("edge_router.admin")

RETRY_UNREAD_KEY_S = 10.0  # a source never read yet (admin closed) is tried again this soon


def admin_refusal(configured: str | None, presented: str | None) -> tuple[int, str] | None:
    """None when `presented` is the admin key; else (status, message)."""
    if not configured:
        return 403, "Admin endpoints are closed: no admin key is configured"
    if presented is None or not hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), configured.encode()
    ):
        return 401, "Missing or wrong X-Admin-Key"
    return None


def is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


class AdminKey:
    """The admin key: fixed, or read from its source through a cache (see the module docstring)."""

    def __init__(
        self,
        fixed: str | None,
        source: str | None = None,
        *,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if source is not None and not source.startswith(("secretsmanager:", "ssm:")):
            raise ValueError(
                f"ADMIN_KEY_SOURCE={source!r}: expected secretsmanager:<secret id> or ssm:<parameter>"
            )
        self._key = fixed
        self._source = source
        self._ttl_s = ttl_s
        self._clock = clock
        self._fresh_until = -math.inf if source else math.inf
        self._reading: asyncio.Future[None] | None = None

    async def get(self, deadline: float | None = None) -> str | None:
        """The key (None: admin is closed), read again first when it is stale; with `deadline` (a
        time.monotonic() value) the read is waited for until then at most."""
        if self._clock() >= self._fresh_until and self._source is not None:
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read(self._source))
            if deadline is None:
                await asyncio.shield(self._reading)
                return self._key
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await asyncio.shield(self._reading)
            except TimeoutError:
                logger.warning(
                    "admin key: %s not read before the request's deadline; %s",
                    self._source,
                    "using the last one" if self._key else "admin is closed for this request",
                )
        return self._key

    async def _read(self, source: str) -> None:
        try:
            ttl_s = self._ttl_s
            try:
                self._key = await asyncio.to_thread(_read_key, source)
            except ConfigSourceError as exc:
                logger.warning(
                    "admin key: %s; %s", exc, "keeping the last one" if self._key else "admin is closed"
                )
                if self._key is None:  # closed by a transient error: try again soon, not in 5 min
                    ttl_s = min(ttl_s, RETRY_UNREAD_KEY_S)
            self._fresh_until = self._clock() + ttl_s
        finally:
            self._reading = None


def _read_key(source: str) -> str | None:
    """The key a source holds (boto3, blocking). A secret may be the key itself or JSON holding
    `admin_key` (or `key`), as the Secrets Manager console writes key/value secrets."""
    from ..aws.clients import CONFIG_READ_SETTINGS, aws_errors, client

    kind, _, name = source.partition(":")
    with aws_errors(ConfigSourceError, f"cannot read the admin key from {source}"):
        if kind == "ssm":
            ssm = client("ssm", settings=CONFIG_READ_SETTINGS)
            value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        else:
            secrets = client("secretsmanager", settings=CONFIG_READ_SETTINGS)
            value = secrets.get_secret_value(SecretId=name)["SecretString"]
    text = str(value).strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            return text
        for field in ("admin_key", "key"):
            if isinstance(document, dict) and isinstance(document.get(field), str):
                return str(document[field])
    return text or None


class AdminGate:
    """Refuses /admin paths without the right `X-Admin-Key` (401), or all of them with no key set (403)."""

    def __init__(self, admin_key: AdminKey) -> None:
        self._admin_key = admin_key

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        if not is_admin_path(ctx.path):
            return None
        refusal = admin_refusal(await self._admin_key.get(ctx.deadline), ctx.header("x-admin-key"))
        return None if refusal is None else Refusal(*refusal)
