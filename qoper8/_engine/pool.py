"""``Pool``: the public face of the engine. It composes a dispatcher (the jobs) and a
supervisor (the processes) and adds nothing on the hot path but the encoding of an action.

Data flow::

    submit(action) ──encode (JSON; InvalidAction here)──▶ Dispatcher.enqueue ─┬─ idle child?
                                                                               │  send it now
                                                                               └─ no: queue
    ┌──────────────────────────── Dispatcher (jobs) ───────────────────────────────────────┐
    │ child frame ─▶ child_frame(): settle the job's future ─▶ child_free(child):          │
    │     watch_retire? ─▶ Supervisor.retire_if_due ─▶ retire (max jobs, memory, surplus,  │
    │                                                   old generation)                     │
    │     [between jobs: broadcasts, asks · pinned: an actor's calls — the next issues]     │
    │     else the next QUEUED job straight to this child, or onto the idle stack           │
    │ deadline ─▶ queued: JobTimeout │ running: JobTimeout, kill the child                  │
    └──────────────▲───────────────────────────────┬────────────────────────────────────────┘
                   │ child_free / child_lost       │ retire_if_due
    ┌──────────────┴───────── Supervisor (processes) ▼──────────────────────────────────────┐
    │ spawn (one thread) ─▶ READY ─▶ child_ready ─▶ Dispatcher.child_free                  │
    │ exit (pidfd) ─▶ child_exited ─▶ Dispatcher.child_lost (ChildDied) ─▶ ChildHealth     │
    │     (failed start? degraded? give up?) ─▶ reconcile()                                │
    │ target ◀─ resize · reload (a new generation) · [autoscale]; reconcile(): start or    │
    │     retire until live == target, respawns after the back-off of failed starts         │
    └──────────────────────────────────────────────────────────────────────────────────────┘

Everything runs on the event loop thread and nothing here blocks it: spawning happens on one
dedicated thread, exits are noticed through pidfds, frames arrive through asyncio. A job
reaches a child only when that child is idle, so a child never holds a second job and a
queued job stays cancellable until the moment it is dispatched.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import orjson

from .._types import DEFAULT
from ..config import MAX_CHILDREN, PoolConfig, make_pool_config
from ..errors import ConfigError, PoolClosed, Qoper8Error, StartFailed
from . import protocol as proto
from .dispatcher import Dispatcher, Phase, copy_start_failed
from .encoding import encode_action, encode_call, refuse_ambiguous_timeout
from .job import JobKind
from .main_module import IMPORTING_MAIN_ENV
from .output import StderrWriter
from .results import validate_result
from .stats import PoolStatistics, snapshot
from .supervisor import RETIRE_TIMEOUT, Supervisor

if TYPE_CHECKING:
    import concurrent.futures
    from concurrent.futures import Executor
    from types import TracebackType

    from pydantic import BaseModel

    from .._types import JSONValue
    from .job import Job
    from .worker import HandlerInfo

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


class Pool:
    """A pool of pre-started child processes that run a worker module's handlers.

    Example:
        ```python
        async with qoper8.Pool("workers.users:worker", children=8) as pool:
            user = await pool.submit({"type": "user.get", "id": 1}, timeout=5.0)
        ```

    Args:
        worker: the worker module, ``"pkg.mod:attr"`` (``attr`` defaults to ``worker``).
        children: how many children to keep (default: the number of CPUs).
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

    def __init__(
        self,
        worker: str | None = None,
        *,
        children: int | None = None,
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
        self._dispatcher = Dispatcher(config)
        self._supervisor = Supervisor(config, self._dispatcher, on_output or _default_output)
        self._closed = asyncio.Event()
        self._drain_cut = asyncio.Event()

    def _apply(self, config: PoolConfig) -> None:
        self.config = config
        self._dispatcher.apply(config)
        self._supervisor.apply(config)

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
        dispatcher.loop = asyncio.get_running_loop()
        dispatcher.phase = Phase.STARTING
        try:
            await self._supervisor.start()
        except BaseException as exc:
            if isinstance(exc, StartFailed):
                failed = exc
                dispatcher.fail_queued(lambda job: copy_start_failed(failed))
            await self._shutdown(grace=0.0)
            raise
        dispatcher.phase = Phase.OPEN

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
        dispatcher.release_room_waiters()
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
            self._finish_close()
            raise

    async def _shutdown(self, grace: float) -> None:
        """Fail what is queued, stop every child (``grace`` for their stop hooks), close."""
        self._dispatcher.fail_queued(
            lambda job: PoolClosed(f"the pool closed before job {job.id} reached a child")
        )
        await self._supervisor.shutdown(grace)
        self._finish_close()

    def _finish_close(self) -> None:
        self._supervisor.finish()
        self._dispatcher.close()
        self._closed.set()

    @property
    def is_open(self) -> bool:
        """Whether the pool takes jobs."""
        return self._dispatcher.phase is Phase.OPEN

    # ================================================================ submitting

    @overload
    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: None = None,
    ) -> JSONValue: ...
    @overload
    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        timeout: float | None = ...,
        kill_on_cancel: bool = ...,
        wait_for_room: bool = ...,
        result_type: type[T],
    ) -> T: ...

    async def submit(
        self,
        action: Mapping[str, Any] | BaseModel,
        *,
        timeout: float | None = _UNSET,
        kill_on_cancel: bool = False,
        wait_for_room: bool = True,
        result_type: type[T] | None = None,
    ) -> T | JSONValue:
        """Run one action on an idle child (the one freed last) and return its result.

        Args:
            action: a mapping with a string ``type`` and JSON-able fields, or a pydantic
                model with a ``type`` field (NaN and Infinity are refused: JSON has none).
            timeout: seconds from now until ``JobTimeout`` (queued or running); ``None``
                for no deadline; the pool's ``timeout`` when omitted.
            kill_on_cancel: if the awaiting task is cancelled while the job runs, kill and
                replace its child (otherwise the job runs to its end, result dropped).
            wait_for_room: with ``max_queue`` reached, wait for room (True) or raise
                ``QueueFull`` at once (False).
            result_type: validate the result into this type (a pydantic model, a
                dataclass, ``list[User]``, ...) and return that; type checkers infer it.

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
        try:
            result: JSONValue = await job.future
        except asyncio.CancelledError:
            dispatcher.cancel(job, kill_on_cancel)
            raise
        if result_type is None:
            return result
        return validate_result(result_type, result, job_id=job.id)

    async def run(
        self,
        func: Callable[..., T],
        /,
        *args: Any,
        timeout: float | None = _UNSET,
        **kwargs: Any,
    ) -> T:
        """Run a picklable function in a child (the ``ProcessPoolExecutor`` face).

        Functions of the main script work as with multiprocessing's spawn: the child
        imports the script as ``__mp_main__`` the first time a call needs it, so the code
        that starts the pool must sit under ``if __name__ == "__main__":``.

        Args:
            func: a module-level function (or a ``functools.partial`` of one).
            timeout: seconds from now until ``JobTimeout`` (the child is killed); None for no
                deadline; the pool's ``timeout`` when omitted. It is the job's deadline, never
                passed to ``func``: bind a ``timeout`` argument of ``func``'s own with
                ``functools.partial``.
            *args, **kwargs: ``func``'s arguments.

        Raises:
            InvalidAction: ``func`` or its arguments cannot be pickled, ``func`` was
                defined where a child cannot import it (a REPL), or a bad ``timeout``.
            TypeError: ``timeout`` given for a function that has a ``timeout`` parameter of
                its own (ambiguous: use ``functools.partial`` for the function's).
            JobFailed: it raised (the original exception is ``remote_exception``).
            JobTimeout, ChildDied, QueueFull, PoolClosed, StartFailed: as ``submit``.
        """
        if timeout is not _UNSET:
            refuse_ambiguous_timeout(func)
        dispatcher = self._dispatcher
        payload, name = self._encode_call(func, args, kwargs)
        job = dispatcher.enqueue(JobKind.CALL, payload, name, timeout, True)
        if job is None:
            job = await dispatcher.enqueue_when_room(JobKind.CALL, payload, name, timeout)
        try:
            result: T = await job.future
        except asyncio.CancelledError:
            dispatcher.cancel(job, False)
            raise
        return result

    def _encode_call(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bytes, str]:
        return encode_call(
            func,
            args,
            kwargs,
            main_importable=self._supervisor.main_importable,
            max_bytes=self._dispatcher.max_bytes,
        )

    def executor(self) -> Executor:
        """A ``concurrent.futures.Executor`` running functions in this pool, for
        ``loop.run_in_executor`` and code written against executors. It keeps the
        executor contract: ``running()`` once a child runs the call (``cancel()`` is then
        False), ``shutdown(wait=True)`` waits for its calls (from another thread: on the
        pool's own loop that would deadlock, so it raises), ``cancel_futures=True`` cancels
        the queued ones, and ``result()`` raises the function's own exception with the
        child's traceback as its ``__cause__``.

        Raises:
            PoolClosed: the pool is not started or closed.
        """
        from .executor import PoolExecutor

        loop = self._dispatcher.loop
        if loop is None or self._dispatcher.phase is Phase.CLOSED:
            raise PoolClosed("start the pool first" if loop is None else "the pool is closed")
        return PoolExecutor(self, loop)

    def _executor_call(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        handle: concurrent.futures.Future[Any],
    ) -> Job | None:
        """Queue a call for ``PoolExecutor`` (on the loop thread). ``handle`` moves to
        RUNNING when a child takes the job, or the job is dropped if it was cancelled first.
        Returns None when the queue is full (the executor then waits for room)."""
        payload, name = self._encode_call(func, args, kwargs)
        return self._dispatcher.enqueue(JobKind.CALL, payload, name, _UNSET, True, handle)

    async def _executor_call_when_room(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        handle: concurrent.futures.Future[Any],
    ) -> Job:
        payload, name = self._encode_call(func, args, kwargs)
        return await self._dispatcher.enqueue_when_room(JobKind.CALL, payload, name, _UNSET, handle)

    def _cancel_call(self, job: Job, handle: concurrent.futures.Future[Any]) -> None:
        self._dispatcher.cancel_call(job, handle)

    # ================================================================ size and generations

    async def resize(self, children: int) -> None:
        """Change the number of children and wait until new ones are ready. Surplus
        children retire: idle ones now, busy ones when their job ends.

        Raises:
            ConfigError: ``children`` is not a whole number from 1 to 1024.
            StartFailed: the new children failed to start.
        """
        if (
            not isinstance(children, int)
            or isinstance(children, bool)
            or not 1 <= children <= MAX_CHILDREN
        ):
            raise ConfigError(
                f"children must be a whole number from 1 to {MAX_CHILDREN}, not {children!r}"
            )
        if self._dispatcher.phase is not Phase.OPEN:
            raise PoolClosed("the pool is closed")
        await self._supervisor.resize(children)

    async def reload(self, config: PoolConfig | None = None) -> None:
        """Replace every child with a fresh one (new code; new settings when ``config`` is
        given) with no downtime: a new generation starts beside the old one, then old
        children retire as each finishes its job. Jobs keep flowing throughout; none is
        dropped.

        Args:
            config: settings for the new generation and the pool from now on (worker
                module, size, timeouts, limits); the current ones when omitted.

        Raises:
            StartFailed: the new generation could not start; the old one, and the old
                settings, keep serving.
        """
        if self._dispatcher.phase is not Phase.OPEN:
            raise PoolClosed("the pool is closed")
        supervisor = self._supervisor
        if supervisor.reloading:
            raise Qoper8Error("a reload is already in progress")
        old = self.config
        target = supervisor.target if config is None else config.children
        self._apply(config or old)
        await supervisor.roll(target, lambda: self._apply(old))

    # ================================================================ waiting and stats

    async def wait_idle(self) -> None:
        """Wait until no job is queued or running."""
        dispatcher = self._dispatcher
        await dispatcher.wait_for(lambda: not dispatcher.busy)

    @property
    def is_degraded(self) -> bool:
        """Whether children fail to start after the pool opened (a database down, say): it
        keeps respawning with back-off, serves with the children it has, and recovers by
        itself once one starts. Never true during a first start, which fails fast."""
        return self._supervisor.health.degraded

    @property
    def is_broken(self) -> bool:
        """Whether the pool gave up: ``max_start_failures`` children in a row failed to
        start and none is left. Every submit then raises ``StartFailed``; a daemon should
        exit. Never true without ``max_start_failures`` (the default keeps trying)."""
        return self._dispatcher.broken is not None

    async def wait_broken(self) -> StartFailed:
        """Wait until the pool gives up (see ``is_broken``) and return why. Never returns
        for a healthy pool; a daemon runs it beside its server to exit with a clear code."""
        dispatcher = self._dispatcher
        await dispatcher.wait_for(lambda: dispatcher.broken is not None)
        if dispatcher.broken is None:  # closed instead
            raise PoolClosed("the pool closed")
        return copy_start_failed(dispatcher.broken)

    def has_capacity(self) -> bool:
        """Whether a job submitted now would start at once (an idle child, nothing queued)."""
        return self._dispatcher.has_capacity()

    async def wait_capacity(self) -> None:
        """Wait until ``has_capacity()`` (or the pool closes). Transports that pull work
        (Redis) call this before taking a job, so a host never takes more than it can run."""
        dispatcher = self._dispatcher
        await dispatcher.wait_for(
            lambda: dispatcher.has_capacity() or dispatcher.phase is not Phase.OPEN
        )

    @property
    def handlers(self) -> dict[str, HandlerInfo]:
        """The action types the worker module registered, as the children reported them."""
        return dict(self._dispatcher.handlers)

    @property
    def generation(self) -> int:
        """The current generation; ``reload()`` increments it."""
        return self._supervisor.generation

    @property
    def size(self) -> int:
        """The target number of children."""
        return self._supervisor.target

    def statistics(self) -> PoolStatistics:
        """A snapshot built from the master's counters; no child is asked anything."""
        dispatcher, supervisor = self._dispatcher, self._supervisor
        dispatcher.fold_samples()
        return snapshot(
            supervisor.children.values(),
            dispatcher.counters,
            target_size=supervisor.target,
            generation=supervisor.generation,
            queue_length=dispatcher.queued,
            running=dispatcher.running,
            degraded=supervisor.health.degraded,
            failed_starts=supervisor.health.failures,
        )
