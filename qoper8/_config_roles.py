"""The daemon's roles from its sources: ``[roles.NAME]`` tables in the TOML file, ``--role
NAME=pkg.mod:attr[:N|:MIN:MAX]`` flags, and ``QOPER8_ROLES`` (the same specs, separated by
spaces or commas). Each role's settings are the top-level pool settings with its own over
them; a bad one is named with its role and where it came from.

Roles are one setting: the highest source that gives any replaces the others' whole (flags
over the variable over the file), so a source can also take a role away. ``load_config``
(``_config_sources``) calls this; the models are ``config``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from ._engine.role import check_role_name
from ._text import did_you_mean
from .config import PoolConfig, RoleConfig
from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ROLE_SETTINGS", "build_roles", "parse_role_spec", "read_roles"]

# What a [roles.NAME] table may set: the worker module and any pool setting, and the Redis
# queue the role consumes (the daemon's own settings are the daemon's, not a role's).
ROLE_SETTINGS: Final = frozenset(PoolConfig.model_fields) | {"queue"}
# How many numbers may end a spec: N (a fixed size), or MIN:MAX (a range).
_MAX_NUMBERS: Final = 2


def parse_role_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"users=workers.users:worker:8"`` is ``("users", {"worker": "workers.users:worker",
    "children": 8})``. Read from the right: one trailing number is the size, two a range
    (``:0:2``); what is left is the worker reference, whose attribute may be omitted.

    Raises:
        ConfigError: not ``NAME=REF``, or a name no role may have.
    """
    name, equals, ref = (part.strip() for part in spec.partition("="))
    if not equals or not name or not ref:
        raise ConfigError(f"{spec!r} is not a role: give NAME=pkg.mod:attr[:N|:MIN:MAX]")
    parts = ref.split(":")
    numbers: list[int] = []
    while len(parts) > 1 and len(numbers) < _MAX_NUMBERS and _is_number(parts[-1]):
        numbers.insert(0, int(parts.pop()))
    settings: dict[str, Any] = {"worker": ":".join(parts)}
    if len(numbers) == 1:
        settings["children"] = numbers[0]
    elif numbers:
        settings["children"] = numbers
    return check_role_name(name), settings


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def read_roles(value: object, where: str) -> dict[str, dict[str, Any]]:
    """The roles one source gives, by name, in order: a table of tables (TOML), a list of
    specs (flags, or a TOML list), or specs in one string (the environment).

    Raises:
        ConfigError: a malformed role, a bad name, or a name given twice.
    """
    roles: dict[str, dict[str, Any]] = {}
    entries: list[tuple[str, dict[str, Any]]] = []
    try:
        if isinstance(value, str):
            entries = [parse_role_spec(s) for s in value.replace(",", " ").split()]
        elif isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
            entries = [parse_role_spec(s) for s in value]
        elif isinstance(value, dict):
            for name, table in value.items():
                if not isinstance(table, dict):
                    raise ConfigError(
                        f"roles.{name} must be a table ([roles.{name}]) with a worker"
                    )
                settings = {str(k).replace("-", "_"): v for k, v in table.items()}
                entries.append((check_role_name(name), settings))
        else:
            raise ConfigError("roles must be [roles.NAME] tables or NAME=pkg.mod:attr specs")
    except ConfigError as exc:
        raise ConfigError(f"invalid setting: roles ({where}): {exc}") from None
    for name, settings in entries:
        if name in roles:
            raise ConfigError(f"invalid setting: roles ({where}): role {name!r} is given twice")
        roles[name] = settings
    return roles


def build_roles(
    roles: Mapping[str, Mapping[str, Any]],
    defaults: Mapping[str, Any],
    *,
    where: str,
    origin: Mapping[str, str],
) -> dict[str, RoleConfig]:
    """Each role's validated settings: ``defaults`` (the top-level pool settings) with the
    role's own over them.

    Args:
        roles: the roles ``read_roles`` read.
        defaults: the top-level pool settings (every role's defaults).
        where: the source of the roles.
        origin: the source of each top-level setting.

    Raises:
        ConfigError: no role, an unknown or invalid setting, or a role without a worker;
            each named ``roles.NAME.SETTING (source)``, or as the top-level setting it
            inherited.
    """
    if not roles:
        raise ConfigError(f"invalid setting: roles ({where}): name at least one role")
    built: dict[str, RoleConfig] = {}
    for name, table in roles.items():
        unknown = sorted(set(table) - ROLE_SETTINGS)
        if unknown:
            named = ", ".join(
                f"roles.{name}.{k} ({where}){did_you_mean(k, ROLE_SETTINGS)}" for k in unknown
            )
            raise ConfigError(f"unknown setting: {named}")
        if "worker" not in table:
            raise ConfigError(
                f"invalid setting: roles.{name}.worker ({where}): each role names its worker "
                f'module ("pkg.mod:attr")'
            )
        own = {k: v for k, v in table.items() if k != "queue"}
        try:
            pool = PoolConfig.model_validate({**defaults, **own})
            built[name] = RoleConfig(pool=pool, queue=table.get("queue"))
        except ValidationError as exc:
            raise ConfigError(
                "invalid setting: " + _problems(exc, name, set(own), where, origin)
            ) from None
    return built


def _problems(
    exc: ValidationError, role: str, own: set[str], where: str, origin: Mapping[str, str]
) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if p != "pool"]
        field = loc[0] if loc else ""
        msg = err["msg"].removeprefix("Value error, ")
        if field and field not in own and field != "queue" and field in origin:
            label = f"{field} ({origin[field]}, for role {role!r})"  # a top-level default
        else:
            label = f"roles.{role}{'.' + field if field else ''} ({where})"
        lines.append(f"{label}: {msg}")
    return "; ".join(lines)
