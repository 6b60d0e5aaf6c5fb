"""A running job's messages and progress, on the master's side: ``Stream`` (``pool.stream``),
the window that keeps a slow reader from costing memory, and the progress callback of
``submit(on_progress=...)``.

Backpressure: when ``STREAM_WINDOW`` messages wait unread, the master stops reading that
child's channel (``Child.pause_reading``); the child then blocks in ``send()`` once the
socket's buffer is full, and whatever it does, the master holds at most a window plus one
read. Reading resumes when the reader has caught up halfway.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from .._types import JSONValue
    from .child import Child
    from .dispatcher import Dispatcher
    from .job import Job

__all__ = ["STREAM_WINDOW", "ProgressListener", "Stream"]

logger = logging.getLogger("qoper8")

# Messages a stream holds unread before the master stops reading the child. Bigger smooths a
# bursty reader; smaller bounds memory tighter (a message is at most max_message_bytes).
STREAM_WINDOW: Final = 64


class ProgressListener:
    """``submit(on_progress=...)``: each progress value to a callback (an async one runs as
    a task); the job's messages are dropped."""

    __slots__ = ("_callback", "_tasks")

    def __init__(self, callback: Callable[[Any], object]) -> None:
        self._callback = callback
        self._tasks: set[asyncio.Task[Any]] = set()

    def message(self, child: Child, payload: bytes) -> None:
        del child, payload

    def progress_frame(self, payload: bytes) -> None:
        _call(self._callback, orjson.loads(payload), self._tasks)


class Stream:
    """The messages of one running job, in order, then its result (``pool.stream``).

    Example:
        ```python
        async with pool.stream({"type": "report.build", "month": "2026-11"}) as stream:
            async for message in stream:
                print(message)
            print(stream.progress, stream.result)
        ```

    Leaving the ``async with`` early (or cancelling the task) cancels the job: a queued one
    never runs; a running one runs on, or its child is killed with ``kill_on_cancel=True``.
    A failure raises its typed error from the iteration, after the messages sent before it.
    """

    def __init__(
        self,
        job: Job,
        dispatcher: Dispatcher,
        *,
        kill_on_cancel: bool,
        on_progress: Callable[[Any], object] | None = None,
    ) -> None:
        self._job = job
        self._dispatcher = dispatcher
        self._kill = kill_on_cancel
        self._on_progress = on_progress
        self._tasks: set[asyncio.Task[Any]] = set()
        self._messages: deque[bytes] = deque()
        self._paused: Child | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.progress: JSONValue = None
        """The newest progress value the handler reported (None before any)."""
        job.listener = self
        job.future.add_done_callback(lambda _: self._wake())

    # ------------------------------------------------------------ from the dispatcher

    def message(self, child: Child, payload: bytes) -> None:
        self._messages.append(payload)
        self._wake()
        if self._paused is None and len(self._messages) >= STREAM_WINDOW:
            self._paused = child
            child.pause_reading()

    def progress_frame(self, payload: bytes) -> None:
        self.progress = orjson.loads(payload)
        if self._on_progress is not None:
            _call(self._on_progress, self.progress, self._tasks)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ for the caller

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> JSONValue:
        messages = self._messages
        while not messages:
            future = self._job.future
            if future.done():
                future.result()  # the job's error, after every message sent before it
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        payload = messages.popleft()
        if self._paused is not None and len(messages) <= STREAM_WINDOW // 2:
            self._paused.resume_reading()
            self._paused = None
        value: JSONValue = orjson.loads(payload)
        return value

    @property
    def done(self) -> bool:
        """Whether the job has ended and every message was read."""
        return self._job.future.done() and not self._messages

    @property
    def result(self) -> JSONValue:
        """The handler's return value, once the stream is read to its end.

        Raises:
            RuntimeError: the stream is not read to its end yet.
            JobFailed, JobTimeout, ChildDied, ...: the job's error.
        """
        if not self.done:
            raise RuntimeError("read the stream to its end before its result")
        result: JSONValue = self._job.future.result()
        return result

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening; a job still queued or running is cancelled (see the class)."""
        job = self._job
        if not job.ended:
            self._dispatcher.cancel(job, self._kill)
        if self._paused is not None:  # the child must not stay unread: its reply is coming
            self._paused.resume_reading()
            self._paused = None
        self._messages.clear()
        job.future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """A stream left early may never look at its job's outcome: mark it seen."""
    if not future.cancelled():
        future.exception()


def _call(callback: Callable[[Any], object], value: Any, tasks: set[asyncio.Task[Any]]) -> None:
    """Call a progress callback; one that returns an awaitable runs as a task. Its errors are
    logged, never raised into the loop's reading of children."""
    try:
        out = callback(value)
    except Exception:
        logger.exception("a progress callback failed")
        return
    if inspect.isawaitable(out):
        task = asyncio.ensure_future(out)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
