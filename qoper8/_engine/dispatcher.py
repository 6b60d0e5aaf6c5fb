"""``Dispatcher``: the jobs. It owns the one FIFO queue, the stack of idle children, starting a
job on a child, deadlines, cancellation and settling. It never starts or stops a process: the
supervisor hands it children as they become ready and takes them back when they exit.

When a child becomes free (``child_free``) the dispatcher decides, in this order, what it does
next: retire (the supervisor's policy, asked only for children it marked ``watch_retire``),
take the next queued job, or wait on the idle stack. That is the seam where later work plugs
in: messages a child must get *between* two jobs (broadcasts, acknowledged requests) go in
before the queue, and work pinned to one child (an actor's calls) is a queue of that child's
own, served there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._types import DEFAULT
from ..errors import InvalidAction, JobTimeout, PoolClosed, QueueFull, StartFailed
from . import protocol as proto
from .child import ChildState
from .job import Job, JobKind, JobState
from .settle import child_died, settle, undecodable
from .stats import Counters

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Callable

    from ..config import PoolConfig
    from .child import Child
    from .worker import HandlerInfo

__all__ = ["Dispatcher", "Phase", "copy_start_failed"]

logger = logging.getLogger("qoper8")

# Fold raw samples into the statistics series once this many have piled up.
SAMPLE_FOLD: Final = 4096

_UNSET: Final[Any] = DEFAULT
_monotonic: Final = time.monotonic
_INF: Final = float("inf")
_loads: Final = orjson.loads
_HEADER_PACK: Final = proto.HEADER.pack
# Enum members used on the hot path, bound once: in Python 3.11 reading a member off an Enum
# class goes through EnumType.__getattr__ and costs about five plain attribute reads.
_IDLE: Final = ChildState.IDLE
_BUSY: Final = ChildState.BUSY
_QUEUED: Final = JobState.QUEUED
_RUNNING: Final = JobState.RUNNING
_ENDED: Final = JobState.ENDED
_RESULT: Final = int(proto.Kind.RESULT)
_ACTION_FRAME: Final = int(proto.Kind.ACTION)
_CALL_FRAME: Final = int(proto.Kind.CALL)
_JOB_ACTION: Final = JobKind.ACTION


class Phase:
    """Where the pool is in its life; the dispatcher's intake follows it."""

    NEW = "new"
    STARTING = "starting"  # jobs queue and go to children as they become ready
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Dispatcher:
    """The jobs of one pool (see the module docstring).

    Args:
        config: the pool's settings (queue bound, default timeout, message limit).
    """

    def __init__(self, config: PoolConfig) -> None:
        self.phase = Phase.NEW
        self.loop: asyncio.AbstractEventLoop | None = None
        # The action types the worker module registered, as the children reported them.
        self.handlers: dict[str, HandlerInfo] = {}
        self.counters = Counters()
        # Set when the pool gave up on children that keep failing to start.
        self.broken: StartFailed | None = None
        # The supervisor's retire policy, asked when a child marked ``watch_retire`` becomes
        # free: it retires the child and returns True, or returns False.
        self.retire_if_due: Callable[[Child], bool] = _never
        # Called with a child on probation (started during an outage) once it did a job.
        self.proved: Callable[[Child], None] = _nothing
        self._idle: deque[Child] = deque()  # a stack: the last one freed is used first
        self._queue: deque[Job] = deque()
        self.queued = 0
        self.running = 0
        self._next_job_id = 1
        # Raw durations, folded into the counters' series when statistics are taken or the
        # list grows long: one list append per job on the hot path, not a histogram update.
        self._wait_samples: list[float] = []
        self._run_samples: list[float] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self.apply(config)

    def apply(self, config: PoolConfig) -> None:
        """Adopt ``config``: at construction, and on reload."""
        self.max_bytes = config.max_message_bytes
        self._max_queue = config.max_queue
        self._default_timeout = config.timeout

    # ================================================================ intake

    def enqueue(
        self,
        kind: JobKind,
        payload: bytes,
        action_type: str,
        timeout: float | None,
        wait_for_room: bool,
        handle: concurrent.futures.Future[Any] | None = None,
    ) -> Job | None:
        """Make the job and send it to an idle child or queue it. Returns None when the
        queue is full and the caller waits for room (``enqueue_when_room``).

        Raises:
            PoolClosed, StartFailed, QueueFull (full and ``wait_for_room`` is False),
            InvalidAction (a timeout that is not a positive number of seconds or None).
        """
        phase = self.phase
        if phase is not Phase.OPEN and phase is not Phase.STARTING:
            # While STARTING, jobs queue and go to children as they become ready (a daemon
            # takes requests while its pool starts); a failed start fails them.
            raise PoolClosed(
                "the pool is closed" if phase is not Phase.NEW else "the pool is not started"
            )
        if timeout is not _UNSET and timeout is not None:
            _check_timeout(timeout)
        if self.broken is not None:
            raise copy_start_failed(self.broken)
        max_queue = self._max_queue
        if (
            max_queue is not None
            and self.queued >= max_queue
            and not (self._idle and not self.queued)
        ):
            if not wait_for_room:
                self.counters.rejected += 1
                raise QueueFull(f"the queue holds {self.queued} jobs (max_queue={max_queue})")
            return None
        return self._new_job(kind, payload, action_type, timeout, _monotonic(), handle)

    async def enqueue_when_room(
        self,
        kind: JobKind,
        payload: bytes,
        action_type: str,
        timeout: float | None,
        handle: concurrent.futures.Future[Any] | None = None,
    ) -> Job:
        """The slow path of ``enqueue``: wait for room in the queue within the job's
        deadline, which keeps counting from now."""
        if timeout is _UNSET:
            timeout = self._default_timeout
        now = _monotonic()
        await self._wait_for_room(timeout)
        if timeout is not None:
            timeout = max(0.0, timeout - (_monotonic() - now))
        if self.broken is not None:
            raise copy_start_failed(self.broken)
        return self._new_job(kind, payload, action_type, timeout, now, handle)

    def _new_job(
        self,
        kind: JobKind,
        payload: bytes,
        action_type: str,
        timeout: float | None,
        submitted_at: float,
        handle: concurrent.futures.Future[Any] | None = None,
    ) -> Job:
        loop = self.loop
        assert loop is not None
        if timeout is _UNSET:
            timeout = self._default_timeout
        job_id = self._next_job_id
        self._next_job_id = job_id + 1
        frame_kind = _ACTION_FRAME if kind is _JOB_ACTION else _CALL_FRAME
        job = Job(
            job_id,
            kind,
            _HEADER_PACK(len(payload), frame_kind, job_id, 0) + payload,
            loop.create_future(),
            submitted_at,
            action_type,
        )
        if handle is not None:
            job.handle = handle
        self.counters.submitted += 1
        if timeout is not None:
            job.deadline = _monotonic() + timeout
            job.timer = loop.call_later(timeout, self._on_deadline, job, timeout)
        idle = self._idle
        if idle and not self.queued:
            # The child that went idle last: it is the one still warm (its caches, and the
            # CPU the scheduler just ran it on); round-robin would wake a cold one each time.
            child = idle.pop()
            if not self._start_job(child, job):
                idle.append(child)
        else:
            self._queue.append(job)
            self.queued += 1
        return job

    async def _wait_for_room(self, timeout: float | None) -> None:
        loop = self.loop
        assert loop is not None
        assert self._max_queue is not None
        try:
            async with asyncio.timeout(timeout):
                while self.queued >= self._max_queue and self.phase is Phase.OPEN:
                    fut = loop.create_future()
                    self._room_waiters.append(fut)
                    try:
                        await fut
                    finally:
                        if not fut.done():
                            fut.cancel()
        except TimeoutError:
            self.counters.timed_out += 1
            raise JobTimeout(f"no room in the queue within the deadline of {timeout}s") from None
        if self.phase is not Phase.OPEN:
            raise PoolClosed("the pool closed while the job waited for room in the queue")

    def _notify_room(self) -> None:
        while self._room_waiters:
            fut = self._room_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _start_job(self, child: Child, job: Job) -> bool:
        """Send ``job`` to idle ``child``; False (and the job dropped) if it was an
        executor call whose caller cancelled it a moment ago, from another thread."""
        if child.state is not _IDLE:
            raise RuntimeError(
                f"{child.describe()} is {child.state.value}, cannot take job {job.id}"
            )
        handle = job.handle
        if handle is not None and not handle.set_running_or_notify_cancel():
            self.counters.cancelled += 1
            job.end()
            return False
        now = _monotonic()
        job.state = _RUNNING
        job.started_at = now
        job.child = child
        child.state = _BUSY
        child.job = job
        self.running += 1
        self._wait_samples.append(now - job.submitted_at)
        child.send_frame(job.frame)
        return True

    def _on_deadline(self, job: Job, timeout: float) -> None:
        job.timer = None
        if job.ended:
            return
        self.counters.timed_out += 1
        if job.state is JobState.QUEUED:
            self.queued -= 1
            self._notify_room()
            job.fail(
                JobTimeout(
                    f"job {job.id} ({job.action_type}) waited in the queue past its deadline "
                    f"of {timeout}s; no child was free",
                    job_id=job.id,
                )
            )
            self.wake_waiters()
            return
        child = job.child
        assert child is not None
        job.fail(
            JobTimeout(
                f"job {job.id} ({job.action_type}) ran past its deadline of {timeout}s; "
                f"{child.describe()} was killed and is being replaced",
                job_id=job.id,
            )
        )
        logger.warning(
            "job %s (%s) ran past its deadline of %gs: killing %s",
            job.id,
            job.action_type,
            timeout,
            child.describe(),
            extra={
                "child": child.id,
                "pid": child.pid,
                "job_id": job.id,
                "action_type": job.action_type,
            },
        )
        child.kill(f"job {job.id} timed out")

    def cancel(self, job: Job, kill: bool) -> None:
        """The caller went away: drop a queued job; a running one runs on, or with ``kill``
        its child is killed (a half-run blocking call cannot be interrupted otherwise)."""
        if job.ended:
            return
        self.counters.cancelled += 1
        if job.state is JobState.QUEUED:
            self.queued -= 1
            job.end()
            self._notify_room()
            self.wake_waiters()
            return
        child = job.child
        job.end()
        if kill and child is not None:
            child.kill(f"job {job.id} was cancelled")

    def cancel_call(self, job: Job, handle: concurrent.futures.Future[Any]) -> None:
        """An executor call's handle was cancelled (from any thread, hopped onto the loop): a
        queued job is dropped, and waiters on the handle are told."""
        if job.state is _QUEUED:
            self.cancel(job, False)
            handle.set_running_or_notify_cancel()

    # ================================================================ children

    def child_frame(self, child: Child, kind: int, job_id: int, extra: int, payload: bytes) -> None:
        """A child answered: settle its job, then give it the next one at once. This is the
        hot path, kept flat: one call per answer, no allocation beyond the result."""
        job = child.job
        if job is None or job.id != job_id:
            child.protocol_violation(f"frame {kind} for job {job_id}, expected {job and job.id}")
            return
        child.job = None
        child.jobs_done += 1
        if child.state is _BUSY:
            child.state = _IDLE
        self.running -= 1
        if child.probation:
            self.proved(child)  # started during an outage, and did real work: it is over
        samples = self._run_samples
        samples.append(_monotonic() - job.started_at)
        if len(samples) >= SAMPLE_FOLD:
            self.fold_samples()
        if job.state is not _ENDED:
            if kind == _RESULT:
                try:
                    value = _loads(payload)
                except ValueError as exc:
                    undecodable(job, child, exc, self.counters)
                else:
                    job.state = _ENDED
                    job.child = None
                    if job.timer is not None:
                        job.timer.cancel()
                        job.timer = None
                    if not job.future.done():
                        job.future.set_result(value)
                    self.counters.completed += 1
            else:
                settle(job, kind, payload, child, self.counters)
        self.child_free(child)

    def child_free(self, child: Child) -> None:
        """``child`` just became idle (a job done, or READY): retire it, or give it the next
        queued job, or park it on the idle stack."""
        if child.state is not _IDLE:
            return
        if child.watch_retire and self.retire_if_due(child):
            return
        queue = self._queue
        while queue:
            queued = queue.popleft()
            if queued.state is _QUEUED:
                self.queued -= 1
                if self._room_waiters:
                    self._notify_room()
                if self._start_job(child, queued):
                    return
        self._idle.append(child)
        if self._waiters:
            self.wake_waiters()

    def forget(self, child: Child) -> None:
        """``child`` is leaving (retiring): it takes no more jobs."""
        with contextlib.suppress(ValueError):
            self._idle.remove(child)

    def child_lost(self, child: Child) -> Job | None:
        """``child`` exited: fail the job it was running (ChildDied, or PoolClosed while
        the pool closes) and return that job, if any."""
        self.forget(child)
        job = child.job
        if job is None:
            return None
        child.job = None
        self.running -= 1
        if not job.ended:
            if self.phase is Phase.CLOSING or self.phase is Phase.CLOSED:
                job.fail(PoolClosed(f"the pool closed while job {job.id} ran"))
            else:
                self.counters.died += 1
                job.fail(child_died(child, job))
        return job

    # ================================================================ closing

    def fail_queued(self, error: Callable[[Job], BaseException]) -> None:
        """Fail every queued job with ``error(job)`` (closing, a failed start, giving up)."""
        for job in self._queue:
            if job.state is _QUEUED:
                job.fail(error(job))
        self._queue.clear()
        self.queued = 0

    def release_room_waiters(self) -> None:
        """Closing: callers waiting for room in the queue get PoolClosed now."""
        for fut in self._room_waiters:
            if not fut.done():
                fut.set_result(None)

    def close(self) -> None:
        """The pool closed: every waiter returns."""
        self.phase = Phase.CLOSED
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    # ================================================================ waiting

    def fold_samples(self) -> None:
        self.counters.queue_wait.add_many(self._wait_samples)
        self.counters.run_time.add_many(self._run_samples)
        self._wait_samples.clear()
        self._run_samples.clear()

    def wake_waiters(self) -> None:
        if not self._waiters:
            return
        keep = []
        for predicate, fut in self._waiters:
            if fut.done():
                continue
            if predicate():
                fut.set_result(None)
            else:
                keep.append((predicate, fut))
        self._waiters = keep

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds (checked whenever jobs or children move), or
        the pool closed."""
        if predicate() or self.phase is Phase.CLOSED:
            return
        assert self.loop is not None
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiters.append((predicate, fut))
        await fut

    @property
    def busy(self) -> bool:
        """Whether a job is queued or running."""
        return bool(self.queued or self.running)

    def has_capacity(self) -> bool:
        """Whether a job submitted now would start at once (an idle child, nothing queued)."""
        return bool(self._idle) and not self.queued


def copy_start_failed(err: StartFailed) -> StartFailed:
    """A fresh copy of ``err`` for each caller (one exception object raised many times would
    pile up everyone's tracebacks)."""
    return StartFailed(
        str(err),
        remote_type=err.remote_type,
        remote_message=err.remote_message,
        remote_traceback=err.remote_traceback,
    )


def _check_timeout(timeout: object) -> None:
    """Refuse a deadline that is not a positive, finite number (0 would send the job and
    kill its child at once; NaN would never fire)."""
    if (type(timeout) is not float and type(timeout) is not int) or not 0 < timeout < _INF:
        raise InvalidAction(
            f"timeout must be a positive, finite number of seconds or None, not {timeout!r}"
        )


def _nothing(child: Child) -> None:
    del child


def _never(child: Child) -> bool:
    del child
    return False
