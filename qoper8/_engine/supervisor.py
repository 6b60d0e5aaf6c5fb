"""``Supervisor``: the processes of one group of children. It spawns them (from one dedicated
thread), hears READY, exits (pidfds) and their output, respawns with back-off, retires and
recycles, and keeps one ``reconcile()`` that moves the live children toward a *target*.

Resize, reload and (later) autoscaling only move the target or the generation and call
``reconcile()``: gunicorn's arbiter rule, one loop converges. Jobs are not its business: frames
go straight from a child to the dispatcher, and the supervisor hands the dispatcher children
as they become ready and takes them back when they exit. ``ChildHealth`` judges the exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final

from ..errors import PoolClosed
from .child import Child, ChildState
from .child_process import ChildStartError
from .dispatcher import Phase
from .fork_servers import ForkServers
from .generations import Generations
from .health import ChildHealth
from .main_module import alias_main, describe_main
from .startup import RETIRE_TIMEOUT, start_together
from .worker import HandlerInfo

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..config import PoolConfig
    from .autoscale import Autoscaler
    from .dispatcher import Dispatcher

__all__ = ["Supervisor"]

logger = logging.getLogger("qoper8")

_LIVE: Final = (ChildState.STARTING, ChildState.IDLE, ChildState.BUSY)


class Supervisor(Generations):
    """The children of one pool (see the module docstring). It is the ``ChildEvents`` of
    every child it spawns; their frames go to ``dispatcher.child_frame`` directly.

    Args:
        config: the pool's settings (worker module, size, limits, timeouts).
        dispatcher: the jobs' side, given children as they become ready.
        on_output: receives (child id, pid, line) for each line a child prints.
    """

    def __init__(
        self,
        config: PoolConfig,
        dispatcher: Dispatcher,
        on_output: Callable[[int, int, str], None],
        ids: Iterator[int] | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        # ChildEvents: a child's frames go straight to the dispatcher (the hot path).
        self.child_frame = dispatcher.child_frame
        self.child_message = dispatcher.child_message
        # Child ids, unique in the pool (shared by every group of its children).
        self._ids = ids if ids is not None else itertools.count(1)
        # The messenger's: what a new child gets before its first job (sticky messages).
        self.greet: Callable[[Child], None] = _nobody
        self._on_output = on_output
        self.children: dict[int, Child] = {}
        self.generation = 1
        self.target = config.children
        self.reloading = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._spawner: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Respawns sleeping out their back-off; a recovery wakes them at once.
        self._backoff_waiters: set[asyncio.Future[None]] = set()
        self.health = ChildHealth(config, dispatcher, self._recovered)
        self.fork_servers = ForkServers(on_output)
        # Set by share_fork_servers: the group whose fork servers (and generations) fork
        # this group's children too.
        self._fork_owner: Supervisor | None = None
        self.autoscaler: Autoscaler | None = None
        self.paused = False  # Pool.pause(): a target of none until a resize
        self.apply(config)

    def apply(self, config: PoolConfig) -> None:
        """Adopt ``config`` for the children started from now on."""
        self.config = config
        self.health.config = config
        self._child_config = {
            "worker": config.worker,
            "sys_path": list(sys.path),
            "cwd": os.getcwd(),
            "max_message_bytes": config.max_message_bytes,
            "report_memory": config.max_memory_per_child is not None,
            "main": describe_main(),
        }
        if self._child_config["main"] is not None:
            alias_main()

    @property
    def main_importable(self) -> bool:
        """Whether a child can import the master's ``__main__`` (for ``Pool.run``)."""
        return self._child_config["main"] is not None

    # ================================================================ ChildEvents

    def child_ready(self, child: Child) -> None:
        if child.generation == self.generation or not self._dispatcher.handlers:
            self._dispatcher.handlers = {
                h["type"]: HandlerInfo(h["type"], h["import_path"], tuple(h["params"]))
                for h in child.handlers
            }
            self._dispatcher.actor_types = child.actor_types
        if self.loop is not None:
            self.health.child_ready(child, self.loop)
        self.placed(child)
        self._dispatcher.child_free(child)
        if self.autoscaler is not None:
            self.autoscaler.grow_if_needed()  # still jobs waiting: more children

    def child_proved(self, child: Child) -> None:
        self.health.proved(child)

    def placed(self, child: Child) -> None:
        """``child`` is ready, before it takes work (the actor children place actors)."""

    def lost(self, child: Child) -> None:
        """``child`` exited, its job failed (the actor children restart its actors)."""

    def may_retire(self, child: Child) -> bool:
        """Whether ``child`` may retire as surplus (a child holding actors may not)."""
        return True

    def give_idle_child(self) -> Child | None:
        """Hand over an idle, ready child to another group (a warm one for an actor) and
        start its replacement here; None if no child is idle."""
        child = self._dispatcher.take_idle()
        if child is None:
            return None
        del self.children[child.id]
        self.reconcile()
        return child

    def child_exited(self, child: Child) -> None:
        self.children.pop(child.id, None)
        job = self._dispatcher.child_lost(child)
        self.lost(child)
        phase = self._dispatcher.phase
        failed_start = self.health.is_failed_start(child, job)
        if phase is not Phase.CLOSING and phase is not Phase.CLOSED:
            self.health.log_exit(child, job, failed_start)
        if failed_start and phase is Phase.OPEN and not child.managed_start:
            alive = [c for c in self.children.values() if c.was_ready and c.is_alive]
            self.health.start_failed(child, alive)
        self.reconcile()
        self._dispatcher.waiters.wake()

    def child_output(self, child: Child, line: str) -> None:
        try:
            self._on_output(child.id, child.pid or 0, line)
        except Exception:
            logger.exception("on_output callback failed")

    def share_fork_servers(self, owner: Supervisor) -> None:
        """Fork this group's children from ``owner``'s fork server of its current generation
        (the actor children from the pool's: after a reload, new ones get the new code, as
        spawned ones would); ``owner`` closes the servers."""
        self.fork_servers = owner.fork_servers
        self._fork_owner = owner

    # ================================================================ starting

    async def start(self) -> None:
        """Spawn the first children and wait until all are ready (the pool's start).

        Raises:
            StartFailed: one failed; the rest were killed and reaped.
        """
        self.begin()
        if not self.target and self.config.max_children is not None:
            # Autoscaled from none: one child starts all the same, so that the worker module
            # is checked now (a broken one fails the start, not the first job) and its
            # handlers are known (a pool of roles routes by them); it retires when idle.
            self.target = 1
        await self.start_children([self.new_child() for _ in range(self.target)])

    def begin(self) -> None:
        """Get ready to spawn, on the running loop (a group that starts empty, as the actor
        children, calls only this)."""
        self.loop = asyncio.get_running_loop()
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="qoper8-spawner")

    async def start_children(self, children: list[Child]) -> None:
        """Spawn ``children`` together and wait until all are ready.

        Raises:
            StartFailed: one failed; the others were killed and reaped.
        """
        await start_together(children, self._spawn_and_wait, self.config)

    async def _spawn_and_wait(self, child: Child) -> None:
        assert self._spawner is not None
        config, hello = self.config, self._child_config
        owner = self._fork_owner
        generation = child.generation if owner is None else owner.generation
        server = await self.fork_servers.get(generation, config, hello, self._spawner)
        await child.spawn(self._spawner, hello, config.max_message_bytes, server)
        await child.wait_ready(config.start_timeout)

    def new_child(self) -> Child:
        config = self.config
        limit = config.max_jobs_per_child
        if limit is not None:
            limit += random.randint(0, int(limit * config.max_jobs_jitter))
        child = Child(self, next(self._ids), self.generation, max_jobs=limit)
        # The dispatcher asks retire_if_due() only of children marked so: recycling limits
        # now, surplus and old generations later.
        child.watch_retire = limit is not None or config.max_memory_per_child is not None
        self.children[child.id] = child
        self.greet(child)
        return child

    # ================================================================ converging

    def active(self) -> list[Child]:
        """The current generation's children that count toward the target."""
        gen = self.generation
        return [
            c
            for c in self.children.values()
            if c.generation == gen and c.state in _LIVE and not c.retire_requested
        ]

    def reconcile(self) -> None:
        """Converge the number of current-generation children on the target: start the
        missing ones in the background (after the back-off of failed starts), retire the
        surplus (idle children first, busy ones after their job)."""
        if self._dispatcher.phase is not Phase.OPEN or self.reloading:
            return
        active = self.active()
        missing = self.target - len(active)
        if missing > 0:
            if not self.health.may_respawn():
                return
            for _ in range(missing):
                self._launch_background(self.new_child())
        elif missing < 0:
            candidates = [c for c in active if self.may_retire(c)]
            surplus = sorted(candidates, key=lambda c: (c.state is not ChildState.IDLE, -c.id))
            for child in surplus[:-missing]:
                child.retire_requested = child.watch_retire = True
                if child.state is ChildState.IDLE:
                    self.retire(child, "surplus")
                elif child.state is ChildState.STARTING:
                    child.kill("surplus while starting")

    def _launch_background(self, child: Child) -> None:
        task = asyncio.create_task(self._respawn(child, self.health.back_off()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respawn(self, child: Child, back_off: float) -> None:
        try:
            if back_off:
                await self._back_off(back_off)
            await self._spawn_and_wait(child)
        except (ChildStartError, TimeoutError):
            pass  # child_exited() counts it and reconciles
        except OSError as exc:  # could not even spawn (fds, memory): counts as a failed start
            logger.error("could not spawn a child: %s", exc)
        finally:
            if child.pid is None:
                child.abandon()

    async def _back_off(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a child proves healthy meanwhile (``_recovered``)."""
        assert self.loop is not None
        fut: asyncio.Future[None] = self.loop.create_future()
        timer = self.loop.call_later(seconds, _resolve, fut)
        self._backoff_waiters.add(fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._backoff_waiters.discard(fut)

    def _recovered(self) -> None:
        """An outage ended: respawns still sleeping out their back-off try now."""
        for fut in self._backoff_waiters:
            _resolve(fut)
        self.reconcile()

    # ================================================================ retiring

    def retire_if_due(self, child: Child) -> bool:
        """The dispatcher asks as ``child`` (marked ``watch_retire``) becomes free: retire
        it now if it is surplus, of an old generation, or past a recycling limit."""
        reason = self._retire_reason(child)
        if reason is None:
            return False
        self.retire(child, reason)
        return True

    def _retire_reason(self, child: Child) -> str | None:
        phase = self._dispatcher.phase
        if phase is not Phase.OPEN and phase is not Phase.STARTING:
            return None
        if child.generation != self.generation and not self.reloading:
            return "old generation"
        if child.retire_requested:
            return child.replace_reason or "surplus"
        if self.health.degraded:
            # Degraded: its replacement could not start; a healthy child serves on.
            return None
        if child.max_jobs is not None and child.jobs_done >= child.max_jobs:
            return f"done {child.jobs_done} jobs"
        limit = self.config.max_memory_per_child
        if limit is not None and child.last_rss > limit:
            return f"resident memory {child.last_rss} bytes over {limit}"
        return None

    def retire(self, child: Child, reason: str) -> None:
        logger.info("retiring %s: %s", child.describe(), reason)
        if reason.startswith(("done", "resident")):
            self._dispatcher.counters.recycled += 1
        self._dispatcher.forget(child)
        child.retire()
        self.reconcile()

    # ================================================================ stopping

    async def shutdown(self, grace: float) -> None:
        """Stop every child: background spawns cancelled, running jobs failed with
        PoolClosed, idle children retired (their stop hooks run, within ``grace``), the rest
        killed; all reaped."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for child in list(self.children.values()):
            running = child.job
            if running is not None and not running.ended:
                running.fail(
                    PoolClosed(
                        f"the pool closed while job {running.id} ran; {child.describe()} was killed"
                    )
                )
            self._dispatcher.forget(child)
            if child.state is ChildState.IDLE and grace > 0:
                child.retire()
            elif child.pid is None:
                child.abandon()
            else:
                child.kill("pool closed")
        children = list(self.children.values())
        if children:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.gather(*(c.wait_exited() for c in children))
            self.kill_all("did not retire in time")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETIRE_TIMEOUT):
                    await asyncio.gather(*(c.wait_exited() for c in children))
        if self._fork_owner is None:
            await self.fork_servers.shutdown(RETIRE_TIMEOUT)

    def kill_all(self, reason: str) -> None:
        for child in list(self.children.values()):
            child.kill(reason)

    def finish(self) -> None:
        """The pool closed: kill a fork server still there, let the spawner thread go."""
        if self._fork_owner is None:
            self.fork_servers.kill_all()
        if self._spawner is not None:
            self._spawner.shutdown(wait=False)


def _resolve(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(None)


def _nobody(child: Child) -> None:
    del child
