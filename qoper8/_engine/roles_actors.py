"""``RolesActors``: ``pool.actors`` of a pool of roles. An actor lives on the role whose
worker module declares its type; its name is unique across the roles, so ``get``,
``destroy`` and ``list`` need no role.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ActorExists, ActorNotFound, InvalidAction
from .actor_ref import Actors

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .actor_ref import ActorInfo, ActorRef
    from .pool import Pool

__all__ = ["RolesActors"]


class RolesActors(Actors):
    """The named actors of every role (see the module docstring)."""

    def __init__(self, roles: Mapping[str, Pool]) -> None:
        self._roles = roles

    def _holder(self, name: str) -> Pool | None:
        return next((p for p in self._roles.values() if p.actors._holds(name)), None)

    def _holds(self, name: str) -> bool:
        return self._holder(name) is not None

    def _role_of_type(self, type_name: str) -> Pool:
        known: dict[str, str] = {}
        for role, pool in self._roles.items():
            for actor_type in pool._dispatcher.actor_types:
                known.setdefault(actor_type, role)
        if type_name in known:
            return self._roles[known[type_name]]
        listed = ", ".join(sorted(known)) or "none"
        message = f"unknown actor type {type_name!r} (the roles' worker modules have: {listed})"
        raise InvalidAction(
            message, errors=[{"loc": ["type"], "msg": message, "type": "unknown_actor_type"}]
        )

    async def create(
        self,
        type: str,
        name: str,
        *,
        args: Mapping[str, Any] | None = None,
        if_exists: Literal["error", "get"] = "error",
        max_restarts: int = 0,
    ) -> ActorRef:
        """As ``Actors.create``, on the role whose worker module declares ``type``."""
        holder = self._holder(name)
        pool = self._role_of_type(type) if holder is None else holder
        if holder is not None and if_exists != "get":
            raise ActorExists(f"an actor named {name!r} exists already")
        # From here to the name being taken, the role's create runs without yielding: no
        # other role can take the name in between.
        return await pool.actors.create(
            type, name, args=args, if_exists=if_exists, max_restarts=max_restarts
        )

    async def get(self, name: str, *, wait: float | None = None) -> ActorRef:
        holder = self._holder(name)
        if holder is not None:
            return await holder.actors.get(name)
        if not wait:
            raise ActorNotFound(f"no actor named {name!r}")
        gets = [asyncio.ensure_future(p.actors.get(name, wait=wait)) for p in self._roles.values()]
        try:
            for done in asyncio.as_completed(gets):
                try:
                    return await done
                except ActorNotFound:
                    continue
        finally:
            for get in gets:
                get.cancel()
        raise ActorNotFound(f"no actor named {name!r} within {wait}s")

    async def destroy(self, name: str) -> None:
        holder = self._holder(name)
        if holder is None:
            raise ActorNotFound(f"no actor named {name!r}")
        await holder.actors.destroy(name)

    def list(self) -> list[ActorInfo]:
        every = [info for pool in self._roles.values() for info in pool.actors.list()]
        return sorted(every, key=lambda info: info.name)
