"""One driver per pool: start it with every child pre-started, call it the way its users call
it from asyncio, expose its children's pids, and close it without ever hanging the bench.

A driver's ``call(op, arg)`` returns an awaitable in the pool's own idiom: a coroutine for the
async-native APIs (qoper8, anyio, aiomultiprocess), an asyncio future for the executor-style
ones (``run_in_executor``, ``wrap_future``, ``apply_async`` with a callback). ``op`` is one of
``echo`` (returns its argument), ``sleep`` (blocks ``arg`` ms, returns the child's pid) and
``crash`` (``os._exit(1)``). Drivers that have a native blocking API also measure it
(``sync_throughput``/``sync_latency``); the report lists those rows separately.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from bench import workers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CLOSE_TIMEOUT = 5.0  # a pool that cannot close in this long has its children SIGKILLed
QOPER8_WORKER = "bench.workers:worker"

FUNCS: dict[str, Callable[..., Any]] = {
    "echo": workers.echo,
    "sleep": workers.sleep_ms,
    "crash": workers.crash,
}
AFUNCS: dict[str, Callable[..., Any]] = {
    "echo": workers.aecho,
    "sleep": workers.asleep_ms,
    "crash": workers.acrash,
}


def _args(op: str, arg: Any) -> tuple[Any, ...]:
    return () if op == "crash" else (arg,)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def run_bounded(fn: Callable[[], Any], timeout: float) -> tuple[bool, Any]:
    """Run blocking ``fn`` on a daemon thread; (finished, result or exception). A call that
    hangs leaves its thread behind (daemon, so the bench can still exit)."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:
            box.append((True, exc))

    t = threading.Thread(target=target, daemon=True, name="bench-bounded")
    t.start()
    t.join(timeout)
    if not box:
        return False, None
    return box[0]


async def run_bounded_async(fn: Callable[[], Any], timeout: float) -> tuple[bool, Any]:
    """``run_bounded`` without blocking the event loop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[bool, Any]] = loop.create_future()

    def target() -> None:
        try:
            res: tuple[bool, Any] = (True, fn())
        except BaseException as exc:
            res = (True, exc)
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(res))

    threading.Thread(target=target, daemon=True, name="bench-bounded").start()
    try:
        return await asyncio.wait_for(done, timeout)
    except TimeoutError:
        return False, None


class Driver:
    """Base: subclasses set ``name``/``how`` and implement ``_start``, ``call``, ``pids``,
    ``_close``."""

    name = "?"
    how = "?"  # how it is driven from asyncio
    sync_how: str | None = None  # its native blocking API, if measured
    variant = False  # a second face of a pool already measured: only scenarios 1 and 2
    full_only = False  # measured by --full only, to keep the quick mode quick
    lazy = False  # spawns children on demand (no pre-start API): warmed by concurrent calls

    def __init__(self) -> None:
        self.n = 0
        self._known_pids: set[int] = set()

    async def start(self, n: int) -> None:
        self.n = n
        await self._start(n)

    async def _start(self, n: int) -> None:
        raise NotImplementedError

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def live_pids(self) -> list[int]:
        try:
            pids = self.pids()
        except Exception:
            return []
        self._known_pids.update(pids)
        return [p for p in pids if pid_alive(p)]

    async def close(self) -> None:
        """Close the pool within CLOSE_TIMEOUT, then SIGKILL any child still alive."""
        self.live_pids()
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(self._close(), CLOSE_TIMEOUT)
        for pid in self._known_pids:
            if pid_alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self._known_pids.clear()

    async def _close(self) -> None:
        raise NotImplementedError

    # native blocking API (None: not measured)
    def sync_throughput(self, n: int) -> None:
        raise NotImplementedError

    def sync_latency_one(self, i: int) -> Any:
        raise NotImplementedError


# ---------------------------------------------------------------- qoper8


class Qoper8Submit(Driver):
    name = "qoper8"
    how = "await pool.submit(action)"

    async def _start(self, n: int) -> None:
        import qoper8

        self.pool = qoper8.Pool(QOPER8_WORKER, children=n)
        await self.pool.start()

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        if op == "echo":
            return self.pool.submit({"type": "echo", "value": arg})
        if op == "sleep":
            return self.pool.submit({"type": "sleep", "ms": arg})
        return self.pool.submit({"type": "crash"})

    def pids(self) -> list[int]:
        return [
            c.pid
            for c in self.pool.statistics().children
            if c.pid is not None and c.state in ("idle", "busy")
        ]

    async def _close(self) -> None:
        await self.pool.aclose()


class Qoper8Run(Qoper8Submit):
    name = "qoper8 run"
    how = "await pool.run(func, arg)"
    variant = True

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        return self.pool.run(FUNCS[op], *_args(op, arg))


class Qoper8Map(Qoper8Submit):
    """The fan-out face: one ``pool.map`` for the whole throughput run (a batch: one queue
    insertion, one future; see qoper8/_engine/batch.py)."""

    name = "qoper8 map"
    how = "await pool.map(actions)"
    variant = True

    async def run_throughput(self, n: int) -> float:
        t0 = time.perf_counter()
        results = await self.pool.map({"type": "echo", "value": i} for i in range(n))
        dt = time.perf_counter() - t0
        if results[-1] != n - 1:
            raise AssertionError(f"wrong result {results[-1]!r}")
        return dt


class Qoper8Executor(Qoper8Submit):
    name = "qoper8 executor"
    how = "loop.run_in_executor(pool.executor(), ...)"
    variant = True
    full_only = True

    async def _start(self, n: int) -> None:
        await super()._start(n)
        self.executor = self.pool.executor()
        self.loop = asyncio.get_running_loop()

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        return self.loop.run_in_executor(self.executor, FUNCS[op], *_args(op, arg))


class Qoper8Sync(Driver):
    """qoper8's blocking face (``qoper8.sync.Pool``), measured only in the blocking-API rows."""

    name = "qoper8.sync"
    how = "(blocking face only)"
    sync_how = "pool.executor().map(f, xs) / pool.submit(action)"
    variant = True
    sync_only = True

    async def _start(self, n: int) -> None:
        import qoper8.sync

        self.pool = qoper8.sync.Pool(QOPER8_WORKER, children=n)
        finished, res = await run_bounded_async(self.pool.start, 60.0)
        if not finished or isinstance(res, BaseException):
            raise RuntimeError(f"qoper8.sync.Pool did not start: {res!r}")

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        action: dict[str, Any] = {"type": op}
        if op == "echo":
            action["value"] = arg
        elif op == "sleep":
            action["ms"] = arg
        return asyncio.to_thread(self.pool.submit, action)

    def pids(self) -> list[int]:
        return [
            c.pid
            for c in self.pool.statistics().children
            if c.pid is not None and c.state in ("idle", "busy")
        ]

    async def _close(self) -> None:
        await run_bounded_async(self.pool.close, CLOSE_TIMEOUT)

    def sync_throughput(self, n: int) -> None:
        list(self.pool.executor().map(workers.echo, range(n)))

    def sync_latency_one(self, i: int) -> Any:
        return self.pool.submit({"type": "echo", "value": i})


