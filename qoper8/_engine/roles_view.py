"""``RolesView``: what a pool of roles says about itself (``RolesPool`` inherits it): each
answer spans the roles, and ``statistics(role=)`` gives one role's.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from .stats import merge_counters, snapshot

if TYPE_CHECKING:
    from ..errors import StartFailed
    from .pool import Pool
    from .stats import PoolStatistics
    from .worker import HandlerInfo

__all__ = ["RolesView"]


class RolesView:
    """Properties and statistics over every role of a ``RolesPool``."""

    _roles: dict[str, Pool]

    def role(self, name: str) -> Pool:
        raise NotImplementedError

    @property
    def _pools(self) -> list[Pool]:
        return list(self._roles.values())

    @property
    def is_open(self) -> bool:
        return all(p.is_open for p in self._pools)

    @property
    def is_degraded(self) -> bool:
        return any(p.is_degraded for p in self._pools)

    @property
    def is_broken(self) -> bool:
        return any(p.is_broken for p in self._pools)

    @property
    def is_paused(self) -> bool:
        return all(p.is_paused for p in self._pools)

    async def wait_broken(self) -> StartFailed:
        waits = [asyncio.ensure_future(p.wait_broken()) for p in self._pools]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return next(iter(done)).result()

    async def wait_idle(self) -> None:
        await asyncio.gather(*(p.wait_idle() for p in self._pools))

    def has_capacity(self) -> bool:
        """Whether some role would start a job at once (``role(name).has_capacity()``
        for one role)."""
        return any(p.has_capacity() for p in self._pools)

    async def wait_capacity(self) -> None:
        waits = [asyncio.ensure_future(p.wait_capacity()) for p in self._pools]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    @property
    def handlers(self) -> dict[str, HandlerInfo]:
        merged: dict[str, HandlerInfo] = {}
        for pool in reversed(self._pools):  # the first role's entry wins a shared type
            merged.update(pool.handlers)
        return merged

    @property
    def generation(self) -> int:
        return max(p.generation for p in self._pools)

    @property
    def size(self) -> int:
        return sum(p.size for p in self._pools)

    def statistics(self, *, role: str | None = None) -> PoolStatistics:
        """The whole pool's snapshot (each child names its role), or one role's."""
        if role is not None:
            return _tagged(self.role(role).statistics(), role)
        parts = {name: _tagged(p.statistics(), name) for name, p in self._roles.items()}
        stats = list(parts.values())
        whole = snapshot(
            (),
            merge_counters(p._dispatcher.counters for p in self._pools),
            target_size=sum(s.target_size for s in stats),
            generation=self.generation,
            queue_length=sum(s.queue_length for s in stats),
            running=sum(s.running for s in stats),
            degraded=any(s.degraded for s in stats),
            failed_starts=sum(s.failed_starts for s in stats),
            paused=all(s.paused for s in stats),
            actors=tuple(sorted((a for s in stats for a in s.actors), key=lambda a: a.name)),
            actor_restarts=sum(s.actor_restarts for s in stats),
        )
        children = sorted((c for s in stats for c in s.children), key=lambda c: c.id)
        return dataclasses.replace(whole, children=tuple(children))


def _tagged(stats: PoolStatistics, role: str) -> PoolStatistics:
    children = tuple(dataclasses.replace(c, role=role) for c in stats.children)
    return dataclasses.replace(stats, children=children)
