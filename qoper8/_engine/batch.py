"""``Batch``: many jobs submitted in one call (``Pool.map``, the executor's and the sync
face's ``map``), awaited as one.

A job submitted alone costs the master an asyncio future, the awaiting coroutine's wake-up
(a ``call_soon``) and, when the caller gathers tasks, a task and its done callback: more than
qoper8's own work per job. A batch gives its jobs a ``BatchSlot`` instead of a future: settling
one writes the result into the batch's list (no callback, no wake-up), and only the batch's
one future wakes the caller, when the last job is settled or, unless errors are returned in
place, at the first error. Jobs go into the queue with one ``extend`` and share one deadline
timer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from .job import Job

__all__ = ["Batch", "BatchSlot"]


class Batch:
    """The results of a batch's jobs, in the order they were given."""

    __slots__ = ("done", "jobs", "remaining", "results", "return_exceptions", "timer")

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop, return_exceptions: bool):
        self.results: list[Any] = [None] * size
        self.remaining = size
        self.done: asyncio.Future[list[Any]] = loop.create_future()
        if not size:
            self.done.set_result(self.results)
        self.return_exceptions = return_exceptions
        self.jobs: list[Job] = []
        self.timer: asyncio.TimerHandle | None = None

    def settled(self, index: int, value: Any) -> None:
        self.results[index] = value
        self.remaining -= 1
        if not self.remaining:
            self.finish()

    def failed(self, index: int, error: BaseException) -> None:
        if self.return_exceptions:
            self.settled(index, error)
            return
        self.remaining -= 1
        if not self.done.done():
            self.done.set_exception(error)
        if self.timer is not None:
            self.timer.cancel()

    def finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.done.done():
            self.done.set_result(self.results)

    def expire(self, on_deadline: Callable[[Job, float], None], timeout: float) -> None:
        """The batch's one deadline passed: every job not settled times out (a queued one
        leaves the queue, a running one's child is killed), as each would alone."""
        self.timer = None
        for job in self.jobs:
            if not job.ended:
                on_deadline(job, timeout)


class BatchSlot:
    """What a batch's job has in place of a future: the part of ``asyncio.Future`` the
    master's settling code uses (``done``, ``set_result``, ``set_exception``)."""

    __slots__ = ("_batch", "_done", "_index")

    def __init__(self, batch: Batch, index: int) -> None:
        self._batch = batch
        self._index = index
        self._done = False

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        if self._done:
            raise asyncio.InvalidStateError("the job is settled already")
        self._done = True
        self._batch.settled(self._index, value)

    def set_exception(self, error: BaseException) -> None:
        if self._done:
            raise asyncio.InvalidStateError("the job is settled already")
        self._done = True
        self._batch.failed(self._index, error)

    def add_done_callback(self, callback: Callable[[Any], object]) -> None:
        raise TypeError("a batch's job has no future of its own: await the batch")
