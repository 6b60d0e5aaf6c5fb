"""How many children the daemon wants: TTIN and TTOU (one more, one fewer), WINCH (none
for now, the master stays) and resize, and the size a WINCH remembers for TTIN to restore.

WINCH on a pool that needs at least one child to serve: the pool *pauses* (target 0, see
``Pool.pause``). Every child retires once idle, jobs that arrive wait in the queue (their
deadlines run), ``/v1/health`` answers 503 "paused" so a load balancer sends traffic
elsewhere, and the Redis intake takes nothing. TTIN, a resize or a HUP ends the pause:
TTIN and HUP with the size the pool had before it, a resize with the size asked for.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._text import plural

if TYPE_CHECKING:
    from .._engine.pool import Pool

__all__ = ["Sizing"]

logger = logging.getLogger("qoper8.daemon")


class Sizing:
    """The target size of one daemon's pool."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._before_pause: int | None = None

    @property
    def paused(self) -> bool:
        return self._pool.is_paused

    @property
    def size(self) -> int:
        """The size the pool has, or comes back to after a pause (what HUP keeps)."""
        return self._before_pause if self.paused and self._before_pause else self._pool.size

    async def resize(self, children: int | tuple[int, int]) -> None:
        """Set the size or the autoscaling range (ending a pause)."""
        await self._pool.resize(children)
        self._before_pause = None

    def _range(self) -> tuple[int, int] | None:
        config = self._pool.config
        return None if config.max_children is None else (config.children, config.max_children)

    async def grow(self) -> None:
        """TTIN: one child more (an autoscaled pool: one more at least, and at most if
        needed); after a WINCH, the size or range the pool had before it."""
        scaled = self._range()
        if self.paused:
            await self.resize(scaled or self.size)
        elif scaled:
            await self.resize((scaled[0] + 1, max(scaled[1], scaled[0] + 1)))
        else:
            await self.resize(self._pool.size + 1)
        self._log()

    async def shrink(self) -> None:
        """TTOU: one child fewer (never below one: WINCH retires them all); an autoscaled
        pool: one fewer at least (down to 0)."""
        if self.paused:
            logger.info("paused: no child to retire (TTIN brings them back)")
            return
        scaled = self._range()
        if scaled:
            await self.resize((max(0, scaled[0] - 1), scaled[1]))
        elif self._pool.size > 1:
            await self.resize(self._pool.size - 1)
        self._log()

    def _log(self) -> None:
        scaled = self._range()
        if scaled:
            logger.info("autoscaling between %s and %s children", *scaled)
        else:
            logger.info("resized to %s", plural(self._pool.size, "child", "children"))

    async def pause(self) -> None:
        """WINCH: retire every child gracefully and keep the master."""
        if self.paused:
            logger.info("already paused")
            return
        self._before_pause = self._pool.size
        await self._pool.pause()
        logger.info(
            "paused: every child retires once idle, jobs wait; TTIN brings back %s",
            plural(self._before_pause, "child", "children"),
        )
