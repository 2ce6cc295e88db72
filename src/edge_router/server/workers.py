"""`edge-router serve --workers N`: N worker processes on one port, for containers with more than one
core (an asyncio loop uses one).

* The parent binds the port first (SO_REUSEPORT, not listening: it resolves port 0 and holds the
  port), then forks the workers; each binds its own listening SO_REUSEPORT socket on that port
  (the kernel spreads new connections across them) and runs its own loop, router and `Server`.
  Forking after the imports shares them; nothing else is made before the fork (no loop, no
  router, no thread).
* The parent supervises: a worker that exits on its own is started again, unless workers keep
  failing within seconds of their start (3 in a row: everything stops, exit status 1).
* SIGTERM or SIGINT to the parent: every worker gets SIGTERM (a graceful stop, `Server.stop`),
  and is killed if it has not exited `GRACE_S` + 5 s later. A worker whose parent is gone (killed
  with SIGKILL) stops by itself within a second.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ..http.context import renew_request_id_prefix
from . import GRACE_S, bind

logger = logging.getLogger("edge_router.server")

Serve = Callable[[socket.socket], Coroutine[Any, Any, None]]
# A worker exiting this soon after its start counts as failing to start.
_FAST_EXIT_S = 5.0
_FAST_EXITS_ALLOWED = 3


def run_workers(
    count: int,
    host: str,
    port: int,
    serve: Serve,
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    *,
    announce: Callable[[int], None] = lambda port: None,
) -> int:
    """Run `count` workers, each running `serve(sock)` on its own loop, until SIGTERM/SIGINT;
    returns the exit status (0, or 1 when workers kept failing)."""
    reserved = bind(host, port, reuse_port=True, listen=False)
    try:
        port = reserved.getsockname()[1]
        announce(port)
        parent = os.getpid()
        supervisor = _Supervisor(count, lambda: _worker(host, port, serve, new_loop, parent))
        return supervisor.run()
    finally:
        reserved.close()


def _worker(
    host: str, port: int, serve: Serve, new_loop: Callable[[], asyncio.AbstractEventLoop], parent: int
) -> None:
    """A worker process's life: its own socket and loop, `serve` until SIGTERM (the loop's
    handler, installed by `serve`), or until the parent is gone."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)  # the parent's flag-setting handlers were inherited
    renew_request_id_prefix()  # the parent's, inherited: workers would hand out the same ids
    sock = bind(host, port, reuse_port=True)
    loop = new_loop()
    asyncio.set_event_loop(loop)

    def orphaned() -> None:
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            loop.call_later(1.0, orphaned)

    loop.call_later(1.0, orphaned)
    try:
        loop.run_until_complete(serve(sock))
    finally:
        sock.close()
        loop.close()


class _Supervisor:
    def __init__(self, count: int, target: Callable[[], None]) -> None:
        self._count = count
        self._target = target
        self._context = multiprocessing.get_context("fork")
        self._workers: list[Any] = []
        self._started: list[float] = []
        self._stop = False

    def _start(self, index: int) -> None:
        process = self._context.Process(target=self._target, name=f"edge-router-worker-{index}", daemon=False)
        process.start()
        self._workers[index], self._started[index] = process, time.monotonic()

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop = True

    def run(self) -> int:
        previous = {
            signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        self._workers, self._started = [None] * self._count, [0.0] * self._count
        try:
            for index in range(self._count):
                self._start(index)
            failed = self._supervise()
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 1 if failed else 0

    def _supervise(self) -> bool:
        """Restart workers that exit, until asked to stop; True when they keep failing."""
        fast_exits = 0
        while not self._stop:
            multiprocessing.connection.wait([worker.sentinel for worker in self._workers], timeout=0.5)
            for index, worker in enumerate(self._workers):
                if self._stop or worker.exitcode is None:
                    continue
                lived = time.monotonic() - self._started[index]
                fast_exits = fast_exits + 1 if lived < _FAST_EXIT_S else 0
                if fast_exits >= _FAST_EXITS_ALLOWED:
                    logger.error(
                        "server: workers keep exiting at start (last status %s); stopping", worker.exitcode
                    )
                    return True
                logger.warning(
                    "server: worker %d exited with status %s; starting it again", index, worker.exitcode
                )
                self._start(index)
        return False

    def _stop_all(self) -> None:
        """SIGTERM to every worker, SIGKILL to any still running GRACE_S + 5 s later."""
        alive = [worker for worker in self._workers if worker is not None and worker.exitcode is None]
        for worker in alive:
            if worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S + 5.0
        for worker in alive:
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in alive:
            if worker.exitcode is None:
                logger.warning("server: worker %s did not stop in time; killed", worker.name)
                worker.kill()
                worker.join(5.0)
