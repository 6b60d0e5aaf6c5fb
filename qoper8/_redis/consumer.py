"""``RedisConsumer``: feeds one pool from one rq queue.

It takes a job only when the pool has an idle child, leases it in rq's StartedJobRegistry,
renews the lease by heartbeat, and writes the outcome where rq's tools look (job hash,
registries, results stream). It never imports the pool (it is handed one) and never
unpickles. The keys it touches are listed in the package docstring (``qoper8._redis``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError

from .actor_host import ActorHosting
from .broadcast_host import _Broadcasts
from .connection import describe_url
from .consumer_base import ABANDON_TIMEOUT, PoolLike
from .reaper import _Reaping
from .taking import _Taking
from .wire import Wire

__all__ = ["PoolLike", "RedisConsumer"]

logger = logging.getLogger("qoper8.redis")


class RedisConsumer(_Taking, _Reaping, _Broadcasts):
    """Feeds a pool from one rq queue, taking a job only when the pool has an idle child.

    Example:
        ```python
        async with qoper8.Pool("workers.users:worker", children=8) as pool:
            consumer = RedisConsumer(pool, url="redis://redis:6379/0", queue="users")
            await consumer.run()          # until another task awaits consumer.stop()
        ```

    Args:
        pool: a started pool (``qoper8.Pool``).
        url: ``redis://``, ``rediss://`` or ``unix://`` URL, password included if any.
        queue: the rq queue name.
        lease: at most this many seconds after a host dies, its running jobs are queued
            again (heartbeats renew leases every ``lease / 6``; any host reaps).
        max_retries: times a job whose lease expired is queued again, when the job does
            not set rq's ``retries_left`` itself; after that it fails with the reason.
        grace: how long ``stop()`` waits for running jobs before handing them back
            (default: 10 s).
        name: this consumer's rq ``worker_name`` (default: host, pid and a random suffix).
    """

    # ------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Take and run jobs until ``stop()`` (or the pool closes). Redis outages are
        logged and retried with backoff; they never end the loop."""
        if self._take_task is not None:
            raise RuntimeError("a RedisConsumer runs once")
        r = self._start_client()
        logger.info(
            "consumer %s: taking jobs from rq queue %r at %s (lease %gs)",
            self.name,
            self.queue,
            describe_url(self.url),
            self.lease,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                beat = tg.create_task(self._heartbeat_loop())
                reap = tg.create_task(self._reap_loop())
                actors = tg.create_task(self._actors.run())
                listen = tg.create_task(self._broadcast_loop())
                self._take_task = tg.create_task(self._take_loop())
                try:
                    await self._take_task
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # run() itself is cancelled, not just the take loop by stop()
                self._stopping = True
                await self._finish_running()
                await self._actors.stop(self._grace_left())
                actors.cancel()
                beat.cancel()
                reap.cancel()
                listen.cancel()
        except asyncio.CancelledError:
            # Cancelled (a daemon's fast stop): still hand back what runs, briefly, so that
            # it is queued again now rather than when its lease expires.
            await self._abandon()
            raise
        finally:
            self._stopping = True
            with contextlib.suppress(Exception):
                await r.aclose()
            await self._close_blocking()
            await self._close_broadcasts()
            self._done.set()

    def _grace_left(self) -> float:
        if self._stop_deadline is None:
            return self.grace
        return max(0.0, self._stop_deadline - time.monotonic())

    def _start_client(self) -> Wire:
        # Named actors, when the pool's worker module declares some (``actor_host``).
        self._actors = ActorHosting(
            self.pool,
            url=self.url,
            queue=self.queue,
            name=self.name,
            lease=self.lease,
            grace=self.grace,
            health=self._health,
            wire_factory=Wire,
        )
        # Two connections: BLMOVE blocks its own, and stop() closes it to end the wait at once.
        self._wire = Wire(self.url)
        self._blocking = Wire(self.url)
        self._listening = Wire(self.url)  # the broadcasts' XREAD blocks it
        return self._wire

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop taking jobs; let running ones finish for up to ``grace`` seconds (default:
        the consumer's ``grace``; 0 hands them back at once), then hand the rest back to the
        queue front (their children are killed). Returns once ``run`` has returned. No job is
        left "started"."""
        if self._take_task is None:
            self._stopping = True
            self._done.set()
            return
        if not self._stopping:
            self._stopping = True
            self._stop_deadline = time.monotonic() + (self.grace if grace is None else grace)
            if self._interruptible and not self._take_task.done():
                self._take_task.cancel()
                await self._close_blocking()
        await self._done.wait()

    async def _close_blocking(self) -> None:
        if self._blocking is not None:
            await self._blocking.aclose()

    # ------------------------------------------------------------ stopping
    async def _finish_running(self) -> None:
        """After the take loop ended: wait for running jobs up to the grace period, then
        cancel the rest (their children are killed) and hand them back."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.grace
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if tasks:
            remaining = max(0.0, self._stop_deadline - time.monotonic())
            await asyncio.wait(tasks, timeout=remaining)
        leftovers = [r for r in self._running.values() if not r.finished]
        for r in leftovers:
            if r.task is not None:
                r.task.cancel()
        if self._jobs_task:
            await asyncio.wait(list(self._jobs_task), timeout=self.grace + 1)
        await self._hand_back(leftovers, final=True)

    async def _abandon(self) -> None:
        self._stopping = True
        leftovers = [r for r in self._running.values() if not r.finished]
        for r in leftovers:
            if r.task is not None:
                r.task.cancel()
        try:
            async with asyncio.timeout(ABANDON_TIMEOUT):
                await self._hand_back(leftovers, final=True)
        except (TimeoutError, RedisError, OSError) as exc:
            logger.error(
                "consumer %s: cancelled; could not hand back %d jobs (%s); their leases will "
                "expire and the reaper will queue them again",
                self.name,
                len(leftovers),
                exc,
            )
