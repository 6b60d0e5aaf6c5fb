"""Validated settings for a pool and the daemon (their sources: ``_config_sources.py``).

Every option a user can set is declared once here with its default, its bounds and the reason
for its default; ``Pool`` and ``qoper8 serve`` both validate through these models so that a bad
setting fails at start with a ``ConfigError`` naming it, never mid-run.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path  # noqa: TC003  (pydantic resolves field types at run time)
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._values import parse_bytes
from .errors import ConfigError

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_CHILDREN",
    "PoolConfig",
    "RoleConfig",
    "ServeConfig",
    "validation_message",
]

# A frame larger than this is refused at submit (InvalidAction) or when a child replies
# (JobFailed). It bounds the master's memory per child; 20 MiB results must fit comfortably.
DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
# The most children a pool (and a resize) may ask for. Each child is a whole interpreter with
# two descriptors in the master; past this a typo ("10000") exhausts memory or file
# descriptors long before it serves anything.
MAX_CHILDREN: Final = 1024

logger = logging.getLogger("qoper8.config")


def _default_children() -> int:
    return os.cpu_count() or 2


def _fork_server_supported() -> bool:
    # A fork server needs fork() and pidfds (Linux 5.3+) to hear its children's exits.
    return sys.platform == "linux" and hasattr(os, "pidfd_open")


def _default_start_method() -> StartMethod:
    return "forkserver" if _fork_server_supported() else "spawn"


StartMethod = Literal["forkserver", "spawn"]


class PoolConfig(BaseModel):
    """How a local pool runs. Durations are seconds; ``None`` means no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker: str = Field(min_length=1, description='worker module reference, "pkg.mod:attr"')
    # How many children to keep; with max_children, the fewest (it may be 0). "MIN:MAX" or a
    # pair (MIN, MAX) sets both. Autoscaling (max_children not None): the master starts
    # children while jobs wait, up to max_children, and retires the one idle longest after
    # idle_timeout, one at a time, down to ``children``.
    children: int = Field(default_factory=_default_children, ge=0, le=MAX_CHILDREN)
    max_children: int | None = Field(default=None, ge=1, le=MAX_CHILDREN)
    idle_timeout: float = Field(default=60.0, gt=0, description="autoscaling: idle seconds")
    # Autoscaling: children started at once when jobs wait. Each costs a CPU while it boots;
    # more reacts faster to a burst and slows the children already serving it.
    max_starting: int = Field(default=2, ge=1, le=MAX_CHILDREN)
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
    # Actors per actor child: 1 gives each actor a process of its own (as Ray does); more
    # packs many light actors into one child, whose calls then take turns.
    max_actors_per_child: int = Field(default=1, ge=1, le=10_000)
    # Actors the pool holds at most (each takes a child when max_actors_per_child is 1).
    max_actors: int = Field(default=256, ge=0, le=100_000)
    # How children start. "forkserver" (the default on Linux): one fresh interpreter per
    # generation imports the worker module once and forks each child, which runs on_start;
    # a child starts in milliseconds and shares the imported pages. "spawn": each child is a
    # fresh interpreter importing the worker module itself (the only way elsewhere; the
    # opt-out for a worker module that is not fork-safe at import: it starts threads or
    # opens connections there, which a fork would share or break).
    start_method: StartMethod = Field(default_factory=_default_start_method)

    # "512M", "2GiB": sizes with a unit, from a flag, a variable, a TOML file or Python.
    _sizes = field_validator("max_memory_per_child", "max_message_bytes", mode="before")(
        parse_bytes
    )

    @model_validator(mode="before")
    @classmethod
    def _children_range(cls, data: Any) -> Any:
        """``children=(MIN, MAX)`` or ``"MIN:MAX"``: autoscaling between the two."""
        if not isinstance(data, dict):
            return data
        value = data.get("children")
        if isinstance(value, str) and ":" in value:
            value = value.split(":", 1)
        if isinstance(value, list | tuple) and len(value) == 2:
            data = {**data, "children": value[0], "max_children": value[1]}
        return data

    @model_validator(mode="after")
    def _children_bounds(self) -> PoolConfig:
        if self.max_children is None and self.children < 1:
            raise ValueError(
                "children must be at least 1 (or give a range, children=(0, N), to autoscale)"
            )
        if self.max_children is not None and self.children > self.max_children:
            raise ValueError(
                f"children ({self.children}) is more than max_children ({self.max_children})"
            )
        return self

    @field_validator("start_method")
    @classmethod
    def _start_method_here(cls, value: str) -> str:
        if value == "forkserver" and not _fork_server_supported():
            raise ValueError("'forkserver' needs Linux 5.3 or later (pidfds): use 'spawn'")
        return value

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


