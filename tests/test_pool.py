"""The local pool with real children: dispatch, results, one job per child, faces, stats."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

import qoper8
from tests import handlers
from tests.conftest import HANDLERS, new_fifo, release

if TYPE_CHECKING:
    from pathlib import Path


async def test_submit_returns_the_handler_result(pool: qoper8.Pool) -> None:
    assert await pool.submit({"type": "echo", "value": {"a": [1, 2.5, None, "x"]}}) == {
        "a": [1, 2.5, None, "x"]
    }
    assert await pool.submit({"type": "add", "a": 2, "b": 3}) == 5


async def test_params_are_validated_and_coerced_from_annotations(pool: qoper8.Pool) -> None:
    assert await pool.submit({"type": "add", "a": "2", "b": 3}) == 5


async def test_pydantic_model_result_arrives_as_json(pool: qoper8.Pool) -> None:
    assert await pool.submit({"type": "point", "x": 1, "y": 2}) == {"x": 1, "y": 2}


class AddAction(BaseModel):
    type: str = "add"
    a: int
    b: int


async def test_action_may_be_a_pydantic_model(pool: qoper8.Pool) -> None:
    assert await pool.submit(AddAction(a=4, b=5)) == 9


async def test_start_hook_runs_once_per_child_before_the_first_action(pool: qoper8.Pool) -> None:
    results = await asyncio.gather(*(pool.submit({"type": "start_count"}) for _ in range(20)))
    assert set(results) == {1}


async def test_children_are_prestarted_and_persistent(pool: qoper8.Pool) -> None:
    stats = pool.statistics()
    assert [c.state for c in stats.children] == ["idle", "idle"]
    pids = {c.pid for c in stats.children}
    seen = set(await asyncio.gather(*(pool.submit({"type": "pid"}) for _ in range(50))))
    assert seen <= pids
    assert {c.pid for c in pool.statistics().children} == pids


async def test_an_idle_pool_reuses_the_child_that_went_idle_last(pool: qoper8.Pool) -> None:
    """Sequential jobs stay on one warm child (its caches, its CPU) instead of waking the
    children in turn; the other child is used as soon as two jobs overlap."""
    alone = [await pool.submit({"type": "pid"}) for _ in range(20)]
    assert len(set(alone)) == 1
    together = await asyncio.gather(*(pool.submit({"type": "pid"}) for _ in range(2)))
    assert set(together) == {c.pid for c in pool.statistics().children}


async def test_a_child_never_holds_a_second_job(pool: qoper8.Pool, tmp_path: Path) -> None:
    """With both children blocked, further jobs wait in the master's queue, not in a child,
    and go to whichever child frees up first."""
    gates = [new_fifo(tmp_path, "one"), new_fifo(tmp_path, "two")]
    blocked = [asyncio.create_task(pool.submit({"type": "block", "fifo": g})) for g in gates]
    await _wait_stats(pool, lambda s: s.running == 2)
    queued = [asyncio.create_task(pool.submit({"type": "echo", "value": i})) for i in range(5)]
    await _wait_stats(pool, lambda s: s.queue_length == 5)
    assert all(c.state == "busy" for c in pool.statistics().children)
    await release(gates[0], "first")
    assert await asyncio.gather(*queued) == [0, 1, 2, 3, 4]
    assert pool.statistics().running == 1
    await release(gates[1], "second")
    assert sorted(str(r) for r in await asyncio.gather(*blocked)) == ["first", "second"]


async def test_a_slow_job_does_not_delay_queued_ones_while_another_child_is_idle(
    pool: qoper8.Pool, fifo: str
) -> None:
    slow = asyncio.create_task(pool.submit({"type": "block", "fifo": fifo}))
    await _wait_stats(pool, lambda s: s.running == 1)
    fast = await asyncio.gather(*(pool.submit({"type": "echo", "value": i}) for i in range(30)))
    assert fast == list(range(30))
    assert not slow.done()
    await release(fifo)
    assert await slow == "go"


async def test_run_calls_a_module_level_function(pool: qoper8.Pool) -> None:
    assert await pool.run(handlers.square, 7) == 49


async def test_run_failure_carries_the_original_exception(pool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.JobFailed) as info:
        await pool.run(handlers.divide, 1, 0)
    assert info.value.remote_type == "ZeroDivisionError"
    assert isinstance(info.value.remote_exception, ZeroDivisionError)


async def test_run_failure_with_unpicklable_exception_still_reports_it(pool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.JobFailed) as info:
        await pool.run(handlers.raise_unpicklable)
    assert info.value.remote_type == "Unpicklable"
    assert info.value.remote_exception is None
    assert "cannot travel" in info.value.remote_traceback


async def test_run_refuses_unpicklable_calls(pool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.InvalidAction):
        await pool.run(lambda: 1)


async def test_executor_works_with_run_in_executor(pool: qoper8.Pool) -> None:
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(
        *(loop.run_in_executor(pool.executor(), handlers.square, i) for i in range(10))
    )
    assert results == [i * i for i in range(10)]


async def test_run_in_executor_queues_the_call_at_once_on_the_loop_thread(
    pool: qoper8.Pool,
) -> None:
    """On the loop's thread the call is queued (here: sent to an idle child) inside
    ``submit``, with no task and no thread-safe hop onto the loop first."""
    future = pool.executor().submit(handlers.square, 3)
    assert pool.statistics().submitted == 1
    assert future.running()
    assert await asyncio.wrap_future(future) == 9


async def test_cancelling_run_in_executor_removes_the_queued_call(
    pool: qoper8.Pool, tmp_path: Path
) -> None:
    gates = [new_fifo(tmp_path, "one"), new_fifo(tmp_path, "two")]
    blocked = [asyncio.create_task(pool.submit({"type": "block", "fifo": g})) for g in gates]
    await _wait_stats(pool, lambda s: s.running == 2)
    loop = asyncio.get_running_loop()
    queued = loop.run_in_executor(pool.executor(), handlers.square, 4)
    await _wait_stats(pool, lambda s: s.queue_length == 1)
    queued.cancel()
    stats = await _wait_stats(pool, lambda s: s.queue_length == 0)
    assert stats.cancelled == 1
    for gate in gates:
        await release(gate)
    assert [str(r) for r in await asyncio.gather(*blocked)] == ["go", "go"]
    assert await loop.run_in_executor(pool.executor(), handlers.square, 5) == 25
    assert pool.statistics().completed == 3  # the two blocked jobs and square(5), not square(4)


async def test_run_in_executor_raises_the_remote_exception_itself(pool: qoper8.Pool) -> None:
    """Code written for executors catches the function's own exception; the child's
    traceback is its cause, as with ProcessPoolExecutor."""
    loop = asyncio.get_running_loop()
    with pytest.raises(ZeroDivisionError) as info:
        await loop.run_in_executor(pool.executor(), handlers.divide, 1.0, 0.0)
    cause = info.value.__cause__
    assert isinstance(cause, qoper8.errors.RemoteTraceback)
    assert "divide" in cause.tb
    # pool.run keeps the action face's JobFailed, with the original attached.
    with pytest.raises(qoper8.JobFailed) as failed:
        await pool.run(handlers.divide, 1.0, 0.0)
    assert isinstance(failed.value.remote_exception, ZeroDivisionError)


async def test_executor_from_another_thread(pool: qoper8.Pool) -> None:
    executor = pool.executor()
    future = await asyncio.to_thread(executor.submit, handlers.square, 12)
    assert await asyncio.wrap_future(future) == 144


async def test_statistics_count_outcomes_and_measure_times(pool: qoper8.Pool) -> None:
    await asyncio.gather(*(pool.submit({"type": "echo", "value": i}) for i in range(10)))
    with pytest.raises(qoper8.JobFailed):
        await pool.submit({"type": "raise_error"})
    with pytest.raises(qoper8.InvalidAction):
        await pool.submit({"type": "add", "a": "x", "b": 1})
    stats = pool.statistics()
    assert stats.submitted == 12
    assert stats.completed == 10
    assert stats.failed == 1
    assert stats.invalid == 1
    assert stats.queue_length == 0
    assert stats.run_time.count == 12
    assert stats.run_time.p50 is not None
    assert stats.run_time.p50 > 0
    assert stats.queue_wait_histogram.count == 12
    assert sum(c.jobs_done for c in stats.children) == 12
    assert all(c.memory_rss and c.memory_rss > 1_000_000 for c in stats.children)
    assert isinstance(stats.to_dict()["children"], list)


async def test_statistics_show_the_age_of_a_running_job(pool: qoper8.Pool, fifo: str) -> None:
    task = asyncio.create_task(pool.submit({"type": "block", "fifo": fifo}))
    await _wait_stats(pool, lambda s: s.running == 1)
    busy = [c for c in pool.statistics().children if c.state == "busy"]
    assert len(busy) == 1
    assert busy[0].current_job_age is not None
    await release(fifo)
    await task


async def test_handlers_are_reported_by_the_children(pool: qoper8.Pool) -> None:
    info = pool.handlers["add"]
    assert info.import_path == "tests.handlers.add"
    assert info.params == ("a", "b")


async def test_max_jobs_per_child_recycles_without_losing_jobs() -> None:
    async with qoper8.Pool(HANDLERS, children=2, max_jobs_per_child=5, max_jobs_jitter=0) as pool:
        pids = await asyncio.gather(*(pool.submit({"type": "pid"}) for _ in range(30)))
        assert len(pids) == 30
        assert len(set(pids)) >= 30 // 5
        for pid in set(pids):
            assert pids.count(pid) <= 5
        stats = pool.statistics()
        assert stats.recycled >= 5
        assert stats.completed == 30


async def test_max_memory_per_child_recycles_a_child_that_grew() -> None:
    async with qoper8.Pool(HANDLERS, children=1, max_memory_per_child=200 * 1024 * 1024) as pool:
        first = await pool.submit({"type": "pid"})
        assert await pool.submit({"type": "pid"}) == first
        await pool.submit({"type": "allocate", "mib": 300})
        second = await pool.submit({"type": "pid"})
        assert second != first
        assert pool.statistics().recycled == 1


async def test_stop_hook_runs_when_the_pool_closes(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_QOPER8_STOP_DIR", str(tmp_path))
    async with qoper8.Pool("tests.bad_workers.stop_hook:worker", children=2) as pool:
        pids = {c.pid for c in pool.statistics().children}
    assert {f"stopped-{pid}" for pid in pids} == set(os.listdir(tmp_path))


async def test_resize_grows_and_shrinks(pool: qoper8.Pool) -> None:
    await pool.resize(4)
    assert [c.state for c in pool.statistics().children] == ["idle"] * 4
    await pool.resize(1)
    await _wait_stats(pool, lambda s: len(s.children) == 1)
    assert await pool.submit({"type": "add", "a": 1, "b": 1}) == 2


async def test_reload_replaces_every_child_with_no_failed_job(pool: qoper8.Pool) -> None:
    before = {c.pid for c in pool.statistics().children}
    load = [asyncio.create_task(pool.submit({"type": "echo", "value": i})) for i in range(200)]
    await pool.reload()
    assert await asyncio.gather(*load) == list(range(200))
    await _wait_stats(pool, lambda s: all(c.generation == 2 for c in s.children))
    stats = pool.statistics()
    assert len(stats.children) == 2
    assert not before & {c.pid for c in stats.children}
    assert stats.generation == 2


async def test_reload_with_broken_code_keeps_the_old_generation(pool: qoper8.Pool) -> None:
    broken = qoper8.PoolConfig(worker="tests.bad_workers.start_fails:worker", children=2)
    with pytest.raises(qoper8.StartFailed):
        await pool.reload(broken)
    assert pool.generation == 1
    assert pool.config.worker == HANDLERS
    assert await pool.submit({"type": "add", "a": 1, "b": 2}) == 3
    assert [c.generation for c in pool.statistics().children] == [1, 1]


async def test_reload_with_new_settings_applies_them_to_the_new_generation(
    pool: qoper8.Pool,
) -> None:
    await pool.reload(qoper8.PoolConfig(worker=HANDLERS, children=3, timeout=0.2))
    await _wait_stats(pool, lambda s: [c.generation for c in s.children] == [2, 2, 2])
    with pytest.raises(qoper8.JobTimeout):
        await pool.submit({"type": "hang"})
    assert pool.size == 3


async def _wait_stats(
    pool: qoper8.Pool, predicate: object, timeout: float = 10.0
) -> qoper8.PoolStatistics:
    from tests.conftest import wait_until

    assert callable(predicate)
    await wait_until(lambda: bool(predicate(pool.statistics())), timeout=timeout, what="pool state")
    return pool.statistics()
