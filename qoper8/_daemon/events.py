"""``GET /v1/events``: the daemon's state as a Server-Sent Events stream, for the dashboard
(and anything else that wants to watch without polling).

Each stream sends one ``snapshot`` (the ``/v1/status`` body, the history's points and the
recent errors), then an ``update`` at most every ``UPDATE_INTERVAL`` seconds with the status
and only the points and errors that are new to it, and a ``bye`` when the daemon stops or
hands over to a new master. Streams are bounded (``MAX_STREAMS``, then 503): each holds a
connection and a little work per update. Event format::

    event: snapshot            event: update              event: bye
    data: {"status": {...},    data: {"status": {...},    data: {"reason": "draining"}
           "points": [...],           "points": [new],
           "errors": [...]}           "errors": [new]}
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable

    from .history import History

__all__ = ["EVENT_STREAM_TYPE", "MAX_STREAMS", "UPDATE_INTERVAL", "EventStreams", "TooManyStreams"]

EVENT_STREAM_TYPE: Final = "text/event-stream"
# Open streams at most; the next one gets 503 TooManyStreams. Each costs a connection and a
# status snapshot per update: 32 dashboards are plenty, and a runaway script cannot pile up.
MAX_STREAMS: Final = 32
# Seconds between updates of one stream ("a few a second" at most): a person reading a page
# sees no lag, and the master spends a snapshot per stream per interval, no more.
UPDATE_INTERVAL: Final = 0.5
# The browser reconnects after this many milliseconds if a stream breaks (SSE's ``retry``).
RETRY_MS: Final = 2000


class TooManyStreams(Exception):
    """``MAX_STREAMS`` streams are open already."""


def _event(name: str, data: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class EventStreams:
    """The open ``/v1/events`` streams of one HTTP API.

    Args:
        status: the ``/v1/status`` body, built fresh for each event.
        history: the points and errors to send.
        max_streams: streams open at once before 503.
    """

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        history: History,
        *,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self._status = status
        self._history = history
        self.max_streams = max_streams
        self.open = 0
        self._closing = asyncio.Event()
        self._reason = "draining"

    def close_all(self, reason: str = "draining") -> None:
        """End every stream now (with a ``bye``), and refuse new ones: the daemon is
        stopping, or handing its clients over to a new master."""
        self._reason = reason
        self._closing.set()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def check_room(self) -> None:
        """Raise ``TooManyStreams`` when no stream may open now."""
        if self.open >= self.max_streams:
            raise TooManyStreams(
                f"{self.open} event streams are open, the most this daemon serves at once; "
                "close a dashboard or try again later"
            )

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """Stream events to one client until it goes away or the daemon stops."""
        self.check_room()
        self.open += 1
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": EVENT_STREAM_TYPE,
                    "Cache-Control": "no-store",
                    "X-Accel-Buffering": "no",  # a proxy (nginx) must not hold events back
                }
            )
            await response.prepare(request)
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            await self._stream(response)
            return response
        finally:
            self.open -= 1

    async def _stream(self, response: web.StreamResponse) -> None:
        history = self._history
        points = list(history.points)
        errors = list(history.errors)
        await response.write(
            _event("snapshot", {"status": self._status(), "points": points, "errors": errors})
        )
        seen = max([p["seq"] for p in points] + [e["seq"] for e in errors], default=0)
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(UPDATE_INTERVAL):
                    await self._closing.wait()
            if self._closing.is_set():
                break
            new_points = [p for p in history.points if p["seq"] > seen]
            new_errors = [e for e in history.errors if e["seq"] > seen]
            seen = max([seen] + [p["seq"] for p in new_points] + [e["seq"] for e in new_errors])
            update = {"status": self._status(), "points": new_points, "errors": new_errors}
            await response.write(_event("update", update))
        await response.write(_event("bye", {"reason": self._reason}))
        await response.write_eof()
