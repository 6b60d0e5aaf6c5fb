"""``PoolCalls``: the function-call face of a pool, as ``ProcessPoolExecutor`` users know it:
``run(func, *args)`` and ``executor()``. Calls are pickled (master and child trust each other)
and go through the same queue, deadlines and children as actions.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._types import DEFAULT
from ..errors import PoolClosed
from .encoding import encode_call, refuse_ambiguous_timeout
from .job import JobKind
from .jobs import Phase

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from concurrent.futures import Executor

    from .dispatcher import Dispatcher
    from .supervisor import Supervisor
    from .thread_handle import ThreadHandle

__all__ = ["PoolCalls"]

T = TypeVar("T")
# "Not given" (the pool's own timeout applies); reads DEFAULT in help() and signatures.
_UNSET: Final[Any] = DEFAULT


class PoolCalls:
    """``run()`` and ``executor()`` (``qoper8.Pool`` inherits them)."""

    _dispatcher: Dispatcher
    _supervisor: Supervisor

    # PoolBatch's (the executor's map runs through it); declared, not defined, here: a
    # definition would shadow PoolBatch's in the Pool's bases.
    map_calls: Callable[..., Coroutine[Any, Any, list[Any]]]

    async def run(
        self,
        func: Callable[..., T],
        /,
        *args: Any,
        timeout: float | None = _UNSET,
        **kwargs: Any,
    ) -> T:
        """Run a picklable function in a child (the ``ProcessPoolExecutor`` face).

        Functions of the main script work as with multiprocessing's spawn: the child
        imports the script as ``__mp_main__`` the first time a call needs it, so the code
        that starts the pool must sit under ``if __name__ == "__main__":``.

        Args:
            func: a module-level function (or a ``functools.partial`` of one).
            timeout: seconds from now until ``JobTimeout`` (the child is killed); None for no
                deadline; the pool's ``timeout`` when omitted. It is the job's deadline, never
                passed to ``func``: bind a ``timeout`` argument of ``func``'s own with
                ``functools.partial``.
            *args, **kwargs: ``func``'s arguments.

        Raises:
            InvalidAction: ``func`` or its arguments cannot be pickled, ``func`` was
                defined where a child cannot import it (a REPL), or a bad ``timeout``.
            TypeError: ``timeout`` given for a function that has a ``timeout`` parameter of
                its own (ambiguous: use ``functools.partial`` for the function's).
            JobFailed: it raised (the original exception is ``remote_exception``).
            JobTimeout, ChildDied, QueueFull, PoolClosed, StartFailed: as ``submit``.
        """
        if timeout is not _UNSET:
            refuse_ambiguous_timeout(func)
        dispatcher = self._dispatcher
        payload, name = self._encode_call(func, args, kwargs)
        job = dispatcher.enqueue(JobKind.CALL, payload, name, timeout, True)
        if job is None:
            job = await dispatcher.enqueue_when_room(JobKind.CALL, payload, name, timeout)
        try:
            result: T = await job.future
        except asyncio.CancelledError:
            dispatcher.cancel(job, False)
            raise
        return result

    def _enqueue_handle(
        self,
        payload: bytes,
        action_type: str,
        timeout: float | None,
        wait_for_room: bool,
        handle: ThreadHandle,
    ) -> None:
        """On the loop thread, for ``qoper8.sync``: queue an action (encoded by the caller's
        thread) whose outcome settles ``handle`` directly (``thread_handle.py``)."""
        dispatcher = self._dispatcher
        try:
            job = dispatcher.enqueue(
                JobKind.ACTION, payload, action_type, timeout, wait_for_room, handle
            )
        except BaseException as exc:
            handle.set_exception(exc)
            return
        if job is None:  # the queue is full: wait for room, as submit would
            loop = dispatcher.loop
            assert loop is not None
            waiting = loop.create_task(
                dispatcher.enqueue_when_room(JobKind.ACTION, payload, action_type, timeout, handle)
            )
            waiting.add_done_callback(lambda task: _room_failed(task, handle))

    def _encode_call(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bytes, str]:
        return encode_call(
            func,
            args,
            kwargs,
            main_importable=self._supervisor.main_importable,
            max_bytes=self._dispatcher.max_bytes,
        )

    def executor(self) -> Executor:
        """A ``concurrent.futures.Executor`` running functions in this pool, for
        ``loop.run_in_executor`` and code written against executors. It keeps the
        executor contract: ``running()`` once a child runs the call (``cancel()`` is then
        False), ``shutdown(wait=True)`` waits for its calls (from another thread: on the
        pool's own loop that would deadlock, so it raises), ``cancel_futures=True`` cancels
        the queued ones, and ``result()`` raises the function's own exception with the
        child's traceback as its ``__cause__``.

        Raises:
            PoolClosed: the pool is not started or closed.
        """
        from .executor import PoolExecutor

        loop = self._dispatcher.loop
        if loop is None or self._dispatcher.phase is Phase.CLOSED:
            raise PoolClosed("start the pool first" if loop is None else "the pool is closed")
        return PoolExecutor(self._dispatcher, self._encode_call, loop, self.map_calls)


def _room_failed(task: asyncio.Task[Any], handle: ThreadHandle) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None and not handle.done():
        handle.set_exception(exc)
