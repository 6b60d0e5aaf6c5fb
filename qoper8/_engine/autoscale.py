"""``Autoscaler``: the master's own decision to grow and shrink a group of children between
``children`` and ``max_children``. It only moves the supervisor's target (and names the child
to retire); ``reconcile()`` does the rest, as for a resize.

- **Grow** when a job waits in the queue and fewer than ``max_children`` are live: one child
  more per waiting job not already covered by a starting one, at most ``max_starting`` starting
  at once (each new interpreter costs a CPU while it boots).
- **Shrink** the child idle longest once it has been idle ``idle_timeout`` seconds, one at a
  time, never below ``children``. Idleness is observed by a timer, not measured on the hot path:
  a child seen at the bottom of the idle stack with the same jobs-done count for
  ``idle_timeout`` has done nothing for at least that long.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

from .child import ChildState

if TYPE_CHECKING:
    from ..config import PoolConfig
    from .child import Child
    from .dispatcher import Dispatcher
    from .supervisor import Supervisor

__all__ = ["Autoscaler"]

# How often idle children are looked at, as a fraction of idle_timeout (and at most every
# MAX_TICK seconds): a child retires between idle_timeout and 1.1 x idle_timeout after its
# last job, or once the one retiring before it has gone. A timer at this rate costs nothing
# measurable; a slower one keeps a burst's children (child-seconds) long after it.
TICK_FRACTION: Final = 0.1
MAX_TICK: Final = 1.0
_RETIRING: Final = ChildState.RETIRING
_STARTING: Final = ChildState.STARTING


class Autoscaler:
    """Grows and shrinks one supervisor's children (see the module docstring)."""

    def __init__(self, supervisor: Supervisor, dispatcher: Dispatcher, config: PoolConfig) -> None:
        self._supervisor = supervisor
        self._dispatcher = dispatcher
        self.apply(config)
        self._seen: dict[int, tuple[int, float]] = {}  # child id -> (jobs done, idle since)
        self._task: asyncio.Task[None] | None = None
        self.grown = 0
        self.shrunk = 0
        dispatcher.on_waiting = self.grow_if_needed
        supervisor.autoscaler = self

    def apply(self, config: PoolConfig) -> None:
        assert config.max_children is not None
        self.apply_range(config.children, config.max_children)
        self.idle_timeout = config.idle_timeout
        self.max_starting = config.max_starting

    def apply_range(self, least: int, most: int) -> None:
        """Scale between these from now on (equal: a fixed size); ends a pause."""
        self.least = least
        self.most = most
        self.paused = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch_idle())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # ------------------------------------------------------------ growing

    def grow_if_needed(self) -> None:
        """A job waits (or a child just got ready while some do): start children for the
        waiting jobs, within ``max_children`` and ``max_starting``."""
        supervisor = self._supervisor
        waiting = self._dispatcher.queued
        if not waiting or self.paused:
            return
        active = supervisor.active()
        starting = sum(1 for c in active if c.state is _STARTING)
        more = min(waiting - starting, self.max_starting - starting, self.most - len(active))
        if more > 0:
            supervisor.target = len(active) + more
            self.grown += more
            supervisor.reconcile()

    # ------------------------------------------------------------ shrinking

    async def _watch_idle(self) -> None:
        while True:
            await asyncio.sleep(min(MAX_TICK, self.idle_timeout * TICK_FRACTION))
            self.shrink_if_idle()

    def shrink_if_idle(self, now: float | None = None) -> None:
        """Retire the child idle longest if it has been idle for ``idle_timeout``."""
        now = time.monotonic() if now is None else now
        idle = self._dispatcher.idle_children()
        seen = self._seen
        current = {c.id for c in idle}
        for child_id in [i for i in seen if i not in current]:
            del seen[child_id]  # it took a job (or left) since
        for child in idle:
            mark = seen.get(child.id)
            if mark is None or mark[0] != child.jobs_done:
                seen[child.id] = (child.jobs_done, now)
        supervisor = self._supervisor
        if not idle or self.paused or len(supervisor.active()) <= self.least:
            return
        if any(c.state is _RETIRING for c in supervisor.children.values()):
            return  # one at a time: the last one retired has not gone yet
        if self._dispatcher.queued:
            return
        oldest: Child = min(idle, key=lambda c: seen[c.id][1])
        idle_for = now - seen[oldest.id][1]
        if idle_for < self.idle_timeout:
            return
        del seen[oldest.id]
        supervisor.target = max(self.least, len(supervisor.active()) - 1)
        oldest.retire_requested = oldest.watch_retire = True
        self.shrunk += 1
        supervisor.retire(oldest, f"idle for {idle_for:.1f}s (autoscaling)")

    def can_grow(self) -> bool:
        """Whether a job taken now would get a child soon (one would be started)."""
        return not self.paused and len(self._supervisor.active()) < self.most
