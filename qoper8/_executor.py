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
        return asyncio.run_coroutine_threadsafe(self._pool.run(fn, *args, **kwargs), self._loop)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls. The pool itself stays open: it belongs to its ``async with``."""
        self._shutdown = True
