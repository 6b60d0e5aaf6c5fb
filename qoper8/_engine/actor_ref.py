"""The public face of actors: ``pool.actors`` (``Actors``: create, get, destroy, list), a
handle on one (``ActorRef``: call, events) and what subscribers get (``ActorEvent``).

A handle names an actor, not a process: calls made while it restarts wait for it (within
their own deadlines), and after a destroy and a create of the same name, it reaches the new
one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from .._types import DEFAULT
from ..errors import ActorExists, ActorNotFound, ActorUnavailable, InvalidAction
from . import protocol as proto
from .actors import Actor, ActorState
from .stats import ActorInfo

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from .._types import JSONValue
    from .actors import ActorHost
    from .dispatcher import Dispatcher

__all__ = ["ActorEvent", "ActorInfo", "ActorRef", "Actors", "Subscription"]

# Events a subscriber may fall behind by before the oldest are dropped (and counted).
EVENT_BUFFER: Final = 1000
_UNSET: Final[Any] = DEFAULT
MAX_NAME: Final = 200
_dumps: Final = orjson.dumps
_encode_model: Final = proto.encode_model


@dataclass(frozen=True, slots=True)
class ActorEvent:
    """What an actor emitted with ``qoper8.actor_event(event, payload)``; ``missed`` counts
    the events dropped since the subscriber's last read because it fell a buffer behind."""

    event: str
    payload: JSONValue
    missed: int = 0


class Subscription:
    """An actor's events as they come, in order (``async for event in ref.events()``); use
    it as ``async with`` (or call ``close()``) to unsubscribe."""

    def __init__(self, actor: Actor, buffer: int) -> None:
        self._actor = actor
        self._events: deque[tuple[str, Any]] = deque()
        self._buffer = buffer
        self._missed = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        actor.subscribers.add(self)

    def push(self, event: str, payload: Any) -> None:
        if len(self._events) >= self._buffer:
            self._events.popleft()  # a slow subscriber loses the oldest, never the actor
            self._missed += 1
        self._events.append((event, payload))
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ActorEvent:
        while not self._events:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event, payload = self._events.popleft()
        missed, self._missed = self._missed, 0
        return ActorEvent(event, payload, missed)

    def close(self) -> None:
        """Unsubscribe: the iteration ends after the events already here."""
        self._closed = True
        self._actor.subscribers.discard(self)
        self._wake()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ActorRef:
    """A handle on a named actor (``pool.actors.create`` or ``get``)."""

    def __init__(self, name: str, actors: Actors) -> None:
        self.name = name
        self._actors = actors

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r}>"

    async def call(
        self,
        method: str,
        args: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        **params: Any,
    ) -> JSONValue:
        """Call one of the actor's public methods and return its result. Calls run one at a
        time per actor child, in arrival order.

        Args:
            method: the method's name.
            args: its arguments as a mapping (for one named ``timeout``, say).
            timeout: seconds from now until ``JobTimeout``; a running call past it kills the
                actor's child (its restart policy then applies). The pool's ``timeout`` when
                omitted.
            kill_on_cancel: as for ``submit``.
            **params: its arguments.

        Raises:
            ActorNotFound: no actor has this name. ActorUnavailable: it cannot take calls.
            InvalidAction: no such method, or arguments it refuses. JobFailed: the method
            raised (the actor lives on). ActorDied: its child died during the call.
            JobTimeout: the deadline passed.
        """
        # The hot path (bench.actors measures it against a plain submit): one dict lookup,
        # one orjson call; every refusal, and its wording, goes through encode_value.
        actors = self._actors
        name = self.name
        actor = actors._host.actors.get(name)
        if actor is None:
            raise ActorNotFound(f"no actor named {name!r}")
        body = {"actor": name, "method": method, "args": {**args, **params} if args else params}
        try:
            payload = _dumps(body, default=_encode_model)
        except TypeError:
            payload = b"null"  # not JSON: encode_value says why
        if payload.find(b"null") >= 0:  # orjson writes NaN and Infinity as null: look closer
            try:
                payload = proto.encode_value(body, f"the call {name}.{method}", 1 << 62)
            except (TypeError, ValueError) as exc:
                raise InvalidAction(str(exc)) from None
        job = actors._host.call(actor, payload, method, timeout)
        try:
            result: JSONValue = await job.future
        except asyncio.CancelledError:
            actors._dispatcher.cancel(job, kill_on_cancel)
            raise
        return result

    def events(self, *, buffer: int = EVENT_BUFFER) -> Subscription:
        """Subscribe to the actor's events from now on (``qoper8.actor_event``).

        Raises:
            ActorNotFound: no actor has this name.
        """
        return Subscription(self._actors._actor(self.name), buffer)

    def info(self) -> ActorInfo:
        """Where the actor is and how it is doing."""
        return self._actors._info(self._actors._actor(self.name))


