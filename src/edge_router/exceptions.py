"""Every error edge-router raises, in one tree.

    EdgeRouterError
    ├── ConfigError                 a config could not be used
    │   ├── ConfigSourceError       the source could not be read (file missing, SSM/DynamoDB error)
    │   ├── ConfigInvalidError      it was read but is not valid JSON/YAML or fails the schema
    │   ├── WriteConflict           flip/push: the source kept changing while we tried to write
    │   └── WriteError              flip/push: the source refused the write (permissions, size)
    ├── RegistryError               a backend registry (DynamoDB) could not be read          -> 503
    ├── StateStoreError             the shared state table could not be read or written (routing
    │                               goes on with what this instance knows: fail open, logged)
    ├── KeyLimitReached             the API-key store is full (the admin API answers 409)
    ├── UpstreamError               forwarding to a backend failed (mapped to 5xx answers)
    │   ├── UpstreamConnectError    nothing was delivered: refused, DNS, reset before sending  -> 503
    │   ├── UpstreamTimeout         the per-attempt timeout passed before response headers   -> 504
    │   └── UpstreamProtocolError   the backend broke the exchange after bytes were sent, or
    │                               answered what cannot be relayed                            -> 502
    ├── ClientDisconnected          the client left before its request was complete  -> logged 499
    └── Refusal                     the router answers the request itself (an error in the
                                    contract's JSON shape, or a preflight's 204) and sends it nowhere

Third-party and OS errors are mapped to these at one boundary each: the HTTP client's (sockets,
TLS, httptools) in `upstream/http1.py`, botocore in `aws/clients.py` (and Lambda Invoke's transport
errors in `upstream/lambda_invoke.py`), pydantic in `config/compile.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class EdgeRouterError(Exception):
    """Base class of every error raised by edge-router."""


class ConfigError(EdgeRouterError):
    """A config could not be loaded; the last good config (if any) stays in service."""


class ConfigSourceError(ConfigError):
    """The config source could not be read."""


class ConfigInvalidError(ConfigError):
    """The config was read but is not valid; `problems` has one line per problem, naming its field path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class WriteConflict(ConfigError):
    """The source kept changing while we tried to write; the message says what, if anything, is live."""


class WriteError(ConfigError):
    """The source refused the write (permissions, size limit, unwritable file)."""


class RegistryError(EdgeRouterError):
    """A backend registry could not be read (a DynamoDB error); the message names the table."""


class StateStoreError(EdgeRouterError):
    """The shared state table (STATE_TABLE) could not be read or written; the message names it."""


class KeyLimitReached(EdgeRouterError):
    """The API-key store holds its maximum of keys already: delete one before creating another."""


class UpstreamError(EdgeRouterError):
    """Forwarding a request to a backend failed."""


class UpstreamConnectError(UpstreamError):
    """The backend could not be reached; nothing of the request was delivered."""


class UpstreamTimeout(UpstreamError):
    """The backend did not answer within the per-attempt timeout."""


class UpstreamProtocolError(UpstreamError):
    """The backend broke the exchange after the request had (partly) been sent, or its answer
    cannot be relayed (a status outside 200-599, a header with control characters)."""


class ClientDisconnected(EdgeRouterError):
    """The client went away (or its server refused the rest of it) before its request was complete.

    Nothing is answered and nothing is held against the backend: the request is logged as 499
    (or the status the server refused the body with).
    """


class Refusal(EdgeRouterError):
    """The router answers this request itself, sends it nowhere, and stops the pipeline.

    Raised (or returned by a guard) once, rendered by one error path (`http.responses.send_refusal`):
    the JSON body `{"error", "message", "request_id", **extra}` of CONTRACT section 6, with
    `headers` added to the answer. A 204 (a CORS preflight) has no body. `log_error` is what the
    request log's `error` field says (None: the refusal is an ordinary answer, such as a 404);
    `detail` goes into the body only when DEBUG_ERRORS is on (it may name tables or hosts).
    """

    def __init__(
        self,
        status: int,
        message: str = "",
        *,
        error: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
        log_error: str | None = None,
        detail: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error
        self.headers = tuple(headers)
        self.log_error = log_error
        self.detail = detail
        self.extra = extra
        # True/None: the request's body may still be coming (a 413 reads and drops it, bounded,
        # before answering); False: it was read to its end
        self.body_pending: bool | None = None
