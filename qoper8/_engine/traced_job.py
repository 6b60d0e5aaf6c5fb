"""``TracedJob``: a job submitted while an OpenTelemetry span was active in its caller.

It carries the caller's trace context to its child (a TRACE frame written together with its
own, so that a handler's spans are children of the caller's) and, when it ends, records two
spans under the caller's span from the timestamps every job keeps anyway: "qoper8 queued"
(submit to dispatch) and "qoper8 run" (dispatch to answer). Nothing is timed or recorded on
the way, and only such jobs pay for any of it: ``Jobs._new_job`` makes one only when
OpenTelemetry's context is set, which costs a plain job one C call. A batch (``Pool.map``)
makes the same check once for all its jobs (``batch_trace``); its traced jobs have a
``TracedSlot``, which records their spans when it is settled, as a job submitted from
another thread has a ``TracedHandleSlot``. Such a job dropped before it ended (its caller
left, or its batch raised its first error) is never settled, so it records no spans.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

from ..errors import ChildDied, InvalidAction, JobFailed, JobTimeout, PoolClosed
from . import protocol as proto
from .batch import BatchSlot
from .job import Job
from .thread_handle import HandleSlot
from .tracing import carrier

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Mapping

    from .batch import Batch
    from .child import Child
    from .job import JobKind
    from .thread_handle import ThreadHandle

__all__ = [
    "QUEUED_SPAN",
    "RUN_SPAN",
    "BatchTrace",
    "TracedHandleSlot",
    "TracedJob",
    "TracedSlot",
    "batch_trace",
    "traced_job",
]

logger = logging.getLogger("qoper8")

# Span names and attribute keys: dashboards and alerts are built on them, so renaming one
# breaks those (they follow OpenTelemetry's lower-case, dotted convention).
QUEUED_SPAN: Final = "qoper8 queued"
RUN_SPAN: Final = "qoper8 run"
ACTION_TYPE: Final = "qoper8.action_type"
JOB_ID: Final = "qoper8.job_id"
CHILD_ID: Final = "qoper8.child_id"
PID: Final = "qoper8.pid"
OUTCOME: Final = "qoper8.outcome"

_TRACE_FRAME: Final = int(proto.Kind.TRACE)
_SLOT_CHILD: Final[Any] = vars(Job)["child"]  # the slot behind Job.child, wrapped below
_tracer: Any = None


class TracedJob(Job):
    """A job whose caller had an active span (see the module docstring). Made with the
    caller's OpenTelemetry ``context``; without a valid span in it, it is a plain job."""

    __slots__ = ("context", "ran_on")

    def __init__(
        self,
        job_id: int,
        kind: JobKind,
        frame: bytes,
        future: asyncio.Future[Any] | TracedSlot | TracedHandleSlot,
        submitted_at: float,
        action_type: str,
        context: Mapping[str, object],
        body: bytes | None = None,
    ) -> None:
        # The child that ran it: Job.child is cleared when the job ends, before any span
        # could read it.
        self.ran_on: Child | None = None
        if body is None:  # the TRACE frame's body: a batch found it once for all its jobs
            carried = carrier(context)
            body = None if carried is None else proto.dumps(carried)
        self.context = context if body is not None else None
        if body is not None:
            frame = proto.HEADER.pack(len(body), _TRACE_FRAME, job_id, 0) + body + frame
            if isinstance(future, TracedSlot | TracedHandleSlot):
                future.job = self
            else:
                future.add_done_callback(self._record)
        # A slot stands in for a future (BatchSlot's docstring).
        super().__init__(job_id, kind, frame, future, submitted_at, action_type)  # type: ignore[arg-type]

    # Dispatch sets ``child``, ending clears it: remember the child for the spans.
    @property
    def child(self) -> Child | None:
        found: Child | None = _SLOT_CHILD.__get__(self)
        return found

    @child.setter
    def child(self, child: Child | None) -> None:
        _SLOT_CHILD.__set__(self, child)
        if child is not None:
            self.ran_on = child

    def _record(self, future: asyncio.Future[Any]) -> None:
        """The job's future is done: record its spans."""
        if future.cancelled():
            self.settled(None, cancelled=True)  # the caller went away
        else:
            self.settled(future.exception())

    def settled(self, error: BaseException | None, *, cancelled: bool = False) -> None:
        """The job ended (with ``error``): record its spans (never fails the job)."""
        try:
            outcome = ("cancelled", None) if cancelled else _outcome(error)
            _record_spans(self, *outcome)
        except Exception:
            logger.exception("job %s: its OpenTelemetry spans could not be recorded", self.id)


