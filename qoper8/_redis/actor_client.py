"""``RedisPool.actors``: named actors on the hosts serving a queue, with the calls and errors
of ``pool.actors`` (``RedisActors``: create, get, destroy, list; ``RedisActorRef``: call,
events, info).

The registry is in Redis (``actor_scripts``); a host with a free actor slot starts each actor
and serves its calls (``actor_host``). A call waits in the actor's Redis list, so it survives
the actor moving to another host; its outcome comes back on the client's reply list, like a
job's, without an rq job of its own (see ``actor_serving`` for why). What reads the cluster's
state is async here (``list()``, ``info()``), as for ``Client.actors``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from .._engine import protocol as proto
from .._engine.actor_ref import EVENT_BUFFER, _check_name
from .._engine.stats import ActorInfo
from .._types import DEFAULT
from ..errors import (
    ActorExists,
    ActorNotFound,
    ActorUnavailable,
    InvalidAction,
    TransportError,
)
from .actor_calls import MAX_CALL_BYTES, WITHDRAW_TIMEOUT, _ActorsBase, _int, _text
from .actor_events import EventHub, RedisSubscription
from .actor_scripts import (
    CALLS_PREFIX,
    EVENTS_PREFIX,
    NAMED_PREFIX,
    RECORD_PREFIX,
    STARTING_PREFIX,
)
from .connection import is_redis_failure

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._types import JSONValue

__all__ = ["RedisActorRef", "RedisActors"]

_UNSET: Final[Any] = DEFAULT


def _unavailable_json(name: str, why: str) -> str:
    return orjson.dumps({"type": "ActorUnavailable", "message": f"actor {name!r} {why}"}).decode()


class RedisActors(_ActorsBase):
    """The named actors of the hosts serving a queue (``RedisPool.actors``)."""

    # ------------------------------------------------------------ the registry
    async def create(
        self,
        type: str,
        name: str,
        *,
        args: Mapping[str, Any] | None = None,
        if_exists: Literal["error", "get"] = "error",
        max_restarts: int = 0,
    ) -> RedisActorRef:
        """Register an actor of ``type`` named ``name``; a host with a free actor slot
        starts it, and this returns once it has. Get-or-create is one atomic step in Redis:
        any number of concurrent ``create(..., if_exists="get")`` of one name, from any
        number of clients, make exactly one actor. The wait is bounded by the RedisPool's
        ``timeout`` (then ActorUnavailable; the actor stays registered and starts when a
        host has room).

        Raises:
            ActorExists: the name is taken (``if_exists="error"``).
            InvalidAction: a type the hosts' worker module does not declare (refused by the
                host, nothing imported), arguments its ``__init__`` refuses, not JSON.
            JobFailed: its ``__init__`` raised. ActorUnavailable: no host started it in time.
            TransportError: Redis could not be reached.
        """
        _check_name(name)
        if not isinstance(type, str) or not type:
            raise InvalidAction(f"an actor type is a name, not {type!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise InvalidAction(f"max_restarts must be 0 or more, not {max_restarts!r}")
        try:
            body = proto.encode_value(dict(args or {}), "the actor's args", MAX_CALL_BYTES)
        except (TypeError, ValueError) as exc:
            raise InvalidAction(str(exc)) from None
        ident, waiter = self._waiter()
        future = self._client().expect(ident)
        keys = [
            self._keys(RECORD_PREFIX, name),
            self._registry,
            self._keys(STARTING_PREFIX, name),
            self._keys(NAMED_PREFIX, name),
            self._placing,
        ]
        argv = [name, type, body, max_restarts, time.time(), if_exists, waiter]
        try:
            answer = await self._run("create", keys, argv)
            code = int(answer[0])
            if code == 0:
                raise ActorExists(f"an actor named {name!r} exists already ({_text(answer[1])})")
            if code in (2, 3):
                await self._answer(future, self._pool.timeout)
        except TimeoutError:
            raise ActorUnavailable(
                f"no host started actor {name!r} within {self._pool.timeout}s (no free actor "
                f"slot on the hosts serving {self._pool.queue!r}?); it starts when one has room"
            ) from None
        finally:
            self._forget(ident)
        return RedisActorRef(name, self)

    async def get(self, name: str, *, wait: float | None = None) -> RedisActorRef:
        """A handle on the actor named ``name``; with ``wait``, wait up to that many seconds
        for it to be created (by any client).

        Raises:
            ActorNotFound: no such actor (within ``wait``).
        """
        if not isinstance(name, str):
            raise ActorNotFound(f"no actor named {name!r}")
        keys = [self._keys(RECORD_PREFIX, name), self._keys(NAMED_PREFIX, name)]
        if not wait:
            if not await self._run("get", keys, ["", 0]):
                raise ActorNotFound(f"no actor named {name!r}")
            return RedisActorRef(name, self)
        ident, waiter = self._waiter()
        future = self._client().expect(ident)
        try:
            if not await self._run("get", keys, [waiter, wait]):
                await self._answer(future, wait)
        except TimeoutError:
            raise ActorNotFound(f"no actor named {name!r} within {wait}s") from None
        finally:
            self._forget(ident)
        return RedisActorRef(name, self)

    async def destroy(self, name: str) -> None:
        """Destroy an actor: its queued calls fail with ActorUnavailable, a running call
        finishes, its subscribers' iterations end, and its name is free again.

        Raises:
            ActorNotFound: no such actor.
        """
        keys = [
            self._keys(RECORD_PREFIX, name),
            self._registry,
            self._keys(CALLS_PREFIX, name),
            self._keys(STARTING_PREFIX, name),
        ]
        gone = _unavailable_json(name, "was destroyed")
        argv = [name, gone, self._wake, self._keys(EVENTS_PREFIX, name)]
        if not await self._run("destroy", keys, argv):
            raise ActorNotFound(f"no actor named {name!r}")

    async def list(self) -> list[ActorInfo]:
        """Every actor of the hosts serving the queue: name, type, state, the child and pid
        on its host, restarts, queued calls."""
        wire = self._client().wire
        try:
            names = [_text(n) for n in await wire.command("ZRANGE", self._registry, 0, -1)]
            infos = await asyncio.gather(*(self._info(name) for name in sorted(names)))
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            raise TransportError(f"Redis could not be reached: {exc}") from exc
        return [info for info in infos if info is not None]

    async def _info(self, name: str) -> ActorInfo | None:
        wire = self._client().wire
        fields = ("type", "state", "child", "pid", "restarts", "max_restarts", "calls")
        record, running, snapshot, queued = await asyncio.gather(
            wire.command("HMGET", self._keys(RECORD_PREFIX, name), *fields),
            wire.command("HEXISTS", self._keys(RECORD_PREFIX, name), "running"),
            wire.command("HEXISTS", self._keys(RECORD_PREFIX, name), "snapshot"),
            wire.command("LLEN", self._keys(CALLS_PREFIX, name)),
        )
        kind, state, child, pid, restarts, max_restarts, calls = record
        if state is None:
            return None
        return ActorInfo(
            name=name,
            type=_text(kind),
            state=_text(state),
            child=_int(child),
            pid=_int(pid),
            restarts=_int(restarts) or 0,
            max_restarts=_int(max_restarts) or 0,
            queued=int(queued) + int(running),
            calls=_int(calls) or 0,
            has_snapshot=bool(snapshot),
        )

    def _events(self, name: str, buffer: int) -> RedisSubscription:
        if self._hub is None:
            self._hub = EventHub(self._pool.url)
        channel = self._keys(EVENTS_PREFIX, name).encode()
        return RedisSubscription(self._hub, channel, buffer, lambda: self.get(name))

    async def aclose(self) -> None:
        if self._withdrawals:
            await asyncio.wait(list(self._withdrawals), timeout=WITHDRAW_TIMEOUT)
        if self._hub is not None:
            await self._hub.aclose()


class RedisActorRef:
    """A handle on a named actor of the hosts serving a queue (``RedisPool.actors.create``
    or ``get``). It names the actor, not a host: calls follow it when it moves."""

    def __init__(self, name: str, actors: RedisActors) -> None:
        self.name = name
        self._actors = actors

    def __repr__(self) -> str:
        return f"<RedisActorRef {self.name!r}>"

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
        time per actor, in arrival order, on whichever host holds it.

        Args:
            method: the method's name.
            args: its arguments as a mapping (for one named ``timeout``, say).
            timeout: seconds from now until ``JobTimeout``; a running call past it kills the
                actor's child on its host (its restart policy then applies). The
                RedisPool's ``timeout`` when omitted.
            kill_on_cancel: as for ``submit``: a running call whose caller is cancelled is
                stopped (its child killed) at its host's next heartbeat.
            **params: its arguments.

        Raises:
            ActorNotFound: no actor has this name. ActorUnavailable: it cannot take calls.
            InvalidAction: no such method, or arguments it refuses. JobFailed: the method
            raised (the actor lives on). ActorDied: its child (or its host) died during the
            call. JobTimeout: the deadline passed. TransportError: Redis is unreachable.
        """
        if timeout is _UNSET:
            timeout = self._actors._pool.timeout
        return await self._actors._call(
            self.name, method, {**(args or {}), **params}, timeout, kill_on_cancel
        )

    def events(self, *, buffer: int = EVENT_BUFFER) -> RedisSubscription:
        """Subscribe to the actor's events, from any host (``qoper8.actor_event``): from
        when entering ``async with`` (or ``open()``, or the first iteration) returns.

        Raises:
            ActorNotFound: (on entering) no actor has this name.
        """
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise InvalidAction(f"buffer must be 1 or more events, not {buffer!r}")
        return self._actors._events(self.name, buffer)

    async def info(self) -> ActorInfo:
        """Where the actor is and how it is doing.

        Raises:
            ActorNotFound: no actor has this name.
        """
        info = await self._actors._info(self.name)
        if info is None:
            raise ActorNotFound(f"no actor named {self.name!r}")
        return info
