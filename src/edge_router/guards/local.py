"""The guards' services when nothing shares them: every store in this process."""

from __future__ import annotations

from .buckets import LocalBuckets
from .key_store import LocalKeyStore
from .services import GuardServices


def local_services() -> GuardServices:
    """Per-process stores, no admin surface (`edge-router validate`, tests of compilation)."""
    return GuardServices(keys=LocalKeyStore(), buckets=LocalBuckets())
