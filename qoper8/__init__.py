"""qoper8: run blocking, synchronous Python from asyncio on a pool of persistent children.

The public surface is re-exported here. Imports are lazy (PEP 562) so that a child, which
imports ``qoper8`` only to reach ``Worker``, never loads the pool, asyncio or the daemon.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ActorDied,
    ActorExists,
    ActorNotFound,
    ActorUnavailable,
    ChildDied,
    ConfigError,
    HandlerError,
    InvalidAction,
    InvalidResult,
    JobError,
    JobFailed,
    JobTimeout,
    PoolClosed,
    Qoper8Error,
    QueueFull,
    ReplaceChild,
    StartFailed,
    TransportError,
)

if TYPE_CHECKING:
    from ._client import Client
    from ._engine.actor_ref import ActorEvent, ActorInfo, ActorRef, Actors
    from ._engine.child_api import Job, actor_event, notify, publish
    from ._engine.delivery import BroadcastResult, ChildReply, Notice
    from ._engine.pool import Pool
    from ._engine.replacing import replace_child_after
    from ._engine.role import Role
    from ._engine.stats import ChildStatistics, PoolStatistics
    from ._engine.stream import Stream
    from ._engine.worker import HandlerInfo, Worker
    from ._redis import RedisPool
    from .config import PoolConfig

__version__ = "0.1.0"

__all__ = [
    "ActorDied",
    "ActorExists",
    "ActorNotFound",
    "ActorEvent",
    "ActorInfo",
    "ActorRef",
    "ActorUnavailable",
    "Actors",
    "BroadcastResult",
    "ChildDied",
    "ChildReply",
    "ChildStatistics",
    "Client",
    "ConfigError",
    "HandlerError",
    "HandlerInfo",
    "InvalidAction",
    "InvalidResult",
    "Job",
    "JobError",
    "JobFailed",
    "JobTimeout",
    "Notice",
    "Pool",
    "PoolClosed",
    "PoolConfig",
    "PoolStatistics",
    "Qoper8Error",
    "QueueFull",
    "RedisPool",
    "ReplaceChild",
    "Role",
    "StartFailed",
    "Stream",
    "TransportError",
    "Worker",
    "__version__",
    "actor_event",
    "notify",
    "publish",
    "replace_child_after",
]

_LAZY: dict[str, str] = {
    "Pool": "._engine.pool",
    "Role": "._engine.role",
    "Client": "._client",
    "RedisPool": "._redis.pool",
    "ChildStatistics": "._engine.stats",
    "PoolStatistics": "._engine.stats",
    "HandlerInfo": "._engine.worker",
    "Worker": "._engine.worker",
    "PoolConfig": ".config",
    # The child's side: light, a worker module imports them in every child.
    "Job": "._engine.child_api",
    "notify": "._engine.child_api",
    "publish": "._engine.child_api",
    "actor_event": "._engine.child_api",
    "ActorEvent": "._engine.actor_ref",
    "ActorInfo": "._engine.actor_ref",
    "ActorRef": "._engine.actor_ref",
    "Actors": "._engine.actor_ref",
    "Stream": "._engine.stream",
    "BroadcastResult": "._engine.delivery",
    "ChildReply": "._engine.delivery",
    "Notice": "._engine.delivery",
    "replace_child_after": "._engine.replacing",
}


def __getattr__(name: str) -> Any:
    # prometheus and fastapi import their optional dependency: only when asked for.
    if name in ("sync", "config", "errors", "testing", "prometheus", "fastapi"):
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qoper8' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
