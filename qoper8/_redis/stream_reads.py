"""``StreamReads``: the one connection that reads every open ``RedisStream`` of a
``RedisPool``.

Why a connection of its own, shared: XREAD BLOCK holds its connection until something
arrives, so on the client's pipelined ``Wire`` it would stall every enqueue queued behind it
for up to the block time. One blocking XREAD names every open stream at once, so a thousand
streams cost one connection, not a thousand; a stream that opens while it blocks is added by
ending the wait at once with CLIENT UNBLOCK (sent on a second, pipelined connection, which
also carries the readers' acknowledgements), not by waiting for the block to time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any, Final

from .connection import BLOCK_SECONDS, _Backoff, is_redis_failure
from .wire import Wire

if TYPE_CHECKING:
    from collections.abc import Callable

    from .stream_reader import RedisStream

__all__ = ["StreamReads"]

logger = logging.getLogger("qoper8.redis")

# Entries one XREAD takes per stream: more reads more per round trip, and holds more.
READ_COUNT: Final = 256
# CLIENT UNBLOCK answers 0 when the XREAD has not reached Redis yet: tried again this often,
# this many times (then the new stream waits for the block's end, BLOCK_SECONDS).
UNBLOCK_RETRY: Final = 0.002
UNBLOCK_ATTEMPTS: Final = 50


class StreamReads:
    """Reads every open ``RedisStream`` of one client with one blocking XREAD at a time, on a
    connection of its own (see the module)."""

    def __init__(self, url: str, settle: Callable[[bytes], None]) -> None:
        self.url = url
        self._wire = Wire(url)  # the blocking XREAD only
        self.control = Wire(url)  # pipelined: acks, drains, CLIENT UNBLOCK
        self.settle = settle
        self._streams: dict[bytes, RedisStream] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._reading: asyncio.Future[Any] | None = None
        self._reader_id: int | None = None
        self._closed = False

    def add(self, stream: RedisStream) -> None:
        self._streams[stream.key] = stream
        self.changed()

    def remove(self, stream: RedisStream) -> None:
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]

    def changed(self) -> None:
        """The set of streams to read changed: restart the read if one is blocked."""
        if self._closed:
            return
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        elif self._reading is not None and self._reader_id is not None:
            self._unblock(self._reading, 0)

    def _unblock(self, reading: asyncio.Future[Any], attempt: int) -> None:
        if reading is not self._reading or reading.done() or self._reader_id is None:
            return
        future = self.control.command("CLIENT", "UNBLOCK", self._reader_id)
        future.add_done_callback(functools.partial(self._unblocked, reading, attempt))

    def _unblocked(
        self, reading: asyncio.Future[Any], attempt: int, f: asyncio.Future[Any]
    ) -> None:
        if f.cancelled() or f.exception() is not None or f.result() != 0:
            return
        if attempt + 1 < UNBLOCK_ATTEMPTS:
            asyncio.get_running_loop().call_later(
                UNBLOCK_RETRY, self._unblock, reading, attempt + 1
            )

    async def _run(self) -> None:
        backoff = _Backoff("RedisPool streams", self.url)
        while self._streams and not self._closed:
            self._changed.clear()
            wanted = [s for s in list(self._streams.values()) if s.wants_more()]
            if not wanted:
                await self._changed.wait()
                continue
            self._reader_id = None
            ident = self._wire.command("CLIENT", "ID")
            reading = self._reading = self._wire.command(
                "XREAD",
                "COUNT",
                READ_COUNT,
                "BLOCK",
                BLOCK_SECONDS * 1000,
                "STREAMS",
                *(s.key for s in wanted),
                *(s.last_id for s in wanted),
                block=BLOCK_SECONDS,
            )
            try:
                self._reader_id = await ident
                if self._changed.is_set():
                    self._unblock(reading, 0)
                reply = await reading
            except Exception as exc:
                if self._closing():
                    return
                if not is_redis_failure(exc):
                    logger.exception("RedisPool stream reads failed; retrying")
                await backoff.failed(exc)
                continue
            finally:
                self._reading = None
            backoff.succeeded()
            for key, entries in reply or ():
                stream = self._streams.get(key)
                if stream is not None:
                    stream.feed(entries)

    def _closing(self) -> bool:
        # a method: type checkers keep a test of the attribute narrowed across an await
        return self._closed

    async def aclose(self) -> None:
        self._closed = True
        await self._wire.aclose()
        await self.control.aclose()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
