"""The pool's statistics in the Prometheus text exposition format, for ``GET /metrics``.

Rendering only: the metrics themselves (names, help, types, labels) are
``_engine.metrics.metric_families``, which ``qoper8.prometheus`` shares, so that a library
user's metrics are the daemon's. Built from the frozen ``PoolStatistics`` snapshot: it never
asks a child.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._engine.metrics import CHILD_STATES, metric_families

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._engine.stats import PoolStatistics

__all__ = ["CHILD_STATES", "render_metrics"]


def render_metrics(
    stats: PoolStatistics, *, roles: Mapping[str, PoolStatistics] | None = None
) -> str:
    """The pool's statistics in the Prometheus text exposition format (version 0.0.4);
    with ``roles`` (several), one series per role, labelled ``role``."""
    lines: list[str] = []
    for family in metric_families(stats, roles=roles):
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels)
            value = sample.value if type(sample.value) is int else repr(sample.value)
            lines.append(
                f"{sample.name}{{{labels}}} {value}" if labels else f"{sample.name} {value}"
            )
    return "\n".join(lines) + "\n"
