"""``Generations``: how a supervisor's target and generation move, the two knobs that
``reconcile()`` converges on: ``resize`` moves the target; ``roll`` (a reload) starts a new
generation beside the old one (with a fork server of its own, which imports the new code)
and retires the old children as each finishes its job.
Autoscaling will be a third hand on the target.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .child import ChildState
from .startup import start_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config import PoolConfig
    from .child import Child
    from .fork_servers import ForkServers
    from .health import ChildHealth

__all__ = ["Generations"]


class Generations:
    """The target and generation of a supervisor (``Supervisor`` inherits them)."""

    target: int
    generation: int
    reloading: bool
    config: PoolConfig
    health: ChildHealth
    children: dict[int, Child]
    fork_servers: ForkServers

    def reconcile(self) -> None:
        raise NotImplementedError

    def active(self) -> list[Child]:
        raise NotImplementedError

    def new_child(self) -> Child:
        raise NotImplementedError

    async def start_children(self, children: list[Child]) -> None:
        raise NotImplementedError

    def retire(self, child: Child, reason: str) -> None:
        raise NotImplementedError

    async def resize(self, target: int) -> None:
        """Move the target and wait until the new children are ready.

        Raises:
            StartFailed: the new children failed to start.
        """
        self.target = target
        self.health.failures = 0  # an operator's resize tries again at once
        self.reconcile()
        starting = [c for c in self.active() if c.state is ChildState.STARTING]
        results = await asyncio.gather(
            *(c.wait_ready(self.config.start_timeout) for c in starting), return_exceptions=True
        )
        for res in results:
            if isinstance(res, BaseException):
                raise start_error(res, self.config)

    async def roll(self, target: int, revert: Callable[[], None]) -> None:
        """Start a new generation of ``target`` children beside the old one (with the
        settings already applied), then retire the old children as each finishes its job.

        Args:
            revert: restores the old settings if the new generation fails to start (before
                anything is respawned with them).

        Raises:
            StartFailed: the new generation could not start; the old one keeps serving.
        """
        self.reloading = True
        old_generation, old_target = self.generation, self.target
        self.generation += 1
        self.target = target
        new = [self.new_child() for _ in range(target)]
        for child in new:
            child.managed_start = True
        try:
            await self.start_children(new)
        except BaseException:
            # The new children are being killed; their deaths are this reload's failure,
            # not failed background starts (they keep managed_start).
            self.generation, self.target = old_generation, old_target
            revert()
            self.fork_servers.retire_others(self.generation)
            self.reloading = False
            self.reconcile()
            raise
        for child in new:
            child.managed_start = False
        # The old generation's fork server forks no more; it exits after its last child.
        self.fork_servers.retire_others(self.generation)
        self.reloading = False
        if self.health.degraded:
            self.health.recovered(new[0])
        for child in list(self.children.values()):
            if child.generation != self.generation:
                child.watch_retire = True
                if child.state is ChildState.IDLE:
                    self.retire(child, "old generation")
                elif child.state is ChildState.STARTING:
                    child.kill("old generation")
        self.reconcile()
