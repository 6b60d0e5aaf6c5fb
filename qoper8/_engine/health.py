"""``ChildHealth``: what a child's exit says about the worker module, and what the pool does
about it. It tells a failed start from a child killed later, keeps the count of failed starts
in a row that the respawn back-off grows with, reports the pool degraded (one WARNING per
outage) until a new child proves healthy, gives up only when ``max_start_failures`` says so,
and words one log line per exit.

It decides nothing about processes itself: the supervisor spawns, and asks it how long to
back off; the dispatcher tells it when a child on probation has done a job.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

from .._error_base import describe_exit
from ..errors import StartFailed
from .child_process import ChildStartError
from .settle import copy_start_failed

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from ..config import PoolConfig
    from .child import Child
    from .dispatcher import Dispatcher
    from .job import Job

__all__ = ["ChildHealth"]

logger = logging.getLogger("qoper8")

# Respawn backoff after a child fails to start: doubles from BASE up to MAX, so a broken
# worker module costs a few spawns a second at first and one every MAX seconds after.
RESPAWN_BACKOFF_BASE: Final = 0.1
RESPAWN_BACKOFF_MAX: Final = 5.0
# A child that exits on its own this soon after READY, before any job, counts as a failed
# start: its worker module is broken in a way on_start did not show (a thread that ends the
# process, a connection dropped at once). Longer than such after-effects take (0.2 s in
# tests/bad_workers/dies_after_ready.py); an operator killing idle children, or the OOM killer,
# comes later than this, and counting them as failed starts would slow respawns for nothing.
START_FAILURE_WINDOW: Final = 1.0

_monotonic: Final = time.monotonic


class ChildHealth:
    """Failed starts, the outage they make, and its end (see the module docstring).

    Args:
        dispatcher: told when the pool gives up (it fails queued and new jobs), and asks
            ``proved`` when a child on probation did a job.
        recovered: called when an outage ends (the supervisor wakes the respawns sleeping
            out their back-off and reconciles).
    """

    def __init__(
        self, config: PoolConfig, dispatcher: Dispatcher, recovered: Callable[[], None]
    ) -> None:
        self.config = config
        self.failures = 0  # failed starts in a row since a child last proved healthy
        self.degraded_since: float | None = None
        self._dispatcher = dispatcher
        self._on_recovered = recovered

    @property
    def degraded(self) -> bool:
        return self.degraded_since is not None

    def back_off(self) -> float:
        """How long a respawn waits before it tries (0 when nothing failed)."""
        if not self.failures:
            return 0.0
        return float(min(RESPAWN_BACKOFF_MAX, RESPAWN_BACKOFF_BASE * 2 ** (self.failures - 1)))

    def may_respawn(self) -> bool:
        """False once ``max_start_failures`` failed starts in a row made the pool give up."""
        limit = self.config.max_start_failures
        return limit is None or self.failures < limit

    # ------------------------------------------------------------ children

    def child_ready(self, child: Child, loop: asyncio.AbstractEventLoop) -> None:
        """A child started during an outage is on probation: it ends the outage once it has
        done a job, or lived a moment, so that one dying right after READY does not reset
        the back-off every time."""
        if self.degraded_since is not None:
            child.probation = True
            loop.call_later(START_FAILURE_WINDOW, self._lived, child)

    def _lived(self, child: Child) -> None:
        if child.is_alive and child.probation:
            self.proved(child)

    def proved(self, child: Child) -> None:
        """``child``, on probation, proved healthy: end the outage."""
        child.probation = False
        if self.degraded_since is not None:
            self.recovered(child)

    def recovered(self, child: Child) -> None:
        """End the outage (``child`` started and serves)."""
        failures, self.failures = self.failures, 0
        since, self.degraded_since = self.degraded_since, None
        if since is not None:
            logger.warning(
                "recovered: %s of %r started and serves; %d failed starts over %.1fs",
                child.describe(),
                self.config.worker,
                failures,
                _monotonic() - since,
                extra={"child": child.id, "pid": child.pid},
            )
        self._on_recovered()

    @staticmethod
    def is_failed_start(child: Child, job: Job | None) -> bool:
        """Whether ``child``'s exit says its worker module cannot start: it died (or was
        killed for its own fault) before READY, or exited on its own within
        START_FAILURE_WINDOW of READY before any job. A child the pool killed or retired,
        or one killed from outside later on, is not a failed start."""
        if child.retiring:
            return False
        if not child.was_ready:
            return child.kill_reason is None or child.kill_fault
        if child.kill_reason is not None or job is not None or child.jobs_done:
            return False
        return _monotonic() - child.ready_at < START_FAILURE_WINDOW

    def start_failed(self, child: Child, alive: list[Child]) -> None:
        """A background start failed: back off, report the pool degraded (one WARNING per
        outage), and give up only when ``max_start_failures`` says so (``alive``: the
        children that still serve)."""
        self.failures += 1
        if self.degraded_since is None:
            self.degraded_since = _monotonic()
            logger.warning(
                "degraded: children of %r fail to start (%s); respawning with back-off "
                "(at most every %gs) until one starts; queued jobs wait for it",
                self.config.worker,
                ChildStartError(child),
                RESPAWN_BACKOFF_MAX,
                extra={"child": child.id, "pid": child.pid},
            )
        if not self.may_respawn():
            self._give_up(child, alive)

    def _give_up(self, child: Child, alive: list[Child]) -> None:
        err = ChildStartError(child)
        logger.error(
            "%r: %d children in a row failed to start (max_start_failures); no more respawns (%s)",
            self.config.worker,
            self.failures,
            err,
        )
        if alive:
            return  # keep serving, degraded; resize() or reload() tries again
        broken = StartFailed(
            f"children of {self.config.worker!r} keep failing to start: {err}",
            remote_type=err.remote_type,
            remote_message=err.remote_message,
            remote_traceback=err.remote_traceback,
        )
        self._dispatcher.broken = broken
        self._dispatcher.fail_queued(lambda job: copy_start_failed(broken))

    # ------------------------------------------------------------ the log

    def log_exit(self, child: Child, job: Job | None, failed_start: bool) -> None:
        """One line per exit, saying what happened (the daemon logs it)."""
        how = describe_exit(child.exitcode, child.signal)
        extra: dict[str, Any] = {
            "child": child.id,
            "pid": child.pid,
            "exitcode": child.exitcode,
            "signal": child.signal,
        }
        if job is not None:
            extra.update(job_id=job.id, action_type=job.action_type)
        if child.retiring:
            logger.debug("%s %s after retiring", child.describe(), how, extra=extra)
        elif not child.was_ready:
            if failed_start and not child.managed_start:
                # Once per try at INFO: the outage itself is one WARNING (start_failed).
                logger.info("%s", ChildStartError(child), extra=extra)
            else:
                logger.debug(
                    "%s %s while starting (%s)",
                    child.describe(),
                    how,
                    child.kill_reason or "start failed",
                    extra=extra,
                )
        elif child.kill_reason is not None:
            # The pool killed it (a deadline, a cancel, surplus): whoever decided logged why.
            logger.debug("%s %s (%s)", child.describe(), how, child.kill_reason, extra=extra)
        elif job is not None:
            logger.warning(
                "%s %s while running job %s (%s); it is being replaced",
                child.describe(),
                how,
                job.id,
                job.action_type,
                extra=extra,
            )
        elif failed_start:
            logger.info("%s (counted as a failed start)", ChildStartError(child), extra=extra)
        else:
            logger.warning(
                "%s %s while idle; it is being replaced", child.describe(), how, extra=extra
            )
