"""``pool.executor()`` keeps the ``concurrent.futures.Executor`` contract (issue 9, item 13),
for the async pool (driven from another thread, as code written for executors is) and for
``qoper8.sync.Pool``: shutdown waits, cancel_futures cancels, running() and cancel() tell
the truth, and result() raises the function's own exception."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from typing import TYPE_CHECKING

import pytest

import qoper8
import qoper8.sync
from qoper8.errors import RemoteTraceback
from tests import handlers
from tests.conftest import HANDLERS, new_fifo

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def _poll(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait (in a plain thread) for something nothing can notify us about."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def _release(fifo: str) -> None:
    with open(fifo, "w") as f:
        f.write("go\n")


def _block_both(
    ex: concurrent.futures.Executor, tmp: Path
) -> tuple[list[str], list[concurrent.futures.Future[str]]]:
    gates = [new_fifo(tmp, f"gate{i}") for i in range(2)]
    running = [ex.submit(handlers.wait_on, g) for g in gates]
    _poll(lambda: all(f.running() for f in running), "both children busy")
    return gates, running


def check_shutdown_wait_waits_for_pending_calls(ex: concurrent.futures.Executor, tmp: Path) -> None:
    gates, running = _block_both(ex, tmp)
    queued = ex.submit(handlers.square, 6)
    seen: dict[str, bool] = {}

    def shut() -> None:
        ex.shutdown(wait=True)
        seen["done"] = all(f.done() for f in running) and queued.done()

    closer = threading.Thread(target=shut)
    closer.start()
    closer.join(0.3)  # a broken shutdown returns at once, before anything was released
    for gate in gates:
        _release(gate)
    closer.join(10)
    assert seen == {"done": True}
    assert queued.result() == 36
    with pytest.raises(RuntimeError):
        ex.submit(handlers.square, 1)


def check_with_block_waits_for_pending_calls(ex: concurrent.futures.Executor, tmp: Path) -> None:
    gate = new_fifo(tmp, "gate")
    releaser = threading.Timer(0.3, _release, (gate,))
    with ex:
        future = ex.submit(handlers.wait_on, gate)
        releaser.start()
    assert future.done()
    assert future.result() == "go"


def check_cancel_futures_cancels_queued_calls(ex: concurrent.futures.Executor, tmp: Path) -> None:
    gates, running = _block_both(ex, tmp)
    traces = [str(tmp / f"ran{i}") for i in range(6)]
    queued = [ex.submit(handlers.touch, t) for t in traces]
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    assert not any(f.cancelled() for f in running)
    for gate in gates:
        _release(gate)
    assert [f.result(10) for f in running] == ["go", "go"]
    done, _ = concurrent.futures.wait(queued, timeout=10)
    assert len(done) == 6
    assert not any(os.path.exists(t) for t in traces), "a cancelled call ran"


def check_running_call_reports_running_and_cannot_be_cancelled(
    ex: concurrent.futures.Executor, tmp: Path
) -> None:
    gates, running = _block_both(ex, tmp)
    trace = str(tmp / "queued-ran")
    queued = ex.submit(handlers.touch, trace)
    assert not queued.running()
    assert queued.cancel()  # queued: can be cancelled, and then never runs
    assert running[0].running()
    assert not running[0].cancel()  # running: cannot be
    for gate in gates:
        _release(gate)
    assert [f.result(10) for f in running] == ["go", "go"]
    assert ex.submit(handlers.square, 3).result(10) == 9  # the pool serves on
    assert not os.path.exists(trace)
    assert list(concurrent.futures.as_completed([queued], timeout=10)) == [queued]


def check_result_raises_the_functions_own_exception(
    ex: concurrent.futures.Executor, tmp: Path
) -> None:
    with pytest.raises(ZeroDivisionError) as info:
        ex.submit(handlers.divide, 1.0, 0.0).result(10)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "divide" in info.value.__cause__.tb
    with pytest.raises(qoper8.JobFailed) as failed:  # cannot travel back: JobFailed says why
        ex.submit(handlers.raise_unpicklable).result(10)
    assert failed.value.remote_type == "Unpicklable"
    assert list(ex.map(handlers.square, range(8), timeout=10)) == [i * i for i in range(8)]


CHECKS = [
    check_shutdown_wait_waits_for_pending_calls,
    check_with_block_waits_for_pending_calls,
    check_cancel_futures_cancels_queued_calls,
    check_running_call_reports_running_and_cannot_be_cancelled,
    check_result_raises_the_functions_own_exception,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_async_pool_executor_keeps_the_contract(
    check: Callable[[concurrent.futures.Executor, Path], None], tmp_path: Path
) -> None:
    async with qoper8.Pool(HANDLERS, children=2) as pool:
        await asyncio.to_thread(check, pool.executor(), tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_sync_pool_executor_keeps_the_contract(
    check: Callable[[concurrent.futures.Executor, Path], None], tmp_path: Path
) -> None:
    with qoper8.sync.Pool(HANDLERS, children=2) as pool:
        check(pool.executor(), tmp_path)


async def test_shutdown_wait_on_the_pools_own_loop_refuses_rather_than_deadlock(
    tmp_path: Path,
) -> None:
    async with qoper8.Pool(HANDLERS, children=1) as pool:
        ex = pool.executor()
        gate = new_fifo(tmp_path, "gate")
        future = ex.submit(handlers.wait_on, gate)
        with pytest.raises(RuntimeError, match="would wait forever"):
            ex.shutdown(wait=True)
        await asyncio.to_thread(_release, gate)
        assert await asyncio.wrap_future(future) == "go"
        ex.shutdown(wait=True)  # nothing pending: returns


async def test_executor_calls_pending_when_the_pool_closes_get_pool_closed(
    tmp_path: Path,
) -> None:
    async with qoper8.Pool(HANDLERS, children=1, shutdown_timeout=0) as pool:
        ex = pool.executor()
        gate = new_fifo(tmp_path, "gate")
        running = ex.submit(handlers.wait_on, gate)
        queued = ex.submit(handlers.square, 2)
        await asyncio.to_thread(_poll, running.running, "the call to run")
    with pytest.raises(qoper8.PoolClosed):
        await asyncio.wrap_future(running)
    with pytest.raises(qoper8.PoolClosed):
        await asyncio.wrap_future(queued)
    with pytest.raises(qoper8.PoolClosed):
        pool.executor()
