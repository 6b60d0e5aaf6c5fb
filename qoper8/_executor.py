"""``PoolExecutor``: the ``concurrent.futures.Executor`` face of a pool.

It only forwards to ``Pool.run`` on the pool's event loop, so it behaves exactly like
``await pool.run(...)``: cancelling the returned future cancels a queued job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._pool import Pool

T = TypeVar("T")


class PoolExecutor(concurrent.futures.Executor):
    """Runs ``fn(*args, **kwargs)`` in the pool's children; safe to call from any thread,
    including the loop's own (``loop.run_in_executor(pool.executor(), fn, arg)``)."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._shutdown = False

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _running_loop() is not self._loop:
            return asyncio.run_coroutine_threadsafe(self._pool.run(fn, *args, **kwargs), self._loop)
        # On the loop's own thread (``loop.run_in_executor``): start the call now, with no
        # thread-safe hop to get onto the loop (a self-pipe write and an extra wake-up).
        task = self._loop.create_task(self._pool.run(fn, *args, **kwargs))
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        task.add_done_callback(lambda done: _copy_outcome(done, future))
        future.add_done_callback(lambda done: self._cancel_if_cancelled(done, task))
        return future

    def _cancel_if_cancelled(
        self, future: concurrent.futures.Future[T], task: asyncio.Task[T]
    ) -> None:
        """The caller cancelled ``future`` (from any thread): cancel the call, which removes a
        queued job, as cancelling ``await pool.run(...)`` does."""
        if future.cancelled() and not task.done():
            self._loop.call_soon_threadsafe(task.cancel)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls. The pool itself stays open: it belongs to its ``async with``."""
        self._shutdown = True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _copy_outcome(task: asyncio.Task[T], future: concurrent.futures.Future[T]) -> None:
    if future.done():  # cancelled by the caller first
        return
    if task.cancelled():
        future.cancel()
        return
    exc = task.exception()
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(task.result())