class Actors:
    """The named actors of a pool (``pool.actors``)."""

    def __init__(self, host: ActorHost, dispatcher: Dispatcher, max_actors: int) -> None:
        self._host = host
        self._dispatcher = dispatcher
        self._max_actors = max_actors

    def _holds(self, name: str) -> bool:
        return name in self._host.actors

    def _actor(self, name: str) -> Actor:
        actor = self._host.actors.get(name)
        if actor is None:
            raise ActorNotFound(f"no actor named {name!r}")
        return actor

    async def create(
        self,
        type: str,
        name: str,
        *,
        args: Mapping[str, Any] | None = None,
        if_exists: Literal["error", "get"] = "error",
        max_restarts: int = 0,
    ) -> ActorRef:
        """Create an actor of ``type`` named ``name`` on an actor child, and return a handle
        once it has started. Get-or-create is one atomic step: any number of concurrent
        ``create(..., if_exists="get")`` of one name make exactly one actor.

        Args:
            type: a name the worker module registered with ``@worker.actor``.
            name: the actor's name in this pool (any text up to 200 characters).
            args: its ``__init__``'s arguments (JSON).
            if_exists: ``"error"`` raises ActorExists for a taken name; ``"get"`` returns
                the existing actor (once it has started).
            max_restarts: times it is started again after its child dies (from its last
                snapshot when its class keeps one, else from ``args``).

        Raises:
            ActorExists: the name is taken (``if_exists="error"``).
            InvalidAction: an unknown type, arguments its ``__init__`` refuses, not JSON.
            JobFailed: its ``__init__`` raised. ActorUnavailable: ``max_actors`` reached.
        """
        return await self._create(type, name, args, if_exists, max_restarts, None)

    async def _create(
        self,
        type: str,
        name: str,
        args: Mapping[str, Any] | None,
        if_exists: Literal["error", "get"],
        max_restarts: int,
        snapshot: bytes | None,
    ) -> ActorRef:
        """``create``, with the state of an actor moved from another host (Redis mode): it
        starts from ``snapshot`` (JSON) as a restart would."""
        _check_name(name)
        existing = self._host.actors.get(name)
        if existing is not None:
            if if_exists != "get":
                raise ActorExists(f"an actor named {name!r} exists already ({existing.type})")
            await asyncio.shield(existing.started)
            return ActorRef(name, self)
        self._check_type(type)
        if len(self._host.actors) >= self._max_actors:
            raise ActorUnavailable(f"the pool holds max_actors={self._max_actors} actors")
        try:
            plain = proto.loads(proto.encode_value(dict(args or {}), "the actor's args", 1 << 62))
        except (TypeError, ValueError) as exc:
            raise InvalidAction(str(exc)) from None
        actor = Actor(name, type, plain, max_restarts)
        actor.snapshot = snapshot
        self._host.add(actor)  # the name is taken from here on, atomically
        try:
            await asyncio.shield(actor.started)
        except BaseException:
            if self._host.actors.get(name) is actor and actor.state is not ActorState.READY:
                self._host.stop(actor)  # a failed first start frees the name
            raise
        return ActorRef(name, self)

    def _check_type(self, type_name: str) -> None:
        """Refuse an actor type no child reported (nothing is imported for it)."""
        known = self._dispatcher.actor_types
        if known and type_name not in known:
            listed = ", ".join(sorted(known)) or "none"
            message = f"unknown actor type {type_name!r} (the worker module has: {listed})"
            raise InvalidAction(
                message, errors=[{"loc": ["type"], "msg": message, "type": "unknown_actor_type"}]
            )

    async def get(self, name: str, *, wait: float | None = None) -> ActorRef:
        """A handle on the actor named ``name``; with ``wait``, wait up to that many seconds
        for it to be created.

        Raises:
            ActorNotFound: no such actor (within ``wait``).
        """
        if name not in self._host.actors and wait:
            try:
                await self._host.wait_named(name, wait)
            except TimeoutError:
                raise ActorNotFound(f"no actor named {name!r} within {wait}s") from None
        self._actor(name)
        return ActorRef(name, self)

    async def destroy(self, name: str) -> None:
        """Destroy an actor: its queued calls fail with ActorUnavailable, a running call
        finishes, its subscribers' iterations end, and its name is free again.

        Raises:
            ActorNotFound: no such actor.
        """
        self._host.stop(self._actor(name))

    def list(self) -> list[ActorInfo]:
        """Every actor: name, type, state, where it runs, restarts, queued calls."""
        return [self._info(a) for a in sorted(self._host.actors.values(), key=lambda a: a.name)]

    def _info(self, actor: Actor) -> ActorInfo:
        child = actor.child
        queued = len(actor.waiting)
        if child is not None and child.pinned is not None:
            queued += sum(1 for j in child.pinned if j.actor is actor and not j.ended)
        return ActorInfo(
            name=actor.name,
            type=actor.type,
            state=actor.state.value,
            child=child.id if child is not None else None,
            pid=child.pid if child is not None else None,
            restarts=actor.restarts,
            max_restarts=actor.max_restarts,
            queued=queued,
            calls=actor.calls,
            has_snapshot=actor.snapshot is not None,
        )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidAction(f"an actor's name is printable text of 1 to {MAX_NAME} characters")
