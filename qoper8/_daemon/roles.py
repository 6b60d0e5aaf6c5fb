"""The daemon's pool from its settings: one worker module (``Pool(config=...)``), or several
roles (``Pool(roles=...)``, a pool of pools), and how the log and ``/v1/status`` name what
it runs. The routing, sizes and statistics of roles are the engine's (``roles_pool``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._engine.pool import Pool
from .._engine.role import Role

if TYPE_CHECKING:
    from .._engine.pool import OutputCallback
    from ..config import ServeConfig

__all__ = ["describe_workers", "make_pool"]


def make_pool(config: ServeConfig, on_output: OutputCallback) -> Pool:
    """The pool ``qoper8 serve`` runs: a pool of roles when roles are configured, else the
    one worker module's, exactly as before roles existed."""
    if not config.roles:
        return Pool(config=config.pool, on_output=on_output)
    roles = {
        name: Role(role.pool.worker, **role.pool.model_dump(exclude={"worker"}))
        for name, role in config.roles.items()
    }
    return Pool(roles=roles, on_output=on_output)


def describe_workers(config: ServeConfig) -> str:
    """What the daemon runs, for its log and ``/v1/status``'s ``worker``: the worker
    module, or ``NAME=REF`` per role (each role's own is in ``roles``)."""
    if not config.roles:
        return config.pool.worker
    return ", ".join(f"{name}={role.pool.worker}" for name, role in config.roles.items())
