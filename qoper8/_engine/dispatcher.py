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

import contextlib
import time
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._types import DEFAULT
from ..errors import PoolClosed
from . import protocol as proto
from .batch import BatchSlot
from .child import ChildState
from .job import Job, JobKind, JobState
from .jobs import Jobs, Phase
from .replacing import mark
from .settle import child_died, settle, undecodable
from .traced_job import batch_trace

if TYPE_CHECKING:
    from .batch import Batch
    from .child import Child
    from .delivery import Delivery

__all__ = ["Dispatcher", "Phase"]

# Fold raw samples into the statistics series once this many have piled up.
SAMPLE_FOLD: Final = 4096

_monotonic: Final = time.monotonic
_HEADER_PACK: Final = proto.HEADER.pack
_UNSET: Final[Any] = DEFAULT
_ACTION_FRAME: Final = int(proto.Kind.ACTION)
_CALL_FRAME: Final = int(proto.Kind.CALL)
_loads: Final = orjson.loads
# Bound once: reading a member off an Enum class is slow in Python 3.11 (hot path).
_IDLE: Final = ChildState.IDLE
_BUSY: Final = ChildState.BUSY
_QUEUED: Final = JobState.QUEUED
_ENDED: Final = JobState.ENDED
_RESULT: Final = int(proto.Kind.RESULT)
_MESSAGE: Final = int(proto.Kind.MESSAGE)
_PROGRESS: Final = int(proto.Kind.PROGRESS)
_NOTIFY: Final = int(proto.Kind.NOTIFY)
_PUBLISH: Final = int(proto.Kind.PUBLISH)
_REPLY: Final = int(proto.Kind.REPLY)
_REPLY_ERROR: Final = int(proto.Kind.REPLY_ERROR)
_ACTOR_SNAPSHOT: Final = int(proto.Kind.ACTOR_SNAPSHOT)
_ACTOR_EVENT: Final = int(proto.Kind.ACTOR_EVENT)
_REPLACE_ME: Final = int(proto.Kind.REPLACE_ME)


