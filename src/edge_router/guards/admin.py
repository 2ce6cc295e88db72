"""The admin gate: every /admin path needs `X-Admin-Key` (CONTRACT section 5), before any handler.

With no key configured the admin surface is closed (403), never open. The comparison is
constant-time (`hmac.compare_digest`), so the key cannot be guessed byte by byte from timings.
"""

from __future__ import annotations

import hmac

from ..exceptions import Refusal
from ..http.context import RequestContext


def admin_refusal(configured: str | None, presented: str | None) -> tuple[int, str] | None:
    """None when `presented` is the admin key; else (status, message)."""
    if not configured:
        return 403, "Admin endpoints are closed: no ADMIN_KEY is configured"
    if presented is None or not hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), configured.encode()
    ):
        return 401, "Missing or wrong X-Admin-Key"
    return None


def is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


class AdminGate:
    """Refuses /admin paths without the right `X-Admin-Key` (401), or all of them with no key set (403)."""

    def __init__(self, admin_key: str | None) -> None:
        self._admin_key = admin_key

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        if not is_admin_path(ctx.path):
            return None
        refusal = admin_refusal(self._admin_key, ctx.header("x-admin-key"))
        return None if refusal is None else Refusal(*refusal)
