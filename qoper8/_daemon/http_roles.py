"""The roles of the pool behind the HTTP API: each role's statistics (for ``/v1/status``,
``/metrics`` and the dashboard), and the role a resize names, refused with a typed error when
it names none of them or is missing where several could be meant.

A pool of one worker module is a pool of one role: its statistics are the whole pool's, so
it costs nothing more than before roles existed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._text import did_you_mean
from ..errors import ConfigError
from .http_input import Refused
from .status import role_status

if TYPE_CHECKING:
    from .._engine.pool_like import PoolLike
    from .._engine.stats import PoolStatistics

__all__ = ["chosen_role", "role_statistics", "roles_status"]


def role_statistics(pool: PoolLike, whole: PoolStatistics) -> dict[str, PoolStatistics]:
    """Each role's snapshot by name, in the pool's order (``whole`` for the only one)."""
    roles = pool.roles
    if len(roles) == 1:
        return {roles[0]: whole}
    return {name: pool.statistics(role=name) for name in roles}


def roles_status(pool: PoolLike, parts: dict[str, PoolStatistics]) -> list[dict[str, Any]]:
    """``/v1/status``'s ``roles``: one entry per role (``status.role_status``)."""
    return [
        role_status(name, pool.role(name).config.worker, stats) for name, stats in parts.items()
    ]


def chosen_role(pool: PoolLike, role: str | None) -> str:
    """The role an operation acts on: ``role``, or the pool's only one.

    Raises:
        Refused: 422 ConfigError: no role given while the pool has several, or a role it
            does not have (with the closest name).
    """
    roles = pool.roles
    if role is None:
        if len(roles) == 1:
            return roles[0]
        message = f'this daemon has roles {", ".join(roles)}: name one ("role": NAME)'
        raise Refused(ConfigError(message), 422)
    if role not in roles:
        message = f"unknown role {role!r}{did_you_mean(role, roles)} (roles: {', '.join(roles)})"
        raise Refused(ConfigError(message), 422)
    return role
