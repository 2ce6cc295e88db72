"""An upgraded connection (WebSocket and any other `Upgrade`): bytes both ways, no framing, the
way nginx relays them (no frame is parsed).

After the backend answered 101 to a request that asked to upgrade, `Splice` joins the client's
transport and the backend's pipe (`http/channel.py`: `Upgraded.attach`):

* client bytes (first any that arrived after the request head) go to the backend's pipe;
  backend bytes go to the client's transport;
* flow control both ways: the client's transport full (`pause_writing`) pauses reading the
  backend; the backend's pipe full pauses reading the client, and each resumes once drained;
* either side closing closes the other (the client's transport after what it still has to
  send); nothing moving either way for `idle_timeout` closes both at once;
* `done` resolves once the client's transport is closed, the backend's having been closed
  before it, so the request's `handle()` returns only when both are.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..http.channel import Pipe, Upgraded


class Splice:
    """The client's side of a splice; it is the `Pipe` the backend writes to."""

    __slots__ = ("_backend", "_backend_closed", "_idle", "_last", "_loop", "_timer", "_transport", "done")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, idle_timeout: float
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._idle = idle_timeout
        self._last = loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._backend: Pipe | None = None
        self._backend_closed = False
        self.done: asyncio.Future[None] = loop.create_future()

    def begin(self, backend: Upgraded, early: bytes) -> None:
        """Attach to the backend and relay `early` (client bytes read past the request head)."""
        self._backend = backend.attach(self)
        if early and not self._backend_closed:
            self._backend.write(early)
        self._arm()

    # the backend's side, as a Pipe: its bytes go to the client ---------------------------------

    def write(self, data: bytes) -> None:
        self._last = self._loop.time()
        if not self._transport.is_closing():
            self._transport.write(data)

    def pause_reading(self) -> None:
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        """The backend closed: the client's connection ends after what it still has to send."""
        self._backend_closed = True
        self._transport.close()

    # the client's side, called by the connection ----------------------------------------------

    def from_client(self, data: bytes) -> None:
        self._last = self._loop.time()
        if self._backend is not None:
            self._backend.write(data)

    def client_paused(self) -> None:
        if self._backend is not None and not self._backend_closed:
            self._backend.pause_reading()

    def client_resumed(self) -> None:
        if self._backend is not None and not self._backend_closed:
            self._backend.resume_reading()

    def client_closed(self) -> None:
        """The client's transport is closed (either side's doing): the backend's is closed too."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close_backend()
        if not self.done.done():
            self.done.set_result(None)

    def stop(self) -> None:
        """Close both sides at once (idle, or the server is stopping)."""
        self._close_backend()
        self._transport.abort()

    def _close_backend(self) -> None:
        if not self._backend_closed:
            self._backend_closed = True
            if self._backend is not None:
                self._backend.close()

    # idle ---------------------------------------------------------------------------------------

    def _arm(self) -> None:
        self._timer = self._loop.call_at(self._last + self._idle, self._check_idle)

    def _check_idle(self) -> None:
        # Activity only moves `_last` (no timer work per write); the timer re-arms from it.
        self._timer = None
        if self.done.done():
            return
        if self._loop.time() >= self._last + self._idle:
            self.stop()
        else:
            self._arm()
