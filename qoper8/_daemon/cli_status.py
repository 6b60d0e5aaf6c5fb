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


def _table(children: list[dict[str, Any]]) -> list[str]:
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
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _role_line(role: dict[str, Any]) -> str:
    """One role's heading: its worker module, size (or range), queue and generation."""
    size = f"target {role.get('target_size')}"
    if role.get("max_size") is not None:
        size += f" (autoscaling {role.get('min_size')}:{role.get('max_size')})"
    return (
        f"role {role.get('name')}: {role.get('worker')}, {size}, "
        f"{role.get('queue_length')} queued, {role.get('running')} running, "
        f"generation {role.get('generation')}" + (", PAUSED" if role.get("paused") else "")
    )


def format_status(status: dict[str, Any]) -> str:
    """``/v1/status`` as the readable table ``qoper8 status`` prints."""
    children = status.get("children") or []
    roles = [r for r in status.get("roles") or [] if isinstance(r, dict)]
    runs = (
        f"roles {', '.join(str(r.get('name')) for r in roles)}"
        if len(roles) > 1
        else f"worker {status.get('worker')}"
    )
    scaled = (
        f", autoscaling {status.get('min_size')}:{status.get('max_size')}"
        if status.get("max_size") is not None
        else ""
    )
    lines = [
        f"qoper8 {status.get('version', '?')}, master pid {status.get('pid')}, "
        f"{runs}, up {_seconds(status.get('uptime'))}"
        + (", DRAINING" if status.get("draining") else "")
        + (", PAUSED (WINCH; TTIN brings the children back)" if status.get("paused") else ""),
        f"{plural(len(children), 'child', 'children')} (target {status.get('target_size')}"
        f"{scaled}), generation {status.get('generation')}",
        "",
    ]
    if len(roles) > 1:
        by_id = {c.get("id"): c for c in children}
        for role in roles:
            mine = [by_id[i] for i in role.get("children") or [] if i in by_id]
            lines += [_role_line(role), *_table(mine), ""]
        lines.pop()
    else:
        lines += _table(children)
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
