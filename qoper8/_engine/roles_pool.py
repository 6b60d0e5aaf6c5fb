"""``RolesPool``: ``qoper8.Pool(roles=...)``, a pool of pools. Each role is a complete
``Pool`` of its own worker module (its children, queue, deadlines, autoscaler and actors), so
one role's backlog never delays another's and a role that cannot start its children degrades
alone. This pool in front routes: an action to the role that handles its type (the types
come from each role's children when they start), ``role=`` where several do; everything
else (statistics, broadcasts, pause, close) spans the roles.

::

    submit({"type": "report.build"}) ─▶ route by type ─▶ role "reports": queue ─▶ children
                                                     └▶ role "users":   queue ─▶ children

Child ids are unique across the roles (one counter), so a child named in the statistics can
be asked from this pool without saying its role.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._types import DEFAULT
from ..errors import ConfigError, InvalidAction, StartFailed
from .delivery import BroadcastResult
from .encoding import encode_action
from .pool import Pool
from .role import role_configs, unknown_role
from .roles_actors import RolesActors
from .roles_view import RolesView

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable
    from concurrent.futures import Executor

    from pydantic import BaseModel

    from .._types import JSONValue
    from ..config import PoolConfig
    from .delivery import Notice
    from .role import Role
    from .stats import ChildStatistics
    from .stream import Stream

__all__ = ["RolesPool"]

T = TypeVar("T")
_UNSET: Final[Any] = DEFAULT


class RolesPool(RolesView, Pool):
    """A pool of several worker modules (see the module docstring). ``qoper8.Pool`` makes
    one when given ``roles=``; its methods are ``Pool``'s, with ``role=`` where a role must
    be chosen."""

    def __init__(
        self,
        worker: str | None = None,
        *,
        roles: Mapping[str, Role | str] | None = None,
        children: int | tuple[int, int] | None = None,
        timeout: float | None = None,
        max_queue: int | None = None,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        on_output: Callable[[int, int, str], None] | None = None,
        config: PoolConfig | None = None,
        **settings: Any,
    ) -> None:
        if worker is not None or config is not None:
            raise ConfigError("a pool takes either a worker (one module) or roles, not both")
        explicit = {
            "children": children,
            "timeout": timeout,
            "max_queue": max_queue,
            "max_jobs_per_child": max_jobs_per_child,
            "max_memory_per_child": max_memory_per_child,
        }
        defaults = {**settings, **{k: v for k, v in explicit.items() if v is not None}}
        configs = role_configs(roles or {}, defaults)
        ids = itertools.count(1)
        self._roles: dict[str, Pool] = {}
        for name, role_config in configs.items():
            pool = Pool(config=role_config, on_output=on_output)
            pool._name = name
            pool._share_ids(ids)
            self._roles[name] = pool
        self._first = next(iter(self._roles.values()))
        self.config = self._first.config
        self._name = self._first._name
        self.actors = RolesActors(self._roles)
        self._route: dict[str, Pool] = {}  # action type -> the one role that handles it
        self._shared: dict[str, list[str]] = {}  # types several roles handle -> their names
        self._starting = False
        self._started = asyncio.Event()
        self._start_error: BaseException | None = None

    # ================================================================ roles

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self._roles)

    def role(self, name: str) -> Pool:
        try:
            return self._roles[name]
        except KeyError:
            raise unknown_role(name, self.roles) from None

    def _index(self) -> None:
        """Which role handles which action type (after a start or a reload)."""
        owners: dict[str, list[str]] = {}
        for name, pool in self._roles.items():
            for action_type in pool.handlers:
                owners.setdefault(action_type, []).append(name)
        self._route = {t: self._roles[n[0]] for t, n in owners.items() if len(n) == 1}
        self._shared = {t: n for t, n in owners.items() if len(n) > 1}

    async def _pick(self, action: Mapping[str, Any] | BaseModel, role: str | None) -> Pool:
        if role is not None:
            return self.role(role)
        if not self._started.is_set():
            if not self._starting:
                return self._first  # not started: it refuses the job as any pool would
            await self._started.wait()  # the routes come from the children's handlers
        if self._start_error is not None:
            return self._first  # it fails the job with the start's error
        action_type = (
            action.get("type") if isinstance(action, Mapping) else getattr(action, "type", None)
        )
        pool = self._route.get(action_type) if isinstance(action_type, str) else None
        if pool is not None:
            return pool
        if isinstance(action_type, str) and action_type in self._shared:
            names = " and ".join(self._shared[action_type])
            message = f"action type {action_type!r} is handled by roles {names}: pass role="
            raise InvalidAction(
                message, errors=[{"loc": ["role"], "msg": message, "type": "ambiguous_type"}]
            )
        # Malformed, unknown or not JSON: the error a pool gives, over every role's types.
        encode_action(action, self.handlers, self.config.max_message_bytes)
        return self._first

    # ================================================================ lifecycle

    async def start(self) -> None:
        if self._starting:
            raise RuntimeError("a Pool can be started only once")
        self._starting = True
        pools = list(self._roles.items())
        results = await asyncio.gather(*(p.start() for _, p in pools), return_exceptions=True)
        failed = [(n, r) for (n, _), r in zip(pools, results, strict=True) if r is not None]
        if failed:
            name, error = failed[0]
            await asyncio.gather(*(p.aclose(grace=0.0) for _, p in pools))
            if isinstance(error, StartFailed):
                error = StartFailed(
                    f"role {name!r}: {error}",
                    remote_type=error.remote_type,
                    remote_message=error.remote_message,
                    remote_traceback=error.remote_traceback,
                )
            self._start_error = error
            self._started.set()
            raise error
        self._index()
        self._started.set()

    async def aclose(self, *, grace: float | None = None) -> None:
        await asyncio.gather(*(p.aclose(grace=grace) for p in self._roles.values()))

    # ================================================================ jobs

    async def submit(  # type: ignore[override]
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = None,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        wait_for_room: bool = True,
        result_type: type[T] | None = None,
        on_progress: Callable[[Any], object] | None = None,
    ) -> T | JSONValue:
        pool = await self._pick(action, role)
        return await pool.submit(
            action,
            timeout=timeout,
            kill_on_cancel=kill_on_cancel,
            wait_for_room=wait_for_room,
            result_type=result_type,
            on_progress=on_progress,
        )

    @contextlib.asynccontextmanager
    async def stream(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = None,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        on_progress: Callable[[Any], object] | None = None,
        wait_for_room: bool = True,
    ) -> AsyncIterator[Stream]:
        pool = await self._pick(action, role)
        async with pool.stream(
            action,
            timeout=timeout,
            kill_on_cancel=kill_on_cancel,
            on_progress=on_progress,
            wait_for_room=wait_for_room,
        ) as stream:
            yield stream

    async def map(
        self,
        actions: Iterable[Mapping[str, Any] | BaseModel],
        *,
        role: str | None = None,
        timeout: float | None = _UNSET,
        return_exceptions: bool = False,
        kill_on_cancel: bool = False,
        result_type: type[T] | None = None,
    ) -> list[Any]:
        """As ``Pool.map``: each role runs its share of the actions as one batch; the
        results come back in the order given."""
        actions = list(actions)
        shares: dict[str, list[int]] = {}
        for index, action in enumerate(actions):
            try:
                pool = await self._pick(action, role)
            except InvalidAction as exc:
                raise InvalidAction(f"action {index}: {exc}", errors=exc.errors) from None
            shares.setdefault(pool._name, []).append(index)
        names = list(shares)
        parts = await asyncio.gather(
            *(
                self._roles[n].map(
                    [actions[i] for i in shares[n]],
                    timeout=timeout,
                    return_exceptions=return_exceptions,
                    kill_on_cancel=kill_on_cancel,
                    result_type=result_type,
                )
                for n in names
            )
        )
        results: list[Any] = [None] * len(actions)
        for name, part in zip(names, parts, strict=True):
            for index, value in zip(shares[name], part, strict=True):
                results[index] = value
        return results

    async def map_calls(
        self,
        func: Callable[..., T],
        /,
        *iterables: Iterable[Any],
        timeout: float | None = _UNSET,
        return_exceptions: bool = False,
    ) -> list[T]:
        """As ``Pool.map_calls``, on the first role's children."""
        return await self._first.map_calls(
            func, *iterables, timeout=timeout, return_exceptions=return_exceptions
        )

    async def run(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """As ``Pool.run``, on the first role's children (``pool.role(name).run`` for
        another's)."""
        return await self._first.run(func, *args, **kwargs)

    def executor(self) -> Executor:
        """As ``Pool.executor``, on the first role's children."""
        return self._first.executor()

    # ================================================================ messages

    async def broadcast(
        self,
        topic: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
        sticky: bool = False,
    ) -> BroadcastResult:
        """As ``Pool.broadcast``, to every role's children (``pool.role(name).broadcast``
        for one role's)."""
        results = await asyncio.gather(
            *(p.broadcast(topic, payload, timeout=timeout, sticky=sticky) for p in self._pools)
        )
        replies = sorted((r for res in results for r in res.replies), key=lambda r: r.child)
        return BroadcastResult(topic, tuple(replies))

    async def ask(
        self,
        child: int | ChildStatistics,
        topic: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
        pid: bool = False,
    ) -> JSONValue:
        ref = child if isinstance(child, int) else child.id
        for pool in self._pools:
            live = pool._supervisor.children.values()
            if any((c.pid if pid else c.id) == ref for c in live):
                return await pool.ask(child, topic, payload, timeout=timeout, pid=pid)
        return await self._first.ask(child, topic, payload, timeout=timeout, pid=pid)

    def on_message(self, topic: str, callback: Callable[[Notice], object]) -> Callable[[], None]:
        removers = [p.on_message(topic, callback) for p in self._pools]

        def remove() -> None:
            for remover in removers:
                remover()

        return remove

    # ================================================================ size

    def _resized(self, role: str | None, what: str) -> Pool:
        if role is None:
            if len(self._roles) > 1:
                raise ConfigError(f"this pool has roles {', '.join(self._roles)}: {what}")
            return self._first
        if role not in self._roles:
            raise ConfigError(str(unknown_role(role, self.roles)))
        return self._roles[role]

    async def resize(self, children: int | tuple[int, int], *, role: str | None = None) -> None:
        await self._resized(role, "resize(n, role=...) names one").resize(children)

    async def pause(self) -> None:
        await asyncio.gather(*(p.pause() for p in self._pools))

    async def reload(self, config: PoolConfig | None = None, *, role: str | None = None) -> None:
        """As ``Pool.reload``: every role in turn (one new generation at a time), or one
        role (``config`` needs it)."""
        if config is not None or role is not None:
            await self._resized(role, "reload(config, role=...) names one").reload(config)
        else:
            for pool in self._pools:
                await pool.reload()
        self._index()