# ---------------------------------------------------------------- concurrent.futures


class PPE(Driver):
    name = "ProcessPoolExecutor"
    how = "loop.run_in_executor(ex, ...)"
    sync_how = "ex.map(f, xs) / ex.submit(f, x).result()"
    max_tasks_per_child: int | None = None

    async def _start(self, n: int) -> None:
        kwargs: dict[str, Any] = {"max_workers": n}
        if self.max_tasks_per_child is not None:
            kwargs["max_tasks_per_child"] = self.max_tasks_per_child
        self.ex = concurrent.futures.ProcessPoolExecutor(**kwargs)
        self.loop = asyncio.get_running_loop()

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        return self.loop.run_in_executor(self.ex, FUNCS[op], *_args(op, arg))

    def pids(self) -> list[int]:
        return list(self.ex._processes or {})

    async def _close(self) -> None:
        await run_bounded_async(
            lambda: self.ex.shutdown(wait=True, cancel_futures=True), CLOSE_TIMEOUT
        )

    def sync_throughput(self, n: int) -> None:
        list(self.ex.map(workers.echo, range(n)))

    def sync_latency_one(self, i: int) -> Any:
        return self.ex.submit(workers.echo, i).result()


class PPEMaxTasks(PPE):
    # On CPython < 3.14 this deadlocks once a child retires while calls are still queued
    # (python/cpython#115634); the bench records that as "hung", as a user would meet it.
    name = "ProcessPoolExecutor(max_tasks_per_child=1000)"
    max_tasks_per_child = 1000
    lazy = True  # with max_tasks_per_child it uses spawn and starts children on demand


# ---------------------------------------------------------------- multiprocessing.Pool


class MPPool(Driver):
    name = "multiprocessing.Pool"
    how = "apply_async + callback → future"
    sync_how = "pool.map(f, xs, chunksize=1) / pool.apply(f, (x,))"

    async def _start(self, n: int) -> None:
        self.pool = multiprocessing.Pool(n)
        self.loop = asyncio.get_running_loop()

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        loop = self.loop
        fut = loop.create_future()

        def ok(value: Any) -> None:
            loop.call_soon_threadsafe(_settle, fut, value, None)

        def err(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_settle, fut, None, exc)

        self.pool.apply_async(FUNCS[op], _args(op, arg), callback=ok, error_callback=err)
        return fut

    def pids(self) -> list[int]:
        return [p.pid for p in self.pool._pool if p.pid is not None]  # type: ignore[attr-defined]

    async def _close(self) -> None:
        def stop() -> None:
            self.pool.terminate()
            self.pool.join()

        await run_bounded_async(stop, CLOSE_TIMEOUT)

    def sync_throughput(self, n: int) -> None:
        self.pool.map(workers.echo, range(n), chunksize=1)

    def sync_latency_one(self, i: int) -> Any:
        return self.pool.apply(workers.echo, (i,))


