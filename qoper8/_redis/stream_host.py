"""A Redis job's messages on its host's side (``RedisConsumer``): its newest progress into the
rq job's ``meta["progress"]`` (every job), and, for a job that asks (``qoper8_stream``), its
messages, progress and end appended to its stream (keys and entries: ``stream_scripts``).

Every write is one pipelined script call on the consumer's ``Wire``, so a stream's end
reaches Redis before the finish script that pushes the job's reply. Backpressure: the host
writes at most ``STREAM_WINDOW`` entries beyond what the reader has acknowledged; then it
stops reading the job's messages from the pool (whose own window then blocks the child in
``send()``) until the reader catches up, or gives up waiting after ``STALL_SECONDS`` (a
reader that vanished without a word), when trimming may drop what nobody read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._engine.child_api import PROGRESS_INTERVAL
from .consumer_base import _ConsumerBase, _Running
from .jobs import DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL, _text
from .scripts import JOB_PREFIX
from .stream_scripts import (
    APPEND_LUA,
    META_LUA,
    MSGS_PREFIX,
    STREAM_END_MIN_TTL,
    STREAM_MAXLEN,
    STREAM_RUNNING_TTL,
    STREAM_WINDOW,
)
from .wire import Script

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._types import JSONValue
    from .outcome import _Outcome
    from .wire import Wire

__all__: list[str] = []

logger = logging.getLogger("qoper8.redis")

APPEND: Final = Script(APPEND_LUA)
META: Final = Script(META_LUA)
# A job's meta is written at most once per this many seconds (the engine paces progress
# frames at the same rate, but flushes a held one with each message): at most ~20 writes a
# second per job, the newest value winning.
META_INTERVAL: Final = PROGRESS_INTERVAL
# Times a meta write is tried again after someone else changed meta meanwhile; past that,
# this value is dropped (the next one tries afresh).
META_ATTEMPTS: Final = 3
# A host waiting for its reader asks Redis for the reader's position this often, doubling
# from FIRST to MAX; after STALL_SECONDS without the reader moving it writes on regardless.
ACK_POLL_FIRST: Final = 0.005
ACK_POLL_MAX: Final = 0.1
STALL_SECONDS: Final = 30.0

_dumps: Final = orjson.dumps


class _MetaProgress:
    """The newest progress of one job into its rq ``meta``, merged into what is there by a
    compare-and-set script, paced, the newest value winning."""

    __slots__ = (
        "_busy",
        "_expect",
        "_inflight",
        "_key",
        "_last",
        "_pending",
        "_stopped",
        "_timer",
        "_wire",
        "_worker",
    )

    def __init__(self, wire: Wire, job_id: str, worker: str) -> None:
        self._wire = wire
        self._key = JOB_PREFIX + job_id
        self._worker = worker
        self._expect = b""  # the meta stored once the writes sent so far are done
        self._pending: list[Any] = []  # the newest value not written yet, or none
        self._busy = False
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._inflight: asyncio.Future[Any] | None = None
        self._stopped = False  # the job is not this host's any more, or meta is not a dict

    def set(self, value: Any) -> None:
        self._pending[:] = [value]
        self._schedule()

    def _schedule(self) -> None:
        if self._busy or self._timer is not None or self._stopped:
            return
        wait = self._last + META_INTERVAL - time.monotonic()
        if wait <= 0:
            self._write(0)
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._due)

    async def flush(self) -> None:
        """The job ends: write the newest value now and wait until meta holds it (merged
        again if someone changed meta meanwhile): the finish, which ends this host's right
        to write, comes after."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _ in range(2 * META_ATTEMPTS + 2):  # bounded: a write can always be retried
            if self._busy and self._inflight is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._inflight)  # its callback has run after
            elif self._pending and not self._stopped:
                self._write(0)
            else:
                return

    def _due(self) -> None:
        self._timer = None
        if self._pending and not self._busy and not self._stopped:
            self._write(0)

    def _write(self, attempt: int) -> None:
        value = self._pending.pop()
        try:
            meta = orjson.loads(self._expect) if self._expect else {}
        except orjson.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict):
            logger.warning("%s: its rq meta is not a JSON object; progress not kept", self._key)
            self._stopped = True
            return
        meta["progress"] = value
        new = _dumps(meta)
        expected, self._expect = self._expect, new
        self._busy = True
        self._last = time.monotonic()
        future = self._wire.script(META, [self._key], [expected, new, self._worker])
        future.add_done_callback(functools.partial(self._written, value, attempt))
        self._inflight = future

    def _written(self, value: Any, attempt: int, future: asyncio.Future[Any]) -> None:
        self._busy = False
        if future.cancelled() or future.exception() is not None:
            # Redis away: this value is lost; the next one is merged afresh
            self._expect = b""
            return
        answer = future.result()
        if answer[0] == -1:
            self._stopped = True
        elif answer[0] == 0:
            # someone else changed meta since: merge into theirs (unless newer is waiting)
            self._expect = answer[1] or b""
            if not self._pending and attempt + 1 < META_ATTEMPTS:
                self._pending.append(value)
                self._write(attempt + 1)
                return
        if self._pending:
            self._schedule()


