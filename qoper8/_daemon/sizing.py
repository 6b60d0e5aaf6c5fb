"""How many children the daemon wants: TTIN and TTOU (one more, one fewer), WINCH (none
for now, the master stays) and resize, and the size a WINCH remembers for TTIN to restore.

With several roles, resize names its role, TTIN and TTOU act on the first role, and WINCH
pauses every role (TTIN after it restores every role).

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
    """The target size of each role of one daemon's pool."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._before_pause: dict[str, int] = {}

    @property
    def first(self) -> str:
        """The role TTIN and TTOU act on."""
        return self._pool.roles[0]

    def _role(self, role: str | None) -> Pool:
        return self._pool.role(role or self.first)

    @property
    def paused(self) -> bool:
        """Whether every role is paused (WINCH)."""
        return self._pool.is_paused

    def size(self, role: str | None = None) -> int:
        """The size a role has, or comes back to after a pause (what HUP keeps)."""
        name = role or self.first
        pool = self._pool.role(name)
        before = self._before_pause.get(name)
        return before if pool.is_paused and before else pool.size

    def scaled(self, role: str | None = None) -> tuple[int, int] | None:
        """A role's autoscaling range, or None for a fixed size."""
        config = self._role(role).config
        return None if config.max_children is None else (config.children, config.max_children)

    async def resize(self, children: int | tuple[int, int], role: str | None = None) -> None:
        """Set a role's size or autoscaling range (ending its pause).

        Raises:
            InvalidAction: no role of that name.
            ConfigError, StartFailed: as ``Pool.resize``.
        """
        name = role or self.first
        await self._pool.role(name).resize(children)
        self._before_pause.pop(name, None)

    async def grow(self) -> None:
        """TTIN: one child more for the first role (an autoscaled one: one more at least,
        and at most if needed); after a WINCH, every role's size or range before it."""
        paused = [name for name in self._pool.roles if self._pool.role(name).is_paused]
        if paused:
            for name in paused:
                await self.resize(self.scaled(name) or self.size(name), name)
                self._log(name)
            return
        scaled = self.scaled()
        if scaled:
            await self.resize((scaled[0] + 1, max(scaled[1], scaled[0] + 1)))
        else:
            await self.resize(self._role(None).size + 1)
        self._log(self.first)

    async def shrink(self) -> None:
        """TTOU: one child fewer for the first role (never below one: WINCH retires them
        all); an autoscaled role: one fewer at least (down to 0)."""
        pool = self._role(None)
        if pool.is_paused:
            logger.info("paused: no child to retire (TTIN brings them back)")
            return
        scaled = self.scaled()
        if scaled:
            await self.resize((max(0, scaled[0] - 1), scaled[1]))
        elif pool.size > 1:
            await self.resize(pool.size - 1)
        self._log(self.first)

    def _log(self, role: str) -> None:
        of = f" (role {role})" if len(self._pool.roles) > 1 else ""
        scaled = self.scaled(role)
        if scaled:
            logger.info("autoscaling between %s and %s children%s", *scaled, of)
        else:
            size = plural(self._pool.role(role).size, "child", "children")
            logger.info("resized to %s%s", size, of)

    async def pause(self) -> None:
        """WINCH: retire every child of every role gracefully and keep the master."""
        if self.paused:
            logger.info("already paused")
            return
        for name in self._pool.roles:
            pool = self._pool.role(name)
            if not pool.is_paused:
                self._before_pause[name] = pool.size
        await self._pool.pause()
        sizes = ", ".join(
            f"{plural(self._before_pause.get(n, 0), 'child', 'children')}"
            + (f" of {n}" if len(self._pool.roles) > 1 else "")
            for n in self._pool.roles
        )
        logger.info("paused: every child retires once idle, jobs wait; TTIN brings back %s", sizes)
