"""Every error edge-router raises, in one tree.

    EdgeRouterError
    ├── ConfigError                 a config could not be used
    │   ├── ConfigSourceError       the source could not be read (file missing, SSM/DynamoDB error)
    │   └── ConfigInvalidError      it was read but is not valid JSON/YAML or fails the schema
    └── UpstreamError               forwarding to a backend failed (mapped to 5xx answers)
        ├── UpstreamConnectError    nothing was delivered: refused, DNS, reset before sending  -> 503
        ├── UpstreamTimeout         the per-attempt timeout passed before response headers   -> 504
        └── UpstreamProtocolError   the backend broke the exchange after bytes were sent      -> 502

Third-party exceptions (aiohttp, botocore, pydantic) are mapped to these at one boundary each:
`_upstream.py` for HTTP, `_sources.py` for config reads, `_config.py` for validation.
"""

from __future__ import annotations


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


class UpstreamError(EdgeRouterError):
    """Forwarding a request to a backend failed."""


class UpstreamConnectError(UpstreamError):
    """The backend could not be reached; nothing of the request was delivered."""


class UpstreamTimeout(UpstreamError):
    """The backend did not answer within the per-attempt timeout."""


class UpstreamProtocolError(UpstreamError):
    """The backend broke the exchange after the request had (partly) been sent."""