class Dispatcher(Jobs):
    """The jobs of one pool, as children report on them (see the module docstring).

    Args:
        config: the pool's settings (queue bound, default timeout, message limit).
    """

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
            child.events.child_proved(child)  # started in an outage, and did real work
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
        if child.inbox and self._deliver_inbox(child):  # messages between jobs come first
            return
        pinned = child.pinned
        if pinned is not None:  # an actor child: its actors' calls only, in their order
            while pinned:
                job = pinned.popleft()
                if job.state is _QUEUED and self._start_job(child, job):
                    return
            if child.watch_retire:  # its last actor is gone
                child.events.retire_if_due(child)
            return
        if child.watch_retire and child.events.retire_if_due(child):
            return
        queue = self._queue
        while queue:
            queued = queue.popleft()
            if queued.state is _QUEUED:
                self.queued -= 1
                if self._room_waiters:
                    self.waiters.notify_room()
                if self._start_job(child, queued):
                    return
        self._idle.append(child)
        if self._conditions:
            self.waiters.wake()

    def take_idle(self) -> Child | None:
        """The idle child freed last, off the idle stack (to become an actor child)."""
        return self._idle.pop() if self._idle else None

    def forget(self, child: Child) -> None:
        """``child`` is leaving (retiring): it takes no more jobs."""
        with contextlib.suppress(ValueError):
            self._idle.remove(child)

    def child_lost(self, child: Child) -> Job | None:
        """``child`` exited: fail the job it was running (ChildDied, or PoolClosed while
        the pool closes) and the messages it had not answered, and return that job."""
        self.forget(child)
        if child.delivery is not None:
            child.delivery.lost(child, before=False)
            child.delivery = None
        while child.inbox:
            child.inbox.popleft().lost(child, before=True)
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

    def enqueue_batch(
        self, kind: JobKind, encoded: list[tuple[bytes, str]], batch: Batch, timeout: float | None
    ) -> None:
        """Make a job per (payload, type) of ``batch``: idle children take the first ones,
        the rest go into the queue in one step, under one deadline timer (``Batch``).

        Raises:
            PoolClosed, StartFailed, InvalidAction (a bad timeout): before any job is made.
        """
        self.admit(timeout)
        loop = self.loop
        assert loop is not None
        if timeout is _UNSET:
            timeout = self.default_timeout
        first = self._next_job_id
        self._next_job_id = first + len(encoded)
        frame_kind = _ACTION_FRAME if kind is JobKind.ACTION else _CALL_FRAME
        now = _monotonic()
        deadline = None if timeout is None else now + timeout
        jobs = batch.jobs
        trace = None  # OpenTelemetry: the caller's span, checked once for the batch
        otel = self.otel
        if otel is not None and (context := otel()):
            trace = batch_trace(context)
        for index, (payload, action_type) in enumerate(encoded):
            job_id = first + index
            frame = _HEADER_PACK(len(payload), frame_kind, job_id, 0) + payload
            if trace is None:
                job = Job(job_id, kind, frame, BatchSlot(batch, index), now, action_type)  # type: ignore[arg-type]
            else:
                job = trace.job(job_id, kind, frame, batch, index, now, action_type)
            job.deadline = deadline
            jobs.append(job)
        self.counters.submitted += len(jobs)
        if timeout is not None:
            batch.timer = loop.call_later(timeout, batch.expire, self._on_deadline, timeout)
        start = 0
        idle = self._idle
        if not self.queued:
            while idle and start < len(jobs):
                child = idle.pop()
                if not self._start_job(child, jobs[start]):
                    idle.append(child)
                start += 1
        if start < len(jobs):
            self._queue.extend(jobs[start:] if start else jobs)
            self.queued += len(jobs) - start
            if self.on_waiting is not None:
                self.on_waiting()

    def close(self) -> None:
        """The pool closed: every waiter returns."""
        self.phase = Phase.CLOSED
        self.waiters.close()

    # ================================================================ messages

    def child_message(self, child: Child, kind: int, ident: int, payload: bytes) -> None:
        """Whatever a child says besides a job's end: a message or progress of its running
        job (dropped unless that job is still its current one and someone listens), the
        answer to a delivery, a notice or a publish."""
        if kind in (_MESSAGE, _PROGRESS):
            job = child.job
            if job is None or job.id != ident or job.state is _ENDED:
                return  # a late message never reaches the next caller
            listener = job.listener
            if listener is not None:
                if kind == _MESSAGE:
                    listener.message(child, payload)
                else:
                    listener.progress_frame(payload)
        elif kind in (_REPLY, _REPLY_ERROR):
            delivery = child.delivery
            if delivery is None or delivery.id != ident:
                child.protocol_violation(f"a reply to message {ident}, which it was not given")
                return
            child.delivery = None
            if child.state is _BUSY:
                child.state = _IDLE
            delivery.answer(kind, payload, child)
            self.child_free(child)
        elif kind in (_NOTIFY, _PUBLISH):
            self.notices(child, kind, payload)
        elif kind == _ACTOR_EVENT:
            self.actor_events(child, payload)
        elif kind == _ACTOR_SNAPSHOT:
            job = child.job
            if job is not None and job.id == ident and job.actor is not None:
                job.actor.snapshot = payload
        elif kind == _REPLACE_ME:
            # Its handler asked for a fresh child: its answer comes next, then child_free
            # asks retire_if_due, which retires it (the replacement starts then).
            mark(child, ident, payload)
        else:
            child.protocol_violation(f"unexpected frame kind {kind}")

    def pin(self, child: Child, job: Job, *, first: bool = False) -> None:
        """Queue an actor's job on its child (``first``: ahead of the rest, an actor's start
        before its calls); an idle child takes it at once."""
        assert child.pinned is not None
        if first:
            child.pinned.appendleft(job)
        else:
            child.pinned.append(job)
        if child.state is _IDLE:
            self.child_free(child)

    def deliver(self, child: Child, delivery: Delivery) -> None:
        """Give ``delivery`` to ``child``: now if it is idle, else right after its current
        job (or its start) and before its next job."""
        if child.state is _IDLE and not child.inbox and child in self._idle:
            if delivery.future is None:
                child.send_frame(delivery.frame)  # it runs before any frame sent after it
                return
            self.forget(child)
            self._start_delivery(child, delivery)
        else:
            child.inbox.append(delivery)

    def _deliver_inbox(self, child: Child) -> bool:
        """Send ``child`` its waiting messages: those nobody waits on go out at once (the
        child runs each before the next frame it reads); one that is answered makes the
        child busy until it answers (True)."""
        inbox = child.inbox
        while inbox:
            delivery = inbox.popleft()
            if delivery.future is not None:
                self._start_delivery(child, delivery)
                return True
            child.send_frame(delivery.frame)
        return False

    def withdraw(self, child: Child, delivery: Delivery) -> None:
        """Take back a delivery its asker gave up on, if the child has not got it yet."""
        with contextlib.suppress(ValueError):
            child.inbox.remove(delivery)

    def _start_delivery(self, child: Child, delivery: Delivery) -> None:
        child.state = _BUSY
        child.delivery = delivery
        child.send_frame(delivery.frame)
