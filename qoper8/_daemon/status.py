"""What the daemon says about itself: the bodies of ``/v1/status`` and ``/v1/health``, from
the pool's statistics snapshot and the daemon's own information.

Pure functions of their arguments (no pool, no I/O), so the status, the health check and
the dashboard's events say the same thing in the same words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .._engine.role import DEFAULT_ROLE, role_name

if TYPE_CHECKING:
    from .._engine.stats import PoolStatistics

__all__ = [
    "DEFAULT_ROLE",
    "health_body",
    "role_name",
    "role_status",
    "roles_of",
    "status_body",
]

# Child states that serve jobs.
_READY: Final = frozenset({"idle", "busy"})


def role_status(name: str, worker: str, stats: PoolStatistics) -> dict[str, Any]:
    """One role of ``/v1/status``: its worker module, size (and range when it autoscales),
    queue, generation, children (their ids: ``children`` has the details) and totals."""
    return {
        "name": name,
        "worker": worker,
        "target_size": stats.target_size,
        "min_size": stats.min_size,
        "max_size": stats.max_size,
        "paused": stats.paused,
        "generation": stats.generation,
        "queue_length": stats.queue_length,
        "running": stats.running,
        "completed": stats.completed,
        "failed": stats.failed,
        "children": [c.id for c in stats.children],
    }


def roles_of(worker: object, stats: PoolStatistics) -> list[dict[str, Any]]:
    """The one role of a pool of one worker module, named after its module."""
    return [role_status(role_name(worker), str(worker or ""), stats)]


def status_body(
    info: dict[str, Any],
    stats: PoolStatistics,
    *,
    held: int,
    roles: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``/v1/status``: the daemon's ``info``, the pool's statistics, whether the pool is
    paused (WINCH), the submits held at start-up, and the roles (``role_status`` each;
    default: the one role of ``info``'s worker)."""
    return {
        **info,
        **stats.to_dict(),
        "paused": stats.paused,
        "held": held,
        "roles": roles if roles is not None else roles_of(info.get("worker"), stats),
    }


def health_body(
    stats: PoolStatistics,
    *,
    is_open: bool,
    degraded: bool,
    draining: bool,
    redis: dict[str, Any] | None,
) -> dict[str, Any]:
    """``/v1/health``: ``status`` is "ready" (the answer is 200) or why not (503)."""
    # Any generation counts: during a reload the old children serve until the new ones
    # are ready, and a load balancer must not take the daemon out of rotation for that.
    ready = sum(1 for c in stats.children if c.state in _READY)
    redis_down = redis is not None and not redis["connected"]
    if draining:
        status = "draining"
    elif is_open and stats.paused:
        status = "paused"  # WINCH: no child until TTIN or a resize
    elif not is_open:
        status = "starting"
    elif degraded or redis_down:
        # Children fail to start (a dependency is down), or the Redis intake cannot reach
        # Redis: the daemon recovers by itself, but it does not do all its work meanwhile.
        status = "degraded"
    elif ready >= stats.target_size:
        status = "ready"
    else:
        status = "starting"
    body: dict[str, Any] = {"status": status, "ready": ready, "target": stats.target_size}
    if stats.degraded:
        body["failed_starts"] = stats.failed_starts
    if redis is not None:
        body["redis"] = "connected" if redis["connected"] else "disconnected"
        if redis_down and redis.get("last_error"):
            body["redis_error"] = redis["last_error"]
    return body
