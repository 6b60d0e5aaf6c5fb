"""``PoolExecutor``: the ``concurrent.futures.Executor`` face of a pool, contract included.

Each call gets a ``concurrent.futures.Future`` (the *handle*) that the pool itself moves to
RUNNING when a child takes the job, so ``running()`` and ``cancel()`` tell the truth: a queued
call can be cancelled (the job is dropped, it never runs), a running one cannot. ``result()``
raises the function's own exception with the child's traceback as its ``__cause__``, as
``ProcessPoolExecutor`` does. ``shutdown(wait=True)`` waits for every call it handed out, and
``cancel_futures=True`` cancels the queued ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._types import DEFAULT
from ..errors import JobFailed, RemoteTraceback
from .job import JobKind
from .thread_handle import ThreadHandle

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Iterator
    from typing import TypeAlias

    MapCalls: TypeAlias = Callable[..., Coroutine[Any, Any, list[Any]]]

    from .dispatcher import Dispatcher
    from .job import Job

T = TypeVar("T")
Encoded = tuple[bytes, str]  # a pickled call and the function's name
_CALL: Final = JobKind.CALL
_UNSET: Final[Any] = DEFAULT  # the pool's default timeout
# Calls per batch of ``map`` from another thread: larger batches cost fewer thread hops;
# smaller ones give the first results sooner.
MAP_BATCH: Final = 1024


class PoolExecutor(concurrent.futures.Executor):
    """Runs ``fn(*args, **kwargs)`` in the pool's children; safe to call from any thread,
    including the loop's own (``loop.run_in_executor(pool.executor(), fn, arg)``). Shutting
    it down refuses new calls; the pool itself stays open (it belongs to its ``async with``)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        encode_call: Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Encoded],
        loop: asyncio.AbstractEventLoop,
        map_calls: MapCalls | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._encode_call = encode_call
        self._loop = loop
        self._map_calls = map_calls
        self._lock = threading.Lock()
        self._shutdown = False
        self._calls: set[concurrent.futures.Future[Any]] = set()

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        handle = _CallHandle()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._calls.add(handle)
        handle.add_done_callback(self._forget)
        if _running_loop() is self._loop:
            # On the loop's own thread (``loop.run_in_executor``): start the call now, with no
            # thread-safe hop to get onto the loop (a self-pipe write and an extra wake-up).
            self._start(handle, fn, args, kwargs)
        else:
            try:
                self._loop.call_soon_threadsafe(self._start, handle, fn, args, kwargs)
            except RuntimeError:  # the loop is closed: the pool is long gone
                self._fail(handle, _closed())
        return handle

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """As ``Executor.map``: every call is queued now, results come in order, the first
        error is raised where its result would be, ``timeout`` counts from this call. From
        another thread than the pool's loop, calls go in batches of ``MAP_BATCH`` (one hop
        onto the loop and one back per batch, not per call); ``chunksize`` is ignored (each
        call is its own job, as with ``ProcessPoolExecutor``'s default).
        """
        if self._map_calls is None or _running_loop() is self._loop:
            return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)
        calls = list(zip(*iterables, strict=False))
        end = None if timeout is None else time.monotonic() + timeout
        handles: deque[concurrent.futures.Future[list[Any]]] = deque()
        for start in range(0, len(calls), MAP_BATCH):
            chunk = calls[start : start + MAP_BATCH]
            columns = [list(column) for column in zip(*chunk, strict=True)] if chunk else []
            with self._lock:
                if self._shutdown:
                    for handle in handles:
                        handle.cancel()
                    raise RuntimeError("cannot schedule new futures after shutdown")
                coro = self._map_calls(fn, *columns, return_exceptions=True)
                handle = asyncio.run_coroutine_threadsafe(coro, self._loop)
                self._calls.add(handle)
            handle.add_done_callback(self._forget)
            handles.append(handle)
        return self._results(handles, end)

    @staticmethod
    def _results(
        handles: deque[concurrent.futures.Future[list[Any]]], end: float | None
    ) -> Iterator[Any]:
        try:
            while handles:
                left = None if end is None else end - time.monotonic()
                for value in handles[0].result(left):
                    if isinstance(value, BaseException):
                        raise _remote(value)
                    yield value
                handles.popleft()
        finally:
            for handle in handles:
                handle.cancel()  # the caller left early: its queued calls never run

    def _forget(self, handle: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._calls.discard(handle)

    def _start(
        self,
        handle: ThreadHandle,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """On the loop thread: queue the call (or drop it if it was cancelled on the way)."""
        if handle.cancelled():
            handle.set_running_or_notify_cancel()  # tells wait() and as_completed()
            return
        try:
            payload, name = self._encode_call(fn, args, kwargs)
            job = self._dispatcher.enqueue(_CALL, payload, name, _UNSET, True, handle)
        except BaseException as exc:
            self._fail(handle, exc)
            return
        if job is None:  # the queue is full: wait for room, as run() would
            task = self._loop.create_task(
                self._dispatcher.enqueue_when_room(_CALL, payload, name, _UNSET, handle)
            )
            task.add_done_callback(lambda t: self._when_room(t, handle))
            return
        self._follow(job, handle)

    def _when_room(self, task: asyncio.Task[Job], handle: ThreadHandle) -> None:
        if task.cancelled():
            self._fail(handle, _closed())
        elif (exc := task.exception()) is not None:
            self._fail(handle, exc)
        else:
            self._follow(task.result(), handle)

    def _follow(self, job: Job, handle: concurrent.futures.Future[Any]) -> None:
        # The job settles ``handle`` itself (``thread_handle.py``); a cancel drops it.
        handle.add_done_callback(lambda h: self._cancelled(h, job))

    def _cancelled(self, handle: concurrent.futures.Future[Any], job: Job) -> None:
        """The caller cancelled ``handle`` (from any thread): drop the queued job."""
        if not handle.cancelled():
            return
        if _running_loop() is self._loop:
            self._dispatcher.cancel_call(job, handle)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to drop
            self._loop.call_soon_threadsafe(self._dispatcher.cancel_call, job, handle)

    @staticmethod
    def _fail(handle: concurrent.futures.Future[Any], exc: BaseException) -> None:
        if handle.set_running_or_notify_cancel():
            handle.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; with ``cancel_futures`` cancel those still queued; with ``wait``
        return once every call this executor handed out has ended.

        Raises:
            RuntimeError: ``wait=True`` on the pool's own event loop thread while calls are
                pending: the loop would wait for itself. Await them (or shut down from
                another thread) instead.
        """
        with self._lock:
            self._shutdown = True
            calls = list(self._calls)
        if cancel_futures:
            for handle in calls:
                handle.cancel()  # only the queued ones: a running call cannot be
        if not wait:
            return
        pending = [h for h in calls if not h.done()]
        if pending and _running_loop() is self._loop:
            raise RuntimeError(
                f"shutdown(wait=True) on the pool's own event loop with {len(pending)} calls "
                "pending would wait forever: await them first, or shut down from another thread"
            )
        concurrent.futures.wait(pending)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _closed() -> BaseException:
    from ..errors import PoolClosed

    return PoolClosed("the pool closed before the call reached a child")


def _remote(exc: BaseException) -> BaseException:
    """Code written for executors catches the function's own exception: give it that, with
    the child's traceback as the cause (``ProcessPoolExecutor``'s ``_RemoteTraceback``).
    ``JobFailed`` stays where the exception could not be pickled back."""
    if isinstance(exc, JobFailed) and exc.remote_exception is not None:
        original = exc.remote_exception
        if exc.remote_traceback:
            original.__cause__ = RemoteTraceback(exc.remote_traceback)
        return original
    return exc


class _CallHandle(ThreadHandle):
    """An executor call's handle: its error is the function's own exception (``_remote``)."""

    def settle_error(self, error: BaseException) -> None:
        self.set_exception(_remote(error))
