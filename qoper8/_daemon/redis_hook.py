"""The daemon's Redis intake (``--redis``): the ``RedisConsumer`` it runs beside the HTTP
API, started once the pool is ready and stopped first on TERM, INT or QUIT. With several
roles, one consumer per role, on that role's own pool and queue (its name, or ``queue`` in
``[roles.NAME]``), so one role's backlog never delays another's.

Imported by the daemon whatever its settings; the Redis modules themselves are imported
only when ``--redis`` is set, so a daemon without it needs neither redis nor rq.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import ServeConfig
    from .history import RecordingPool

__all__ = ["RedisIntake"]

logger = logging.getLogger("qoper8.daemon")


class RedisIntake:
    """The Redis consumers of one daemon (one per role), or nothing when ``config.redis`` is
    not set."""

    def __init__(self, pool: RecordingPool, config: ServeConfig) -> None:
        self._pool = pool
        self._config = config
        self._consumers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []

    def check(self) -> None:
        """Raise ``ConfigError`` now, before anything starts, if Redis mode is asked for
        but not installed."""
        self._consumer_class()

    def _consumer_class(self) -> Any:
        if self._config.redis is None:
            return None
        try:
            from .._redis import RedisConsumer
        except ImportError as exc:
            raise ConfigError(
                f"--redis needs Redis mode (pip install 'qoper8[redis]'): {exc}"
            ) from None
        return RedisConsumer

    def state(self) -> dict[str, Any] | None:
        """Whether the consumer reaches Redis (None without ``--redis``). Until the consumer
        runs (the pool still starting) it counts as not connected."""
        if self._config.redis is None:
            return None
        if not self._consumers:
            return {"connected": False, "last_error": None}
        errors = [c.last_error for c in self._consumers if not c.connected]
        return {"connected": not errors, "last_error": next(filter(None, errors), None)}

    def start(self, tg: asyncio.TaskGroup) -> None:
        """Start consuming in ``tg`` (nothing without ``--redis``)."""
        cls = self._consumer_class()
        if cls is None:
            return
        cfg = self._config
        queues = cfg.queues()
        for role, queue in queues.items():
            # A single worker module's consumer feeds the whole pool, as it always did.
            pool = self._pool.recording(role) if cfg.roles else self._pool
            consumer = cls(
                pool,
                url=cfg.redis,
                queue=queue,
                lease=cfg.redis_lease,
                max_retries=cfg.redis_max_retries,
                grace=cfg.grace,
            )
            self._consumers.append(consumer)
            self._tasks.append(tg.create_task(consumer.run()))
            if cfg.roles:
                logger.info("consuming Redis queue %r for role %s", queue, role)
            else:
                logger.info("consuming Redis queue %r", queue)

    async def stop(self, limit: float | None, grace: float | None = None) -> None:
        """Stop taking Redis jobs; running ones get ``grace`` (default: the daemon's) to
        finish before they are handed back to the queue. Waits up to ``limit`` seconds."""
        running = [
            (c, t) for c, t in zip(self._consumers, self._tasks, strict=True) if not t.done()
        ]
        if not running:
            return
        try:
            async with asyncio.timeout(limit):
                await asyncio.gather(*(c.stop(grace=grace) for c, _ in running))
                await asyncio.wait({t for _, t in running})
        except TimeoutError:
            logger.warning("the Redis consumer did not stop within %gs; cancelling it", limit)
        for _, task in running:
            task.cancel()