def _settle(fut: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


# ---------------------------------------------------------------- anyio


class AnyioToProcess(Driver):
    name = "anyio.to_process"
    how = "await to_process.run_sync(f, x, limiter=CapacityLimiter(n))"
    lazy = True

    async def _start(self, n: int) -> None:
        import anyio
        from anyio import to_process

        self.to_process = to_process
        self.limiter = anyio.CapacityLimiter(n)

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        return self.to_process.run_sync(FUNCS[op], *_args(op, arg), limiter=self.limiter)

    def _workers(self) -> set[Any]:
        try:
            return self.to_process._process_pool_workers.get()
        except LookupError:
            return set()

    def pids(self) -> list[int]:
        return [p.pid for p in self._workers()]

    async def _close(self) -> None:
        # anyio keeps its workers for the event loop's lifetime; end them so the next
        # repetition starts from nothing, as a fresh program would.
        workers_ = self._workers()
        for p in list(workers_):
            with contextlib.suppress(Exception):
                p.kill()
            with contextlib.suppress(Exception):
                await p.aclose()
        workers_.clear()
        with contextlib.suppress(LookupError):
            self.to_process._process_pool_idle_workers.get().clear()


# ---------------------------------------------------------------- aiomultiprocess


class AioMP(Driver):
    name = "aiomultiprocess"
    how = "await pool.apply(coro, (x,))"

    async def _start(self, n: int) -> None:
        import aiomultiprocess

        self.pool = aiomultiprocess.Pool(processes=n)

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        return self.pool.apply(AFUNCS[op], _args(op, arg))

    def pids(self) -> list[int]:
        return [p.pid for p in self.pool.processes if p.pid is not None]

    async def _close(self) -> None:
        self.pool.terminate()
        await self.pool.join()


# ---------------------------------------------------------------- pebble


class Pebble(Driver):
    name = "pebble.ProcessPool"
    how = "asyncio.wrap_future(pool.schedule(f, (x,)))"
    sync_how = "pool.map(f, xs) / pool.schedule(f, (x,)).result()"

    async def _start(self, n: int) -> None:
        import pebble

        self.pool = pebble.ProcessPool(max_workers=n)

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        return asyncio.wrap_future(self.pool.schedule(FUNCS[op], args=_args(op, arg)))

    def pids(self) -> list[int]:
        return list(self.pool._pool_manager.worker_manager.workers)

    async def _close(self) -> None:
        def stop() -> None:
            self.pool.stop()
            self.pool.join(CLOSE_TIMEOUT)

        await run_bounded_async(stop, CLOSE_TIMEOUT)

    def sync_throughput(self, n: int) -> None:
        list(self.pool.map(workers.echo, range(n)).result())

    def sync_latency_one(self, i: int) -> Any:
        return self.pool.schedule(workers.echo, args=(i,)).result()


# ---------------------------------------------------------------- loky


class Loky(Driver):
    name = "loky"
    how = "loop.run_in_executor(get_reusable_executor(n), ...)"
    sync_how = "ex.map(f, xs) / ex.submit(f, x).result()"

    async def _start(self, n: int) -> None:
        import loky

        self.ex = loky.get_reusable_executor(max_workers=n)
        self.loop = asyncio.get_running_loop()

    def call(self, op: str, arg: Any = None) -> Awaitable[Any]:
        return self.loop.run_in_executor(self.ex, FUNCS[op], *_args(op, arg))

    def pids(self) -> list[int]:
        return list(self.ex._processes or {})

    async def _close(self) -> None:
        await run_bounded_async(
            lambda: self.ex.shutdown(wait=True, kill_workers=True), CLOSE_TIMEOUT
        )

    def sync_throughput(self, n: int) -> None:
        list(self.ex.map(workers.echo, range(n)))

    def sync_latency_one(self, i: int) -> Any:
        return self.ex.submit(workers.echo, i).result()


ALL_DRIVERS: list[type[Driver]] = [
    Qoper8Submit,
    Qoper8Map,
    Qoper8Run,
    Qoper8Executor,
    Qoper8Sync,
    PPE,
    PPEMaxTasks,
    MPPool,
    AnyioToProcess,
    AioMP,
    Pebble,
    Loky,
]


async def warm(driver: Driver, n: int, timeout: float) -> bool:
    """Make sure all ``n`` children exist and have run a call: rounds of ``n`` concurrent
    10 ms calls until ``n`` distinct pids answered (lazy pools spawn their children here)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < n and time.monotonic() < deadline:
        res = await asyncio.wait_for(
            asyncio.gather(*(driver.call("sleep", 10) for _ in range(n))),
            max(0.1, deadline - time.monotonic()),
        )
        seen.update(res)
    await asyncio.wait_for(
        asyncio.gather(*(driver.call("echo", i) for i in range(4 * n))),
        max(0.1, deadline - time.monotonic()),
    )
    return len(seen) >= n
