"""The API-key guard: a request names its caller with a key, checked without revealing it by timing.

    guard = ApiKeyGuard(header="x-api-key", config_keys=[StoredKey(...)], store=services.keys)

* Keys are known only by their SHA-256 hash (`hash_key`: lower-case hex of the key's UTF-8
  bytes), from the config (`config_keys`) or the process's `KeyStore` (created through the admin
  API). A presented key is hashed once and looked up by its hash in a dict, then the hash found
  is compared with `hmac.compare_digest`: no scan over the keys that stops at the first differing
  byte (the seed's defect), and what a dict lookup's timing could reveal is a prefix of a SHA-256
  hash, which says nothing about any key. Keys the config names are looked up first; the store
  only for a key the config does not know.
* Missing (absent, or an empty value) and `required` → 401. Presented but unknown → 401 even when
  not `required`: a client that believes it is authenticated must learn that it is not, rather
  than be served as anonymous. A valid key sets `ctx.principal` (its id and
  `rate_limit_multiplier`, which the rate limit reads).
* The store cannot answer (`StateStoreError`: the state table is down or backed off): the key
  counts as not found there (fail closed; keys the config names still work), logged at most once
  a minute.
* Unless `forward_key`, the header is added to `ctx.hidden_headers`: the backend never sees it.

401 answers carry `WWW-Authenticate: ApiKey header="<name>"` (RFC 9110 section 11.6.1 wants a
challenge on every 401; no standard scheme exists for API keys, and no browser prompts for this one).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Callable, Sequence

from ..exceptions import Refusal, StateStoreError
from ..http.context import Principal, RequestContext
from ..observability.logs import Throttle
from .services import KeyStore, StoredKey

logger = logging.getLogger("edge_router.guards")

STORE_WARNING_INTERVAL_S = 60.0
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_HASH = re.compile(r"[0-9a-f]{64}")
# Headers that frame or route the request: hiding one from the backend would break the request.
_NOT_A_KEY_HEADER = frozenset({"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"})
_NO_MATCH = "0" * 64  # compared against when the dict has no entry, so both paths do one comparison


def hash_key(key: str) -> str:
    """The SHA-256 hash (lower-case hex) of a key's UTF-8 bytes, as keys are stored.

    A header value that was not UTF-8 (decoded with surrogateescape) hashes its bytes as received.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class ApiKeyGuard:
    """Refuses requests without a known API key (see the module docstring)."""

    def __init__(
        self,
        *,
        header: str = "x-api-key",
        required: bool = True,
        config_keys: Sequence[StoredKey] = (),
        store: KeyStore,
        forward_key: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        name = header.lower()
        if not _TOKEN.fullmatch(name) or name in _NOT_A_KEY_HEADER:
            raise ValueError(f"api_keys.header: {header!r} cannot carry an API key")
        self.header = name
        self.required = required
        self.forward_key = forward_key
        self._store = store
        self._warning = Throttle(STORE_WARNING_INTERVAL_S, clock)
        self._by_hash = _by_hash(config_keys)
        self._hidden = frozenset() if forward_key else frozenset({name})
        self._challenge = ((b"www-authenticate", f'ApiKey header="{name}"'.encode()),)

    async def on_request(self, ctx: RequestContext) -> Refusal | None:
        if self._hidden:
            ctx.hidden_headers = ctx.hidden_headers | self._hidden if ctx.hidden_headers else self._hidden
        presented = ctx.header(self.header)
        if not presented:
            if not self.required:
                return None
            return Refusal(
                401,
                f"Missing API key: send it in the {self.header} header",
                headers=self._challenge,
                log_error="missing API key",
            )
        found = await self._find(hash_key(presented))
        if found is None:
            return Refusal(401, "Invalid API key", headers=self._challenge, log_error="invalid API key")
        ctx.principal = Principal(found.id, found.rate_limit_multiplier)
        return None

    async def _find(self, digest: str) -> StoredKey | None:
        found = self._by_hash.get(digest)
        expected = _NO_MATCH if found is None else found.hash
        if hmac.compare_digest(expected, digest) and found is not None:
            return found
        try:
            stored = await self._store.find(digest)
        except StateStoreError as exc:
            self._warn(exc)
            return None
        if stored is not None and hmac.compare_digest(stored.hash, digest):
            return stored
        return None

    def _warn(self, exc: StateStoreError) -> None:
        if self._warning.ready():
            logger.warning("API keys: the key store cannot be read (%s): only config keys are accepted", exc)


def _by_hash(config_keys: Sequence[StoredKey]) -> dict[str, StoredKey]:
    """The config's keys by hash; ValueError for a malformed hash or a repeated id or hash."""
    by_hash: dict[str, StoredKey] = {}
    ids: set[str] = set()
    for stored in config_keys:
        if not _HASH.fullmatch(stored.hash):
            raise ValueError(f"api key {stored.id!r}: hash must be 64 lower-case hex digits (SHA-256)")
        if not (math.isfinite(stored.rate_limit_multiplier) and stored.rate_limit_multiplier > 0):
            raise ValueError(f"api key {stored.id!r}: rate_limit_multiplier must be a number > 0")
        if stored.hash in by_hash or stored.id in ids:
            raise ValueError(f"api key {stored.id!r}: its id or hash is listed twice")
        by_hash[stored.hash] = stored
        ids.add(stored.id)
    return by_hash
