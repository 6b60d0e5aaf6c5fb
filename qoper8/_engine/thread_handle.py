"""``ThreadHandle``: the future of a job submitted from another thread (``qoper8.sync.Pool``,
the executor), settled by the master directly.

A job normally resolves an asyncio future, and a done callback copies the outcome to the
caller's ``concurrent.futures.Future``: one more scheduled callback per job on the loop. A job
made with a handle resolves the handle itself (``HandleSlot`` stands where the asyncio future
would), and the waiting thread wakes from ``set_result`` at once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from .job import Job

__all__ = ["HandleSlot", "ThreadHandle"]


class ThreadHandle(concurrent.futures.Future[Any]):
    """A ``concurrent.futures.Future`` that knows its job once the loop has made it (to
    cancel it from the caller's thread)."""

    job: Job | None = None

    def settle_error(self, error: BaseException) -> None:
        """Set ``error``; the executor's handles give the function's own exception."""
        self.set_exception(error)


class HandleSlot:
    """What a job made with a ``ThreadHandle`` has in place of its asyncio future: the part
    of ``asyncio.Future`` the master's settling code uses."""

    __slots__ = ("_handle",)

    def __init__(self, handle: ThreadHandle) -> None:
        self._handle = handle

    def done(self) -> bool:
        return self._handle.done()

    def cancelled(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
            self._handle.set_result(value)

    def set_exception(self, error: BaseException) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self._handle.settle_error(error)

    def add_done_callback(self, callback: Callable[[Any], object]) -> None:
        raise TypeError("a job submitted from a thread has no asyncio future: use its handle")
