"""``PoolView``: what a pool says about itself (its statistics, its size and generation, the
handlers its children reported, whether it is degraded or broken) and the waits on its state.
The read side of ``Pool``, kept apart from the operations; it reads the dispatcher's and the
supervisor's own records and never asks a child anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import PoolClosed
from .jobs import Phase
from .role import unknown_role
from .settle import copy_start_failed
from .stats import PoolStatistics, snapshot

if TYPE_CHECKING:
    from ..errors import StartFailed
    from .actor_ref import Actors
    from .actors import ActorHost
    from .child import Child
    from .dispatcher import Dispatcher
    from .supervisor import Supervisor
    from .worker import HandlerInfo

__all__ = ["PoolView"]


class PoolView:
    """The read side of a pool (``qoper8.Pool`` inherits it)."""

    _name: str
    _dispatcher: Dispatcher
    _supervisor: Supervisor
    _actor_host: ActorHost
    actors: Actors

    def _groups(self) -> list[Child]:
        raise NotImplementedError

    @property
    def is_open(self) -> bool:
        """Whether the pool takes jobs."""
        return self._dispatcher.phase is Phase.OPEN

    # ================================================================ waiting and stats

    async def wait_idle(self) -> None:
        """Wait until no job is queued or running."""
        dispatcher = self._dispatcher
        await dispatcher.waiters.wait_for(lambda: not dispatcher.busy)

    @property
    def is_degraded(self) -> bool:
        """Whether children fail to start after the pool opened (a database down, say): it
        keeps respawning with back-off, serves with the children it has, and recovers by
        itself once one starts. Never true during a first start, which fails fast."""
        return self._supervisor.health.degraded

    @property
    def is_broken(self) -> bool:
        """Whether the pool gave up: ``max_start_failures`` children in a row failed to
        start and none is left. Every submit then raises ``StartFailed``; a daemon should
        exit. Never true without ``max_start_failures`` (the default keeps trying)."""
        return self._dispatcher.broken is not None

    async def wait_broken(self) -> StartFailed:
        """Wait until the pool gives up (see ``is_broken``) and return why. Never returns
        for a healthy pool; a daemon runs it beside its server to exit with a clear code."""
        dispatcher = self._dispatcher
        await dispatcher.waiters.wait_for(lambda: dispatcher.broken is not None)
        if dispatcher.broken is None:  # closed instead
            raise PoolClosed("the pool closed")
        return copy_start_failed(dispatcher.broken)

    def has_capacity(self) -> bool:
        """Whether a job submitted now would start at once (an idle child, nothing queued),
        or soon (an autoscaled pool below its most, nothing queued: a child would start)."""
        dispatcher = self._dispatcher
        if dispatcher.has_capacity():
            return True
        autoscaler = self._supervisor.autoscaler
        return autoscaler is not None and not dispatcher.queued and autoscaler.can_grow()

    async def wait_capacity(self) -> None:
        """Wait until ``has_capacity()`` (or the pool closes). Transports that pull work
        (Redis) call this before taking a job, so a host never takes more than it can run."""
        dispatcher = self._dispatcher
        await dispatcher.waiters.wait_for(
            lambda: self.has_capacity() or dispatcher.phase is not Phase.OPEN
        )

    @property
    def handlers(self) -> dict[str, HandlerInfo]:
        """The action types the worker module registered, as the children reported them."""
        return dict(self._dispatcher.handlers)

    @property
    def generation(self) -> int:
        """The current generation; ``reload()`` increments it."""
        return self._supervisor.generation

    @property
    def size(self) -> int:
        """The target number of children."""
        return self._supervisor.target

    def statistics(self, *, role: str | None = None) -> PoolStatistics:
        """A snapshot built from the master's counters; no child is asked anything. In a
        pool of roles each child names its role, and ``role`` gives one role's snapshot."""
        if role is not None and role != self._name:
            raise unknown_role(role, (self._name,))
        dispatcher, supervisor = self._dispatcher, self._supervisor
        scaler = supervisor.autoscaler
        dispatcher.fold_samples()
        return snapshot(
            self._groups(),
            dispatcher.counters,
            target_size=supervisor.target,
            generation=supervisor.generation,
            queue_length=dispatcher.queued,
            running=dispatcher.running,
            degraded=supervisor.health.degraded,
            failed_starts=supervisor.health.failures,
            placement=self._actor_host.placement(),
            paused=supervisor.paused,
            size_range=(scaler.least, scaler.most) if scaler is not None else None,
            actors=tuple(self.actors.list()),
            actor_restarts=self._actor_host.restarts,
        )
