"""What the dashboard shows of the past: throughput and latency over the last minutes, and
the last errors the daemon's callers got.

The pool keeps lifetime counters and histograms only. Once a second ``History`` takes the
difference between two snapshots: jobs ended per second, and run-time and queue-wait
percentiles of the jobs of that second, estimated from the histogram buckets (as
Prometheus's ``histogram_quantile`` does). Errors are caught where the daemon hands jobs to
the pool (``RecordingPool``: HTTP and Redis alike), so the engine needs no hook for them.
Both rings are bounded; nothing here asks a child anything.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from .._engine.stats import HISTOGRAM_BUCKETS
from ..errors import Qoper8Error

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from pydantic import BaseModel

    from .._engine.actor_ref import Actors
    from .._engine.delivery import BroadcastResult
    from .._engine.pool import Pool
    from .._engine.pool_like import PoolLike
    from .._engine.stats import ChildStatistics, Histogram, PoolStatistics
    from .._engine.stream import Stream
    from .._engine.worker import HandlerInfo
    from .._types import JSONValue

__all__ = [
    "ERRORS_KEPT",
    "HISTORY_POINTS",
    "SAMPLE_INTERVAL",
    "History",
    "RecordingPool",
    "quantile",
]

# One point per this many seconds. Shorter makes the charts noisier and the history shorter
# for the same number of points; longer hides a burst.
SAMPLE_INTERVAL: Final = 1.0
# Points kept: five minutes at one a second (a few tens of KB for a new dashboard).
HISTORY_POINTS: Final = 300
# Errors kept for the dashboard; older ones are in the log.
ERRORS_KEPT: Final = 50
# An error message is cut to this many characters (a traceback belongs in the log).
MESSAGE_CHARS: Final = 500


def quantile(q: float, before: Histogram | None, after: Histogram) -> float | None:
    """The ``q`` quantile (seconds) of the observations ``after`` holds and ``before`` did
    not, interpolated linearly inside its bucket; None when there were none."""
    prev = [c for _, c in before.buckets] if before is not None else [0] * len(after.buckets)
    prev_total = before.count if before is not None else 0
    cumulative = [c - p for (_, c), p in zip(after.buckets, prev, strict=True)]
    total = after.count - prev_total
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0
    for bound, count in zip(HISTOGRAM_BUCKETS, cumulative, strict=False):
        if count >= rank and count > below:
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return HISTOGRAM_BUCKETS[-1]  # in the +Inf bucket: all we know is "more than the last"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _done(stats: PoolStatistics) -> int:
    return stats.completed + stats.failed + stats.timed_out + stats.died


def _errors(stats: PoolStatistics) -> int:
    return stats.failed + stats.timed_out + stats.died + stats.invalid


class History:
    """The last minutes of throughput and latency, and the last errors, each with a
    sequence number so a stream sends only what its reader has not seen."""

    def __init__(self) -> None:
        self.points: deque[dict[str, Any]] = deque(maxlen=HISTORY_POINTS)
        self.errors: deque[dict[str, Any]] = deque(maxlen=ERRORS_KEPT)
        self._seq = itertools.count(1)
        self._last: PoolStatistics | None = None
        self._last_time = 0.0

    def sample(self, stats: PoolStatistics, now: float | None = None) -> dict[str, Any] | None:
        """Add the point for the time since the previous sample (the first sample only
        sets the baseline and returns None)."""
        now = time.time() if now is None else now
        last, self._last = self._last, stats
        elapsed, self._last_time = now - self._last_time, now
        if last is None or elapsed <= 0:
            return None
        point = {
            "seq": next(self._seq),
            "time": round(now, 3),
            "throughput": round((_done(stats) - _done(last)) / elapsed, 3),
            "errors": round((_errors(stats) - _errors(last)) / elapsed, 3),
            "queue": stats.queue_length,
            "running": stats.running,
            "run_p50_ms": _ms(quantile(0.5, last.run_time_histogram, stats.run_time_histogram)),
            "run_p99_ms": _ms(quantile(0.99, last.run_time_histogram, stats.run_time_histogram)),
            "wait_p99_ms": _ms(
                quantile(0.99, last.queue_wait_histogram, stats.queue_wait_histogram)
            ),
        }
        self.points.append(point)
        return point

    def record_error(self, action: object, exc: Qoper8Error, now: float | None = None) -> None:
        """Keep one error a caller got: when, the action's type, the error's type and
        message."""
        action_type = action.get("type") if isinstance(action, Mapping) else None
        if action_type is None:
            action_type = getattr(action, "type", None)
        message = str(exc)
        if len(message) > MESSAGE_CHARS:
            message = message[: MESSAGE_CHARS - 1] + "…"
        self.errors.append(
            {
                "seq": next(self._seq),
                "time": round(time.time() if now is None else now, 3),
                "action_type": action_type if isinstance(action_type, str) else None,
                "error_type": type(exc).__name__,
                "message": message,
            }
        )

    async def run(self, statistics: Callable[[], PoolStatistics]) -> None:
        """Sample every ``SAMPLE_INTERVAL`` seconds until cancelled."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self.sample(statistics())
            next_at += SAMPLE_INTERVAL
            # A stalled loop skips the samples it missed rather than bunching them up.
            next_at = max(next_at, loop.time())
            await asyncio.sleep(next_at - loop.time())


class RecordingPool:
    """The pool as the daemon's intakes see it: every call goes through, and each error a
    submit raises is also kept in ``history`` for the dashboard."""

    def __init__(self, pool: PoolLike, history: History) -> None:
        self._pool = pool
        self._history = history

    @property
    def is_open(self) -> bool:
        return self._pool.is_open

    @property
    def is_degraded(self) -> bool:
        return self._pool.is_degraded

    @property
    def size(self) -> int:
        return self._pool.size

    @property
    def generation(self) -> int:
        return self._pool.generation

    @property
    def handlers(self) -> dict[str, HandlerInfo]:
        return self._pool.handlers

    @property
    def roles(self) -> tuple[str, ...]:
        return self._pool.roles

    def role(self, name: str) -> Pool:
        return self._pool.role(name)

    def recording(self, role: str) -> RecordingPool:
        """One role's pool, its errors kept in the same history (a role's Redis intake)."""
        return RecordingPool(self._pool.role(role), self._history)

    async def submit(self, action: Mapping[str, Any] | BaseModel, **options: Any) -> JSONValue:
        # Options pass through as given: an explicit timeout=None (no deadline) must not
        # become the pool's default.
        try:
            return await self._pool.submit(action, **options)
        except Qoper8Error as exc:
            self._history.record_error(action, exc)
            raise

    def stream(
        self, action: Mapping[str, Any] | BaseModel, **options: Any
    ) -> AbstractAsyncContextManager[Stream]:
        # The stream's errors reach its caller mid-stream: the API records them itself.
        return self._pool.stream(action, **options)

    async def broadcast(
        self, topic: str, payload: Mapping[str, Any] | None = None, **options: Any
    ) -> BroadcastResult:
        return await self._pool.broadcast(topic, payload, **options)

    async def ask(
        self,
        child: int | ChildStatistics,
        topic: str,
        payload: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> JSONValue:
        return await self._pool.ask(child, topic, payload, **options)

    @property
    def actors(self) -> Actors:
        return self._pool.actors

    def statistics(self, *, role: str | None = None) -> PoolStatistics:
        return self._pool.statistics(role=role)

    def has_capacity(self) -> bool:
        return self._pool.has_capacity()

    async def wait_capacity(self) -> None:
        await self._pool.wait_capacity()
