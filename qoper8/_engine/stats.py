"""Statistics kept by the master alone: counters, bounded samples and histograms.

Nothing here asks a child anything; a busy child never delays a snapshot. The snapshot types
are frozen so that a caller can keep one while the pool moves on.
"""

from __future__ import annotations

import bisect
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .child import Child

# Upper bounds (seconds) of the cumulative histogram buckets, Prometheus style. Changing them
# changes the daemon's /metrics series; keep them sorted.
HISTOGRAM_BUCKETS: Final[tuple[float, ...]] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
# Percentiles come from the most recent samples only: enough for a stable p99, bounded memory.
SAMPLE_WINDOW: Final = 4096


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Percentiles in seconds of the most recent samples (``count`` of them); ``None`` when
    no job has been measured yet."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class Histogram:
    """A cumulative histogram: ``buckets`` pairs each upper bound with how many observations
    were at most that bound, over the pool's whole life."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


@dataclass(frozen=True, slots=True)
class ChildStatistics:
    """One child as the master sees it."""

    id: int
    pid: int | None
    generation: int
    state: str
    jobs_done: int
    age: float
    current_job_age: float | None
    memory_rss: int | None
    # The named actors this child holds (an actor child's), in the order they were placed.
    actors: tuple[str, ...] = ()
    # Its role, in a pool of several worker modules (None: a pool of one).
    role: str | None = None


@dataclass(frozen=True, slots=True)
class ActorInfo:
    """One named actor (``pool.actors.list()``, ``PoolStatistics.actors``): where it runs
    (its child's id and pid, None while it has no child) and how it is doing."""

    name: str
    type: str
    state: str
    child: int | None
    pid: int | None
    restarts: int
    max_restarts: int
    queued: int
    calls: int
    has_snapshot: bool


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of the pool, built from the master's own counters."""

    children: tuple[ChildStatistics, ...]
    target_size: int
    generation: int
    queue_length: int
    running: int
    submitted: int
    completed: int
    failed: int
    invalid: int
    timed_out: int
    died: int
    cancelled: int
    recycled: int
    rejected: int
    queue_wait: Percentiles
    run_time: Percentiles
    queue_wait_histogram: Histogram
    run_time_histogram: Histogram
    # Children fail to start and the pool is short of its target: it keeps respawning with
    # back-off (``failed_starts`` in a row so far) and recovers by itself once one starts.
    degraded: bool = False
    failed_starts: int = 0
    # Pool.pause() (the daemon's WINCH): no child until a resize. An autoscaled pool with
    # a least of 0 has a target of 0 and is not paused.
    paused: bool = False
    # Autoscaling: the range the target moves in (None: a fixed size).
    min_size: int | None = None
    max_size: int | None = None
    # The named actors, by name; and the restarts of every actor since the pool started (a
    # counter: a destroyed actor's restarts stay counted).
    actors: tuple[ActorInfo, ...] = ()
    actor_restarts: int = 0

    def to_dict(self) -> dict[str, object]:
        """The snapshot as JSON-able data (what the daemon's status endpoint serves)."""
        from dataclasses import asdict

        data = _lists(asdict(self))
        assert isinstance(data, dict)
        return data


def _lists(value: object) -> object:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_lists(v) for v in value]
    return value


@dataclass(slots=True)
class _Series:
    """Samples for percentiles plus a lifetime histogram of one duration."""

    samples: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLE_WINDOW))
    counts: list[int] = field(default_factory=lambda: [0] * (len(HISTOGRAM_BUCKETS) + 1))
    total: float = 0.0

    def add_many(self, seconds: list[float]) -> None:
        """Add durations, in order: each to the samples and to the first bucket whose bound
        is at least it. Sorted once, the batch is split at each bucket bound by bisection: a
        few C calls per bucket instead of Python work per value (the pool folds its raw
        per-job samples through here)."""
        if not seconds:
            return
        self.samples.extend(seconds)
        ordered = sorted(seconds)
        counts = self.counts
        start = 0
        for i, bound in enumerate(HISTOGRAM_BUCKETS):
            end = bisect.bisect_right(ordered, bound, start)
            counts[i] += end - start
            start = end
        counts[-1] += len(ordered) - start
        self.total += math.fsum(ordered)

    def percentiles(self) -> Percentiles:
        ordered = sorted(self.samples)
        n = len(ordered)
        if not n:
            return Percentiles(0, None, None, None, None)

        def pick(q: float) -> float:
            return ordered[min(n - 1, int(q * n))]

        return Percentiles(n, pick(0.50), pick(0.90), pick(0.99), ordered[-1])

    def histogram(self) -> Histogram:
        running = 0
        buckets = []
        for bound, count in zip(HISTOGRAM_BUCKETS, self.counts, strict=False):
            running += count
            buckets.append((bound, running))
        return Histogram(tuple(buckets), running + self.counts[-1], self.total)


