"""The blocking face: the same names as the async API, for programs without an event loop.

``qoper8.sync.Pool`` runs an ordinary ``qoper8.Pool`` on a private event loop in a background
thread (like anyio's blocking portal) and waits on it. It adds no logic of its own, so any
difference in behaviour from the async pool is a bug here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._engine.encoding import encode_action
from ._engine.pool import _UNSET
from ._engine.pool import Pool as AsyncPool
from ._engine.results import validate_result
from ._engine.role import unknown_role
from ._engine.thread_handle import ThreadHandle

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
    from types import TracebackType

    from pydantic import BaseModel

    from ._engine.delivery import BroadcastResult, Notice
    from ._engine.stats import ChildStatistics, PoolStatistics
    from ._engine.stream import Stream
    from ._engine.worker import HandlerInfo
    from ._types import JSONValue

__all__ = ["Pool", "SyncStream"]

T = TypeVar("T")


class Pool:
    """A blocking ``qoper8.Pool``. Same arguments, same errors.

    Example:
        ```python
        with qoper8.sync.Pool("workers.users:worker", children=4) as pool:
            user = pool.submit({"type": "user.get", "id": 1}, timeout=5.0)
        ```
    """

    def __init__(self, worker: str | None = None, **settings: Any) -> None:
        self._pool = AsyncPool(worker, **settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Pool:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the loop thread and every child; returns when all are ready.

        Raises:
            StartFailed: as ``qoper8.Pool.start``.
        """
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="qoper8-sync-loop", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self._call(self._pool.start())
        except BaseException:
            self._stop_loop()
            raise

    def close(self, *, grace: float | None = None) -> None:
        """As ``qoper8.Pool.aclose``; also stops the loop thread."""
        if self._loop is None:
            return
        try:
            self._call(self._pool.aclose(grace=grace))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            from .errors import PoolClosed

            raise PoolClosed("the pool is not started")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C while waiting: cancel the job like a cancelled task would.
            future.cancel()
            raise

    @overload
    def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = ...,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: None = None,
        on_progress: Callable[[Any], object] | None = ...,
    ) -> JSONValue: ...
    @overload
    def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = ...,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: type[T],
        on_progress: Callable[[Any], object] | None = ...,
    ) -> T: ...

    def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = None,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        wait_for_room: bool = True,
        result_type: type[T] | None = None,
        on_progress: Callable[[Any], object] | None = None,
    ) -> T | JSONValue:
        """As ``qoper8.Pool.submit``, blocking until the result (``on_progress`` is called
        on the pool's own thread: keep it quick)."""
        pool, loop = self._pool, self._loop
        if on_progress is None and loop is not None and type(pool) is AsyncPool:
            # The direct path: encoded here, queued by one hop onto the loop, settled by the
            # master straight into the handle this thread waits on (no task, no coroutine).
            if role is not None and role != pool.roles[0]:
                raise unknown_role(role, pool.roles)
            dispatcher = pool._dispatcher
            action_type, payload = encode_action(action, dispatcher.handlers, dispatcher.max_bytes)
            handle = ThreadHandle()
            loop.call_soon_threadsafe(
                pool._enqueue_handle, payload, action_type, timeout, wait_for_room, handle
            )
            try:
                result: JSONValue = handle.result()
            except (KeyboardInterrupt, SystemExit):
                # Ctrl-C while waiting: a queued job is dropped, a running one runs on (or
                # its child is killed with kill_on_cancel), as a cancelled task's would.
                if not handle.cancel() and handle.job is not None:
                    loop.call_soon_threadsafe(dispatcher.cancel, handle.job, kill_on_cancel)
                raise
            if result_type is None:
                return result
            job_id = handle.job.id if handle.job is not None else None
            return validate_result(result_type, result, job_id=job_id)
        return self._call(
            self._pool.submit(
                action,
                role=role,
                timeout=timeout,
                kill_on_cancel=kill_on_cancel,
                wait_for_room=wait_for_room,
                result_type=result_type,
                on_progress=on_progress,
            )
        )

    def map(
        self,
        actions: Iterable[Mapping[str, Any] | BaseModel],
        *,
        role: str | None = None,
        timeout: float | None = _UNSET,
        return_exceptions: bool = False,
        result_type: type[T] | None = None,
    ) -> list[Any]:
        """As ``qoper8.Pool.map``: every action in one hop onto the pool's thread, the
        results in order."""
        return self._call(
            self._pool.map(
                list(actions),
                role=role,
                timeout=timeout,
                return_exceptions=return_exceptions,
                result_type=result_type,
            )
        )

    @contextlib.contextmanager
    def stream(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = None,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        on_progress: Callable[[Any], object] | None = None,
    ) -> Iterator[SyncStream]:
        """As ``qoper8.Pool.stream``: a plain iterator of the messages, then ``.result``."""
        opener = self._pool.stream(
            action,
            role=role,
            timeout=timeout,
            kill_on_cancel=kill_on_cancel,
            on_progress=on_progress,
        )
        stream = self._call(opener.__aenter__())
        try:
            yield SyncStream(stream, self._call)
        finally:
            self._call(opener.__aexit__(None, None, None))

    def broadcast(
        self,
        topic: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
        sticky: bool = False,
    ) -> BroadcastResult:
        """As ``qoper8.Pool.broadcast``."""
        return self._call(self._pool.broadcast(topic, payload, timeout=timeout, sticky=sticky))

    def ask(
        self,
        child: int | ChildStatistics,
        topic: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
        pid: bool = False,
    ) -> JSONValue:
        """As ``qoper8.Pool.ask``."""
        return self._call(self._pool.ask(child, topic, payload, timeout=timeout, pid=pid))

    def on_message(self, topic: str, callback: Callable[[Notice], object]) -> Callable[[], None]:
        """As ``qoper8.Pool.on_message`` (a plain callback runs on a thread of its own)."""
        return self._pool.on_message(topic, callback)

    def run(
        self,
        func: Callable[..., T],
        /,
        *args: Any,
        timeout: float | None = _UNSET,
        **kwargs: Any,
    ) -> T:
        """As ``qoper8.Pool.run`` (``timeout`` is the job's deadline), blocking until the
        result."""
        return self._call(self._pool.run(func, *args, timeout=timeout, **kwargs))

    def executor(self) -> concurrent.futures.Executor:
        """As ``qoper8.Pool.executor``: a thread-safe ``Executor`` on this pool."""
        return self._pool.executor()

    def resize(self, children: int | tuple[int, int], *, role: str | None = None) -> None:
        """As ``qoper8.Pool.resize``."""
        self._call(self._pool.resize(children, role=role))

    def reload(self, *, role: str | None = None) -> None:
        """As ``qoper8.Pool.reload``."""
        self._call(self._pool.reload(role=role))

    def wait_idle(self) -> None:
        """As ``qoper8.Pool.wait_idle``."""
        self._call(self._pool.wait_idle())

    def statistics(self, *, role: str | None = None) -> PoolStatistics:
        """As ``qoper8.Pool.statistics``."""
        return self._call(_snapshot(self._pool, role))

    @property
    def roles(self) -> tuple[str, ...]:
        """As ``qoper8.Pool.roles``."""
        return self._pool.roles

    @property
    def handlers(self) -> dict[str, HandlerInfo]:
        """As ``qoper8.Pool.handlers``."""
        return self._pool.handlers


async def _snapshot(pool: AsyncPool, role: str | None) -> PoolStatistics:
    return pool.statistics(role=role)  # taken on the loop thread, where the counters live


class SyncStream:
    """A ``qoper8.Stream`` read from a plain thread: iterate it, then read ``.result``."""

    def __init__(self, stream: Stream, call: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self._stream = stream
        self._call = call

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> JSONValue:
        try:
            value: JSONValue = self._call(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        return value

    @property
    def progress(self) -> JSONValue:
        """The newest progress value the handler reported."""
        return self._stream.progress

    @property
    def result(self) -> JSONValue:
        """As ``qoper8.Stream.result``."""
        return self._stream.result
