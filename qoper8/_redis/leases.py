"""Leases for ``RedisConsumer``: the heartbeat that renews the leases of running jobs and the
consumer's registration (qoper8's and rq's worker entry), and handing jobs back to the queue.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from typing import Any, Final

from .connection import _Backoff, _retrying
from .consumer_base import (
    HEARTBEAT_FRACTION,
    REGISTRATION_FRACTION,
    _ConsumerBase,
    _Running,
)
from .jobs import _text, rq_now
from .scripts import WORKERS_KEY

__all__: list[str] = []

logger = logging.getLogger("qoper8.redis")
# How long a stop with no job to hand back keeps trying an unreachable Redis.
EMPTY_HANDBACK_TIMEOUT: Final = 1.0


class _Leases(_ConsumerBase):
    """Renews this consumer's leases and registration; hands jobs back to the queue."""

    async def _heartbeat_loop(self) -> None:
        backoff = self._backoff(f"consumer {self.name} heartbeat")
        interval = self.lease * HEARTBEAT_FRACTION
        # the first beat registers the consumer: only once it reads broadcasts, so that a
        # caller that sees it registered never broadcasts before it listens
        await self._listening_ready.wait()
        while True:
            if await self._beat(backoff):
                await asyncio.sleep(interval)
            # else the backoff waited

    async def _beat(self, backoff: _Backoff) -> bool:
        """One renewal; warns about leases reaped under jobs still running here, and stops
        jobs their callers cancelled. False after a Redis failure (the backoff waited)."""
        members = list(self._running)
        ok, reply = await backoff.attempt(functools.partial(self._heartbeat, members))
        if not ok or reply is None:
            return False
        lost, cancelled = reply
        for m in cancelled:
            running = self._running.get(_text(m))
            if running is not None and not running.recording and running.task is not None:
                # its caller cancelled with kill_on_cancel: the pool kills the child
                running.stop_requested = True
                running.task.cancel()
        for m in lost:
            running = self._running.get(_text(m))
            # A job whose outcome is being recorded took its own lease out of the registry
            # (the finish may run in Redis before this renewal and answer after it): not a
            # loss. If its lease really was reaped, the finish finds none and says so.
            if running is not None and not running.finished and not running.recording:
                logger.warning(
                    "consumer %s: lease of job %s was lost (reaped while Redis could not "
                    "be reached?); it may run twice",
                    self.name,
                    running.job_id,
                )
        return True

    async def _heartbeat(self, members: list[str]) -> Any:
        """Renew this consumer's leases on ``members`` and its rq worker entry; returns
        the members whose lease was already gone, and those their callers cancelled."""
        return await self._script("heartbeat")(
            keys=[
                self._wip_key,
                self._consumers_key,
                WORKERS_KEY,
                self._queue_workers_key,
                self._worker_key,
            ],
            args=[
                time.time() + self._window,
                self.name,
                rq_now(),
                "busy" if members else "idle",
                int(self.lease * 2) + 60,
                self._birth,
                socket.gethostname(),
                os.getpid(),
                self.queue,
                time.time() + self.lease * REGISTRATION_FRACTION,
                *members,
            ],
        )

    async def _hand_back(self, jobs: list[_Running], *, final: bool = False) -> None:
        members = [r.member for r in jobs]
        for r in jobs:
            r.finished = True
            self._running.pop(r.member, None)
        self._slot_freed.set()
        backoff = self._backoff(f"consumer {self.name} hand back")
        # With no job to hand back, only the consumer's registration and claim list are left
        # to tidy, and the reaper tidies those of a silent consumer anyway: a stop must not
        # wait out its grace period on a Redis that cannot be reached.
        limit = max(self.grace, 1.0) if members else EMPTY_HANDBACK_TIMEOUT
        deadline = time.monotonic() + limit
        n = await _retrying(
            f"consumer {self.name}: handing back {len(members)} jobs",
            backoff,
            lambda: self._script("handback")(
                keys=[
                    self._wip_key,
                    self._queue_key,
                    self._claim_key,
                    self._consumers_key,
                    WORKERS_KEY,
                    self._queue_workers_key,
                    self._worker_key,
                ],
                args=[self.name, "1" if final else "0", *members],
            ),
            lambda: time.monotonic() > deadline,
        )
        if n:
            logger.info("consumer %s: handed %s jobs back to %r", self.name, n, self.queue)
        elif n is None and members:
            logger.error(
                "consumer %s: could not hand back %s; their leases will expire and the "
                "reaper will queue them again",
                self.name,
                members,
            )
