"""The table ``qoper8 status`` prints from the daemon's ``/v1/status``.

Formatting only: it copes with missing fields (an older or newer daemon) rather than fail.
"""

from __future__ import annotations

from typing import Any

from .._text import plural

__all__ = ["format_status"]


def _seconds(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    if value < 1:
        return f"{value * 1000:.1f}ms"
    return f"{value:.1f}s"


def format_status(status: dict[str, Any]) -> str:
    """``/v1/status`` as the readable table ``qoper8 status`` prints."""
    children = status.get("children") or []
    lines = [
        f"qoper8 {status.get('version', '?')}, master pid {status.get('pid')}, "
        f"worker {status.get('worker')}, up {_seconds(status.get('uptime'))}"
        + (", DRAINING" if status.get("draining") else "")
        + (", PAUSED (WINCH; TTIN brings the children back)" if status.get("paused") else ""),
        f"{plural(len(children), 'child', 'children')} (target {status.get('target_size')}), "
        f"generation {status.get('generation')}",
        "",
    ]
    header = ("ID", "PID", "GEN", "STATE", "JOBS", "AGE", "CURRENT JOB", "RSS")
    rows = [header]
    for c in children:
        rss = c.get("memory_rss")
        rows.append(
            (
                str(c.get("id")),
                str(c.get("pid")),
                str(c.get("generation")),
                str(c.get("state")),
                str(c.get("jobs_done")),
                _seconds(c.get("age")),
                _seconds(c.get("current_job_age")),
                f"{rss / 2**20:.1f}MiB" if isinstance(rss, int) else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    wait = status.get("queue_wait") or {}
    run = status.get("run_time") or {}
    lines += [
        "",
        f"queue: {status.get('queue_length')} waiting, {status.get('running')} running",
        "totals: "
        + ", ".join(
            f"{name.replace('_', ' ')} {status.get(name)}"
            for name in (
                "submitted",
                "completed",
                "failed",
                "invalid",
                "timed_out",
                "died",
                "cancelled",
                "rejected",
                "recycled",
            )
        ),
        f"queue wait: p50 {_seconds(wait.get('p50'))}, p99 {_seconds(wait.get('p99'))}; "
        f"run time: p50 {_seconds(run.get('p50'))}, p99 {_seconds(run.get('p99'))}",
    ]
    actors = status.get("actors") or []
    if actors:
        states: dict[str, int] = {}
        for actor in actors:
            states[str(actor.get("state"))] = states.get(str(actor.get("state")), 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        lines.append(f"actors: {len(actors)} ({summary}; qoper8 actors lists them)")
    return "\n".join(lines)
