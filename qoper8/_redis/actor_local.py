"""What a Redis host needs of its local pool's actors, whatever the pool (one worker module,
or roles): the actor types its children declared, its free actor slots, creating an actor
from a snapshot moved from another host, and reading an actor's latest snapshot.

The pool is handed in (transports never import it); this reads the engine's actor rooms,
which own every decision about children, restarts and calls.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ..errors import ActorNotFound

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._engine.actor_ref import ActorRef, Actors

__all__ = ["LocalActors"]


class LocalActors:
    """The local pool's actors, seen by a Redis host (see the module docstring)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def _pools(self) -> list[Any]:
        """The pools that hold actors: the pool itself, or each of its roles."""
        roles = getattr(self._pool, "roles", None) or ()
        return [self._pool.role(name) for name in roles] or [self._pool]

    @property
    def supported(self) -> bool:
        """Whether the pool has actors at all (a test double may not)."""
        return getattr(self._pool, "actors", None) is not None

    def types(self) -> set[str]:
        """The actor types the children declared (empty until a child has started)."""
        known: set[str] = set()
        for pool in self._pools():
            dispatcher = getattr(pool, "_dispatcher", None)
            known.update(getattr(dispatcher, "actor_types", None) or ())
        return known

    def names(self) -> set[str]:
        """The names of the actors the pool holds (any face's: this host's Redis ones, and
        any made locally)."""
        return {info.name for info in self._pool.actors.list()}

    def capacity(self) -> int:
        """``max_actors`` over the pool (summed over its roles)."""
        return sum(int(pool.config.max_actors) for pool in self._pools())

    def _actors_of(self, name: str) -> Actors:
        for pool in self._pools():
            if pool.actors._holds(name):
                actors: Actors = pool.actors
                return actors
        raise ActorNotFound(f"no actor named {name!r}")

    def _actors_for_type(self, type_name: str) -> Actors:
        pools = self._pools()
        for pool in pools:
            if type_name in (pool._dispatcher.actor_types or ()):
                actors: Actors = pool.actors
                return actors
        only: Actors = pools[0].actors
        return only  # it refuses the unknown type (with the types it knows)

    async def create(
        self,
        type_name: str,
        name: str,
        args: Mapping[str, Any],
        max_restarts: int,
        snapshot: bytes | None,
    ) -> ActorRef:
        """Start an actor here: from ``snapshot`` when it moved with one (as a restart
        would), else from ``args``.

        Raises:
            InvalidAction, JobFailed, ActorUnavailable, ActorExists: as ``create``.
        """
        actors = self._actors_for_type(type_name)
        return await actors._create(type_name, name, args, "error", max_restarts, snapshot)

    def snapshot(self, name: str) -> bytes | None:
        """The actor's state after its last completed call (JSON), if its class keeps one."""
        try:
            return self._actors_of(name)._actor(name).snapshot
        except ActorNotFound:
            return None

    async def destroy(self, name: str) -> None:
        """Stop the local actor (a running call finishes); nothing if it is gone."""
        with contextlib.suppress(ActorNotFound):
            await self._actors_of(name).destroy(name)
