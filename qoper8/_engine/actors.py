"""``ActorHost``: the master's side of actors. It keeps the registry (one atomic step from a
name to an actor: the loop runs it between two awaits), places each actor on an *actor child*
(never a child that serves ordinary actions: a warm idle one adopted when there is one, else a
new one), starts it, queues its calls on that child, restarts it after its child died (from
its last snapshot when it keeps one) and stops it.

Calls are ``ActorJob``s: the dispatcher runs them like any job (deadline, cancellation, typed
errors) but only on their actor's child, one at a time, in arrival order.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..errors import ActorUnavailable, ChildDied, Qoper8Error
from . import protocol as proto
from .job import ActorJob, JobKind, JobState

if TYPE_CHECKING:
    from .actor_children import ActorChildren
    from .actor_ref import Subscription
    from .child import Child
    from .dispatcher import Dispatcher
    from .supervisor import Supervisor

__all__ = ["Actor", "ActorHost", "ActorState"]

logger = logging.getLogger("qoper8")

# A restart waits this long, doubling per restart up to MAX (as children's respawns do).
RESTART_BACKOFF_BASE: Final = 0.1
RESTART_BACKOFF_MAX: Final = 5.0
_QUEUED: Final = JobState.QUEUED


class ActorState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    UNAVAILABLE = "unavailable"  # restarts used up, or its start failed
    STOPPED = "stopped"  # destroyed


# Bound once for ActorHost.call, the hot path: in Python 3.11 reading a member off an Enum
# class costs about five plain attribute reads.
_READY: Final = ActorState.READY
_UNAVAILABLE: Final = ActorState.UNAVAILABLE
_STOPPED: Final = ActorState.STOPPED
_ACTOR_CALL: Final = JobKind.ACTOR_CALL


class Actor:
    """One named actor, as the master knows it."""

    def __init__(self, name: str, type_name: str, args: dict[str, Any], max_restarts: int) -> None:
        self.name = name
        self.type = type_name
        self.args = args
        self.max_restarts = max_restarts
        self.restarts = 0
        self.state = ActorState.STARTING
        self.child: Child | None = None
        self.instance = 0  # the id of the ACTOR_START job that made it on its child
        self.snapshot: bytes | None = None  # its state after its last completed call
        self.waiting: deque[ActorJob] = deque()  # calls while it has no child
        self.subscribers: set[Subscription] = set()
        self.error: Qoper8Error | None = None
        self.calls = 0
        self.created = time.time()
        # Settled by its first start: the creator waits for it (and for its error).
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def will_restart(self) -> bool:
        return self.state is not ActorState.STOPPED and self.restarts < self.max_restarts


class ActorHost:
    """Places, starts, calls, restarts and stops actors (see the module docstring)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        pool_children: Supervisor,
        actor_children: ActorChildren,
        *,
        max_per_child: int,
    ) -> None:
        self._dispatcher = dispatcher
        self._pool_children = pool_children
        self._children = actor_children
        self._max_per_child = max_per_child
        self.actors: dict[str, Actor] = {}
        self.restarts = 0  # of every actor since the pool started (for /metrics)
        self._pending: deque[Actor] = deque()
        self._timers: set[asyncio.TimerHandle] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        actor_children.on_ready = self._child_ready
        actor_children.on_exit = self._child_exited
        dispatcher.actor_events = self._event

    # ------------------------------------------------------------ placing and starting

    def add(self, actor: Actor) -> None:
        """Register ``actor`` (its name is free) and start it."""
        self.actors[actor.name] = actor
        for fut in self._waiters.pop(actor.name, ()):
            if not fut.done():
                fut.set_result(None)
        self._pending.append(actor)
        self._place_pending()

    async def wait_named(self, name: str, timeout: float | None) -> None:
        """Wait until an actor named ``name`` exists (``TimeoutError`` after ``timeout``)."""
        if name in self.actors:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, []).append(fut)
        async with asyncio.timeout(timeout):
            await fut

    def _place_pending(self) -> None:
        while self._pending:
            actor = self._pending[0]
            if actor.state is ActorState.STOPPED:
                self._pending.popleft()
                continue
            host = self._host()
            if host is None:
                return  # a new actor child is on its way: _child_ready places it
            self._pending.popleft()
            self._start_on(actor, host)

    def _host(self) -> Child | None:
        """A ready actor child with a free slot; else a warm idle pool child adopted; else
        None, after asking for a new actor child (once per pending actor)."""
        for child in self._children.children.values():
            free = len(child.actors) < self._max_per_child
            leaving = child.retiring or child.retire_requested
            if free and child.was_ready and child.is_alive and not leaving:
                return child
        adopted = self._pool_children.give_idle_child()
        if adopted is not None:
            self._children.take_child(adopted)
            return adopted
        starting = sum(
            1 for c in self._children.children.values() if not c.was_ready and c.is_alive
        )
        if starting < len(self._pending):
            self._children.grow(1)
        return None

    def _child_ready(self, child: Child) -> None:
        self._place_pending()

    def _start_on(self, actor: Actor, child: Child) -> None:
        child.actors[actor.name] = actor
        actor.child = child
        body: dict[str, Any] = {"type": actor.type, "name": actor.name, "args": actor.args}
        if actor.snapshot is not None:
            body["state"] = orjson.Fragment(actor.snapshot)
        job = self._dispatcher.new_actor_job(
            JobKind.ACTOR_START, proto.dumps(body), f"{actor.name}.__start__", None, actor
        )
        actor.instance = job.id
        job.future.add_done_callback(lambda done: self._started(actor, child, job, done))
        self._dispatcher.pin(child, job, first=True)

    def _started(
        self, actor: Actor, child: Child, job: ActorJob, done: asyncio.Future[Any]
    ) -> None:
        if done.cancelled():
            return
        exc = done.exception()  # retrieved even when nobody else looks at it
        if actor.child is not child or actor.state is ActorState.STOPPED:
            return  # its child died first (_child_exited restarts it), or it was destroyed
        if exc is None:
            actor.state = ActorState.READY
            actor.error = None
            if not actor.started.done():
                actor.started.set_result(None)
            while actor.waiting:  # calls made while it started, in their order
                call = actor.waiting.popleft()
                if call.state is _QUEUED:
                    self._dispatcher.pin(child, call)
            return
        if isinstance(exc, ChildDied):
            return  # _child_exited decides
        # __init__ or restore raised, or refused its arguments: it cannot run.
        logger.warning("actor %r failed to start on %s: %s", actor.name, child.describe(), exc)
        del child.actors[actor.name]
        actor.child = None
        self._give_up(actor, exc if isinstance(exc, Qoper8Error) else Qoper8Error(str(exc)))
        self._release(child)

    # ------------------------------------------------------------ calls

    def call(self, actor: Actor, payload: bytes, method: str, timeout: float | None) -> ActorJob:
        """Queue a call: on its child if the actor is ready, else until it is (a start or a
        restart: it waits within its own deadline).

        Raises:
            ActorUnavailable: it cannot take calls any more.
        """
        state = actor.state
        if state is _UNAVAILABLE or state is _STOPPED:
            raise self._unavailable(actor)
        job = self._dispatcher.new_actor_job(
            _ACTOR_CALL, payload, f"{actor.name}.{method}", timeout, actor
        )
        actor.calls += 1
        child = actor.child
        if state is _READY and child is not None:
            self._dispatcher.pin(child, job)
        else:
            actor.waiting.append(job)
        return job

    @staticmethod
    def _unavailable(actor: Actor) -> ActorUnavailable:
        if actor.state is ActorState.STOPPED:
            return ActorUnavailable(f"actor {actor.name!r} was destroyed")
        why = f": {actor.error}" if actor.error is not None else ""
        return ActorUnavailable(
            f"actor {actor.name!r} is unavailable (restarts used: {actor.restarts} of "
            f"{actor.max_restarts}){why}"
        )

    # ------------------------------------------------------------ deaths and restarts

    def _child_exited(self, child: Child) -> None:
        """An actor child died: its actors restart elsewhere (their queued calls wait for
        them) or, with no restarts left, become unavailable."""
        pinned = child.pinned or deque()
        for actor in list(child.actors.values()):
            actor.child = None
            mine = [
                j
                for j in pinned
                if isinstance(j, ActorJob) and j.actor is actor and j.state is _QUEUED
            ]
            calls = [j for j in mine if j.kind is JobKind.ACTOR_CALL]
            for start in (j for j in mine if j.kind is JobKind.ACTOR_START):
                start.end()
                start.future.cancel()
            actor.waiting.extendleft(reversed(calls))
            if actor.state is ActorState.STOPPED:
                continue
            if actor.will_restart:
                actor.restarts += 1
                self.restarts += 1
                actor.state = ActorState.RESTARTING
                delay = min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_BASE * 2 ** (actor.restarts - 1))
                logger.warning(
                    "actor %r lost %s; restart %d of %d in %.1fs%s",
                    actor.name,
                    child.describe(),
                    actor.restarts,
                    actor.max_restarts,
                    delay,
                    " from its snapshot" if actor.snapshot is not None else "",
                )
                self._later(delay, actor)
            else:
                how = ChildDied(f"{child.describe()} died with actor {actor.name!r} on it")
                self._give_up(actor, how)
        child.actors.clear()
        if child.pinned is not None:
            child.pinned.clear()
        self._children.shrink_to_fit(self._needed())

    def _later(self, delay: float, actor: Actor) -> None:
        loop = asyncio.get_running_loop()

        def go() -> None:
            self._timers.discard(handle)
            if actor.state is ActorState.RESTARTING:
                self._pending.append(actor)
                self._place_pending()

        handle = loop.call_later(delay, go)
        self._timers.add(handle)

    def _give_up(self, actor: Actor, why: Qoper8Error) -> None:
        actor.state = ActorState.UNAVAILABLE
        actor.error = why
        if not actor.started.done():
            actor.started.set_exception(why)
            actor.started.exception()  # the creator may have gone: never "not retrieved"
        while actor.waiting:
            call = actor.waiting.popleft()
            if call.state is _QUEUED:
                call.fail(self._unavailable(actor))

    # ------------------------------------------------------------ stopping

    def stop(self, actor: Actor) -> None:
        """Destroy ``actor``: its queued calls fail, a running one finishes, its name is
        free again, and its child retires when no actor is left on it."""
        if self.actors.get(actor.name) is actor:
            del self.actors[actor.name]
        actor.state = ActorState.STOPPED
        if not actor.started.done():
            actor.started.set_exception(self._unavailable(actor))
            actor.started.exception()
        for call in list(actor.waiting):
            if call.state is _QUEUED:
                call.fail(self._unavailable(actor))
        actor.waiting.clear()
        child = actor.child
        actor.child = None
        if child is not None:
            for job in child.pinned or ():
                if job.actor is actor and job.state is _QUEUED:
                    job.fail(self._unavailable(actor))
            child.actors.pop(actor.name, None)
            stop = proto.dumps({"actor": actor.name})
            child.send_frame(proto.frame(proto.Kind.ACTOR_STOP, actor.instance, stop))
            self._release(child)
        for sub in list(actor.subscribers):
            sub.close()

    def _release(self, child: Child) -> None:
        """A child with no actor left retires (the actor children shrink to what is
        needed)."""
        if not child.actors:
            self._children.retire_child(child, "no actor left on it")
        self._children.shrink_to_fit(self._needed())

    def _needed(self) -> int:
        live = sum(
            1
            for a in self.actors.values()
            if a.state not in (ActorState.UNAVAILABLE, ActorState.STOPPED)
        )
        return -(-live // self._max_per_child)

    def placement(self) -> dict[int, tuple[str, ...]]:
        """Child id -> the names of the actors it holds (for statistics)."""
        held: dict[int, list[str]] = {}
        for actor in self.actors.values():
            if actor.child is not None:
                held.setdefault(actor.child.id, []).append(actor.name)
        return {child_id: tuple(names) for child_id, names in held.items()}

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for actor in self.actors.values():
            for sub in list(actor.subscribers):
                sub.close()

    # ------------------------------------------------------------ events

    def _event(self, child: Child, payload: bytes) -> None:
        try:
            info = proto.loads(payload)
            actor = child.actors.get(info["actor"])
            event = str(info["event"])
        except (ValueError, KeyError, TypeError) as exc:
            child.protocol_violation(f"bad actor event: {exc}")
            return
        if actor is None:
            return
        for sub in list(actor.subscribers):
            sub.push(event, info.get("payload"))