class RoleConfig(BaseModel):
    """One role of a daemon that runs several worker modules (``[roles.NAME]``, ``--role``):
    its pool's settings, the top-level ones filling in what its own leave out, and the Redis
    queue it consumes in Redis mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: PoolConfig
    # Redis mode: the rq queue this role's children serve (None: the role's name). One
    # queue per role, so that one role's backlog never delays another's.
    queue: str | None = Field(default=None, min_length=1)


class ServeConfig(BaseModel):
    """How ``qoper8 serve`` runs: the pool's settings plus the daemon's own.

    Built by ``load_config()`` from a TOML file, ``QOPER8_*`` environment variables and
    command-line flags, in that order of precedence (a flag wins).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The one worker module's settings; with roles, the first role's (given or not, it is
    # taken from ``roles``), which is the one TTIN and TTOU act on.
    pool: PoolConfig
    # Several worker modules by role name, in order; empty: the one worker module of ``pool``.
    roles: dict[str, RoleConfig] = Field(default_factory=dict)
    host: str = Field(default=DEFAULT_HOST, min_length=1)
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    unix: Path | None = Field(default=None, description="listen on this Unix socket instead")
    token: str | None = Field(default=None, min_length=1, repr=False)
    pidfile: Path | None = None
    log_file: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line, for log collectors (Loki, Elasticsearch, jq).
    log_format: Literal["text", "json"] = "text"
    # One line per HTTP request; off by default, as a busy daemon would write mostly these.
    access_log: bool = False
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1)
    grace: float = Field(default=DEFAULT_GRACE, ge=0, description="TERM drain period")
    debug: bool = Field(
        default=False,
        description="send child tracebacks in JobFailed errors and log down to DEBUG",
    )
    # Probes and scrapers may read /v1/health and /metrics without the token; both reveal
    # counts and states only, never an action or a result.
    public_health: bool = False
    redis: str | None = Field(default=None, min_length=1, description="Redis URL: also consume")
    queue: str = Field(default="default", min_length=1, description="Redis queue name")
    # How long a host may go silent before its Redis jobs run elsewhere (at least once).
    redis_lease: float = Field(default=30.0, gt=0, description="Redis job lease (seconds)")
    redis_max_retries: int = Field(default=3, ge=0, description="re-runs of an abandoned job")
    # Serve on these inherited listening sockets (descriptor numbers) instead of binding
    # host/port/unix: a supervisor's, or the old master's during a USR2 upgrade. (systemd's
    # socket activation, LISTEN_FDS, is found without it.)
    fd: tuple[int, ...] | None = Field(default=None, description="inherited listening sockets")
    # The dashboard's page at / (its data, /v1/events, needs the token as the API does).
    dashboard: bool = True

    _sizes = field_validator("max_body_bytes", mode="before")(parse_bytes)

    @model_validator(mode="before")
    @classmethod
    def _first_role(cls, data: Any) -> Any:
        """With roles, ``pool`` is the first role's settings."""
        if isinstance(data, dict) and data.get("roles") and "pool" not in data:
            first = next(iter(data["roles"].values()))
            pool = first.pool if isinstance(first, RoleConfig) else first.get("pool")
            data = {**data, "pool": pool}
        return data

    def pool_configs(self) -> dict[str, PoolConfig]:
        """Every role's settings by name (a single worker module's: one role, named after
        its module as ``Pool.roles`` names it)."""
        if self.roles:
            return {name: role.pool for name, role in self.roles.items()}
        from ._engine.role import role_name  # (it imports this module)

        return {role_name(self.pool.worker): self.pool}

    def queues(self) -> dict[str, str]:
        """Redis mode: the queue of each role (a single worker module: ``queue``)."""
        if not self.roles:
            return {next(iter(self.pool_configs())): self.queue}
        return {name: role.queue or name for name, role in self.roles.items()}

    @field_validator("fd", mode="before")
    @classmethod
    def _descriptors(cls, value: object) -> object:
        """``3``, ``"3,4"`` (a variable) or ``[3, 4]``."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("fd")
    @classmethod
    def _open_descriptors(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or min(value) < 0):
            raise ValueError("give descriptor numbers: 3, or 3,4")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_queue_per_role(self) -> ServeConfig:
        owners: dict[str, str] = {}
        for name, queue in self.queues().items():
            if queue in owners:
                raise ValueError(
                    f"roles {owners[queue]!r} and {name!r} both consume the Redis queue "
                    f"{queue!r}: give each its own (queue in [roles.NAME])"
                )
            owners[queue] = name
        return self

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ServeConfig:
        if self.unix is None and not is_loopback(self.host) and self.token is None:
            raise ValueError(
                f"host {self.host!r} is not a loopback address: set a token (--token or "
                f"{ENV_PREFIX}TOKEN) so that only callers who know it can submit"
            )
        return self