class TracedSlot(BatchSlot):
    """A traced batch job's slot: settling it records the job's spans, as a traced job's
    future does with its done-callback (a slot has no callbacks)."""

    __slots__ = ("job",)

    def __init__(self, batch: Batch, index: int) -> None:
        super().__init__(batch, index)
        self.job: TracedJob | None = None

    def set_result(self, value: Any) -> None:
        super().set_result(value)
        if self.job is not None:
            self.job.settled(None)

    def set_exception(self, error: BaseException) -> None:
        super().set_exception(error)
        if self.job is not None:
            self.job.settled(error)


class TracedHandleSlot(HandleSlot):
    """A traced job's slot when it was submitted from another thread (``qoper8.sync.Pool``,
    the executor): settling it records the job's spans, as ``TracedSlot`` does."""

    __slots__ = ("job",)

    def __init__(self, handle: ThreadHandle) -> None:
        super().__init__(handle)
        self.job: TracedJob | None = None

    def set_result(self, value: Any) -> None:
        super().set_result(value)
        if self.job is not None:
            self.job.settled(None)

    def set_exception(self, error: BaseException) -> None:
        super().set_exception(error)
        if self.job is not None:
            self.job.settled(error)


def traced_job(
    job_id: int,
    kind: JobKind,
    frame: bytes,
    loop: asyncio.AbstractEventLoop,
    handle: ThreadHandle | None,
    submitted_at: float,
    action_type: str,
    context: Mapping[str, object],
) -> TracedJob:
    """``Jobs._new_job``'s job when OpenTelemetry's context is set: its future, or the slot
    of its thread's handle, records its spans."""
    future = loop.create_future() if handle is None else TracedHandleSlot(handle)
    return TracedJob(job_id, kind, frame, future, submitted_at, action_type, context)


class BatchTrace:
    """The caller's trace for every job of one batch: its context and the TRACE frame's
    body, found once."""

    __slots__ = ("body", "context")

    def __init__(self, context: Mapping[str, object], body: bytes) -> None:
        self.context = context
        self.body = body

    def job(
        self,
        job_id: int,
        kind: JobKind,
        frame: bytes,
        batch: Batch,
        index: int,
        submitted_at: float,
        action_type: str,
    ) -> TracedJob:
        slot = TracedSlot(batch, index)
        return TracedJob(
            job_id, kind, frame, slot, submitted_at, action_type, self.context, self.body
        )


def batch_trace(context: Mapping[str, object]) -> BatchTrace | None:
    """The trace a batch made in ``context`` carries, or None when no valid span is active
    in it (its jobs are then plain jobs)."""
    carried = carrier(context)
    return None if carried is None else BatchTrace(context, proto.dumps(carried))


def _outcome(error: BaseException | None) -> tuple[str, BaseException | None]:
    """The job's outcome as the spans name it, and the error it ended with."""
    if error is None:
        return "completed", None
    if isinstance(error, JobFailed):
        return "failed", error
    if isinstance(error, InvalidAction):
        return "invalid", error
    if isinstance(error, JobTimeout):
        return "timed_out", error
    if isinstance(error, ChildDied):
        return "died", error
    if isinstance(error, PoolClosed):
        return "cancelled", error  # the pool closed before the job could end
    return "failed", error  # StartFailed: no child could start to run it


def _record_spans(job: TracedJob, outcome: str, error: BaseException | None) -> None:
    global _tracer
    if _tracer is None:
        from opentelemetry import trace

        from .. import __version__

        _tracer = trace.get_tracer("qoper8", __version__)
    # Monotonic seconds (the job's clock) to the epoch nanoseconds spans take.
    now = time.time_ns()
    offset = now - time.monotonic_ns()
    attributes: dict[str, str | int] = {ACTION_TYPE: job.action_type, JOB_ID: job.id}
    child = job.ran_on
    if child is not None:
        attributes[CHILD_ID] = child.id
        if child.pid is not None:
            attributes[PID] = child.pid
    queued = _tracer.start_span(
        QUEUED_SPAN,
        context=job.context,
        attributes=attributes,
        start_time=int(job.submitted_at * 1e9) + offset,
    )
    if child is None:  # it never reached a child: the queued span tells how it ended
        _end(queued, outcome, error, now)
        return
    dispatched = int(job.started_at * 1e9) + offset
    queued.end(end_time=dispatched)
    run = _tracer.start_span(
        RUN_SPAN, context=job.context, attributes=attributes, start_time=dispatched
    )
    _end(run, outcome, error, now)


def _end(span: Any, outcome: str, error: BaseException | None, now: int) -> None:
    """End ``span`` with the job's outcome; an error makes its status ERROR and is recorded
    as the span's exception (a handler's with the child's type, message and traceback)."""
    span.set_attribute(OUTCOME, outcome)
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        remote: dict[str, str] = {}
        if isinstance(error, JobFailed):
            remote = {
                "exception.type": error.remote_type or type(error).__name__,
                "exception.message": error.remote_message or str(error),
                "exception.stacktrace": error.remote_traceback or "",
            }
        span.record_exception(error, attributes=remote, timestamp=now)
    span.end(end_time=now)
