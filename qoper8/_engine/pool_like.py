"""What a transport (the daemon's HTTP API, Redis) needs from a pool, and nothing more.

A transport reads actions from the outside world, hands each one to a pool and carries the
result or the typed error back. Transports never import the pool: they see it through the
small ``PoolLike`` protocol below, so a test can drive one with any object of that shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from pydantic import BaseModel

    from .._types import JSONValue
    from .actor_ref import Actors
    from .delivery import BroadcastResult
    from .pool import Pool
    from .stats import ChildStatistics, PoolStatistics
    from .stream import Stream
    from .worker import HandlerInfo

__all__ = ["PoolLike"]


class PoolLike(Protocol):
    """What a transport needs from a pool (``qoper8.Pool`` has all of it)."""

    @property
    def is_open(self) -> bool: ...

    @property
    def is_degraded(self) -> bool: ...

    @property
    def size(self) -> int: ...

    @property
    def generation(self) -> int: ...

    @property
    def handlers(self) -> dict[str, HandlerInfo]: ...

    @property
    def roles(self) -> tuple[str, ...]: ...

    def role(self, name: str) -> Pool: ...

    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = ...,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
    ) -> JSONValue: ...

    def stream(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = ...,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        on_progress: Callable[[Any], object] | None = ...,
        wait_for_room: bool = ...,
    ) -> AbstractAsyncContextManager[Stream]: ...

    async def broadcast(
        self,
        topic: str,
        payload: Mapping[str, Any] | None = ...,
        *,
        timeout: float | None = ...,
        sticky: bool = ...,
    ) -> BroadcastResult: ...

    async def ask(
        self,
        child: int | ChildStatistics,
        topic: str,
        payload: Mapping[str, Any] | None = ...,
        *,
        timeout: float | None = ...,
        pid: bool = ...,
    ) -> JSONValue: ...

    @property
    def actors(self) -> Actors: ...

    def statistics(self, *, role: str | None = ...) -> PoolStatistics: ...

    def has_capacity(self) -> bool: ...

    async def wait_capacity(self) -> None: ...
