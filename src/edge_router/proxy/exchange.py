"""One proxied exchange as the data plane's stages pass it along, and the record of each attempt.

`Exchange` bundles what every stage after routing needs (the request's context, the host's
channel: body reader and answer writer, the config and route, the CORS policy the answer follows,
the outcome being recorded), so a stage is a function of one value instead of eight. What the
guards learned of the request (principal, answer headers, body limit) lives on `ctx`, the one
carrier every stage already reads.

`Attempt` is one try at one target, as the 502 body's `attempts` list and the log show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..config.model import Route, RouterConfig
from ..http.channel import AnswerWriter, BodyReader
from ..http.context import RequestContext
from ..http.headers import downstream_response_headers
from ..observability.outcome import RequestOutcome
from ..types import Header

if TYPE_CHECKING:
    from ..guards.cors import CorsPolicy

AttemptError = Literal["connect", "timeout", "protocol", "circuit_open"]


class AnswerTap(Protocol):
    """A stage that keeps a copy of the answer as it is relayed (the response cache).

    `deliver` calls `head` with the relayed head (before the router's per-request headers are
    added; the list must be copied if kept), then `chunk` with every body byte, then `complete`
    once the body ended as the backend meant it to: never after a broken-off body. `head`
    returning False means the tap answers the client itself (a 304 to its own revalidation):
    nothing is relayed. `upstream_headers` are added to the upstream request (its validators).
    """

    upstream_headers: list[tuple[str, str]]

    def head(
        self, status: int, headers: list[Header], source: str, has_cors: bool, content_length: int | None
    ) -> bool: ...

    def chunk(self, data: bytes) -> None: ...

    def complete(self) -> None: ...


@dataclass(slots=True)
class Exchange:
    ctx: RequestContext
    reader: BodyReader
    answer: AnswerWriter
    config: RouterConfig | None
    outcome: RequestOutcome
    cors: CorsPolicy  # the config's, then the matched route's
    route: Route | None = None  # None until a route matched
    body_started: bool = False  # the attempts began to read the request body
    tap: AnswerTap | None = None  # the cache's copy of the answer, on a cached route
    upgrade: str | None = None  # the protocol the client asked to upgrade to (and the host can splice)
    idle_timeout: float = 60.0  # an upgraded connection's: the route's timeout (nginx's proxy_read_timeout)

    async def relay_interim(self, status: int, headers: list[Header]) -> None:
        """A backend's 1xx (103 Early Hints...) on to the client, hop-by-hop headers taken out."""
        await self.answer.interim(status, downstream_response_headers(headers))

    def answer_headers(self) -> tuple[Header, ...]:
        """The headers every answer of the router's own gets: CORS for this request's origin, and
        what the guards added (RateLimit-*)."""
        policy = self.cors
        cors = policy.answer_headers(self.ctx.header("origin") if policy.needs_origin else None)
        return (*cors, *self.ctx.answer_headers) if self.ctx.answer_headers else cors


@dataclass(slots=True)
class Attempt:
    """One try at one target: its failure (`error`), or the failure status it answered."""

    backend: str
    error: AttemptError | None = None
    status: int | None = None
    message: str | None = field(default=None, repr=False)  # the exception's text: DEBUG_ERRORS only

    @property
    def reached_backend(self) -> bool:
        """Whether the backend may have received (part of) the request."""
        return self.error not in ("connect", "circuit_open")

    def shown(self, debug: bool) -> dict[str, Any]:
        shown: dict[str, Any] = {"backend": self.backend}
        if self.error is not None:
            shown["error"] = self.error
        if self.status is not None:
            shown["status"] = self.status
        if debug and self.message is not None:
            shown["message"] = self.message
        return shown

    def summary(self) -> str:
        return f"{self.backend}: {self.error or self.status}"
