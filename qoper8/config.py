"""Validated settings for a pool (and, later, the daemon and Redis mode).

Every option a user can set is declared once here with its default, its bounds and the reason
for its default; ``Pool`` and ``qoper8 serve`` both validate through these models so that a bad
setting fails at start with a ``ConfigError`` naming it, never mid-run.
"""

from __future__ import annotations

import os
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "PoolConfig", "validation_message"]

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
    # After this many children in a row die before READY, the pool stops respawning and
    # fails queued and new jobs with StartFailed instead of looping forever.
    max_start_failures: int = Field(default=5, ge=1)

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
