"""A Redis job's messages on the caller's side: ``RedisStream``, what ``RedisPool.stream``
yields, with ``qoper8.Stream``'s interface (entries: ``stream_scripts``; reading them from
Redis: ``stream_reads``).

The outcome comes from the job's submit (the reply list, as for ``submit``): the stream's
``e`` entry settles it (``RedisClient.settle``) and, whatever ended it (a timeout, the reaper
failing an abandoned job), the entries already in Redis are read first, so that the messages
sent before a failure are delivered before its error.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..errors import JobError, TransportError
from .connection import is_redis_failure
from .jobs import _text
from .scripts import JOB_PREFIX
from .stream_scripts import ACK_LUA, MSGS_PREFIX, STREAM_MAXLEN, STREAM_WINDOW
from .wire import Script

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    from .._types import JSONValue
    from .client import RedisClient
    from .stream_reads import StreamReads

__all__ = ["RedisStream", "open_stream"]

logger = logging.getLogger("qoper8.redis")

ACK: Final = Script(ACK_LUA)
# Entries a stream holds unread before it is left out of the reads (they wait in Redis, and
# the host stops at its own window): smaller bounds the caller's memory tighter, bigger
# smooths a bursty reader.
READ_WINDOW: Final = 256
# The reader tells the host how far it has read every ACK_EVERY entries, and whenever it has
# read everything: the host stops at STREAM_WINDOW entries beyond it.
ACK_EVERY: Final = STREAM_WINDOW // 4


def open_stream(
    client: RedisClient,
    reads: StreamReads,
    action: dict[str, Any],
    timeout: float | None,
    kill_on_cancel: bool,
    on_progress: Callable[[Any], object] | None,
    mode: str,
) -> RedisStream:
    """Enqueue a job whose host writes its stream (``mode``: ``qoper8_stream``), and read it.
    Its outcome is the job's submit, run as a task: cancelling that task withdraws the job
    (or stops it, with ``kill_on_cancel``), as cancelling ``submit`` does."""
    job_id = secrets.token_hex(16)
    outcome = asyncio.ensure_future(
        client.submit(action, timeout, kill_on_cancel=kill_on_cancel, job_id=job_id, stream=mode)
    )
    return RedisStream(
        job_id,
        outcome,
        reads,
        messages=mode == "1",
        on_progress=on_progress,
        stop=functools.partial(client.withdraw, job_id, True),
    )


def _entry_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


class RedisStream:
    """One Redis job's messages, in order, then its result: the interface of
    ``qoper8.Stream`` (``async for``, ``.progress``, ``.result``, ``.done``, ``close()``).

    Leaving ``RedisPool.stream``'s block early (or cancelling the task) cancels the job: one
    no host took yet never runs; a running one runs on (its host stops writing messages), or
    is stopped with ``kill_on_cancel=True``. A failure raises its typed error from the
    iteration, after the messages sent before it. If the job's host dies after messages were
    delivered, the iteration raises ``JobError`` and the job, queued again by the reaper, is
    withdrawn: a second run's messages would start over and repeat the first's.
    """

    def __init__(
        self,
        job_id: str,
        outcome: asyncio.Task[JSONValue],
        reads: StreamReads,
        *,
        messages: bool,
        on_progress: Callable[[Any], object] | None,
        stop: Callable[[], Awaitable[None]],
    ) -> None:
        self.job_id = job_id
        self._stop = stop
        self.key = (MSGS_PREFIX + job_id).encode()
        self.last_id = b"0-0"
        self._outcome = outcome
        self._control = reads.control
        self._reads = reads
        self._messages = messages
        self._on_progress = on_progress
        self._tasks: set[asyncio.Future[Any]] = set()
        self._ready: deque[tuple[int, bytes]] = deque()
        self._execution: str | None = None
        self._expect = 1  # the next entry number of this execution
        self._got = 0  # messages of this execution received
        self._fed_n = 0  # the newest entry of this execution received
        self._read_n = 0  # entries of this execution the caller is done with
        self._acked = 0
        self._ended = False  # no more entries wanted (the end, a loss, or drained)
        self._error: Exception | None = None  # ends the stream in place of the outcome
        self._waiter: asyncio.Future[None] | None = None
        self._left_out = False
        self.progress: JSONValue = None
        """The newest progress value the handler reported (None before any)."""
        outcome.add_done_callback(lambda _: self._wake())
        reads.add(self)

    # ------------------------------------------------------------ entries, from the reads
    def wants_more(self) -> bool:
        if self._ended:
            return False
        self._left_out = len(self._ready) >= READ_WINDOW
        return not self._left_out

    def feed(self, entries: list[Any]) -> None:
        if entries and _entry_id(entries[0][0]) <= _entry_id(self.last_id):
            last = _entry_id(self.last_id)  # read twice (the drain and the reads overlapped)
            entries = [e for e in entries if _entry_id(e[0]) > last]
        for raw_id, fields in entries:
            if self._ended:
                break
            self.last_id = raw_id
            # KIND VALUE n N (stream_scripts)
            self._entry(fields[0], fields[1], int(fields[3]) if len(fields) > 3 else 0)
        self._wake()

    def _entry(self, kind: bytes, value: bytes, n: int) -> None:
        if kind == b"s":
            execution = _text(value)
            if self._got and execution != self._execution:
                self._lose(self._execution or "")
                return
            self._execution, self._expect = execution, 1
            self._fed_n = self._read_n = self._acked = 0
            return
        if kind == b"l":
            if _text(value) == self._execution and self._got and self._messages:
                self._lose(self._execution)
            return
        if n != self._expect and self._messages:
            self._error = TransportError(
                f"job {self.job_id}: {n - self._expect} entries of its stream were trimmed "
                f"before they were read (its reader fell more than {STREAM_MAXLEN} behind "
                f"and its host stopped waiting)"
            )
            self._ended = True
            return
        self._expect = n + 1
        self._fed_n = n
        if kind == b"m":
            self._got += 1
            self._ready.append((n, value))
        elif kind == b"p":
            self._progress(orjson.loads(value))
            if not self._ready:
                self._read_n = n  # nothing unread before it: read too
        elif kind == b"e":
            self._ended = True
            self._reads.settle(value)

    def _lose(self, execution: str) -> None:
        self._error = JobError(
            f"job {self.job_id}: its host stopped (died, lost Redis or was stopped) after "
            f"{self._got} messages of execution {execution}; queued again, its messages "
            f"would start over, so the stream ends here and the job is withdrawn",
            job_id=self.job_id,
        )
        self._ended = True
        # withdrawn if queued again, stopped if a host took it already: its caller has its
        # error, and nobody reads a second run
        task = asyncio.ensure_future(self._stop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._outcome.cancel()

    def _progress(self, value: JSONValue) -> None:
        self.progress = value
        if self._on_progress is None:
            return
        try:
            out = self._on_progress(value)
        except Exception:
            logger.exception("a progress callback failed")
            return
        if inspect.isawaitable(out):
            task = asyncio.ensure_future(out)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ for the caller
    def __aiter__(self) -> RedisStream:
        return self

    async def __anext__(self) -> JSONValue:
        ready = self._ready
        while not ready:
            self._ack(force=True)
            if self._error is not None:
                self._finish()
                raise self._error
            if self._outcome.done():
                if not self._ended:
                    await self._drain()
                    continue
                self._finish()
                if self._outcome.cancelled():
                    raise TransportError(f"job {self.job_id}: its stream was closed")
                self._outcome.result()  # the job's error, after every message before it
                raise StopAsyncIteration
            if self._ended:  # the end entry came; its reply settles the outcome next
                await asyncio.wait([self._outcome])
                continue
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        n, payload = ready.popleft()
        self._read_n = n if ready else self._fed_n
        self._ack(force=False)
        if self._left_out and len(ready) <= READ_WINDOW // 2:
            self._left_out = False
            self._reads.changed()
        value: JSONValue = orjson.loads(payload)
        return value

    async def _drain(self) -> None:
        """The job ended before its stream was read to its end: read what Redis holds."""
        self._ended = True
        try:
            reply = await self._control.command(
                "XREAD", "COUNT", 2 * STREAM_MAXLEN, "STREAMS", self.key, self.last_id
            )
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            return  # the outcome says what happened; the messages are lost with Redis
        self._ended = False
        for _, entries in reply or ():
            self.feed(entries)
        self._ended = True

    def _ack(self, *, force: bool) -> None:
        if self._execution is None or self._ended or not self._messages:
            return
        if self._read_n - self._acked >= (1 if force else ACK_EVERY):
            self._acked = self._read_n
            self._tell(f"{self._execution}:{self._read_n}")

    def _tell(self, position: str) -> None:
        future = self._control.script(ACK, [JOB_PREFIX + self.job_id], [position])
        future.add_done_callback(_retrieve)

    def _finish(self) -> None:
        self._ended = True
        self._reads.remove(self)

    @property
    def done(self) -> bool:
        """Whether the job has ended and every message was read."""
        return not self._ready and (self._error is not None or self._outcome.done())

    @property
    def result(self) -> JSONValue:
        """The handler's return value, once the stream is read to its end.

        Raises:
            RuntimeError: the stream is not read to its end yet.
            JobFailed, JobTimeout, ChildDied, JobError, TransportError: the job's error.
        """
        if not self.done:
            raise RuntimeError("read the stream to its end before its result")
        if self._error is not None:
            raise self._error
        result: JSONValue = self._outcome.result()
        return result

    def close(self) -> None:
        """Stop listening; a job not ended is cancelled (see the class)."""
        self._reads.remove(self)
        self._ready.clear()
        if not self._outcome.done():
            self._tell("-1")  # its host writes no more messages for nobody
            self._outcome.cancel()
        self._outcome.add_done_callback(_retrieve)

    async def __aenter__(self) -> RedisStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
