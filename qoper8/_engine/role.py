"""``Role``: one worker module of a pool of several (mob's roles), with its own children, its
own queue and its own settings. A pool of roles is a pool of pools: each role is a complete
``Pool`` of its own (``roles_pool.py``), so one role's backlog, failures and restarts never
touch another's; the pool in front routes each action to the role that handles its type.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from .._text import did_you_mean
from ..config import make_pool_config
from ..errors import ConfigError, InvalidAction

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..config import PoolConfig
    from ..errors import ErrorEntry

__all__ = [
    "DEFAULT_ROLE",
    "Role",
    "check_role_name",
    "role_configs",
    "role_name",
    "unknown_role",
]

# The one role of a pool whose worker module has no usable name.
DEFAULT_ROLE: Final = "default"
# A role's name goes into URLs, metric labels, Redis keys and a CLI argument: keep it plain.
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def check_role_name(name: object) -> str:
    """``name`` if it can name a role (the pool's, the daemon's ``[roles.NAME]`` and
    ``--role NAME=...`` alike).

    Raises:
        ConfigError: it cannot.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"role name {name!r} must be a letter or _ then up to 63 letters, digits, _ or -"
        )
    return name


def role_name(worker: object) -> str:
    """A role's name from its worker module: ``"workers.users:worker"`` is ``"users"``."""
    module = str(worker or "").partition(":")[0].rpartition(".")[2]
    return module if _NAME.fullmatch(module) else DEFAULT_ROLE


class Role:
    """One worker module of a pool with roles, and its settings.

    Example:
        ```python
        pool = qoper8.Pool(roles={
            "users": qoper8.Role("workers.users:worker", children=8),
            "reports": qoper8.Role("workers.reports:worker", children=(0, 2)),
        })
        ```

    Args:
        worker: the worker module, ``"pkg.mod:attr"``.
        **settings: any ``PoolConfig`` field for this role (``children``, ``timeout``,
            ``max_queue``, ...); the pool's own keyword settings fill in the rest.

    Raises:
        ConfigError: a setting is invalid (checked here, before any pool starts).
    """

    __slots__ = ("settings", "worker")

    def __init__(self, worker: str, **settings: Any) -> None:
        make_pool_config(worker=worker, **settings)  # fail here, naming the setting
        self.worker = worker
        self.settings = settings

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.settings.items())
        return f"Role({self.worker!r}{extra})"

    def config(self, defaults: Mapping[str, Any]) -> PoolConfig:
        """This role's settings over the pool's."""
        return make_pool_config(**{**defaults, "worker": self.worker, **self.settings})


def role_configs(
    roles: Mapping[str, Role | str], defaults: Mapping[str, Any]
) -> dict[str, PoolConfig]:
    """Each role's complete settings, in the order given (the first role is the one the
    daemon's TTIN and TTOU act on and functions run on).

    Raises:
        ConfigError: no role, a bad name, or a bad setting (named with its role).
    """
    if not roles:
        raise ConfigError("roles must name at least one role")
    configs: dict[str, PoolConfig] = {}
    for name, role in roles.items():
        check_role_name(name)
        if isinstance(role, str):
            role = Role(role)
        if not isinstance(role, Role):
            raise ConfigError(f"role {name!r} must be a qoper8.Role or a worker reference")
        try:
            configs[name] = role.config(defaults)
        except ConfigError as exc:
            raise ConfigError(f"role {name!r}: {exc}") from None
    return configs


def unknown_role(role: object, roles: tuple[str, ...]) -> InvalidAction:
    """The error for ``role=`` naming no role of the pool."""
    hint = did_you_mean(str(role), roles)
    message = f"unknown role {role!r}{hint} (roles: {', '.join(roles)})"
    entry: ErrorEntry = {"loc": ["role"], "msg": message, "type": "unknown_role"}
    return InvalidAction(message, errors=[entry])
