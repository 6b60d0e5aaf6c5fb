"""Serving the HTTP API's app: on which sockets, and how it stops.

A plain stop (TERM) stops listening and lets in-flight requests finish (bounded). A handover
to a new master (USR2) is gentler: this master stops accepting first (the new one accepts
on the same sockets), answers each request still arriving on an open connection with
``Connection: close``, and waits until its clients have left, so no request is refused or
cut. Which routes exist and what they answer is ``http_api``'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from .listeners import url_of

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

__all__ = ["HANDOVER_POLL", "HttpServer"]

logger = logging.getLogger("qoper8.http")

# How often a handover checks whether its clients have left (nothing notifies it).
HANDOVER_POLL: Final = 0.05


class HttpServer:
    """The aiohttp runner of one app on the daemon's listening sockets.

    Args:
        make_app: builds the app (once, at start).
        options: ``AppRunner``'s options.
    """

    def __init__(self, make_app: Callable[[], web.Application], options: dict[str, Any]) -> None:
        self._make_app = make_app
        self._options = options
        self._runner: web.AppRunner | None = None
        self.sockets: list[socket.socket] = []
        self._unix: str | None = None  # a socket file this master made, removed at stop
        self.urls: list[str] = []
        self.closing_connections = False  # answer with Connection: close (a handover)

    async def start(self, sockets: list[socket.socket], *, owned_unix: str | None = None) -> None:
        """Serve on ``sockets`` (bound or listening); ``owned_unix`` is a socket file to
        remove at stop (one this master created)."""
        runner = web.AppRunner(self._make_app(), **self._options)
        await runner.setup()
        self._runner = runner
        self.sockets = list(sockets)
        self._unix = owned_unix
        try:
            for sock in sockets:
                await web.SockSite(runner, sock).start()
        except BaseException:
            await self.stop()
            raise
        self.urls = [url_of(sock) for sock in sockets]

    @property
    def connections(self) -> int:
        """Open client connections."""
        runner = self._runner
        server = runner.server if runner is not None else None
        return len(server.connections) if server is not None else 0

    async def hand_over(self, timeout: float) -> None:
        """Stop accepting (a new master accepts on the same sockets from now on), close
        each open connection after its next answer, and wait up to ``timeout`` seconds
        for the clients to go. The socket files are the new master's now."""
        self._unix = None
        runner = self._runner
        if runner is None:
            return
        self.closing_connections = True
        for site in list(runner.sites):
            await site.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                # aiohttp notifies nothing when a connection closes: poll.
                while self.connections:  # noqa: ASYNC110
                    await asyncio.sleep(HANDOVER_POLL)
        if self.connections:
            logger.info(
                "%d idle connections still open after %gs; closing them",
                self.connections,
                timeout,
            )

    async def stop(self) -> None:
        """Stop listening and let in-flight requests finish writing (bounded)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        for sock in self.sockets:
            sock.close()
        unix, self._unix = self._unix, None
        if unix is not None:  # asyncio leaves the socket file behind (before Python 3.13)
            with contextlib.suppress(OSError):
                os.unlink(unix)
