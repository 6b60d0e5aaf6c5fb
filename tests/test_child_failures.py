"""The fault matrix: each fault gives its caller the right typed error, loses nothing else,
and leaves the pool serving at full size."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

import qoper8
from tests.conftest import HANDLERS, wait_until


async def _back_to_full_size(pool: qoper8.Pool) -> None:
    await wait_until(
        lambda: [c.state for c in pool.statistics().children] == ["idle"] * pool.size,
        what="the pool back at full size",
    )
    assert await pool.submit({"type": "add", "a": 20, "b": 22}) == 42


async def test_handler_exception_is_job_failed_and_the_child_lives_on(pool: qoper8.Pool) -> None:
    pids = {c.pid for c in pool.statistics().children}
    with pytest.raises(qoper8.JobFailed) as info:
        await pool.submit({"type": "raise_error", "message": "it broke"})
    err = info.value
    assert err.remote_type == "ValueError"
    assert err.remote_message == "it broke"
    assert "raise ValueError(message)" in err.remote_traceback
    assert isinstance(err.__cause__, qoper8.errors.RemoteTraceback)
    assert isinstance(err.job_id, int)
    assert {c.pid for c in pool.statistics().children} == pids
    await _back_to_full_size(pool)


async def test_validation_error_raised_inside_a_handler_is_its_failure(pool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.JobFailed) as info:
        await pool.submit({"type": "validation_inside"})
    assert info.value.remote_type == "ValidationError"


@pytest.mark.parametrize(
    ("action", "exitcode", "signum"),
    [
        ({"type": "exit_hard", "code": 3}, 3, None),
        ({"type": "kill_self"}, None, signal.SIGKILL),
    ],
    ids=["os._exit", "SIGKILL-itself"],
)
async def test_child_death_is_child_died_for_that_job_only(
    pool: qoper8.Pool, action: dict[str, object], exitcode: int | None, signum: int | None
) -> None:
    others = [asyncio.create_task(pool.submit({"type": "echo", "value": i})) for i in range(50)]
    with pytest.raises(qoper8.ChildDied) as info:
        await pool.submit(action)
    err = info.value
    assert err.exitcode == exitcode
    assert err.signal == signum
    assert err.pid is not None
    assert str(err.pid) in str(err)
    assert await asyncio.gather(*others) == list(range(50))
    await _back_to_full_size(pool)
    assert err.pid not in {c.pid for c in pool.statistics().children}
    assert pool.statistics().died == 1


async def test_child_killed_from_outside_mid_job(pool: qoper8.Pool, fifo: str) -> None:
    task = asyncio.create_task(pool.submit({"type": "block", "fifo": fifo}))
    await wait_until(lambda: pool.statistics().running == 1)
    busy = next(c for c in pool.statistics().children if c.state == "busy")
    assert busy.pid is not None
    os.kill(busy.pid, signal.SIGKILL)
    with pytest.raises(qoper8.ChildDied) as info:
        await task
    assert info.value.signal == signal.SIGKILL
    assert "SIGKILL" in str(info.value)
    await _back_to_full_size(pool)


async def test_idle_child_killed_from_outside_is_replaced(pool: qoper8.Pool) -> None:
    victim = pool.statistics().children[0].pid
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    await wait_until(lambda: victim not in {c.pid for c in pool.statistics().children})
    await _back_to_full_size(pool)


async def test_hung_job_times_out_and_its_child_is_killed_and_replaced(pool: qoper8.Pool) -> None:
    with pytest.raises(qoper8.JobTimeout) as info:
        await pool.submit({"type": "hang"}, timeout=0.2)
    assert "killed" in str(info.value)
    await _back_to_full_size(pool)
    stats = pool.statistics()
    assert stats.timed_out == 1
    assert stats.died == 0


async def test_pool_default_timeout_applies() -> None:
    async with qoper8.Pool(HANDLERS, children=1, timeout=0.2) as pool:
        with pytest.raises(qoper8.JobTimeout):
            await pool.submit({"type": "hang"})
        assert await pool.submit({"type": "echo", "value": 1}, timeout=None) == 1


async def test_queued_job_times_out_without_killing_anyone(
    pool: qoper8.Pool, tmp_path: object
) -> None:
    from pathlib import Path

    from tests.conftest import new_fifo, release

    assert isinstance(tmp_path, Path)
    gates = [new_fifo(tmp_path, "a"), new_fifo(tmp_path, "b")]
    blocked = [asyncio.create_task(pool.submit({"type": "block", "fifo": g})) for g in gates]
    await wait_until(lambda: pool.statistics().running == 2)
    pids = {c.pid for c in pool.statistics().children}
    with pytest.raises(qoper8.JobTimeout) as info:
        await pool.submit({"type": "echo", "value": 1}, timeout=0.1)
    assert "queue" in str(info.value)
    for g in gates:
        await release(g)
    assert await asyncio.gather(*blocked) == ["go", "go"]
    assert {c.pid for c in pool.statistics().children} == pids


async def test_unencodable_result_is_job_failed_and_the_child_lives_on(pool: qoper8.Pool) -> None:
    pids = {c.pid for c in pool.statistics().children}
    with pytest.raises(qoper8.JobFailed) as info:
        await pool.submit({"type": "bad_result"})
    assert "not JSON" in info.value.remote_message
    assert {c.pid for c in pool.statistics().children} == pids


async def test_twenty_mib_result_arrives_whole(pool: qoper8.Pool) -> None:
    result = await pool.submit({"type": "big_result", "mib": 20})
    assert isinstance(result, str)
    assert len(result) == 20 * 1024 * 1024
    assert await pool.submit({"type": "echo", "value": "after"}) == "after"


async def test_result_over_the_limit_is_job_failed() -> None:
    async with qoper8.Pool(HANDLERS, children=1, max_message_bytes=1024 * 1024) as pool:
        with pytest.raises(qoper8.JobFailed) as info:
            await pool.submit({"type": "big_result", "mib": 2})
        assert "max_message_bytes" in info.value.remote_message
        assert await pool.submit({"type": "echo", "value": 1}) == 1


async def test_a_child_sending_garbage_is_killed_and_replaced(pool: qoper8.Pool) -> None:
    """A corrupt channel (here: a frame header announcing a giant payload, written by the
    handler onto its own channel) fails the job and replaces the child instead of
    confusing the next job's answer."""
    with pytest.raises(qoper8.ChildDied) as info:
        await pool.submit({"type": "corrupt_channel"})
    assert "protocol violation" in str(info.value)
    await _back_to_full_size(pool)
