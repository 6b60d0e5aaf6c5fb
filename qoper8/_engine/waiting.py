"""``Waiters``: callers of the pool waiting for something the dispatcher makes happen: for a
condition on the pool (idle, capacity for one more job, broken), or for room in a bounded
queue. The dispatcher wakes them as jobs and children move; nothing here polls.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

__all__ = ["Waiters"]


class Waiters:
    """Futures waiting on conditions (``wait_for``) and on room in the queue (``room``)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        # Kept as the same objects for the pool's life: the dispatcher's hot path reads them.
        self.conditions: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.room: deque[asyncio.Future[None]] = deque()
        self.closed = False

    def wake(self) -> None:
        """Resolve every waiter whose condition now holds."""
        if not self.conditions:
            return
        keep = []
        for predicate, fut in self.conditions:
            if fut.done():
                continue
            if predicate():
                fut.set_result(None)
            else:
                keep.append((predicate, fut))
        self.conditions[:] = keep

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds (checked whenever jobs or children move), or
        the pool closed."""
        if predicate() or self.closed:
            return
        assert self.loop is not None
        fut: asyncio.Future[None] = self.loop.create_future()
        self.conditions.append((predicate, fut))
        await fut

    async def wait_for_room(self, full: Callable[[], bool]) -> None:
        """Wait while ``full()`` (the caller bounds it with its deadline); each freed slot
        wakes one waiter, in order."""
        assert self.loop is not None
        while full():
            fut = self.loop.create_future()
            self.room.append(fut)
            try:
                await fut
            finally:
                if not fut.done():
                    fut.cancel()

    def notify_room(self) -> None:
        """One slot of the queue was freed: wake the first waiter still waiting."""
        room = self.room
        while room:
            fut = room.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def release_room(self) -> None:
        """Closing: every caller waiting for room stops waiting (and sees the pool closed)."""
        for fut in self.room:
            if not fut.done():
                fut.set_result(None)

    def close(self) -> None:
        """The pool closed: every waiter returns."""
        self.closed = True
        for _, fut in self.conditions:
            if not fut.done():
                fut.set_result(None)
        self.conditions.clear()
