"""Cancellation, backpressure and closing: a cancelled queued job never runs, a running one
runs on (or its child is killed when asked), a full queue pushes back, a closed pool refuses."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import qoper8
from tests.conftest import HANDLERS, new_fifo, release, wait_until

if TYPE_CHECKING:
    from pathlib import Path


async def test_cancelled_queued_job_never_runs(pool: qoper8.Pool, tmp_path: Path) -> None:
    gates = [new_fifo(tmp_path, "a"), new_fifo(tmp_path, "b")]
    blocked = [asyncio.create_task(pool.submit({"type": "block", "fifo": g})) for g in gates]
    await wait_until(lambda: pool.statistics().running == 2)
    victim = asyncio.create_task(pool.submit({"type": "exit_hard"}))  # would kill a child
    survivor = asyncio.create_task(pool.submit({"type": "echo", "value": "ran"}))
    await wait_until(lambda: pool.statistics().queue_length == 2)
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim
    assert pool.statistics().queue_length == 1
    for g in gates:
        await release(g)
    assert await survivor == "ran"
    await asyncio.gather(*blocked)
    stats = pool.statistics()
    assert stats.died == 0, "the cancelled job must never have reached a child"
    assert stats.cancelled == 1
    assert sum(c.jobs_done for c in stats.children) == 3


async def test_cancelled_running_job_runs_to_its_end_and_its_result_is_dropped(
    pool: qoper8.Pool, fifo: str
) -> None:
    task = asyncio.create_task(pool.submit({"type": "block", "fifo": fifo}))
    await wait_until(lambda: pool.statistics().running == 1)
    busy_pid = next(c.pid for c in pool.statistics().children if c.state == "busy")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.statistics().running == 1, "the child is still running the job"
    await release(fifo)
    await wait_until(lambda: pool.statistics().running == 0)
    assert busy_pid in {c.pid for c in pool.statistics().children}
    assert await pool.submit({"type": "echo", "value": 1}) == 1


async def test_kill_on_cancel_kills_and_replaces_the_child(pool: qoper8.Pool) -> None:
    task = asyncio.create_task(pool.submit({"type": "hang"}, kill_on_cancel=True))
    await wait_until(lambda: pool.statistics().running == 1)
    busy_pid = next(c.pid for c in pool.statistics().children if c.state == "busy")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: busy_pid not in {c.pid for c in pool.statistics().children})
    await wait_until(lambda: [c.state for c in pool.statistics().children] == ["idle", "idle"])
    assert pool.statistics().died == 0


async def test_wait_for_timeout_around_submit_cancels_cleanly(pool: qoper8.Pool) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pool.submit({"type": "hang"}, kill_on_cancel=True), 0.2)
    await wait_until(lambda: [c.state for c in pool.statistics().children] == ["idle", "idle"])


async def test_full_queue_raises_queue_full_when_asked_not_to_wait(tmp_path: Path) -> None:
    fifo = new_fifo(tmp_path, "gate")
    async with qoper8.Pool(HANDLERS, children=1, max_queue=2) as pool:
        running = asyncio.create_task(pool.submit({"type": "block", "fifo": fifo}))
        await wait_until(lambda: pool.statistics().running == 1)
        queued = [asyncio.create_task(pool.submit({"type": "echo", "value": i})) for i in range(2)]
        await wait_until(lambda: pool.statistics().queue_length == 2)
        with pytest.raises(qoper8.QueueFull):
            await pool.submit({"type": "echo", "value": 9}, wait_for_room=False)
        waiting = asyncio.create_task(pool.submit({"type": "echo", "value": 3}))
        await asyncio.sleep(0)
        assert not waiting.done()
        await release(fifo)
        assert await running == "go"
        assert await asyncio.gather(*queued, waiting) == [0, 1, 3]
        assert pool.statistics().rejected == 1


async def test_waiting_for_room_honours_the_deadline(tmp_path: Path) -> None:
    fifo = new_fifo(tmp_path, "gate")
    async with qoper8.Pool(HANDLERS, children=1, max_queue=0) as pool:
        running = asyncio.create_task(pool.submit({"type": "block", "fifo": fifo}))
        await wait_until(lambda: pool.statistics().running == 1)
        with pytest.raises(qoper8.JobTimeout):
            await pool.submit({"type": "echo", "value": 1}, timeout=0.1)
        await release(fifo)
        await running


async def test_closed_pool_refuses_new_jobs() -> None:
    pool = qoper8.Pool(HANDLERS, children=1)
    with pytest.raises(qoper8.PoolClosed):
        await pool.submit({"type": "echo"})
    async with pool:
        assert await pool.submit({"type": "echo", "value": 1}) == 1
    with pytest.raises(qoper8.PoolClosed):
        await pool.submit({"type": "echo", "value": 1})
    await pool.aclose()  # twice is fine


async def test_close_lets_queued_and_running_jobs_finish(tmp_path: Path) -> None:
    fifo = new_fifo(tmp_path, "gate")
    pool = qoper8.Pool(HANDLERS, children=1)
    await pool.start()
    running = asyncio.create_task(pool.submit({"type": "block", "fifo": fifo}))
    await wait_until(lambda: pool.statistics().running == 1)
    queued = asyncio.create_task(pool.submit({"type": "echo", "value": "queued"}))
    await wait_until(lambda: pool.statistics().queue_length == 1)
    closing = asyncio.create_task(pool.aclose())
    await asyncio.sleep(0)
    with pytest.raises(qoper8.PoolClosed):
        await pool.submit({"type": "echo", "value": 1})
    await release(fifo)
    await closing
    assert await running == "go"
    assert await queued == "queued"


async def test_close_past_its_grace_fails_what_is_left_with_pool_closed() -> None:
    pool = qoper8.Pool(HANDLERS, children=1)
    await pool.start()
    running = asyncio.create_task(pool.submit({"type": "hang"}))
    queued = asyncio.create_task(pool.submit({"type": "echo", "value": 1}))
    await wait_until(lambda: pool.statistics().queue_length == 1)
    await pool.aclose(grace=0.1)
    with pytest.raises(qoper8.PoolClosed):
        await running
    with pytest.raises(qoper8.PoolClosed):
        await queued


async def test_a_second_close_with_a_shorter_grace_cuts_the_drain_short() -> None:
    pool = qoper8.Pool(HANDLERS, children=1)
    await pool.start()
    hung = asyncio.create_task(pool.submit({"type": "hang"}))
    await wait_until(lambda: pool.statistics().running == 1)
    first = asyncio.create_task(pool.aclose(grace=60))
    await wait_until(lambda: not pool.is_open)
    await asyncio.wait_for(pool.aclose(grace=0.05), 10)
    await asyncio.wait_for(first, 10)
    with pytest.raises(qoper8.PoolClosed):
        await hung


async def test_cancelling_close_kills_the_children_and_closes_the_pool() -> None:
    from tests.conftest import pid_alive

    pool = qoper8.Pool(HANDLERS, children=2)
    await pool.start()
    pids = [c.pid for c in pool.statistics().children]
    hung = asyncio.create_task(pool.submit({"type": "hang"}))
    await wait_until(lambda: pool.statistics().running == 1)
    closing = asyncio.create_task(pool.aclose(grace=60))
    await wait_until(lambda: not pool.is_open)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await wait_until(lambda: not any(pid is not None and pid_alive(pid) for pid in pids))
    await asyncio.wait_for(pool.aclose(), 5)  # already closed: returns at once
    hung.cancel()


async def test_cancelling_a_reload_kills_the_children_it_started(pool: qoper8.Pool) -> None:
    stuck = qoper8.PoolConfig(worker="tests.bad_workers.hangs_at_start:worker", children=2)
    reload = asyncio.create_task(pool.reload(stuck))
    await wait_until(
        lambda: (
            sum(c.generation == 2 and c.pid is not None for c in pool.statistics().children) == 2
        )
    )
    reload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reload
    await wait_until(lambda: all(c.generation == 1 for c in pool.statistics().children))
    assert pool.generation == 1
    assert await pool.submit({"type": "echo", "value": "old code serves"}) == "old code serves"
