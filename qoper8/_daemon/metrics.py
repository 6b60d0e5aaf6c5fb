"""The pool's statistics in the Prometheus text exposition format, for ``GET /metrics``.

Rendering only, from the frozen ``PoolStatistics`` snapshot: it never asks a child.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .._engine.stats import Histogram, PoolStatistics

__all__ = ["CHILD_STATES", "render_metrics"]

CHILD_STATES: Final = ("starting", "idle", "busy", "retiring", "dead")


def _histogram(lines: list[str], name: str, help_text: str, hist: Histogram) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} histogram")
    for bound, count in hist.buckets:
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {count}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {hist.count}')
    lines.append(f"{name}_sum {hist.sum!r}")
    lines.append(f"{name}_count {hist.count}")


def render_metrics(stats: PoolStatistics) -> str:
    """The pool's statistics in the Prometheus text exposition format (version 0.0.4)."""
    lines = [
        "# HELP qoper8_jobs_submitted_total Jobs accepted into the pool.",
        "# TYPE qoper8_jobs_submitted_total counter",
        f"qoper8_jobs_submitted_total {stats.submitted}",
        "# HELP qoper8_jobs_total Jobs that ended, by outcome.",
        "# TYPE qoper8_jobs_total counter",
    ]
    outcomes = {
        "completed": stats.completed,
        "failed": stats.failed,
        "invalid": stats.invalid,
        "timed_out": stats.timed_out,
        "died": stats.died,
        "cancelled": stats.cancelled,
        "rejected": stats.rejected,
    }
    lines.extend(f'qoper8_jobs_total{{outcome="{k}"}} {v}' for k, v in outcomes.items())
    by_state = dict.fromkeys(CHILD_STATES, 0)
    for child in stats.children:
        by_state[child.state] = by_state.get(child.state, 0) + 1
    lines += [
        "# HELP qoper8_queue_length Jobs waiting for an idle child.",
        "# TYPE qoper8_queue_length gauge",
        f"qoper8_queue_length {stats.queue_length}",
        "# HELP qoper8_jobs_running Jobs running in a child now.",
        "# TYPE qoper8_jobs_running gauge",
        f"qoper8_jobs_running {stats.running}",
        "# HELP qoper8_children Children by state.",
        "# TYPE qoper8_children gauge",
        *(f'qoper8_children{{state="{k}"}} {v}' for k, v in by_state.items()),
        "# HELP qoper8_children_target The number of children the pool converges on.",
        "# TYPE qoper8_children_target gauge",
        f"qoper8_children_target {stats.target_size}",
        "# HELP qoper8_generation The current generation of children (reload increments it).",
        "# TYPE qoper8_generation gauge",
        f"qoper8_generation {stats.generation}",
        "# HELP qoper8_children_recycled_total Children retired after max jobs or memory.",
        "# TYPE qoper8_children_recycled_total counter",
        f"qoper8_children_recycled_total {stats.recycled}",
    ]
    _histogram(
        lines,
        "qoper8_queue_wait_seconds",
        "Time from submit until a child took the job.",
        stats.queue_wait_histogram,
    )
    _histogram(
        lines, "qoper8_run_time_seconds", "Time a child spent on a job.", stats.run_time_histogram
    )
    return "\n".join(lines) + "\n"