class _StreamWriter:
    """One execution's entries appended to its job's stream, pipelined, a loop turn's worth
    per script call."""

    def __init__(self, wire: Wire, running: _Running) -> None:
        self._wire = wire
        self._keys = [MSGS_PREFIX + running.job_id, JOB_PREFIX + running.job_id]
        self._execution = running.execution_id
        self._messages = running.stream == "1"  # else progress only
        self._n = -1  # the newest entry's number (the first, "s", is 0)
        self._first = 0  # the number of the first entry not written yet
        self._kinds: list[str] = []  # the entries not written yet
        self._values: list[Any] = []
        self._flush_soon = False
        self._last: asyncio.Future[Any] | None = None  # the latest write
        self._acked = 0
        self.gone = False  # the reader left: messages are dropped
        self._progress: list[Any] = []  # the newest progress not written yet, or none
        self._progress_sent = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._waiting = False
        self._ended = False
        self._add("s", self._execution)

    # ------------------------------------------------------------ entries
    def message(self, value: JSONValue) -> bool:
        """Add a message; True when the host must wait (``wait_room``) before the next."""
        if self.gone or not self._messages:
            return False
        self._add("m", _dumps(value))
        return self._n - self._acked >= STREAM_WINDOW

    def progress(self, value: Any) -> None:
        if self.gone:
            return
        self._progress[:] = [value]
        if self._timer is not None or self._waiting:
            return  # written when due, or once the reader has made room
        wait = self._progress_sent + PROGRESS_INTERVAL - time.monotonic()
        if wait <= 0:
            self._put_progress()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self._waiting:
            self._put_progress()

    def _put_progress(self) -> None:
        if self._progress and not self.gone:
            self._add("p", _dumps(self._progress.pop()))
            self._progress_sent = time.monotonic()

    def _add(self, kind: str, value: bytes | str) -> None:
        if self._ended:
            return
        self._n += 1
        self._kinds.append(kind)
        self._values.append(value)
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush_due)

    def _flush_due(self) -> None:
        self._flush_soon = False
        if self._kinds and not self._ended:
            self._flush()

    def _flush(self, ttl: int = STREAM_RUNNING_TTL) -> asyncio.Future[Any]:
        kinds, values, first = "".join(self._kinds), self._values, self._first
        self._kinds, self._values, self._first = [], [], self._n + 1
        future = self._wire.script(APPEND, self._keys, [STREAM_MAXLEN, ttl, first, kinds, *values])
        future.add_done_callback(self._answered)
        self._last = future
        return future

    def _answered(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # Redis away: a gap the reader reports
        read = future.result()
        if read is None or isinstance(read, Exception):
            return
        text = _text(read)
        if text == "-1":
            self.gone = True
            return
        execution, _, n = text.rpartition(":")
        if execution == self._execution and n.isdigit():
            self._acked = max(self._acked, int(n))

    async def wait_room(self) -> None:
        """Wait until the reader has read enough (or left, or stalled for STALL_SECONDS)."""
        self._waiting = True
        delay, acked, since = ACK_POLL_FIRST, self._acked, time.monotonic()
        try:
            while not self.gone and self._n - self._acked >= STREAM_WINDOW:
                last = self._flush() if self._kinds or self._last is None else self._last
                # Redis away: asked again below, the job's deadline bounds the wait
                with contextlib.suppress(Exception):
                    await asyncio.shield(last)
                if self.gone or self._n - self._acked < STREAM_WINDOW:
                    break
                if self._acked != acked:
                    delay, acked, since = ACK_POLL_FIRST, self._acked, time.monotonic()
                elif time.monotonic() - since > STALL_SECONDS:
                    logger.warning(
                        "job %s: its stream's reader read nothing for %gs; writing on (a "
                        "reader that comes back finds the oldest entries trimmed)",
                        self._keys[0],
                        STALL_SECONDS,
                    )
                    self._acked = self._n  # one more window before the next wait
                    break
                await asyncio.sleep(delay)
                delay = min(ACK_POLL_MAX, delay * 2)
                self._last = None  # ask again (an empty append answers the position)
        finally:
            self._waiting = False
        self._put_progress()

    # ------------------------------------------------------------ the end
    def end(self, reply: str, ttl: int) -> None:
        """The job's outcome, after its newest progress; the stream then expires with the
        result (``ttl``: -1 never)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._put_progress()
        self._add("e", reply)
        self._ended = True
        self._flush(ttl)

    def lost(self) -> None:
        """This execution ends without an outcome (its host stops): the job runs again, and
        a reader of this execution's messages learns that they end here."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._ended:
            self._add("l", self._execution)
            self._ended = True
            self._flush()


class _Streaming(_ConsumerBase):
    """Runs a job on the pool, with its progress into rq's meta and, when the job asks, its
    messages into its stream."""

    async def _run_action(
        self, running: _Running, action: Mapping[str, Any], timeout: float | None
    ) -> JSONValue:
        pool = self.pool
        progress = functools.partial(self._on_progress, running)
        if not running.stream:
            return await pool.submit(
                action, timeout=timeout, kill_on_cancel=True, on_progress=progress
            )
        assert self._wire is not None
        writer = running.writer = _StreamWriter(self._wire, running)
        try:
            async with pool.stream(
                action, timeout=timeout, kill_on_cancel=True, on_progress=progress
            ) as stream:
                async for message in stream:
                    if writer.message(message):
                        await writer.wait_room()
                result: JSONValue = stream.result
                return result
        except asyncio.CancelledError:
            if not running.stop_requested:
                writer.lost()  # the consumer stops: handed back, it runs again
            raise

    def _on_progress(self, running: _Running, value: Any) -> None:
        meta = running.meta
        if meta is None:
            assert self._wire is not None
            meta = running.meta = _MetaProgress(self._wire, running.job_id, self.name)
        meta.set(value)
        if running.writer is not None:
            running.writer.progress(value)

    async def _end_messages(self, running: _Running, outcome: _Outcome) -> None:
        """Before the finish: the newest progress into meta, and the stream's end."""
        if running.meta is not None:
            await running.meta.flush()
        if running.writer is not None:
            if outcome.status == "finished":
                ttl = DEFAULT_RESULT_TTL if running.result_ttl is None else running.result_ttl
            else:
                ttl = DEFAULT_FAILURE_TTL if running.failure_ttl is None else running.failure_ttl
            running.writer.end(outcome.reply, ttl if ttl < 0 else max(ttl, STREAM_END_MIN_TTL))
