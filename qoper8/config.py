"""Validated settings for a pool (and, later, the daemon and Redis mode).

Every option a user can set is declared once here with its default, its bounds and the reason
for its default; ``Pool`` and ``qoper8 serve`` both validate through these models so that a bad
setting fails at start with a ``ConfigError`` naming it, never mid-run.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path  # noqa: TC003  (pydantic resolves field types at run time)
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "PoolConfig",
    "ServeConfig",
    "load_config",
    "validation_message",
]

# A frame larger than this is refused at submit (InvalidAction) or when a child replies
# (JobFailed). It bounds the master's memory per child; 20 MiB results must fit comfortably.
DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024


def _default_children() -> int:
    return os.cpu_count() or 2


class PoolConfig(BaseModel):
    """How a local pool runs. Durations are seconds; ``None`` means no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker: str = Field(min_length=1, description='worker module reference, "pkg.mod:attr"')
    children: int = Field(default_factory=_default_children, ge=1, le=1024)
    timeout: float | None = Field(default=None, gt=0, description="default per-job deadline")
    max_queue: int | None = Field(default=None, ge=0)
    max_jobs_per_child: int | None = Field(default=None, ge=1)
    # Fraction of max_jobs_per_child added at random per child, so children spawned together
    # do not all retire together (gunicorn's max_requests_jitter).
    max_jobs_jitter: float = Field(default=0.1, ge=0, le=1)
    max_memory_per_child: int | None = Field(default=None, ge=1, description="bytes of RSS")
    start_timeout: float = Field(default=60.0, gt=0)
    # How long close() waits for queued and running jobs before it kills what is left.
    shutdown_timeout: float = Field(default=10.0, ge=0)
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=1024)
    # None (the default): children that fail to start after the pool opened (a database
    # down for a while) are respawned with back-off for as long as it takes, and the pool
    # reports itself degraded meanwhile. A number: after that many failed starts in a row the
    # pool gives up for good, failing queued and new jobs with StartFailed (the daemon exits 3).
    # The first start always fails fast.
    max_start_failures: int | None = Field(default=None, ge=1)

    @field_validator("worker")
    @classmethod
    def _worker_ref(cls, value: str) -> str:
        module, _, attr = value.partition(":")
        if not module or any(not part.isidentifier() for part in module.split(".")):
            raise ValueError(f"{value!r} is not a module reference like 'pkg.mod:worker'")
        if attr and not attr.isidentifier():
            raise ValueError(f"{attr!r} is not an attribute name")
        return value


def validation_message(exc: ValidationError) -> str:
    """Name each bad setting and say what is wrong with it, one per line."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def make_pool_config(**values: object) -> PoolConfig:
    """Build a ``PoolConfig`` or raise ``ConfigError`` naming the bad settings."""
    try:
        return PoolConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"invalid pool settings: {validation_message(exc)}") from None


# ==================================================================== the daemon

# The daemon's settings besides the pool's own. Changing a default here changes what
# `qoper8 serve` does with no flag, so each one says why it is what it is.
DEFAULT_HOST: Final = "127.0.0.1"  # loopback: nothing off the machine reaches it by accident
DEFAULT_PORT: Final = 8765
DEFAULT_MAX_BODY_BYTES: Final = 10 * 1024 * 1024  # bounds the memory one request can take
DEFAULT_GRACE: Final = 30.0  # TERM: how long queued and running jobs get to finish
ENV_PREFIX: Final = "QOPER8_"

_LOOPBACK_NAMES: Final = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1 or localhost)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to anything


class ServeConfig(BaseModel):
    """How ``qoper8 serve`` runs: the pool's settings plus the daemon's own.

    Built by ``load_config()`` from a TOML file, ``QOPER8_*`` environment variables and
    command-line flags, in that order of precedence (a flag wins).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: PoolConfig
    host: str = Field(default=DEFAULT_HOST, min_length=1)
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    unix: Path | None = Field(default=None, description="listen on this Unix socket instead")
    token: str | None = Field(default=None, min_length=1, repr=False)
    pidfile: Path | None = None
    log_file: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1)
    grace: float = Field(default=DEFAULT_GRACE, ge=0, description="TERM drain period")
    debug: bool = Field(default=False, description="send child tracebacks in JobFailed errors")
    redis: str | None = Field(default=None, min_length=1, description="Redis URL: also consume")
    queue: str = Field(default="default", min_length=1, description="Redis queue name")
    # How long a host may go silent before its Redis jobs run elsewhere (at least once).
    redis_lease: float = Field(default=30.0, gt=0, description="Redis job lease (seconds)")
    redis_max_retries: int = Field(default=3, ge=0, description="re-runs of an abandoned job")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ServeConfig:
        if self.unix is None and not is_loopback(self.host) and self.token is None:
            raise ValueError(
                f"host {self.host!r} is not a loopback address: set a token (--token or "
                f"{ENV_PREFIX}TOKEN) so that only callers who know it can submit"
            )
        return self


_POOL_FIELDS: Final = frozenset(PoolConfig.model_fields)
_SERVE_FIELDS: Final = frozenset(ServeConfig.model_fields) - {"pool"}


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
    for name in sorted(_POOL_FIELDS | _SERVE_FIELDS):
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw.strip():
            out[name] = raw
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServeConfig:
    """Build the daemon's settings: the TOML file, then ``QOPER8_*`` variables, then
    ``overrides`` (the command-line flags that were given), each winning over the last.

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
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    sources: list[tuple[str, Mapping[str, Any]]] = []
    if path is not None:
        sources.append((f"config file {os.fspath(path)}", read_toml(path)))
    sources.append(("environment", read_env(os.environ if environ is None else environ)))
    sources.append(("command line", {k: v for k, v in (overrides or {}).items() if v is not None}))
    for where, values in sources:
        for key, value in values.items():
            merged[key] = value
            origin[key] = where
    unknown = sorted(set(merged) - _POOL_FIELDS - _SERVE_FIELDS)
    if unknown:
        named = ", ".join(f"{k} ({origin[k]})" for k in unknown)
        raise ConfigError(f"unknown setting: {named}")
    pool = {k: v for k, v in merged.items() if k in _POOL_FIELDS}
    serve = {k: v for k, v in merged.items() if k in _SERVE_FIELDS}
    try:
        return ServeConfig.model_validate({"pool": pool, **serve})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            if loc[:1] == ["pool"]:
                loc = loc[1:]
            name = ".".join(loc)
            where = f" ({origin[loc[0]]})" if loc and loc[0] in origin else ""
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{name}{where}: {msg}" if name else msg)
        raise ConfigError("invalid setting: " + "; ".join(lines)) from None
