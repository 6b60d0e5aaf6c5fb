"""``PoolSize``: how many children a pool keeps, and which generation they are: ``resize``
(a fixed number, or a range to autoscale between), ``pause`` and ``reload``. Each moves the
supervisor's target; the supervisor's ``reconcile()`` starts and retires children to meet it
(``generations.py``), and the ``Autoscaler`` moves it on its own within a range.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import MAX_CHILDREN, PoolConfig
from ..errors import ConfigError, PoolClosed, Qoper8Error
from .autoscale import Autoscaler
from .jobs import Phase

if TYPE_CHECKING:
    from .dispatcher import Dispatcher
    from .supervisor import Supervisor

__all__ = ["PoolSize"]


def _whole(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= MAX_CHILDREN


class PoolSize:
    """``resize()``, ``pause()`` and ``reload()`` (``qoper8.Pool`` inherits them)."""

    config: PoolConfig
    _name: str
    _dispatcher: Dispatcher
    _supervisor: Supervisor
    _autoscaler: Autoscaler | None

    def _apply(self, config: PoolConfig) -> None:
        self.config = config
        self._dispatcher.apply(config)
        self._supervisor.apply(config)
        if self._autoscaler is not None and config.max_children is not None:
            self._autoscaler.apply(config)

    @property
    def is_paused(self) -> bool:
        """Whether ``pause()`` holds the pool at no children (until ``resize()``)."""
        return self._supervisor.paused

    def _open(self) -> None:
        if self._dispatcher.phase is not Phase.OPEN:
            raise PoolClosed("the pool is closed")

    def _own(self, role: str | None) -> None:
        if role is not None and role != self._name:
            raise ConfigError(f"unknown role {role!r} (roles: {self._name})")

    async def resize(self, children: int | tuple[int, int], *, role: str | None = None) -> None:
        """Change the number of children and wait until new ones are ready. Surplus
        children retire: idle ones now, busy ones when their job ends. A range ``(min,
        max)`` autoscales between the two from now on (the pool keeps its current size
        within it); a number on an autoscaled pool fixes its size.

        Args:
            children: a number, or a range ``(min, max)``.
            role: the role to resize (a pool of several roles needs it).

        Raises:
            ConfigError: ``children`` is not a whole number from 1 to 1024, or a range of
                two (``min`` may be 0) with ``min <= max``; an unknown role.
            StartFailed: the new children failed to start.
        """
        self._own(role)
        if isinstance(children, tuple) and len(children) == 2:
            least, most = children
            if not (_whole(least, 0) and _whole(most, 1) and least <= most):
                raise ConfigError(
                    f"a range of children must be (min, max) with 0 <= min <= max <= "
                    f"{MAX_CHILDREN} and max >= 1, not {children!r}"
                )
        elif _whole(children, 1):
            assert isinstance(children, int)
            least = most = children
        else:
            raise ConfigError(
                f"children must be a whole number from 1 to {MAX_CHILDREN} or a range "
                f"(min, max), not {children!r}"
            )
        self._open()
        current = len(self._supervisor.active())
        target = least if least == most else min(max(current, least), most)
        scaled = isinstance(children, tuple)
        self._apply(
            self.config.model_copy(
                update={"children": least, "max_children": most if scaled else None}
            )
        )
        if scaled and self._autoscaler is None:
            self._autoscaler = Autoscaler(self._supervisor, self._dispatcher, self.config)
            self._autoscaler.start()
        if self._autoscaler is not None:
            self._autoscaler.apply_range(least, most)
        self._supervisor.paused = False
        await self._supervisor.resize(target)

    async def pause(self) -> None:
        """Retire every child gracefully and keep the pool open with a target of none (the
        daemon's WINCH): idle children retire now, busy ones when their job ends. Queued
        and new jobs wait (their deadlines still run) until ``resize(n)`` ends the pause;
        an autoscaled pool does not grow meanwhile.

        Raises:
            PoolClosed: the pool is closed.
        """
        self._open()
        if self._autoscaler is not None:
            self._autoscaler.paused = True
        self._supervisor.paused = True
        self._supervisor.target = 0
        self._supervisor.reconcile()

    async def reload(self, config: PoolConfig | None = None, *, role: str | None = None) -> None:
        """Replace every child with a fresh one (new code; new settings when ``config`` is
        given) with no downtime: a new generation starts beside the old one, then old
        children retire as each finishes its job. Jobs keep flowing throughout; none is
        dropped.

        Args:
            config: settings for the new generation and the pool from now on (worker
                module, size, timeouts, limits); the current ones when omitted. Whether the
                pool autoscales stays as it was: ``resize()`` changes that.
            role: reload only this role (a pool of roles reloads each in turn without it).

        Raises:
            StartFailed: the new generation could not start; the old one, and the old
                settings, keep serving.
        """
        self._own(role)
        self._open()
        supervisor = self._supervisor
        if supervisor.reloading:
            raise Qoper8Error("a reload is already in progress")
        old = self.config
        target = supervisor.target if config is None else config.children
        self._apply(config or old)
        await supervisor.roll(target, lambda: self._apply(old))
