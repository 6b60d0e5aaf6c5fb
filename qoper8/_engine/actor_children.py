"""``ActorChildren``: the children that hold actors, a group apart from the pool's own. A
supervisor like the other, with an actor's rules: its children take no ordinary action (each
has its own queue of its actors' calls), are never recycled, and retire only when no actor is
left on them; its target follows the actors (and grows by one when an actor needs a child).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .supervisor import Supervisor

if TYPE_CHECKING:
    from collections.abc import Callable

    from .child import Child

__all__ = ["ActorChildren"]


def _ignore(child: Child) -> None:
    del child


class ActorChildren(Supervisor):
    """The actor children of one pool (see the module docstring)."""

    # The actor host's: place pending actors on a ready child; restart a dead child's ones.
    on_ready: Callable[[Child], None] = staticmethod(_ignore)
    on_exit: Callable[[Child], None] = staticmethod(_ignore)

    def new_child(self) -> Child:
        child = super().new_child()
        self._as_actor_child(child)
        return child

    @staticmethod
    def _as_actor_child(child: Child) -> None:
        child.pinned = deque()
        child.watch_retire = False  # never recycled: its actors' state lives in it
        child.max_jobs = None

    def take_child(self, child: Child) -> None:
        """Adopt a ready, idle child of the pool's own group (warm: its worker module is
        loaded and its ``on_start`` ran) as an actor child."""
        child.events = self
        child.generation = self.generation
        self._as_actor_child(child)
        self.children[child.id] = child
        self.target += 1

    def grow(self, more: int) -> None:
        """Start ``more`` actor children (an actor waits for one)."""
        self.target += more
        self.reconcile()

    def shrink_to_fit(self, needed: int) -> None:
        """Keep ``needed`` actor children at most (children holding actors always stay)."""
        holding = sum(1 for c in self.active() if c.actors)
        self.target = max(needed, holding)
        self.reconcile()

    def retire_child(self, child: Child, reason: str) -> None:
        """Retire ``child`` now if it is idle, else when its running call ends."""
        if not child.is_alive or child.retiring:
            return
        child.retire_requested = child.watch_retire = True
        if child.state.value == "idle":
            self.retire(child, reason)

    def placed(self, child: Child) -> None:
        self.on_ready(child)

    def lost(self, child: Child) -> None:
        self.on_exit(child)

    def may_retire(self, child: Child) -> bool:
        return not child.actors
