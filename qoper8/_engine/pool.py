"""``Pool``: owns the children and the one dispatch queue; every job ends here.

Data flow::

    submit(action) ──encode (JSON; InvalidAction here)──▶ Job ──┬─ idle child and empty queue?
                                                                │   yes: send it now
                                                                └─ no: queue (FIFO, cancellable)
    child frame ─▶ child_frame(): settle the job's future ─▶ child_free():
                       retire it? (max jobs, memory, old generation, surplus) ─▶ reconcile()
                       else: next QUEUED job straight to this child, or back to the idle list
    deadline ─▶ queued: JobTimeout │ running: JobTimeout, kill child ─▶ child_exited()
    child exit ─▶ child_exited(): its job ChildDied ─▶ reconcile() spawns a replacement

Everything runs on the event loop thread and nothing here blocks it: spawning happens on one
dedicated thread, exits are noticed through pidfds, frames arrive through asyncio transports.
A job reaches a child only when that child is idle, so a child never holds a second job and a
queued job stays cancellable until the moment it is dispatched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import orjson

from .._error_data import error_entries
from .._text import did_you_mean
from .._types import DEFAULT
from ..config import MAX_CHILDREN, PoolConfig, make_pool_config
from ..errors import (
    ChildDied,
    ConfigError,
    InvalidAction,
    JobFailed,
    JobTimeout,
    PoolClosed,
    Qoper8Error,
    QueueFull,
    StartFailed,
    describe_exit,
)
from . import protocol as proto
from .child import Child, ChildStartError, ChildState
from .job import Job, JobKind, JobState
from .main_module import IMPORTING_MAIN_ENV, alias_main, describe_main
from .output import StderrWriter
from .protocol import ErrorCategory, Kind
from .results import validate_result
from .stats import ChildStatistics, Counters, PoolStatistics
from .worker import HandlerInfo

if TYPE_CHECKING:
    import concurrent.futures
    from concurrent.futures import Executor
    from types import TracebackType

    from pydantic import BaseModel

    from .._types import JSONValue
    from ..errors import ErrorEntry

__all__ = ["OutputCallback", "Pool"]

T = TypeVar("T")
OutputCallback = Callable[[int, int, str], None]
"""Receives (child id, pid, line) for each line a child prints."""

logger = logging.getLogger("qoper8")

# Children asked to retire get this long to run their stop hooks before they are killed.
RETIRE_TIMEOUT: Final = 5.0
# Respawn backoff after a child fails to start: doubles from BASE up to MAX, so a broken
# worker module costs a few spawns a second at first and one every MAX seconds after.
RESPAWN_BACKOFF_BASE: Final = 0.1
RESPAWN_BACKOFF_MAX: Final = 5.0
# A child that exits on its own this soon after READY, before any job, counts as a failed
# start: its worker module is broken in a way on_start did not show (a thread that ends the
# process, a connection dropped at once). Longer than such after-effects take (0.2 s in
# tests/bad_workers/dies_after_ready.py); an operator killing idle children, or the OOM killer,
# comes later than this, and counting them as failed starts would slow respawns for nothing.
START_FAILURE_WINDOW: Final = 1.0

# "Not given" (the pool's own timeout applies); reads DEFAULT in help() and signatures.
_UNSET: Final[Any] = DEFAULT
_monotonic: Final = time.monotonic
_INF: Final = float("inf")
_dumps: Final = orjson.dumps
_loads: Final = orjson.loads
_HEADER_PACK: Final = proto.HEADER.pack
# Enum members used on the hot path, bound once: in Python 3.11 reading a member off an Enum
# class goes through EnumType.__getattr__ and costs about five plain attribute reads.
_IDLE: Final = ChildState.IDLE
_BUSY: Final = ChildState.BUSY
_QUEUED: Final = JobState.QUEUED
_RUNNING: Final = JobState.RUNNING
_ENDED: Final = JobState.ENDED
_RESULT: Final = int(Kind.RESULT)
_ACTION_FRAME: Final = int(Kind.ACTION)
_CALL_FRAME: Final = int(Kind.CALL)
_JOB_ACTION: Final = JobKind.ACTION
# Fold raw samples into the statistics series once this many have piled up.
SAMPLE_FOLD: Final = 4096


class _State:
    NEW = "new"
    STARTING = "starting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


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
        self._on_output = on_output or _default_output
        self._state = _State.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spawner: ThreadPoolExecutor | None = None
        self._children: dict[int, Child] = {}
        self._idle: deque[Child] = deque()  # a stack: the last one freed is used first
        self._queue: deque[Job] = deque()
        self._queued = 0
        self._running = 0
        self._next_job_id = 1
        self._next_child_id = 1
        self._generation = 1
        self._target = config.children
        self._handlers: dict[str, HandlerInfo] = {}
        self._counters = Counters()
        # Raw durations, folded into the counters' series when statistics() runs or the
        # list grows long: one list append per job on the hot path instead of a histogram
        # update.
        self._wait_samples: list[float] = []
        self._run_samples: list[float] = []
        self._apply_config(config)
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        # Consecutive failed starts since the last child that proved healthy (a job done,
        # or alive START_FAILURE_WINDOW after READY); non-zero means degraded.
        self._start_failures = 0
        self._degraded_since: float | None = None
        # Respawns sleeping out their back-off; a recovery wakes them at once.
        self._backoff_waiters: set[asyncio.Future[None]] = set()
        self._broken: StartFailed | None = None
        self._reloading = False
        self._closed = asyncio.Event()
        self._drain_cut = asyncio.Event()

    def _apply_config(self, config: PoolConfig) -> None:
        """Adopt ``config``: at construction, and on ``reload(config)``."""
        self.config = config
        self._max_bytes = config.max_message_bytes
        self._max_queue = config.max_queue
        self._memory_limit = config.max_memory_per_child
        self._child_config = {
            "worker": config.worker,
            "sys_path": list(sys.path),
            "cwd": os.getcwd(),
            "max_message_bytes": config.max_message_bytes,
            "report_memory": config.max_memory_per_child is not None,
            "main": describe_main(),
        }
        if self._child_config["main"] is not None:
            alias_main()

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
        """Start every child and return once all are ready.

        Raises:
            StartFailed: the worker module failed to import, its start hook raised, or a
                child was not ready within ``start_timeout``. No child is left running.
        """
        if self._state is not _State.NEW:
            raise RuntimeError("a Pool can be started only once")
        if os.environ.get(IMPORTING_MAIN_ENV):
            raise RuntimeError(
                "a qoper8 child imported the main script to run one of its functions, and "
                "the script started a pool while being imported: put the code that starts "
                "the pool under `if __name__ == '__main__':`"
            )
        self._loop = asyncio.get_running_loop()
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="qoper8-spawner")
        self._state = _State.STARTING
        try:
            await self._start_children([self._new_child() for _ in range(self._target)])
        except BaseException as exc:
            if isinstance(exc, StartFailed):
                # Jobs submitted while the children started get the reason, not PoolClosed.
                for job in self._queue:
                    if job.state is _QUEUED:
                        job.fail(_copy_start_failed(exc))
                self._queue.clear()
                self._queued = 0
            await self._shutdown_children(grace=0.0)
            self._finish_close()
            raise
        self._state = _State.OPEN

    async def _start_children(self, children: list[Child]) -> None:
        """Spawn ``children`` together and wait until all are ready; on the first failure
        cancel the rest and raise ``StartFailed`` (the caller cleans up)."""
        tasks = [asyncio.create_task(self._spawn_and_wait(c)) for c in children]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except BaseException:
            # Cancelled (a daemon stopping mid-reload): children already spawned must not
            # linger in their start hooks until the pool closes.
            for t in tasks:
                t.cancel()
            for c in children:
                c.kill("start cancelled")
            raise
        failed = next((t for t in done if not t.cancelled() and t.exception() is not None), None)
        if failed is None:
            return
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in children:
            c.kill("another child failed to start")
        # Reap them before reporting, so that the caller never sees a half-dead generation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RETIRE_TIMEOUT):
                await asyncio.gather(*(c.wait_exited() for c in children if c.pid is not None))
        raise self._start_error(failed.exception(), children)

    def _start_error(self, exc: BaseException | None, children: list[Child]) -> StartFailed:
        if isinstance(exc, ChildStartError):
            return StartFailed(
                f"{exc} (worker {self.config.worker!r})",
                remote_type=exc.remote_type,
                remote_message=exc.remote_message,
                remote_traceback=exc.remote_traceback,
            )
        if isinstance(exc, TimeoutError):
            return StartFailed(
                f"children of {self.config.worker!r} were not ready within "
                f"start_timeout={self.config.start_timeout}s"
            )
        return StartFailed(f"could not spawn a child for {self.config.worker!r}: {exc!r}")

    async def _spawn_and_wait(self, child: Child) -> None:
        assert self._spawner is not None
        await child.spawn(self._spawner, self._child_config, self.config.max_message_bytes)
        await child.wait_ready(self.config.start_timeout)

    def _new_child(self) -> Child:
        limit = self.config.max_jobs_per_child
        if limit is not None:
            limit += random.randint(0, int(limit * self.config.max_jobs_jitter))
        child = Child(self, self._next_child_id, self._generation, max_jobs=limit)
        self._next_child_id += 1
        self._children[child.id] = child
        return child

    async def aclose(self, *, grace: float | None = None) -> None:
        """Stop taking jobs, let queued and running ones finish for up to ``grace`` seconds
        (default ``shutdown_timeout``), then fail what is left with ``PoolClosed``, retire
        the children (their stop hooks run) and reap them.

        Safe to call again while closing: a shorter ``grace`` cuts the drain short (a
        second Ctrl-C). If the closing task is cancelled, every child is killed at once and
        the pool is closed all the same.
        """
        if self._state in (_State.NEW, _State.CLOSED):
            self._state = _State.CLOSED
            return
        grace = self.config.shutdown_timeout if grace is None else grace
        if self._state is _State.CLOSING:
            assert self._loop is not None
            self._loop.call_later(max(0.0, grace), self._drain_cut.set)
            await self._closed.wait()
            return
        self._state = _State.CLOSING
        for fut in self._room_waiters:
            if not fut.done():
                fut.set_result(None)
        try:
            if self._queued or self._running:
                idle = asyncio.ensure_future(self.wait_idle())
                cut = asyncio.ensure_future(self._drain_cut.wait())
                try:
                    await asyncio.wait(
                        [idle, cut], timeout=grace, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    idle.cancel()
                    cut.cancel()
            await self._shutdown_children(grace=RETIRE_TIMEOUT)
        except BaseException:
            for child in list(self._children.values()):
                child.kill("pool close was cancelled")
            self._finish_close()
            raise
        self._finish_close()

    async def _shutdown_children(self, grace: float) -> None:
        for job in self._queue:
            if job.state is JobState.QUEUED:
                job.fail(PoolClosed(f"the pool closed before job {job.id} reached a child"))
        self._queue.clear()
        self._queued = 0
        # Background spawns first: each cleans up after itself (kills what it started).
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for child in list(self._children.values()):
            running = child.job
            if running is not None and not running.ended:
                running.fail(
                    PoolClosed(
                        f"the pool closed while job {running.id} ran; {child.describe()} was killed"
                    )
                )
            if child.state is ChildState.IDLE and grace > 0:
                child.retire()
            elif child.pid is None:
                child.abandon()
            else:
                child.kill("pool closed")
        self._idle.clear()
        children = list(self._children.values())
        if children:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.gather(*(c.wait_exited() for c in children))
            for child in children:
                child.kill("did not retire in time")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETIRE_TIMEOUT):
                    await asyncio.gather(*(c.wait_exited() for c in children))

    def _finish_close(self) -> None:
        self._state = _State.CLOSED
        if self._spawner is not None:
            self._spawner.shutdown(wait=False)
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()
        self._closed.set()

    @property
    def is_open(self) -> bool:
        """Whether the pool takes jobs."""
        return self._state is _State.OPEN

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
        # Hot path: a plain dict of a known type, encoded in one call; anything unusual
        # (and every error message) goes through _encode_action.
        action_type = action.get("type") if type(action) is dict else None
        payload = None
        if type(action_type) is str and action_type in self._handlers:
            try:
                payload = _dumps(action, default=proto.encode_model)
            except TypeError:
                payload = None
        if payload is None or len(payload) > self._max_bytes:
            action_type, payload = self._encode_action(action)
        elif payload.find(b"null") >= 0:  # orjson writes NaN and Infinity as null: look closer
            proto.refuse_non_finite(action, str(action_type))
        assert action_type is not None
        # The job is queued (or sent) synchronously; awaiting its future here, not in a
        # helper coroutine, keeps one coroutine frame per job.
        job = self._enqueue(_JOB_ACTION, payload, action_type, timeout, wait_for_room)
        if job is None:
            job = await self._enqueue_when_room(_JOB_ACTION, payload, action_type, timeout)
        try:
            result: JSONValue = await job.future
        except asyncio.CancelledError:
            self._on_cancel(job, kill_on_cancel)
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
            _refuse_ambiguous_timeout(func)
        payload, name = self._encode_call(func, args, kwargs)
        job = self._enqueue(JobKind.CALL, payload, name, timeout, True)
        if job is None:
            job = await self._enqueue_when_room(JobKind.CALL, payload, name, timeout)
        try:
            result: T = await job.future
        except asyncio.CancelledError:
            self._on_cancel(job, False)
            raise
        return result

    def _encode_call(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bytes, str]:
        """Pickle a call for a CALL frame; refuse what a child could never unpickle."""
        if getattr(func, "__module__", None) == "__main__" and self._child_config["main"] is None:
            raise InvalidAction(
                f"{getattr(func, '__qualname__', func)!r} is defined in __main__, which a child "
                "cannot import here (an interactive session, -c, or a package's __main__): "
                "move it into a module"
            )
        try:
            payload = pickle.dumps((func, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise InvalidAction(f"cannot pickle the call to {func!r}: {exc}") from None
        if len(payload) > self._max_bytes:
            raise InvalidAction(f"the pickled call is {len(payload)} bytes, over max_message_bytes")
        return payload, getattr(func, "__qualname__", repr(func))

    def _executor_call(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        handle: concurrent.futures.Future[Any],
    ) -> Job | None:
        """Queue a call for ``PoolExecutor`` (on the loop thread). ``handle`` moves to
        RUNNING when a child takes the job, or the job is dropped if it was cancelled first.
        Returns None when the queue is full (the executor then waits for room).

        Raises:
            InvalidAction, PoolClosed, StartFailed: as ``run``.
        """
        payload, name = self._encode_call(func, args, kwargs)
        return self._enqueue(JobKind.CALL, payload, name, _UNSET, True, handle)

    async def _executor_call_when_room(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        handle: concurrent.futures.Future[Any],
    ) -> Job:
        payload, name = self._encode_call(func, args, kwargs)
        return await self._enqueue_when_room(JobKind.CALL, payload, name, _UNSET, handle)

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

        if self._loop is None or self._state is _State.CLOSED:
            raise PoolClosed("start the pool first" if self._loop is None else "the pool is closed")
        return PoolExecutor(self, self._loop)

    def _cancel_call(self, job: Job, handle: concurrent.futures.Future[Any]) -> None:
        """An executor call's handle was cancelled (from any thread, hopped onto the loop): a
        queued job is dropped, and waiters on the handle are told."""
        if job.state is _QUEUED:
            self._on_cancel(job, False)
            handle.set_running_or_notify_cancel()

    def _encode_action(self, action: Mapping[str, Any] | BaseModel) -> tuple[str, bytes]:
        action_type, payload = proto.encode_action(action)
        if self._handlers and action_type not in self._handlers:
            known = ", ".join(sorted(self._handlers)) or "none"
            hint = did_you_mean(action_type, self._handlers)
            message = f"unknown action type {action_type!r}{hint} (known: {known})"
            entry: ErrorEntry = {"loc": ["type"], "msg": message, "type": "unknown_action_type"}
            raise InvalidAction(message, errors=[entry])
        if len(payload) > self.config.max_message_bytes:
            message = (
                f"action {action_type!r} is {len(payload)} bytes encoded, over "
                f"max_message_bytes={self.config.max_message_bytes}"
            )
            raise InvalidAction(message, errors=[{"loc": [], "msg": message, "type": "too_long"}])
        return action_type, payload

    def _enqueue(
        self,
        kind: JobKind,
        payload: bytes,
        action_type: str,
        timeout: float | None,
        wait_for_room: bool,
        handle: concurrent.futures.Future[Any] | None = None,
    ) -> Job | None:
        """Make the job and send it to an idle child or queue it. Returns None when the
        queue is full and the caller waits for room (``_enqueue_when_room``).

        Raises:
            PoolClosed, StartFailed, QueueFull (full and ``wait_for_room`` is False),
            InvalidAction (a timeout that is not a positive number of seconds or None).
        """
        state = self._state
        if state is not _State.OPEN and state is not _State.STARTING:
            # While STARTING, jobs queue and go to children as they become ready (a daemon
            # takes requests while its pool starts); a failed start fails them.
            raise PoolClosed(
                "the pool is closed" if state is not _State.NEW else "the pool is not started"
            )
        if timeout is not _UNSET and timeout is not None:
            _check_timeout(timeout)
        if self._broken is not None:
            raise self._broken_error()
        max_queue = self._max_queue
        if (
            max_queue is not None
            and self._queued >= max_queue
            and not (self._idle and not self._queued)
        ):
            if not wait_for_room:
                self._counters.rejected += 1
                raise QueueFull(f"the queue holds {self._queued} jobs (max_queue={max_queue})")
            return None
        return self._new_job(kind, payload, action_type, timeout, _monotonic(), handle)

    async def _enqueue_when_room(
        self,
        kind: JobKind,
        payload: bytes,
        action_type: str,
        timeout: float | None,
        handle: concurrent.futures.Future[Any] | None = None,
    ) -> Job:
        """The slow path of ``_enqueue``: wait for room in the queue within the job's
        deadline, which keeps counting from now."""
        if timeout is _UNSET:
            timeout = self.config.timeout
        now = _monotonic()
        await self._wait_for_room(timeout)
        if timeout is not None:
            timeout = max(0.0, timeout - (_monotonic() - now))
        if self._broken is not None:
            raise self._broken_error()
        return self._new_job(kind, payload, action_type, timeout, now, handle)

    def _new_job(
        self,
        kind: JobKind,
        payload: bytes,
        action_type: str,
        timeout: float | None,
        submitted_at: float,
        handle: concurrent.futures.Future[Any] | None = None,
    ) -> Job:
        loop = self._loop
        assert loop is not None
        if timeout is _UNSET:
            timeout = self.config.timeout
        job_id = self._next_job_id
        self._next_job_id = job_id + 1
        frame_kind = _ACTION_FRAME if kind is _JOB_ACTION else _CALL_FRAME
        job = Job(
            job_id,
            kind,
            _HEADER_PACK(len(payload), frame_kind, job_id, 0) + payload,
            loop.create_future(),
            submitted_at,
            action_type,
        )
        if handle is not None:
            job.handle = handle
        self._counters.submitted += 1
        if timeout is not None:
            job.deadline = _monotonic() + timeout
            job.timer = loop.call_later(timeout, self._on_deadline, job, timeout)
        idle = self._idle
        if idle and not self._queued:
            # The child that went idle last: it is the one still warm (its caches, and the
            # CPU the scheduler just ran it on); round-robin would wake a cold one each time.
            child = idle.pop()
            if not self._start_job(child, job):
                idle.append(child)
        else:
            self._queue.append(job)
            self._queued += 1
        return job

    async def _wait_for_room(self, timeout: float | None) -> None:
        loop = self._loop
        assert loop is not None
        assert self.config.max_queue is not None
        try:
            async with asyncio.timeout(timeout):
                while self._queued >= self.config.max_queue and self._state is _State.OPEN:
                    fut = loop.create_future()
                    self._room_waiters.append(fut)
                    try:
                        await fut
                    finally:
                        if not fut.done():
                            fut.cancel()
        except TimeoutError:
            self._counters.timed_out += 1
            raise JobTimeout(f"no room in the queue within the deadline of {timeout}s") from None
        if self._state is not _State.OPEN:
            raise PoolClosed("the pool closed while the job waited for room in the queue")

    def _notify_room(self) -> None:
        while self._room_waiters:
            fut = self._room_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _start_job(self, child: Child, job: Job) -> bool:
        """Send ``job`` to idle ``child``; False (and the job dropped) if it was an
        executor call whose caller cancelled it a moment ago, from another thread."""
        if child.state is not _IDLE:
            raise RuntimeError(
                f"{child.describe()} is {child.state.value}, cannot take job {job.id}"
            )
        handle = job.handle
        if handle is not None and not handle.set_running_or_notify_cancel():
            self._counters.cancelled += 1
            job.end()
            return False
        now = _monotonic()
        job.state = _RUNNING
        job.started_at = now
        job.child = child
        child.state = _BUSY
        child.job = job
        self._running += 1
        self._wait_samples.append(now - job.submitted_at)
        child.send_frame(job.frame)
        return True

    def _on_deadline(self, job: Job, timeout: float) -> None:
        job.timer = None
        if job.ended:
            return
        self._counters.timed_out += 1
        if job.state is JobState.QUEUED:
            self._queued -= 1
            self._notify_room()
            job.fail(
                JobTimeout(
                    f"job {job.id} ({job.action_type}) waited in the queue past its deadline "
                    f"of {timeout}s; no child was free",
                    job_id=job.id,
                )
            )
            self._wake_waiters()
            return
        child = job.child
        assert child is not None
        job.fail(
            JobTimeout(
                f"job {job.id} ({job.action_type}) ran past its deadline of {timeout}s; "
                f"{child.describe()} was killed and is being replaced",
                job_id=job.id,
            )
        )
        logger.warning(
            "job %s (%s) ran past its deadline of %gs: killing %s",
            job.id,
            job.action_type,
            timeout,
            child.describe(),
            extra={
                "child": child.id,
                "pid": child.pid,
                "job_id": job.id,
                "action_type": job.action_type,
            },
        )
        child.kill(f"job {job.id} timed out")

    def _on_cancel(self, job: Job, kill: bool) -> None:
        if job.ended:
            return
        self._counters.cancelled += 1
        if job.state is JobState.QUEUED:
            self._queued -= 1
            job.end()
            self._notify_room()
            self._wake_waiters()
            return
        child = job.child
        job.end()
        if kill and child is not None:
            child.kill(f"job {job.id} was cancelled")

    # ================================================================ child events

    def child_ready(self, child: Child) -> None:
        if child.generation == self._generation or not self._handlers:
            self._handlers = {
                h["type"]: HandlerInfo(h["type"], h["import_path"], tuple(h["params"]))
                for h in child.handlers
            }
        if self._degraded_since is not None and self._loop is not None:
            # Degraded: this child ends the outage once it has lived a moment, so that one
            # that dies right after READY does not reset the back-off every time.
            self._loop.call_later(START_FAILURE_WINDOW, self._child_proved, child)
        self._child_free(child)

    def _child_proved(self, child: Child) -> None:
        if child.is_alive and self._state is _State.OPEN and self._degraded_since is not None:
            self._recovered(child)

    def _recovered(self, child: Child) -> None:
        """``child`` proved healthy: end the outage, and let the respawns still sleeping out
        their back-off try again now."""
        failures, self._start_failures = self._start_failures, 0
        since, self._degraded_since = self._degraded_since, None
        if since is not None:
            logger.warning(
                "recovered: %s of %r started and serves; %d failed starts over %.1fs",
                child.describe(),
                self.config.worker,
                failures,
                _monotonic() - since,
                extra={"child": child.id, "pid": child.pid},
            )
        for fut in self._backoff_waiters:
            if not fut.done():
                fut.set_result(None)
        self._reconcile()

    def child_frame(self, child: Child, kind: int, job_id: int, extra: int, payload: bytes) -> None:
        """A child answered: settle its job, then give it the next one at once. This is the
        hot path, kept flat: one call per answer, no allocation beyond the result."""
        job = child.job
        if job is None or job.id != job_id:
            child.protocol_violation(f"frame {kind} for job {job_id}, expected {job and job.id}")
            return
        child.job = None
        child.jobs_done += 1
        if child.state is _BUSY:
            child.state = _IDLE
        self._running -= 1
        if self._degraded_since is not None and child.ready_at > self._degraded_since:
            self._recovered(child)  # a new child did real work: the worker module is healthy
        samples = self._run_samples
        samples.append(_monotonic() - job.started_at)
        if len(samples) >= SAMPLE_FOLD:
            self._fold_samples()
        if job.state is not _ENDED:
            if kind == _RESULT:
                try:
                    value = _loads(payload)
                except ValueError as exc:
                    self._undecodable(job, child, exc)
                else:
                    job.state = _ENDED
                    job.child = None
                    if job.timer is not None:
                        job.timer.cancel()
                        job.timer = None
                    if not job.future.done():
                        job.future.set_result(value)
                    self._counters.completed += 1
            else:
                self._settle(job, kind, payload, child)
        self._child_free(child)

    def _undecodable(self, job: Job, child: Child, exc: Exception) -> None:
        """Fail ``job`` over a reply that cannot be decoded, and stop trusting its child."""
        self._counters.failed += 1
        job.fail(
            JobFailed(
                f"job {job.id}: {child.describe()} sent a reply that cannot be decoded: {exc}",
                job_id=job.id,
                remote_type=type(exc).__name__,
                remote_message=str(exc),
            )
        )
        child.protocol_violation(str(exc))

    def _settle(self, job: Job, kind: int, payload: bytes, child: Child) -> None:
        """Settle ``job`` from any reply but a plain RESULT (which child_frame handles)."""
        counters = self._counters
        try:
            if kind == Kind.ERROR:
                info = proto.loads(payload)
                if info.get("category") == ErrorCategory.INVALID:
                    counters.invalid += 1
                    job.fail(self._invalid_action(info))
                else:
                    counters.failed += 1
                    failed = self._job_failed(job, info, None)
                    _log_failure(job, child, failed)
                    job.fail(failed)
            elif kind == Kind.RESULT_PICKLE:
                value = pickle.loads(payload)
                counters.completed += 1
                job.resolve(value)
            elif kind == Kind.ERROR_PICKLE:
                info = pickle.loads(payload)
                remote = None
                if info.get("exception") is not None:
                    with contextlib.suppress(Exception):
                        remote = pickle.loads(info["exception"])
                counters.failed += 1
                failed = self._job_failed(job, info, remote)
                _log_failure(job, child, failed)
                job.fail(failed)
            else:
                raise proto.ProtocolError(f"unexpected frame kind {kind}")
        except Exception as exc:  # undecodable reply: fail this job, distrust the child
            self._undecodable(job, child, exc)

    @staticmethod
    def _invalid_action(info: dict[str, Any]) -> InvalidAction:
        """The caller's InvalidAction from a child's report: its structured entries when it
        sent some (a validation failure, an unknown type), else its exception as text."""
        entries = error_entries(info.get("errors"))
        if entries:
            return InvalidAction(
                str(info["message"]),
                errors=entries,
                errors_omitted=int(info.get("errors_omitted") or 0),
            )
        return InvalidAction(f"{info['type']}: {info['message']}")

    @staticmethod
    def _job_failed(job: Job, info: dict[str, Any], remote: BaseException | None) -> JobFailed:
        status, code = info.get("status"), info.get("code")
        return JobFailed(
            f"job {job.id} ({job.action_type}) failed: {info['type']}: {info['message']}",
            job_id=job.id,
            remote_type=str(info["type"]),
            remote_message=str(info["message"]),
            remote_traceback=str(info.get("traceback", "")),
            remote_exception=remote,
            remote_types=tuple(str(t) for t in info.get("types") or ()),
            status=status if type(status) is int else None,
            code=None if code is None else str(code),
            details=info.get("details"),
        )

    def _child_free(self, child: Child) -> None:
        """``child`` just became idle: retire it, or give it the next queued job, or park it."""
        if child.state is not _IDLE:
            return
        if (
            child.retire_requested
            or child.generation != self._generation
            or child.max_jobs is not None
            or self._memory_limit is not None
        ):
            reason = self._retire_reason(child)
            if reason is not None:
                self._retire(child, reason)
                return
        queue = self._queue
        while queue:
            queued = queue.popleft()
            if queued.state is _QUEUED:
                self._queued -= 1
                if self._room_waiters:
                    self._notify_room()
                if self._start_job(child, queued):
                    return
        self._idle.append(child)
        if self._waiters:
            self._wake_waiters()

    def _retire_reason(self, child: Child) -> str | None:
        if self._state is not _State.OPEN and self._state is not _State.STARTING:
            return None
        if child.retire_requested:
            return "surplus"
        if child.generation != self._generation and not self._reloading:
            return "old generation"
        if self._degraded_since is not None:
            # Degraded: its replacement could not start; a healthy child serves on.
            return None
        if child.max_jobs is not None and child.jobs_done >= child.max_jobs:
            return f"done {child.jobs_done} jobs"
        limit = self.config.max_memory_per_child
        if limit is not None and child.last_rss > limit:
            return f"resident memory {child.last_rss} bytes over {limit}"
        return None

    def _retire(self, child: Child, reason: str) -> None:
        logger.info("retiring %s: %s", child.describe(), reason)
        if reason.startswith(("done", "resident")):
            self._counters.recycled += 1
        with contextlib.suppress(ValueError):
            self._idle.remove(child)
        child.retire()
        self._reconcile()

    def child_exited(self, child: Child) -> None:
        self._children.pop(child.id, None)
        with contextlib.suppress(ValueError):
            self._idle.remove(child)
        job = child.job
        closing = self._state is _State.CLOSING or self._state is _State.CLOSED
        if job is not None:
            child.job = None
            self._running -= 1
            if not job.ended:
                if closing:
                    job.fail(PoolClosed(f"the pool closed while job {job.id} ran"))
                else:
                    self._counters.died += 1
                    job.fail(self._child_died(child, job))
        failed_start = self._is_failed_start(child, job)
        if not closing:
            self._log_exit(child, job, failed_start)
        if failed_start and self._state is _State.OPEN and not child.managed_start:
            self._start_failed(child)
        self._reconcile()
        self._wake_waiters()

    def _child_died(self, child: Child, job: Job) -> ChildDied:
        how = describe_exit(child.exitcode, child.signal)
        reason = f" ({child.kill_reason})" if child.kill_reason else ""
        return ChildDied(
            f"{child.describe()} {how}{reason} while running job {job.id} "
            f"({job.action_type}); it is being replaced",
            job_id=job.id,
            pid=child.pid,
            exitcode=child.exitcode,
            signal=child.signal,
        )

    @staticmethod
    def _is_failed_start(child: Child, job: Job | None) -> bool:
        """Whether ``child``'s exit says its worker module cannot start: it died (or was
        killed for its own fault) before READY, or exited on its own within
        START_FAILURE_WINDOW of READY before any job. A child the pool killed or retired,
        or one killed from outside later on, is not a failed start."""
        if child.retiring:
            return False
        if not child.was_ready:
            return child.kill_reason is None or child.kill_fault
        if child.kill_reason is not None or job is not None or child.jobs_done:
            return False
        return _monotonic() - child.ready_at < START_FAILURE_WINDOW

    def _log_exit(self, child: Child, job: Job | None, failed_start: bool) -> None:
        """One line per exit, saying what happened (item 4 of issue 9: the daemon logs it)."""
        how = describe_exit(child.exitcode, child.signal)
        extra: dict[str, Any] = {
            "child": child.id,
            "pid": child.pid,
            "exitcode": child.exitcode,
            "signal": child.signal,
        }
        if job is not None:
            extra.update(job_id=job.id, action_type=job.action_type)
        if child.retiring:
            logger.debug("%s %s after retiring", child.describe(), how, extra=extra)
        elif not child.was_ready:
            if failed_start and not child.managed_start:
                # Once per try at INFO: the outage itself is one WARNING (_start_failed).
                logger.info("%s", ChildStartError(child), extra=extra)
            else:
                logger.debug(
                    "%s %s while starting (%s)",
                    child.describe(),
                    how,
                    child.kill_reason or "start failed",
                    extra=extra,
                )
        elif child.kill_reason is not None:
            # The pool killed it (a deadline, a cancel, surplus): whoever decided logged why.
            logger.debug("%s %s (%s)", child.describe(), how, child.kill_reason, extra=extra)
        elif job is not None:
            logger.warning(
                "%s %s while running job %s (%s); it is being replaced",
                child.describe(),
                how,
                job.id,
                job.action_type,
                extra=extra,
            )
        elif failed_start:
            logger.info("%s (counted as a failed start)", ChildStartError(child), extra=extra)
        else:
            logger.warning(
                "%s %s while idle; it is being replaced", child.describe(), how, extra=extra
            )

    def _start_failed(self, child: Child) -> None:
        """A background start failed: back off, report the pool degraded (one WARNING per
        outage), and give up only when ``max_start_failures`` says so."""
        self._start_failures += 1
        if self._degraded_since is None:
            self._degraded_since = _monotonic()
            logger.warning(
                "degraded: children of %r fail to start (%s); respawning with back-off "
                "(at most every %gs) until one starts; queued jobs wait for it",
                self.config.worker,
                ChildStartError(child),
                RESPAWN_BACKOFF_MAX,
                extra={"child": child.id, "pid": child.pid},
            )
        limit = self.config.max_start_failures
        if limit is not None and self._start_failures >= limit:
            self._give_up(child)

    def _give_up(self, child: Child) -> None:
        alive = [c for c in self._children.values() if c.was_ready and c.is_alive]
        err = ChildStartError(child)
        logger.error(
            "%r: %d children in a row failed to start (max_start_failures); no more respawns (%s)",
            self.config.worker,
            self._start_failures,
            err,
        )
        if alive:
            return  # keep serving, degraded; resize() or reload() tries again
        self._broken = StartFailed(
            f"children of {self.config.worker!r} keep failing to start: {err}",
            remote_type=err.remote_type,
            remote_message=err.remote_message,
            remote_traceback=err.remote_traceback,
        )
        for job in self._queue:
            if job.state is JobState.QUEUED:
                job.fail(self._broken_error())
        self._queue.clear()
        self._queued = 0

    def _broken_error(self) -> StartFailed:
        """A fresh copy of the error that broke the pool, for each caller (one exception
        object raised many times would pile up everyone's tracebacks)."""
        assert self._broken is not None
        return _copy_start_failed(self._broken)

    def child_output(self, child: Child, line: str) -> None:
        try:
            self._on_output(child.id, child.pid or 0, line)
        except Exception:
            logger.exception("on_output callback failed")

    # ================================================================ size and generations

    def _active(self) -> list[Child]:
        gen = self._generation
        return [
            c
            for c in self._children.values()
            if c.generation == gen
            and c.state in (ChildState.STARTING, ChildState.IDLE, ChildState.BUSY)
            and not c.retire_requested
        ]

    def _reconcile(self) -> None:
        """Converge the number of current-generation children on the target size."""
        if self._state is not _State.OPEN or self._reloading:
            return
        active = self._active()
        missing = self._target - len(active)
        if missing > 0:
            limit = self.config.max_start_failures
            if limit is not None and self._start_failures >= limit:
                return
            for _ in range(missing):
                self._launch_background(self._new_child())
        elif missing < 0:
            # Retire the surplus: idle children first, busy ones after their job.
            surplus = sorted(active, key=lambda c: (c.state is not ChildState.IDLE, -c.id))
            for child in surplus[:-missing]:
                child.retire_requested = True
                if child.state is ChildState.IDLE:
                    self._retire(child, "surplus")
                elif child.state is ChildState.STARTING:
                    child.kill("surplus while starting")

    def _launch_background(self, child: Child) -> None:
        task = asyncio.create_task(self._respawn(child, self._start_failures))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respawn(self, child: Child, failures: int) -> None:
        try:
            if failures:
                await self._back_off(
                    min(RESPAWN_BACKOFF_MAX, RESPAWN_BACKOFF_BASE * 2 ** (failures - 1))
                )
            await self._spawn_and_wait(child)
        except (ChildStartError, TimeoutError):
            pass  # child_exited() counts it and reconciles
        except OSError as exc:  # could not even spawn (fds, memory): counts as a failed start
            logger.error("could not spawn a child: %s", exc)
        finally:
            if child.pid is None:
                child.abandon()

    async def _back_off(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a child proves healthy meanwhile (``_recovered``)."""
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        timer = self._loop.call_later(seconds, _resolve, fut)
        self._backoff_waiters.add(fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._backoff_waiters.discard(fut)

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
        if self._state is not _State.OPEN:
            raise PoolClosed("the pool is closed")
        self._target = children
        self._start_failures = 0
        self._reconcile()
        starting = [c for c in self._active() if c.state is ChildState.STARTING]
        await self._wait_started(starting)

    async def _wait_started(self, children: list[Child]) -> None:
        results = await asyncio.gather(
            *(c.wait_ready(self.config.start_timeout) for c in children), return_exceptions=True
        )
        for res in results:
            if isinstance(res, BaseException):
                raise self._start_error(res, children)

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
        if self._state is not _State.OPEN:
            raise PoolClosed("the pool is closed")
        if self._reloading:
            raise Qoper8Error("a reload is already in progress")
        self._reloading = True
        old_generation, old_config, old_target = self._generation, self.config, self._target
        self._generation += 1
        self._apply_config(config or self.config)
        if config is not None:
            self._target = config.children
        new = [self._new_child() for _ in range(self._target)]
        for child in new:
            child.managed_start = True
        try:
            await self._start_children(new)
        except BaseException:
            # The new children are being killed; their deaths are this reload's failure,
            # not failed background starts (they keep managed_start).
            self._generation, self._target = old_generation, old_target
            self._apply_config(old_config)
            self._reloading = False
            self._reconcile()
            raise
        for child in new:
            child.managed_start = False
        self._reloading = False
        if self._degraded_since is not None:
            self._recovered(new[0])
        for child in list(self._children.values()):
            if child.generation != self._generation:
                if child.state is ChildState.IDLE:
                    self._retire(child, "old generation")
                elif child.state is ChildState.STARTING:
                    child.kill("old generation")
                else:
                    child.retire_requested = True
        self._reconcile()

    # ================================================================ waiting and stats

    def _fold_samples(self) -> None:
        self._counters.queue_wait.add_many(self._wait_samples)
        self._counters.run_time.add_many(self._run_samples)
        self._wait_samples.clear()
        self._run_samples.clear()

    def _wake_waiters(self) -> None:
        if not self._waiters:
            return
        keep = []
        for predicate, fut in self._waiters:
            if fut.done():
                continue
            if predicate():
                fut.set_result(None)
            else:
                keep.append((predicate, fut))
        self._waiters = keep

    async def _wait_for(self, predicate: Callable[[], bool]) -> None:
        if predicate() or self._state is _State.CLOSED:
            return
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((predicate, fut))
        await fut

    async def wait_idle(self) -> None:
        """Wait until no job is queued or running."""
        await self._wait_for(lambda: not self._queued and not self._running)

    @property
    def is_degraded(self) -> bool:
        """Whether children fail to start after the pool opened (a database down, say): it
        keeps respawning with back-off, serves with the children it has, and recovers by
        itself once one starts. Never true during a first start, which fails fast."""
        return self._degraded_since is not None

    @property
    def is_broken(self) -> bool:
        """Whether the pool gave up: ``max_start_failures`` children in a row failed to
        start and none is left. Every submit then raises ``StartFailed``; a daemon should
        exit. Never true without ``max_start_failures`` (the default keeps trying)."""
        return self._broken is not None

    async def wait_broken(self) -> StartFailed:
        """Wait until the pool gives up (see ``is_broken``) and return why. Never returns
        for a healthy pool; a daemon runs it beside its server to exit with a clear code."""
        await self._wait_for(lambda: self._broken is not None)
        if self._broken is None:  # closed instead
            raise PoolClosed("the pool closed")
        return self._broken_error()

    def has_capacity(self) -> bool:
        """Whether a job submitted now would start at once (an idle child, nothing queued)."""
        return bool(self._idle) and not self._queued

    async def wait_capacity(self) -> None:
        """Wait until ``has_capacity()`` (or the pool closes). Transports that pull work
        (Redis) call this before taking a job, so a host never takes more than it can run."""
        await self._wait_for(lambda: self.has_capacity() or self._state is not _State.OPEN)

    @property
    def handlers(self) -> dict[str, HandlerInfo]:
        """The action types the worker module registered, as the children reported them."""
        return dict(self._handlers)

    @property
    def generation(self) -> int:
        """The current generation; ``reload()`` increments it."""
        return self._generation

    @property
    def size(self) -> int:
        """The target number of children."""
        return self._target

    def statistics(self) -> PoolStatistics:
        """A snapshot built from the master's counters; no child is asked anything."""
        self._fold_samples()
        now = time.monotonic()
        c = self._counters
        children = tuple(
            ChildStatistics(
                id=child.id,
                pid=child.pid,
                generation=child.generation,
                state=child.state.value,
                jobs_done=child.jobs_done,
                age=now - child.started_at,
                current_job_age=(now - child.job.started_at) if child.job is not None else None,
                memory_rss=_rss_of(child.pid) or child.last_rss or None,
            )
            for child in sorted(self._children.values(), key=lambda ch: ch.id)
        )
        return PoolStatistics(
            children=children,
            target_size=self._target,
            generation=self._generation,
            queue_length=self._queued,
            running=self._running,
            submitted=c.submitted,
            completed=c.completed,
            failed=c.failed,
            invalid=c.invalid,
            timed_out=c.timed_out,
            died=c.died,
            cancelled=c.cancelled,
            recycled=c.recycled,
            rejected=c.rejected,
            queue_wait=c.queue_wait.percentiles(),
            run_time=c.run_time.percentiles(),
            queue_wait_histogram=c.queue_wait.histogram(),
            run_time_histogram=c.run_time.histogram(),
            degraded=self._degraded_since is not None,
            failed_starts=self._start_failures,
        )


_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_of(pid: int | None) -> int | None:
    """Resident memory of ``pid`` from /proc (Linux); None where unavailable."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def _refuse_ambiguous_timeout(func: Callable[..., Any]) -> None:
    """``run(f, timeout=...)`` is the job's deadline; if ``f`` itself takes a ``timeout``, the
    caller may have meant that one: refuse rather than guess. (A ``functools.partial`` has no
    ``__code__``: binding the function's own ``timeout`` there is the unambiguous way.)"""
    code = getattr(func, "__code__", None)
    if code is None:
        return
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    if "timeout" in names:
        raise TypeError(
            f"{func.__qualname__}() takes a timeout of its own; run(timeout=...) is the job's "
            "deadline: pass the function's with functools.partial(func, timeout=...)"
        )


def _copy_start_failed(err: StartFailed) -> StartFailed:
    return StartFailed(
        str(err),
        remote_type=err.remote_type,
        remote_message=err.remote_message,
        remote_traceback=err.remote_traceback,
    )


def _log_failure(job: Job, child: Child, failed: JobFailed) -> None:
    """A handler raised: one WARNING line with the fields a JSON log carries, the child's
    traceback at DEBUG (the daemon's ``--debug``). A ``HandlerError`` the handler chose a
    4xx status for is the caller's mistake, not the service's: INFO."""
    extra = {
        "child": child.id,
        "pid": child.pid,
        "job_id": job.id,
        "action_type": job.action_type,
        "remote_type": failed.remote_type,
    }
    level = logging.INFO if failed.status is not None and failed.status < 500 else logging.WARNING
    logger.log(
        level,
        "job %s (%s) failed in %s: %s: %s",
        job.id,
        job.action_type,
        child.describe(),
        failed.remote_type,
        failed.remote_message,
        extra=extra,
    )
    if failed.remote_traceback and logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "job %s (%s): the child's traceback:\n%s",
            job.id,
            job.action_type,
            failed.remote_traceback.rstrip(),
            extra=extra,
        )


def _check_timeout(timeout: object) -> None:
    """Refuse a deadline that is not a positive, finite number (0 would send the job and
    kill its child at once; NaN would never fire)."""
    if (type(timeout) is not float and type(timeout) is not int) or not 0 < timeout < _INF:
        raise InvalidAction(
            f"timeout must be a positive, finite number of seconds or None, not {timeout!r}"
        )


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