@dataclass(slots=True)
class Counters:
    """The master's running totals; mutated on the event loop thread only."""

    submitted: int = 0
    completed: int = 0
    failed: int = 0
    invalid: int = 0
    timed_out: int = 0
    died: int = 0
    cancelled: int = 0
    recycled: int = 0
    rejected: int = 0
    queue_wait: _Series = field(default_factory=_Series)
    run_time: _Series = field(default_factory=_Series)


def merge_counters(parts: Iterable[Counters]) -> Counters:
    """One pool's totals from its roles' (each role counts its own jobs)."""
    merged = Counters()
    for part in parts:
        for name in _TOTALS:
            setattr(merged, name, getattr(merged, name) + getattr(part, name))
        pairs = ((merged.queue_wait, part.queue_wait), (merged.run_time, part.run_time))
        for mine, theirs in pairs:
            mine.samples.extend(theirs.samples)
            mine.counts = [a + b for a, b in zip(mine.counts, theirs.counts, strict=True)]
            mine.total += theirs.total
    return merged


_TOTALS: Final = ("submitted", "completed", "failed", "invalid", "timed_out", "died", "cancelled",
                  "recycled", "rejected")  # fmt: skip


def snapshot(
    children: Iterable[Child],
    counters: Counters,
    *,
    target_size: int,
    generation: int,
    queue_length: int,
    running: int,
    degraded: bool,
    failed_starts: int,
    placement: Mapping[int, tuple[str, ...]] | None = None,
    paused: bool = False,
    size_range: tuple[int, int] | None = None,
    actors: tuple[ActorInfo, ...] = (),
    actor_restarts: int = 0,
) -> PoolStatistics:
    """A frozen ``PoolStatistics`` from the master's own records (no child is asked)."""
    now = time.monotonic()
    c = counters
    per_child = tuple(
        ChildStatistics(
            id=child.id,
            pid=child.pid,
            generation=child.generation,
            state=child.state.value,
            jobs_done=child.jobs_done,
            age=now - child.started_at,
            current_job_age=(now - child.job.started_at) if child.job is not None else None,
            memory_rss=_rss_of(child.pid) or child.last_rss or None,
            actors=placement.get(child.id, ()) if placement else (),
        )
        for child in sorted(children, key=lambda ch: ch.id)
    )
    return PoolStatistics(
        children=per_child,
        target_size=target_size,
        generation=generation,
        queue_length=queue_length,
        running=running,
        submitted=c.submitted,
        completed=c.completed,
        failed=c.failed,
        invalid=c.invalid,
        timed_out=c.timed_out,
        died=c.died,
        cancelled=c.cancelled,
        recycled=c.recycled,
        rejected=c.rejected,
        queue_wait=c.queue_wait.percentiles(),
        run_time=c.run_time.percentiles(),
        queue_wait_histogram=c.queue_wait.histogram(),
        run_time_histogram=c.run_time.histogram(),
        degraded=degraded,
        failed_starts=failed_starts,
        paused=paused,
        min_size=size_range[0] if size_range else None,
        max_size=size_range[1] if size_range else None,
        actors=actors,
        actor_restarts=actor_restarts,
    )


_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_of(pid: int | None) -> int | None:
    """Resident memory of ``pid`` from /proc (Linux); None where unavailable."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None
