"""``Jobs``: the queue, the idle stack and the counters of one pool, and what moves a job
through them: enqueue (to an idle child at once, or into the FIFO queue), starting it on a
child, its deadline, its cancellation, waiting for room in a bounded queue.

``Dispatcher`` builds on it with what children report (frames, free, gone); the two are one
object, split so that each file reads as one concern.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from .._types import DEFAULT
from ..errors import JobTimeout, PoolClosed, QueueFull, StartFailed
from . import protocol as proto
from . import tracing
from .child import ChildState
from .encoding import check_timeout
from .job import ActorJob, Job, JobKind, JobState
from .settle import (
    copy_start_failed,
    queued_too_long,
    ran_too_long,
)
from .stats import Counters
from .thread_handle import HandleSlot
from .traced_job import traced_job
from .waiting import Waiters

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Callable, Mapping

    from ..config import PoolConfig
    from .actors import Actor
    from .child import Child
    from .thread_handle import ThreadHandle
    from .worker import HandlerInfo

__all__ = ["Jobs", "Phase"]

_UNSET: Final[Any] = DEFAULT
_monotonic: Final = time.monotonic
_HEADER_PACK: Final = proto.HEADER.pack
# Enum members used on the hot path, bound once: in Python 3.11 reading a member off an Enum
# class goes through EnumType.__getattr__ and costs about five plain attribute reads.
_IDLE: Final = ChildState.IDLE
_BUSY: Final = ChildState.BUSY
_QUEUED: Final = JobState.QUEUED
_RUNNING: Final = JobState.RUNNING
_ACTION_FRAME: Final = int(proto.Kind.ACTION)
_CALL_FRAME: Final = int(proto.Kind.CALL)
_JOB_ACTION: Final = JobKind.ACTION
_START_FRAME: Final = int(proto.Kind.ACTOR_START)
_ACTOR_CALL_FRAME: Final = int(proto.Kind.ACTOR_CALL)


class Phase:
    """Where the pool is in its life; the dispatcher's intake follows it."""

    NEW = "new"
    STARTING = "starting"  # jobs queue and go to children as they become ready
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Jobs:
    """The queue, the idle stack and the counters of one pool, and a job's way in and out
    of them: enqueue, start on an idle child, deadline, cancel (see ``Dispatcher``).

    Args:
        config: the pool's settings (queue bound, default timeout, message limit).
    """

    def __init__(self, config: PoolConfig) -> None:
        self.phase = Phase.NEW
        self.loop: asyncio.AbstractEventLoop | None = None
        # The action types the worker module registered, as the children reported them.
        self.handlers: dict[str, HandlerInfo] = {}
        # Its actor types and their methods (refused before anything is sent for others).
        self.actor_types: dict[str, list[str]] = {}
        self.counters = Counters()
        # OpenTelemetry's current context (None without it): a job made while one is set
        # carries the caller's span to its child and records spans (TracedJob).
        self.otel: Callable[[], Mapping[str, object]] | None = None
        # Set when the pool gave up on children that keep failing to start.
        self.broken: StartFailed | None = None
        # The messenger's: what a child notifies or publishes (kind, payload).
        self.notices: Callable[[Child, int, bytes], None] = _ignore
        # The autoscaler's: a job had to wait in the queue (it may start a child).
        self.on_waiting: Callable[[], None] | None = None
        # The actor host's: an event an actor emitted (payload).
        self.actor_events: Callable[[Child, bytes], None] = _nothing_said
        self._idle: deque[Child] = deque()  # a stack: the last one freed is used first
        self._queue: deque[Job] = deque()
        self.queued = 0
        self.running = 0
        self._next_job_id = 1
        # Raw durations, folded into the counters' series when statistics are taken or the
        # list grows long: one list append per job on the hot path, not a histogram update.
        self._wait_samples: list[float] = []
        self._run_samples: list[float] = []
        self.waiters = Waiters()
        # The waiters' own containers, read on the hot path: is anyone waiting at all?
        self._conditions = self.waiters.conditions
        self._room_waiters = self.waiters.room
        self.apply(config)

    def apply(self, config: PoolConfig) -> None:
        """Adopt ``config``: at construction, and on reload."""
        self.max_bytes = config.max_message_bytes
        self._max_queue = config.max_queue
        self.default_timeout = config.timeout

    def begin(self, loop: asyncio.AbstractEventLoop) -> None:
        """The pool starts on ``loop``: jobs are taken (and queue until children are ready)."""
        self.loop = self.waiters.loop = loop
        self.phase = Phase.STARTING
        self.otel = tracing.reader()

    # ================================================================ intake

    def enqueue(
        self,
        kind: JobKind,
        payload: bytes,
        action_type: str,
        timeout: float | None,
        wait_for_room: bool,
        handle: ThreadHandle | None = None,
    ) -> Job | None:
        """Make the job and send it to an idle child or queue it. Returns None when the
        queue is full and the caller waits for room (``enqueue_when_room``).

        Raises:
            PoolClosed, StartFailed, QueueFull (full and ``wait_for_room`` is False),
            InvalidAction (a timeout that is not a positive number of seconds or None).
        """
        # admit(), inlined: this is the hot path.
        phase = self.phase
        if phase is not Phase.OPEN and phase is not Phase.STARTING:
            self.admit(timeout)  # raises, worded
        if timeout is not _UNSET and timeout is not None:
            check_timeout(timeout)
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

    @property
    def bounded(self) -> bool:
        """Whether the queue has a ``max_queue``."""
        return self._max_queue is not None

    def admit(self, timeout: float | None) -> None:
        """Whether the pool takes a job now.

        Raises:
            PoolClosed, StartFailed, InvalidAction (a bad timeout).
        """
        phase = self.phase
        if phase is not Phase.OPEN and phase is not Phase.STARTING:
            # While STARTING, jobs queue and go to children as they become ready (a daemon
            # takes requests while its pool starts); a failed start fails them.
            raise PoolClosed(
                "the pool is closed" if phase is not Phase.NEW else "the pool is not started"
            )
        if timeout is not _UNSET and timeout is not None:
            check_timeout(timeout)
        if self.broken is not None:
            raise copy_start_failed(self.broken)

    async def enqueue_when_room(
        self,
        kind: JobKind,
        payload: bytes,
        action_type: str,
        timeout: float | None,
        handle: ThreadHandle | None = None,
    ) -> Job:
        """The slow path of ``enqueue``: wait for room in the queue within the job's
        deadline, which keeps counting from now."""
        if timeout is _UNSET:
            timeout = self.default_timeout
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
        handle: ThreadHandle | None = None,
    ) -> Job:
        loop = self.loop
        assert loop is not None
        if timeout is _UNSET:
            timeout = self.default_timeout
        job_id = self._next_job_id
        self._next_job_id = job_id + 1
        frame_kind = _ACTION_FRAME if kind is _JOB_ACTION else _CALL_FRAME
        frame = _HEADER_PACK(len(payload), frame_kind, job_id, 0) + payload
        otel = self.otel
        if otel is None or not (context := otel()):
            future: Any = loop.create_future() if handle is None else HandleSlot(handle)
            job = Job(job_id, kind, frame, future, submitted_at, action_type)
        else:  # OpenTelemetry's context is set: a TracedJob if a span is active in it
            job = traced_job(job_id, kind, frame, loop, handle, submitted_at, action_type, context)
        if handle is not None:
            job.handle = handle
            handle.job = job
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
            if self.on_waiting is not None:
                self.on_waiting()
        return job

    def new_actor_job(
        self, kind: JobKind, payload: bytes, name: str, timeout: float | None, actor: Actor
    ) -> ActorJob:
        """A job of ``actor`` (its start, or a call), not queued anywhere yet: the caller
        pins it to the actor's child, or keeps it while the actor has none."""
        loop = self.loop
        assert loop is not None
        if timeout is _UNSET:
            timeout = self.default_timeout
        if timeout is not None:
            check_timeout(timeout)
        job_id = self._next_job_id
        self._next_job_id = job_id + 1
        frame_kind = _START_FRAME if kind is JobKind.ACTOR_START else _ACTOR_CALL_FRAME
        job = ActorJob(
            job_id,
            kind,
            _HEADER_PACK(len(payload), frame_kind, job_id, 0) + payload,
            loop.create_future(),
            _monotonic(),
            name,
            actor,
        )
        self.counters.submitted += 1
        if timeout is not None:
            job.deadline = _monotonic() + timeout
            job.timer = loop.call_later(timeout, self._on_deadline, job, timeout)
        return job

    async def _wait_for_room(self, timeout: float | None) -> None:
        max_queue = self._max_queue
        assert max_queue is not None
        try:
            async with asyncio.timeout(timeout):
                await self.waiters.wait_for_room(
                    lambda: self.queued >= max_queue and self.phase is Phase.OPEN
                )
        except TimeoutError:
            self.counters.timed_out += 1
            raise JobTimeout(f"no room in the queue within the deadline of {timeout}s") from None
        if self.phase is not Phase.OPEN:
            raise PoolClosed("the pool closed while the job waited for room in the queue")

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
            if job.actor is None:  # an actor's call waits in its child's queue, not the pool's
                self.queued -= 1
                self.waiters.notify_room()
            job.fail(queued_too_long(job, timeout))
            self.waiters.wake()
            return
        child = job.child
        assert child is not None
        job.fail(ran_too_long(job, timeout, child))
        child.kill(f"job {job.id} timed out")

    def cancel(self, job: Job, kill: bool) -> None:
        """The caller went away: drop a queued job; a running one runs on, or with ``kill``
        its child is killed (a half-run blocking call cannot be interrupted otherwise)."""
        if job.ended:
            return
        self.counters.cancelled += 1
        if job.state is JobState.QUEUED:
            job.end()
            if job.actor is None:  # an actor's call is dropped from its queue when reached
                self.queued -= 1
                self.waiters.notify_room()
            self.waiters.wake()
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

    # ================================================================ closing

    def fail_queued(self, error: Callable[[Job], BaseException]) -> None:
        """Fail every queued job with ``error(job)`` (closing, a failed start, giving up)."""
        for job in self._queue:
            if job.state is _QUEUED:
                job.fail(error(job))
        self._queue.clear()
        self.queued = 0

    # ================================================================ waiting

    def fold_samples(self) -> None:
        self.counters.queue_wait.add_many(self._wait_samples)
        self.counters.run_time.add_many(self._run_samples)
        self._wait_samples.clear()
        self._run_samples.clear()

    @property
    def busy(self) -> bool:
        """Whether a job is queued or running."""
        return bool(self.queued or self.running)

    def idle_children(self) -> list[Child]:
        """The idle children, the one idle longest first."""
        return list(self._idle)

    def has_capacity(self) -> bool:
        """Whether a job submitted now would start at once (an idle child, nothing queued)."""
        return bool(self._idle) and not self.queued


def _ignore(child: Child, kind: int, payload: bytes) -> None:
    del child, kind, payload


def _nothing_said(child: Child, payload: bytes) -> None:
    del child, payload
