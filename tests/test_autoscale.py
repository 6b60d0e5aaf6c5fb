"""Autoscaling (issue 13 item 2): the master starts children while jobs wait, up to the most,
at most a few at once, and retires the child idle longest after idle_timeout, one at a time,
down to the least."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

import pytest

import qoper8
from qoper8._config_sources import load_config
from qoper8._daemon.status import health_body
from tests.conftest import HANDLERS, wait_until

if TYPE_CHECKING:
    from pathlib import Path

ACTORS = "tests.actor_handlers:worker"


def _live(pool: qoper8.Pool) -> list[qoper8.ChildStatistics]:
    live = ("starting", "idle", "busy")
    return [c for c in pool.statistics().children if c.state in live and not c.actors]


async def test_a_pool_of_zero_starts_a_child_for_its_first_job() -> None:
    async with qoper8.Pool(HANDLERS, children=(0, 2), idle_timeout=0.3) as pool:
        # One child starts with the pool (the worker module checked, its handlers known),
        # then retires when idle.
        assert "echo" in pool.handlers
        await wait_until(lambda: not _live(pool), what="the first child retired, down to 0")
        assert pool.has_capacity()  # a job taken now gets a child soon
        assert await pool.submit({"type": "echo", "value": 1}, timeout=30) == 1
        assert len(_live(pool)) == 1
        await wait_until(lambda: not _live(pool), what="the idle child retired, back to 0")
        assert await pool.submit({"type": "echo", "value": 2}, timeout=30) == 2


async def test_a_burst_grows_the_pool_within_its_bounds_then_it_shrinks_one_at_a_time() -> None:
    async with qoper8.Pool(HANDLERS, children=(1, 4), idle_timeout=0.5, max_starting=2) as pool:
        most_live = most_starting = 0
        sizes: list[int] = []
        stop = asyncio.Event()

        async def watch() -> None:
            nonlocal most_live, most_starting
            while not stop.is_set():
                live = _live(pool)
                most_live = max(most_live, len(live))
                most_starting = max(most_starting, sum(c.state == "starting" for c in live))
                if not sizes or sizes[-1] != len(live):
                    sizes.append(len(live))
                await asyncio.sleep(0.002)  # sampling what nothing notifies, not a sync

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(
            *(pool.submit({"type": "nap", "value": i, "ms": 40}, timeout=60) for i in range(40))
        )
        assert results == list(range(40))
        assert most_live == 4  # it grew to the most, never past it
        assert most_starting <= 2
        last = await pool.submit({"type": "pid"})
        await wait_until(lambda: len(_live(pool)) == 1, timeout=20, what="back to the least")
        stop.set()
        await watcher
        # It shrank one child at a time, never below the least, and kept the warm one.
        shrinking = sizes[sizes.index(4) :]
        assert all(b == a - 1 for a, b in itertools.pairwise(shrinking))
        assert min(sizes[1:]) >= 1
        assert _live(pool)[0].pid == last


def test_children_take_a_range() -> None:
    assert qoper8.PoolConfig(worker=HANDLERS, children=(0, 4)).max_children == 4
    config = qoper8.PoolConfig.model_validate({"worker": HANDLERS, "children": "2:8"})
    assert (config.children, config.max_children) == (2, 8)
    with pytest.raises(qoper8.ConfigError, match="more than max_children"):
        qoper8.Pool(HANDLERS, children=(5, 2))
    with pytest.raises(qoper8.ConfigError, match="at least 1"):
        qoper8.Pool(HANDLERS, children=0)


async def test_resize_takes_a_range_or_fixes_the_size_and_a_pause_does_not_grow() -> None:
    async with qoper8.Pool(HANDLERS, children=2, idle_timeout=0.3) as pool:
        await pool.resize((0, 3))  # a fixed pool starts autoscaling, at its current size
        assert (pool.config.children, pool.config.max_children) == (0, 3)
        assert len(_live(pool)) == 2
        await wait_until(lambda: not _live(pool), timeout=20, what="idle children retired")
        await pool.resize(2)  # a number fixes the size again: nothing retires when idle
        assert pool.config.max_children is None
        assert len(_live(pool)) == 2
        await pool.pause()
        await wait_until(lambda: not _live(pool), timeout=20, what="paused: none left")
        job = asyncio.ensure_future(pool.submit({"type": "echo", "value": 7}, timeout=30))
        await wait_until(lambda: pool.statistics().queue_length == 1, what="the job queued")
        assert _live(pool) == []  # a waiting job does not grow a paused pool
        await pool.resize((1, 2))  # ends the pause
        assert await job == 7
        with pytest.raises(qoper8.ConfigError, match="range of children"):
            await pool.resize((3, 1))


def test_the_daemon_takes_a_range_from_a_flag_a_variable_or_the_file(tmp_path: Path) -> None:
    config = load_config(overrides={"worker": HANDLERS, "children": "1:8", "idle_timeout": "5"})
    assert (config.pool.children, config.pool.max_children, config.pool.idle_timeout) == (1, 8, 5)
    config = load_config(environ={"QOPER8_WORKER": HANDLERS, "QOPER8_CHILDREN": "0:3"})
    assert (config.pool.children, config.pool.max_children) == (0, 3)
    path = tmp_path / "qoper8.toml"
    path.write_text(f'worker = "{HANDLERS}"\nchildren = [2, 4]\n')
    assert load_config(path, environ={}).pool.max_children == 4


async def test_an_idle_child_that_holds_an_actor_never_retires() -> None:
    async with qoper8.Pool(ACTORS, children=(0, 2), idle_timeout=0.2) as pool:
        counter = await pool.actors.create("counter", "c", args={"start": 1})
        where = await counter.call("where")
        holder = next(c for c in pool.statistics().children if c.pid == where)
        assert holder.actors == ("c",)
        assert await pool.submit({"type": "pid"}, timeout=30) != where
        await wait_until(lambda: not _live(pool), timeout=20, what="the pool's idle child retired")
        assert await counter.call("add", n=2) == 3  # the actor's child kept serving it
        assert await counter.call("where") == where


async def test_an_autoscaled_pool_at_none_is_ready_and_a_paused_one_says_so() -> None:
    async with qoper8.Pool(HANDLERS, children=(0, 2), idle_timeout=0.2) as pool:
        await wait_until(lambda: pool.statistics().target_size == 0, what="down to none")
        stats = pool.statistics()
        assert (stats.target_size, stats.min_size, stats.max_size, stats.paused) == (0, 0, 2, False)
        health = health_body(stats, is_open=True, degraded=False, draining=False, redis=None)
        assert health["status"] == "ready"  # no child needed until a job comes
        await pool.pause()
        assert pool.is_paused
        assert pool.statistics().paused
        health = health_body(
            pool.statistics(), is_open=True, degraded=False, draining=False, redis=None
        )
        assert health["status"] == "paused"
        await pool.resize((0, 2))
        assert not pool.is_paused


def test_a_synchronous_pool_autoscales_too() -> None:
    with qoper8.sync.Pool(HANDLERS, children=(0, 2), idle_timeout=30) as pool:
        assert pool.submit({"type": "echo", "value": 3}, timeout=30) == 3
        pool.resize(1)
