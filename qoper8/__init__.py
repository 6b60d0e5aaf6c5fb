"""qoper8: run blocking, synchronous Python from asyncio on a pool of persistent children.

The public surface is re-exported here. Imports are lazy (PEP 562) so that a child, which
imports ``qoper8`` only to reach ``Worker``, never loads the pool, asyncio or the daemon.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ChildDied,
    ConfigError,
    InvalidAction,
    JobError,
    JobFailed,
    JobTimeout,
    PoolClosed,
    Qoper8Error,
    QueueFull,
    StartFailed,
    TransportError,
)

if TYPE_CHECKING:
    from ._client import Client
    from ._pool import Pool
    from ._redis import RedisPool
    from ._stats import ChildStatistics, PoolStatistics
    from ._worker import HandlerInfo, Worker
    from .config import PoolConfig

__version__ = "0.1.0"

__all__ = [
    "ChildDied",
    "ChildStatistics",
    "Client",
    "ConfigError",
    "HandlerInfo",
    "InvalidAction",
    "JobError",
    "JobFailed",
    "JobTimeout",
    "Pool",
    "PoolClosed",
    "PoolConfig",
    "PoolStatistics",
    "Qoper8Error",
    "QueueFull",
    "RedisPool",
    "StartFailed",
    "TransportError",
    "Worker",
    "__version__",
]

_LAZY: dict[str, str] = {
    "Pool": "._pool",
    "Client": "._client",
    "RedisPool": "._redis.pool",
    "ChildStatistics": "._stats",
    "PoolStatistics": "._stats",
    "HandlerInfo": "._worker",
    "Worker": "._worker",
    "PoolConfig": ".config",
}


def __getattr__(name: str) -> Any:
    if name in ("sync", "config", "errors", "testing"):
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qoper8' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
