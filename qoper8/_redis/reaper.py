"""The reaper of ``RedisConsumer``: hands a dead consumer's claims back to the queue and
queues again (or fails) jobs whose lease expired. Any host runs it; the script is atomic.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from .consumer_base import REAP_BATCH, REAP_FRACTION, _ConsumerBase
from .jobs import DEFAULT_FAILURE_TTL, _text, rq_now

__all__: list[str] = []

logger = logging.getLogger("qoper8.redis")


class _Reaping(_ConsumerBase):
    """Every host reaps: dead consumers' claims go back, expired leases are requeued."""

    async def _reap_loop(self) -> None:
        # Every host reaps; the script is atomic, so two reapers never requeue a job twice.
        backoff = self._backoff(f"consumer {self.name} reaper")
        interval = self.lease * REAP_FRACTION
        while True:
            await asyncio.sleep(interval * random.uniform(0.5, 1.0))
            await backoff.attempt(self.reap)

    async def reap(self, *, now: float | None = None) -> tuple[int, list[str], list[str]]:
        """Hand back dead consumers' claims (and take them off rq's worker registry), and
        queue again (or fail) jobs whose lease expired by ``now`` (default: the current
        time). Returns (claims returned, job ids queued again, job ids failed)."""
        now = time.time() if now is None else now
        returned, requeued, failed, dead = await self._script("reap")(
            keys=[self._wip_key, self._queue_key, self._failed_key, self._consumers_key],
            args=[
                now,
                rq_now(),
                DEFAULT_FAILURE_TTL,
                self._reason,
                self._reason_b64,
                self._error_prefix,
                self._error_suffix,
                REAP_BATCH,
                self.name,
            ],
        )
        req = [_text(x) for x in requeued]
        fail = [_text(x) for x in failed]
        if dead:
            logger.warning(
                "reaper on %r: %s stopped renewing their registration (dead, frozen or cut off "
                "from Redis): removed from rq's workers, %d ids they had claimed queued again",
                self.queue,
                [_text(c) for c in dead[:10]],
                returned,
            )
        if req or fail:
            logger.warning(
                "reaper on %r: lease expired: %d queued again %s, %d failed %s",
                self.queue,
                len(req),
                req[:10],
                len(fail),
                fail[:10],
            )
        return int(returned), req, fail
