"""``Pool.pause()``: the pool-level target of none that the daemon's WINCH needs (the pool
otherwise keeps at least one child): every child retires gracefully, jobs wait, and
``resize()`` brings children back."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import qoper8
from tests.conftest import HANDLERS, new_fifo, release, wait_until

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(30)


async def test_pause_retires_every_child_gracefully_and_resize_brings_them_back(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(20), qoper8.Pool(HANDLERS, children=2) as pool:
        fifo = new_fifo(tmp_path, "gate")
        running = asyncio.create_task(pool.submit({"type": "block", "fifo": fifo}))
        await wait_until(lambda: pool.statistics().running == 1, what="a running job")

        await pool.pause()
        assert pool.size == 0
        assert pool.statistics().target_size == 0
        # The idle child retires now; the busy one finishes its job first (graceful).
        await wait_until(lambda: len(pool.statistics().children) == 1, what="idle child gone")
        await release(fifo, "done")
        assert await running == "done"
        await wait_until(lambda: not pool.statistics().children, what="every child gone")

        # A job submitted while paused waits in the queue: no child takes it.
        waiting = asyncio.create_task(pool.submit({"type": "add", "a": 1, "b": 2}))
        await wait_until(lambda: pool.statistics().queue_length == 1, what="a queued job")
        assert not pool.has_capacity()

        await pool.resize(2)
        assert await waiting == 3
        stats = pool.statistics()
        assert [c.state for c in stats.children] == ["idle", "idle"]
        assert stats.target_size == 2


async def test_pause_on_a_closed_pool_is_pool_closed() -> None:
    pool = qoper8.Pool(HANDLERS, children=1)
    async with pool:
        pass
    with pytest.raises(qoper8.PoolClosed):
        await pool.pause()
