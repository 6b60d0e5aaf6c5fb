"""``ForkServers``: the fork servers of one supervisor, one per generation. A generation's
server starts with its first child (so a reload's new code gets a server of its own), is
replaced if it dies, and is closed once the generation is old and its last child exited.

When a generation cannot have one (``start_method="spawn"``, a platform without pidfds, a
worker module that is not fork-safe at import, a server that failed to start), its children
start by spawn, and a WARNING says why once for that generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from .fork_server import ForkServer, ForkServerError, fork_server_supported

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor

    from ..config import PoolConfig

__all__ = ["ForkServers"]

logger = logging.getLogger("qoper8")


class ForkServers:
    """A supervisor's fork servers (see the module docstring).

    Args:
        on_output: the pool's ``on_output``; it receives what a server prints (the worker
            module's own output at import, which each spawned child would print) as child 0.
    """

    def __init__(self, on_output: Callable[[int, int, str], None]) -> None:
        self._pool_output = on_output
        self._servers: dict[int, asyncio.Task[ForkServer | None]] = {}
        self._closing: list[ForkServer] = []  # old generations', until their children exit

    async def get(
        self,
        generation: int,
        config: PoolConfig,
        hello: dict[str, Any],
        spawner: Executor,
    ) -> ForkServer | None:
        """The server that forks ``generation``'s children (started now if it has none, or
        its last one died), or None: start them by spawn."""
        if config.start_method != "forkserver" or not fork_server_supported():
            return None
        task = self._servers.get(generation)
        if task is not None and task.done() and not task.cancelled():
            server = task.result()
            if server is not None and not server.alive:
                task = None  # it died: a new one (its children died with it)
        if task is None:
            task = asyncio.create_task(self._start(config, hello, spawner))
            self._servers[generation] = task
        return await asyncio.shield(task)

    async def _start(
        self, config: PoolConfig, hello: dict[str, Any], spawner: Executor
    ) -> ForkServer | None:
        server = ForkServer(self._on_output, self._lost)
        message = {k: hello[k] for k in ("worker", "sys_path", "cwd")}
        try:
            await server.start(spawner, message, config.start_timeout)
        except ForkServerError as exc:
            logger.warning(
                "worker module %r: %s; its children start by spawn, as with "
                "start_method='spawn' (move that work into an on_start hook to have them "
                "forked)",
                config.worker,
                exc,
            )
            return None
        except (OSError, TimeoutError) as exc:
            logger.warning(
                "could not start a fork server for %r (%s); its children start by spawn",
                config.worker,
                exc or type(exc).__name__,
            )
            return None
        return server

    def _on_output(self, pid: int, line: str) -> None:
        try:
            self._pool_output(0, pid, line)
        except Exception:
            logger.exception("on_output callback failed")

    def _lost(self, server: ForkServer) -> None:
        logger.warning(
            "%s died (%s); its %d children die with it and are replaced",
            server.describe(),
            "exit status unknown" if server.status is None else f"wait status {server.status}",
            server.children,
        )

    def retire_others(self, generation: int) -> None:
        """Close the servers of every generation but ``generation`` (a reload is done, or
        failed) once their children have exited."""
        self._closing = [s for s in self._closing if not s.exited]
        for gen in [g for g in self._servers if g != generation]:
            task = self._servers.pop(gen)
            if task.done():
                self._close(task)
            else:
                task.add_done_callback(self._close)

    def _close(self, task: asyncio.Task[ForkServer | None]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        server = task.result()
        if server is not None:
            server.close_when_idle()
            self._closing.append(server)

    async def shutdown(self, timeout: float) -> None:
        """Every child has exited (the pool closes): close every server and reap it, killing
        one that does not exit within ``timeout``."""
        starting = [t for t in self._servers.values() if not t.done()]
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        self.retire_others(-1)
        servers, self._closing = [s for s in self._closing if not s.exited], []
        if not servers:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(s.wait_exited() for s in servers))
        for server in servers:
            server.kill()

    def kill_all(self) -> None:
        """Kill every server now (their children die with them)."""
        for task in self._servers.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                server = task.result()
                if server is not None:
                    server.kill()
            else:
                task.cancel()
        for server in self._closing:
            server.kill()
