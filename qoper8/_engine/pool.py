"""``Pool``: the public face of the engine. It composes a dispatcher (the jobs) and a
supervisor (the processes) and adds nothing on the hot path but the encoding of an action.
The data flow between them is drawn in the engine's package docstring
(``qoper8/_engine/__init__.py``); the rooms in ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import orjson

from .._types import DEFAULT
from ..config import PoolConfig, make_pool_config
from ..errors import PoolClosed, StartFailed
from . import protocol as proto
from .actor_children import ActorChildren
from .actor_ref import Actors
from .actors import ActorHost
from .autoscale import Autoscaler
from .dispatcher import Dispatcher, Phase
from .encoding import encode_action
from .job import JobKind
from .main_module import IMPORTING_MAIN_ENV
from .messages import Messenger
from .output import StderrWriter
from .pool_batch import PoolBatch
from .pool_calls import PoolCalls
from .pool_messages import PoolMessages
from .pool_size import PoolSize
from .pool_view import PoolView
from .results import validate_result
from .role import role_name, unknown_role
from .settle import copy_start_failed
from .startup import RETIRE_TIMEOUT
from .stream import ProgressListener
from .supervisor import Supervisor

if TYPE_CHECKING:
    from types import TracebackType

    from pydantic import BaseModel

    from .._types import JSONValue
    from .child import Child
    from .role import Role

__all__ = ["OutputCallback", "Pool"]

T = TypeVar("T")
OutputCallback = Callable[[int, int, str], None]
"""Receives (child id, pid, line) for each line a child prints."""

# "Not given" (the pool's own timeout applies); reads DEFAULT in help() and signatures.
_UNSET: Final[Any] = DEFAULT
_dumps: Final = orjson.dumps
_encode_model: Final = proto.encode_model
_JOB_ACTION: Final = JobKind.ACTION

# Where children's lines go without ``on_output``: the master's stderr, from a thread, so a
# stalled reader of stderr never blocks the loop.
_default_output: Final = StderrWriter()


class Pool(PoolCalls, PoolBatch, PoolMessages, PoolSize, PoolView):
    """A pool of pre-started child processes that run a worker module's handlers.

    Example:
        ```python
        async with qoper8.Pool("workers.users:worker", children=8) as pool:
            user = await pool.submit({"type": "user.get", "id": 1}, timeout=5.0)
        ```

    Args:
        worker: the worker module, ``"pkg.mod:attr"`` (``attr`` defaults to ``worker``).
        roles: instead of ``worker``, several worker modules by role name, each a
            ``qoper8.Role`` (or a worker reference) with its own children, queue and
            settings; the keyword settings given here are every role's defaults. Actions go
            to the role that handles their type (``role=`` chooses when several do).
        children: how many children to keep (default: the number of CPUs), or a range
            ``(min, max)`` to autoscale: children start while jobs wait, up to ``max``,
            and the one idle longest retires after ``idle_timeout`` seconds, down to ``min``
            (which may be 0).
        timeout: default deadline of each job in seconds, counted from submit.
        max_queue: jobs that may wait for a child; more raise ``QueueFull`` or wait.
        max_jobs_per_child: retire a child after this many jobs (plus a little jitter).
        max_memory_per_child: retire a child whose resident memory exceeds this (bytes).
        on_output: receives each line children print, instead of the master's stderr
            (called on the event loop: keep it quick).
        config: a complete ``PoolConfig``, instead of the keyword settings.
        **settings: any other ``PoolConfig`` field.

    Raises:
        ConfigError: a setting is invalid.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Pool:
        """``Pool(roles=...)`` makes a pool of pools, one per role (``roles_pool.py``)."""
        if cls is Pool and kwargs.get("roles") is not None:
            from .roles_pool import RolesPool

            return super().__new__(RolesPool)
        return super().__new__(cls)

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
        on_output: OutputCallback | None = None,
        config: PoolConfig | None = None,
        **settings: Any,
    ) -> None:
        if config is None:
            explicit = {
                "children": children,
                "timeout": timeout,
                "max_queue": max_queue,
                "max_jobs_per_child": max_jobs_per_child,
                "max_memory_per_child": max_memory_per_child,
            }
            values: dict[str, Any] = {"worker": worker, **settings}
            values.update({k: v for k, v in explicit.items() if v is not None})
            config = make_pool_config(**values)
        self.config = config
        self._name = role_name(config.worker)
        output = on_output or _default_output
        ids = itertools.count(1)  # child ids, unique across the pool's groups
        self._dispatcher = Dispatcher(config)
        self._supervisor = Supervisor(config, self._dispatcher, output, ids)
        self._actor_children = ActorChildren(config, self._dispatcher, output, ids)
        self._actor_children.target = 0  # it grows with the actors
        self._actor_children.share_fork_servers(self._supervisor)
        self._actor_host = ActorHost(
            self._dispatcher,
            self._supervisor,
            self._actor_children,
            max_per_child=config.max_actors_per_child,
        )
        self.actors = Actors(self._actor_host, self._dispatcher, config.max_actors)
        """The pool's named actors: ``create``, ``get``, ``destroy``, ``list``."""
        self._autoscaler = (
            Autoscaler(self._supervisor, self._dispatcher, config)
            if config.max_children is not None
            else None
        )
        self._messenger = Messenger(self._dispatcher, self._supervisor, self._groups)
        self._closed = asyncio.Event()
        self._drain_cut = asyncio.Event()

    def _share_ids(self, ids: Iterator[int]) -> None:
        """Number children from ``ids`` (one counter for every role of a pool of roles)."""
        self._supervisor._ids = self._actor_children._ids = ids

    @property
    def roles(self) -> tuple[str, ...]:
        """The pool's role names (a pool of one worker module has one: its module's name)."""
        return (self._name,)

    def role(self, name: str) -> Pool:
        """The pool of one role, with all of ``Pool``'s methods (its own statistics, resize,
        broadcast, ``run``...). Closing it closes that role only.

        Raises:
            InvalidAction: no role of that name.
        """
        if name != self._name:
            raise unknown_role(name, self.roles)
        return self

    # ================================================================ lifecycle

    async def __aenter__(self) -> Pool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start every child and return once all are ready. Jobs submitted meanwhile wait
        for the first ready child.

        Raises:
            StartFailed: the worker module failed to import, its start hook raised, or a
                child was not ready within ``start_timeout``. No child is left running; jobs
                submitted meanwhile get the same error.
        """
        dispatcher = self._dispatcher
        if dispatcher.phase is not Phase.NEW:
            raise RuntimeError("a Pool can be started only once")
        if os.environ.get(IMPORTING_MAIN_ENV):
            raise RuntimeError(
                "a qoper8 child imported the main script to run one of its functions, and "
                "the script started a pool while being imported: put the code that starts "
                "the pool under `if __name__ == '__main__':`"
            )
        dispatcher.begin(asyncio.get_running_loop())
        self._actor_children.begin()
        try:
            await self._supervisor.start()
        except BaseException as exc:
            if isinstance(exc, StartFailed):
                failed = exc
                dispatcher.fail_queued(lambda job: copy_start_failed(failed))
            await self._shutdown(grace=0.0)
            raise
        dispatcher.phase = Phase.OPEN
        if self._autoscaler is not None:
            self._autoscaler.start()
            self._autoscaler.grow_if_needed()  # jobs that came while it started

    async def aclose(self, *, grace: float | None = None) -> None:
        """Stop taking jobs, let queued and running ones finish for up to ``grace`` seconds
        (default ``shutdown_timeout``), then fail what is left with ``PoolClosed``, retire
        the children (their stop hooks run) and reap them.

        Safe to call again while closing: a shorter ``grace`` cuts the drain short (a
        second Ctrl-C). If the closing task is cancelled, every child is killed at once and
        the pool is closed all the same.
        """
        dispatcher = self._dispatcher
        if dispatcher.phase in (Phase.NEW, Phase.CLOSED):
            dispatcher.phase = Phase.CLOSED
            return
        grace = self.config.shutdown_timeout if grace is None else grace
        if dispatcher.phase is Phase.CLOSING:
            assert dispatcher.loop is not None
            dispatcher.loop.call_later(max(0.0, grace), self._drain_cut.set)
            await self._closed.wait()
            return
        dispatcher.phase = Phase.CLOSING
        dispatcher.waiters.release_room()
        try:
            if dispatcher.busy:
                idle = asyncio.ensure_future(self.wait_idle())
                cut = asyncio.ensure_future(self._drain_cut.wait())
                try:
                    await asyncio.wait(
                        [idle, cut], timeout=grace, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    idle.cancel()
                    cut.cancel()
            await self._shutdown(grace=RETIRE_TIMEOUT)
        except BaseException:
            self._supervisor.kill_all("pool close was cancelled")
            self._actor_children.kill_all("pool close was cancelled")
            self._finish_close()
            raise

    async def _shutdown(self, grace: float) -> None:
        """Fail what is queued, stop every child (``grace`` for their stop hooks), close."""
        self._dispatcher.fail_queued(
            lambda job: PoolClosed(f"the pool closed before job {job.id} reached a child")
        )
        self._actor_host.close()
        await asyncio.gather(self._supervisor.shutdown(grace), self._actor_children.shutdown(grace))
        self._finish_close()

    def _groups(self) -> list[Child]:
        """Every child of the pool: its own and the actor children."""
        return [*self._supervisor.children.values(), *self._actor_children.children.values()]

    def _finish_close(self) -> None:
        if self._autoscaler is not None:
            self._autoscaler.close()
        self._supervisor.finish()
        self._actor_children.finish()
        self._messenger.close()
        self._dispatcher.close()
        self._closed.set()

    # ================================================================ submitting

    @overload
    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = ...,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: None = None,
        on_progress: Callable[[Any], object] | None = ...,
    ) -> JSONValue: ...
    @overload
    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        role: str | None = ...,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: type[T],
        on_progress: Callable[[Any], object] | None = ...,
    ) -> T: ...

    async def submit(
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
        """Run one action on an idle child (the one freed last) and return its result.

        Args:
            action: a mapping with a string ``type`` and JSON-able fields, or a pydantic
                model with a ``type`` field (NaN and Infinity are refused: JSON has none).
            role: the role to run it (a pool of roles finds it from the type; a type that
                several roles handle needs it).
            timeout: seconds from now until ``JobTimeout`` (queued or running); ``None``
                for no deadline; the pool's ``timeout`` when omitted.
            kill_on_cancel: if the awaiting task is cancelled while the job runs, kill and
                replace its child (otherwise the job runs to its end, result dropped).
            wait_for_room: with ``max_queue`` reached, wait for room (True) or raise
                ``QueueFull`` at once (False).
            result_type: validate the result into this type (a pydantic model, a
                dataclass, ``list[User]``, ...) and return that; type checkers infer it.
            on_progress: called with each value the handler reports with
                ``job.progress()`` (an async function runs as a task); the job's other
                messages need ``stream()``.

        Returns:
            The handler's result, as JSON data (a pydantic model arrives as its JSON form),
            or as ``result_type``.

        Raises:
            InvalidAction: malformed action, unknown type, rejected params, not JSON.
            JobFailed: the handler raised. JobTimeout: the deadline passed.
            ChildDied: the child died mid-job. QueueFull, PoolClosed, StartFailed.
            InvalidResult: the result does not fit ``result_type``.

        Example:
            ```python
            user = await pool.submit({"type": "user.get", "id": 1}, result_type=User)
            ```
        """
        dispatcher = self._dispatcher
        if role is not None and role != self._name:
            raise unknown_role(role, (self._name,))
        # Hot path: a plain dict of a known type, encoded in one call; anything unusual
        # (and every error message) goes through encode_action.
        action_type = action.get("type") if type(action) is dict else None
        payload = None
        if type(action_type) is str and action_type in dispatcher.handlers:
            try:
                payload = _dumps(action, default=_encode_model)
            except TypeError:
                payload = None
        if payload is None or len(payload) > dispatcher.max_bytes:
            action_type, payload = encode_action(action, dispatcher.handlers, dispatcher.max_bytes)
        elif payload.find(b"null") >= 0:  # orjson writes NaN and Infinity as null: look closer
            proto.refuse_non_finite(action, str(action_type))
        assert action_type is not None
        # The job is queued (or sent) synchronously; awaiting its future here, not in a
        # helper coroutine, keeps one coroutine frame per job.
        job = dispatcher.enqueue(_JOB_ACTION, payload, action_type, timeout, wait_for_room)
        if job is None:
            job = await dispatcher.enqueue_when_room(_JOB_ACTION, payload, action_type, timeout)
        if on_progress is not None:
            job.listener = ProgressListener(on_progress)
        try:
            result: JSONValue = await job.future
        except asyncio.CancelledError:
            dispatcher.cancel(job, kill_on_cancel)
            raise
        if result_type is None:
            return result
        return validate_result(result_type, result, job_id=job.id)
