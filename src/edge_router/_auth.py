"""The admin key check, shared by the router's gate and the control plane's dependency."""

from __future__ import annotations

import hmac


def admin_refusal(configured: str | None, presented: str | None) -> tuple[int, str] | None:
    """None when `presented` is the admin key; else (status, message).

    With no key configured the admin surface is closed (403), never open. The comparison is
    constant-time so the key cannot be guessed byte by byte from response timings.
    """
    if not configured:
        return 403, "Admin endpoints are closed: no ADMIN_KEY is configured"
    if presented is None or not hmac.compare_digest(presented.encode(), configured.encode()):
        return 401, "Missing or wrong X-Admin-Key"
    return None
