"""The pool's statistics as Prometheus metric families: the one list of names, help texts,
types and labels behind the daemon's ``GET /metrics`` text and ``qoper8.prometheus``.

Data only, from the frozen ``PoolStatistics`` snapshot (no child is asked); each face
renders it its own way. A name or label changed here changes every dashboard built on it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .stats import Histogram, PoolStatistics

__all__ = [
    "ACTOR_STATES",
    "CHILD_STATES",
    "ROLE_LABEL",
    "MetricFamily",
    "Sample",
    "metric_families",
]

# Every state a child can be in, so that each one has a series even at 0 (a series that
# appears and disappears breaks rate() and alerts). Mirrors ``ChildState``.
CHILD_STATES: Final = ("starting", "idle", "busy", "retiring", "dead")
# The same for actors; mirrors ``ActorState`` (a destroyed actor leaves the list, so
# "stopped" stays 0 but keeps its series).
ACTOR_STATES: Final = ("starting", "ready", "restarting", "unavailable", "stopped")
# The label that tells a pool's roles apart (first on each series). A pool of one worker
# module has no such label, so its series are what they were before roles existed.
ROLE_LABEL: Final = "role"


@dataclass(frozen=True, slots=True)
class Sample:
    """One series' value: its full name (``_total``, ``_bucket``... included), labels in
    exposition order, and the value (ints stay ints, so the text shows no ``.0``)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: int | float


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """A metric's ``# HELP`` and ``# TYPE`` and its samples. ``name`` is as the text format
    writes it (a counter's ends in ``_total``)."""

    name: str
    help: str
    type: Literal["counter", "gauge", "histogram"]
    samples: tuple[Sample, ...]


def _one(name: str, help_text: str, kind: Literal["counter", "gauge"], value: int) -> MetricFamily:
    return MetricFamily(name, help_text, kind, (Sample(name, (), value),))


def _histogram(name: str, help_text: str, hist: Histogram) -> MetricFamily:
    samples = [Sample(f"{name}_bucket", (("le", f"{bound:g}"),), n) for bound, n in hist.buckets]
    samples += [
        Sample(f"{name}_bucket", (("le", "+Inf"),), hist.count),
        Sample(f"{name}_sum", (), hist.sum),
        Sample(f"{name}_count", (), hist.count),
    ]
    return MetricFamily(name, help_text, "histogram", tuple(samples))


def metric_families(
    stats: PoolStatistics, *, roles: Mapping[str, PoolStatistics] | None = None
) -> list[MetricFamily]:
    """The pool's metrics, in the order the daemon's ``/metrics`` lists them.

    Args:
        stats: the whole pool's snapshot.
        roles: a pool of several roles: each role's snapshot by name. Every series is
            then one per role, with a ``role`` label (``sum without (role)`` gives the
            whole pool); without it, the series carry no role label.
    """
    if not roles:
        return _families(stats)
    merged: dict[str, MetricFamily] = {}
    for name, part in roles.items():
        for family in _families(part):
            samples = tuple(
                Sample(s.name, ((ROLE_LABEL, name), *s.labels), s.value) for s in family.samples
            )
            known = merged.get(family.name)
            merged[family.name] = replace(
                family, samples=samples if known is None else known.samples + samples
            )
    return list(merged.values())


def _families(stats: PoolStatistics) -> list[MetricFamily]:
    outcomes = {
        "completed": stats.completed,
        "failed": stats.failed,
        "invalid": stats.invalid,
        "timed_out": stats.timed_out,
        "died": stats.died,
        "cancelled": stats.cancelled,
        "rejected": stats.rejected,
    }
    by_state = dict.fromkeys(CHILD_STATES, 0)
    for child in stats.children:
        by_state[child.state] = by_state.get(child.state, 0) + 1
    actors = dict.fromkeys(ACTOR_STATES, 0)
    for actor in stats.actors:
        actors[actor.state] = actors.get(actor.state, 0) + 1
    return [
        _one(
            "qoper8_jobs_submitted_total",
            "Jobs accepted into the pool.",
            "counter",
            stats.submitted,
        ),
        MetricFamily(
            "qoper8_jobs_total",
            "Jobs that ended, by outcome.",
            "counter",
            tuple(Sample("qoper8_jobs_total", (("outcome", k),), v) for k, v in outcomes.items()),
        ),
        _one("qoper8_queue_length", "Jobs waiting for an idle child.", "gauge", stats.queue_length),
        _one("qoper8_jobs_running", "Jobs running in a child now.", "gauge", stats.running),
        MetricFamily(
            "qoper8_children",
            "Children by state.",
            "gauge",
            tuple(Sample("qoper8_children", (("state", k),), v) for k, v in by_state.items()),
        ),
        _one(
            "qoper8_children_target",
            "The number of children the pool converges on.",
            "gauge",
            stats.target_size,
        ),
        _one(
            "qoper8_generation",
            "The current generation of children (reload increments it).",
            "gauge",
            stats.generation,
        ),
        _one(
            "qoper8_children_recycled_total",
            "Children retired after max jobs or memory.",
            "counter",
            stats.recycled,
        ),
        _histogram(
            "qoper8_queue_wait_seconds",
            "Time from submit until a child took the job.",
            stats.queue_wait_histogram,
        ),
        _histogram(
            "qoper8_run_time_seconds", "Time a child spent on a job.", stats.run_time_histogram
        ),
        MetricFamily(
            "qoper8_actors",
            "Named actors by state.",
            "gauge",
            tuple(Sample("qoper8_actors", (("state", k),), v) for k, v in actors.items()),
        ),
        _one(
            "qoper8_actor_calls_queued",
            "Actor calls waiting for their actor.",
            "gauge",
            sum(a.queued for a in stats.actors),
        ),
        _one(
            "qoper8_actor_restarts_total",
            "Actors started again after their child died.",
            "counter",
            stats.actor_restarts,
        ),
    ]
