"""The daemon's Redis intake (``--redis``): the ``RedisConsumer`` it runs beside the HTTP
API, started once the pool is ready and stopped first on TERM, INT or QUIT.

Imported by the daemon whatever its settings; the Redis modules themselves are imported
only when ``--redis`` is set, so a daemon without it needs neither redis nor rq.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .._engine.pool_like import PoolLike
    from ..config import ServeConfig

__all__ = ["RedisIntake"]

logger = logging.getLogger("qoper8.daemon")


class RedisIntake:
    """The Redis consumer of one daemon, or nothing when ``config.redis`` is not set."""

    def __init__(self, pool: PoolLike, config: ServeConfig) -> None:
        self._pool = pool
        self._config = config
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

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
        consumer = self._consumer
        if consumer is None:
            return {"connected": False, "last_error": None}
        return {"connected": bool(consumer.connected), "last_error": consumer.last_error}

    def start(self, tg: asyncio.TaskGroup) -> None:
        """Start consuming in ``tg`` (nothing without ``--redis``)."""
        cls = self._consumer_class()
        if cls is None:
            return
        cfg = self._config
        self._consumer = cls(
            self._pool,
            url=cfg.redis,
            queue=cfg.queue,
            lease=cfg.redis_lease,
            max_retries=cfg.redis_max_retries,
            grace=cfg.grace,
        )
        self._task = tg.create_task(self._consumer.run())
        logger.info("consuming Redis queue %r", cfg.queue)

    async def stop(self, limit: float | None, grace: float | None = None) -> None:
        """Stop taking Redis jobs; running ones get ``grace`` (default: the daemon's) to
        finish before they are handed back to the queue. Waits up to ``limit`` seconds."""
        task = self._task
        if task is None or task.done():
            return
        try:
            async with asyncio.timeout(limit):
                await self._consumer.stop(grace=grace)
                await asyncio.wait({task})
        except TimeoutError:
            logger.warning("the Redis consumer did not stop within %gs; cancelling it", limit)
        task.cancel()
