"""``Job``: one action (or function call) in the pool's care, from submit to its end.

A plain mutable record owned by the event loop thread; it does no I/O. Its state only moves
forward, and whichever event ends it first (result, error, deadline, cancel, child death) wins:
every later event sees ``ended`` and leaves it alone.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

    from .actors import Actor
    from .child import Child


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    ENDED = "ended"


class JobKind(enum.Enum):
    ACTION = "action"  # JSON action, answered by a handler
    CALL = "call"  # pickled function call (Pool.run / executor)
    ACTOR_START = "actor_start"  # make an actor on its child (the job's id names it)
    ACTOR_CALL = "actor_call"  # one method call of an actor, pinned to its child


# Bound once: reading a member off an Enum class is slow in Python 3.11 (one per job here).
_QUEUED = JobState.QUEUED
_ENDED = JobState.ENDED


class Listener(Protocol):
    """What receives a running job's messages and progress, on the loop thread."""

    def message(self, child: Child, payload: bytes) -> None: ...

    def progress_frame(self, payload: bytes) -> None: ...


class Job:
    """One job. ``future`` resolves with the result or a typed error."""

    __slots__ = (
        "action_type",
        "child",
        "deadline",
        "frame",
        "future",
        "handle",
        "id",
        "kind",
        "listener",
        "started_at",
        "state",
        "submitted_at",
        "timer",
    )

    def __init__(
        self,
        job_id: int,
        kind: JobKind,
        frame: bytes,
        future: asyncio.Future[Any],
        submitted_at: float,
        action_type: str,
    ) -> None:
        self.id = job_id
        self.kind = kind
        self.frame = frame  # the whole ACTION or CALL frame, header included, built once
        self.future = future
        self.submitted_at = submitted_at
        self.action_type = action_type
        self.state = _QUEUED
        self.started_at = 0.0
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.child: Child | None = None
        # An executor call's concurrent.futures.Future, moved to RUNNING at dispatch.
        self.handle: concurrent.futures.Future[Any] | None = None
        # Who gets the job's messages and progress (a stream, an on_progress callback);
        # without one, they are dropped as they arrive.
        self.listener: Listener | None = None

    @property
    def ended(self) -> bool:
        return self.state is _ENDED

    def end(self) -> None:
        """Mark the job over and stop its deadline timer; the caller settles the future."""
        self.state = _ENDED
        self.child = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def resolve(self, result: Any) -> None:
        self.end()
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, exc: BaseException) -> None:
        self.end()
        if not self.future.done():
            self.future.set_exception(exc)

    # The actor an ActorJob belongs to; ordinary jobs have none (a class attribute, so that
    # they pay no slot for it).
    actor: Actor | None = None


class ActorJob(Job):
    """A job pinned to one actor's child: its start, or one of its calls. It waits in that
    child's own queue (or the actor's, while the actor has no child), never in the pool's."""

    __slots__ = ("actor",)

    def __init__(
        self,
        job_id: int,
        kind: JobKind,
        frame: bytes,
        future: asyncio.Future[Any],
        submitted_at: float,
        action_type: str,
        actor: Actor,
    ) -> None:
        super().__init__(job_id, kind, frame, future, submitted_at, action_type)
        self.actor = actor
