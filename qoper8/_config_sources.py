"""Where the daemon's settings come from, and in what order: flags over ``QOPER8_*``
variables over a TOML file over defaults. Each value remembers its source, so a bad one is
named with it ("children (QOPER8_CHILDREN)") and unknown names get a did-you-mean.
"""

from __future__ import annotations

import logging
import os
import tomllib
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from ._config_roles import build_roles, read_roles
from ._text import did_you_mean, suggest
from ._values import parse_bind
from .config import ENV_PREFIX, PoolConfig, ServeConfig
from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .config import RoleConfig

__all__ = ["load_config", "merge_sources", "read_env", "read_toml", "unknown_variables"]

logger = logging.getLogger("qoper8.config")

_POOL_FIELDS: Final = frozenset(PoolConfig.model_fields)
_SERVE_FIELDS: Final = frozenset(ServeConfig.model_fields) - {"pool", "roles"}
# Several worker modules ([roles.NAME], --role, QOPER8_ROLES): read by ``_config_roles``.
ROLES: Final = "roles"
# `bind` is shorthand, not a field: it expands into host, port and unix in its own source.
BIND: Final = "bind"
SETTINGS: Final = frozenset(_POOL_FIELDS | _SERVE_FIELDS | {BIND, ROLES})
# QOPER8_* variables read by something other than the daemon's settings (the client
# commands), so not worth a warning.
_OTHER_VARIABLES: Final = frozenset({"URL", "UPGRADE"})  # UPGRADE: a USR2's new master


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a settings file: top-level keys, or the same keys under a ``[qoper8]`` table.

    Raises:
        ConfigError: the file is missing, unreadable or not valid TOML.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {os.fspath(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {os.fspath(path)!r} is not valid TOML: {exc}") from None
    table = data.get("qoper8", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {os.fspath(path)!r}: [qoper8] must be a table")
    return {key.replace("-", "_"): value for key, value in table.items()}


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Pick the ``QOPER8_<SETTING>`` variables; an empty one counts as not set."""
    out: dict[str, Any] = {}
    for name in sorted(SETTINGS):
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw.strip():
            out[name] = raw
    return out


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``QOPER8_*`` variables that name no setting: probably a typo, silently ignored
    otherwise. Each comes with a suggestion when one is close."""
    known = {name.upper() for name in SETTINGS} | _OTHER_VARIABLES
    found = []
    for variable in sorted(environ):
        name = variable.removeprefix(ENV_PREFIX)
        if variable.startswith(ENV_PREFIX) and name not in known:
            match = suggest(name, known)
            hint = f" (did you mean {ENV_PREFIX}{match}?)" if match else ""
            found.append(f"{variable} is not a qoper8 setting and is ignored{hint}")
    return found


def _expand_bind(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Replace a source's ``bind`` with the host, port or unix it stands for."""
    if BIND not in values:
        return dict(values)
    out = {k: v for k, v in values.items() if k != BIND}
    clash = sorted({"host", "port", "unix"} & set(out))
    if clash:
        raise ConfigError(
            f"invalid setting: bind ({where}): give either bind or {', '.join(clash)}, not both"
        )
    raw = values[BIND]
    if not isinstance(raw, str):
        raise ConfigError(f"invalid setting: bind ({where}): must be a string like HOST:PORT")
    try:
        out.update(parse_bind(raw))
    except ValueError as exc:
        raise ConfigError(f"invalid setting: bind ({where}): {exc}") from None
    return out


def merge_sources(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The raw settings of every source, later ones winning, and where each came from.

    Unvalidated: ``load_config`` judges them; the client commands read a few (the daemon's
    address and token) from here without needing a whole valid daemon configuration.

    Raises:
        ConfigError: the file cannot be read, a ``bind`` is malformed or an unknown setting
            is given (named with its source, and the closest setting when one is close).
    """
    environ = os.environ if environ is None else environ
    sources: list[tuple[str, Mapping[str, Any]]] = []
    if path is not None:
        sources.append((f"config file {os.fspath(path)}", read_toml(path)))
    sources.append(("environment", read_env(environ)))
    sources.append(("command line", {k: v for k, v in (overrides or {}).items() if v is not None}))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for where, values in sources:
        for key, value in _expand_bind(values, where).items():
            merged[key] = value
            origin[key] = where
    unknown = sorted(set(merged) - SETTINGS)
    if unknown:
        named = ", ".join(f"{k} ({origin[k]}){did_you_mean(k, SETTINGS)}" for k in unknown)
        raise ConfigError(f"unknown setting: {named}")
    return merged, origin


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServeConfig:
    """Build the daemon's settings: the TOML file, then ``QOPER8_*`` variables, then
    ``overrides`` (the command-line flags that were given), each winning over the last.

    A ``bind`` (``HOST:PORT``, ``[IPV6]:PORT`` or ``unix:PATH``) stands for host, port and
    unix in its source. ``QOPER8_*`` variables that name no setting are logged as warnings
    on the ``qoper8.config`` logger (stderr until the daemon's log is set up).

    Args:
        path: a TOML settings file, or None.
        environ: the environment to read (default ``os.environ``).
        overrides: settings given on the command line; ``None`` values are ignored.

    Returns:
        The validated settings.

    Raises:
        ConfigError: a source cannot be read, a setting is unknown, or a value is invalid;
            the message names each bad setting and where it came from.
    """
    environ = os.environ if environ is None else environ
    for warning in unknown_variables(environ):
        logger.warning("%s", warning)
    merged, origin = merge_sources(path, environ=environ, overrides=overrides)
    pool = {k: v for k, v in merged.items() if k in _POOL_FIELDS}
    serve = {k: v for k, v in merged.items() if k in _SERVE_FIELDS}
    data: dict[str, Any] = {"pool": pool, **serve}
    if ROLES in merged:
        data = {"roles": _roles(merged, origin, pool), **serve}
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            if loc[:1] == ["pool"]:
                loc = loc[1:]
            name = ".".join(loc)
            where = f" ({origin[loc[0]]})" if loc and loc[0] in origin else ""
            if not loc and ROLES in origin:
                where = f" (roles, {origin[ROLES]})"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{name}{where}: {msg}" if name else msg)
        raise ConfigError("invalid setting: " + "; ".join(lines)) from None


def _roles(
    merged: Mapping[str, Any], origin: Mapping[str, str], pool: Mapping[str, Any]
) -> dict[str, RoleConfig]:
    """The roles, from the highest source that gives any, over the top-level pool settings.

    Raises:
        ConfigError: roles beside a worker, or a queue (each role consumes its own), or a
            bad role (``_config_roles``).
    """
    where = origin[ROLES]
    for single in ("worker", "queue"):
        if single in merged:
            what = "worker module" if single == "worker" else "Redis queue (each role has its own)"
            raise ConfigError(
                f"invalid setting: give either {single} ({origin[single]}) or roles ({where}), "
                f"not both: {single} is the single {what}"
            )
    defaults = {k: v for k, v in pool.items() if k != "worker"}
    return build_roles(read_roles(merged[ROLES], where), defaults, where=where, origin=origin)
